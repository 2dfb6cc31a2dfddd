/* config.c owns reading a program's settings: getopt_long flags, then PAYLAB_<SERVICE>_<FLAG>
 * variables, over the defaults already stored in the targets (docs/api.md).
 * Must not: exit the process (the caller decides), or keep any state between calls.
 * Invariant: a target is written only with a value that parsed and fits its bounds; on a
 * usage error some targets may already hold flag values, and the caller exits.
 *
 * env_service NULL reads no variables; "" reads PAYLAB_<FLAG> (the CLI's PAYLAB_DATA_DIR). */
#include "config.h"

#include "pl.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_ENV_BYTES_MAX 128
#define CONFIG_HELP_INDEX (CONFIG_OPTS_MAX)
#define CONFIG_VERSION_INDEX (CONFIG_OPTS_MAX + 1)

#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
extern int optreset;
#define CONFIG_GETOPT_RESET() (optreset = 1, optind = 1)
#else
/* glibc and musl: optind = 0 re-initializes getopt completely. */
#define CONFIG_GETOPT_RESET() (optind = 0)
#endif

/* Bounds of an int option as int64_t, clamped: a double beyond INT64_MAX must not be cast. */
static int64_t config_bound(double v)
{
    if (v >= 9.2e18)
        return INT64_MAX;
    if (v <= -9.2e18)
        return INT64_MIN;
    return (int64_t)v;
}

static void config_env_name(const char *env_service, const char *name, char *out, size_t cap)
{
    int w = snprintf(out, cap, "PAYLAB_%s%s%s", env_service, env_service[0] ? "_" : "", name);
    assert(w > 0 && (size_t)w < cap);
    (void)w;
    for (char *p = out; *p != '\0'; p++) {
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
}

static bool config_parse_int(const char *s, int64_t *out)
{
    if (s[0] != '-' && (s[0] < '0' || s[0] > '9'))
        return false; /* no spaces, no '+' */
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return false;
    *out = (int64_t)v;
    return true;
}

static bool config_parse_double(const char *s, double *out)
{
    if (s[0] != '-' && s[0] != '.' && (s[0] < '0' || s[0] > '9'))
        return false;
    if (strpbrk(s, "xXnN") != NULL)
        return false; /* no hex floats, nan or inf */
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool config_parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0) {
        *out = true;
        return true;
    }
    if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Stores value into o's target; on a bad value prints why, naming `source` (the flag or the
 * variable), and returns false. */
static bool config_store(const char *prog, const char *source, const struct config_opt *o,
                         const char *value)
{
    bool ok = false;
    switch (o->type) {
    case CONFIG_STR:
        ok = pl_strlcpy(o->target, value, CONFIG_STR_BYTES_MAX) == PL_OK;
        if (!ok)
            fprintf(stderr, "%s: %s: expected at most %d bytes, got %zu\n", prog, source,
                    CONFIG_STR_BYTES_MAX - 1, strlen(value));
        return ok;
    case CONFIG_INT: {
        int64_t v = 0;
        ok = config_parse_int(value, &v) && v >= config_bound(o->min) && v <= config_bound(o->max);
        if (ok)
            *(int64_t *)o->target = v;
        if (!ok)
            fprintf(stderr,
                    "%s: %s: expected an integer between %" PRId64 " and %" PRId64 ", got '%s'\n",
                    prog, source, config_bound(o->min), config_bound(o->max), value);
        return ok;
    }
    case CONFIG_DOUBLE: {
        double v = 0;
        ok = config_parse_double(value, &v) && v >= o->min && v <= o->max;
        if (ok)
            *(double *)o->target = v;
        if (!ok)
            fprintf(stderr, "%s: %s: expected a number between %g and %g, got '%s'\n", prog, source,
                    o->min, o->max, value);
        return ok;
    }
    case CONFIG_BOOL:
        ok = config_parse_bool(value, o->target);
        if (!ok)
            fprintf(stderr, "%s: %s: expected 1, 0, true or false, got '%s'\n", prog, source,
                    value);
        return ok;
    }
    return false;
}

/* Prints a target's current value, the default that --help shows. */
static void config_print_value(const struct config_opt *o)
{
    switch (o->type) {
    case CONFIG_STR:
        printf("'%s'", (const char *)o->target);
        break;
    case CONFIG_INT:
        printf("%" PRId64, *(const int64_t *)o->target);
        break;
    case CONFIG_DOUBLE:
        printf("%g", *(const double *)o->target);
        break;
    case CONFIG_BOOL:
        printf("%s", *(const bool *)o->target ? "on" : "off");
        break;
    }
}

