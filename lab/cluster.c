/* cluster.c owns the lifecycle of the service processes that the e2e tests and `paylab lab`
 * start: a fresh temp directory, free loopback ports, fork+execv with stdout and stderr
 * appended to one log file per process, readiness by GET /healthz, bounded stops, and the
 * runners for `paylab` and `paylab verify`.
 * Must not: sleep in place of a condition (every wait polls one, with a deadline), leave a
 * child running after cluster_destroy, or let the caller's PAYLAB_* variables (a demo's
 * ports, secrets) leak into the cluster: every setting is a flag.
 * Invariant: a cluster_proc with pid != 0 is a child of ours that has not been reaped. */
/* nftw() is an XSI function. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif
#include "cluster.h"

#include "curlev.h"
#include "pl.h"

#include <arpa/inet.h>
#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

extern char **environ;

/* Polling period of every wait: short against the 100 ms timers the tests use. */
#define CLUSTER_POLL_MS 10
/* One /healthz probe; a service that is up answers in well under this. */
#define CLUSTER_HEALTH_TIMEOUT_MS 500
/* Ports one cluster needs: bank, wallet, ZMQ router, ZMQ pub, then HTTP and WS per gateway. */
#define CLUSTER_PORTS (4 + 2 * CLUSTER_GATEWAYS_MAX)
/* Where the bank POSTs webhooks on a gateway (docs/realtime.md). */
#define CLUSTER_WEBHOOK_PATH "/v1/webhooks/bank"
/* Environment entries passed on to a child (PAYLAB_* removed, a few added). */
#define CLUSTER_ENV_MAX 512
/* Log lines printed when a service fails to start. */
#define CLUSTER_LOG_TAIL_BYTES 4096
/* Arguments a paylab invocation adds before the caller's. */
#define CLUSTER_PAYLAB_FIXED_ARGS 7

/* ------------------------------------------------------------------ small helpers */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int64_t cluster_deadline_ms(int64_t timeout_ms)
{
    return pl_mono_ms() + timeout_ms;
}

bool cluster_wait_for(bool (*fn)(void *arg), void *arg, int64_t deadline_ms)
{
    assert(fn != NULL);
    for (;;) {
        if (fn(arg))
            return true;
        if (pl_mono_ms() >= deadline_ms)
            return false;
        sleep_ms(CLUSTER_POLL_MS);
    }
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

/* Prints the last CLUSTER_LOG_TAIL_BYTES of a log file to stderr, for a failed start. */
static void print_log_tail(const char *path)
{
    char buf[CLUSTER_LOG_TAIL_BYTES + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > CLUSTER_LOG_TAIL_BYTES ? end - CLUSTER_LOG_TAIL_BYTES : 0;
    ssize_t n = pread(fd, buf, CLUSTER_LOG_TAIL_BYTES, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    fprintf(stderr, "---- tail of %s ----\n%s\n---- end ----\n", path, buf);
}

/* ------------------------------------------------------------------ init */

/* Binds n loopback sockets to port 0 at once (so the n ports differ), reads the ports the
 * kernel chose, then closes them for the services to bind. Another process could take
 * one in between; the kernel hands ephemeral ports out in a way that makes it rare. */
static int pick_free_ports(int *ports, size_t n)
{
    int fds[CLUSTER_PORTS];
    int rc = 0;
    size_t opened = 0;
    assert(n <= CLUSTER_PORTS);
    for (; opened < n; opened++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        socklen_t len = sizeof sa;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[opened] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[opened] < 0) {
            rc = PL_EIO;
            break;
        }
        if (bind(fds[opened], (struct sockaddr *)&sa, sizeof sa) != 0 ||
            getsockname(fds[opened], (struct sockaddr *)&sa, &len) != 0) {
            close(fds[opened]);
            rc = PL_EIO;
            break;
        }
        ports[opened] = ntohs(sa.sin_port);
    }
    for (size_t i = 0; i < opened; i++)
        close(fds[i]);
    if (rc != 0)
        fprintf(stderr, "cluster: cannot pick a free port: %s\n", strerror(errno));
    return rc;
}

static int find_bin_dir(struct cluster *c, const char *bin_dir)
{
    const char *env = getenv("PAYLAB_BIN_DIR");
    if (bin_dir == NULL && env != NULL && env[0] != '\0')
        bin_dir = env;
    if (bin_dir != NULL)
        return pl_strlcpy(c->bin_dir, bin_dir, sizeof c->bin_dir);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "cluster: set PAYLAB_BIN_DIR to the folder holding the binaries\n");
        return PL_EINVAL;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
        *slash = '\0';
    return pl_strlcpy(c->bin_dir, exe, sizeof c->bin_dir);
}

static int make_dir(struct cluster *c)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    int n = snprintf(c->dir, sizeof c->dir, "%s/paylab-cluster-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof c->dir)
        return PL_ERANGE;
    if (mkdtemp(c->dir) == NULL) {
        fprintf(stderr, "cluster: mkdtemp %s: %s\n", c->dir, strerror(errno));
        c->dir[0] = '\0';
        return PL_EIO;
    }
    return 0;
}

/* log_name: the log file's name without ".log" (two gateways share one binary name). */
static int set_proc(struct cluster *c, struct cluster_proc *p, const char *name,
                    const char *log_name, int port)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->http_port = port;
    int n = snprintf(p->log_path, sizeof p->log_path, "%s/%s.log", c->dir, log_name);
    return (n < 0 || (size_t)n >= sizeof p->log_path) ? PL_ERANGE : 0;
}

