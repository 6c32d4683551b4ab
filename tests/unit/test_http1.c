/* The HTTP/1 head code (proxy/http1.h): the incremental head scanner that refuses
 * what llhttp lets through, the request head sent upstream, the response head sent
 * to the client with its body framing, the sidecar's problem+json answers and the
 * request ids it makes (SPEC §4). Heads are built by hand as spans over one buffer. */
#include <criterion/criterion.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http1.h"
#include "json.h"

/* ---- a hand-built px_head_t ---------------------------------------------- */

typedef struct {
  char buf[16384];
  size_t len;
  px_hspan_t h[PX_HTTP1_MAX_HEADERS];
  px_head_t m;
} thead_t;

static uint32_t put(thead_t *t, const char *s, size_t n) {
  cr_assert(t->len + n <= sizeof(t->buf));
  memcpy(t->buf + t->len, s, n);
  uint32_t off = (uint32_t)t->len;
  t->len += n;
  return off;
}

/* A request head whose buffer starts with its request line, as the proxy's does. */
static void req_init(thead_t *t, int method, const char *url) {
  memset(t, 0, sizeof(*t));
  t->m.base = t->buf;
  t->m.h = t->h;
  t->m.method = method;
  t->m.http_minor = 1;
  t->m.content_length = -1;
  t->m.keep_alive = 1;
  put(t, "M ", 2);
  t->m.url_len = (uint32_t)strlen(url);
  t->m.url_off = put(t, url, t->m.url_len);
  put(t, " HTTP/1.1\r\n", 11);
}

static void resp_init(thead_t *t, int status, int64_t content_length, int chunked) {
  memset(t, 0, sizeof(*t));
  t->m.base = t->buf;
  t->m.h = t->h;
  t->m.status = status;
  t->m.http_minor = 1;
  t->m.content_length = content_length;
  t->m.chunked = chunked;
  t->m.keep_alive = 1;
}

/* Value given with its length, so it may hold control bytes or NULs. */
static void hadd_n(thead_t *t, const char *name, const char *value, size_t vlen) {
  cr_assert(t->m.nh < PX_HTTP1_MAX_HEADERS);
  px_hspan_t *s = &t->h[t->m.nh++];
  s->name_len = (uint32_t)strlen(name);
  s->name_off = put(t, name, s->name_len);
  s->value_len = (uint32_t)vlen;
  s->value_off = put(t, value, vlen);
}

static void hadd(thead_t *t, const char *name, const char *value) { hadd_n(t, name, value, strlen(value)); }

/* ---- looking into a produced head ---------------------------------------- */

/* The buffer as a C string (heads never hold NULs). */
static const char *cstr(px_buf_t *b) {
  px_buf_reserve(b, 1)[0] = '\0';
  return b->data;
}

/* Number of header lines named `name` (case-insensitive) in head text `s`; the
 * first line (request or status line) is skipped, the blank line ends the head. */
static int hcount(const char *s, const char *name) {
  size_t nl = strlen(name);
  int n = 0;
  const char *p = strstr(s, "\r\n");
  while (p && p[2] != '\r' && p[2] != '\0') {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') n++;
    p = strstr(p, "\r\n");
  }
  return n;
}

/* Value of the first header named `name` (without the ": "), or "" when absent. */
static const char *hval(const char *s, const char *name) {
  static char v[1024];
  size_t nl = strlen(name);
  const char *p = strstr(s, "\r\n");
  v[0] = '\0';
  while (p && p[2] != '\r' && p[2] != '\0') {
    p += 2;
    const char *e = strstr(p, "\r\n");
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      cr_assert(p[nl + 1] == ' ', "no space after the colon of %s", name);
      size_t n = (size_t)(e - (p + nl + 2));
      cr_assert(n < sizeof(v));
      memcpy(v, p + nl + 2, n);
      v[n] = '\0';
      return v;
    }
    p = e;
  }
  return v;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static int is_uuid4(const char *s) {
  if (strlen(s) != 36) return 0;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
      return 0;
    }
  }
  return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

/* ---- px_headscan ---------------------------------------------------------- */

static int scan_all(const char *s, size_t len, px_headscan_t *sc) {
  px_headscan_reset(sc, 0);
  return px_headscan(sc, s, len);
}

/* Feeds s one more byte per call, as a slow client would; returns the first
 * non-zero result, or 0 when the head never completed. */
static int scan_bytewise(const char *s, size_t len, px_headscan_t *sc, size_t *at) {
  px_headscan_reset(sc, 0);
  for (size_t k = 1; k <= len; k++) {
    int r = px_headscan(sc, s, k);
    if (r != 0) {
      *at = k;
      return r;
    }
  }
  *at = len;
  return 0;
}

#define S(lit) lit, sizeof(lit) - 1

Test(headscan, complete_head_in_one_call) {
  static const char h[] = "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nBODY";
  px_headscan_t sc;
  cr_assert_eq(scan_all(S(h), &sc), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1 - 4, "head_end must point at the body");
  cr_expect_null(sc.err);
  /* Once done it stays done. */
  cr_expect_eq(px_headscan(&sc, S(h)), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1 - 4);
}

Test(headscan, head_without_headers) {
  static const char h[] = "GET / HTTP/1.0\r\n\r\n";
  px_headscan_t sc;
  cr_assert_eq(scan_all(S(h), &sc), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1);
}

Test(headscan, byte_by_byte) {
  static const char h[] = "POST /submit HTTP/1.1\r\nHost: example\r\nContent-Length: 3\r\n\r\nabc";
  size_t at;
  px_headscan_t sc;
  cr_assert_eq(scan_bytewise(S(h), &sc, &at), 1);
  cr_expect_eq(at, sizeof(h) - 1 - 3, "complete exactly when the blank line's LF arrives");
  cr_expect_eq(sc.head_end, sizeof(h) - 1 - 3);
}

Test(headscan, starts_at_offset_for_pipelined_requests) {
  static const char h[] = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nHost: y\r\n\r\n";
  px_headscan_t sc;
  cr_assert_eq(scan_all(S(h), &sc), 1);
  size_t second = sc.head_end;
  cr_assert_eq(second, strlen("GET /1 HTTP/1.1\r\n\r\n"));
  px_headscan_reset(&sc, second);
  cr_assert_eq(px_headscan(&sc, S(h)), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1);
}

Test(headscan, incomplete_returns_zero) {
  static const char *parts[] = {
      "",
      "GET / HTTP/1.1",
      "GET / HTTP/1.1\r",
      "GET / HTTP/1.1\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\n\r",
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(parts); i++) {
    px_headscan_t sc;
    cr_expect_eq(scan_all(parts[i], strlen(parts[i]), &sc), 0, "part %zu", i);
    cr_expect_null(sc.err);
  }
  /* And the same scanner completes when the rest arrives. */
  static const char h[] = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  px_headscan_t sc;
  cr_assert_eq(scan_all(h, sizeof(h) - 3, &sc), 0);
  cr_assert_eq(px_headscan(&sc, h, sizeof(h) - 2), 0);
  cr_assert_eq(px_headscan(&sc, S(h)), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1);
}

