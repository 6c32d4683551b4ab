/* The service registry's pure logic (proxy/registry.h). What a user relies on: a record
 * written by one sidecar is read back the same by another, and one that does not meet
 * SPEC §12 is refused with a reason naming what is wrong; keys have exactly one shape;
 * an instance keeps its ID across restarts and no two hosts share one; and a discovered
 * cluster's endpoints follow puts and deletes in any order to the same sorted list,
 * saying "changed" only when that list really changed. */
#include <criterion/criterion.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "etcd_json.h"
#include "registry.h"

#define P(s) (s), strlen(s)

/* ---- records ---- */

static void expect_buf(const px_buf_t *b, const char *want) {
  cr_expect(b->len == strlen(want) && memcmp(b->data, want, b->len) == 0, "got  %.*s\nwant %s", (int)b->len,
            b->data, want);
}

Test(reg_record, encode) {
  px_reg_label_t labels[] = {{"zone", "eu-1a"}, {"version", "v2"}};
  px_reg_record_t r = {.address = "10.0.0.1:8080", .weight = 3, .labels = labels, .nlabels = 2};
  px_reg_rfc3339(1796158800, r.started);
  cr_expect_str_eq(r.started, "2026-12-01T21:00:00Z");
  px_buf_t b;
  px_buf_init(&b, 0);
  px_reg_record_encode(&r, &b);
  expect_buf(&b,
             "{\"address\":\"10.0.0.1:8080\",\"labels\":{\"zone\":\"eu-1a\",\"version\":\"v2\"},\"weight\":3,"
             "\"started\":\"2026-12-01T21:00:00Z\"}");

  /* no labels, no start time, weight left 0: the defaults are written out */
  px_reg_record_t bare = {.address = "[::1]:9000"};
  b.len = 0;
  px_reg_record_encode(&bare, &b);
  expect_buf(&b, "{\"address\":\"[::1]:9000\",\"labels\":{},\"weight\":1}");

  /* strings are escaped */
  px_reg_label_t odd[] = {{"a\"b", "c\\d\n"}};
  px_reg_record_t q = {.address = "localhost:1", .weight = 1, .labels = odd, .nlabels = 1};
  b.len = 0;
  px_reg_record_encode(&q, &b);
  expect_buf(&b, "{\"address\":\"localhost:1\",\"labels\":{\"a\\\"b\":\"c\\\\d\\n\"},\"weight\":1}");
  px_reg_record_free(&q); /* a caller-built record: nothing to release, and no harm */
  px_buf_free(&b);
}

Test(reg_record, roundtrip) {
  px_reg_label_t labels[] = {{"zone", "a"}, {"tier", "gold"}, {"empty", ""}, {"ünï", "cödé"}};
  px_reg_record_t r = {.address = "[2001:db8::7]:443", .weight = 128, .labels = labels, .nlabels = 4};
  px_reg_rfc3339(0, r.started);
  px_buf_t b;
  px_buf_init(&b, 0);
  px_reg_record_encode(&r, &b);
  px_reg_record_t back;
  char why[160] = "";
  cr_assert_eq(px_reg_record_parse(b.data, b.len, &back, why, sizeof(why)), 0, "%s", why);
  cr_expect_str_eq(back.address, r.address);
  cr_expect_eq(back.weight, 128);
  cr_expect_str_eq(back.started, "1970-01-01T00:00:00Z");
  cr_assert_eq(back.nlabels, 4);
  for (size_t i = 0; i < 4; i++) {
    cr_expect_str_eq(back.labels[i].key, labels[i].key);
    cr_expect_str_eq(back.labels[i].value, labels[i].value);
  }
  /* the parsed record owns its strings: the text may go */
  memset(b.data, 'x', b.len);
  cr_expect_str_eq(back.labels[1].value, "gold");
  px_reg_record_free(&back);
  cr_expect_null(back.labels);
  px_buf_free(&b);
}

Test(reg_record, parse_minimal_and_lenient) {
  px_reg_record_t r;
  char why[160];
  cr_assert_eq(px_reg_record_parse(P("{\"address\":\"10.0.0.1:8080\"}"), &r, why, sizeof(why)), 0);
  cr_expect_str_eq(r.address, "10.0.0.1:8080");
  cr_expect_eq(r.weight, 1, "weight defaults to 1");
  cr_expect_eq(r.nlabels, 0);
  cr_expect_str_eq(r.started, "");
  px_reg_record_free(&r);

  /* fields we do not know are ignored, whatever their shape; null is as good as absent
   * (Go writes a nil map as null) */
  const char *rich =
      "{\"version\":2,\"meta\":{\"a\":[1,{\"b\":null}]},\"address\":\"localhost:65535\","
      "\"labels\":null,\"weight\":null,\"started\":\"2026-12-01T21:00:00.123+02:00\",\"x\":true}";
  cr_assert_eq(px_reg_record_parse(P(rich), &r, why, sizeof(why)), 0, "%s", why);
  cr_expect_str_eq(r.address, "localhost:65535");
  cr_expect_eq(r.weight, 1);
  cr_expect_str_eq(r.started, "2026-12-01T21:00:00.123+02:00");
  px_reg_record_free(&r);

  /* a weight written as 1e2 or 100.0 is the integer 100 */
  cr_assert_eq(px_reg_record_parse(P("{\"address\":\"1.2.3.4:5\",\"weight\":1e2}"), &r, why, sizeof(why)), 0);
  cr_expect_eq(r.weight, 100);
  px_reg_record_free(&r);

  /* "started" is informational: one we cannot read costs the record nothing */
  const char *starts[] = {"5",
                          "\"yesterday\"",
                          "\"2026-12-01 21:00:00Z\"",
                          "\"2026-12-01T21:00:00\"",
                          "\"2026-12-01T21:00:00+0200\"",
                          "\"2026-12-01T21:00:00.Z\"",
                          "{}",
                          "\"2026-12-01T21:00:00.123456789012345678901234Z\""};
  for (size_t i = 0; i < PX_ARRAY_SIZE(starts); i++) {
    char doc[200];
    int n = snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"started\":%s}", starts[i]);
    cr_assert_eq(px_reg_record_parse(doc, (size_t)n, &r, why, sizeof(why)), 0, "%s: %s", starts[i], why);
    cr_expect_str_eq(r.started, "", "kept %s", starts[i]);
    px_reg_record_free(&r);
  }
  cr_assert_eq(
      px_reg_record_parse(P("{\"address\":\"1.2.3.4:5\",\"started\":\"2026-12-01t21:00:00z\"}"), &r, NULL, 0),
      0, "why may be NULL");
  cr_expect_str_eq(r.started, "2026-12-01t21:00:00z");
  px_reg_record_free(&r);
}

/* The record is refused with rc, and why holds `reason`. */
static void refused(const char *json, size_t n, int rc, const char *reason) {
  px_reg_record_t r;
  char why[200] = "";
  memset(&r, 0x5a, sizeof(r));
  cr_expect_eq(px_reg_record_parse(json, n, &r, why, sizeof(why)), rc, "%.*s: got '%s'", (int)PX_MIN(n, 200),
               json, why);
  cr_expect(strstr(why, reason) != NULL, "%.*s: why '%s', wanted '%s'", (int)PX_MIN(n, 200), json, why,
            reason);
  cr_expect_null(r.mem, "a refused record holds nothing");
  cr_expect_eq(r.nlabels, 0);
  px_reg_record_free(&r);
}