static int set_gateways(struct cluster *c, const int *ports)
{
    for (int i = 0; i < CLUSTER_GATEWAYS_MAX; i++) {
        char log_name[32];
        struct cluster_proc *g = &c->gateways[i];
        snprintf(log_name, sizeof log_name, "webhook-gateway-%d", i);
        int rc = set_proc(c, g, "webhook-gateway", log_name, ports[2 * i]);
        if (rc != 0)
            return rc;
        g->ws_port = ports[2 * i + 1];
        snprintf(c->gateway_url[i], sizeof c->gateway_url[i], "http://127.0.0.1:%d", g->http_port);
        snprintf(c->gateway_ws_url[i], sizeof c->gateway_ws_url[i], "ws://127.0.0.1:%d",
                 g->ws_port);
    }
    c->notify_port = c->gateways[0].http_port;
    return cluster_use_gateways(c, 1);
}

int cluster_use_gateways(struct cluster *c, int count)
{
    size_t len = 0;
    if (count < 1 || count > CLUSTER_GATEWAYS_MAX)
        return PL_EINVAL;
    c->notify_url[0] = '\0';
    for (int i = 0; i < count; i++) {
        int n = snprintf(c->notify_url + len, sizeof c->notify_url - len, "%s%s%s",
                         i > 0 ? "," : "", c->gateway_url[i], CLUSTER_WEBHOOK_PATH);
        if (n < 0 || (size_t)n >= sizeof c->notify_url - len)
            return PL_ERANGE;
        len += (size_t)n;
    }
    return 0;
}

int cluster_init(struct cluster *c, const char *bin_dir)
{
    int ports[CLUSTER_PORTS];
    memset(c, 0, sizeof *c);
    /* Before any thread exists: the tests run requests from threads. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return PL_ENOMEM;
    int rc = find_bin_dir(c, bin_dir);
    if (rc == 0)
        rc = pick_free_ports(ports, CLUSTER_PORTS);
    if (rc == 0)
        rc = make_dir(c);
    if (rc != 0)
        return rc;
    c->zmq_router_port = ports[2];
    c->zmq_pub_port = ports[3];
    snprintf(c->bank_url, sizeof c->bank_url, "http://127.0.0.1:%d", ports[0]);
    snprintf(c->wallet_url, sizeof c->wallet_url, "http://127.0.0.1:%d", ports[1]);
    rc = set_proc(c, &c->bank, "bank-service", "bank-service", ports[0]);
    if (rc == 0)
        rc = set_proc(c, &c->wallet, "wallet-service", "wallet-service", ports[1]);
    if (rc == 0)
        rc = set_gateways(c, ports + 4);
    return rc;
}

/* ------------------------------------------------------------------ processes */

/* A copy of environ without PAYLAB_* plus extra (NULL-terminated, may be NULL); the array
 * is malloc'ed, its strings borrowed (from environ and extra). */
static char **child_env(const char *const *extra)
{
    char **env = calloc(CLUSTER_ENV_MAX + 1, sizeof *env);
    size_t n = 0;
    if (env == NULL)
        return NULL;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < CLUSTER_ENV_MAX; i++)
        env[n++] = (char *)extra[i];
    for (size_t i = 0; environ[i] != NULL && n < CLUSTER_ENV_MAX; i++) {
        if (strncmp(environ[i], "PAYLAB_", 7) == 0)
            continue;
        env[n++] = environ[i];
    }
    return env;
}