Test(headscan, blank_lines_before_request_line) {
  static const char h[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
  px_headscan_t sc;
  cr_assert_eq(scan_all(S(h), &sc), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1);
  size_t at;
  cr_assert_eq(scan_bytewise(S(h), &sc, &at), 1);
  cr_expect_eq(sc.head_end, sizeof(h) - 1);
}

/* The scanner reads sixteen bytes a step; a reading of one line at a time (the rules
 * as RFC 9112 and SPEC §4 state them) must agree with it on every input, fed whole,
 * byte by byte and in two parts split anywhere: the same verdict, the same end. */
static int ref_scan(const char *b, size_t len, size_t *head_end) {
  size_t pos = 0, line_start = 0;
  unsigned nlines = 0;
  while (pos < len) {
    if (pos == line_start && nlines > 0 && (b[pos] == ' ' || b[pos] == '\t')) return -1;
    size_t e = pos;
    while (e < len && b[e] != '\n') e++;
    for (size_t i = pos; i < e; i++)
      if (b[i] == '\0') return -1;
    if (e == len) {
      for (size_t i = pos; i + 1 < len; i++)
        if (b[i] == '\r') return -1;
      return 0;
    }
    if (e == line_start || b[e - 1] != '\r') return -1;
    for (size_t i = pos; i + 1 < e; i++)
      if (b[i] == '\r') return -1;
    pos = e + 1;
    if (e - 1 == line_start) {
      if (nlines == 0) {
        line_start = pos;
        continue;
      }
      *head_end = pos;
      return 1;
    }
    nlines++;
    line_start = pos;
  }
  return 0;
}

Test(headscan, agrees_with_a_line_at_a_time_reading) {
  static const char alphabet[] = {'a', 'a', 'a', 'a', 'a', ':', ' ', '\t', '\r', '\n', '\r', '\n', '\0'};
  uint64_t rng = 20261201;
  char h[96];
  for (int round = 0; round < 20000; round++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    size_t len = (size_t)(rng >> 33) % sizeof(h);
    for (size_t i = 0; i < len; i++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      unsigned r = (unsigned)(rng >> 33);
      /* mostly well-formed lines of any length, with a rare odd byte */
      h[i] = r % 7 ? 'a' + (char)(r % 3) : alphabet[(r >> 8) % sizeof(alphabet)];
    }
    if (round % 2 && len >= 4) memcpy(h + len - 4, "\r\n\r\n", 4);
    size_t want_end = 0;
    int want = ref_scan(h, len, &want_end);
    px_headscan_t sc;
    int got = scan_all(h, len, &sc);
    cr_assert_eq(got, want, "whole: %d, want %d: %.*s", got, want, (int)len, h);
    if (want == 1) cr_assert_eq(sc.head_end, want_end);
    size_t at;
    int bw = scan_bytewise(h, len, &sc, &at);
    cr_assert_eq(bw, want, "byte by byte: %d, want %d", bw, want);
    if (want == 1) cr_assert_eq(sc.head_end, want_end);
    for (size_t cut = 1; cut < len; cut++) {
      px_headscan_reset(&sc, 0);
      int r1 = px_headscan(&sc, h, cut);
      int r2 = r1 ? r1 : px_headscan(&sc, h, len);
      cr_assert_eq(r2, want, "split at %zu: %d, want %d", cut, r2, want);
      if (want == 1) cr_assert_eq(sc.head_end, want_end);
    }
  }
}

static void expect_refused(const char *h, size_t len) {
  px_headscan_t sc;
  cr_expect_eq(scan_all(h, len, &sc), -1, "accepted in one call: %.*s", (int)len, h);
  cr_expect_not_null(sc.err);
  size_t at;
  cr_expect_eq(scan_bytewise(h, len, &sc, &at), -1, "accepted byte by byte: %.*s", (int)len, h);
  cr_expect_not_null(sc.err);
}

Test(headscan, bare_lf_refused) {
  expect_refused(S("GET / HTTP/1.1\nHost: a\r\n\r\n"));         /* after the request line */
  expect_refused(S("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n")); /* in a header */
  expect_refused(S("GET / HTTP/1.1\r\nHost: a\r\n\n"));         /* as the blank line */
  expect_refused(S("\nGET / HTTP/1.1\r\n\r\n"));                /* before the request line */
}

Test(headscan, nul_refused) {
  expect_refused(S("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n"));
  expect_refused(S("GET / HTTP/1.1\r\nX: v\0\r\n\r\n")); /* after a value */
  expect_refused(S("GET /\0 HTTP/1.1\r\n\r\n"));
  /* Incomplete heads with a NUL are refused at once, not after the blank line. */
  px_headscan_t sc;
  cr_expect_eq(scan_all(S("GET / HTTP/1.1\r\nX: \0"), &sc), -1);
}

Test(headscan, obs_fold_refused) {
  expect_refused(S("GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n"));
  expect_refused(S("GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n"));
  expect_refused(S("GET / HTTP/1.1\r\n X-A: one\r\n\r\n"));
}

/* ---- px_http1_build_request ------------------------------------------------ */

static const px_req_rewrite_t rw_default = {.client_ip = "10.0.0.1", .proto = "http"};

/* Builds the upstream head and finishes it with attempt 1. */
static const char *build_req(const thead_t *t, const px_req_rewrite_t *rw, px_buf_t *out, char rid[201]) {
  px_http1_build_request(&t->m, rw, out, rid);
  px_http1_finish_request(out, out->len, 1);
  return cstr(out);
}

Test(build_request, request_line_and_ordinary_headers) {
  thead_t t;
  req_init(&t, HTTP_POST, "/a/b?c=1");
  t.m.http_minor = 0;
  hadd(&t, "Host", "svc:8080");
  hadd(&t, "X-Custom", "Value With Spaces");
  hadd(&t, "Accept", "*/*");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect(strncmp(s, "POST /a/b?c=1 HTTP/1.1\r\n", 24) == 0, "%s", s);
  /* Kept as sent: name case, value, order. */
  const char *a = strstr(s, "\r\nHost: svc:8080\r\n");
  const char *b = strstr(s, "\r\nX-Custom: Value With Spaces\r\n");
  const char *c = strstr(s, "\r\nAccept: */*\r\n");
  cr_expect(a && b && c && a < b && b < c, "%s", s);
  cr_expect(ends_with(s, "\r\n\r\n"));
  px_headscan_t sc;
  cr_expect_eq(scan_all(s, strlen(s), &sc), 1, "the upstream head is well-formed: %s", s);
  cr_expect_eq(sc.head_end, strlen(s));
  px_buf_free(&out);
}

Test(build_request, hop_by_hop_removed) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  hadd(&t, "Connection", "keep-alive");
  hadd(&t, "KEEP-ALIVE", "timeout=5");
  hadd(&t, "Proxy-Connection", "keep-alive");
  hadd(&t, "te", "trailers");
  hadd(&t, "Trailer", "x-checksum");
  hadd(&t, "Transfer-Encoding", "chunked");
  hadd(&t, "Upgrade", "websocket");
  hadd(&t, "Expect", "100-continue");
  hadd(&t, "X-Kept", "yes");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  static const char *gone[] = {"connection", "keep-alive",        "proxy-connection", "te",
                               "trailer",    "transfer-encoding", "upgrade",          "expect"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(gone); i++)
    cr_expect_eq(hcount(s, gone[i]), 0, "%s forwarded:\n%s", gone[i], s);
  cr_expect_eq(hcount(s, "x-kept"), 1);
  cr_expect_eq(hcount(s, "host"), 1);
  px_buf_free(&out);
}

