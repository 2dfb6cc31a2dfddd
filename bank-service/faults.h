/* faults.h: the bank's injected faults (docs/api.md) and the deterministic decisions behind
 * them. Every decision is a pure function of (seed, reference, attempt, fault name), so a lab
 * run with the same --seed repeats whatever the interleaving of requests. */
#ifndef PAYLAB_BANK_FAULTS_H
#define PAYLAB_BANK_FAULTS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An injected latency beyond 10 minutes teaches nothing more and would pin held requests. */
#define FAULTS_LATENCY_MS_MAX 600000
/* References remembered for attempt counting; see faults_attempt_next. Sized for a lab run
 * (thousands of payments) with room to spare: about 1.3 MB. */
#define FAULTS_ATTEMPTS_MAX 16384
/* Slots probed per lookup before the least recently seen one in the window is evicted. */
#define FAULTS_ATTEMPTS_PROBE_MAX 16
#define FAULTS_REFERENCE_CHARS_MAX 64

/* Fault names: the last input of the decision hash, and the "kind" label of the metrics. */
#define FAULTS_ERROR "error"
#define FAULTS_LOST_RESPONSE "lost_response"
#define FAULTS_JITTER "latency_jitter"
#define FAULTS_DOWN "down"
/* Webhook faults: decided per (seed, event id, attempt, name) — the event id in place of
 * the reference. */
#define FAULTS_WEBHOOK_DROP "webhook_drop"
#define FAULTS_WEBHOOK_DUPLICATE "webhook_duplicate"
#define FAULTS_WEBHOOK_DELAY "webhook_delay"
#define FAULTS_WEBHOOK_JITTER "webhook_delay_jitter"
#define FAULTS_WEBHOOK_RETRY_JITTER "webhook_retry_jitter"

struct faults {
    int64_t seed;
    int64_t latency_ms;              /* 0..FAULTS_LATENCY_MS_MAX, added to every new payment */
    int64_t latency_jitter_ms;       /* 0..FAULTS_LATENCY_MS_MAX, a hash-derived 0..jitter on top */
    double error_rate;               /* 0..1: POST /v1/payments answers 500 before doing anything */
    double lost_response_rate;       /* 0..1: commit and execute, then never answer */
    bool down;                       /* every /v1 request: connection closed without an answer */
    double webhook_drop_rate;        /* 0..1: an attempt is not sent, and counts as failed */
    double webhook_duplicate_rate;   /* 0..1: an attempt is sent twice, concurrently */
    int64_t webhook_delay_ms;        /* 0..FAULTS_LATENCY_MS_MAX: each attempt held this long */
    int64_t webhook_delay_jitter_ms; /* 0..FAULTS_LATENCY_MS_MAX: plus a hash-derived 0..N */
    bool webhook_stop;               /* hold every delivery until cleared */
};

struct faults_attempt_slot {
    char reference[FAULTS_REFERENCE_CHARS_MAX + 1]; /* "" when free */
    uint32_t attempts;                              /* arrivals of this reference so far */
    uint64_t last_seen;                             /* faults_attempts.clock at last arrival */
};

/* How many times each reference has arrived at the bank (memory only, bounded). */
struct faults_attempts {
    uint64_t clock; /* counts arrivals; orders slots for eviction */
    struct faults_attempt_slot slots[FAULTS_ATTEMPTS_MAX];
};

/* A value in [0, 1) from SHA-256(seed, attempt, fault, reference); the same inputs always
 * give the same value, on every machine. */
double faults_draw(int64_t seed, const char *reference, uint32_t attempt, const char *fault);
/* True when the draw for this fault falls below rate (rate 0: never; rate 1: always). */
bool faults_hit(const struct faults *f, const char *reference, uint32_t attempt, const char *fault,
                double rate);
/* latency_ms plus the deterministic jitter in 0..latency_jitter_ms for this arrival. */
int64_t faults_delay_ms(const struct faults *f, const char *reference, uint32_t attempt);

/* webhook_delay_ms plus the deterministic jitter in 0..webhook_delay_jitter_ms for this
 * attempt of event_id. */
int64_t faults_webhook_delay_ms(const struct faults *f, const char *event_id, uint32_t attempt);

/* Counts one more arrival of reference (1..64 printable chars) and returns its number (1 the
 * first time). A reference evicted from the table (more than FAULTS_ATTEMPTS_MAX live ones)
 * starts again at 1. */
uint32_t faults_attempt_next(struct faults_attempts *a, const char *reference);

/* The admin API's object (docs/contracts.md); caller cJSON_Delete()s; NULL on ENOMEM. */
cJSON *faults_to_json(const struct faults *f);
/* Merges a partial admin object into *f. Every field is validated before anything changes:
 * on a bad or unknown field, *f is untouched, *bad_field names it (borrowed from obj or a
 * literal) and PL_EINVAL is returned. {"clear":true} zeroes every fault but keeps the seed
 * (other fields in the same object then apply on top). */
int faults_apply_json(struct faults *f, const cJSON *obj, const char **bad_field);

#endif