static void refused_s(const char *json, int rc, const char *reason) {
  refused(json, strlen(json), rc, reason);
}

static void addr_refused(const char *addr, const char *reason) {
  char doc[300];
  int n = snprintf(doc, sizeof(doc), "{\"address\":\"%s\"}", addr);
  refused(doc, (size_t)n, PX_EPARSE, reason);
}

Test(reg_record, refused_documents) {
  refused("", 0, PX_EPARSE, "empty value");
  refused_s("not json", PX_EPARSE, "not JSON");
  refused_s("{\"address\":\"1.2.3.4:5\",}", PX_EPARSE, "not JSON");
  refused_s("{\"address\":\"1.2.3.4:5\",\"address\":\"1.2.3.4:6\"}", PX_EPARSE, "not JSON"); /* duplicate */
  refused_s("[{\"address\":\"1.2.3.4:5\"}]", PX_EPARSE, "not a JSON object");
  refused_s("\"1.2.3.4:5\"", PX_EPARSE, "not a JSON object");
  refused_s("{}", PX_EPARSE, "no address");
  refused_s("{\"address\":null}", PX_EPARSE, "no address");
  refused_s("{\"Address\":\"1.2.3.4:5\"}", PX_EPARSE, "no address");
  refused_s("{\"address\":5}", PX_EPARSE, "address is not a string");
  refused_s("{\"address\":[\"1.2.3.4:5\"]}", PX_EPARSE, "address is not a string");

  char *big = px_malloc(PX_REG_MAX_VALUE + 64);
  int n = snprintf(big, PX_REG_MAX_VALUE + 64, "{\"address\":\"1.2.3.4:5\",\"pad\":\"%0*d\"}",
                   (int)PX_REG_MAX_VALUE - 32, 0);
  cr_assert_eq((size_t)n, PX_REG_MAX_VALUE, "exactly the bound");
  px_reg_record_t r;
  cr_expect_eq(px_reg_record_parse(big, (size_t)n, &r, NULL, 0), 0);
  px_reg_record_free(&r);
  n = snprintf(big, PX_REG_MAX_VALUE + 64, "{\"address\":\"1.2.3.4:5\",\"pad\":\"%0*d\"}",
               (int)PX_REG_MAX_VALUE - 31, 0);
  refused(big, (size_t)n, PX_ETOOLARGE, "more than 65536");
  free(big);
}

Test(reg_record, refused_addresses) {
  addr_refused("", "address: empty");
  addr_refused("10.0.0.1", "not HOST:PORT");
  addr_refused("10.0.0.1:", "port '' is not a number");
  addr_refused("10.0.0.1:0", "port 0 is out of range");
  addr_refused("10.0.0.1:65536", "port 65536 is out of range");
  addr_refused("10.0.0.1:99999", "port 99999 is out of range");
  addr_refused("10.0.0.1:123456", "is not a number 1..65535");
  addr_refused("10.0.0.1:080", "leading 0");
  addr_refused("10.0.0.1:00", "leading 0");
  addr_refused("10.0.0.1:+80", "port '+80' is not a number");
  addr_refused("10.0.0.1:-1", "is not a number");
  addr_refused("10.0.0.1:8a", "is not a number");
  addr_refused("10.0.0.1:80 ", "is not a number");
  addr_refused(":80", "no host");
  addr_refused(" 10.0.0.1:80", "not an IPv4 address");
  addr_refused("10.0.0.256:80", "not an IPv4 address");
  addr_refused("10.0.0:80", "not an IPv4 address");
  addr_refused("10.0.0.1.5:80", "not an IPv4 address");
  addr_refused("010.0.0.1:80", "not an IPv4 address");
  addr_refused("0x0a.0.0.1:80", "is a name");
  addr_refused("167772161:80", "not an IPv4 address");
  addr_refused("example.com:80", "is a name, not an IP address");
  addr_refused("web:80", "is a name");
  addr_refused("LOCALHOST:80", "is a name");
  addr_refused("localhost.:80", "is a name");
  addr_refused("::1:80", "not HOST:PORT");
  addr_refused("::1", "not HOST:PORT");
  addr_refused("[::1]", "not HOST:PORT");
  addr_refused("[::1]80", "not HOST:PORT");
  addr_refused("[::1]:", "port '' is not a number");
  addr_refused("[::1]:0", "out of range");
  addr_refused("[]:80", "not an IPv6 address");
  addr_refused("[::g]:80", "not an IPv6 address");
  addr_refused("[1.2.3.4]:80", "not an IPv6 address");
  addr_refused("[fe80::1%eth0]:80", "not an IPv6 address");
  addr_refused("[::1:80", "not HOST:PORT");
  addr_refused("::1]:80", "not HOST:PORT");
  addr_refused("[[::1]]:80", "not an IPv6 address");
  addr_refused("[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:80",
               "longer than 63 bytes");
  refused_s("{\"address\":\"1.2.3.4\\u0000:80\"}", PX_EPARSE, "holds a NUL");
}

Test(reg_record, addresses_taken_and_canonical) {
  struct {
    const char *in, *canon;
  } ok[] = {
      {"10.0.0.1:8080", "10.0.0.1:8080"},
      {"0.0.0.0:1", "0.0.0.0:1"},
      {"255.255.255.255:65535", "255.255.255.255:65535"},
      {"localhost:8080", "localhost:8080"},
      {"[::1]:80", "[::1]:80"},
      {"[::]:80", "[::]:80"},
      {"[2001:DB8:0:0:0:0:0:1]:443", "[2001:db8::1]:443"},
      {"[2001:0db8:0000:0000:0000:0000:0000:0001]:443", "[2001:db8::1]:443"},
      {"[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80"},
      {"[0000:0000:0000:0000:0000:ffff:255.255.255.255]:65535", "[::ffff:255.255.255.255]:65535"},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(ok); i++) {
    char canon[PX_REG_ADDR_MAX], why[160] = "";
    cr_expect_eq(px_reg_address_check(P(ok[i].in), canon, why, sizeof(why)), 0, "%s: %s", ok[i].in, why);
    cr_expect_str_eq(canon, ok[i].canon);
    cr_expect_eq(px_reg_address_check(P(ok[i].in), NULL, NULL, 0), 0, "canon may be NULL");
    /* and a record holds the canonical spelling */
    char doc[200];
    int n = snprintf(doc, sizeof(doc), "{\"address\":\"%s\"}", ok[i].in);
    px_reg_record_t r;
    cr_assert_eq(px_reg_record_parse(doc, (size_t)n, &r, why, sizeof(why)), 0, "%s", why);
    cr_expect_str_eq(r.address, ok[i].canon);
    px_reg_record_free(&r);
  }
}

Test(reg_record, refused_weights) {
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":\"2\"}", PX_EPARSE, "weight is not an integer");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":1.5}", PX_EPARSE, "weight is not an integer");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":true}", PX_EPARSE, "weight is not an integer");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":1e30}", PX_EPARSE, "weight is not an integer");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":0}", PX_EPARSE, "weight 0 is below 1");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":-3}", PX_EPARSE, "weight -3 is below 1");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":129}", PX_EPARSE, "weight 129 is above 128");
  refused_s("{\"address\":\"1.2.3.4:5\",\"weight\":10000}", PX_EPARSE, "the balancer's limit");
  px_reg_record_t r;
  cr_expect_eq(px_reg_record_parse(P("{\"address\":\"1.2.3.4:5\",\"weight\":128}"), &r, NULL, 0), 0);
  cr_expect_eq(r.weight, 128);
  px_reg_record_free(&r);
}