static void free_argv(struct cluster_proc *p)
{
    for (size_t i = 0; i < CLUSTER_ARGS_MAX && p->argv[i] != NULL; i++) {
        free(p->argv[i]);
        p->argv[i] = NULL;
    }
}

/* Fills p->argv: bin_dir/p->name, then fixed (NULL-terminated), then extra (may be NULL). */
static int build_argv(struct cluster *c, struct cluster_proc *p, const char *const *fixed,
                      const char *const *extra)
{
    char path[CLUSTER_PATH_BYTES_MAX];
    size_t n = 0;
    int len = snprintf(path, sizeof path, "%s/%s", c->bin_dir, p->name);
    if (len < 0 || (size_t)len >= sizeof path)
        return PL_ERANGE;
    free_argv(p);
    p->argv[n++] = xstrdup(path);
    for (size_t i = 0; fixed[i] != NULL && n < CLUSTER_ARGS_MAX; i++)
        p->argv[n++] = xstrdup(fixed[i]);
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (n >= CLUSTER_ARGS_MAX) {
            fprintf(stderr, "cluster: more than %d arguments for %s\n", CLUSTER_ARGS_MAX, p->name);
            free_argv(p);
            return PL_ERANGE;
        }
        p->argv[n++] = xstrdup(extra[i]);
    }
    for (size_t i = 0; i < n; i++) {
        if (p->argv[i] == NULL) {
            free_argv(p);
            return PL_ENOMEM;
        }
    }
    return 0;
}

/* In the child: never returns. Dies with the parent (Linux), so a crashed test leaves no
 * service behind. */
static void child_exec(int log_fd, char **argv, char **env, pid_t parent)
{
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
#else
    (void)parent;
#endif
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
        dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execve(argv[0], argv, env);
    dprintf(STDERR_FILENO, "cluster: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int spawn(struct cluster_proc *p)
{
    assert(p->pid == 0);
    assert(p->argv[0] != NULL);
    int log_fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
        fprintf(stderr, "cluster: open %s: %s\n", p->log_path, strerror(errno));
        return PL_EIO;
    }
    char **env = child_env(NULL);
    if (env == NULL) {
        close(log_fd);
        return PL_ENOMEM;
    }
    dprintf(log_fd, "---- cluster: starting %s ----\n", p->argv[0]);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child_exec(log_fd, p->argv, env, parent);
    close(log_fd);
    free(env);
    if (pid < 0) {
        fprintf(stderr, "cluster: fork: %s\n", strerror(errno));
        return PL_EIO;
    }
    p->pid = pid;
    return 0;
}

struct ready_probe {
    struct cluster_proc *p;
    char url[CLUSTER_URL_BYTES_MAX + 16];
    bool exited;
    int wstatus;
};

static bool ready_check(void *arg)
{
    struct ready_probe *r = arg;
    pid_t w = waitpid(r->p->pid, &r->wstatus, WNOHANG);
    if (w == r->p->pid) {
        r->exited = true;
        return true;
    }
    long status = 0;
    char *body = NULL;
    int rc = cluster_http("GET", r->url, NULL, NULL, CLUSTER_HEALTH_TIMEOUT_MS, &status, &body);
    free(body);
    return rc == 0 && status == 200;
}

static int wait_ready(struct cluster_proc *p)
{
    struct ready_probe r = {.p = p};
    snprintf(r.url, sizeof r.url, "http://127.0.0.1:%d/healthz", p->http_port);
    bool done = cluster_wait_for(ready_check, &r, cluster_deadline_ms(CLUSTER_READY_TIMEOUT_MS));
    if (done && !r.exited)
        return 0;
    if (r.exited) {
        p->pid = 0;
        fprintf(stderr, "cluster: %s exited before it was ready (status 0x%x)\n", p->name,
                (unsigned)r.wstatus);
    } else {
        fprintf(stderr, "cluster: %s not ready after %d ms\n", p->name, CLUSTER_READY_TIMEOUT_MS);
        cluster_stop(p, SIGKILL);
    }
    print_log_tail(p->log_path);
    return PL_EIO;
}

static int start_proc(struct cluster *c, struct cluster_proc *p, const char *const *fixed,
                      const char *const *extra)
{
    if (p->pid != 0)
        return PL_EINVAL;
    int rc = build_argv(c, p, fixed, extra);
    if (rc == 0)
        rc = spawn(p);
    if (rc == 0)
        rc = wait_ready(p);
    return rc;
}

int cluster_start_bank(struct cluster *c, const char *const *extra_args)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->bank.http_port);
    const char *const fixed[] = {"--http-port", port,           "--data-dir", c->dir, "--seed",
                                 "1",           "--time-scale", "0.001",      NULL};
    return start_proc(c, &c->bank, fixed, extra_args);
}