Test(build_request, headers_named_in_connection_removed) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  hadd(&t, "X-Foo", "1");
  hadd(&t, "Connection", "close, X-FOO");
  hadd(&t, "x-bar", "2");
  hadd(&t, "X-Baz", "3");
  hadd(&t, "connection", "x-bar,x-baz"); /* a second Connection header, no spaces */
  hadd(&t, "X-Foo-Bar", "4");            /* shares a prefix with a named one: kept */
  hadd(&t, "X-Fo", "5");                 /* is a prefix of a named one: kept */
  hadd(&t, "X-Qux", "6");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-foo"), 0, "%s", s);
  cr_expect_eq(hcount(s, "x-bar"), 0, "%s", s);
  cr_expect_eq(hcount(s, "x-baz"), 0, "%s", s);
  cr_expect_eq(hcount(s, "connection"), 0, "%s", s);
  cr_expect_eq(hcount(s, "x-foo-bar"), 1, "%s", s);
  cr_expect_eq(hcount(s, "x-fo"), 1, "%s", s);
  cr_expect_eq(hcount(s, "x-qux"), 1, "%s", s);
  px_buf_free(&out);

  /* Only list elements that are tokens name a field: `" X-Foo` names nothing (found by
   * the differential fuzzer: the oracle and the sidecar read it two ways). */
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  hadd(&t, "X-Foo", "1");
  hadd(&t, "X-Bar", "2");
  hadd(&t, "Connection", "close,\" X-Foo, \t X-Bar \t,,");
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-foo"), 1, "%s", s);
  cr_expect_eq(hcount(s, "x-bar"), 0, "%s", s);
  px_buf_free(&out);
}

Test(build_request, x_forwarded_for_appended) {
  px_buf_t out = {0};
  char rid[201];
  thead_t t;

  req_init(&t, HTTP_GET, "/");
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-forwarded-for"), 1);
  cr_expect_str_eq(hval(s, "x-forwarded-for"), "10.0.0.1");

  out.len = 0;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "X-Forwarded-For", "1.1.1.1");
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-forwarded-for"), 1);
  cr_expect_str_eq(hval(s, "x-forwarded-for"), "1.1.1.1, 10.0.0.1");

  out.len = 0;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "x-forwarded-for", "1.1.1.1");
  hadd(&t, "Host", "a");
  hadd(&t, "X-FORWARDED-FOR", "2.2.2.2, 3.3.3.3");
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-forwarded-for"), 1, "several x-forwarded-for are joined into one:\n%s", s);
  cr_expect_str_eq(hval(s, "x-forwarded-for"), "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1");
  px_buf_free(&out);
}

Test(build_request, x_forwarded_proto_set_by_the_sidecar) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "X-Forwarded-Proto", "https");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-forwarded-proto"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "x-forwarded-proto"), "http");
  px_buf_free(&out);

  px_req_rewrite_t rw = rw_default;
  rw.proto = "https";
  req_init(&t, HTTP_GET, "/");
  s = build_req(&t, &rw, &out, rid);
  cr_expect_str_eq(hval(s, "x-forwarded-proto"), "https");
  px_buf_free(&out);
}

Test(build_request, valid_request_id_kept) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "X-Request-Id", "abc-123_XYZ.42");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-request-id"), 1);
  cr_expect_str_eq(hval(s, "x-request-id"), "abc-123_XYZ.42");
  cr_expect_str_eq(rid, "abc-123_XYZ.42");
  px_buf_free(&out);

  /* 200 bytes is the most that is kept. */
  char longid[201];
  memset(longid, 'r', 200);
  longid[200] = '\0';
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "x-request-id", longid);
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_str_eq(rid, longid);
  cr_expect_str_eq(hval(s, "x-request-id"), longid);
  px_buf_free(&out);
}

static void expect_generated_id(const char *value, size_t vlen, const char *what) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  if (value) hadd_n(&t, "X-Request-Id", value, vlen);
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "x-request-id"), 1, "%s:\n%s", what, s);
  cr_expect(is_uuid4(rid), "%s: request id %s is not a UUIDv4", what, rid);
  cr_expect_str_eq(hval(s, "x-request-id"), rid, "%s", what);
  px_buf_free(&out);
}

Test(build_request, request_id_made_when_absent_or_invalid) {
  expect_generated_id(NULL, 0, "absent");
  expect_generated_id("", 0, "empty");
  expect_generated_id("a\x01z", 3, "control character");
  expect_generated_id("a\x7f", 2, "DEL");
  expect_generated_id("id with space", 13, "space");
  expect_generated_id("caf\xc3\xa9", 5, "non-ASCII");
  char longid[202];
  memset(longid, 'r', 201);
  longid[201] = '\0';
  expect_generated_id(longid, 201, "201 bytes");
}

Test(build_request, request_id_from_the_caller_wins) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "X-Request-Id", "client-id");
  px_req_rewrite_t rw = rw_default;
  rw.request_id = "retry-id";
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw, &out, rid);
  cr_expect_eq(hcount(s, "x-request-id"), 1);
  cr_expect_str_eq(hval(s, "x-request-id"), "retry-id");
  cr_expect_str_eq(rid, "retry-id");
  px_buf_free(&out);
}

Test(build_request, client_attempt_header_dropped) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "X-Outrigger-Attempt", "7");
  px_buf_t out = {0};
  char rid[201];
  px_http1_build_request(&t.m, &rw_default, &out, rid);
  cr_expect_eq(hcount(cstr(&out), "x-outrigger-attempt"), 0, "%s", cstr(&out));
  px_http1_finish_request(&out, out.len, 1);
  const char *s = cstr(&out);
  cr_expect_eq(hcount(s, "x-outrigger-attempt"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "x-outrigger-attempt"), "1");
  px_buf_free(&out);
}

Test(build_request, chunked_body) {
  thead_t t;
  req_init(&t, HTTP_POST, "/up");
  hadd(&t, "Content-Length", "10");
  hadd(&t, "Transfer-Encoding", "chunked");
  px_req_rewrite_t rw = rw_default;
  rw.chunked_body = 1;
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw, &out, rid);
  cr_expect_eq(hcount(s, "content-length"), 0, "%s", s);
  cr_expect_eq(hcount(s, "transfer-encoding"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "transfer-encoding"), "chunked");
  px_buf_free(&out);

  /* A sized body keeps its Content-Length and gets no Transfer-Encoding. */
  req_init(&t, HTTP_POST, "/up");
  hadd(&t, "Content-Length", "10");
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "content-length"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "content-length"), "10");
  cr_expect_eq(hcount(s, "transfer-encoding"), 0, "%s", s);
  px_buf_free(&out);
}

Test(build_request, host_fallback_only_when_host_absent) {
  px_req_rewrite_t rw = rw_default;
  rw.host_fallback = "fallback.local";
  px_buf_t out = {0};
  char rid[201];
  thead_t t;

  req_init(&t, HTTP_GET, "/");
  t.m.http_minor = 0;
  const char *s = build_req(&t, &rw, &out, rid);
  cr_expect_eq(hcount(s, "host"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "host"), "fallback.local");
  px_buf_free(&out);

  req_init(&t, HTTP_GET, "/");
  hadd(&t, "HOST", "given");
  s = build_req(&t, &rw, &out, rid);
  cr_expect_eq(hcount(s, "host"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "host"), "given");
  px_buf_free(&out);

  req_init(&t, HTTP_GET, "/");
  s = build_req(&t, &rw_default, &out, rid);
  cr_expect_eq(hcount(s, "host"), 0, "no fallback given, no Host made up: %s", s);
  px_buf_free(&out);
}

/* ---- px_http1_finish_request ----------------------------------------------- */

Test(finish_request, attempt_line_replaced_on_retry) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  px_buf_t out = {0};
  char rid[201];
  px_http1_build_request(&t.m, &rw_default, &out, rid);
  size_t base = out.len;
  cr_assert(base > 0);

  px_http1_finish_request(&out, base, 1);
  const char *s = cstr(&out);
  cr_expect(ends_with(s, "\r\nx-outrigger-attempt: 1\r\n\r\n"), "%s", s);
  char first[4096];
  snprintf(first, sizeof(first), "%s", s);

  px_http1_finish_request(&out, base, 2);
  s = cstr(&out);
  cr_expect_eq(hcount(s, "x-outrigger-attempt"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "x-outrigger-attempt"), "2");
  cr_expect(ends_with(s, "\r\n\r\n"));
  cr_expect_eq(out.len, base + strlen("x-outrigger-attempt: 2\r\n\r\n"));
  cr_expect(memcmp(s, first, base) == 0, "the head before the attempt line is unchanged");

  px_http1_finish_request(&out, base, 12);
  s = cstr(&out);
  cr_expect_str_eq(hval(s, "x-outrigger-attempt"), "12");
  px_headscan_t sc;
  cr_expect_eq(scan_all(s, strlen(s), &sc), 1);
  cr_expect_eq(sc.head_end, out.len);
  px_buf_free(&out);
}

