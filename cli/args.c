/* args.c owns the command line of every paylab command: one getopt_long pass over the
 * command's own options merged with the global ones, so `--json`, `-v`, `--wallet URL` …
 * work before or after the command, and a uniform --help.
 * Must not: do I/O other than printing help and usage errors.
 * Invariant: a usage error always ends in CLI_EXIT_USAGE with one message on stderr. */
#include "cli.h"

#include <assert.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pl.h"

/* getopt codes: globals from 1000, the command's own options from 2000 + index. */
enum {
    OPT_WALLET = 1000,
    OPT_BANK,
    OPT_GATEWAY,
    OPT_DATA_DIR,
    OPT_JSON,
    OPT_VERSION,
    OPT_CMD_BASE = 2000,
};

static const struct option global_options[] = {
    {"wallet", required_argument, NULL, OPT_WALLET},
    {"bank", required_argument, NULL, OPT_BANK},
    {"gateway", required_argument, NULL, OPT_GATEWAY},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"json", no_argument, NULL, OPT_JSON},
    {"verbose", no_argument, NULL, 'v'},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, 'h'},
};
#define GLOBAL_OPTIONS_COUNT PL_ARRAY_LEN(global_options)
_Static_assert(CLI_OPTS_MAX + PL_ARRAY_LEN(global_options) < 32, "option table fits");

static int copy_setting(char *dst, size_t cap, const char *value)
{
    return pl_strlcpy(dst, value, cap);
}

bool cli_global_option(struct cli *cli, int code, const char *value)
{
    switch (code) {
    case OPT_WALLET:
        copy_setting(cli->wallet_url, sizeof cli->wallet_url, value);
        return true;
    case OPT_BANK:
        copy_setting(cli->bank_url, sizeof cli->bank_url, value);
        return true;
    case OPT_GATEWAY:
        copy_setting(cli->gateway_url, sizeof cli->gateway_url, value);
        return true;
    case OPT_DATA_DIR:
        copy_setting(cli->data_dir, sizeof cli->data_dir, value);
        return true;
    case OPT_JSON:
        cli->json = true;
        return true;
    case 'v':
        cli->verbose = true;
        return true;
    default:
        return false;
    }
}

void cli_print_global_help(void)
{
    printf("Global options (before or after the command):\n"
           "  --wallet URL     wallet-service (env PAYLAB_WALLET_URL, default "
           "http://127.0.0.1:8080)\n"
           "  --bank URL       bank-service (env PAYLAB_BANK_URL, default "
           "http://127.0.0.1:8081)\n"
           "  --gateway URL    webhook-gateway WebSocket, a comma-separated list for fail-over\n"
           "                   (env PAYLAB_GATEWAY_URL, default ws://127.0.0.1:8083)\n"
           "  --data-dir DIR   secrets and databases (env PAYLAB_DATA_DIR, default var)\n"
           "  --json           machine-readable output on stdout\n"
           "  -v, --verbose    print each HTTP exchange on stderr\n"
           "  -h, --help       this help;  --version  the version\n"
           "Exit codes: 0 ok, 1 refused or failed, 2 usage, 3 unreachable, 4 not final "
           "(pending/unknown), 5 invariant breach\n");
}

static void print_help(const struct cli_spec *spec)
{
    printf("usage: paylab %s\n\n%s\n", spec->usage, spec->summary);
    if (spec->opts_count > 0) {
        printf("\nOptions:\n");
    }
    for (size_t i = 0; i < spec->opts_count; i++) {
        const struct cli_opt *o = &spec->opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg_name != NULL ? " " : "",
                 o->arg_name != NULL ? o->arg_name : "");
        printf("  %-26s %s\n", left, o->help);
    }
    printf("\n");
    cli_print_global_help();
}

int cli_usage_error(const struct cli_spec *spec, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t words = strcspn(spec->usage, "ABCDEFGHIJKLMNOPQRSTUVWXYZ[<");
    while (words > 0 && spec->usage[words - 1] == ' ') {
        words--;
    }
    fprintf(stderr, "paylab: %s\nusage: paylab %s   (more: paylab %.*s --help)\n", msg, spec->usage,
            (int)words, spec->usage);
    return CLI_EXIT_USAGE;
}

