/* secrets.c owns the shared secrets in <data-dir>/secrets/ (docs/api.md).
 * Must not: log a secret's value, leave a partly written secret file visible under its
 * final name, or overwrite an existing secret.
 * Invariant: <name> appears only by link() of a complete, fsync'ed, 0600 temporary file, so
 * every process that starts at the same time reads one and the same value. */
#include "secrets.h"

#include "ids.h"
#include "log.h"
#include "pl.h"
#include "sign.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRETS_PATH_BYTES_MAX 4096
#define SECRETS_RANDOM_BYTES 32
#define SECRETS_PREFIX_CHARS_MAX 16

static int secrets_mkdir(const char *path, mode_t mode)
{
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return PL_OK;
    log_error("cannot create the secrets directory", "path=\"%s\" error=\"%s\" fix=\"%s\"", path,
              strerror(errno), "check --data-dir and its permissions");
    return PL_EIO;
}

/* Reads the secret file at path into out, trailing newline stripped. PL_ENOTFOUND if it
 * does not exist. */
static int secrets_read(const char *path, char *out, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return PL_ENOTFOUND;
    if (fd < 0) {
        log_error("cannot open a secret", "path=\"%s\" error=\"%s\" fix=\"%s\"", path,
                  strerror(errno), "make the file readable by this user (mode 0600)");
        return PL_EIO;
    }
    char buf[SECRET_BYTES_MAX + 2];
    size_t n = 0;
    int rc = PL_OK;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = PL_EIO;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc != PL_OK) {
        log_error("cannot read a secret", "path=\"%s\"", path);
        return rc;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0 || n + 1 > cap || n >= SECRET_BYTES_MAX || memchr(buf, '\0', n) != NULL) {
        log_error("a secret file is empty or too long", "path=\"%s\" fix=\"%s\"", path,
                  "delete it to have a new one generated, or write one line");
        return PL_EINVAL;
    }
    memcpy(out, buf, n);
    out[n] = '\0';
    return PL_OK;
}

/* Makes a fresh value: prefix + base64 (for "whsec_") or base64url of 32 random bytes. */
static int secrets_generate(const char *prefix, char *out, size_t cap)
{
    uint8_t raw[SECRETS_RANDOM_BYTES];
    int rc = ids_random(raw, sizeof raw);
    if (rc != PL_OK)
        return rc;
    size_t prefix_chars = strlen(prefix);
    if (prefix_chars >= cap)
        return PL_ERANGE;
    memcpy(out, prefix, prefix_chars);
    bool standard = strcmp(prefix, "whsec_") == 0; /* Standard Webhooks keys are base64 */
    int w = standard ? sign_base64(raw, sizeof raw, out + prefix_chars, cap - prefix_chars)
                     : sign_base64url(raw, sizeof raw, out + prefix_chars, cap - prefix_chars);
    memset(raw, 0, sizeof raw);
    return w < 0 ? w : PL_OK;
}

static int secrets_write_fd(int fd, const char *value)
{
    char line[SECRET_BYTES_MAX + 1];
    int w = snprintf(line, sizeof line, "%s\n", value);
    if (w < 0 || (size_t)w >= sizeof line)
        return PL_ERANGE;
    size_t n = 0;
    while (n < (size_t)w) {
        ssize_t r = write(fd, line + n, (size_t)w - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return PL_EIO;
        n += (size_t)r;
    }
    return fsync(fd) == 0 ? PL_OK : PL_EIO;
}

/* Writes a fresh secret to a unique temporary file, then link()s it to path. If another
 * process won the race (EEXIST), reads the winner's value instead. */
static int secrets_create(const char *path, const char *prefix, char *out, size_t cap)
{
    char value[SECRET_BYTES_MAX];
    int rc = secrets_generate(prefix, value, sizeof value);
    if (rc != PL_OK)
        return rc;
    char tag[ID_BYTES_MAX];
    rc = ids_new("", tag, sizeof tag);
    if (rc != PL_OK)
        return rc;
    char tmp[SECRETS_PATH_BYTES_MAX];
    int w = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%s", path, (long)getpid(), tag);
    if (w < 0 || (size_t)w >= sizeof tmp)
        return PL_ERANGE;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        log_error("cannot create a secret", "path=\"%s\" error=\"%s\" fix=\"%s\"", tmp,
                  strerror(errno), "check that the data dir is writable");
        return PL_EIO;
    }
    rc = secrets_write_fd(fd, value);
    close(fd);
    if (rc == PL_OK && link(tmp, path) != 0)
        rc = errno == EEXIST ? PL_ECONFLICT : PL_EIO;
    unlink(tmp);
    if (rc == PL_ECONFLICT)
        return secrets_read(path, out, cap); /* the winner's value */
    if (rc != PL_OK) {
        log_error("cannot write a secret", "path=\"%s\" fix=\"%s\"", path,
                  "check free space and permissions of the data dir");
        return PL_EIO;
    }
    if (pl_strlcpy(out, value, cap) != PL_OK)
        return PL_EINVAL;
    memset(value, 0, sizeof value);
    return PL_OK;
}

int secrets_load(const char *data_dir, const char *name, const char *env_var, const char *prefix,
                 char *out, size_t cap)
{
    assert(data_dir != NULL);
    assert(name != NULL && strchr(name, '/') == NULL);
    assert(out != NULL && cap > 0);
    if (prefix == NULL)
        prefix = "";
    assert(strlen(prefix) <= SECRETS_PREFIX_CHARS_MAX);
    const char *env = env_var != NULL ? getenv(env_var) : NULL;
    if (env != NULL && env[0] != '\0') {
        if (strlen(env) >= SECRET_BYTES_MAX || pl_strlcpy(out, env, cap) != PL_OK) {
            log_error("a secret variable is too long", "var=%s", env_var);
            return PL_EINVAL;
        }
        return PL_OK;
    }
    char dir[SECRETS_PATH_BYTES_MAX];
    char path[SECRETS_PATH_BYTES_MAX];
    int w = snprintf(dir, sizeof dir, "%s/secrets", data_dir);
    if (w < 0 || (size_t)w >= sizeof dir)
        return PL_EINVAL;
    w = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (w < 0 || (size_t)w + 64 >= sizeof path)
        return PL_EINVAL; /* room for the tmp suffix */
    int rc = secrets_read(path, out, cap);
    if (rc != PL_ENOTFOUND)
        return rc;
    rc = secrets_mkdir(data_dir, 0755);
    if (rc == PL_OK)
        rc = secrets_mkdir(dir, 0700);
    if (rc != PL_OK)
        return rc;
    return secrets_create(path, prefix, out, cap);
}