/* A record with `n` labels "kI": "vI". */
static size_t many_labels(char *doc, size_t cap, int n) {
  size_t at = (size_t)snprintf(doc, cap, "{\"address\":\"1.2.3.4:5\",\"labels\":{");
  for (int i = 0; i < n; i++)
    at += (size_t)snprintf(doc + at, cap - at, "%s\"k%d\":\"v%d\"", i ? "," : "", i, i);
  at += (size_t)snprintf(doc + at, cap - at, "}}");
  return at;
}

Test(reg_record, labels_bounds_and_types) {
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":[]}", PX_EPARSE, "labels is not an object");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":\"zone=a\"}", PX_EPARSE, "labels is not an object");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":1}}", PX_EPARSE,
            "label 'a' is not a string (number)");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":\"x\",\"b\":true}}", PX_EPARSE,
            "label 'b' is not a string (boolean)");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":null}}", PX_EPARSE,
            "label 'a' is not a string (null)");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":{\"b\":\"c\"}}}", PX_EPARSE,
            "label 'a' is not a string (object)");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":[\"b\"]}}", PX_EPARSE,
            "label 'a' is not a string (array)");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"\":\"x\"}}", PX_EPARSE, "empty key");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\\u0000b\":\"x\"}}", PX_EPARSE,
            "label key holds a NUL");
  refused_s("{\"address\":\"1.2.3.4:5\",\"labels\":{\"a\":\"x\\u0000\"}}", PX_EPARSE,
            "label 'a' holds a NUL");

  static char doc[8192];
  px_reg_record_t r;
  size_t n = many_labels(doc, sizeof(doc), PX_REG_MAX_LABELS);
  cr_assert_eq(px_reg_record_parse(doc, n, &r, NULL, 0), 0, "32 labels");
  cr_expect_eq(r.nlabels, 32);
  cr_expect_str_eq(r.labels[31].key, "k31");
  cr_expect_str_eq(r.labels[31].value, "v31");
  px_reg_record_free(&r);
  n = many_labels(doc, sizeof(doc), PX_REG_MAX_LABELS + 1);
  refused(doc, n, PX_ETOOLARGE, "33 labels, more than 32");

  char k128[129], k129[130];
  memset(k128, 'k', 128);
  k128[128] = '\0';
  memset(k129, 'k', 129);
  k129[129] = '\0';
  n = (size_t)snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"labels\":{\"%s\":\"%s\"}}", k128,
                       k128);
  cr_assert_eq(px_reg_record_parse(doc, n, &r, NULL, 0), 0, "128-byte key and value");
  cr_expect_eq(strlen(r.labels[0].key), 128);
  px_reg_record_free(&r);
  n = (size_t)snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"labels\":{\"%s\":\"v\"}}", k129);
  refused(doc, n, PX_ETOOLARGE, "longer than 128 bytes");
  n = (size_t)snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"labels\":{\"k\":\"%s\"}}", k129);
  refused(doc, n, PX_ETOOLARGE, "label 'k' has a value longer than 128 bytes");
  /* bytes, not characters: 64 two-byte characters are 128 bytes, 65 are too many */
  char u[300] = "";
  for (int i = 0; i < 65; i++) strcat(u, "\xc3\xa9");
  n = (size_t)snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"labels\":{\"k\":\"%s\"}}", u);
  refused(doc, n, PX_ETOOLARGE, "longer than 128 bytes");
  u[128] = '\0';
  n = (size_t)snprintf(doc, sizeof(doc), "{\"address\":\"1.2.3.4:5\",\"labels\":{\"k\":\"%s\"}}", u);
  cr_assert_eq(px_reg_record_parse(doc, n, &r, NULL, 0), 0);
  px_reg_record_free(&r);

  /* empty values are values */
  cr_assert_eq(
      px_reg_record_parse(P("{\"address\":\"1.2.3.4:5\",\"labels\":{\"canary\":\"\"}}"), &r, NULL, 0), 0);
  cr_expect_str_eq(r.labels[0].value, "");
  px_reg_record_free(&r);
  cr_assert_eq(px_reg_record_parse(P("{\"address\":\"1.2.3.4:5\",\"labels\":{}}"), &r, NULL, 0), 0);
  cr_expect_eq(r.nlabels, 0);
  px_reg_record_free(&r);
}

Test(reg_record, why_is_bounded) {
  char why[8];
  px_reg_record_t r;
  cr_expect_eq(px_reg_record_parse(P("{\"address\":\"example.com:80\"}"), &r, why, sizeof(why)), PX_EPARSE);
  cr_expect_eq(strlen(why), 7);
  cr_expect_eq(px_reg_record_parse(P("{}"), &r, why, 0), PX_EPARSE);
}

/* ---- labels ---- */

Test(reg_labels, match) {
  px_reg_label_t have[] = {{"zone", "a"}, {"tier", "gold"}, {"canary", ""}};
  px_reg_record_t r = {.address = "1.2.3.4:5", .weight = 1, .labels = have, .nlabels = 3};
  px_reg_record_t none = {.address = "1.2.3.4:5", .weight = 1};

  cr_expect(px_reg_labels_match(&r, NULL, 0), "an empty selector takes all");
  cr_expect(px_reg_labels_match(&none, NULL, 0));
  px_reg_label_t s1[] = {{"zone", "a"}};
  cr_expect(px_reg_labels_match(&r, s1, 1));
  cr_expect(!px_reg_labels_match(&none, s1, 1));
  px_reg_label_t s2[] = {{"tier", "gold"}, {"zone", "a"}};
  cr_expect(px_reg_labels_match(&r, s2, 2), "order does not matter");
  px_reg_label_t s3[] = {{"zone", "a"}, {"tier", "silver"}};
  cr_expect(!px_reg_labels_match(&r, s3, 2), "every pair must match");
  px_reg_label_t s4[] = {{"region", "eu"}};
  cr_expect(!px_reg_labels_match(&r, s4, 1), "a key the record lacks");
  px_reg_label_t s5[] = {{"Zone", "a"}};
  cr_expect(!px_reg_labels_match(&r, s5, 1), "keys are case-sensitive");
  px_reg_label_t s6[] = {{"zone", "A"}};
  cr_expect(!px_reg_labels_match(&r, s6, 1), "values are case-sensitive");
  px_reg_label_t s7[] = {{"canary", ""}};
  cr_expect(px_reg_labels_match(&r, s7, 1), "an empty value matches an empty value");
  px_reg_label_t s8[] = {{"zone", ""}};
  cr_expect(!px_reg_labels_match(&r, s8, 1), "but not any value");
  px_reg_label_t s9[] = {{"zone", "a"}, {"zone", "a"}};
  cr_expect(px_reg_labels_match(&r, s9, 2));
  px_reg_label_t s10[] = {{"zone", "ab"}};
  cr_expect(!px_reg_labels_match(&r, s10, 1), "no prefix matches");
}

/* ---- keys ---- */