/* ---- px_http1_build_response ----------------------------------------------- */

static const px_resp_rewrite_t rrw_default = {.client_minor = 1, .attempts = 1, .cluster = "backend"};

Test(build_response, content_length_kept) {
  thead_t t;
  resp_init(&t, 200, 5, 0);
  hadd(&t, "Content-Type", "text/plain");
  hadd(&t, "Content-Length", "5");
  px_buf_t out = {0};
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_LENGTH);
  const char *s = cstr(&out);
  cr_expect(strncmp(s, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", s);
  cr_expect_eq(hcount(s, "content-length"), 1);
  cr_expect_str_eq(hval(s, "content-length"), "5");
  cr_expect_eq(hcount(s, "transfer-encoding"), 0);
  cr_expect_str_eq(hval(s, "content-type"), "text/plain");
  cr_expect_eq(hcount(s, "connection"), 0, "a 1.1 client keeps the connection by default: %s", s);
  cr_expect(ends_with(s, "\r\n\r\n"));
  px_buf_free(&out);
}

Test(build_response, chunked_to_http11_client) {
  thead_t t;
  resp_init(&t, 200, -1, 1);
  hadd(&t, "Transfer-Encoding", "chunked");
  px_buf_t out = {0};
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_CHUNKED);
  const char *s = cstr(&out);
  cr_expect_eq(hcount(s, "transfer-encoding"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "transfer-encoding"), "chunked");
  cr_expect_eq(hcount(s, "content-length"), 0);
  cr_expect_eq(hcount(s, "connection"), 0);
  px_buf_free(&out);

  /* An upstream that ends its body by closing is re-chunked for a 1.1 client. */
  resp_init(&t, 200, -1, 0);
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_CHUNKED);
  cr_expect_str_eq(hval(cstr(&out), "transfer-encoding"), "chunked");
  px_buf_free(&out);
}

Test(build_response, chunked_to_http10_client_closes) {
  thead_t t;
  resp_init(&t, 200, -1, 1);
  hadd(&t, "Transfer-Encoding", "chunked");
  px_resp_rewrite_t rw = rrw_default;
  rw.client_minor = 0;
  px_buf_t out = {0};
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_CLOSE);
  const char *s = cstr(&out);
  cr_expect_eq(hcount(s, "transfer-encoding"), 0, "a 1.0 client cannot read chunks: %s", s);
  cr_expect_eq(hcount(s, "content-length"), 0);
  cr_expect_eq(hcount(s, "connection"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "connection"), "close");
  px_buf_free(&out);
}

Test(build_response, bodiless_responses) {
  px_buf_t out = {0};
  thead_t t;
  px_resp_rewrite_t rw = rrw_default;

  rw.request_is_head = 1;
  resp_init(&t, 200, 100, 0);
  hadd(&t, "Content-Length", "100");
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_NONE);
  cr_expect_str_eq(hval(cstr(&out), "content-length"), "100", "HEAD keeps the length the GET would have");
  px_buf_free(&out);

  resp_init(&t, 200, -1, 1);
  hadd(&t, "Transfer-Encoding", "chunked");
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_NONE);
  cr_expect_eq(hcount(cstr(&out), "transfer-encoding"), 0, "%s", cstr(&out));
  px_buf_free(&out);

  rw.request_is_head = 0;
  static const int statuses[] = {204, 304};
  for (size_t i = 0; i < PX_ARRAY_SIZE(statuses); i++) {
    resp_init(&t, statuses[i], -1, 0);
    cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_NONE, "status %d", statuses[i]);
    const char *s = cstr(&out);
    cr_expect_eq(hcount(s, "transfer-encoding"), 0, "%s", s);
    cr_expect_eq(hcount(s, "connection"), 0, "%s", s);
    px_buf_free(&out);
  }
  resp_init(&t, 304, -1, 0);
  rw.client_minor = 0;
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_NONE, "no close needed for 304 to 1.0");
  cr_expect_str_eq(hval(cstr(&out), "connection"), "keep-alive");
  px_buf_free(&out);
}

Test(build_response, hop_by_hop_removed) {
  thead_t t;
  resp_init(&t, 200, 2, 0);
  hadd(&t, "Content-Length", "2");
  hadd(&t, "Connection", "keep-alive, X-Internal");
  hadd(&t, "Keep-Alive", "timeout=5");
  hadd(&t, "Proxy-Connection", "keep-alive");
  hadd(&t, "Upgrade", "h2c");
  hadd(&t, "Trailer", "x-sum");
  hadd(&t, "TE", "trailers");
  hadd(&t, "x-internal", "secret");
  hadd(&t, "X-Public", "ok");
  px_buf_t out = {0};
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_LENGTH);
  const char *s = cstr(&out);
  static const char *gone[] = {"connection", "keep-alive", "proxy-connection", "upgrade",
                               "trailer",    "te",         "x-internal"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(gone); i++)
    cr_expect_eq(hcount(s, gone[i]), 0, "%s forwarded:\n%s", gone[i], s);
  cr_expect_eq(hcount(s, "x-public"), 1);
  px_buf_free(&out);
}

/* What inbound idempotency keeps of an answer, written beside the client's head: only
 * the end-to-end lines, exactly as sent, for a replay that frames itself. */
Test(build_response, keep_gets_the_end_to_end_lines) {
  thead_t t;
  resp_init(&t, 201, 2, 0);
  hadd(&t, "Content-Type", "text/plain");
  hadd(&t, "Content-Length", "2");
  hadd(&t, "Connection", "X-Internal");
  hadd(&t, "x-internal", "secret");
  hadd(&t, "Transfer-Encoding", "identity");
  hadd(&t, "X-Outrigger-Attempts", "9");
  hadd(&t, "Location", "/x/1");
  hadd(&t, "Set-Cookie", "a=1");
  hadd(&t, "Set-Cookie", "b=2");
  px_buf_t out = {0}, keep = {0};
  px_resp_rewrite_t rw = rrw_default;
  rw.keep = &keep;
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_LENGTH);
  cr_expect_str_eq(cstr(&keep),
                   "Content-Type: text/plain\r\nLocation: /x/1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n");
  const char *s = cstr(&out);
  static const char *lines[] = {"Content-Type: text/plain\r\n", "Location: /x/1\r\n", "Set-Cookie: a=1\r\n",
                                "Set-Cookie: b=2\r\n"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(lines); i++)
    cr_expect(strstr(s, lines[i]) != NULL, "the client gets the same line %s:\n%s", lines[i], s);
  cr_expect_eq(hcount(s, "content-length"), 1, "the client's head is unchanged: %s", s);

  /* What px_http1_end_to_end_headers writes for an answer the client never gets. */
  px_buf_t e2e = {0};
  px_http1_end_to_end_headers(&t.m, &e2e);
  cr_expect_str_eq(cstr(&e2e), cstr(&keep));
  px_buf_free(&e2e);
  /* Without `keep`, the same head. */
  px_buf_t again = {0};
  rw.keep = NULL;
  px_http1_build_response(&t.m, &rw, &again);
  cr_expect_str_eq(cstr(&again), s);
  px_buf_free(&out);
  px_buf_free(&keep);
  px_buf_free(&again);
}

