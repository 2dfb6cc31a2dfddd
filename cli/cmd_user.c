/* cmd_user.c owns `paylab user add` and `paylab user token`: creating a wallet user (the
 * wallet opens or links the bank account and records the mandate) and minting a ws_token.
 * Must not: read secrets; the wallet signs tokens.
 * Invariant: a user handle is checked locally ([a-z0-9_]{1,32}) before any request. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "ids.h"
#include "json.h"
#include "out.h"
#include "pl.h"

#define USER_PATH_BYTES_MAX 96

static const struct cli_opt add_opts[] = {
    {"bank-account", "ID",
     "link this existing bank account (default: the wallet opens HDFC-<USER>)"},
    {"phone", "PHONE", "the user's phone number, e.g. +919800000000"},
};
enum { ADD_BANK_ACCOUNT, ADD_PHONE };

static const struct cli_spec add_spec = {
    .usage = "user add USER [--bank-account ID] [--phone PHONE]",
    .summary = "Creates a wallet user (handle [a-z0-9_]{1,32}) with a zero balance. Without\n"
               "--bank-account the wallet opens HDFC-<USER> at the bank with an opening balance.",
    .pos_min = 1,
    .pos_max = 1,
    .opts = add_opts,
    .opts_count = PL_ARRAY_LEN(add_opts),
};

static const struct cli_spec token_spec = {
    .usage = "user token USER",
    .summary = "Prints a fresh ws_token for USER (to subscribe on the gateway's WebSocket).",
    .pos_min = 1,
    .pos_max = 1,
};

static char *add_body(const char *user, const struct cli_args *a)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(o, "user", user);
    if (a->opt[ADD_PHONE] != NULL) {
        cJSON_AddStringToObject(o, "phone", a->opt[ADD_PHONE]);
    }
    if (a->opt[ADD_BANK_ACCOUNT] != NULL) {
        cJSON_AddStringToObject(o, "bank_account", a->opt[ADD_BANK_ACCOUNT]);
    }
    char *s = json_print(o);
    cJSON_Delete(o);
    return s;
}

static int user_add(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_parse(cli, &add_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (!ids_user_valid(a.pos[0])) {
        return cli_usage_error(&add_spec, "'%s' is not a user handle ([a-z0-9_], 1 to 32)",
                               a.pos[0]);
    }
    char *body = add_body(a.pos[0], &a);
    if (body == NULL) {
        return CLI_EXIT_USAGE;
    }
    struct client_req req = {.method = "POST",
                             .base_url = cli->wallet_url,
                             .path = "/v1/users",
                             .body = body,
                             .service = "wallet"};
    struct client_resp r;
    rc = client_fetch(cli, &req, &r);
    free(body);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        char money[MONEY_FORMAT_BYTES_MAX];
        int64_t balance = 0;
        out_int(r.json, "balance_minor", &balance);
        printf("✓ user %s created: bank account %s, balance %s (in %lld ms)\n",
               out_str(r.json, "user", a.pos[0]), out_str(r.json, "bank_account", "?"),
               out_money(balance, money), (long long)r.elapsed_ms);
    }
    client_free(&r);
    return CLI_EXIT_OK;
}

static int user_token(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_parse(cli, &token_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (!ids_user_valid(a.pos[0])) {
        return cli_usage_error(&token_spec, "'%s' is not a user handle ([a-z0-9_], 1 to 32)",
                               a.pos[0]);
    }
    char path[USER_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/users/%s/ws-token", a.pos[0]);
    struct client_req req = {.method = "POST",
                             .base_url = cli->wallet_url,
                             .path = path,
                             .body = "{}",
                             .service = "wallet"};
    struct client_resp r;
    rc = client_fetch(cli, &req, &r);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        /* The token alone on stdout, so that TOKEN=$(paylab user token alice) works. */
        printf("%s\n", out_str(r.json, "token", ""));
    }
    client_free(&r);
    return CLI_EXIT_OK;
}

int cmd_user(struct cli *cli, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "add") == 0) {
        return user_add(cli, argc - 1, argv + 1);
    }
    if (argc >= 2 && strcmp(argv[1], "token") == 0) {
        return user_token(cli, argc - 1, argv + 1);
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: paylab %s\n       paylab %s\n", add_spec.usage, token_spec.usage);
        return CLI_EXIT_OK;
    }
    fprintf(stderr,
            "paylab: user needs a subcommand: add or token\nusage: paylab %s\n"
            "       paylab %s\n",
            add_spec.usage, token_spec.usage);
    return CLI_EXIT_USAGE;
}