int cluster_start_wallet(struct cluster *c, const char *const *extra_args)
{
    char port[16], router[64], pub[64];
    snprintf(port, sizeof port, "%d", c->wallet.http_port);
    snprintf(router, sizeof router, "tcp://127.0.0.1:%d", c->zmq_router_port);
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", c->zmq_pub_port);
    const char *const fixed[] = {"--http-port",
                                 port,
                                 "--data-dir",
                                 c->dir,
                                 "--bank-url",
                                 c->bank_url,
                                 "--notify-url",
                                 c->notify_url,
                                 "--zmq-router",
                                 router,
                                 "--zmq-pub",
                                 pub,
                                 NULL};
    return start_proc(c, &c->wallet, fixed, extra_args);
}

int cluster_start_gateway(struct cluster *c, int index, const char *const *extra_args)
{
    char port[16], ws_port[16], router[64], pub[64];
    if (index < 0 || index >= CLUSTER_GATEWAYS_MAX)
        return PL_EINVAL;
    struct cluster_proc *g = &c->gateways[index];
    snprintf(port, sizeof port, "%d", g->http_port);
    snprintf(ws_port, sizeof ws_port, "%d", g->ws_port);
    snprintf(router, sizeof router, "tcp://127.0.0.1:%d", c->zmq_router_port);
    snprintf(pub, sizeof pub, "tcp://127.0.0.1:%d", c->zmq_pub_port);
    const char *const fixed[] = {"--http-port",
                                 port,
                                 "--ws-port",
                                 ws_port,
                                 "--data-dir",
                                 c->dir,
                                 "--wallet-url",
                                 c->wallet_url,
                                 "--zmq-router",
                                 router,
                                 "--zmq-pub",
                                 pub,
                                 NULL};
    return start_proc(c, g, fixed, extra_args);
}

static int exit_code(int wstatus, int sig_sent)
{
    if (WIFEXITED(wstatus))
        return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) {
        if (WTERMSIG(wstatus) == sig_sent && sig_sent == SIGKILL)
            return 0;
        return 128 + WTERMSIG(wstatus);
    }
    return 128;
}

struct stop_probe {
    pid_t pid;
    int wstatus;
};

static bool stop_check(void *arg)
{
    struct stop_probe *s = arg;
    pid_t w = waitpid(s->pid, &s->wstatus, WNOHANG);
    return w == s->pid || (w < 0 && errno == ECHILD);
}

int cluster_stop(struct cluster_proc *p, int sig)
{
    if (p->pid == 0)
        return PL_EINVAL;
    struct stop_probe s = {.pid = p->pid, .wstatus = 0};
    if (kill(p->pid, sig) != 0 && errno != ESRCH) {
        fprintf(stderr, "cluster: kill %s: %s\n", p->name, strerror(errno));
        return PL_EIO;
    }
    if (cluster_wait_for(stop_check, &s, cluster_deadline_ms(CLUSTER_STOP_TIMEOUT_MS))) {
        p->pid = 0;
        return exit_code(s.wstatus, sig);
    }
    fprintf(stderr, "cluster: %s still running %d ms after signal %d: SIGKILL\n", p->name,
            CLUSTER_STOP_TIMEOUT_MS, sig);
    kill(p->pid, SIGKILL);
    while (waitpid(p->pid, &s.wstatus, 0) < 0 && errno == EINTR) {
    }
    p->pid = 0;
    return PL_ERANGE;
}