static void expect_key(const char *prefix, const char *service, const char *id, const char *want) {
  px_buf_t b;
  px_buf_init(&b, 0);
  cr_assert_eq(px_reg_key(&b, prefix, service, id), 0, "%s %s %s", prefix, service, id);
  expect_buf(&b, want);
  px_buf_free(&b);
}

Test(reg_keys, build) {
  expect_key("/outrigger", "web", "h1-0123456789ab", "/outrigger/services/web/h1-0123456789ab");
  expect_key("/outrigger/", "web", "h1", "/outrigger/services/web/h1");
  expect_key("/outrigger///", "web", "h1", "/outrigger/services/web/h1");
  expect_key("/", "web", "h1", "/services/web/h1");
  expect_key("", "web", "h1", "/services/web/h1");
  expect_key(NULL, "web", "h1", "/services/web/h1");
  expect_key("/a/b", "svc.v2", "x_y", "/a/b/services/svc.v2/x_y");

  px_buf_t b;
  px_buf_init(&b, 0);
  cr_expect_eq(px_reg_key(&b, "/o", "", "id"), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", NULL, "id"), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", "a/b", "id"), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", "web", ""), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", "web", NULL), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", "web", "a/b"), PX_EUSAGE);
  cr_expect_eq(px_reg_key(&b, "/o", "web", "/"), PX_EUSAGE);
  cr_expect_eq(b.len, 0, "nothing written when refused");
  px_buf_free(&b);
}

Test(reg_keys, prefix_normal_form) {
  cr_expect_eq(px_reg_prefix_len("/outrigger"), 10);
  cr_expect_eq(px_reg_prefix_len("/outrigger/"), 10);
  cr_expect_eq(px_reg_prefix_len("/outrigger///"), 10);
  cr_expect_eq(px_reg_prefix_len("/a/b/"), 4);
  cr_expect_eq(px_reg_prefix_len("/"), 0);
  cr_expect_eq(px_reg_prefix_len("//"), 0);
  cr_expect_eq(px_reg_prefix_len(""), 0);
  cr_expect_eq(px_reg_prefix_len(NULL), 0);
}

static void expect_end(const char *p, size_t n, const char *want, size_t wn) {
  px_buf_t b;
  px_buf_init(&b, 0);
  px_reg_prefix_end(&b, p, n);
  cr_expect(b.len == wn && memcmp(b.data, want, wn) == 0, "end of '%.*s'", (int)n, p);
  px_buf_free(&b);
}

Test(reg_keys, ranges) {
  px_buf_t s, e;
  px_buf_init(&s, 0);
  px_buf_init(&e, 0);
  cr_assert_eq(px_reg_service_range(&s, &e, "/outrigger/", "web"), 0);
  expect_buf(&s, "/outrigger/services/web/");
  expect_buf(&e, "/outrigger/services/web0");
  s.len = e.len = 0;
  cr_expect_eq(px_reg_service_range(&s, &e, "/outrigger", ""), PX_EUSAGE);
  cr_expect_eq(px_reg_service_range(&s, &e, "/outrigger", "a/b"), PX_EUSAGE);
  cr_expect(s.len == 0 && e.len == 0);
  /* appended after what the buffers hold, range_end computed over the new part only */
  px_buf_append_cstr(&s, "key=");
  px_buf_append_cstr(&e, "end=");
  cr_assert_eq(px_reg_service_range(&s, &e, "/o", "api"), 0);
  expect_buf(&s, "key=/o/services/api/");
  expect_buf(&e, "end=/o/services/api0");
  px_buf_free(&s);
  px_buf_free(&e);

  expect_end("abc", 3, "abd", 3);
  expect_end("a\xfe", 2, "a\xff", 2);
  expect_end("ab\xff", 3, "ac", 2);
  expect_end("a\xff\xff", 3, "b", 1);
  expect_end("\xff\xff", 2, "\0", 1);
  expect_end("", 0, "\0", 1);
  expect_end("/", 1, "0", 1);
}

static void key_ok(const char *key, const char *prefix, const char *svc, const char *id) {
  px_str_t s, i;
  cr_assert_eq(px_reg_key_parse(P(key), prefix, &s, &i), 0, "%s under %s", key, prefix);
  cr_expect(s.n == strlen(svc) && memcmp(s.p, svc, s.n) == 0, "%s: service %.*s", key, (int)s.n, s.p);
  cr_expect(i.n == strlen(id) && memcmp(i.p, id, i.n) == 0, "%s: id %.*s", key, (int)i.n, i.p);
}

static void key_bad(const char *key, size_t n, const char *prefix) {
  px_str_t s, i;
  cr_expect_eq(px_reg_key_parse(key, n, prefix, &s, &i), PX_EPARSE, "took '%.*s' under %s", (int)n, key,
               prefix);
}

Test(reg_keys, parse) {
  key_ok("/outrigger/services/web/h1-0123456789ab", "/outrigger", "web", "h1-0123456789ab");
  key_ok("/outrigger/services/web/h1", "/outrigger/", "web", "h1");
  key_ok("/outrigger/services/web/h1", "/outrigger//", "web", "h1");
  key_ok("/services/web/h1", "", "web", "h1");
  key_ok("/services/web/h1", "/", "web", "h1");
  key_ok("/services/web/h1", NULL, "web", "h1");
  key_ok("/o/services/a.b-c_d/ID.with.dots", "/o", "a.b-c_d", "ID.with.dots");

  key_bad(P("/outrigger/services/web/"), "/outrigger");    /* empty id */
  key_bad(P("/outrigger/services/web"), "/outrigger");     /* no id at all */
  key_bad(P("/outrigger/services/web/a/b"), "/outrigger"); /* an id with '/' */
  key_bad(P("/outrigger/services/web/a/"), "/outrigger");
  key_bad(P("/outrigger/services//h1"), "/outrigger"); /* empty service */
  key_bad(P("/outrigger/services/"), "/outrigger");
  key_bad(P("/outrigger/services"), "/outrigger");
  key_bad(P("/outrigger/service/web/h1"), "/outrigger");
  key_bad(P("/outrigger/web/h1"), "/outrigger");
  key_bad(P("/other/services/web/h1"), "/outrigger");              /* a different prefix */
  key_bad(P("/outriggerX/services/web/h1"), "/outrigger");         /* the prefix is a whole segment */
  key_bad(P("/outrigger/services/web/h1"), "/outrigger/services"); /* ... and the whole of it */
  key_bad(P("/x/outrigger/services/web/h1"), "/outrigger");
  key_bad(P("outrigger/services/web/h1"), "/outrigger");
  key_bad(P("/services/web/h1"), "/outrigger");
  key_bad(P("/outrigger/services/web/h1"), ""); /* the empty prefix is not any prefix */
  key_bad(P(""), "/outrigger");
  key_bad(P("/"), "");
  key_bad("/o/services/web/h\0x", 18, "/o"); /* NULs are not for ids */
  key_bad("/o/services/w\0b/h1", 18, "/o");

  /* what px_reg_key builds, px_reg_key_parse takes apart */
  px_buf_t b;
  px_buf_init(&b, 0);
  cr_assert_eq(px_reg_key(&b, "/outrigger/", "payments", "db-7-5e0c29d4a1b3"), 0);
  px_str_t s, i;
  cr_assert_eq(px_reg_key_parse(b.data, b.len, "/outrigger", &s, &i), 0);
  cr_expect(s.n == 8 && memcmp(s.p, "payments", 8) == 0);
  cr_expect(i.n == 17 && memcmp(i.p, "db-7-5e0c29d4a1b3", 17) == 0);
  px_buf_free(&b);
}

