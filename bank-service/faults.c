/* faults.c owns the bank's fault state and every fault decision.
 * Must not: touch the database, the network or HTTP; draw from rand() or the clock.
 * Invariant: a decision is a pure function of (seed, reference, attempt, fault name), so a
 * lab run with the same --seed makes the same decisions whatever the arrival order.
 *
 * The draw: SHA-256 over "paylab-fault-v1" NUL, seed as 8 big-endian bytes, attempt as 4
 * big-endian bytes, the fault name, NUL, the reference. The first 8 bytes of the digest,
 * big-endian, shifted right by 11, give 53 bits; times 2^-53 that is a double in [0, 1).
 *
 * The attempt: how many times this reference has arrived at the bank in this process, kept
 * in a bounded open-addressed table (FAULTS_ATTEMPTS_MAX slots, FAULTS_ATTEMPTS_PROBE_MAX
 * probes, least recently seen evicted). A restart forgets the counts: the first arrival
 * after a restart is attempt 1 again. */
#include "faults.h"

#include <assert.h>
#include <math.h>
#include <openssl/evp.h>
#include <string.h>

#include "pl.h"

static const char FAULTS_DRAW_DOMAIN[] = "paylab-fault-v1";
/* The domain, seed, attempt, two NULs, a fault name and a reference fit. */
#define FAULTS_DRAW_BYTES_MAX 160
#define FAULTS_FAULT_CHARS_MAX 32

static size_t faults_put_be(uint8_t *out, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) {
        out[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    }
    return bytes;
}

double faults_draw(int64_t seed, const char *reference, uint32_t attempt, const char *fault)
{
    assert(reference != NULL);
    assert(fault != NULL);
    size_t reference_bytes = strlen(reference);
    size_t fault_bytes = strlen(fault);
    assert(reference_bytes <= FAULTS_REFERENCE_CHARS_MAX);
    assert(fault_bytes <= FAULTS_FAULT_CHARS_MAX);

    uint8_t msg[FAULTS_DRAW_BYTES_MAX];
    size_t n = 0;
    memcpy(msg, FAULTS_DRAW_DOMAIN, sizeof FAULTS_DRAW_DOMAIN); /* with its NUL */
    n += sizeof FAULTS_DRAW_DOMAIN;
    n += faults_put_be(msg + n, (uint64_t)seed, 8);
    n += faults_put_be(msg + n, attempt, 4);
    memcpy(msg + n, fault, fault_bytes);
    n += fault_bytes;
    msg[n++] = 0;
    memcpy(msg + n, reference, reference_bytes);
    n += reference_bytes;
    assert(n <= sizeof msg);

    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_bytes = 0;
    int ok = EVP_Digest(msg, n, md, &md_bytes, EVP_sha256(), NULL);
    assert(ok == 1); /* SHA-256 of a small buffer cannot fail short of a broken libcrypto */
    assert(md_bytes >= 8);
    (void)ok;
    uint64_t bits = 0;
    for (size_t i = 0; i < 8; i++) {
        bits = (bits << 8) | md[i];
    }
    double v = (double)(bits >> 11) * 0x1.0p-53;
    assert(v >= 0.0 && v < 1.0);
    return v;
}

bool faults_hit(const struct faults *f, const char *reference, uint32_t attempt, const char *fault,
                double rate)
{
    assert(rate >= 0.0 && rate <= 1.0);
    if (rate <= 0.0) {
        return false;
    }
    return faults_draw(f->seed, reference, attempt, fault) < rate;
}

int64_t faults_delay_ms(const struct faults *f, const char *reference, uint32_t attempt)
{
    assert(f->latency_ms >= 0 && f->latency_ms <= FAULTS_LATENCY_MS_MAX);
    assert(f->latency_jitter_ms >= 0 && f->latency_jitter_ms <= FAULTS_LATENCY_MS_MAX);
    int64_t jitter_ms = 0;
    if (f->latency_jitter_ms > 0) {
        double d = faults_draw(f->seed, reference, attempt, FAULTS_JITTER);
        jitter_ms = (int64_t)floor(d * (double)(f->latency_jitter_ms + 1));
    }
    assert(jitter_ms >= 0 && jitter_ms <= f->latency_jitter_ms);
    return f->latency_ms + jitter_ms;
}

int64_t faults_webhook_delay_ms(const struct faults *f, const char *event_id, uint32_t attempt)
{
    assert(f->webhook_delay_ms >= 0 && f->webhook_delay_ms <= FAULTS_LATENCY_MS_MAX);
    assert(f->webhook_delay_jitter_ms >= 0 && f->webhook_delay_jitter_ms <= FAULTS_LATENCY_MS_MAX);
    int64_t jitter_ms = 0;
    if (f->webhook_delay_jitter_ms > 0) {
        double d = faults_draw(f->seed, event_id, attempt, FAULTS_WEBHOOK_JITTER);
        jitter_ms = (int64_t)floor(d * (double)(f->webhook_delay_jitter_ms + 1));
    }
    assert(jitter_ms >= 0 && jitter_ms <= f->webhook_delay_jitter_ms);
    return f->webhook_delay_ms + jitter_ms;
}

/* FNV-1a: spreads references over the table; not a security boundary. */
static uint64_t faults_fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

