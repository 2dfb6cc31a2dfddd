/* cli.h: the paylab command-line tool's shared context, exit codes, argument parsing and the
 * entry point of every command (docs/api.md). One struct cli is built in main.c and passed to
 * each command; nothing else is mutable and global. */
#ifndef PAYLAB_CLI_H
#define PAYLAB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_URL_BYTES_MAX 256
#define CLI_PATH_BYTES_MAX 512

/* Exit codes (docs/api.md): scripts and the lab rely on them. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_REFUSED 1     /* 4xx, a declined or failed transaction */
#define CLI_EXIT_USAGE 2       /* bad command line, missing file */
#define CLI_EXIT_UNREACHABLE 3 /* connection refused, no answer */
#define CLI_EXIT_NOT_FINAL 4   /* 202 pending, 502/504 unknown */
#define CLI_EXIT_BREACH 5      /* verify found a broken invariant */

/* Returned by cli_parse when the command should go on (every exit code is ≥ 0). */
#define CLI_CONTINUE (-1)

struct cli {
    char wallet_url[CLI_URL_BYTES_MAX];  /* --wallet, PAYLAB_WALLET_URL */
    char bank_url[CLI_URL_BYTES_MAX];    /* --bank, PAYLAB_BANK_URL */
    char gateway_url[CLI_URL_BYTES_MAX]; /* --gateway, PAYLAB_GATEWAY_URL: ws://…[,ws://…] */
    char data_dir[CLI_PATH_BYTES_MAX];   /* --data-dir, PAYLAB_DATA_DIR */
    bool json;                           /* --json: machine-readable output on stdout */
    bool verbose;                        /* -v: every HTTP exchange on stderr */
};

/* A command's own options: --name VALUE (has_arg) or --name (a flag). */
#define CLI_OPTS_MAX 12
#define CLI_POS_MAX 8

struct cli_opt {
    const char *name;     /* long name without dashes */
    const char *arg_name; /* "MODE" for --mode MODE; NULL for a flag */
    const char *help;
};

struct cli_spec {
    const char *usage;   /* "topup USER AMOUNT [options]" (after "paylab ") */
    const char *summary; /* one or more lines printed by --help */
    size_t pos_min, pos_max;
    const struct cli_opt *opts;
    size_t opts_count;
};

struct cli_args {
    const char *opt[CLI_OPTS_MAX]; /* value (or "1" for a flag), NULL when absent */
    const char *pos[CLI_POS_MAX];
    size_t pos_count;
};

/* Parses argv (argv[0] is the command word) against spec plus the global options, which may
 * appear anywhere. Returns CLI_CONTINUE with *a filled (pointers borrow argv), or an exit
 * code: 0 after printing --help, CLI_EXIT_USAGE after printing a usage error. */
int cli_parse(struct cli *cli, const struct cli_spec *spec, int argc, char **argv,
              struct cli_args *a);
/* Prints "paylab CMD: <message>" and a hint to use --help on stderr; returns CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Parses the global options before the command word (stops at the first non-option).
 * Returns CLI_CONTINUE with *cmd_index at the command word (== argc when none) and *help set
 * for --help, or an exit code (0 after --version, CLI_EXIT_USAGE). */
int cli_parse_leading(struct cli *cli, int argc, char **argv, int *cmd_index, bool *help);
/* Handles a global option given by its getopt code; true if it was one. */
bool cli_global_option(struct cli *cli, int code, const char *value);
/* Prints the global options block of --help on stdout. */
void cli_print_global_help(void);

/* The admin token, from $PAYLAB_ADMIN_TOKEN or <data-dir>/secrets/admin_token (never created
 * here: a fresh one would only earn a 401). 0, or CLI_EXIT_USAGE after printing what to do. */
int cli_admin_token(const struct cli *cli, char *out, size_t cap);

/* Commands: each gets argv with argv[0] = its command word, returns an exit code. */
int cmd_user(struct cli *cli, int argc, char **argv);
int cmd_topup(struct cli *cli, int argc, char **argv);
int cmd_withdraw(struct cli *cli, int argc, char **argv);
int cmd_send(struct cli *cli, int argc, char **argv);
int cmd_balance(struct cli *cli, int argc, char **argv);
int cmd_tx(struct cli *cli, int argc, char **argv);
int cmd_history(struct cli *cli, int argc, char **argv);
int cmd_ledger(struct cli *cli, int argc, char **argv);
int cmd_verify(struct cli *cli, int argc, char **argv);
int cmd_faults(struct cli *cli, int argc, char **argv);
int cmd_watch(struct cli *cli, int argc, char **argv);

#endif
