/* secrets.h: the shared secrets in <data-dir>/secrets/ (docs/api.md): webhook_secret
 * ("whsec_<base64 of 32 bytes>"), token_secret, admin_token, bank_api_key (43-char
 * base64url of 32 bytes). An environment variable wins over the file. A missing file is
 * created race-free: written to a unique temporary name with mode 0600, fsync'ed, then
 * link()ed into place; the loser of a race reads the winner's. Values are never logged. */
#ifndef PAYLAB_SECRETS_H
#define PAYLAB_SECRETS_H

#include <stddef.h>

#define SECRET_BYTES_MAX 128

/* Loads secret `name` (e.g. "admin_token") into out (NUL-terminated, trailing newline
 * stripped): from env_var if set and non-empty, else from <data_dir>/secrets/<name>,
 * creating the directory (0700) and the file (0600) with a fresh random value if missing.
 * prefix ("whsec_" or "") is prepended to a generated value. 0, PL_EIO (message logged
 * with the path and what to do), or PL_EINVAL (file empty or too long). */
int secrets_load(const char *data_dir, const char *name, const char *env_var, const char *prefix,
                 char *out, size_t cap);

#endif