Test(build_response, own_headers_replace_the_upstreams) {
  thead_t t;
  resp_init(&t, 502, 0, 0);
  hadd(&t, "X-Outrigger-Attempts", "9");
  hadd(&t, "Content-Length", "0");
  hadd(&t, "x-outrigger-upstream", "inner-cluster");
  px_resp_rewrite_t rw = rrw_default;
  rw.attempts = 3;
  rw.cluster = "shortener-v2";
  px_buf_t out = {0};
  px_http1_build_response(&t.m, &rw, &out);
  const char *s = cstr(&out);
  cr_expect(strncmp(s, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0, "%s", s);
  cr_expect_eq(hcount(s, "x-outrigger-attempts"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "x-outrigger-attempts"), "3");
  cr_expect_eq(hcount(s, "x-outrigger-upstream"), 1, "%s", s);
  cr_expect_str_eq(hval(s, "x-outrigger-upstream"), "shortener-v2");
  px_buf_free(&out);
}

Test(build_response, connection_header_for_each_client) {
  thead_t t;
  resp_init(&t, 200, 1, 0);
  hadd(&t, "Content-Length", "1");
  px_resp_rewrite_t rw = rrw_default;
  px_buf_t out = {0};

  rw.client_minor = 0; /* 1.0 client, connection stays: must be said */
  cr_expect_eq(px_http1_build_response(&t.m, &rw, &out), PX_BODY_LENGTH);
  cr_expect_eq(hcount(cstr(&out), "connection"), 1);
  cr_expect_str_eq(hval(cstr(&out), "connection"), "keep-alive");
  px_buf_free(&out);

  rw.close = 1; /* 1.0 client, closing */
  px_http1_build_response(&t.m, &rw, &out);
  cr_expect_eq(hcount(cstr(&out), "connection"), 1);
  cr_expect_str_eq(hval(cstr(&out), "connection"), "close");
  px_buf_free(&out);

  rw.client_minor = 1; /* 1.1 client, closing */
  px_http1_build_response(&t.m, &rw, &out);
  cr_expect_eq(hcount(cstr(&out), "connection"), 1);
  cr_expect_str_eq(hval(cstr(&out), "connection"), "close");
  px_buf_free(&out);
}

/* ---- px_http1_problem ------------------------------------------------------ */

Test(problem, complete_problem_json_response) {
  static const char detail[] = "quote \" backslash \\ newline \n tab \t ctl \x01 end";
  px_buf_t out = {0};
  px_http1_problem(&out, 503, "overloaded", detail, 1, "x-outrigger-overloaded: true\r\n");
  const char *s = cstr(&out);
  cr_expect(strncmp(s, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0, "%s", s);
  cr_expect_str_eq(hval(s, "content-type"), "application/problem+json");
  cr_expect_str_eq(hval(s, "x-outrigger-error"), "overloaded");
  cr_expect_str_eq(hval(s, "x-outrigger-overloaded"), "true");
  cr_expect_str_eq(hval(s, "connection"), "close");

  const char *body = strstr(s, "\r\n\r\n");
  cr_assert(body);
  body += 4;
  size_t blen = out.len - (size_t)(body - s);
  char cl[32];
  snprintf(cl, sizeof(cl), "%zu", blen);
  cr_expect_str_eq(hval(s, "content-length"), cl);

  char err[128] = "";
  px_json_t *j = px_json_parse(body, blen, err, sizeof(err));
  cr_assert_not_null(j, "body is not JSON (%s): %.*s", err, (int)blen, body);
  cr_expect_eq(px_json_type(j), PX_JSON_OBJECT);
  cr_expect_eq(px_json_count(j), 4);
  size_t n;
  const char *type = px_json_str(px_json_get(j, "type"), NULL);
  cr_expect(type && strstr(type, "overloaded"), "type %s", type ? type : "(none)");
  const char *title = px_json_str(px_json_get(j, "title"), NULL);
  cr_expect(title && strcmp(title, "Service Unavailable") == 0);
  int64_t status = 0;
  cr_expect_eq(px_json_int(px_json_get(j, "status"), &status), 0);
  cr_expect_eq(status, 503);
  const char *d = px_json_str(px_json_get(j, "detail"), &n);
  cr_assert_not_null(d);
  cr_expect_eq(n, sizeof(detail) - 1);
  cr_expect(memcmp(d, detail, n) == 0, "detail did not survive escaping: %s", d);
  px_json_free(j);
  px_buf_free(&out);
}

Test(problem, without_close_or_extra_headers) {
  px_buf_t out = {0};
  px_http1_problem(&out, 404, "no_route", "no route for /x", 0, NULL);
  const char *s = cstr(&out);
  cr_expect(strncmp(s, "HTTP/1.1 404 Not Found\r\n", 24) == 0, "%s", s);
  cr_expect_eq(hcount(s, "connection"), 0);
  cr_expect_str_eq(hval(s, "x-outrigger-error"), "no_route");
  px_headscan_t sc;
  cr_expect_eq(scan_all(s, out.len, &sc), 1, "well-formed head");
  char cl[32];
  snprintf(cl, sizeof(cl), "%zu", out.len - sc.head_end);
  cr_expect_str_eq(hval(s, "content-length"), cl);
  px_buf_free(&out);
}

/* ---- px_uuid4 and small helpers -------------------------------------------- */

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

Test(uuid4, format_and_uniqueness) {
  enum { N = 10000 };
  char(*ids)[37] = calloc(N, sizeof(*ids));
  cr_assert(ids);
  static const char vs[] = "89ab";
  int variants[4] = {0};
  for (int i = 0; i < N; i++) {
    px_uuid4(ids[i]);
    cr_assert(is_uuid4(ids[i]), "not a UUIDv4: %s", ids[i]);
    variants[strchr(vs, ids[i][19]) - vs]++;
  }
  for (int v = 0; v < 4; v++)
    cr_expect(variants[v] > N / 8, "variant nibble %d drawn %d times", v, variants[v]);
  qsort(ids, N, sizeof(*ids), cmp_id);
  for (int i = 1; i < N; i++) cr_assert(strcmp(ids[i - 1], ids[i]) != 0, "duplicate %s", ids[i]);
  free(ids);
}

Test(http1, head_find_and_hop_by_hop) {
  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  hadd(&t, "X-Two", "1");
  hadd(&t, "x-two", "2");
  cr_expect_eq(px_head_find(&t.m, "host"), 0);
  cr_expect_eq(px_head_find(&t.m, "X-TWO"), 1, "the first of several");
  cr_expect_eq(px_head_find(&t.m, "x-tw"), -1);
  cr_expect_eq(px_head_find(&t.m, "absent"), -1);

  cr_expect(px_http1_is_hop_by_hop(PX_STR("Transfer-Encoding")));
  cr_expect(px_http1_is_hop_by_hop(PX_STR("CONNECTION")));
  cr_expect(px_http1_is_hop_by_hop(PX_STR("te")));
  cr_expect(!px_http1_is_hop_by_hop(PX_STR("tee")));
  cr_expect(!px_http1_is_hop_by_hop(PX_STR("content-length")));
  cr_expect(!px_http1_is_hop_by_hop(PX_STR("host")));
}

/* ---- px_hcollect: the target and the refusal reasons ------------------------------- */

Test(hcollect, target_in_pieces_and_reasons) {
  px_hcollect_t hc = {0};
  px_hcollect_url(&hc, 4, 3);
  px_hcollect_url(&hc, 7, 5); /* the rest of the target, from the next read */
  cr_expect(hc.url_started);
  cr_expect_eq(hc.url_off, 4);
  cr_expect_eq(hc.url_len, 8);
  cr_expect_null(px_hcollect_error(&hc));

  cr_expect_eq(px_hcollect_value(&hc, 20, 1), -1, "a value with no name must be refused");
  cr_expect_str_eq(px_hcollect_error(&hc), "a header line has an empty name");
  px_hcollect_reset(&hc);
  cr_expect(!hc.url_started, "reset must forget the target");
  cr_expect_null(px_hcollect_error(&hc));

  cr_expect_eq(px_hcollect_field(&hc, 0, 0), 0);
  cr_expect_eq(px_hcollect_value(&hc, 2, 1), 0);
  cr_expect_eq(px_hcollect_value_done(&hc, ""), -1, "an empty name must be refused at the end of its line");
  cr_expect_str_eq(px_hcollect_error(&hc), "a header line has an empty name");
  px_hcollect_reset(&hc);

  cr_expect_eq(px_hcollect_field(&hc, 0, 3), 0);
  cr_expect_eq(px_hcollect_value(&hc, 5, 3), 0);
  cr_expect_eq(px_hcollect_value(&hc, 12, 2), -1, "a non-adjacent value piece is a folded line");
  cr_expect_str_eq(px_hcollect_error(&hc), "obs-folded header lines are not accepted");
  px_hcollect_reset(&hc);

  /* Transfer-Encoding lines are counted, whatever their value (llhttp flags no empty one). */
  static const char b[] = "Transfer-Encoding: x\r\ntransfer-encodinG:\r\nTransfer-Encodings: y\r\n";
  cr_expect_eq(px_hcollect_field(&hc, 0, 17), 0);
  cr_expect_eq(px_hcollect_value(&hc, 19, 1), 0);
  cr_expect_eq(px_hcollect_value_done(&hc, b), 0);
  cr_expect_eq(px_hcollect_field(&hc, 22, 17), 0);
  cr_expect_eq(px_hcollect_value_done(&hc, b), 0);
  cr_expect_eq(px_hcollect_field(&hc, 42, 18), 0);
  cr_expect_eq(px_hcollect_value(&hc, 62, 1), 0);
  cr_expect_eq(px_hcollect_value_done(&hc, b), 0);
  cr_expect_eq(hc.te_lines, 2);
  px_hcollect_reset(&hc);
  cr_expect_eq(hc.te_lines, 0);

  /* The value ends before the whitespace that ends its line (RFC 9110 §5.5). */
  static const char ows[] = "X-Request-Id: abc-1 \t \r\nX-Empty: \t\r\n";
  cr_expect_eq(px_hcollect_field(&hc, 0, 12), 0);
  cr_expect_eq(px_hcollect_value(&hc, 14, 8), 0); /* llhttp's span: "abc-1 \t " */
  cr_expect_eq(px_hcollect_value_done(&hc, ows), 0);
  cr_expect_eq(hc.h[0].value_len, 5, "trailing whitespace kept in the value");
  cr_expect_eq(px_hcollect_field(&hc, 24, 7), 0);
  cr_expect_eq(px_hcollect_value(&hc, 33, 1), 0);
  cr_expect_eq(px_hcollect_value_done(&hc, ows), 0);
  cr_expect_eq(hc.h[1].value_len, 0);
  px_hcollect_free(&hc);
}

/* ---- px_http1_refuse: what is refused before routing ------------------------------ */

Test(http1, refuse_versions_connect_upgrade_and_missing_host) {
  static const char base[] = "hostx/ HTTP/1.1";
  px_hspan_t host = {0, 4, 4, 1};
  px_head_t with_host = {
      .base = base, .h = &host, .nh = 1, .method = HTTP_GET, .http_minor = 1, .url_off = 5, .url_len = 1};
  px_head_t no_host = {
      .base = base, .h = NULL, .nh = 0, .method = HTTP_GET, .http_minor = 1, .url_off = 5, .url_len = 1};
  cr_expect_null(px_http1_refuse(&with_host, 1, 0, 0));
  cr_expect_str_eq(px_http1_refuse(&no_host, 1, 0, -1), "HTTP/1.1 requests need a Host header");
  no_host.http_minor = 0; /* HTTP/1.0 may omit Host */
  cr_expect_null(px_http1_refuse(&no_host, 1, 0, -1));
  no_host.http_minor = 9; /* "GET /" */
  cr_expect_str_eq(px_http1_refuse(&no_host, 0, 0, -1), "only HTTP/1.0 and HTTP/1.1 requests are served");
  with_host.http_minor = 0;
  cr_expect_str_eq(px_http1_refuse(&with_host, 2, 0, 0), "only HTTP/1.0 and HTTP/1.1 requests are served");
  with_host.http_minor = 1;
  cr_expect_str_eq(px_http1_refuse(&with_host, 1, 1, 0), "CONNECT and protocol upgrades are not supported");
  with_host.method = HTTP_CONNECT;
  cr_expect_str_eq(px_http1_refuse(&with_host, 1, 0, 0), "CONNECT and protocol upgrades are not supported");
}

/* ---- px_http1_resend_safe: which requests may go upstream a second time ------------ */

Test(http1, resend_safe_by_method_and_key) {
  static const int idempotent[] = {HTTP_GET, HTTP_HEAD, HTTP_OPTIONS, HTTP_TRACE, HTTP_PUT, HTTP_DELETE};
  thead_t t;
  for (size_t i = 0; i < PX_ARRAY_SIZE(idempotent); i++) {
    req_init(&t, idempotent[i], "/");
    cr_expect(px_http1_resend_safe(&t.m, 0), "%s must be resendable", llhttp_method_name(idempotent[i]));
  }
  static const int keyed[] = {HTTP_POST, HTTP_PATCH};
  for (size_t i = 0; i < PX_ARRAY_SIZE(keyed); i++) {
    const char *name = llhttp_method_name(keyed[i]);
    req_init(&t, keyed[i], "/");
    hadd(&t, "Host", "a");
    cr_expect(!px_http1_resend_safe(&t.m, 1), "%s without a key must not be resent", name);
    hadd(&t, "Idempotency-Key", "");
    cr_expect(!px_http1_resend_safe(&t.m, 1), "%s with an empty key must not be resent", name);
    req_init(&t, keyed[i], "/");
    hadd(&t, "idempotency-key", "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"");
    cr_expect(px_http1_resend_safe(&t.m, 1), "%s with a key may be resent", name);
    cr_expect(!px_http1_resend_safe(&t.m, 0), "%s must not be resent under idempotency_key: off", name);
  }
  req_init(&t, HTTP_LOCK, "/"); /* WebDAV and other extension methods: not known to be idempotent */
  hadd(&t, "Idempotency-Key", "k");
  cr_expect(!px_http1_resend_safe(&t.m, 1));
  /* A key named in Connection is hop-by-hop: the upstream never sees it. */
  req_init(&t, HTTP_POST, "/");
  hadd(&t, "Idempotency-Key", "k");
  hadd(&t, "Connection", "keep-alive, Idempotency-KEY");
  cr_expect(!px_http1_resend_safe(&t.m, 1), "a key that does not go upstream makes nothing safe");
  req_init(&t, HTTP_POST, "/");
  hadd(&t, "Connection", "close");
  hadd(&t, "Idempotency-Key", "k");
  cr_expect(px_http1_resend_safe(&t.m, 1));
}

/* ---- Host and Transfer-Encoding: what the router and the upstream must agree on ---- */

Test(http1, host_values) {
  static const char *good[] = {"",
                               "a",
                               "a:80",
                               "a:",
                               "example.com",
                               "EXAMPLE.com:8080",
                               "127.0.0.1:1",
                               "[::1]",
                               "[::1]:8080",
                               "[fe80::1%25eth0]",
                               "xn--bcher-kva.example",
                               "a_b~c",
                               "a%20b",
                               "[v1.x:y]",
                               "[fe80::1%25en%30]"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(good); i++)
    cr_expect(px_http1_host_valid((px_str_t){good[i], strlen(good[i])}), "'%s' must be valid", good[i]);
  static const char *bad[] = {":80",     ":",        "a%",         "a%2",    "a%zz",    "[a!b]", "[v1]",
                              "[v.x]",   "[::1%25]", "[::1%eth0]", "a b",    "a/b",     "a@b",   "a:8x",
                              "a:80:90", "[::1",     "[]",         "[::1]x", "[::1]:x", "a\"b",  "a\\b",
                              "a?b",     "a#b",      "[::1 ]",     "a\tb"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad); i++)
    cr_expect(!px_http1_host_valid((px_str_t){bad[i], strlen(bad[i])}), "'%s' must be refused", bad[i]);

  thead_t t;
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a");
  hadd(&t, "X-Other", "1");
  hadd(&t, "HOST", "b");
  cr_expect_str_eq(px_http1_refuse(&t.m, 1, 0, 0), "a request may have only one Host header");
  req_init(&t, HTTP_GET, "/");
  hadd(&t, "Host", "a b");
  cr_expect_str_eq(px_http1_refuse(&t.m, 1, 0, 0), "the Host header is not a valid host[:port]");
}

Test(http1, transfer_codings_other_than_chunked) {
  thead_t t;
  req_init(&t, HTTP_POST, "/");
  cr_expect(px_http1_te_chunked_only(&t.m), "no Transfer-Encoding at all is fine");
  static const char *good[] = {"chunked", "Chunked", " chunked ", "chunked,", ", chunked"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(good); i++) {
    req_init(&t, HTTP_POST, "/");
    hadd(&t, "Transfer-Encoding", good[i]);
    cr_expect(px_http1_te_chunked_only(&t.m), "'%s' must pass", good[i]);
  }
  static const char *bad[] = {"gzip, chunked",    "identity",  "gzip",
                              "chunked, chunked", "x-chunked", "deflate ,chunked"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad); i++) {
    req_init(&t, HTTP_POST, "/");
    hadd(&t, "Transfer-Encoding", bad[i]);
    cr_expect(!px_http1_te_chunked_only(&t.m), "'%s' must be refused", bad[i]);
  }
  req_init(&t, HTTP_POST, "/"); /* a coding list split over two lines */
  hadd(&t, "Transfer-Encoding", "gzip");
  hadd(&t, "transfer-encoding", "chunked");
  cr_expect(!px_http1_te_chunked_only(&t.m));
}

/* ---- absolute-form targets: what a client sends to its HTTP proxy ------------------ */

static int split_target(const char *target, const char **auth, const char **orig) {
  static char a[256], o[256];
  px_str_t sa = {NULL, 0}, so = {NULL, 0};
  int r = px_http1_absolute_target((px_str_t){target, strlen(target)}, &sa, &so);
  snprintf(a, sizeof(a), "%.*s", (int)sa.n, sa.p ? sa.p : "");
  snprintf(o, sizeof(o), "%.*s", (int)so.n, so.p ? so.p : "");
  *auth = a;
  *orig = o;
  return r;
}

Test(http1, absolute_form_targets) {
  const char *a, *o;
  cr_expect_eq(split_target("http://svc:8080/a/b?c=1", &a, &o), 1);
  cr_expect_str_eq(a, "svc:8080");
  cr_expect_str_eq(o, "/a/b?c=1");
  cr_expect_eq(split_target("HTTPS://[::1]:443", &a, &o), 1, "scheme is case-insensitive");
  cr_expect_str_eq(a, "[::1]:443");
  cr_expect_str_eq(o, "");
  cr_expect_eq(split_target("http://svc?x=1", &a, &o), 1);
  cr_expect_str_eq(a, "svc");
  cr_expect_str_eq(o, "?x=1");
  cr_expect_eq(split_target("/a/b", &a, &o), 0, "origin-form");
  cr_expect_eq(split_target("*", &a, &o), 0, "asterisk-form");
  cr_expect_eq(split_target("ftp://svc/x", &a, &o), 0, "not an http URI: left as it is");
  cr_expect_eq(split_target("http:///x", &a, &o), -1, "no authority");
  cr_expect_eq(split_target("http://user@svc/x", &a, &o), -1, "userinfo is not allowed in http URIs");
  cr_expect_eq(split_target("http://svc:80x/", &a, &o), -1);
}

Test(build_request, absolute_form_goes_upstream_as_origin_form) {
  thead_t t;
  req_init(&t, HTTP_GET, "http://svc:8080/a?b=1");
  hadd(&t, "Host", "ignored.example");
  hadd(&t, "X-Kept", "yes");
  px_req_rewrite_t rw = rw_default;
  rw.authority = PX_STR("svc:8080");
  rw.origin = PX_STR("/a?b=1");
  px_buf_t out = {0};
  char rid[201];
  const char *s = build_req(&t, &rw, &out, rid);
  cr_expect(strncmp(s, "GET /a?b=1 HTTP/1.1\r\n", 21) == 0, "%s", s);
  cr_expect(strstr(s, "\r\nhost: svc:8080\r\n"), "the target's authority is the Host: %s", s);
  cr_expect_null(strstr(s, "ignored.example"), "the client's Host must go: %s", s);
  cr_expect(strstr(s, "\r\nX-Kept: yes\r\n"), "%s", s);
  px_buf_free(&out);

  rw.origin = PX_STR("?q"); /* "http://svc?q": the root */
  s = build_req(&t, &rw, &out, rid);
  cr_expect(strncmp(s, "GET /?q HTTP/1.1\r\n", 18) == 0, "%s", s);
  px_buf_free(&out);
}

/* ---- px_http1_request_body: how a request body is framed, or why not ------------ */

Test(http1, request_body_framing) {
  thead_t t;
  const char *why = NULL;
  req_init(&t, HTTP_POST, "/");
  cr_expect_eq(px_http1_request_body(&t.m, 0, 0, 0, &why), PX_BODY_NONE);
  cr_expect_eq(px_http1_request_body(&t.m, F_CONTENT_LENGTH, 0, 0, &why), PX_BODY_NONE);
  cr_expect_eq(px_http1_request_body(&t.m, F_CONTENT_LENGTH, 5, 0, &why), PX_BODY_LENGTH);
  cr_expect_eq(px_http1_request_body(&t.m, F_CONTENT_LENGTH, INT64_MAX, 0, &why), PX_BODY_LENGTH);
  cr_expect_eq(px_http1_request_body(&t.m, F_CONTENT_LENGTH, (uint64_t)INT64_MAX + 1, 0, &why), -400,
               "2^63 does not fit a signed length");
  cr_expect_str_eq(why, "a Content-Length must fit in 63 bits");
  cr_expect_eq(px_http1_request_body(&t.m, F_CONTENT_LENGTH, UINT64_MAX, 0, &why), -400);

  hadd(&t, "Transfer-Encoding", "chunked");
  cr_expect_eq(px_http1_request_body(&t.m, F_TRANSFER_ENCODING | F_CHUNKED, 0, 1, &why), PX_BODY_CHUNKED);
  cr_expect_eq(px_http1_request_body(&t.m, F_TRANSFER_ENCODING, 0, 1, &why), -400, "chunked is not last");
  cr_expect_str_eq(why, "a request with Transfer-Encoding must end it with chunked");
  cr_expect_eq(px_http1_request_body(&t.m, 0, 0, 1, &why), -400, "an empty Transfer-Encoding, unflagged");
  t.m.http_minor = 0;
  cr_expect_eq(px_http1_request_body(&t.m, F_TRANSFER_ENCODING | F_CHUNKED, 0, 1, &why), -400);
  cr_expect_str_eq(why, "Transfer-Encoding is not allowed in an HTTP/1.0 request");

  req_init(&t, HTTP_POST, "/");
  hadd(&t, "Transfer-Encoding", "gzip, chunked");
  cr_expect_eq(px_http1_request_body(&t.m, F_TRANSFER_ENCODING | F_CHUNKED, 0, 1, &why), -501);
  cr_expect_str_eq(why, "transfer codings other than chunked are not supported");
}

Test(http1, fragment_in_a_target_refused) {
  thead_t t;
  req_init(&t, HTTP_GET, "/a#b");
  hadd(&t, "Host", "a");
  cr_expect_str_eq(px_http1_refuse(&t.m, 1, 0, 0), "a request target may not hold a fragment ('#')");
  req_init(&t, HTTP_GET, "/a?b=%23");
  hadd(&t, "Host", "a");
  cr_expect_null(px_http1_refuse(&t.m, 1, 0, 0));
}

/* RFC 9112 §3: a request line is not to be autocorrected; llhttp skips extra spaces. */
Test(http1, extra_spaces_in_the_request_line_refused) {
  static const struct {
    const char *line;
    int ok;
  } cases[] = {{"GET / HTTP/1.1", 1}, {"GET  / HTTP/1.1", 0}, {"GET /  HTTP/1.1", 0}, {"GET /a HTTP/1.1", 1}};
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    const char *line = cases[i].line, *url = strchr(line, '/');
    px_hspan_t host = {0, 0, 0, 0};
    px_head_t h = {.base = line,
                   .h = &host,
                   .nh = 0,
                   .method = HTTP_GET,
                   .http_minor = 0,
                   .url_off = (uint32_t)(url - line),
                   .url_len = (uint32_t)strcspn(url, " ")};
    const char *why = px_http1_refuse(&h, 1, 0, -1);
    if (cases[i].ok)
      cr_expect_null(why, "%s: %s", line, why);
    else
      cr_expect_str_eq(why, "the request line has more than one space between its parts", "%s", line);
  }
}