uint32_t faults_attempt_next(struct faults_attempts *a, const char *reference)
{
    assert(reference != NULL && reference[0] != '\0');
    assert(strlen(reference) <= FAULTS_REFERENCE_CHARS_MAX);
    a->clock++;
    size_t start = (size_t)(faults_fnv1a(reference) % FAULTS_ATTEMPTS_MAX);
    struct faults_attempt_slot *victim = NULL;
    for (size_t i = 0; i < FAULTS_ATTEMPTS_PROBE_MAX; i++) {
        struct faults_attempt_slot *s = &a->slots[(start + i) % FAULTS_ATTEMPTS_MAX];
        if (strcmp(s->reference, reference) == 0) {
            s->attempts++;
            s->last_seen = a->clock;
            return s->attempts;
        }
        if (victim == NULL || s->reference[0] == '\0' ||
            (victim->reference[0] != '\0' && s->last_seen < victim->last_seen)) {
            victim = s;
        }
    }
    assert(victim != NULL);
    int rc = pl_strlcpy(victim->reference, reference, sizeof victim->reference);
    assert(rc == 0);
    (void)rc;
    victim->attempts = 1;
    victim->last_seen = a->clock;
    return 1;
}

cJSON *faults_to_json(const struct faults *f)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    bool ok =
        cJSON_AddNumberToObject(o, "seed", (double)f->seed) != NULL &&
        cJSON_AddNumberToObject(o, "latency_ms", (double)f->latency_ms) != NULL &&
        cJSON_AddNumberToObject(o, "latency_jitter_ms", (double)f->latency_jitter_ms) != NULL &&
        cJSON_AddNumberToObject(o, "error_rate", f->error_rate) != NULL &&
        cJSON_AddNumberToObject(o, "lost_response_rate", f->lost_response_rate) != NULL &&
        cJSON_AddBoolToObject(o, "down", f->down) != NULL &&
        cJSON_AddNumberToObject(o, "webhook_drop_rate", f->webhook_drop_rate) != NULL &&
        cJSON_AddNumberToObject(o, "webhook_duplicate_rate", f->webhook_duplicate_rate) != NULL &&
        cJSON_AddNumberToObject(o, "webhook_delay_ms", (double)f->webhook_delay_ms) != NULL &&
        cJSON_AddNumberToObject(o, "webhook_delay_jitter_ms", (double)f->webhook_delay_jitter_ms) !=
            NULL &&
        cJSON_AddBoolToObject(o, "webhook_stop", f->webhook_stop) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* An integral JSON number within [min, max] (exactly representable: |v| ≤ 2^53). */
static bool faults_int_ok(const cJSON *v, double min, double max, int64_t *out)
{
    if (!cJSON_IsNumber(v)) {
        return false;
    }
    double d = v->valuedouble;
    if (!(d >= min && d <= max) || floor(d) != d || fabs(d) > 9007199254740992.0) {
        return false;
    }
    *out = (int64_t)d;
    return true;
}

static bool faults_rate_ok(const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0.0 && v->valuedouble <= 1.0)) {
        return false;
    }
    *out = v->valuedouble;
    return true;
}

static bool faults_bool_ok(const cJSON *v, bool *out)
{
    if (!cJSON_IsBool(v)) {
        return false;
    }
    *out = cJSON_IsTrue(v);
    return true;
}

/* The webhook members; false when the name is not one of them or the value is out of
 * bounds. */
static bool faults_apply_webhook_member(struct faults *next, const cJSON *m)
{
    const char *k = m->string;
    if (strcmp(k, "webhook_drop_rate") == 0) {
        return faults_rate_ok(m, &next->webhook_drop_rate);
    }
    if (strcmp(k, "webhook_duplicate_rate") == 0) {
        return faults_rate_ok(m, &next->webhook_duplicate_rate);
    }
    if (strcmp(k, "webhook_delay_ms") == 0) {
        return faults_int_ok(m, 0, FAULTS_LATENCY_MS_MAX, &next->webhook_delay_ms);
    }
    if (strcmp(k, "webhook_delay_jitter_ms") == 0) {
        return faults_int_ok(m, 0, FAULTS_LATENCY_MS_MAX, &next->webhook_delay_jitter_ms);
    }
    if (strcmp(k, "webhook_stop") == 0) {
        return faults_bool_ok(m, &next->webhook_stop);
    }
    return false;
}

/* Applies one member to next; false when its name is unknown or its value out of bounds. */
static bool faults_apply_member(struct faults *next, const cJSON *m)
{
    const char *k = m->string;
    if (strcmp(k, "clear") == 0) {
        return cJSON_IsBool(m); /* handled by the caller, before the other members */
    }
    if (strcmp(k, "seed") == 0) {
        return faults_int_ok(m, -9007199254740992.0, 9007199254740992.0, &next->seed);
    }
    if (strcmp(k, "latency_ms") == 0) {
        return faults_int_ok(m, 0, FAULTS_LATENCY_MS_MAX, &next->latency_ms);
    }
    if (strcmp(k, "latency_jitter_ms") == 0) {
        return faults_int_ok(m, 0, FAULTS_LATENCY_MS_MAX, &next->latency_jitter_ms);
    }
    if (strcmp(k, "error_rate") == 0) {
        return faults_rate_ok(m, &next->error_rate);
    }
    if (strcmp(k, "lost_response_rate") == 0) {
        return faults_rate_ok(m, &next->lost_response_rate);
    }
    if (strcmp(k, "down") == 0) {
        return faults_bool_ok(m, &next->down);
    }
    return faults_apply_webhook_member(next, m);
}

int faults_apply_json(struct faults *f, const cJSON *obj, const char **bad_field)
{
    assert(cJSON_IsObject(obj));
    struct faults next = *f;
    const cJSON *clear = cJSON_GetObjectItemCaseSensitive(obj, "clear");
    if (cJSON_IsTrue(clear)) {
        struct faults zero = {.seed = f->seed};
        next = zero;
    }
    const cJSON *m = NULL;
    cJSON_ArrayForEach(m, obj)
    {
        if (m->string == NULL || !faults_apply_member(&next, m)) {
            *bad_field = m->string != NULL ? m->string : "(unnamed)";
            return PL_EINVAL;
        }
    }
    *f = next;
    return PL_OK;
}
