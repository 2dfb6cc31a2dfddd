/* http.c owns the lab's blocking HTTP exchanges: one libcurl easy handle per thread, reused
 * so a client keeps its keep-alive connection (and a poller pays what a real one pays), with
 * the bytes each exchange put on the wire counted for the polling figures.
 * Must not: retry (the callers decide, with their Idempotency-Key), or block past its timeout
 * or past the run's stop flag. */
#include "run.h"

#include "pl.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LAB_CONNECT_TIMEOUT_MS 2000
#define LAB_HEADERS_MAX 8

int64_t lab_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t lab_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void lab_pause_ms(struct lab_run *r, int64_t ms)
{
    int64_t end = lab_mono_us() + ms * 1000;
    while (!atomic_load(&r->stop)) {
        int64_t left_us = end - lab_mono_us();
        if (left_us <= 0)
            return;
        int64_t step_us = left_us < 50000 ? left_us : 50000;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step_us * 1000};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
}

int lab_http_init(struct lab_http *h, const atomic_bool *stop)
{
    h->curl = curl_easy_init();
    h->stop = stop;
    return h->curl != NULL ? 0 : PL_ENOMEM;
}

void lab_http_free(struct lab_http *h)
{
    if (h->curl != NULL)
        curl_easy_cleanup(h->curl);
    h->curl = NULL;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct lab_reply *out = arg;
    size_t n = size * nmemb;
    size_t room = sizeof out->body - 1 - out->body_bytes;
    size_t take = n < room ? n : room; /* the services' answers are small; the rest is cut */
    memcpy(out->body + out->body_bytes, data, take);
    out->body_bytes += take;
    out->body[out->body_bytes] = '\0';
    return n;
}

/* Aborts a transfer in flight once the run is stopping (Ctrl-C). */
static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    const atomic_bool *stop = arg;
    return stop != NULL && atomic_load(stop) ? 1 : 0;
}

int lab_http_call(struct lab_http *h, const char *method, const char *url, const char *body,
                  const char *const *headers, long timeout_ms, struct lab_reply *out)
{
    CURL *c = h->curl;
    struct curl_slist *list = NULL;
    memset(out, 0, sizeof *out);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)LAB_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)h->stop);
    list = curl_slist_append(list, "Expect:");
    if (body != NULL) {
        list = curl_slist_append(list, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL && i < LAB_HEADERS_MAX; i++)
        list = curl_slist_append(list, headers[i]);
    if (list == NULL)
        return PL_ENOMEM;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    int64_t start = lab_mono_us();
    CURLcode rc = curl_easy_perform(c);
    out->elapsed_us = lab_mono_us() - start;
    long request_bytes = 0, header_bytes = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &request_bytes);
    curl_easy_getinfo(c, CURLINFO_HEADER_SIZE, &header_bytes);
    out->bytes = request_bytes + header_bytes + (int64_t)out->body_bytes;
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        out->status = 0;
        snprintf(out->error, sizeof out->error, "%s", curl_easy_strerror(rc));
    }
    curl_slist_free_all(list);
    return 0;
}
