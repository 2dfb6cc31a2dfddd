/* child.c owns running a helper program to completion under a time limit: posix_spawnp (no
 * shell, so no quoting of paths or labels can go wrong), output to a log file, SIGKILL when
 * it overruns.
 * Must not: leave a child behind — every path that started one reaps it.
 * Invariant: the caller gets exactly one of done / not found / too long / failed. */
#include "child.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "pl.h"

extern char **environ;

/* How often the waiting loop looks at the child: short against any chart's drawing time. */
#define CHILD_POLL_MS 10

/* Resets what the lab changed for itself (SIGPIPE ignored, signals blocked in its threads)
 * so the child starts as a shell would start it. */
static int child_attributes(posix_spawnattr_t *attr)
{
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    if (posix_spawnattr_init(attr) != 0)
        return PL_ENOMEM;
    if (posix_spawnattr_setsigmask(attr, &none) != 0 ||
        posix_spawnattr_setsigdefault(attr, &defaults) != 0 ||
        posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) != 0) {
        posix_spawnattr_destroy(attr);
        return PL_EINVAL;
    }
    return 0;
}

static int child_files(posix_spawn_file_actions_t *fa, const char *log_path)
{
    if (posix_spawn_file_actions_init(fa) != 0)
        return PL_ENOMEM;
    if (posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0) != 0 ||
        posix_spawn_file_actions_addopen(fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0644) !=
            0 ||
        posix_spawn_file_actions_adddup2(fa, 1, 2) != 0) {
        posix_spawn_file_actions_destroy(fa);
        return PL_ENOMEM;
    }
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

enum wait_result { WAIT_ENDED, WAIT_KILLED, WAIT_LOST };

/* Waits for pid until deadline (monotonic ms), then kills it and reaps it. */
static enum wait_result wait_until(pid_t pid, int64_t deadline_ms, int *wstatus)
{
    for (;;) {
        pid_t w = waitpid(pid, wstatus, WNOHANG);
        if (w == pid)
            return WAIT_ENDED;
        if (w < 0 && errno != EINTR)
            return WAIT_LOST; /* someone else reaped it: not the lab's way, so a failure */
        if (pl_mono_ms() >= deadline_ms)
            break;
        sleep_ms(CHILD_POLL_MS);
    }
    kill(pid, SIGKILL);
    while (waitpid(pid, wstatus, 0) < 0 && errno == EINTR) {
    }
    return WAIT_KILLED;
}

int child_run(char *const argv[], const char *log_path, int64_t timeout_ms, int *exit_code)
{
    assert(argv != NULL && argv[0] != NULL);
    assert(timeout_ms > 0);
    *exit_code = -1;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    int rc = child_attributes(&attr);
    if (rc != 0)
        return rc;
    rc = child_files(&fa, log_path);
    if (rc != 0) {
        posix_spawnattr_destroy(&attr);
        return rc;
    }
    pid_t pid = 0;
    int err = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (err == ENOENT)
        return PL_ENOTFOUND;
    if (err != 0) {
        fprintf(stderr, "lab: cannot start %s: %s\n", argv[0], strerror(err));
        return PL_EIO;
    }
    int wstatus = 0;
    enum wait_result w = wait_until(pid, pl_mono_ms() + timeout_ms, &wstatus);
    if (w == WAIT_KILLED)
        return PL_ERANGE;
    if (w == WAIT_LOST)
        return PL_EIO;
    if (WIFEXITED(wstatus)) {
        *exit_code = WEXITSTATUS(wstatus);
        /* 127: a libc that reports a failed exec from the child, as a shell does. */
        if (*exit_code == 127)
            return PL_ENOTFOUND;
        return *exit_code == 0 ? 0 : PL_EIO;
    }
    if (WIFSIGNALED(wstatus))
        *exit_code = 128 + WTERMSIG(wstatus);
    return PL_EIO;
}