/* ---- instance IDs ---- */

static void expected_id(const char *host_part, const char *h, const char *a, const char *s, char *out) {
  char in[512];
  int n = snprintf(in, sizeof(in), "%s|%s|%s", h, a, s);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)in, (size_t)n, md);
  int at = sprintf(out, "%s-", host_part);
  for (int i = 0; i < 6; i++) at += sprintf(out + at, "%02x", md[i]);
}

static int id_charset_ok(const char *id) {
  for (const char *p = id; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) return 0;
  return 1;
}

Test(reg_id, shape_and_stability) {
  char id[PX_REG_ID_MAX], again[PX_REG_ID_MAX], want[128];
  px_reg_instance_id("web-1", "10.0.0.1:8080", "web", id);
  expected_id("web-1", "web-1", "10.0.0.1:8080", "web", want);
  cr_expect_str_eq(id, want);
  cr_expect_eq(strlen(id), 5 + 1 + 12);
  px_reg_instance_id("web-1", "10.0.0.1:8080", "web", again);
  cr_expect_str_eq(id, again, "the same configuration, the same ID");

  /* each input changes the ID */
  px_reg_instance_id("web-2", "10.0.0.1:8080", "web", again);
  cr_expect_str_neq(id, again);
  px_reg_instance_id("web-1", "10.0.0.1:8081", "web", again);
  cr_expect_str_neq(id, again);
  px_reg_instance_id("web-1", "10.0.0.1:8080", "api", again);
  cr_expect_str_neq(id, again);
  /* the separator keeps the fields apart: "a|b|c" is not "a|b|c" shifted */
  px_reg_instance_id("h", "1.2.3.4:5", "ab", id);
  px_reg_instance_id("h", "1.2.3.4:5a", "b", again);
  cr_expect_str_neq(id, again);
}

Test(reg_id, hostname_cleaned) {
  struct {
    const char *host, *part;
  } cases[] = {
      {"Web_1.Example.COM", "web-1-example-com"},
      {"web-1", "web-1"},
      {"a..b", "a-b"},
      {"-lead-and-trail-", "lead-and-trail"},
      {"___", "host"},
      {"", "host"},
      {"ünïcode", "n-code"},
      {"ip-10-0-0-1.eu-west-1.compute.internal", "ip-10-0-0-1-eu-west-1-compute-internal"},
      {"a-very-long-hostname-that-goes-on-and-on.and.on.example.com",
       "a-very-long-hostname-that-goes-on-and-on"},
      {"abcdefghijabcdefghijabcdefghijabcdefghi.x", "abcdefghijabcdefghijabcdefghijabcdefghi"},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    char id[PX_REG_ID_MAX], want[128];
    px_reg_instance_id(cases[i].host, "10.0.0.1:8080", "web", id);
    expected_id(cases[i].part, cases[i].host, "10.0.0.1:8080", "web", want);
    cr_expect_str_eq(id, want, "host '%s'", cases[i].host);
    cr_expect(id_charset_ok(id), "%s", id);
    cr_expect_lt(strlen(id), PX_REG_ID_MAX);
    cr_expect_leq(strlen(cases[i].part), 40);
    /* and it makes a key */
    px_buf_t b;
    px_buf_init(&b, 0);
    cr_expect_eq(px_reg_key(&b, "/outrigger", "web", id), 0);
    px_buf_free(&b);
  }
  /* hostnames that clean up alike still get their own IDs (the hash is of the raw name) */
  char a[PX_REG_ID_MAX], b[PX_REG_ID_MAX];
  px_reg_instance_id("web.1", "10.0.0.1:8080", "web", a);
  px_reg_instance_id("web_1", "10.0.0.1:8080", "web", b);
  cr_expect_eq(strncmp(a, b, 6), 0);
  cr_expect_str_neq(a, b);
}

/* ---- the discovered set ---- */

static px_reg_set_t *new_set(const px_reg_label_t *sel, size_t nsel) {
  px_reg_set_t *s = NULL;
  cr_assert_eq(px_reg_set_new(&s, "/outrigger/", "web", sel, nsel), 0);
  return s;
}

static px_reg_outcome_t put(px_reg_set_t *s, const char *id, const char *value, int64_t rev) {
  char key[256];
  snprintf(key, sizeof(key), "/outrigger/services/web/%s", id);
  px_reg_event_t ev = {.key = key,
                       .klen = strlen(key),
                       .value = value,
                       .vlen = value ? strlen(value) : 0,
                       .mod_revision = rev};
  return px_reg_set_apply(s, &ev, NULL, 0);
}

static px_reg_outcome_t del(px_reg_set_t *s, const char *id, int64_t rev) {
  char key[256];
  snprintf(key, sizeof(key), "/outrigger/services/web/%s", id);
  px_reg_event_t ev = {.is_delete = 1, .key = key, .klen = strlen(key), .mod_revision = rev};
  return px_reg_set_apply(s, &ev, NULL, 0);
}

/* The set's endpoints as "addr*w addr*w". */
static const char *eps(px_reg_set_t *s) {
  static char out[4096];
  size_t n, at = 0;
  const px_reg_endpoint_t *e = px_reg_set_endpoints(s, &n);
  out[0] = '\0';
  for (size_t i = 0; i < n; i++)
    at += (size_t)snprintf(out + at, sizeof(out) - at, "%s%s*%d", i ? " " : "", e[i].address, e[i].weight);
  return out;
}

#define REC(addr, extra) "{\"address\":\"" addr "\"" extra "}"
#define ZONE_A ",\"labels\":{\"zone\":\"a\"}"
#define ZONE_B ",\"labels\":{\"zone\":\"b\"}"

Test(reg_set, new_refusals) {
  px_reg_set_t *s = (px_reg_set_t *)1;
  cr_expect_eq(px_reg_set_new(&s, "/o", "", NULL, 0), PX_EUSAGE);
  cr_expect_null(s);
  cr_expect_eq(px_reg_set_new(&s, "/o", NULL, NULL, 0), PX_EUSAGE);
  cr_expect_eq(px_reg_set_new(&s, "/o", "a/b", NULL, 0), PX_EUSAGE);
  px_reg_label_t many[PX_REG_MAX_LABELS + 1];
  for (size_t i = 0; i < PX_ARRAY_SIZE(many); i++) many[i] = (px_reg_label_t){"k", "v"};
  cr_expect_eq(px_reg_set_new(&s, "/o", "web", many, PX_REG_MAX_LABELS + 1), PX_EUSAGE);
  cr_expect_eq(px_reg_set_new(&s, "/o", "web", many, PX_REG_MAX_LABELS), 0);
  px_reg_set_free(s);
  px_reg_label_t empty_key[] = {{"", "v"}};
  cr_expect_eq(px_reg_set_new(&s, "/o", "web", empty_key, 1), PX_EUSAGE);
  char k129[130];
  memset(k129, 'k', 129);
  k129[129] = '\0';
  px_reg_label_t long_key[] = {{k129, "v"}}, long_val[] = {{"k", k129}};
  cr_expect_eq(px_reg_set_new(&s, "/o", "web", long_key, 1), PX_EUSAGE);
  cr_expect_eq(px_reg_set_new(&s, "/o", "web", long_val, 1), PX_EUSAGE);
  px_reg_set_free(NULL);
}

