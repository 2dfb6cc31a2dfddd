/* config.h: command-line flags (getopt_long) with PAYLAB_<SERVICE>_<FLAG> environment
 * fallbacks (docs/api.md). A flag wins over the variable; the variable over the default
 * already stored in the target. --help and --version are built in. */
#ifndef PAYLAB_CONFIG_H
#define PAYLAB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_OPTS_MAX 64
#define CONFIG_STR_BYTES_MAX 1024

enum config_type {
    CONFIG_STR,    /* target: char[CONFIG_STR_BYTES_MAX] */
    CONFIG_INT,    /* target: int64_t; decimal, within [min, max] */
    CONFIG_DOUBLE, /* target: double; within [min, max] (rates, time scale — never money) */
    CONFIG_BOOL,   /* target: bool; a flag without argument; env accepts 1/0/true/false */
};

struct config_opt {
    const char *name; /* long flag without dashes: "http-port" → env PAYLAB_WALLET_HTTP_PORT */
    enum config_type type;
    void *target;
    double min, max;  /* bounds for CONFIG_INT / CONFIG_DOUBLE */
    const char *help; /* one line for --help */
};

enum config_result {
    CONFIG_OK = 0,
    CONFIG_EXIT_OK = 1, /* --help or --version was printed: exit 0 */
    CONFIG_ERROR = -2,  /* a usage error was printed to stderr: exit 2 */
};

/* Parses argv (no positional arguments allowed) and then the environment.
 * env_service is "BANK", "WALLET" or "GATEWAY"; prog and summary are printed by --help.
 * env_service "" reads PAYLAB_<FLAG> (e.g. PAYLAB_DATA_DIR); NULL reads no variables.
 * Values out of bounds or unparsable are usage errors naming the flag or variable. */
enum config_result config_parse(const char *env_service, const char *prog, const char *summary,
                                const struct config_opt *opts, size_t opts_count, int argc,
                                char **argv);

#endif