/* llhttp takes a target with any scheme; a proxy is sent origin-form, absolute-form
 * with http or https, or "*" for OPTIONS (RFC 9112 §3.2). */
Test(http1, targets_in_no_form_refused) {
  static const struct {
    int method;
    const char *target, *why;
  } cases[] = {
      {HTTP_GET, "/", NULL},
      {HTTP_GET, "http://a/b", NULL},
      {HTTP_GET, "HTTPS://a", NULL},
      {HTTP_OPTIONS, "*", NULL},
      {HTTP_GET, "*", "the request target is in none of origin, absolute (http or https) or asterisk form"},
      {HTTP_GET, "httq://a/b",
       "the request target is in none of origin, absolute (http or https) or asterisk form"},
      {HTTP_GET, "ftp://a/b",
       "the request target is in none of origin, absolute (http or https) or asterisk form"},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    thead_t t;
    req_init(&t, cases[i].method, cases[i].target);
    hadd(&t, "Host", "a");
    const char *why = px_http1_refuse(&t.m, 1, 0, 0);
    if (cases[i].why)
      cr_expect_str_eq(why, cases[i].why, "%s", cases[i].target);
    else
      cr_expect_null(why, "%s: %s", cases[i].target, why);
  }
}

/* RFC 9110 §8.6: a 204 has no Content-Length; a 304 and an answer to HEAD keep the one
 * the representation has. */
