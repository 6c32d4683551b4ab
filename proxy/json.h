/* A small strict JSON parser (RFC 8259) for request bodies: the shortener's
 * {"url": ...} and the admin API's {"weights": {...}}. The whole document becomes
 * a read-only tree held in one arena and released with px_json_free.
 *
 * Strict means: UTF-8 input only (overlong forms and surrogates refused), no
 * comments, no trailing commas, no leading zeros, no trailing garbage, nesting at
 * most PX_JSON_MAX_DEPTH, and no duplicate keys in an object (a duplicate is a
 * classic way to make two parsers disagree, so it is refused rather than guessed). */
#ifndef PX_JSON_H
#define PX_JSON_H

#include <stddef.h>
#include <stdint.h>

#define PX_JSON_MAX_DEPTH 32

typedef enum {
  PX_JSON_NULL,
  PX_JSON_BOOL,
  PX_JSON_NUMBER,
  PX_JSON_STRING,
  PX_JSON_ARRAY,
  PX_JSON_OBJECT,
} px_json_type_t;

typedef struct px_json_s px_json_t;

/* Parses `len` bytes. Returns the root (free it with px_json_free) or NULL; on NULL
 * and when `err` is not NULL, writes a short message such as
 * "offset 12: expected ':'" into err (errlen bytes, NUL-terminated). */
px_json_t *px_json_parse(const char *text, size_t len, char *err, size_t errlen);
/* Frees the whole tree; `root` must be what px_json_parse returned (NULL is fine). */
void px_json_free(px_json_t *root);

px_json_type_t px_json_type(const px_json_t *v);
/* Type name for messages: "null", "boolean", "number", "string", "array", "object". */
const char *px_json_type_name(px_json_type_t t);

/* Member `key` of an object; NULL when v is not an object or has no such key. */
const px_json_t *px_json_get(const px_json_t *obj, const char *key);
/* Number of elements of an array or members of an object; 0 for other types. */
size_t px_json_count(const px_json_t *v);
/* i-th element of an array or i-th member value of an object (document order). */
const px_json_t *px_json_at(const px_json_t *v, size_t i);
/* i-th member key of an object (NUL-terminated; *len gets its length when not NULL). */
const char *px_json_key_at(const px_json_t *v, size_t i, size_t *len);

/* String value, NUL-terminated (it may also contain NULs from \u0000, so use *len);
 * NULL when v is not a string. */
const char *px_json_str(const px_json_t *v, size_t *len);
/* Number value; returns 0, or -1 when v is not a number. */
int px_json_num(const px_json_t *v, double *out);
/* Integer value: the number must be integral and within int64; 0 or -1. */
int px_json_int(const px_json_t *v, int64_t *out);
/* Boolean value; 0, or -1 when v is not a boolean. */
int px_json_bool(const px_json_t *v, int *out);
int px_json_is_null(const px_json_t *v);

#endif
