/* cmd_faults.c owns `paylab faults show | set KEY=VALUE… | clear`: the bank's fault injection
 * through GET/PUT {bank}/admin/faults with the admin token, and the lookup of that token
 * (cli_admin_token, also used by `paylab watch '*'`).
 * Must not: print the admin token, or create a secrets directory (a missing token file means
 * the wrong --data-dir, and a fresh token would only earn a 401).
 * Invariant: `set` sends typed JSON — integers for *_ms and seed, numbers in [0, 1] for
 * *_rate, booleans for the switches — for known keys only (fault_keys), or nothing at all. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "json.h"
#include "out.h"
#include "pl.h"
#include "rodb.h"
#include "secrets.h"

#define FAULT_KEY_BYTES_MAX 48
/* The bank's own bound for its *_ms faults (docs/api.md, fault injection): ten minutes. */
#define FAULT_MS_MAX 600000LL
/* The bank takes any integer seed a JSON number holds exactly (±2^53). */
#define FAULT_SEED_ABS_MAX 9007199254740992LL
#define FAULT_KEYS_TEXT_BYTES_MAX 512
/* A shorter unknown key ("_", "ms") would match nearly every key: no suggestion. */
#define FAULT_SUGGEST_CHARS_MIN 3

enum fault_type { FAULT_MS, FAULT_SEED, FAULT_RATE, FAULT_SWITCH };

/* Every fault the bank knows, in the order `faults show` prints them: a key that is not
 * here is refused before anything is sent, with this list. */
static const struct fault_key {
    const char *name;
    enum fault_type type;
} fault_keys[] = {
    {"seed", FAULT_SEED},
    {"latency_ms", FAULT_MS},
    {"latency_jitter_ms", FAULT_MS},
    {"error_rate", FAULT_RATE},
    {"lost_response_rate", FAULT_RATE},
    {"down", FAULT_SWITCH},
    {"webhook_drop_rate", FAULT_RATE},
    {"webhook_duplicate_rate", FAULT_RATE},
    {"webhook_delay_ms", FAULT_MS},
    {"webhook_delay_jitter_ms", FAULT_MS},
    {"webhook_stop", FAULT_SWITCH},
};

static const struct cli_spec show_spec = {
    .usage = "faults show",
    .summary = "Prints the bank's current fault settings.",
};

static const struct cli_spec set_spec = {
    .usage = "faults set KEY=VALUE…",
    .summary = "Changes some of the bank's faults; the others stay as they are. Keys:\n"
               "  latency_ms latency_jitter_ms webhook_delay_ms webhook_delay_jitter_ms "
               "(0 to 600000)\n"
               "  error_rate lost_response_rate webhook_drop_rate webhook_duplicate_rate "
               "(0 to 1)\n"
               "  down webhook_stop (true|false)   seed (an integer)\n"
               "e.g. paylab faults set latency_ms=1500 lost_response_rate=0.3 down=true",
    .pos_min = 1,
    .pos_max = CLI_POS_MAX,
};

static const struct cli_spec clear_spec = {
    .usage = "faults clear",
    .summary = "Resets every fault of the bank (sends {\"clear\":true}).",
};

static const struct fault_key *find_key(const char *name)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(fault_keys); i++) {
        if (strcmp(fault_keys[i].name, name) == 0) {
            return &fault_keys[i];
        }
    }
    return NULL;
}

/* The shortest key that contains name ("latency" → latency_ms, "drop_rate" →
 * webhook_drop_rate), or NULL; names under 3 characters suggest nothing. */
static const char *suggest_key(const char *name)
{
    const char *found = NULL;
    if (strlen(name) < FAULT_SUGGEST_CHARS_MIN) {
        return NULL;
    }
    for (size_t i = 0; i < PL_ARRAY_LEN(fault_keys); i++) {
        const char *k = fault_keys[i].name;
        if (strstr(k, name) != NULL && (found == NULL || strlen(k) < strlen(found))) {
            found = k;
        }
    }
    return found;
}

static int unknown_key(const char *key, const char *value)
{
    char keys[FAULT_KEYS_TEXT_BYTES_MAX] = "";
    size_t len = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(fault_keys) && len < sizeof keys; i++) {
        int n =
            snprintf(keys + len, sizeof keys - len, "%s%s", i > 0 ? ", " : "", fault_keys[i].name);
        len += n > 0 ? (size_t)n : 0;
    }
    const char *near = suggest_key(key);
    if (near != NULL) {
        return cli_usage_error(&set_spec,
                               "unknown fault key '%s' (did you mean %s=%s?); keys are %s", key,
                               near, value, keys);
    }
    return cli_usage_error(&set_spec, "unknown fault key '%s'; keys are %s", key, keys);
}

