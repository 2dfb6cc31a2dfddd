/* main.c owns the paylab command line's entry: defaults, environment variables, the global
 * options before the command word, and the dispatch to one command (docs/api.md).
 * Must not: hold state beyond the one struct cli it builds and passes down.
 * Invariant: the process exits with one of the CLI_EXIT_* codes. */
#include <curl/curl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "lab.h"
#include "pl.h"

struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"user", cmd_user, "user add USER [--bank-account ID] [--phone P] | user token USER"},
    {"topup", cmd_topup, "topup USER AMOUNT [--mode M] [--key K|auto] [--wait ws|poll:MS]"},
    {"send", cmd_send, "send FROM TO AMOUNT [--note TEXT] [--key K|auto]"},
    {"withdraw", cmd_withdraw, "withdraw USER AMOUNT [--mode M] [--key K|auto] [--wait …]"},
    {"balance", cmd_balance, "balance USER"},
    {"tx", cmd_tx, "tx wtx_…            a transaction and its timeline"},
    {"history", cmd_history, "history USER [--limit N]"},
    {"ledger", cmd_ledger, "ledger [--user U] [--db PATH]   read-only view of wallet.db"},
    {"verify", cmd_verify, "verify [--wallet-db PATH] [--bank-db PATH]   the ledger invariants"},
    {"faults", cmd_faults, "faults show | set KEY=VALUE… | clear   the bank's fault injection"},
    {"watch", cmd_watch, "watch USER|'*' [--count N]   live events over the gateway's WebSocket"},
    {"lab", NULL, "lab [SCENARIO…] [--modes …] [--wait …] [--n N] [--list]   the failure-mode lab"},
};

static void print_usage(void)
{
    printf("paylab %s — drive and inspect the paylab wallet and bank\n\nusage: paylab "
           "[global options] COMMAND [arguments] [options]\n\nCommands:\n",
           PAYLAB_VERSION);
    for (size_t i = 0; i < PL_ARRAY_LEN(commands); i++) {
        printf("  %s\n", commands[i].help);
    }
    printf("\nAmounts are in rupees: 500, 500.5, 500.50.  paylab COMMAND --help for details.\n\n");
    cli_print_global_help();
}

static void env_default(char *dst, size_t cap, const char *env, const char *fallback)
{
    const char *v = getenv(env);
    pl_strlcpy(dst, v != NULL && v[0] != '\0' ? v : fallback, cap);
}

static void init_defaults(struct cli *cli)
{
    memset(cli, 0, sizeof *cli);
    env_default(cli->wallet_url, sizeof cli->wallet_url, "PAYLAB_WALLET_URL",
                "http://127.0.0.1:8080");
    env_default(cli->bank_url, sizeof cli->bank_url, "PAYLAB_BANK_URL", "http://127.0.0.1:8081");
    env_default(cli->gateway_url, sizeof cli->gateway_url, "PAYLAB_GATEWAY_URL",
                "ws://127.0.0.1:8083");
    env_default(cli->data_dir, sizeof cli->data_dir, "PAYLAB_DATA_DIR", "var");
}

static int dispatch(struct cli *cli, int argc, char **argv)
{
    const char *name = argv[0];
    if (strcmp(name, "help") == 0) {
        print_usage();
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < PL_ARRAY_LEN(commands); i++) {
        if (strcmp(name, commands[i].name) == 0 && commands[i].run != NULL) {
            return commands[i].run(cli, argc, argv);
        }
    }
    if (strcmp(name, "lab") == 0) {
        return lab_main(argc, argv);
    }
    if (strcmp(name, "bench") == 0) {
        fprintf(stderr, "paylab: '%s' is not in this build yet\n", name);
        return CLI_EXIT_USAGE;
    }
    fprintf(stderr, "paylab: unknown command '%s' (see paylab --help)\n", name);
    return CLI_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    struct cli cli;
    setlocale(LC_CTYPE, "");
    init_defaults(&cli);
    int cmd_index = 0;
    bool help = false;
    int rc = cli_parse_leading(&cli, argc, argv, &cmd_index, &help);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (help) {
        print_usage();
        return CLI_EXIT_OK;
    }
    if (cmd_index >= argc) {
        print_usage();
        return CLI_EXIT_USAGE;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "paylab: libcurl failed to initialise\n");
        return CLI_EXIT_UNREACHABLE;
    }
    rc = dispatch(&cli, argc - cmd_index, argv + cmd_index);
    curl_global_cleanup();
    fflush(stdout);
    return rc;
}