static void config_usage(const char *env_service, const char *prog, const char *summary,
                         const struct config_opt *opts, size_t opts_count)
{
    printf("Usage: %s [FLAGS]\n%s\n\nFlags:\n", prog, summary != NULL ? summary : "");
    for (size_t i = 0; i < opts_count; i++) {
        const struct config_opt *o = &opts[i];
        const char *arg = o->type == CONFIG_BOOL ? "" : (o->type == CONFIG_STR ? " TEXT" : " N");
        printf("  --%s%s\n      %s (default: ", o->name, arg, o->help != NULL ? o->help : "");
        config_print_value(o);
        printf(")");
        if (env_service != NULL) {
            char env[CONFIG_ENV_BYTES_MAX];
            config_env_name(env_service, o->name, env, sizeof env);
            printf(" [env %s]", env);
        }
        printf("\n");
    }
    printf("  --help\n      print this help and exit\n");
    printf("  --version\n      print the version and exit\n");
}

/* Looks for --help / -h / --version before "--"; returns CONFIG_EXIT_OK if one was handled. */
static enum config_result config_builtin(const char *env_service, const char *prog,
                                         const char *summary, const struct config_opt *opts,
                                         size_t opts_count, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_usage(env_service, prog, summary, opts, opts_count);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", prog, PAYLAB_VERSION);
            return CONFIG_EXIT_OK;
        }
    }
    return CONFIG_OK;
}

/* Parses the flags into the targets and marks in set[] which ones appeared. */
static enum config_result config_flags(const char *prog, const struct config_opt *opts,
                                       size_t opts_count, int argc, char **argv, bool *set)
{
    struct option longopts[CONFIG_OPTS_MAX + 1];
    for (size_t i = 0; i < opts_count; i++) {
        bool has_arg = opts[i].type != CONFIG_BOOL;
        longopts[i] = (struct option){opts[i].name, has_arg ? required_argument : no_argument, NULL,
                                      (int)(CONFIG_VERSION_INDEX + 1 + i)};
    }
    longopts[opts_count] = (struct option){NULL, 0, NULL, 0};
    CONFIG_GETOPT_RESET();
    opterr = 0;
    for (;;) {
        int index = -1;
        int c = getopt_long(argc, argv, ":", longopts, &index);
        if (c == -1)
            break;
        const char *arg = argv[optind - 1];
        if (c == ':') {
            fprintf(stderr, "%s: %s: a value is missing\n", prog, arg);
            return CONFIG_ERROR;
        }
        if (c == '?' || c <= CONFIG_VERSION_INDEX) {
            fprintf(stderr, "%s: unknown flag '%s' (try --help)\n", prog, arg);
            return CONFIG_ERROR;
        }
        size_t i = (size_t)(c - CONFIG_VERSION_INDEX - 1);
        assert(i < opts_count);
        char source[CONFIG_ENV_BYTES_MAX];
        snprintf(source, sizeof source, "--%s", opts[i].name);
        const char *value = opts[i].type == CONFIG_BOOL ? "true" : optarg;
        if (!config_store(prog, source, &opts[i], value))
            return CONFIG_ERROR;
        set[i] = true;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", prog, argv[optind]);
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}

enum config_result config_parse(const char *env_service, const char *prog, const char *summary,
                                const struct config_opt *opts, size_t opts_count, int argc,
                                char **argv)
{
    assert(prog != NULL);
    assert(opts != NULL || opts_count == 0);
    assert(opts_count <= CONFIG_OPTS_MAX);
    for (size_t i = 0; i < opts_count; i++) {
        assert(opts[i].name != NULL && opts[i].target != NULL);
        assert(strlen(opts[i].name) + 16 < CONFIG_ENV_BYTES_MAX);
    }
    enum config_result rc =
        config_builtin(env_service, prog, summary, opts, opts_count, argc, argv);
    if (rc != CONFIG_OK)
        return rc;
    bool set[CONFIG_OPTS_MAX] = {false};
    rc = config_flags(prog, opts, opts_count, argc, argv, set);
    if (rc != CONFIG_OK || env_service == NULL)
        return rc;
    for (size_t i = 0; i < opts_count; i++) {
        if (set[i])
            continue; /* a flag wins over the variable */
        char env[CONFIG_ENV_BYTES_MAX];
        config_env_name(env_service, opts[i].name, env, sizeof env);
        const char *value = getenv(env);
        if (value == NULL || value[0] == '\0')
            continue;
        if (!config_store(prog, env, &opts[i], value))
            return CONFIG_ERROR;
    }
    return CONFIG_OK;
}