/* Adds value to obj under key with the type the key has. 0 or CLI_EXIT_USAGE (printed). */
static int add_typed(cJSON *obj, const struct fault_key *k, const char *value)
{
    char *end = NULL;
    errno = 0;
    if (k->type == FAULT_MS || k->type == FAULT_SEED) {
        long long min = k->type == FAULT_MS ? 0 : -FAULT_SEED_ABS_MAX;
        long long max = k->type == FAULT_MS ? FAULT_MS_MAX : FAULT_SEED_ABS_MAX;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end != '\0' || errno != 0 || v < min || v > max) {
            return cli_usage_error(&set_spec, "%s takes an integer from %lld to %lld, not '%s'",
                                   k->name, min, max, value);
        }
        cJSON_AddNumberToObject(obj, k->name, (double)v);
        return 0;
    }
    if (k->type == FAULT_RATE) {
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || errno != 0 || !(v >= 0.0 && v <= 1.0)) {
            return cli_usage_error(&set_spec, "%s takes a rate from 0 to 1 (e.g. 0.3), not '%s'",
                                   k->name, value); /* NaN fails the range test too */
        }
        cJSON_AddNumberToObject(obj, k->name, v);
        return 0;
    }
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
        cJSON_AddBoolToObject(obj, k->name, strcmp(value, "true") == 0);
        return 0;
    }
    return cli_usage_error(&set_spec, "%s takes true or false, not '%s'", k->name, value);
}

/* Adds one KEY=VALUE to obj with the type its key implies. 0 or CLI_EXIT_USAGE (printed). */
static int add_pair(cJSON *obj, const char *pair)
{
    const char *eq = strchr(pair, '=');
    char key[FAULT_KEY_BYTES_MAX];
    if (eq == NULL || eq == pair || (size_t)(eq - pair) >= sizeof key || eq[1] == '\0') {
        return cli_usage_error(&set_spec, "'%s' is not KEY=VALUE", pair);
    }
    memcpy(key, pair, (size_t)(eq - pair));
    key[eq - pair] = '\0';
    const struct fault_key *k = find_key(key);
    if (k == NULL) {
        return unknown_key(key, eq + 1);
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL) {
        return cli_usage_error(&set_spec, "%s is given twice", key);
    }
    return add_typed(obj, k, eq + 1);
}

int cli_admin_token(const struct cli *cli, char *out, size_t cap)
{
    const char *env = getenv("PAYLAB_ADMIN_TOKEN");
    char path[CLI_PATH_BYTES_MAX + 32];
    snprintf(path, sizeof path, "%s/secrets/admin_token", cli->data_dir);
    if ((env == NULL || env[0] == '\0') && !rodb_exists(path)) {
        fprintf(stderr,
                "paylab: no admin token at %s — pass the services' --data-dir (or set "
                "PAYLAB_ADMIN_TOKEN)\n",
                path);
        return CLI_EXIT_USAGE;
    }
    if (secrets_load(cli->data_dir, "admin_token", "PAYLAB_ADMIN_TOKEN", "", out, cap) != 0) {
        fprintf(stderr, "paylab: cannot read the admin token at %s\n", path);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static void print_faults(const cJSON *faults)
{
    const cJSON *item;
    printf("bank faults:\n");
    cJSON_ArrayForEach(item, faults)
    {
        char value[64];
        if (cJSON_IsBool(item)) {
            snprintf(value, sizeof value, "%s", cJSON_IsTrue(item) ? "true" : "false");
        } else if (cJSON_IsNumber(item)) {
            snprintf(value, sizeof value, "%.15g", item->valuedouble);
        } else {
            snprintf(value, sizeof value, "%s", cJSON_IsString(item) ? item->valuestring : "…");
        }
        printf("  ");
        out_cell(stdout, item->string != NULL ? item->string : "?", 26, false, 1);
        printf("%s\n", value);
    }
}

static int exchange(struct cli *cli, const char *method, const char *body)
{
    char token[SECRET_BYTES_MAX];
    int rc = cli_admin_token(cli, token, sizeof token);
    if (rc != 0) {
        return rc;
    }
    struct client_req req = {.method = method,
                             .base_url = cli->bank_url,
                             .path = "/admin/faults",
                             .body = body,
                             .bearer = token,
                             .service = "bank"};
    struct client_resp r;
    rc = client_fetch(cli, &req, &r);
    memset(token, 0, sizeof token);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        print_faults(r.json);
    }
    client_free(&r);
    return CLI_EXIT_OK;
}

static int faults_set(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_parse(cli, &set_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL) {
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 0; i < a.pos_count && rc == CLI_CONTINUE; i++) {
        rc = add_pair(obj, a.pos[i]) == 0 ? CLI_CONTINUE : CLI_EXIT_USAGE;
    }
    char *body = rc == CLI_CONTINUE ? json_print(obj) : NULL;
    cJSON_Delete(obj);
    if (body == NULL) {
        return CLI_EXIT_USAGE;
    }
    rc = exchange(cli, "PUT", body);
    free(body);
    return rc;
}

int cmd_faults(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    const char *sub = argc >= 2 ? argv[1] : "";
    int rc;
    if (strcmp(sub, "set") == 0) {
        return faults_set(cli, argc - 1, argv + 1);
    }
    if (strcmp(sub, "show") == 0) {
        rc = cli_parse(cli, &show_spec, argc - 1, argv + 1, &a);
        return rc != CLI_CONTINUE ? rc : exchange(cli, "GET", NULL);
    }
    if (strcmp(sub, "clear") == 0) {
        rc = cli_parse(cli, &clear_spec, argc - 1, argv + 1, &a);
        return rc != CLI_CONTINUE ? rc : exchange(cli, "PUT", "{\"clear\":true}");
    }
    bool help = strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0;
    fprintf(help ? stdout : stderr, "%susage: paylab %s\n       paylab %s\n       paylab %s\n",
            help ? "" : "paylab: faults needs show, set or clear\n", show_spec.usage,
            set_spec.usage, clear_spec.usage);
    return help ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}