Test(build_response, no_length_on_a_204) {
  px_buf_t out = {0};
  thead_t t;
  resp_init(&t, 204, 5, 0);
  hadd(&t, "Content-Length", "5");
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_NONE);
  cr_expect_eq(hcount(cstr(&out), "content-length"), 0, "%s", cstr(&out));
  px_buf_free(&out);
  resp_init(&t, 304, 5, 0);
  hadd(&t, "Content-Length", "5");
  cr_expect_eq(px_http1_build_response(&t.m, &rrw_default, &out), PX_BODY_NONE);
  cr_expect_str_eq(hval(cstr(&out), "content-length"), "5");
  px_buf_free(&out);
}

/* Field names are compared without ASCII case (RFC 9110 §5.1), eight bytes at a time
 * (core.c): every pair of bytes in every position of names up to 40 bytes long must
 * agree with a byte-by-byte reading, bytes of 0x80 and above and the neighbours of the
 * letters ('@', '[', '`', '{') included, which differ from a letter by 0x20 too. */
static int ieq_ref(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if (x >= 'A' && x <= 'Z') x |= 0x20;
    if (y >= 'A' && y <= 'Z') y |= 0x20;
    if (x != y) return 0;
  }
  return 1;
}

Test(str_ieq, agrees_with_a_byte_by_byte_comparison) {
  char a[40], b[40];
  for (size_t n = 1; n <= sizeof(a); n += 3) {
    for (size_t pos = 0; pos < n; pos++) {
      for (int x = 0; x < 256; x++) {
        for (int y = 0; y < 256; y += (x & 7) + 1) { /* every y for some x, a spread for the rest */
          memset(a, 'k', n);
          memset(b, 'K', n);
          a[pos] = (char)x;
          b[pos] = (char)y;
          int want = ieq_ref(a, b, n);
          cr_assert_eq(px_str_ieq((px_str_t){a, n}, (px_str_t){b, n}), want, "len %zu at %zu: %02x vs %02x",
                       n, pos, x, y);
        }
      }
    }
  }
  cr_expect(px_str_ieq(PX_STR("Idempotency-Key"), PX_STR("idempotency-key")));
  cr_expect(!px_str_ieq(PX_STR("Idempotency-Key"), PX_STR("idempotency-kex")));
  cr_expect(!px_str_ieq(PX_STR("Host"), PX_STR("Hos")), "lengths differ");
  cr_expect(!px_str_ieq(PX_STR("a@"), PX_STR("A`")), "'@' and '`' differ by 0x20 but are no letters");
  cr_expect(px_str_ieq(PX_STR(""), PX_STR("")));
}