Test(reg_set, put_update_delete) {
  px_reg_label_t sel[] = {{"zone", "a"}};
  px_reg_set_t *s = new_set(sel, 1);
  cr_expect_str_eq(eps(s), "");
  cr_expect(px_reg_set_changed(s), "the first call says changed: the caller installs the first list");
  cr_expect(!px_reg_set_changed(s));

  cr_expect_eq(put(s, "a1", REC("10.0.0.1:80", ZONE_A), 2), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1");
  cr_expect(px_reg_set_changed(s));
  cr_expect(!px_reg_set_changed(s), "asked twice, changed once");

  /* a record that does not match is held but is no endpoint */
  cr_expect_eq(put(s, "b1", REC("10.0.0.2:80", ZONE_B), 3), PX_REG_ADDED);
  cr_expect_eq(px_reg_set_count(s), 2);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1");
  cr_expect(!px_reg_set_changed(s));

  /* an update that changes the weight */
  cr_expect_eq(put(s, "a1", REC("10.0.0.1:80", ZONE_A ",\"weight\":5"), 4), PX_REG_UPDATED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*5");
  cr_expect(px_reg_set_changed(s));
  /* an update that changes nothing the endpoints show (a restart: new "started") */
  cr_expect_eq(
      put(s, "a1", REC("10.0.0.1:80", ZONE_A ",\"weight\":5,\"started\":\"2026-12-01T21:00:00Z\""), 5),
      PX_REG_UPDATED);
  cr_expect(!px_reg_set_changed(s));
  /* the non-matching record comes to match */
  cr_expect_eq(put(s, "b1", REC("10.0.0.2:80", ZONE_A), 6), PX_REG_UPDATED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*5 10.0.0.2:80*1");
  cr_expect(px_reg_set_changed(s));
  /* a record that moves */
  cr_expect_eq(put(s, "b1", REC("10.0.0.3:80", ZONE_A), 7), PX_REG_UPDATED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*5 10.0.0.3:80*1");
  cr_expect(px_reg_set_changed(s));

  cr_expect_eq(del(s, "a1", 8), PX_REG_REMOVED);
  cr_expect_str_eq(eps(s), "10.0.0.3:80*1");
  cr_expect_eq(px_reg_set_count(s), 1);
  cr_expect(px_reg_set_changed(s));
  cr_expect_eq(del(s, "a1", 9), PX_REG_IGNORED, "a delete of what is not held");
  cr_expect_eq(del(s, "never", 9), PX_REG_IGNORED);
  cr_expect(!px_reg_set_changed(s));

  /* re-put after delete */
  cr_expect_eq(put(s, "a1", REC("10.0.0.1:80", ZONE_A), 10), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1 10.0.0.3:80*1");
  cr_expect(px_reg_set_changed(s));
  cr_expect_eq(del(s, "b1", 11), PX_REG_REMOVED);
  cr_expect_eq(del(s, "a1", 12), PX_REG_REMOVED);
  cr_expect_str_eq(eps(s), "");
  cr_expect_eq(px_reg_set_count(s), 0);
  cr_expect(px_reg_set_changed(s));
  px_reg_set_free(s);
}

Test(reg_set, stale_events_ignored) {
  px_reg_set_t *s = new_set(NULL, 0);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ",\"weight\":2"), 10), PX_REG_ADDED);
  cr_expect_eq(put(s, "a", REC("10.0.0.9:80", ""), 9), PX_REG_IGNORED, "older than what is held");
  cr_expect_eq(put(s, "a", REC("10.0.0.9:80", ""), 10), PX_REG_IGNORED, "the same write replayed");
  cr_expect_eq(del(s, "a", 9), PX_REG_IGNORED, "a delete from before the put");
  cr_expect_str_eq(eps(s), "10.0.0.1:80*2");
  /* revision 0: unknown, always taken */
  cr_expect_eq(put(s, "a", REC("10.0.0.5:80", ""), 0), PX_REG_UPDATED);
  cr_expect_str_eq(eps(s), "10.0.0.5:80*1");
  cr_expect_eq(put(s, "a", REC("10.0.0.6:80", ""), 3), PX_REG_UPDATED, "after a 0, any revision is news");
  cr_expect_eq(del(s, "a", 0), PX_REG_REMOVED);
  px_reg_set_free(s);
}

Test(reg_set, skipped_events) {
  px_reg_set_t *s = new_set(NULL, 0);
  char why[200];
  const char *keys[] = {
      "/outrigger/services/api/a1",  /* another service */
      "/outrigger/services/web/",    /* empty id */
      "/outrigger/services/web/a/b", /* extra segment */
      "/other/services/web/a1",      /* another prefix */
      "/outrigger/services/webx/a1", "/outrigger/services/we/a1",
  };
  const char *reasons[] = {"key is of service 'api', not 'web'",
                           "key is not /outrigger/services/SERVICE/ID",
                           "key is not",
                           "key is not",
                           "of service 'webx'",
                           "of service 'we'"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(keys); i++) {
    px_reg_event_t ev = {.key = keys[i],
                         .klen = strlen(keys[i]),
                         .value = REC("10.0.0.1:80", ""),
                         .vlen = strlen(REC("10.0.0.1:80", "")),
                         .mod_revision = 5};
    why[0] = '\0';
    cr_expect_eq(px_reg_set_apply(s, &ev, why, sizeof(why)), PX_REG_SKIPPED, "%s", keys[i]);
    cr_expect(strstr(why, reasons[i]) != NULL, "%s: %s", keys[i], why);
    ev.is_delete = 1;
    cr_expect_eq(px_reg_set_apply(s, &ev, NULL, 0), PX_REG_SKIPPED, "delete %s", keys[i]);
  }
  px_reg_event_t nokey = {.key = NULL};
  cr_expect_eq(px_reg_set_apply(s, &nokey, NULL, 0), PX_REG_SKIPPED);
  cr_expect_eq(px_reg_set_count(s), 0);

  /* a value that does not parse, for a new key: skipped, with the reason */
  px_reg_event_t bad = {.key = "/outrigger/services/web/x",
                        .klen = 25,
                        .value = "{\"address\":\"db:5432\"}",
                        .vlen = 21,
                        .mod_revision = 6};
  cr_expect_eq(px_reg_set_apply(s, &bad, why, sizeof(why)), PX_REG_SKIPPED);
  cr_expect(strstr(why, "address: 'db' is a name") != NULL, "%s", why);
  cr_expect_eq(put(s, "y", "", 6), PX_REG_SKIPPED, "an empty value (etcd leaves it out)");
  cr_expect_eq(put(s, "y", NULL, 6), PX_REG_SKIPPED);
  cr_expect_eq(px_reg_set_count(s), 0);
  cr_expect(px_reg_set_changed(s));

  /* for a key already held: the old record goes too, since etcd no longer has it */
  cr_expect_eq(put(s, "x", REC("10.0.0.1:80", ""), 7), PX_REG_ADDED);
  cr_expect_eq(put(s, "z", REC("10.0.0.2:80", ""), 8), PX_REG_ADDED);
  cr_expect(px_reg_set_changed(s));
  cr_expect_eq(put(s, "x", REC("10.0.0.1:80", ",\"weight\":0"), 9), PX_REG_SKIPPED);
  cr_expect_eq(px_reg_set_count(s), 1);
  cr_expect_str_eq(eps(s), "10.0.0.2:80*1");
  cr_expect(px_reg_set_changed(s));
  /* and a good put brings it back */
  cr_expect_eq(put(s, "x", REC("10.0.0.1:80", ""), 10), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1 10.0.0.2:80*1");
  px_reg_set_free(s);
}

Test(reg_set, order_is_by_address_whatever_the_events) {
  const char *addrs[] = {"10.0.0.10:80",   "10.0.0.2:80",     "10.0.0.2:8080", "[::1]:80",
                         "localhost:9000", "192.168.1.1:443", "10.0.0.1:80",   "[2001:db8::1]:80"};
  /* byte order: ':' sorts after '0', so .10 comes before .1 */
  const char *want = "10.0.0.10:80*1 10.0.0.1:80*1 10.0.0.2:80*1 10.0.0.2:8080*1 192.168.1.1:443*1 "
                     "[2001:db8::1]:80*1 [::1]:80*1 localhost:9000*1";
  size_t n = PX_ARRAY_SIZE(addrs);
  uint64_t x = 88172645463325252ull;
  for (int round = 0; round < 50; round++) {
    size_t perm[8];
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates on a fixed xorshift sequence */
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t j = (size_t)(x % (i + 1)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    px_reg_set_t *s = new_set(NULL, 0);
    for (size_t i = 0; i < n; i++) {
      char id[16], val[128];
      snprintf(id, sizeof(id), "id%zu", perm[i]); /* ids unrelated to the address order */
      snprintf(val, sizeof(val), "{\"address\":\"%s\"}", addrs[perm[i]]);
      cr_assert_eq(put(s, id, val, (int64_t)i + 1), PX_REG_ADDED);
    }
    cr_expect_str_eq(eps(s), want, "round %d", round);
    size_t ne;
    const px_reg_endpoint_t *e = px_reg_set_endpoints(s, &ne);
    for (size_t i = 1; i < ne; i++) cr_expect_lt(strcmp(e[i - 1].address, e[i].address), 0);
    px_reg_set_free(s);
  }
}

Test(reg_set, shared_address_counts_once) {
  px_reg_set_t *s = new_set(NULL, 0);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ",\"weight\":2"), 1), PX_REG_ADDED);
  cr_expect_eq(put(s, "b", REC("10.0.0.1:80", ",\"weight\":7"), 2), PX_REG_ADDED);
  cr_expect_eq(put(s, "c", REC("10.0.0.1:80", ",\"weight\":3"), 3), PX_REG_ADDED);
  /* one spelling per address: the two IPv6 forms are one endpoint */
  cr_expect_eq(put(s, "d", REC("[2001:db8:0::1]:80", ""), 4), PX_REG_ADDED);
  cr_expect_eq(put(s, "e", REC("[2001:DB8::1]:80", ",\"weight\":4"), 5), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*7 [2001:db8::1]:80*4", "the highest weight");
  cr_expect(px_reg_set_changed(s));
  cr_expect_eq(del(s, "b", 6), PX_REG_REMOVED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*3 [2001:db8::1]:80*4");
  cr_expect(px_reg_set_changed(s));
  cr_expect_eq(del(s, "a", 7), PX_REG_REMOVED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*3 [2001:db8::1]:80*4");
  cr_expect(!px_reg_set_changed(s), "the weight-2 record going changes nothing");
  px_reg_set_free(s);
}

Test(reg_set, clear_and_relist) {
  px_reg_set_t *s = new_set(NULL, 0);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ""), 2), PX_REG_ADDED);
  cr_expect_eq(put(s, "b", REC("10.0.0.2:80", ""), 3), PX_REG_ADDED);
  cr_expect(px_reg_set_changed(s));
  /* re-listed at a later revision with the same records: no change */
  px_reg_set_clear(s);
  cr_expect_eq(px_reg_set_count(s), 0);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ""), 2), PX_REG_ADDED);
  cr_expect_eq(put(s, "b", REC("10.0.0.2:80", ""), 3), PX_REG_ADDED);
  cr_expect(!px_reg_set_changed(s));
  /* re-listed after b lapsed while the watch was down: b must not linger */
  px_reg_set_clear(s);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ""), 2), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1");
  cr_expect(px_reg_set_changed(s));
  /* after a clear, revisions start over: an older one is taken */
  px_reg_set_clear(s);
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ""), 1), PX_REG_ADDED);
  px_reg_set_free(s);
}

