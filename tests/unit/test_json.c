#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "json.h"

static px_json_t *parse(const char *s) { return px_json_parse(s, strlen(s), NULL, 0); }

static void reject(const char *s) {
  char err[128];
  px_json_t *v = px_json_parse(s, strlen(s), err, sizeof(err));
  cr_expect_null(v, "accepted: %s", s);
  if (v == NULL) cr_expect(err[0] != '\0', "no message for %s", s);
  px_json_free(v);
}

Test(json, scalars) {
  px_json_t *v = parse(" true ");
  int b = 0;
  cr_assert(v);
  cr_expect_eq(px_json_bool(v, &b), 0);
  cr_expect_eq(b, 1);
  px_json_free(v);

  v = parse("null");
  cr_expect(px_json_is_null(v));
  px_json_free(v);

  double d;
  v = parse("-12.5e2");
  cr_assert(v);
  cr_expect_eq(px_json_num(v, &d), 0);
  cr_expect_eq(d, -1250.0);
  px_json_free(v);

  int64_t i;
  v = parse("90");
  cr_expect_eq(px_json_int(v, &i), 0);
  cr_expect_eq(i, 90);
  px_json_free(v);
  v = parse("1.5");
  cr_expect_eq(px_json_int(v, &i), -1);
  px_json_free(v);
  v = parse("1e30");
  cr_expect_eq(px_json_int(v, &i), -1);
  px_json_free(v);
}

Test(json, objects_and_arrays) {
  const char *s = "{\"weights\": {\"a\": 90, \"b\": 10}, \"list\": [1, \"two\", [], {}], \"x\": null}";
  px_json_t *v = parse(s);
  cr_assert(v);
  cr_expect_eq(px_json_type(v), PX_JSON_OBJECT);
  cr_expect_eq(px_json_count(v), 3);
  const px_json_t *w = px_json_get(v, "weights");
  cr_assert(w);
  cr_expect_eq(px_json_count(w), 2);
  size_t kl;
  cr_expect_str_eq(px_json_key_at(w, 1, &kl), "b");
  cr_expect_eq(kl, 1);
  int64_t n;
  cr_expect_eq(px_json_int(px_json_get(w, "a"), &n), 0);
  cr_expect_eq(n, 90);
  const px_json_t *l = px_json_get(v, "list");
  cr_expect_eq(px_json_type(l), PX_JSON_ARRAY);
  cr_expect_eq(px_json_count(l), 4);
  cr_expect_str_eq(px_json_str(px_json_at(l, 1), NULL), "two");
  cr_expect_eq(px_json_count(px_json_at(l, 2)), 0);
  cr_expect_null(px_json_at(l, 4));
  cr_expect_null(px_json_get(v, "missing"));
  cr_expect_null(px_json_get(l, "a"));
  cr_expect_null(px_json_str(w, NULL));
  px_json_free(v);
}

Test(json, string_escapes) {
  px_json_t *v = parse("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\"");
  cr_assert(v);
  size_t n;
  const char *s = px_json_str(v, &n);
  const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  cr_expect_eq(n, sizeof(want) - 1);
  cr_expect(memcmp(s, want, n) == 0);
  px_json_free(v);

  v = parse("\"x\\u0000y\"");
  cr_assert(v);
  s = px_json_str(v, &n);
  cr_expect_eq(n, 3);
  cr_expect(memcmp(s, "x\0y", 3) == 0);
  px_json_free(v);

  v = parse("\"h\xc3\xa9llo \xf0\x9f\x98\x80\"");
  cr_expect(v, "raw UTF-8 accepted");
  px_json_free(v);
}

Test(json, rejects) {
  const char *bad[] = {
      "",
      " ",
      "tru",
      "nul",
      "True",
      "01",
      "-",
      "1.",
      ".5",
      "1e",
      "+1",
      "0x10",
      "NaN",
      "1e999",
      "[1,]",
      "[1 2]",
      "{\"a\":1,}",
      "{\"a\" 1}",
      "{a:1}",
      "{'a':1}",
      "\"abc",
      "\"a\\x\"",
      "\"\\u12\"",
      "\"\\ud800\"",
      "\"\\ud800\\u0041\"",
      "\"\\udc00\"",
      "\"tab\there\"",
      "\"\xc0\xaf\"",
      "\"\xed\xa0\x80\"",
      "\"\xff\"",
      "\"\xe2\x82\"",
      "{} x",
      "1 2",
      "[1]]",
      "{\"a\":1,\"a\":2}",
      "/* c */ 1",
      "[",
      "{",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) reject(bad[i]);
}

Test(json, depth_limit) {
  char deep[80];
  memset(deep, '[', 32);
  memset(deep + 32, ']', 32);
  deep[64] = '\0';
  px_json_t *v = parse(deep);
  cr_expect(v, "32 levels accepted");
  px_json_free(v);
  memset(deep, '[', 33);
  memset(deep + 33, ']', 33);
  deep[66] = '\0';
  reject(deep);
}

Test(json, length_is_respected) {
  const char s[] = "{\"a\": 1}garbage";
  px_json_t *v = px_json_parse(s, 8, NULL, 0);
  cr_expect(v);
  px_json_free(v);
  cr_expect_null(px_json_parse(s, 7, NULL, 0));
}

Test(json, error_message_has_offset) {
  char err[128];
  cr_assert_null(px_json_parse("{\"a\": tru}", 10, err, sizeof(err)));
  cr_expect(strstr(err, "offset 6") != NULL, "%s", err);
}

Test(json, big_document) {
  char *s = malloc(400000);
  size_t o = 0;
  s[o++] = '[';
  for (int i = 0; i < 20000; i++) o += (size_t)sprintf(s + o, "%s{\"k%d\": \"v\"}", i ? "," : "", i);
  s[o++] = ']';
  px_json_t *v = px_json_parse(s, o, NULL, 0);
  cr_assert(v);
  cr_expect_eq(px_json_count(v), 20000);
  cr_expect_str_eq(px_json_str(px_json_get(px_json_at(v, 19999), "k19999"), NULL), "v");
  px_json_free(v);
  free(s);
}