/* ---- px_hash64 -------------------------------------------------------------------- */

/* The hash as written out plainly: the words, then the tail zero-padded by memcpy. */
static uint64_t hash64_ref(const char *p, size_t n, uint64_t seed) {
  uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull), w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    w *= 0x87c37b91114253d5ull;
    h ^= (w << 31) | (w >> 33);
    h = ((h << 27) | (h >> 37)) * 5 + 0x52dce729;
  }
  w = 0;
  memcpy(&w, p + i, n - i);
  return px_fmix64(h ^ w * 0x4cf5ad432745937full);
}

Test(hash64, every_length_reads_each_byte_once_and_no_more) {
  char buf[80];
  for (size_t i = 0; i < sizeof(buf); i++) buf[i] = (char)(i * 37 + 11);
  for (size_t n = 0; n <= 64; n++) {
    /* the tail is read in place, never past the end: the bytes after it must not count */
    char *p = malloc(n ? n : 1);
    memcpy(p, buf, n);
    uint64_t h = px_hash64(p, n, 42);
    cr_assert_eq(h, hash64_ref(p, n, 42), "length %zu", n);
    for (size_t at = 0; at < n; at++) {
      p[at] ^= 1;
      cr_assert_neq(px_hash64(p, n, 42), h, "length %zu: byte %zu changed", n, at);
      p[at] ^= 1;
    }
    cr_assert_neq(px_hash64(p, n, 43), h, "length %zu: the seed", n);
    free(p);
  }
  cr_expect_neq(px_hash64("\0", 1, 0), px_hash64("", 0, 0), "the length counts");
}