int cluster_restart(struct cluster *c, struct cluster_proc *p)
{
    (void)c;
    if (p->pid != 0 || p->argv[0] == NULL)
        return PL_EINVAL;
    int rc = spawn(p);
    if (rc == 0)
        rc = wait_ready(p);
    return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc != 0)
        fprintf(stderr, "cluster: remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void stop_and_free(struct cluster_proc *p)
{
    if (p->pid != 0) {
        int rc = cluster_stop(p, SIGTERM);
        if (rc != 0)
            fprintf(stderr, "cluster: %s stopped with %d\n", p->name, rc);
    }
    free_argv(p);
}

void cluster_destroy(struct cluster *c)
{
    /* The edges first, so that nothing they still relay finds the wallet gone. */
    for (size_t i = 0; i < CLUSTER_GATEWAYS_MAX; i++)
        stop_and_free(&c->gateways[i]);
    stop_and_free(&c->wallet);
    stop_and_free(&c->bank);
    if (c->dir[0] == '\0')
        return;
    if (c->keep_dir) {
        fprintf(stderr, "cluster: kept %s (logs, databases, secrets)\n", c->dir);
        return;
    }
    /* The databases' directory could hold a few hundred files at most (WAL, logs). */
    nftw(c->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    c->dir[0] = '\0';
}

/* ------------------------------------------------------------------ paylab runs */

struct capture {
    char *buf;
    size_t len, cap;
};

/* Appends what fits under CLUSTER_OUTPUT_BYTES_MAX; the rest is read and dropped. */
static int capture_add(struct capture *cap, const char *data, size_t n)
{
    if (cap->len + n > CLUSTER_OUTPUT_BYTES_MAX)
        n = CLUSTER_OUTPUT_BYTES_MAX - cap->len;
    assert(n <= CLUSTER_OUTPUT_BYTES_MAX);
    if (cap->len + n + 1 > cap->cap) {
        size_t want = cap->cap == 0 ? 4096 : cap->cap;
        while (want < cap->len + n + 1)
            want *= 2;
        char *nb = realloc(cap->buf, want);
        if (nb == NULL)
            return PL_ENOMEM;
        cap->buf = nb;
        cap->cap = want;
    }
    if (n > 0)
        memcpy(cap->buf + cap->len, data, n);
    cap->len += n;
    cap->buf[cap->len] = '\0';
    return 0;
}

/* Reads fd until EOF or the deadline; false on timeout. */
static bool drain_until(int fd, struct capture *cap, int64_t deadline_ms)
{
    char chunk[8192];
    for (;;) {
        int64_t left_ms = deadline_ms - pl_mono_ms();
        if (left_ms <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(left_ms > 1000 ? 1000 : left_ms));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return true;
        if (capture_add(cap, chunk, (size_t)n) != 0)
            return true;
    }
}

/* Runs argv with env_extra added to the (PAYLAB_*-free) environment, stdout captured into
 * *out (malloc'ed, may be NULL), stderr shared with ours. Returns the exit code, 128+signal,
 * or a negative PL_E*. */
static int run_capture(char **argv, const char *const *env_extra, char **out)
{
    struct capture cap = {0};
    int fds[2];
    char **env = child_env(env_extra);
    if (out != NULL)
        *out = NULL;
    if (env == NULL || pipe(fds) != 0) {
        free(env);
        return PL_EIO;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd >= 0)
            dup2(null_fd, STDIN_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        execve(argv[0], argv, env);
        dprintf(STDERR_FILENO, "cluster: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    free(env);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return PL_EIO;
    }
    capture_add(&cap, "", 0);
    bool finished = drain_until(fds[0], &cap, cluster_deadline_ms(CLUSTER_CMD_TIMEOUT_MS));
    close(fds[0]);
    if (!finished) {
        fprintf(stderr, "cluster: %s ran longer than %d ms: killed\n", argv[0],
                CLUSTER_CMD_TIMEOUT_MS);
        kill(pid, SIGKILL);
    }
    int wstatus = 0;
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    if (out != NULL)
        *out = cap.buf;
    else
        free(cap.buf);
    return exit_code(wstatus, 0);
}

/* "PAYLAB_GATEWAY_URL=" and the WebSocket URLs of the gateways running now, comma-separated
 * (gateway 0's when none runs), for `paylab watch` and `--wait ws`. */
static void gateway_env(const struct cluster *c, char *out, size_t cap)
{
    static const char prefix[] = "PAYLAB_GATEWAY_URL=";
    size_t len = sizeof prefix - 1;
    size_t running = 0;
    assert(cap >= sizeof prefix + CLUSTER_GATEWAYS_MAX * CLUSTER_URL_BYTES_MAX);
    memcpy(out, prefix, sizeof prefix);
    for (size_t i = 0; i < CLUSTER_GATEWAYS_MAX; i++) {
        if (c->gateways[i].pid == 0)
            continue;
        /* Fits: cap holds the prefix and every URL with its comma (asserted above). */
        int n =
            snprintf(out + len, cap - len, "%s%s", running > 0 ? "," : "", c->gateway_ws_url[i]);
        assert(n > 0);
        len += (size_t)n;
        running++;
    }
    if (running == 0)
        snprintf(out + len, cap - len, "%s", c->gateway_ws_url[0]);
}

int cluster_paylab(struct cluster *c, const char *const *args, char **out)
{
    char path[CLUSTER_PATH_BYTES_MAX];
    char env_wallet[CLUSTER_URL_BYTES_MAX + 32], env_bank[CLUSTER_URL_BYTES_MAX + 32];
    char env_dir[CLUSTER_PATH_BYTES_MAX + 32];
    char env_gateway[CLUSTER_NOTIFY_BYTES_MAX + 32];
    _Static_assert(CLUSTER_NOTIFY_BYTES_MAX + 32 >=
                       sizeof "PAYLAB_GATEWAY_URL=" + CLUSTER_GATEWAYS_MAX * CLUSTER_URL_BYTES_MAX,
                   "room for every gateway");
    char *argv[CLUSTER_PAYLAB_FIXED_ARGS + CLUSTER_ARGS_MAX + 1] = {0};
    size_t n = 0;
    int len = snprintf(path, sizeof path, "%s/paylab", c->bin_dir);
    if (len < 0 || (size_t)len >= sizeof path)
        return PL_ERANGE;
    argv[n++] = path;
    argv[n++] = "--wallet";
    argv[n++] = c->wallet_url;
    argv[n++] = "--bank";
    argv[n++] = c->bank_url;
    argv[n++] = "--data-dir";
    argv[n++] = c->dir;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        if (i >= CLUSTER_ARGS_MAX)
            return PL_ERANGE;
        argv[n++] = (char *)args[i];
    }
    /* The variables say the same as the flags, wherever the CLI expects its global flags. */
    snprintf(env_wallet, sizeof env_wallet, "PAYLAB_WALLET_URL=%s", c->wallet_url);
    snprintf(env_bank, sizeof env_bank, "PAYLAB_BANK_URL=%s", c->bank_url);
    snprintf(env_dir, sizeof env_dir, "PAYLAB_DATA_DIR=%s", c->dir);
    gateway_env(c, env_gateway, sizeof env_gateway);
    const char *const env[] = {env_wallet, env_bank, env_dir, env_gateway, NULL};
    return run_capture(argv, env, out);
}

int cluster_verify(struct cluster *c)
{
    char wallet_db[CLUSTER_PATH_BYTES_MAX + 16], bank_db[CLUSTER_PATH_BYTES_MAX + 16];
    char *out = NULL;
    snprintf(wallet_db, sizeof wallet_db, "%s/wallet.db", c->dir);
    snprintf(bank_db, sizeof bank_db, "%s/bank.db", c->dir);
    const char *const args[] = {"verify", "--wallet-db", wallet_db, "--bank-db", bank_db, NULL};
    int rc = cluster_paylab(c, args, &out);
    if (rc != 0) {
        fprintf(stderr, "cluster: paylab verify exited %d:\n%s\n", rc, out != NULL ? out : "");
    }
    free(out);
    return rc;
}

/* ------------------------------------------------------------------ HTTP */

int cluster_http(const char *method, const char *url, const char *body, const char *const *headers,
                 long timeout_ms, long *status_out, char **body_out)
{
    struct curlev_request req = {
        .method = method,
        .url = url,
        .body = body,
        .body_bytes = body != NULL ? strlen(body) : 0,
        .timeout_ms = timeout_ms,
        .connect_timeout_ms = timeout_ms < 2000 ? timeout_ms : 2000,
        .fresh_connect = false,
    };
    struct curlev_result res;
    size_t n = 0;
    for (; headers != NULL && headers[n] != NULL; n++) {
        if (n >= CURLEV_HEADERS_MAX)
            return PL_ERANGE;
        req.headers[n] = headers[n];
    }
    req.headers[n] = NULL;
    memset(&res, 0, sizeof res);
    int rc = curlev_perform_blocking(&req, &res);
    if (rc != 0)
        return rc;
    *status_out = res.outcome == CURLEV_ANSWERED ? res.http_status : 0;
    *body_out = xstrdup(res.body != NULL ? res.body : "");
    curlev_result_free(&res);
    return *body_out != NULL ? 0 : PL_ENOMEM;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct capture *cap = arg;
    size_t n = size * nmemb;
    if (cap->len + n > CLUSTER_OUTPUT_BYTES_MAX)
        return 0;
    return capture_add(cap, data, n) == 0 ? n : 0;
}

/* Sets up h for one exchange; list collects the headers (freed by the caller). */
static int http_setup(CURL *h, const char *method, const char *url, const char *body,
                      size_t body_bytes, const char *const *headers, long timeout_ms,
                      struct curl_slist **list)
{
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++) {
        struct curl_slist *l = curl_slist_append(*list, headers[i]);
        if (l == NULL)
            return PL_ENOMEM;
        *list = l;
    }
    struct curl_slist *l = curl_slist_append(*list, "Expect:");
    if (l == NULL)
        return PL_ENOMEM;
    *list = l;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *list);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_bytes);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    return 0;
}

