/* test_secrets.c: creation (0600, race-free), reuse, the environment override, bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pl.h"
#include "secrets.h"
#include "sign.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RACERS 8

static int setup(void **state)
{
    char *dir = malloc(64);
    assert_non_null(dir);
    snprintf(dir, 64, "/tmp/paylab-test-secrets-XXXXXX");
    assert_non_null(mkdtemp(dir));
    unsetenv("PAYLAB_TEST_SECRET");
    *state = dir;
    return 0;
}

/* Removes dir/secrets/ and dir (flat: only files inside). */
static int teardown(void **state)
{
    char *dir = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/secrets", dir);
    DIR *d = opendir(path);
    if (d != NULL) {
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            if (e->d_name[0] == '.')
                continue;
            char file[512];
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            unlink(file);
        }
        closedir(d);
    }
    rmdir(path);
    rmdir(dir);
    free(dir);
    return 0;
}

static size_t count_files(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/secrets", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e = readdir(d); e != NULL; e = readdir(d))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_creates_0600(void **state)
{
    const char *dir = *state;
    char value[SECRET_BYTES_MAX];
    assert_int_equal(
        secrets_load(dir, "admin_token", "PAYLAB_TEST_SECRET", "", value, sizeof value), PL_OK);
    assert_int_equal(strlen(value), 43); /* base64url of 32 bytes */
    assert_null(strpbrk(value, "+/="));
    char path[256];
    snprintf(path, sizeof path, "%s/secrets/admin_token", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/secrets", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(count_files(dir), 1); /* no temporary left behind */
}

static void test_second_load_same(void **state)
{
    const char *dir = *state;
    char a[SECRET_BYTES_MAX], b[SECRET_BYTES_MAX];
    assert_int_equal(secrets_load(dir, "token_secret", NULL, "", a, sizeof a), PL_OK);
    assert_int_equal(secrets_load(dir, "token_secret", NULL, "", b, sizeof b), PL_OK);
    assert_string_equal(a, b);
    assert_int_equal(secrets_load(dir, "bank_api_key", NULL, "", b, sizeof b), PL_OK);
    assert_string_not_equal(a, b);
}

static void test_webhook_prefix(void **state)
{
    const char *dir = *state;
    char value[SECRET_BYTES_MAX];
    assert_int_equal(secrets_load(dir, "webhook_secret", NULL, "whsec_", value, sizeof value),
                     PL_OK);
    assert_memory_equal(value, "whsec_", 6);
    assert_int_equal(strlen(value), 6 + 44); /* standard base64 of 32 bytes */
    uint8_t key[64];
    assert_int_equal(sign_base64_decode(value + 6, key, sizeof key), 32);
    char sig[SIGN_SIGNATURE_BYTES_MAX];
    assert_int_equal(sign_webhook(value, "evt_1", 1, "{}", 2, sig, sizeof sig), PL_OK);
}

static void test_env_wins(void **state)
{
    const char *dir = *state;
    char value[SECRET_BYTES_MAX];
    setenv("PAYLAB_TEST_SECRET", "from-the-environment", 1);
    assert_int_equal(
        secrets_load(dir, "admin_token", "PAYLAB_TEST_SECRET", "", value, sizeof value), PL_OK);
    assert_string_equal(value, "from-the-environment");
    char path[256];
    snprintf(path, sizeof path, "%s/secrets/admin_token", dir);
    assert_int_not_equal(access(path, F_OK), 0); /* nothing written */
    setenv("PAYLAB_TEST_SECRET", "", 1);         /* empty: the file is used */
    assert_int_equal(
        secrets_load(dir, "admin_token", "PAYLAB_TEST_SECRET", "", value, sizeof value), PL_OK);
    assert_int_equal(strlen(value), 43);
    unsetenv("PAYLAB_TEST_SECRET");
}

static void write_file(const char *dir, const char *name, const char *text, size_t n)
{
    char path[256];
    snprintf(path, sizeof path, "%s/secrets", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/secrets/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
}

static void test_existing_files(void **state)
{
    const char *dir = *state;
    char value[SECRET_BYTES_MAX];
    write_file(dir, "given", "hand-written\n", 13);
    assert_int_equal(secrets_load(dir, "given", NULL, "", value, sizeof value), PL_OK);
    assert_string_equal(value, "hand-written");
    write_file(dir, "empty", "\n", 1);
    assert_int_equal(secrets_load(dir, "empty", NULL, "", value, sizeof value), PL_EINVAL);
    char big[SECRET_BYTES_MAX + 10];
    memset(big, 'x', sizeof big);
    write_file(dir, "big", big, sizeof big);
    assert_int_equal(secrets_load(dir, "big", NULL, "", value, sizeof value), PL_EINVAL);
    assert_int_equal(secrets_load(dir, "given", NULL, "", value, 5), PL_EINVAL);
}

static void test_unwritable_dir(void **state)
{
    (void)state;
    char value[SECRET_BYTES_MAX];
    assert_int_equal(secrets_load("/proc/paylab-no-such-dir", "x", NULL, "", value, sizeof value),
                     PL_EIO);
}

static void test_race(void **state)
{
    const char *dir = *state;
    int pipes[RACERS][2];
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(pipe(pipes[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char value[SECRET_BYTES_MAX] = "";
            int rc = secrets_load(dir, "webhook_secret", NULL, "whsec_", value, sizeof value);
            ssize_t w = write(pipes[i][1], value, rc == PL_OK ? strlen(value) : 0);
            _exit(w >= 0 && rc == PL_OK ? 0 : 1);
        }
        close(pipes[i][1]);
    }
    char first[SECRET_BYTES_MAX] = "";
    for (int i = 0; i < RACERS; i++) {
        char got[SECRET_BYTES_MAX] = "";
        ssize_t n = read(pipes[i][0], got, sizeof got - 1);
        assert_true(n > 0);
        got[n] = '\0';
        close(pipes[i][0]);
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (i == 0)
            memcpy(first, got, sizeof got);
        assert_string_equal(got, first);
    }
    char mine[SECRET_BYTES_MAX];
    assert_int_equal(secrets_load(dir, "webhook_secret", NULL, "whsec_", mine, sizeof mine), PL_OK);
    assert_string_equal(mine, first);
    assert_int_equal(count_files(dir), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_creates_0600, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_load_same, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_existing_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