Test(reg_set, selector_is_copied) {
  char key[8] = "zone", val[8] = "a";
  px_reg_label_t sel[] = {{key, val}};
  px_reg_set_t *s = new_set(sel, 1);
  strcpy(val, "b");
  cr_expect_eq(put(s, "a", REC("10.0.0.1:80", ZONE_A), 1), PX_REG_ADDED);
  cr_expect_eq(put(s, "b", REC("10.0.0.2:80", ZONE_B), 2), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1");
  px_reg_set_free(s);
  /* several pairs: all must match */
  px_reg_label_t two[] = {{"zone", "a"}, {"tier", "gold"}};
  s = new_set(two, 2);
  cr_expect_eq(
      put(s, "a", REC("10.0.0.1:80", ",\"labels\":{\"tier\":\"gold\",\"zone\":\"a\",\"x\":\"y\"}"), 1),
      PX_REG_ADDED);
  cr_expect_eq(put(s, "b", REC("10.0.0.2:80", ",\"labels\":{\"zone\":\"a\"}"), 2), PX_REG_ADDED);
  cr_expect_eq(put(s, "c", REC("10.0.0.3:80", ""), 3), PX_REG_ADDED);
  cr_expect_str_eq(eps(s), "10.0.0.1:80*1");
  px_reg_set_free(s);
}

Test(reg_set, bounded) {
  px_reg_set_t *s = new_set(NULL, 0);
  char id[16], val[64];
  for (int i = 0; i < PX_REG_MAX_RECORDS; i++) {
    snprintf(id, sizeof(id), "i%06d", i); /* in key order, as a range gives them */
    snprintf(val, sizeof(val), "{\"address\":\"10.%d.%d.%d:80\"}", i >> 16, (i >> 8) & 255, i & 255);
    if (put(s, id, val, i + 1) != PX_REG_ADDED) cr_assert_fail("record %d", i);
  }
  cr_expect_eq(px_reg_set_count(s), PX_REG_MAX_RECORDS);
  char why[120];
  px_reg_event_t ev = {.key = "/outrigger/services/web/one-more",
                       .klen = 32,
                       .value = REC("10.9.9.9:80", ""),
                       .vlen = strlen(REC("10.9.9.9:80", "")),
                       .mod_revision = 70000};
  cr_expect_eq(px_reg_set_apply(s, &ev, why, sizeof(why)), PX_REG_SKIPPED);
  cr_expect(strstr(why, "65535 records") != NULL, "%s", why);
  /* updates of keys held still go through */
  cr_expect_eq(put(s, "i000000", REC("10.9.9.9:80", ""), 70001), PX_REG_UPDATED);
  size_t n;
  px_reg_set_endpoints(s, &n);
  cr_expect_eq(n, PX_REG_MAX_RECORDS);
  px_reg_set_free(s);
}

/* From real etcd answers (etcd 3.4.23, as in test_etcd_json.c): list, then follow. */
#define HDR(rev)                                                                                             \
  "{\"cluster_id\":\"324952591200643719\",\"member_id\":\"3319814642761637952\",\"revision\":\"" rev         \
  "\",\"raft_term\":\"2\"}"
#define B64_K1 "L291dHJpZ2dlci9zZXJ2aWNlcy93ZWIvd2ViLTEtMGYzYTljMmI3ZDFl"
#define B64_K2 "L291dHJpZ2dlci9zZXJ2aWNlcy93ZWIvd2ViLTItYWEwMGJiMTFjYzIy"
#define B64_K3 "L291dHJpZ2dlci9zZXJ2aWNlcy93ZWIvd2ViLTMtMTIzNDU2Nzg5YWJj"
#define B64_V1                                                                                               \
  "eyJhZGRyZXNzIjoiMTAuMC4wLjE6ODA4MCIsImxhYmVscyI6eyJ6b25lIjoiYSIsInZlcnNpb24iOiJ2MiJ9LCJ3ZWlnaHQi"         \
  "OjEsInN0YXJ0ZWQiOiIyMDI2LTEyLTAxVDIxOjAwOjAwWiJ9"
#define B64_V2                                                                                               \
  "eyJhZGRyZXNzIjoiWzIwMDE6ZGI4OjoyXTo4MDgwIiwibGFiZWxzIjp7InpvbmUiOiJhIiwidmVyc2lvbiI6InYyIn0sIndl"         \
  "aWdodCI6Mywic3RhcnRlZCI6IjIwMjYtMTItMDFUMjE6MDA6MDBaIn0="
#define B64_V3                                                                                               \
  "eyJhZGRyZXNzIjoiMTAuMC4wLjM6ODA4MCIsImxhYmVscyI6eyJ6b25lIjoiYSIsInZlcnNpb24iOiJ2MiJ9LCJ3ZWlnaHQi"         \
  "OjIsInN0YXJ0ZWQiOiIyMDI2LTEyLTAxVDIxOjAwOjAwWiJ9"
#define LEASE "2324035750177512709"

static void apply_kv(px_reg_set_t *s, const px_etcd_kv_t *kv, int del_, px_reg_outcome_t want) {
  px_reg_event_t ev = {.is_delete = del_,
                       .key = kv->key.p,
                       .klen = kv->key.n,
                       .value = kv->value.p,
                       .vlen = kv->value.n,
                       .mod_revision = kv->mod_revision};
  char why[160] = "";
  cr_expect_eq(px_reg_set_apply(s, &ev, why, sizeof(why)), want, "%.*s (%s)", (int)kv->key.n, kv->key.p, why);
}

static void apply_watch(px_reg_set_t *s, const char *json, const px_reg_outcome_t *want, size_t nwant) {
  px_etcd_watch_msg_t m;
  cr_assert_eq(px_etcd_parse_watch(json, strlen(json), &m, NULL), 0);
  cr_assert_eq(m.nevents, nwant);
  for (size_t i = 0; i < m.nevents; i++)
    apply_kv(s, &m.events[i].kv, m.events[i].type == PX_ETCD_DELETE, want[i]);
  px_etcd_watch_msg_free(&m);
}

Test(reg_set, from_real_etcd_answers) {
  const char *range =
      "{\"header\":" HDR("3") ",\"kvs\":[{\"key\":\"" B64_K1 "\",\"create_revision\":\"2\","
                              "\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"" B64_V1
                              "\",\"lease\":\"" LEASE "\"},"
                              "{\"key\":\"" B64_K2
                              "\",\"create_revision\":\"3\",\"mod_revision\":\"3\",\"version\":\"1\","
                              "\"value\":\"" B64_V2 "\",\"lease\":\"" LEASE "\"}],\"count\":\"2\"}";
  px_reg_label_t sel[] = {{"version", "v2"}};
  px_reg_set_t *s = new_set(sel, 1);
  px_etcd_range_t r;
  cr_assert_eq(px_etcd_parse_range(range, strlen(range), &r, NULL), 0);
  for (size_t i = 0; i < r.nkvs; i++) apply_kv(s, &r.kvs[i], 0, PX_REG_ADDED);
  px_etcd_range_free(&r);
  cr_expect_str_eq(eps(s), "10.0.0.1:8080*1 [2001:db8::2]:8080*3");
  cr_expect(px_reg_set_changed(s));

  /* the watch started at revision 2 replays what the range already had, then goes on */
  const char *replay = "{\"result\":{\"header\":" HDR(
      "4") ",\"events\":[{\"kv\":{\"key\":\"" B64_K1 "\","
           "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\",\"value\":\"" B64_V1 "\","
           "\"lease\":\"" LEASE "\"}},{\"kv\":{\"key\":\"" B64_K2 "\",\"create_revision\":\"3\","
           "\"mod_revision\":\"3\",\"version\":\"1\",\"value\":\"" B64_V2 "\",\"lease\":\"" LEASE "\"}},"
           "{\"type\":\"DELETE\",\"kv\":{\"key\":\"" B64_K2 "\",\"mod_revision\":\"4\"}}]}}";
  px_reg_outcome_t w1[] = {PX_REG_IGNORED, PX_REG_IGNORED, PX_REG_REMOVED};
  apply_watch(s, replay, w1, 3);
  cr_expect_str_eq(eps(s), "10.0.0.1:8080*1");
  cr_expect(px_reg_set_changed(s));

  const char *put3 = "{\"result\":{\"header\":" HDR(
      "5") ",\"events\":[{\"kv\":{\"key\":\"" B64_K3 "\","
           "\"create_revision\":\"5\",\"mod_revision\":\"5\",\"version\":\"1\",\"value\":\"" B64_V3 "\"}}]}}";
  px_reg_outcome_t w2[] = {PX_REG_ADDED};
  apply_watch(s, put3, w2, 1);
  cr_expect_str_eq(eps(s), "10.0.0.1:8080*1 10.0.0.3:8080*2");
  cr_expect(px_reg_set_changed(s));

  /* the lease revoked: its record deleted */
  const char *revoked =
      "{\"result\":{\"header\":" HDR("6") ",\"events\":[{\"type\":\"DELETE\",\"kv\":{\"key\":\"" B64_K1
                                          "\",\"mod_revision\":\"6\"}}]}}";
  px_reg_outcome_t w3[] = {PX_REG_REMOVED};
  apply_watch(s, revoked, w3, 1);
  cr_expect_str_eq(eps(s), "10.0.0.3:8080*2");
  cr_expect(px_reg_set_changed(s));

  /* a put of an empty value under the service: skipped */
  const char *empty = "{\"result\":{\"header\":" HDR(
      "10") ",\"events\":[{\"kv\":{\"key\":\""
            "L291dHJpZ2dlci9zZXJ2aWNlcy93ZWIvYw==\",\"create_revision\":\"10\",\"mod_revision\":\"10\","
            "\"version\":\"1\"}}]}}";
  px_reg_outcome_t w4[] = {PX_REG_SKIPPED};
  apply_watch(s, empty, w4, 1);
  cr_expect(!px_reg_set_changed(s));
  px_reg_set_free(s);
}
