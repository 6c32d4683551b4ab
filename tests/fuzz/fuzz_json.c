/* Fuzzes the strict JSON parser: on success the tree is walked through every
 * accessor, written back out as JSON and parsed again, and the two trees must be
 * equal; on failure the message names an offset. */
#include <math.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "json.h"

/* Writes a tree back as JSON, checking each accessor against the type on the way. */
static void walk(const px_json_t *v, px_buf_t *out, int depth) {
  /* Containers nest at most PX_JSON_MAX_DEPTH deep; a scalar may sit one below. */
  PX_FUZZ_CHECK(v != NULL && depth <= PX_JSON_MAX_DEPTH + 1);
  px_json_type_t t = px_json_type(v);
  PX_FUZZ_CHECK(px_json_type_name(t) != NULL);
  double d;
  int b;
  size_t len;
  PX_FUZZ_CHECK((px_json_num(v, &d) == 0) == (t == PX_JSON_NUMBER));
  PX_FUZZ_CHECK((px_json_bool(v, &b) == 0) == (t == PX_JSON_BOOL));
  PX_FUZZ_CHECK((px_json_str(v, &len) != NULL) == (t == PX_JSON_STRING));
  PX_FUZZ_CHECK(px_json_is_null(v) == (t == PX_JSON_NULL));
  if (t != PX_JSON_ARRAY && t != PX_JSON_OBJECT) PX_FUZZ_CHECK(px_json_count(v) == 0);
  switch (t) {
  case PX_JSON_NULL: px_buf_append_cstr(out, "null"); break;
  case PX_JSON_BOOL: px_buf_append_cstr(out, b ? "true" : "false"); break;
  case PX_JSON_NUMBER: {
    PX_FUZZ_CHECK(isfinite(d));
    int64_t i;
    if (px_json_int(v, &i) == 0) PX_FUZZ_CHECK((double)i == d);
    px_buf_printf(out, "%.17g", d);
    break;
  }
  case PX_JSON_STRING: {
    const char *s = px_json_str(v, &len);
    PX_FUZZ_CHECK(s[len] == '\0');
    px_buf_json_str(out, s, len);
    break;
  }
  case PX_JSON_ARRAY:
    px_buf_append(out, "[", 1);
    for (size_t i = 0; i < px_json_count(v); i++) {
      if (i) px_buf_append(out, ",", 1);
      walk(px_json_at(v, i), out, depth + 1);
    }
    PX_FUZZ_CHECK(px_json_at(v, px_json_count(v)) == NULL);
    px_buf_append(out, "]", 1);
    break;
  case PX_JSON_OBJECT:
    px_buf_append(out, "{", 1);
    for (size_t i = 0; i < px_json_count(v); i++) {
      size_t klen = 0;
      const char *k = px_json_key_at(v, i, &klen);
      PX_FUZZ_CHECK(k != NULL && k[klen] == '\0');
      /* A key with an escaped NUL cannot be looked up by C string. */
      if (strlen(k) == klen) PX_FUZZ_CHECK(px_json_get(v, k) == px_json_at(v, i));
      if (i) px_buf_append(out, ",", 1);
      px_buf_json_str(out, k, klen);
      px_buf_append(out, ":", 1);
      walk(px_json_at(v, i), out, depth + 1);
    }
    PX_FUZZ_CHECK(px_json_at(v, px_json_count(v)) == NULL);
    px_buf_append(out, "}", 1);
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0;
  char *text = malloc(size ? size : 1); /* exact size: reads past the end are caught */
  PX_FUZZ_CHECK(text != NULL);
  if (size) memcpy(text, data, size);
  char err[128];
  err[0] = '\0';
  px_json_t *root = px_json_parse(text, size, err, sizeof(err));
  if (!root) {
    PX_FUZZ_CHECK(err[0] != '\0');
    free(text);
    return 0;
  }
  px_buf_t a = {0}, b = {0};
  walk(root, &a, 1);
  /* What was written back parses again to the same tree. */
  px_json_t *again = px_json_parse(a.data, a.len, err, sizeof(err));
  if (!again) fprintf(stderr, "re-parse failed: %s\n%.*s\n", err, (int)a.len, a.data);
  PX_FUZZ_CHECK(again != NULL);
  walk(again, &b, 1);
  PX_FUZZ_CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  px_json_free(again);
  px_json_free(root);
  px_buf_free(&a);
  px_buf_free(&b);
  free(text);
  return 0;
}