int cluster_http_full(const char *method, const char *url, const char *body, size_t body_bytes,
                      const char *const *headers, long timeout_ms, struct cluster_reply *reply)
{
    struct capture b = {0}, hd = {0};
    struct curl_slist *list = NULL;
    memset(reply, 0, sizeof *reply);
    if (method == NULL || url == NULL || timeout_ms <= 0)
        return PL_EINVAL;
    CURL *h = curl_easy_init();
    int rc = h != NULL ? 0 : PL_ENOMEM;
    if (rc == 0)
        rc = http_setup(h, method, url, body, body_bytes, headers, timeout_ms, &list);
    if (rc == 0)
        rc = capture_add(&b, "", 0);
    if (rc == 0)
        rc = capture_add(&hd, "", 0);
    if (rc == 0) {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
        int64_t start_ms = pl_mono_ms();
        CURLcode cc = curl_easy_perform(h);
        reply->elapsed_ms = pl_mono_ms() - start_ms;
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply->status);
    }
    curl_slist_free_all(list);
    if (h != NULL)
        curl_easy_cleanup(h);
    if (rc != 0) {
        free(b.buf);
        free(hd.buf);
        return rc;
    }
    if (reply->status == 0)
        hd.buf[0] = '\0';
    reply->body = b.buf;
    reply->body_bytes = b.len;
    reply->headers = hd.buf;
    return 0;
}

