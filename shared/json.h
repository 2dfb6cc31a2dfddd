/* json.h: strict, typed field extraction over cJSON. The edge (api.c) uses these so that
 * deeper code can assert: a field is there, has the right JSON type, and fits its bounds. */
#ifndef PAYLAB_JSON_H
#define PAYLAB_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* JSON nesting deeper than this is refused (cJSON recurses). */
#define JSON_NESTING_MAX 16

enum json_status {
    JSON_OK = 0,
    JSON_MISSING = -1,    /* required key absent (or null) */
    JSON_WRONG_TYPE = -2, /* present with another JSON type, or a non-integral number */
    JSON_TOO_LONG = -3,   /* string longer than max_chars, or number beyond ±2^53 */
};

/* Parses exactly len bytes (need not be NUL-terminated); NULL unless it is one JSON object
 * with nothing but whitespace after it, nested ≤ JSON_NESTING_MAX. Caller cJSON_Delete()s. */
cJSON *json_parse_object(const char *buf, size_t len);

/* *out borrows the string inside obj (valid while obj lives). A missing optional key leaves
 * *out untouched and returns JSON_OK. Strings containing NUL bytes are JSON_WRONG_TYPE. */
enum json_status json_get_string(const cJSON *obj, const char *key, bool required, size_t max_chars,
                                 const char **out);
/* A JSON number with an integral value within ±2^53 (exactly representable). "500.5",
 * "1e300", "\"500\"" and true are JSON_WRONG_TYPE / JSON_TOO_LONG. */
enum json_status json_get_int64(const cJSON *obj, const char *key, bool required, int64_t *out);
enum json_status json_get_bool(const cJSON *obj, const char *key, bool required, bool *out);

/* Adds key: v as an exact JSON integer. cJSON stores numbers as doubles and prints them with
 * 15 significant digits, so a microsecond timestamp (16 digits) would come out as
 * 1.79564715914266e+15; this writes the decimal text instead. NULL on allocation failure. */
cJSON *json_add_int64(cJSON *obj, const char *key, int64_t v);

/* Prints obj compactly into a new string; caller free()s. NULL on allocation failure. */
char *json_print(const cJSON *obj);

#endif
