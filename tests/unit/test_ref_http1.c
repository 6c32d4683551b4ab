/* The differential fuzzer's oracle (tests/fuzz/diff/ref_http1.h): every rule of its strict
 * RFC 9112 reading with valid and invalid cases, and the properties the fuzzer leans on:
 * every proper prefix of a valid message is REF_NEED_MORE, the message itself followed by
 * anything is REF_COMPLETE with wire_len == its length, and an invalid message stays invalid
 * whatever follows it. Each input is parsed from an exact-size heap copy, so that ASan sees
 * any read past the end. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref_http1.h"

/* A literal and its length, so that cases may hold NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

static ref_msg_t *msg; /* 33 KB: kept off the stack */
static char *held;     /* the copy msg's pointers point into */

static void setup(void) { msg = calloc(1, sizeof(*msg)); }
static void teardown(void) {
  ref_msg_free(msg);
  free(msg);
  free(held);
  held = NULL;
}

TestSuite(ref_req, .init = setup, .fini = teardown);
TestSuite(ref_resp, .init = setup, .fini = teardown);
TestSuite(ref_fields, .init = setup, .fini = teardown);

/* Which parser to run, and how. */
typedef struct {
  int response;
  const char *method; /* the request a response answers */
  int eof;
} how_t;

static const how_t REQ = {0, NULL, 0};

static char *copy(const char *s, size_t n) {
  char *b = malloc(n ? n : 1);
  cr_assert(b);
  memcpy(b, s, n);
  return b;
}

static ref_result_t run(how_t h, const char *s, size_t n, ref_msg_t *m) {
  return h.response ? ref_parse_response(s, n, h.method, h.eof, m) : ref_parse_request(s, n, m);
}

/* Parses into `msg`, keeping the copy alive for the pointers into it. */
static ref_result_t parse(how_t h, const char *s, size_t n) {
  ref_msg_free(msg);
  free(held);
  held = copy(s, n);
  return run(h, held, n, msg);
}

static ref_result_t req(const char *s) { return parse(REQ, s, strlen(s)); }

static const char *why(const ref_msg_t *m) { return m->error ? m->error : "-"; }

/* The prefix property: every proper prefix shorter than `upto` may still become the message. */
static void expect_prefixes_need_more(const char *name, how_t h, const char *s, size_t upto) {
  ref_msg_t *m = calloc(1, sizeof(*m));
  for (size_t k = 0; k < upto; k++) {
    char *b = copy(s, k);
    ref_result_t r = run(h, b, k, m);
    ref_msg_free(m);
    free(b);
    cr_assert_eq(r, REF_NEED_MORE, "%s: the prefix of %zu bytes gave %d (%s at %zu)", name, k, r, why(m),
                 m->error_off);
  }
  free(m);
}

static const char *const tails[] = {
    "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n", "\r\n", " ", "\n", "\x01garbage"};

/* A complete message ends where it ends, whatever follows it (pipelining). */
static void expect_tails_complete(const char *name, how_t h, const char *s, size_t n) {
  ref_msg_t *m = calloc(1, sizeof(*m));
  for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
    size_t tn = strlen(tails[t]);
    char *b = malloc(n + tn);
    memcpy(b, s, n);
    memcpy(b + n, tails[t], tn);
    ref_result_t r = run(h, b, n + tn, m);
    size_t wire = m->wire_len;
    ref_msg_free(m);
    free(b);
    cr_assert_eq(r, REF_COMPLETE, "%s + tail %zu: %d (%s at %zu)", name, t, r, why(m), m->error_off);
    cr_assert_eq(wire, n, "%s + tail %zu: wire_len %zu, want %zu", name, t, wire, n);
  }
  free(m);
}

/* No byte added after an invalid message can make it valid. */
static void expect_invalid(const char *name, how_t h, const char *s, size_t n) {
  ref_result_t r = parse(h, s, n);
  cr_assert_eq(r, REF_INVALID, "%s: got %d, want REF_INVALID", name, r);
  cr_assert(msg->error, "%s: no error string", name);
  cr_assert_leq(msg->error_off, n, "%s: error_off %zu past %zu", name, msg->error_off, n);
  ref_msg_t *m = calloc(1, sizeof(*m));
  for (size_t t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
    size_t tn = strlen(tails[t]);
    char *b = malloc(n + tn);
    memcpy(b, s, n);
    memcpy(b + n, tails[t], tn);
    r = run(h, b, n + tn, m);
    ref_msg_free(m);
    free(b);
    cr_assert_eq(r, REF_INVALID, "%s + tail %zu: got %d", name, t, r);
  }
  free(m);
}

static void expect_body(const char *name, const char *body) {
  size_t n = body ? strlen(body) : 0;
  cr_expect_eq(msg->body_len, n, "%s: body_len %zu, want %zu", name, msg->body_len, n);
  if (n == 0)
    cr_expect_null(msg->body, "%s: an empty body must be NULL", name);
  else if (msg->body_len == n)
    cr_expect(memcmp(msg->body, body, n) == 0, "%s: body %.*s, want %s", name, (int)msg->body_len,
              (const char *)msg->body, body);
}

/* ---- requests: valid ------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *msg;
  size_t len;
  ref_framing_t framing;
  const char *body; /* decoded; NULL for none */
  int keep_alive;
} req_ok_t;

#define H11 " HTTP/1.1\r\nHost: a\r\n"
#define GET11 "GET /" H11
#define CHUNKED_HEAD "POST /" H11 "Transfer-Encoding: chunked\r\n\r\n"
#define NONE REF_BODY_NONE
#define LEN REF_BODY_LENGTH
#define CHUNKED REF_BODY_CHUNKED
#define CLOSE REF_BODY_CLOSE