void cluster_reply_free(struct cluster_reply *reply)
{
    free(reply->body);
    free(reply->headers);
    memset(reply, 0, sizeof *reply);
}

bool cluster_reply_header(const struct cluster_reply *reply, const char *name, char *out,
                          size_t cap)
{
    size_t name_len = strlen(name);
    const char *line = reply->headers;
    while (line != NULL && *line != '\0') {
        const char *eol = strchr(line, '\n');
        size_t line_len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        if (line_len > name_len && strncasecmp(line, name, name_len) == 0 &&
            line[name_len] == ':') {
            const char *v = line + name_len + 1;
            const char *end = line + line_len;
            while (v < end && (*v == ' ' || *v == '\t'))
                v++;
            while (end > v && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
            size_t n = (size_t)(end - v);
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return false;
}

int cluster_read_secret(const struct cluster *c, const char *name, char *out, size_t cap)
{
    char path[CLUSTER_PATH_BYTES_MAX + 64];
    snprintf(path, sizeof path, "%s/secrets/%s", c->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PL_EIO;
    ssize_t n = read(fd, out, cap);
    close(fd);
    if (n <= 0)
        return PL_EIO;
    if ((size_t)n >= cap)
        return PL_ERANGE;
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return n > 0 ? 0 : PL_EIO;
}
