/* cmd_faults.c owns `paylab faults show | set KEY=VALUE… | clear`: the bank's fault injection
 * through GET/PUT {bank}/admin/faults with the admin token, and the lookup of that token
 * (cli_admin_token, also used by `paylab watch '*'`).
 * Must not: print the admin token, or create a secrets directory (a missing token file means
 * the wrong --data-dir, and a fresh token would only earn a 401).
 * Invariant: `set` sends typed JSON — integers for *_ms and seed, numbers in [0, 1] for
 * *_rate, booleans for the switches — or nothing at all. */
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
#define FAULT_INT_MAX 86400000LL /* a day in ms: beyond any lab run */

static const struct cli_spec show_spec = {
    .usage = "faults show",
    .summary = "Prints the bank's current fault settings.",
};

static const struct cli_spec set_spec = {
    .usage = "faults set KEY=VALUE…",
    .summary = "Changes some of the bank's faults; the others stay as they are. Keys:\n"
               "  latency_ms latency_jitter_ms webhook_delay_ms webhook_delay_jitter_ms seed "
               "(integers)\n"
               "  error_rate lost_response_rate webhook_drop_rate webhook_duplicate_rate "
               "(0 to 1)\n"
               "  down webhook_stop (true|false)\n"
               "e.g. paylab faults set latency_ms=1500 lost_response_rate=0.3 down=true",
    .pos_min = 1,
    .pos_max = CLI_POS_MAX,
};

static const struct cli_spec clear_spec = {
    .usage = "faults clear",
    .summary = "Resets every fault of the bank (sends {\"clear\":true}).",
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
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
    const char *value = eq + 1;
    char *end = NULL;
    errno = 0;
    if (ends_with(key, "_ms") || strcmp(key, "seed") == 0) {
        long long v = strtoll(value, &end, 10);
        if (*end != '\0' || errno != 0 || v < 0 || v > FAULT_INT_MAX) {
            return cli_usage_error(&set_spec, "%s takes an integer from 0 to %lld", key,
                                   FAULT_INT_MAX);
        }
        cJSON_AddNumberToObject(obj, key, (double)v);
        return 0;
    }
    if (ends_with(key, "_rate")) {
        double v = strtod(value, &end);
        if (*end != '\0' || errno != 0 || !(v >= 0.0 && v <= 1.0)) { /* NaN fails too */
            return cli_usage_error(&set_spec, "%s takes a rate from 0 to 1, e.g. 0.3", key);
        }
        cJSON_AddNumberToObject(obj, key, v);
        return 0;
    }
    if (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) {
        cJSON_AddBoolToObject(obj, key, strcmp(value, "true") == 0);
        return 0;
    }
    return cli_usage_error(&set_spec, "%s takes true or false", key);
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