static size_t build_options(const struct cli_spec *spec, struct option *table)
{
    size_t n = 0;
    assert(spec->opts_count <= CLI_OPTS_MAX);
    for (size_t i = 0; i < spec->opts_count; i++) {
        table[n].name = spec->opts[i].name;
        table[n].has_arg = spec->opts[i].arg_name != NULL ? required_argument : no_argument;
        table[n].flag = NULL;
        table[n].val = OPT_CMD_BASE + (int)i;
        n++;
    }
    for (size_t i = 0; i < GLOBAL_OPTIONS_COUNT; i++) {
        table[n++] = global_options[i];
    }
    memset(&table[n], 0, sizeof table[n]);
    return n;
}

static int unknown_option(const struct cli_spec *spec, int argc, char **argv)
{
    const char *bad = optind - 1 < argc && optind >= 1 ? argv[optind - 1] : "?";
    if (optopt != 0 && optopt < OPT_WALLET && optopt != 'h' && optopt != 'v') {
        return cli_usage_error(spec, "unknown option -%c", optopt);
    }
    return cli_usage_error(spec, "unknown option, or an option missing its value: %s", bad);
}

int cli_parse(struct cli *cli, const struct cli_spec *spec, int argc, char **argv,
              struct cli_args *a)
{
    struct option table[CLI_OPTS_MAX + GLOBAL_OPTIONS_COUNT + 1];
    build_options(spec, table);
    memset(a, 0, sizeof *a);
    optind = 0; /* glibc: a full re-initialisation, main.c already ran getopt once */
    opterr = 0;
    for (;;) {
        int code = getopt_long(argc, argv, "hv", table, NULL);
        if (code == -1) {
            break;
        }
        if (code == 'h') {
            print_help(spec);
            return CLI_EXIT_OK;
        }
        if (code == OPT_VERSION) {
            printf("paylab %s\n", PAYLAB_VERSION);
            return CLI_EXIT_OK;
        }
        if (code >= OPT_CMD_BASE && code < OPT_CMD_BASE + (int)spec->opts_count) {
            a->opt[code - OPT_CMD_BASE] = optarg != NULL ? optarg : "1";
            continue;
        }
        if (!cli_global_option(cli, code, optarg)) {
            return unknown_option(spec, argc, argv);
        }
    }
    for (int i = optind; i < argc; i++) {
        if (a->pos_count >= spec->pos_max || a->pos_count >= CLI_POS_MAX) {
            return cli_usage_error(spec, "unexpected argument '%s'", argv[i]);
        }
        a->pos[a->pos_count++] = argv[i];
    }
    if (a->pos_count < spec->pos_min) {
        return cli_usage_error(spec, "missing argument%s", spec->pos_min > 1 ? "s" : "");
    }
    return CLI_CONTINUE;
}

int cli_parse_leading(struct cli *cli, int argc, char **argv, int *cmd_index, bool *help)
{
    struct option table[GLOBAL_OPTIONS_COUNT + 1];
    memcpy(table, global_options, sizeof global_options);
    table[GLOBAL_OPTIONS_COUNT] = (struct option){0};
    *help = false;
    opterr = 0;
    for (;;) {
        int code = getopt_long(argc, argv, "+hv", table, NULL);
        if (code == -1) {
            break;
        }
        if (code == 'h') {
            *help = true;
            continue;
        }
        if (code == OPT_VERSION) {
            printf("paylab %s\n", PAYLAB_VERSION);
            return CLI_EXIT_OK;
        }
        if (!cli_global_option(cli, code, optarg)) {
            fprintf(stderr, "paylab: unknown option or missing value: %s (see paylab --help)\n",
                    argv[optind - 1]);
            return CLI_EXIT_USAGE;
        }
    }
    *cmd_index = optind;
    return CLI_CONTINUE;
}