static const req_ok_t req_ok[] = {
    /* request line (RFC 9112 §3) */
    {"simple", S(GET11 "\r\n"), NONE, NULL, 1},
    {"unknown method", S("FROB-X /" H11 "\r\n"), NONE, NULL, 1},
    {"every tchar in the method", S("!#$%&'*+-.^_`|~09AZaz /" H11 "\r\n"), NONE, NULL, 1},
    {"lower-case method is just another token", S("get /" H11 "\r\n"), NONE, NULL, 1},
    {"empty lines before the request line", S("\r\n\r\n" GET11 "\r\n"), NONE, NULL, 1},
    {"HTTP/1.9", S("GET / HTTP/1.9\r\nHost: a\r\n\r\n"), NONE, NULL, 1},
    /* request-target forms (RFC 9112 §3.2) */
    {"origin-form with query", S("GET /a/b?x=1&y=%20" H11 "\r\n"), NONE, NULL, 1},
    {"every target byte but '#'",
     S("GET "
       "/!\"$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~" H11
       "\r\n"),
     NONE, NULL, 1},
    {"absolute-form", S("GET http://example.com/x" H11 "\r\n"), NONE, NULL, 1},
    {"absolute-form, https in upper case, port, query", S("GET HTTPS://Example.COM:8443?q=1" H11 "\r\n"),
     NONE, NULL, 1},
    {"absolute-form without a path", S("GET http://a" H11 "\r\n"), NONE, NULL, 1},
    {"absolute-form with an IPv6 host", S("GET http://[::1]:80/" H11 "\r\n"), NONE, NULL, 1},
    {"absolute-form with an empty port", S("GET http://a:/" H11 "\r\n"), NONE, NULL, 1},
    {"absolute-form with a pct-encoded host", S("GET http://%41b/" H11 "\r\n"), NONE, NULL, 1},
    {"asterisk-form", S("OPTIONS *" H11 "\r\n"), NONE, NULL, 1},
    {"OPTIONS in origin-form", S("OPTIONS /x" H11 "\r\n"), NONE, NULL, 1},
    {"authority-form", S("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), NONE, NULL, 1},
    {"authority-form with an IPv6 host", S("CONNECT [2001:db8::1]:443" H11 "\r\n"), NONE, NULL, 1},
    /* Host (RFC 9112 §3.2) */
    {"HTTP/1.0 without Host", S("GET / HTTP/1.0\r\n\r\n"), NONE, NULL, 0},
    {"HTTP/1.0 with Host", S("GET / HTTP/1.0\r\nHost: a\r\n\r\n"), NONE, NULL, 0},
    {"empty Host", S("GET / HTTP/1.1\r\nHost:\r\n\r\n"), NONE, NULL, 1},
    {"Host of whitespace", S("GET / HTTP/1.1\r\nHost: \t \r\n\r\n"), NONE, NULL, 1},
    {"Host without OWS", S("GET / HTTP/1.1\r\nHost:a\r\n\r\n"), NONE, NULL, 1},
    {"Host name in any case", S("GET / HTTP/1.1\r\nhOsT: a\r\n\r\n"), NONE, NULL, 1},
    {"Host of unreserved bytes", S("GET / HTTP/1.1\r\nHost: a.b-c_d~e9\r\n\r\n"), NONE, NULL, 1},
    {"Host pct-encoded", S("GET / HTTP/1.1\r\nHost: %41%2fb\r\n\r\n"), NONE, NULL, 1},
    {"Host of sub-delims", S("GET / HTTP/1.1\r\nHost: !$&'()*+,;=\r\n\r\n"), NONE, NULL, 1},
    {"Host with a port", S("GET / HTTP/1.1\r\nHost: a:8080\r\n\r\n"), NONE, NULL, 1},
    {"Host with an empty port", S("GET / HTTP/1.1\r\nHost: a:\r\n\r\n"), NONE, NULL, 1},
    {"Host IPv4", S("GET / HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"), NONE, NULL, 1},
    {"Host IPv6", S("GET / HTTP/1.1\r\nHost: [::ffff:1.2.3.4]\r\n\r\n"), NONE, NULL, 1},
    {"Host IPvFuture", S("GET / HTTP/1.1\r\nHost: [v1F.a:b!]:80\r\n\r\n"), NONE, NULL, 1},
    /* field lines (RFC 9112 §5, RFC 9110 §5.5) */
    {"empty value", S(GET11 "X-E:\r\n\r\n"), NONE, NULL, 1},
    {"OWS around a value", S(GET11 "X-A: \t a \t b \t\r\n\r\n"), NONE, NULL, 1},
    {"obs-text in a value", S(GET11 "X-A: caf\xc3\xa9 \x80\xff\r\n\r\n"), NONE, NULL, 1},
    {"every VCHAR in a value",
     S(GET11
       "X-A: !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
       "\r\n\r\n"),
     NONE, NULL, 1},
    {"every tchar in a name", S(GET11 "!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n"), NONE, NULL, 1},
    /* keep-alive (RFC 9112 §9.3) */
    {"HTTP/1.0 keep-alive", S("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), NONE, NULL, 1},
    {"HTTP/1.0 Keep-Alive in a list on a second line",
     S("GET / HTTP/1.0\r\nConnection: foo\r\nConnection: bar , Keep-Alive\r\n\r\n"), NONE, NULL, 1},
    {"HTTP/1.0 keep-alive and close", S("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), NONE,
     NULL, 0},
    {"HTTP/1.1 close", S(GET11 "Connection: close\r\n\r\n"), NONE, NULL, 0},
    {"HTTP/1.1 CLOSE in a list", S(GET11 "Connection: upgrade,, CLOSE\r\n\r\n"), NONE, NULL, 0},
    {"HTTP/1.1 closed is not close", S(GET11 "Connection: closed\r\n\r\n"), NONE, NULL, 1},
    /* Content-Length (RFC 9110 §8.6, RFC 9112 §6.3) */
    {"Content-Length", S("POST /" H11 "Content-Length: 5\r\n\r\nhello"), LEN, "hello", 1},
    {"Content-Length 0", S("POST /" H11 "Content-Length: 0\r\n\r\n"), LEN, NULL, 1},
    {"Content-Length 05", S("POST /" H11 "Content-Length: 05\r\n\r\nhello"), LEN, "hello", 1},
    {"Content-Length with 25 leading zeros",
     S("POST /" H11 "Content-Length: 00000000000000000000000003\r\n\r\nabc"), LEN, "abc", 1},
    {"Content-Length in OWS", S("POST /" H11 "content-length: \t3 \t\r\n\r\nabc"), LEN, "abc", 1},
    {"Content-Length body of CRLFs", S("POST /" H11 "Content-Length: 4\r\n\r\n\r\n\r\n"), LEN, "\r\n\r\n", 1},
    {"Content-Length in HTTP/1.0", S("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi"), LEN, "hi", 0},
    /* Transfer-Encoding (RFC 9112 §6.1) */
    {"chunked", S(CHUNKED_HEAD "5\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"chunked, several chunks", S(CHUNKED_HEAD "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), CHUNKED, "abcde", 1},
    {"chunked, no data", S(CHUNKED_HEAD "0\r\n\r\n"), CHUNKED, NULL, 1},
    {"chunked data of CRLFs", S(CHUNKED_HEAD "4\r\n\r\n\r\n\r\n0\r\n\r\n"), CHUNKED, "\r\n\r\n", 1},
    {"TE CHUNKED", S("POST /" H11 "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n"), CHUNKED, NULL, 1},
    {"TE in OWS", S("POST /" H11 "transfer-encoding: \t chunked \t\r\n\r\n0\r\n\r\n"), CHUNKED, NULL, 1},
    {"TE gzip, chunked", S("POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"),
     CHUNKED, "z", 1},
    {"TE on two lines",
     S("POST /" H11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), CHUNKED, NULL,
     1},
    {"TE with empty elements", S("POST /" H11 "Transfer-Encoding: , gzip ,, chunked ,\r\n\r\n0\r\n\r\n"),
     CHUNKED, NULL, 1},
    {"TE with an empty line",
     S("POST /" H11 "Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), CHUNKED, NULL, 1},
    {"TE codings with parameters",
     S("POST /" H11 "Transfer-Encoding: gzip;q=1 , x ;a=b, chunked\r\n\r\n0\r\n\r\n"), CHUNKED, NULL, 1},
    /* chunk sizes (RFC 9112 §7.1) */
    {"chunk size with leading zeros", S(CHUNKED_HEAD "0005\r\nhello\r\n000\r\n\r\n"), CHUNKED, "hello", 1},
    {"chunk size in upper-case hex", S(CHUNKED_HEAD "A\r\n0123456789\r\n0\r\n\r\n"), CHUNKED, "0123456789",
     1},
    {"chunk size in lower-case hex", S(CHUNKED_HEAD "a\r\n0123456789\r\n0\r\n\r\n"), CHUNKED, "0123456789",
     1},
    {"chunk size of two digits", S(CHUNKED_HEAD "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"), CHUNKED,
     "abcdefghijklmnopqrstuvwxyz", 1},
    /* chunk extensions (RFC 9112 §7.1.1) */
    {"ext name", S(CHUNKED_HEAD "5;a\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext name=token", S(CHUNKED_HEAD "5;a=b\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext BWS before ';'", S(CHUNKED_HEAD "5 ;a=b\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext BWS everywhere it may be", S(CHUNKED_HEAD "5 \t; \ta \t= \tb\r\nhello\r\n0\r\n\r\n"), CHUNKED,
     "hello", 1},
    {"several exts", S(CHUNKED_HEAD "5;a;b=c;d=e\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext name, BWS, next ext", S(CHUNKED_HEAD "5;a ;b\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext of every tchar", S(CHUNKED_HEAD "5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n"), CHUNKED,
     "hello", 1},
    {"ext quoted-string", S(CHUNKED_HEAD "5;a=\"x y,z;=\"\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext empty quoted-string", S(CHUNKED_HEAD "5;a=\"\"\r\nhello\r\n0\r\n\r\n"), CHUNKED, "hello", 1},
    {"ext quoted-pairs", S(CHUNKED_HEAD "5;a=\"q\\\"x\\\\ \\\t\\ \\\x80\"\r\nhello\r\n0\r\n\r\n"), CHUNKED,
     "hello", 1},
    {"ext obs-text and HTAB in quoted-string", S(CHUNKED_HEAD "5;a=\"\x80\xff\t\"\r\nhello\r\n0\r\n\r\n"),
     CHUNKED, "hello", 1},
    {"ext on the last chunk", S(CHUNKED_HEAD "5\r\nhello\r\n0;x=y\r\n\r\n"), CHUNKED, "hello", 1},
    /* trailers (RFC 9112 §7.1.2) */
    {"trailers", S(CHUNKED_HEAD "5\r\nhello\r\n0\r\nX-T: v\r\nY-E:\r\n\r\n"), CHUNKED, "hello", 1},
    {"chunked with Connection: close",
     S("POST /" H11 "Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), CHUNKED, NULL, 0},
};

static void check_req_ok(const req_ok_t *c) {
  ref_result_t r = parse(REQ, c->msg, c->len);
  cr_assert_eq(r, REF_COMPLETE, "%s: got %d (%s at %zu)", c->name, r, why(msg), msg->error_off);
  cr_expect_eq(msg->wire_len, c->len, "%s: wire_len %zu, want %zu", c->name, msg->wire_len, c->len);
  cr_expect_eq(msg->framing, c->framing, "%s: framing %d, want %d", c->name, msg->framing, c->framing);
  cr_expect_eq(msg->keep_alive, c->keep_alive, "%s: keep_alive %d", c->name, msg->keep_alive);
  cr_expect_eq(msg->major, 1, "%s", c->name);
  cr_expect_null(msg->error, "%s", c->name);
  cr_expect_leq(msg->skipped + msg->head_len, msg->wire_len, "%s", c->name);
  expect_body(c->name, c->body);
  expect_prefixes_need_more(c->name, REQ, c->msg, c->len);
  expect_tails_complete(c->name, REQ, c->msg, c->len);
}

Test(ref_req, valid_table) {
  for (size_t i = 0; i < sizeof(req_ok) / sizeof(req_ok[0]); i++) check_req_ok(&req_ok[i]);
}

/* ---- requests: invalid ------------------------------------------------------ */

typedef struct {
  const char *name;
  const char *msg;
  size_t len;
} bad_t;

#define POST11 "POST /" H11

static const bad_t req_bad[] = {
    /* before the request line (RFC 9112 §2.2) */
    {"bare LF empty line", S("\n" GET11 "\r\n")},
    {"CR CR", S("\r\r" GET11 "\r\n")},
    {"CR then the request", S("\r" GET11 "\r\n")},
    {"SP before the method", S(" " GET11 "\r\n")},
    {"empty line then SP", S("\r\n " GET11 "\r\n")},
    /* request line (RFC 9112 §3) */
    {"double SP after the method", S("GET  /" H11 "\r\n")},
    {"double SP after the target", S("GET / " H11 "\r\n")},
    {"SP after the version", S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n")},
    {"HTAB after the method", S("GET\t/" H11 "\r\n")},
    {"HTAB after the target", S("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n")},
    {"no version (HTTP/0.9)", S("GET /\r\nHost: a\r\n\r\n")},
    {"no target", S("GET HTTP/1.1\r\nHost: a\r\n\r\n")},
    {"'(' in the method", S("GE(T /" H11 "\r\n")},
    {"'@' in the method", S("GE@T /" H11 "\r\n")},
    {"NUL in the method", S("G\0ET /" H11 "\r\n")},
    {"HTTP/0.9", S("GET / HTTP/0.9\r\nHost: a\r\n\r\n")},
    {"HTTP/2.0", S("GET / HTTP/2.0\r\nHost: a\r\n\r\n")},
    {"lower-case http", S("GET / http/1.1\r\nHost: a\r\n\r\n")},
    {"HTTP/1.10", S("GET / HTTP/1.10\r\nHost: a\r\n\r\n")},
    {"HTTP/11.1", S("GET / HTTP/11.1\r\nHost: a\r\n\r\n")},
    {"HTTP/1", S("GET / HTTP/1\r\nHost: a\r\n\r\n")},
    {"HTTP/1.x", S("GET / HTTP/1.x\r\nHost: a\r\n\r\n")},
    {"HTTP1.1", S("GET / HTTP1.1\r\nHost: a\r\n\r\n")},
    {"bare LF ends the request line", S("GET / HTTP/1.1\nHost: a\r\n\r\n")},
    {"bare CR ends the request line", S("GET / HTTP/1.1\rHost: a\r\n\r\n")},
    /* request-target bytes: each CTL class, DEL, obs-text, '#' */
    {"NUL in the target", S("GET /a\0b" H11 "\r\n")},
    {"0x01 in the target", S("GET /a\001b" H11 "\r\n")},
    {"LF in the target", S("GET /a\nb" H11 "\r\n")},
    {"CR in the target", S("GET /a\rb" H11 "\r\n")},
    {"0x1F in the target", S("GET /a\037b" H11 "\r\n")},
    {"DEL in the target", S("GET /a\177b" H11 "\r\n")},
    {"0x80 in the target", S("GET /a\200b" H11 "\r\n")},
    {"0xFF in the target", S("GET /a\377b" H11 "\r\n")},
    {"UTF-8 in the target", S("GET /caf\xc3\xa9" H11 "\r\n")},
    {"fragment in the target", S("GET /a#b" H11 "\r\n")},
    {"'#' alone", S("GET /#" H11 "\r\n")},
    {"SP in the target", S("GET /a b" H11 "\r\n")},
    /* request-target forms (RFC 9112 §3.2) */
    {"relative target", S("GET a" H11 "\r\n")},
    {"'*' without OPTIONS", S("GET *" H11 "\r\n")},
    {"OPTIONS **", S("OPTIONS **" H11 "\r\n")},
    {"OPTIONS *x", S("OPTIONS *x" H11 "\r\n")},
    {"CONNECT origin-form", S("CONNECT /" H11 "\r\n")},
    {"CONNECT without a port", S("CONNECT a" H11 "\r\n")},
    {"CONNECT with an empty port", S("CONNECT a:" H11 "\r\n")},
    {"CONNECT with an empty host", S("CONNECT :443" H11 "\r\n")},
    {"CONNECT absolute-form", S("CONNECT http://a:1/" H11 "\r\n")},
    {"CONNECT with userinfo", S("CONNECT u@a:1" H11 "\r\n")},
    {"connect is not CONNECT", S("connect a:1" H11 "\r\n")},
    {"authority-form without CONNECT", S("GET a:80" H11 "\r\n")},
    {"ftp scheme", S("GET ftp://a/" H11 "\r\n")},
    {"httpx scheme", S("GET httpx://a/" H11 "\r\n")},
    {"http:/", S("GET http:/a" H11 "\r\n")},
    {"http: alone", S("GET http:" H11 "\r\n")},
    {"empty authority", S("GET http:///x" H11 "\r\n")},
    {"empty authority at the end", S("GET http://" H11 "\r\n")},
    {"userinfo in absolute-form", S("GET http://u@a/" H11 "\r\n")},
    {"empty host with a port", S("GET http://:80/" H11 "\r\n")},
    {"port not digits", S("GET http://a:b/" H11 "\r\n")},
    {"unterminated IPv6", S("GET http://[::1/" H11 "\r\n")},
    {"bad pct-encoding in the host", S("GET http://a%zz/" H11 "\r\n")},
    /* field lines (RFC 9112 §5) */
    {"SP before the colon", S("GET / HTTP/1.1\r\nHost : a\r\n\r\n")},
    {"HTAB before the colon", S("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n")},
    {"SP inside a name", S(GET11 "User Agent: x\r\n\r\n")},
    {"no colon", S(GET11 "X-A\r\n\r\n")},
    {"empty name", S(GET11 ": v\r\n\r\n")},
    {"SP line after the start line", S("GET / HTTP/1.1\r\n Host: a\r\n\r\n")},
    {"HTAB line after the start line", S("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n")},
    {"obs-fold with SP", S(GET11 "X: b\r\n c\r\n\r\n")},
    {"obs-fold with HTAB", S(GET11 "X: b\r\n\tc\r\n\r\n")},
    {"NUL in a name", S(GET11 "X\0A: v\r\n\r\n")},
    {"0x01 in a name", S(GET11 "X\001A: v\r\n\r\n")},
    {"DEL in a name", S(GET11 "X\177A: v\r\n\r\n")},
    {"0x80 in a name", S(GET11 "X\200A: v\r\n\r\n")},
    {"'@' in a name", S(GET11 "X@A: v\r\n\r\n")},
    {"'\"' in a name", S(GET11 "X\"A: v\r\n\r\n")},
    {"NUL in a value", S(GET11 "X: a\0b\r\n\r\n")},
    {"0x01 in a value", S(GET11 "X: a\001b\r\n\r\n")},
    {"0x08 in a value", S(GET11 "X: a\010b\r\n\r\n")},
    {"VT in a value", S(GET11 "X: a\vb\r\n\r\n")},
    {"FF in a value", S(GET11 "X: a\fb\r\n\r\n")},
    {"0x1F in a value", S(GET11 "X: a\037b\r\n\r\n")},
    {"DEL in a value", S(GET11 "X: a\177b\r\n\r\n")},
    {"bare LF in a value", S(GET11 "X: a\nb\r\n\r\n")},
    {"bare CR in a value", S(GET11 "X: a\rb\r\n\r\n")},
    {"bare LF ends a field line", S(GET11 "X: a\n\r\n")},
    {"bare LF ends the head", S(GET11 "\n")},
    {"CR CR ends the head", S(GET11 "\r\r")},
    /* Host (RFC 9112 §3.2) */
    {"HTTP/1.1 without Host", S("GET / HTTP/1.1\r\n\r\n")},
    {"duplicate Host", S(GET11 "Host: a\r\n\r\n")},
    {"Host and host", S(GET11 "host: b\r\n\r\n")},
    {"HTTP/1.0 with two Hosts", S("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n")},
    {"Host with SP", S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n")},
    {"Host with userinfo", S("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n")},
    {"Host port not digits", S("GET / HTTP/1.1\r\nHost: a:b\r\n\r\n")},
    {"Host with two ports", S("GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n")},
    {"Host port after SP", S("GET / HTTP/1.1\r\nHost: a: 80\r\n\r\n")},
    {"Host empty host with a port", S("GET / HTTP/1.1\r\nHost: :80\r\n\r\n")},
    {"Host ':'", S("GET / HTTP/1.1\r\nHost: :\r\n\r\n")},
    {"Host unterminated IPv6", S("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n")},
    {"Host []", S("GET / HTTP/1.1\r\nHost: []\r\n\r\n")},
    {"Host [g::1]", S("GET / HTTP/1.1\r\nHost: [g::1]\r\n\r\n")},
    {"Host IPvFuture without '.'", S("GET / HTTP/1.1\r\nHost: [v1]\r\n\r\n")},
    {"Host IPvFuture without a version", S("GET / HTTP/1.1\r\nHost: [v.a]\r\n\r\n")},
    {"Host IPvFuture with nothing after '.'", S("GET / HTTP/1.1\r\nHost: [v1.]\r\n\r\n")},
    {"Host junk after IPv6", S("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n")},
    {"Host short pct-encoding", S("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n")},
    {"Host bad pct-encoding", S("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n")},
    {"Host quoted", S("GET / HTTP/1.1\r\nHost: \"a\"\r\n\r\n")},
    {"Host with a path", S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n")},
    {"Host obs-text", S("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n")},
    /* framing (RFC 9112 §6) */
    {"TE in HTTP/1.0", S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
    {"empty TE in HTTP/1.0", S("POST / HTTP/1.0\r\nTransfer-Encoding:\r\n\r\n")},
    {"TE and CL", S(POST11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")},
    {"CL and TE", S(POST11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello")},
    {"TE chunked, gzip", S(POST11 "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")},
    {"TE gzip", S(POST11 "Transfer-Encoding: gzip\r\n\r\n")},
    {"TE identity", S(POST11 "Transfer-Encoding: identity\r\n\r\n")},
    {"TE chunked twice", S(POST11 "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n")},
    {"TE chunked on two lines",
     S(POST11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")},
    {"TE empty", S(POST11 "Transfer-Encoding:\r\n\r\n")},
    {"TE of commas", S(POST11 "Transfer-Encoding: , ,\r\n\r\n")},
    {"TE chunked with a parameter", S(POST11 "Transfer-Encoding: chunked;a=b\r\n\r\n0\r\n\r\n")},
    {"TE coding not a token", S(POST11 "Transfer-Encoding: @, chunked\r\n\r\n0\r\n\r\n")},
    {"TE coding with SP inside", S(POST11 "Transfer-Encoding: gzip x, chunked\r\n\r\n0\r\n\r\n")},
    {"CL +5", S(POST11 "Content-Length: +5\r\n\r\nhello")},
    {"CL -5", S(POST11 "Content-Length: -5\r\n\r\nhello")},
    {"CL 5 5", S(POST11 "Content-Length: 5 5\r\n\r\nhello")},
    {"CL 5, 5", S(POST11 "Content-Length: 5, 5\r\n\r\nhello")},
    {"CL 5,5", S(POST11 "Content-Length: 5,5\r\n\r\nhello")},
    {"CL on two lines", S(POST11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")},
    {"CL empty", S(POST11 "Content-Length:\r\n\r\n")},
    {"CL hex", S(POST11 "Content-Length: 0x5\r\n\r\nhello")},
    {"CL 5a", S(POST11 "Content-Length: 5a\r\n\r\nhello")},
    {"CL 5.0", S(POST11 "Content-Length: 5.0\r\n\r\nhello")},
    {"CL 2^63", S(POST11 "Content-Length: 9223372036854775808\r\n\r\n")},
    {"CL of 20 nines", S(POST11 "Content-Length: 99999999999999999999\r\n\r\n")},
    /* chunk sizes (RFC 9112 §7.1) */
    {"chunk size 2^63", S(CHUNKED_HEAD "8000000000000000\r\n")},
    {"chunk size of 17 digits", S(CHUNKED_HEAD "10000000000000000\r\n")},
    {"chunk size not hex", S(CHUNKED_HEAD "g\r\n\r\n0\r\n\r\n")},
    {"chunk size empty", S(CHUNKED_HEAD "\r\nhello\r\n0\r\n\r\n")},
    {"chunk size negative", S(CHUNKED_HEAD "-5\r\nhello\r\n0\r\n\r\n")},
    {"chunk size 0x5", S(CHUNKED_HEAD "0x5\r\nhello\r\n0\r\n\r\n")},
    {"SP after the chunk size", S(CHUNKED_HEAD "5 \r\nhello\r\n0\r\n\r\n")},
    {"HTAB after the chunk size", S(CHUNKED_HEAD "5\t\r\nhello\r\n0\r\n\r\n")},
    {"SP before the chunk size", S(CHUNKED_HEAD " 5\r\nhello\r\n0\r\n\r\n")},
    {"SP inside the chunk size", S(CHUNKED_HEAD "1 0\r\n0123456789abcdef\r\n0\r\n\r\n")},
    {"SP after the last chunk's size", S(CHUNKED_HEAD "0 \r\n\r\n")},
    /* chunk extensions (RFC 9112 §7.1.1) */
    {"ext ';' alone", S(CHUNKED_HEAD "5;\r\nhello\r\n0\r\n\r\n")},
    {"ext without a name", S(CHUNKED_HEAD "5;=b\r\nhello\r\n0\r\n\r\n")},
    {"ext '=' without a value", S(CHUNKED_HEAD "5;a=\r\nhello\r\n0\r\n\r\n")},
    {"ext SP after the name", S(CHUNKED_HEAD "5;a \r\nhello\r\n0\r\n\r\n")},
    {"ext SP after the value", S(CHUNKED_HEAD "5;a=b \r\nhello\r\n0\r\n\r\n")},
    {"ext two values", S(CHUNKED_HEAD "5;a=b c\r\nhello\r\n0\r\n\r\n")},
    {"ext value not a token", S(CHUNKED_HEAD "5;a=@\r\nhello\r\n0\r\n\r\n")},
    {"ext quoted name", S(CHUNKED_HEAD "5;\"a\"=b\r\nhello\r\n0\r\n\r\n")},
    {"ext after ','", S(CHUNKED_HEAD "5,a\r\nhello\r\n0\r\n\r\n")},
    {"ext unterminated quoted-string", S(CHUNKED_HEAD "5;a=\"x\r\nhello\r\n0\r\n\r\n")},
    {"ext 0x01 in a quoted-string", S(CHUNKED_HEAD "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n")},
    {"ext DEL in a quoted-string", S(CHUNKED_HEAD "5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n")},
    {"ext NUL in a quoted-string", S(CHUNKED_HEAD "5;a=\"\0\"\r\nhello\r\n0\r\n\r\n")},
    {"ext quoted-pair of 0x01", S(CHUNKED_HEAD "5;a=\"\\\x01\"\r\nhello\r\n0\r\n\r\n")},
    {"ext quoted-pair of LF", S(CHUNKED_HEAD "5;a=\"\\\n\"\r\nhello\r\n0\r\n\r\n")},
    {"ext junk after a quoted-string", S(CHUNKED_HEAD "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n")},
    /* line ends around chunk data */
    {"bare LF ends a chunk line", S(CHUNKED_HEAD "5\nhello\r\n0\r\n\r\n")},
    {"bare CR ends a chunk line", S(CHUNKED_HEAD "5\rhello\r\n0\r\n\r\n")},
    {"chunk data longer than its size", S(CHUNKED_HEAD "5\r\nhelloX\r\n0\r\n\r\n")},
    {"bare LF after chunk data", S(CHUNKED_HEAD "5\r\nhello\n0\r\n\r\n")},
    {"bare CR after chunk data", S(CHUNKED_HEAD "5\r\nhello\r0\r\n\r\n")},
    {"bare LF ends the last chunk", S(CHUNKED_HEAD "0\n\r\n")},
    /* trailers (RFC 9112 §7.1.2) */
    {"obs-folded trailer", S(CHUNKED_HEAD "0\r\nX: a\r\n b\r\n\r\n")},
    {"trailer name with SP", S(CHUNKED_HEAD "0\r\nX Y: a\r\n\r\n")},
    {"trailer SP before the colon", S(CHUNKED_HEAD "0\r\nX : a\r\n\r\n")},
    {"trailer without a colon", S(CHUNKED_HEAD "0\r\nX\r\n\r\n")},
    {"trailer 0x01 in a value", S(CHUNKED_HEAD "0\r\nX: a\x01\r\n\r\n")},
    {"bare LF ends the trailers", S(CHUNKED_HEAD "0\r\nX: a\r\n\n")},
    {"bare LF ends a trailer line", S(CHUNKED_HEAD "0\r\nX: a\n\r\n")},
    {"bare LF ends an empty trailer section", S(CHUNKED_HEAD "0\r\n\n")},
    {"bare CR ends an empty trailer section", S(CHUNKED_HEAD "0\r\n\rx")},
    {"SP line in the trailers", S(CHUNKED_HEAD "0\r\n \r\n\r\n")},
};

Test(ref_req, invalid_table) {
  for (size_t i = 0; i < sizeof(req_bad) / sizeof(req_bad[0]); i++)
    expect_invalid(req_bad[i].name, REQ, req_bad[i].msg, req_bad[i].len);
}

/* Incomplete but still possibly valid: never called invalid. */
Test(ref_req, need_more) {
  static const bad_t cases[] = {
      {"empty", S("")},
      {"CR", S("\r")},
      {"empty line", S("\r\n")},
      {"method only", S("GET")},
      {"target not yet ended", S("GET x")},
      {"CONNECT target not yet ended", S("CONNECT a")},
      {"head without its empty line", S(GET11)},
      {"Content-Length body short", S(POST11 "Content-Length: 5\r\n\r\nabc")},
      {"Content-Length 2^63-1", S(POST11 "Content-Length: 9223372036854775807\r\n\r\nabc")},
      {"chunk size 2^63-1", S(CHUNKED_HEAD "7fffffffffffffff\r\nabc")},
      {"chunk size with 30 leading zeros", S(CHUNKED_HEAD "0000000000000000000000000000005")},
      {"BWS after the chunk size", S(CHUNKED_HEAD "5 \t")},
      {"ext name, then BWS", S(CHUNKED_HEAD "5;a ")},
      {"quoted-string open", S(CHUNKED_HEAD "5;a=\"x\\")},
      {"chunk data short", S(CHUNKED_HEAD "5\r\nhel")},
      {"no CRLF after the chunk data yet", S(CHUNKED_HEAD "5\r\nhello")},
      {"trailers not ended", S(CHUNKED_HEAD "0\r\nX: a\r\n")},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ref_result_t r = parse(REQ, cases[i].msg, cases[i].len);
    cr_expect_eq(r, REF_NEED_MORE, "%s: got %d (%s at %zu)", cases[i].name, r, why(msg), msg->error_off);
  }
}

/* RFC 3986 §2: a target is made of 0x21-0x7E and a fragment is never sent; every other byte,
 * put in the middle of an origin-form target, makes the request invalid. */
Test(ref_req, every_target_byte) {
  for (int c = 0; c < 256; c++) {
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "GET /a?bXc HTTP/1.1\r\nHost: a\r\n\r\n");
    buf[8] = (char)c;
    ref_result_t r = parse(REQ, buf, (size_t)n);
    int ok = c >= 0x21 && c <= 0x7E && c != '#';
    cr_expect_eq(r, ok ? REF_COMPLETE : REF_INVALID, "target byte 0x%02x: got %d", c, r);
  }
}

/* RFC 9110 §5.5: a value holds VCHAR, obs-text, SP and HTAB; a name is a token. */
Test(ref_req, every_field_byte) {
  for (int c = 0; c < 256; c++) {
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX-V: aXb\r\n\r\n");
    buf[31] = (char)c;
    ref_result_t r = parse(REQ, buf, (size_t)n);
    int ok = (c >= 0x20 && c != 0x7F) || c == '\t';
    cr_expect_eq(r, ok ? REF_COMPLETE : REF_INVALID, "value byte 0x%02x: got %d", c, r);
    if (ok && r == REF_COMPLETE) cr_expect_eq(ref_field(msg, "x-v")->value_len, 3);

    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nXXA: v\r\n\r\n");
    buf[26] = (char)c;
    r = parse(REQ, buf, (size_t)n);
    /* ':' ends the name early and leaves a valid value "A: v" */
    ok = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
         (c && strchr("!#$%&'*+-.^_`|~:", c));
    cr_expect_eq(r, ok ? REF_COMPLETE : REF_INVALID, "name byte 0x%02x: got %d", c, r);
  }
}

/* uri-host = IP-literal / reg-name (RFC 3986 §3.2.2): one byte in the middle of a reg-name. */
Test(ref_req, every_host_byte) {
  for (int c = 0; c < 256; c++) {
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: aXb\r\n\r\n");
    buf[23] = (char)c;
    ref_result_t r = parse(REQ, buf, (size_t)n);
    /* ':' starts a port that is not digits */
    int ok = (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
             (c && strchr("-._~!$&'()*+,;=", c));
    cr_expect_eq(r, ok ? REF_COMPLETE : REF_INVALID, "host byte 0x%02x: got %d", c, r);
  }
}

Test(ref_req, parts) {
  const char *s = "\r\nPOST /p?q HTTP/1.1\r\nHost:  a:80 \r\nX-Empty:\r\nx-list: a, b\r\nX-List:\tc\t\r\n"
                  "Content-Length: 3\r\n\r\nabcNEXT";
  cr_assert_eq(req(s), REF_COMPLETE, "%s", why(msg));
  cr_expect_eq(msg->skipped, 2);
  cr_expect_eq(msg->head_len, strlen(s) - 2 - 3 - 4);
  cr_expect_eq(msg->wire_len, strlen(s) - 4);
  cr_expect(msg->method_len == 4 && memcmp(msg->method, "POST", 4) == 0);
  cr_expect(msg->target_len == 4 && memcmp(msg->target, "/p?q", 4) == 0);
  cr_expect_eq(msg->major, 1);
  cr_expect_eq(msg->minor, 1);
  cr_expect_eq(msg->status, 0);
  cr_assert_eq(msg->nfields, 5);
  cr_expect(msg->fields[0].name_len == 4 && memcmp(msg->fields[0].name, "Host", 4) == 0);
  cr_expect(msg->fields[0].value_len == 4 && memcmp(msg->fields[0].value, "a:80", 4) == 0);
  cr_expect_eq(msg->fields[1].value_len, 0);
  cr_expect(msg->fields[3].value_len == 1 && msg->fields[3].value[0] == 'c');
  cr_expect_eq(msg->framing, REF_BODY_LENGTH);
  cr_expect_eq(msg->content_length, 3);
  cr_expect_eq(msg->ntrailers, 0);
}

Test(ref_req, skipped_lines) {
  cr_assert_eq(req("\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), REF_COMPLETE);
  cr_expect_eq(msg->skipped, 6);
  cr_expect_eq(msg->head_len, 27);
  cr_expect_eq(msg->wire_len, 33);
  cr_expect_eq(req("\r\n\n" GET11 "\r\n"), REF_INVALID);
}

Test(ref_req, pipelined) {
  const char *s = "POST /a" H11 "Content-Length: 3\r\n\r\nabc"
                  "POST /b" H11 "Transfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
                  "\r\nGET /c" H11 "\r\n";
  size_t len = strlen(s), off = 0;
  const char *want[] = {"/a", "/b", "/c"};
  const char *body[] = {"abc", "de", NULL};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(parse(REQ, s + off, len - off), REF_COMPLETE, "request %d: %s", i, why(msg));
    cr_expect(msg->target_len == 2 && memcmp(msg->target, want[i], 2) == 0, "request %d", i);
    expect_body(want[i], body[i]);
    off += msg->wire_len;
  }
  cr_expect_eq(off, len);
  cr_expect_eq(parse(REQ, s + off, 0), REF_NEED_MORE);
}

Test(ref_req, chunked_decoding) {
  const char *s = CHUNKED_HEAD "3;x=\"y\"\r\nabc\r\n0A\r\n0123456789\r\n00;z\r\nX-T:  t1 \r\nY: \r\n\r\n";
  cr_assert_eq(req(s), REF_COMPLETE, "%s", why(msg));
  cr_expect_eq(msg->framing, REF_BODY_CHUNKED);
  expect_body("decoded", "abc0123456789");
  cr_assert_eq(msg->ntrailers, 2);
  cr_expect(msg->trailers[0].name_len == 3 && memcmp(msg->trailers[0].name, "X-T", 3) == 0);
  cr_expect(msg->trailers[0].value_len == 2 && memcmp(msg->trailers[0].value, "t1", 2) == 0);
  cr_expect_eq(msg->trailers[1].value_len, 0);
  cr_expect_null(ref_field(msg, "x-t"), "trailers are not head fields");
}

Test(ref_req, binary_body) {
  static const char s[] = POST11 "Content-Length: 4\r\n\r\n\0\r\n\xff";
  cr_assert_eq(parse(REQ, s, sizeof(s) - 1), REF_COMPLETE);
  cr_assert_eq(msg->body_len, 4);
  cr_expect(memcmp(msg->body, "\0\r\n\xff", 4) == 0);
}

Test(ref_req, error_offset) {
  cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), REF_INVALID);
  cr_expect_eq(msg->error_off, 23);
  cr_expect_str_eq(msg->error, "bare LF");
  cr_assert_eq(req("GET / HTTP/1.1\r\nX: b\r\nHost: a\r\nHost: b\r\n\r\n"), REF_INVALID);
  cr_expect_eq(msg->error_off, 22, "at the first Host line");
}

/* REF_MAX_FIELDS lines fit, one more is refused, in the head and in the trailers. */
Test(ref_req, too_many_fields) {
  size_t cap = 64 + (REF_MAX_FIELDS + 1) * 8;
  char *buf = malloc(cap * 2);
  for (int extra = 0; extra < 2; extra++) {
    size_t n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < REF_MAX_FIELDS + extra; i++) n += (size_t)sprintf(buf + n, "X: %d\r\n", i % 10);
    n += (size_t)sprintf(buf + n, "\r\n");
    ref_result_t r = parse(REQ, buf, n);
    cr_expect_eq(r, extra ? REF_INVALID : REF_COMPLETE, "%d fields: %d", REF_MAX_FIELDS + extra, r);
    if (extra)
      cr_expect_str_eq(msg->error, "too many fields");
    else
      cr_expect_eq(msg->nfields, REF_MAX_FIELDS);

    n = (size_t)sprintf(buf, CHUNKED_HEAD "0\r\n");
    for (int i = 0; i < REF_MAX_FIELDS + extra; i++) n += (size_t)sprintf(buf + n, "T: %d\r\n", i % 10);
    n += (size_t)sprintf(buf + n, "\r\n");
    r = parse(REQ, buf, n);
    cr_expect_eq(r, extra ? REF_INVALID : REF_COMPLETE, "%d trailers: %d", REF_MAX_FIELDS + extra, r);
    if (!extra) cr_expect_eq(msg->ntrailers, REF_MAX_FIELDS);
  }
  free(buf);
}

/* ---- helpers ------------------------------------------------------------------ */

Test(ref_fields, lookups) {
  cr_assert_eq(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, x\r\nX-Dup: 1\r\n"
                   "connection:  , KEEP-ALIVE ,\r\nx-dup: 2\r\nUpgrade: websocket\r\n\r\n"),
               REF_COMPLETE);
  const ref_field_t *f = ref_field(msg, "X-DUP");
  cr_assert_not_null(f);
  cr_expect(f->value_len == 1 && f->value[0] == '1', "the first line wins");
  cr_expect_null(ref_field(msg, "x-du"));
  cr_expect_null(ref_field(msg, "x-dupe"));
  cr_expect_eq(ref_field_count(msg, "x-dup"), 2);
  cr_expect_eq(ref_field_count(msg, "CONNECTION"), 2);
  cr_expect_eq(ref_field_count(msg, "none"), 0);
  cr_expect(ref_has_token(msg, "connection", "upgrade"));
  cr_expect(ref_has_token(msg, "Connection", "keep-alive"), "a list over two lines, OWS trimmed");
  cr_expect(ref_has_token(msg, "connection", "X"));
  cr_expect(!ref_has_token(msg, "connection", "close"));
  cr_expect(!ref_has_token(msg, "connection", "keep"), "whole elements only");
  cr_expect(!ref_has_token(msg, "connection", ""), "empty elements are not elements");
  cr_expect(ref_has_token(msg, "upgrade", "WebSocket"));
  cr_expect(!ref_has_token(msg, "x-none", "a"));
  ref_msg_free(msg);
  ref_msg_free(msg); /* freeing twice is harmless */
  cr_expect_null(msg->body);
}

/* ---- responses: valid ---------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *method;
  int eof;
  const char *msg;
  size_t len;
  int status;
  ref_framing_t framing;
  const char *body;
  int keep_alive;
} resp_ok_t;

#define OK11 "HTTP/1.1 200 OK\r\n"

static const resp_ok_t resp_ok[] = {
    /* status line (RFC 9112 §4) */
    {"200 with Content-Length", "GET", 0, S(OK11 "Content-Length: 5\r\n\r\nhello"), 200, LEN, "hello", 1},
    {"empty reason", "GET", 0, S("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), 200, LEN, NULL, 1},
    {"reason with HTAB, SP, obs-text", "GET", 0,
     S("HTTP/1.1 404 Not\tFound  \x80\xff\r\nContent-Length: 0\r\n\r\n"), 404, LEN, NULL, 1},
    {"reason of VCHAR", "GET", 0,
     S("HTTP/1.1 200 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\r\nContent-Length: 0\r\n\r\n"), 200, LEN, NULL, 1},
    {"status 599", "GET", 0, S("HTTP/1.1 599 x\r\nContent-Length: 0\r\n\r\n"), 599, LEN, NULL, 1},
    {"HTTP/1.9", "GET", 0, S("HTTP/1.9 200 OK\r\nContent-Length: 0\r\n\r\n"), 200, LEN, NULL, 1},
    {"fields with OWS", "GET", 0, S(OK11 "X:  a \r\nContent-Length:\t1\t\r\n\r\nx"), 200, LEN, "x", 1},
    {"NULL request method", NULL, 0, S(OK11 "Content-Length: 1\r\n\r\nx"), 200, LEN, "x", 1},
    /* no body (RFC 9112 §6.3 item 1) */
    {"100 Continue", "POST", 0, S("HTTP/1.1 100 Continue\r\n\r\n"), 100, NONE, NULL, 1},
    {"101 Switching Protocols", "GET", 0,
     S("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 101, NONE,
     NULL, 1},
    {"103 with fields", "GET", 0, S("HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"), 103,
     NONE, NULL, 1},
    {"1xx with Content-Length", "GET", 0, S("HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"), 100, NONE,
     NULL, 1},
    {"HEAD with Content-Length", "HEAD", 0, S(OK11 "Content-Length: 5\r\n\r\n"), 200, NONE, NULL, 1},
    {"HEAD with chunked", "HEAD", 0, S(OK11 "Transfer-Encoding: chunked\r\n\r\n"), 200, NONE, NULL, 1},
    {"HEAD without framing", "HEAD", 0, S(OK11 "\r\n"), 200, NONE, NULL, 1},
    {"HEAD 404", "HEAD", 0, S("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n"), 404, NONE, NULL, 1},
    {"HEAD with a bad Content-Length", "HEAD", 0, S(OK11 "Content-Length: 5, 5\r\n\r\n"), 200, NONE, NULL, 1},
    {"204 with Content-Length", "GET", 0, S("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"), 204,
     NONE, NULL, 1},
    {"304 with Content-Length", "GET", 0, S("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"), 304,
     NONE, NULL, 1},
    {"304 with Transfer-Encoding", "GET", 0,
     S("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"), 304, NONE, NULL, 1},
    {"304 with both", "GET", 0,
     S("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 304, NONE,
     NULL, 1},
    /* CONNECT (RFC 9112 §6.3 item 2, RFC 9110 §9.3.6) */
    {"2xx to CONNECT is a tunnel", "CONNECT", 0, S("HTTP/1.1 200 Connection Established\r\n\r\n"), 200, NONE,
     NULL, 0},
    {"2xx to CONNECT ignores Content-Length", "CONNECT", 0, S(OK11 "Content-Length: 5\r\n\r\n"), 200, NONE,
     NULL, 0},
    {"407 to CONNECT has a body", "CONNECT", 0, S("HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\nno"), 407,
     LEN, "no", 1},
    /* chunked (RFC 9112 §7.1) */
    {"chunked with trailers", "GET", 0,
     S(OK11 "Transfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), 200, CHUNKED, "hello",
     1},
    {"gzip, chunked", "GET", 0, S(OK11 "Transfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"), 200,
     CHUNKED, "z", 1},
    {"HTTP/1.0 chunked closes", "GET", 0, S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
     200, CHUNKED, NULL, 0},
    /* close-delimited (RFC 9112 §6.3 items 4 and 8) */
    {"no framing", "GET", 1, S(OK11 "\r\nbody bytes\r\n\r\nHTTP/1.1 200 OK\r\n"), 200, CLOSE,
     "body bytes\r\n\r\nHTTP/1.1 200 OK\r\n", 0},
    {"no framing, empty", "GET", 1, S(OK11 "\r\n"), 200, CLOSE, NULL, 0},
    {"TE gzip", "GET", 1, S(OK11 "Transfer-Encoding: gzip\r\n\r\nabc"), 200, CLOSE, "abc", 0},
    {"TE chunked, gzip", "GET", 1, S(OK11 "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"), 200, CLOSE,
     "0\r\n\r\n", 0},
    {"TE chunked twice", "GET", 1, S(OK11 "Transfer-Encoding: chunked, chunked\r\n\r\nx"), 200, CLOSE, "x",
     0},
    {"TE empty", "GET", 1, S(OK11 "Transfer-Encoding:\r\n\r\nx"), 200, CLOSE, "x", 0},
    /* keep-alive (RFC 9112 §9.3) */
    {"HTTP/1.0", "GET", 0, S("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi"), 200, LEN, "hi", 0},
    {"HTTP/1.0 keep-alive", "GET", 0,
     S("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi"), 200, LEN, "hi", 1},
    {"HTTP/1.1 close", "GET", 0, S(OK11 "Connection: close\r\nContent-Length: 2\r\n\r\nhi"), 200, LEN, "hi",
     0},
    {"HTTP/1.0 close-delimited keep-alive", "GET", 1,
     S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nhi"), 200, CLOSE, "hi", 0},
};

static void check_resp_ok(const resp_ok_t *c) {
  how_t h = {1, c->method, c->eof};
  ref_result_t r = parse(h, c->msg, c->len);
  cr_assert_eq(r, REF_COMPLETE, "%s: got %d (%s at %zu)", c->name, r, why(msg), msg->error_off);
  cr_expect_eq(msg->wire_len, c->len, "%s: wire_len %zu, want %zu", c->name, msg->wire_len, c->len);
  cr_expect_eq(msg->status, c->status, "%s: status %d", c->name, msg->status);
  cr_expect_eq(msg->framing, c->framing, "%s: framing %d, want %d", c->name, msg->framing, c->framing);
  cr_expect_eq(msg->keep_alive, c->keep_alive, "%s: keep_alive %d", c->name, msg->keep_alive);
  cr_expect_eq(msg->skipped, 0, "%s", c->name);
  expect_body(c->name, c->body);
  size_t head = msg->head_len;
  how_t no_eof = {1, c->method, 0}, eof = {1, c->method, 1};
  if (c->framing != REF_BODY_CLOSE) {
    /* A truncated length or chunked body stays NEED_MORE at eof: the caller judges it. */
    expect_prefixes_need_more(c->name, no_eof, c->msg, c->len);
    expect_prefixes_need_more(c->name, eof, c->msg, c->len);
    expect_tails_complete(c->name, no_eof, c->msg, c->len);
  } else {
    expect_prefixes_need_more(c->name, no_eof, c->msg, c->len + 1); /* the whole of it too */
    expect_prefixes_need_more(c->name, eof, c->msg, head);
  }
}

Test(ref_resp, valid_table) {
  for (size_t i = 0; i < sizeof(resp_ok) / sizeof(resp_ok[0]); i++) check_resp_ok(&resp_ok[i]);
}

/* ---- responses: invalid -------------------------------------------------------- */

static const bad_t resp_bad[] = {
    /* status line (RFC 9112 §4) */
    {"status 099", S("HTTP/1.1 099 X\r\n\r\n")},
    {"status 600", S("HTTP/1.1 600 X\r\n\r\n")},
    {"status 000", S("HTTP/1.1 000 X\r\n\r\n")},
    {"status of 2 digits", S("HTTP/1.1 20 OK\r\n\r\n")},
    {"status of 4 digits", S("HTTP/1.1 2000 OK\r\n\r\n")},
    {"status not digits", S("HTTP/1.1 2x0 OK\r\n\r\n")},
    {"no SP after the status", S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")},
    {"HTAB after the status", S("HTTP/1.1 200\tOK\r\n\r\n")},
    {"double SP before the status", S("HTTP/1.1  200 OK\r\n\r\n")},
    {"HTAB after the version", S("HTTP/1.1\t200 OK\r\n\r\n")},
    {"HTTP/2", S("HTTP/2 200 OK\r\n\r\n")},
    {"HTTP/2.0", S("HTTP/2.0 200 OK\r\n\r\n")},
    {"HTTP/0.9", S("HTTP/0.9 200 OK\r\n\r\n")},
    {"lower-case http", S("http/1.1 200 OK\r\n\r\n")},
    {"empty line first", S("\r\nHTTP/1.1 200 OK\r\n\r\n")},
    {"SP first", S(" HTTP/1.1 200 OK\r\n\r\n")},
    {"NUL in the reason", S("HTTP/1.1 200 O\0K\r\n\r\n")},
    {"0x01 in the reason", S("HTTP/1.1 200 O\x01K\r\n\r\n")},
    {"DEL in the reason", S("HTTP/1.1 200 O\x7fK\r\n\r\n")},
    {"bare LF in the reason", S("HTTP/1.1 200 O\nK\r\n\r\n")},
    {"bare CR in the reason", S("HTTP/1.1 200 O\rK\r\n\r\n")},
    {"bare LF ends the status line", S("HTTP/1.1 200 OK\n\r\n")},
    /* fields */
    {"obs-fold", S(OK11 "X: a\r\n b\r\nContent-Length: 0\r\n\r\n")},
    {"SP before the colon", S(OK11 "Server : x\r\nContent-Length: 0\r\n\r\n")},
    {"NUL in a value", S(OK11 "X: a\0\r\nContent-Length: 0\r\n\r\n")},
    {"bare LF ends the head", S(OK11 "Content-Length: 0\r\n\n")},
    /* framing (RFC 9112 §6) */
    {"TE on 204", S("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"TE on 100", S("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"TE on 101", S("HTTP/1.1 101 Switching\r\nTransfer-Encoding: chunked\r\n\r\n")},
    {"TE and CL", S(OK11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n")},
    {"TE gzip and CL", S(OK11 "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello")},
    {"TE coding not a token", S(OK11 "Transfer-Encoding: @\r\n\r\n")},
    {"CL 5, 5", S(OK11 "Content-Length: 5, 5\r\n\r\nhello")},
    {"CL on two lines", S(OK11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello")},
    {"CL +1", S(OK11 "Content-Length: +1\r\n\r\nx")},
    {"CL empty", S(OK11 "Content-Length:\r\n\r\n")},
    {"CL 2^63", S(OK11 "Content-Length: 9223372036854775808\r\n\r\n")},
    /* chunked */
    {"chunk size not hex", S(OK11 "Transfer-Encoding: chunked\r\n\r\nz\r\n")},
    {"chunk data without CRLF", S(OK11 "Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n")},
    {"obs-folded trailer", S(OK11 "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n\tb\r\n\r\n")},
};

Test(ref_resp, invalid_table) {
  for (int eof = 0; eof < 2; eof++)
    for (size_t i = 0; i < sizeof(resp_bad) / sizeof(resp_bad[0]); i++)
      expect_invalid(resp_bad[i].name, (how_t){1, "GET", eof}, resp_bad[i].msg, resp_bad[i].len);
  expect_invalid("TE on 204 to HEAD", (how_t){1, "HEAD", 0},
                 S("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"));
  expect_invalid("TE on 101 to HEAD", (how_t){1, "HEAD", 0},
                 S("HTTP/1.1 101 Switching\r\nTransfer-Encoding: chunked\r\n\r\n"));
}

/* Without eof a close-delimited body never ends; with it, a sized or chunked body that is
 * short stays incomplete rather than being cut. */
Test(ref_resp, eof) {
  how_t no = {1, "GET", 0}, yes = {1, "GET", 1};
  static const char close_body[] = OK11 "\r\nabc";
  cr_expect_eq(parse(no, S(close_body)), REF_NEED_MORE);
  cr_assert_eq(parse(yes, S(close_body)), REF_COMPLETE);
  expect_body("close", "abc");
  cr_expect_eq(msg->wire_len, sizeof(close_body) - 1);
  cr_expect_eq(msg->head_len, sizeof(OK11 "\r\n") - 1);
  cr_expect_eq(msg->keep_alive, 0);
  cr_expect_eq(parse(yes, S(OK11 "Content-Length: 5\r\n\r\nabc")), REF_NEED_MORE);
  cr_expect_eq(parse(yes, S(OK11 "Transfer-Encoding: chunked\r\n\r\n5\r\nabc")), REF_NEED_MORE);
  cr_expect_eq(parse(yes, S(OK11 "Transfer-Encoding: chunked\r\n\r\n0\r\n")), REF_NEED_MORE);
  cr_expect_eq(parse(yes, S(OK11 "Content-Le")), REF_NEED_MORE);
  cr_expect_eq(parse(yes, S(OK11 "Content-Length: 9223372036854775807\r\n\r\n")), REF_NEED_MORE);
  cr_expect_eq(parse(no, S("")), REF_NEED_MORE);
}

/* An interim response is a message of its own; the final one follows it. */
Test(ref_resp, interim_then_final) {
  const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\nLink: <a>\r\n\r\n"
                  "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
  size_t len = strlen(s), off = 0;
  int want[] = {100, 103, 201};
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(parse((how_t){1, "POST", 0}, s + off, len - off), REF_COMPLETE, "response %d: %s", i,
                 why(msg));
    cr_expect_eq(msg->status, want[i]);
    off += msg->wire_len;
  }
  cr_expect_eq(off, len);
  expect_body("final", "ok");
}

/* reason-phrase = *( HTAB / SP / VCHAR / obs-text ) */
Test(ref_resp, every_reason_byte) {
  for (int c = 0; c < 256; c++) {
    char buf[64];
    int n = snprintf(buf, sizeof(buf), "HTTP/1.1 200 aXb\r\nContent-Length: 0\r\n\r\n");
    buf[14] = (char)c;
    ref_result_t r = parse((how_t){1, "GET", 0}, buf, (size_t)n);
    int ok = (c >= 0x20 && c != 0x7F) || c == '\t';
    cr_expect_eq(r, ok ? REF_COMPLETE : REF_INVALID, "reason byte 0x%02x: got %d", c, r);
  }
}

Test(ref_resp, trailers_and_fields) {
  const char *s = OK11 "Transfer-Encoding: chunked\r\nServer: x\r\n\r\n2\r\nab\r\n0\r\nEtag: \"e\"\r\n\r\n";
  cr_assert_eq(parse((how_t){1, "GET", 0}, s, strlen(s)), REF_COMPLETE, "%s", why(msg));
  cr_expect_eq(msg->nfields, 2);
  cr_assert_eq(msg->ntrailers, 1);
  cr_expect(msg->trailers[0].value_len == 3 && memcmp(msg->trailers[0].value, "\"e\"", 3) == 0);
  cr_expect_null(msg->method);
  cr_expect_eq(msg->head_len, strlen(OK11 "Transfer-Encoding: chunked\r\nServer: x\r\n\r\n"));
}
