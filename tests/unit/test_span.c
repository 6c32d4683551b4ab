/* Spans and their export to Zipkin (proxy/span.h). What a user relies on: each span
 * reaches the collector as Zipkin v2 JSON that says exactly what the record held
 * (ids in hex, a root without parentId, tags as strings, escaped, cut to bounded
 * lengths without half characters); every span submitted is either exported or counted
 * as dropped; a collector that fails, hangs or is down costs the producers nothing (a
 * submit never waits) and the exporter goes on when it recovers; and stop sends what is
 * queued within one timeout. The collector here is a thread in the test on 127.0.0.1. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "span.h"

TestSuite(span, .timeout = 60);

static px_str_t S(const char *s) { return (px_str_t){s, strlen(s)}; }

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static uint64_t get_hex64(const char *s) { return strtoull(s, NULL, 16); }

static void set_ipv4(px_span_endpoint_t *ep, const char *ip, uint16_t port) {
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(port)};
  cr_assert_eq(inet_pton(AF_INET, ip, &in.sin_addr), 1);
  px_span_set_addr(ep, (struct sockaddr *)&in);
}

/* A root SERVER span, as the request path would fill one. */
static void root_span(px_span_t *s) {
  static const uint8_t tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                  0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
  static const uint8_t id[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  px_span_init(s);
  memcpy(s->trace_id, tid, 16);
  memcpy(s->id, id, 8);
  s->kind = PX_SPAN_SERVER;
  s->timestamp_us = 1700000000123456ull;
  s->duration_us = 1500;
  PX_SPAN_SET(s->name, S("GET /r/{route}"));
  PX_SPAN_SET(s->local.service, S("Shortener"));
  set_ipv4(&s->local, "10.0.0.5", 8001);
  set_ipv4(&s->remote, "192.168.1.9", 53211);
  PX_SPAN_SET(s->method, S("GET"));
  PX_SPAN_SET(s->path, S("/r/abc?x=1"));
  s->status_code = 200;
  PX_SPAN_SET(s->route, S("redirect"));
}

/* Encodes spans and parses the result back, checking it is an array of `n`. */
static px_json_t *encode_parse(const px_span_t *spans, size_t n, size_t expect, px_buf_t *b) {
  px_buf_init(b, 0);
  cr_assert_eq(px_span_zipkin_json(spans, n, b), expect);
  char err[128];
  px_json_t *v = px_json_parse(b->data, b->len, err, sizeof(err));
  cr_assert(v, "not JSON (%s): %.*s", err, (int)b->len, b->data);
  cr_assert_eq(px_json_type(v), PX_JSON_ARRAY);
  cr_assert_eq(px_json_count(v), expect);
  return v;
}

static const char *jstr(const px_json_t *obj, const char *key) {
  const px_json_t *v = px_json_get(obj, key);
  return v ? px_json_str(v, NULL) : NULL;
}

static int64_t jint(const px_json_t *obj, const char *key) {
  int64_t n = -1;
  cr_assert_eq(px_json_int(px_json_get(obj, key), &n), 0, "%s is not an integer", key);
  return n;
}

/* ---- encoding ---------------------------------------------------------------------- */

Test(span, root_server_span_exact) {
  px_span_t s;
  root_span(&s);
  px_buf_t b;
  px_json_t *v = encode_parse(&s, 1, 1, &b);
  const char *want =
      "[{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"id\":\"00f067aa0ba902b7\",\"kind\":\"SERVER\","
      "\"name\":\"get /r/{route}\",\"timestamp\":1700000000123456,\"duration\":1500,"
      "\"localEndpoint\":{\"serviceName\":\"shortener\",\"ipv4\":\"10.0.0.5\",\"port\":8001},"
      "\"remoteEndpoint\":{\"ipv4\":\"192.168.1.9\",\"port\":53211},"
      "\"tags\":{\"http.method\":\"GET\",\"http.path\":\"/r/abc?x=1\",\"http.status_code\":\"200\","
      "\"outrigger.route\":\"redirect\"}}]";
  cr_expect_eq(b.len, strlen(want));
  cr_expect(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "got %.*s", (int)b.len, b.data);

  const px_json_t *o = px_json_at(v, 0);
  cr_expect_str_eq(jstr(o, "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
  cr_expect_str_eq(jstr(o, "id"), "00f067aa0ba902b7");
  cr_expect_null(px_json_get(o, "parentId"), "a root has no parentId");
  cr_expect_null(px_json_get(o, "debug"), "debug only when set");
  cr_expect_str_eq(jstr(o, "kind"), "SERVER");
  cr_expect_eq(jint(o, "timestamp"), 1700000000123456ll);
  cr_expect_eq(jint(o, "duration"), 1500);
  const px_json_t *le = px_json_get(o, "localEndpoint");
  cr_expect_str_eq(jstr(le, "serviceName"), "shortener");
  cr_expect_str_eq(jstr(le, "ipv4"), "10.0.0.5");
  cr_expect_eq(jint(le, "port"), 8001);
  const px_json_t *re = px_json_get(o, "remoteEndpoint");
  cr_expect_null(px_json_get(re, "serviceName"));
  cr_expect_eq(jint(re, "port"), 53211);
  const px_json_t *tags = px_json_get(o, "tags");
  cr_expect_eq(px_json_count(tags), 4);
  cr_expect_str_eq(jstr(tags, "http.status_code"), "200", "tags are strings");
  px_json_free(v);
  px_buf_free(&b);
}

Test(span, client_child_every_field) {
  px_span_t s[2];
  root_span(&s[0]);
  px_span_t *c = &s[1];
  px_span_init(c);
  /* A 64-bit B3 trace id, padded on the left. */
  put_be64(c->trace_id + 8, 0x463ac35c9f6413adull);
  c->trace_id_64 = 1;
  put_be64(c->id, 0xa2fb4a1d1a96d312ull);
  put_be64(c->parent_id, 0x0020000000000001ull);
  c->kind = PX_SPAN_CLIENT;
  c->debug = 1;
  c->timestamp_us = 1700000000200000ull;
  c->duration_us = 0; /* measured as nothing: Zipkin wants at least 1 */
  PX_SPAN_SET(c->name, S("GET /r/{route}"));
  PX_SPAN_SET(c->local.service, S("edge"));
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(8080)};
  inet_pton(AF_INET6, "fd00::7", &in6.sin6_addr);
  px_span_set_addr(&c->remote, (struct sockaddr *)&in6);
  PX_SPAN_SET(c->remote.service, S("Backend"));
  PX_SPAN_SET(c->method, S("POST"));
  PX_SPAN_SET(c->path, S("/api/links"));
  c->status_code = 503;
  PX_SPAN_SET(c->error, S("upstream answered 503"));
  PX_SPAN_SET(c->route, S("shorten"));
  PX_SPAN_SET(c->cluster, S("backend"));
  PX_SPAN_SET(c->endpoint, S("[fd00::7]:8080"));
  c->attempt = 2;
  PX_SPAN_SET(c->decision, S("retry: 5xx"));

  px_buf_t b;
  px_json_t *v = encode_parse(s, 2, 2, &b);
  const px_json_t *o = px_json_at(v, 1);
  cr_expect_eq(px_json_count(o), 11,
               "traceId id parentId kind name timestamp duration 2 endpoints tags debug");
  cr_expect_str_eq(jstr(o, "traceId"), "463ac35c9f6413ad", "a 64-bit trace id as 16 hex digits");
  cr_expect_str_eq(jstr(o, "id"), "a2fb4a1d1a96d312");
  cr_expect_str_eq(jstr(o, "parentId"), "0020000000000001");
  cr_expect_str_eq(jstr(o, "kind"), "CLIENT");
  cr_expect_str_eq(jstr(o, "name"), "get /r/{route}");
  cr_expect_eq(jint(o, "timestamp"), 1700000000200000ll);
  cr_expect_eq(jint(o, "duration"), 1);
  int dbg = 0;
  cr_expect_eq(px_json_bool(px_json_get(o, "debug"), &dbg), 0);
  cr_expect_eq(dbg, 1);
  const px_json_t *le = px_json_get(o, "localEndpoint");
  cr_expect_eq(px_json_count(le), 1, "only the service is known");
  cr_expect_str_eq(jstr(le, "serviceName"), "edge");
  const px_json_t *re = px_json_get(o, "remoteEndpoint");
  cr_expect_str_eq(jstr(re, "serviceName"), "backend");
  cr_expect_str_eq(jstr(re, "ipv6"), "fd00::7");
  cr_expect_null(px_json_get(re, "ipv4"));
  cr_expect_eq(jint(re, "port"), 8080);
  const px_json_t *t = px_json_get(o, "tags");
  cr_expect_eq(px_json_count(t), 9);
  cr_expect_str_eq(jstr(t, "http.method"), "POST");
  cr_expect_str_eq(jstr(t, "http.path"), "/api/links");
  cr_expect_str_eq(jstr(t, "http.status_code"), "503");
  cr_expect_str_eq(jstr(t, "error"), "upstream answered 503");
  cr_expect_str_eq(jstr(t, "outrigger.route"), "shorten");
  cr_expect_str_eq(jstr(t, "outrigger.cluster"), "backend");
  cr_expect_str_eq(jstr(t, "outrigger.endpoint"), "[fd00::7]:8080");
  cr_expect_str_eq(jstr(t, "outrigger.attempt"), "2");
  cr_expect_str_eq(jstr(t, "outrigger.decision"), "retry: 5xx");
  /* The same trace, as the other span says (a 128-bit one with this low half). */
  cr_expect_str_eq(jstr(px_json_at(v, 0), "traceId"), "4bf92f3577b34da6a3ce929d0e0e4736");
  px_json_free(v);
  px_buf_free(&b);
}

Test(span, escaping_and_bad_utf8) {
  px_span_t s;
  root_span(&s);
  const char nasty[] = "a\"b\\c\n\t\x01\x1f\x7f"
                       "caf\xc3\xa9 \xe2\x82\xac";
  PX_SPAN_SET(s.error, S(nasty));
  PX_SPAN_SET(s.decision, S("x\xff"
                            "y\xc3"));              /* a stray byte, a cut sequence */
  PX_SPAN_SET(s.path, S("/\xed\xa0\x80/\xc0\xaf")); /* a surrogate, an overlong '/' */
  PX_SPAN_SET(s.name, S("</script>"));
  px_buf_t b;
  px_json_t *v = encode_parse(&s, 1, 1, &b);
  cr_expect(memmem(b.data, b.len, "a\\\"b\\\\c\\n\\t\\u0001\\u001f\\u007f", 28), "escapes: %.*s", (int)b.len,
            b.data);
  const px_json_t *t = px_json_get(px_json_at(v, 0), "tags");
  size_t n;
  const char *e = px_json_str(px_json_get(t, "error"), &n);
  cr_expect_eq(n, strlen(nasty));
  cr_expect(e && memcmp(e, nasty, n) == 0, "the error tag reads back as given");
  cr_expect_str_eq(jstr(t, "outrigger.decision"), "x\xef\xbf\xbdy\xef\xbf\xbd",
                   "U+FFFD for what is not UTF-8");
  cr_expect_str_eq(jstr(t, "http.path"), "/\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd/\xef\xbf\xbd\xef\xbf\xbd");
  cr_expect_str_eq(jstr(px_json_at(v, 0), "name"), "</script>");
  px_json_free(v);
  px_buf_free(&b);
}

Test(span, omissions_and_invalid_spans) {
  px_span_t s[4];
  /* The least a span can be: ids and nothing else. */
  px_span_init(&s[0]);
  s[0].trace_id[15] = 1;
  s[0].id[7] = 2;
  /* No span id: left out, or the collector would refuse the whole batch. */
  root_span(&s[1]);
  memset(s[1].id, 0, 8);
  /* A 64-bit trace id that is zero (the high half set is not part of it). */
  root_span(&s[2]);
  memset(s[2].trace_id, 0, 16);
  s[2].trace_id[0] = 9;
  s[2].trace_id_64 = 1;
  /* A port but no address; an address family unknown. */
  root_span(&s[3]);
  px_span_set_addr(&s[3].local, NULL);
  s[3].local.port = 0;
  s[3].local.service[0] = '\0';
  s[3].remote.family = 0;
  s[3].remote.port = 443;
  px_buf_t b;
  px_json_t *v = encode_parse(s, 4, 2, &b);
  const char *want0 = "[{\"traceId\":\"00000000000000000000000000000001\",\"id\":\"0000000000000002\","
                      "\"duration\":1},";
  cr_expect(strncmp(b.data, want0, strlen(want0)) == 0, "got %.*s", (int)b.len, b.data);
  const px_json_t *o = px_json_at(v, 1);
  cr_expect_null(px_json_get(o, "localEndpoint"), "an endpoint with nothing known is left out");
  const px_json_t *re = px_json_get(o, "remoteEndpoint");
  cr_expect_eq(px_json_count(re), 1);
  cr_expect_eq(jint(re, "port"), 443);
  px_json_free(v);
  px_buf_free(&b);

  px_buf_init(&b, 0);
  cr_expect_eq(px_span_zipkin_json(s, 0, &b), 0);
  cr_expect(b.len == 2 && memcmp(b.data, "[]", 2) == 0);
  px_buf_free(&b);
}

Test(span, truncation) {
  cr_expect_leq(sizeof(px_span_t), 1024);
  char big[1000];
  memset(big, 'p', sizeof(big));
  px_span_t s;
  px_span_init(&s);
  cr_expect_eq(PX_SPAN_SET(s.path, ((px_str_t){big, sizeof(big)})), PX_SPAN_PATH_CAP - 1);
  cr_expect_eq(strlen(s.path), PX_SPAN_PATH_CAP - 1);
  cr_expect_eq(PX_SPAN_SET(s.method, S("GET")), 3);
  cr_expect_str_eq(s.method, "GET");
  cr_expect_eq(PX_SPAN_SET(s.method, ((px_str_t){NULL, 0})), 0);
  cr_expect_str_eq(s.method, "");

  /* A cut inside a character drops the whole character: "é" is 2 bytes, "€" 3, "😀" 4. */
  char buf[PX_SPAN_METHOD_CAP];
  const char *cases[][2] = {
      {"abcdefghijklmn\xc3\xa9", "abcdefghijklmn"},                    /* 14 + 2: cut after its first byte */
      {"abcdefghijklm\xe2\x82\xac", "abcdefghijklm"},                  /* 13 + 3: cut after 2 */
      {"abcdefghijklmnoXYZ", "abcdefghijklmno"},                       /* ASCII: 15 kept */
      {"abcdefghijk\xf0\x9f\x98\x80x", "abcdefghijk\xf0\x9f\x98\x80"}, /* 11 + 4 = 15: whole */
      {"abcdefghijkl\xf0\x9f\x98\x80", "abcdefghijkl"},                /* 12 + 4: cut after 3 */
      {"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80",
       "\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80"}, /* not UTF-8: cut as is */
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    size_t kept = px_span_set_str(buf, sizeof(buf), S(cases[i][0]));
    cr_expect_str_eq(buf, cases[i][1], "case %zu", i);
    cr_expect_eq(kept, strlen(cases[i][1]), "case %zu", i);
  }

  /* What was cut still encodes as valid JSON. */
  root_span(&s);
  char name[300];
  for (size_t i = 0; i + 2 < sizeof(name); i += 2) memcpy(name + i, "\xc3\xa9", 2);
  PX_SPAN_SET(s.name, ((px_str_t){name, 298}));
  cr_expect_eq(strlen(s.name), PX_SPAN_NAME_CAP - 2, "94 bytes: 47 whole characters");
  px_buf_t b;
  px_json_t *v = encode_parse(&s, 1, 1, &b);
  size_t n;
  px_json_str(px_json_get(px_json_at(v, 0), "name"), &n);
  cr_expect_eq(n, PX_SPAN_NAME_CAP - 2);
  px_json_free(v);
  px_buf_free(&b);
}

Test(span, endpoint_from_sockaddr) {
  px_span_endpoint_t ep;
  memset(&ep, 0, sizeof(ep));
  struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(9411)};
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
  px_span_set_addr(&ep, (struct sockaddr *)&in6);
  cr_expect_eq(ep.family, 4, "a mapped IPv4 address is IPv4");
  cr_expect_eq(ep.port, 9411);
  cr_expect(memcmp(ep.addr, "\x7f\x00\x00\x01", 4) == 0);
  struct sockaddr sa = {.sa_family = AF_UNIX};
  px_span_set_addr(&ep, &sa);
  cr_expect_eq(ep.family, 0);
  cr_expect_eq(ep.port, 0);
  cr_expect_gt(px_span_now_us(), 1600000000ull * 1000000, "epoch microseconds");
}

/* ---- collector URLs and settings ---------------------------------------------------- */

Test(span, url_parse) {
  px_span_url_t u;
  char err[256];
  cr_assert_eq(px_span_url_parse("http://127.0.0.1:9411/api/v2/spans", &u, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(u.host, "127.0.0.1");
  cr_expect_str_eq(u.port, "9411");
  cr_expect_str_eq(u.authority, "127.0.0.1:9411");
  cr_expect_str_eq(u.path, "/api/v2/spans");

  cr_assert_eq(px_span_url_parse("HTTP://zipkin.observability:9411", &u, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(u.host, "zipkin.observability");
  cr_expect_str_eq(u.path, "/api/v2/spans", "no path: the Zipkin default");

  cr_assert_eq(px_span_url_parse("http://[::1]/custom/spans?x=1", &u, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(u.host, "::1");
  cr_expect_str_eq(u.port, "80");
  cr_expect_str_eq(u.authority, "[::1]", "the Host header as the URL has it");
  cr_expect_str_eq(u.path, "/custom/spans?x=1");

  cr_assert_eq(px_span_url_parse("http://collector/", &u, err, sizeof(err)), 0, "%s", err);
  cr_expect_str_eq(u.path, "/");

  const char *refused[][2] = {
      {"https://127.0.0.1:9411/api/v2/spans", "https"},
      {"ftp://127.0.0.1/", "not an http:// URL"},
      {"127.0.0.1:9411", "not an http:// URL"},
      {"", "empty"},
      {"http://", "no host"},
      {"http://:9411/", "no host"},
      {"http://user:pw@127.0.0.1/", "user information"},
      {"http://127.0.0.1:0/", "port"},
      {"http://127.0.0.1:65536/", "port"},
      {"http://127.0.0.1:94x1/", "port"},
      {"http://127.0.0.1:/", "port"},
      {"http://[::1/", "IPv6"},
      {"http://[zz::1]:80/", "IPv6"},
      {"http://host name/", "host"},
      {"http://127.0.0.1/a b", "path"},
      {"http://127.0.0.1/a\r\nX: y", "path"},
      {"http://127.0.0.1/spans#frag", "fragment"},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(refused); i++) {
    err[0] = '\0';
    cr_expect_eq(px_span_url_parse(refused[i][0], &u, err, sizeof(err)), PX_ECONFIG, "accepted %s",
                 refused[i][0]);
    cr_expect(strstr(err, refused[i][1]) != NULL, "%s: message \"%s\" lacks \"%s\"", refused[i][0], err,
              refused[i][1]);
  }
  cr_expect_eq(px_span_url_parse(NULL, &u, NULL, 0), PX_ECONFIG);
}

Test(span, start_refuses_bad_settings) {
  char err[256];
  px_span_exporter_t *e = (px_span_exporter_t *)1;
  px_span_exporter_conf_t c = {.url = "http://127.0.0.1:9/", .producers = 1, .queue_capacity = 100};
  cr_expect_eq(px_span_exporter_start(&c, &e, err, sizeof(err)), PX_ECONFIG);
  cr_expect(strstr(err, "power of two"), "%s", err);
  cr_expect_null(e);
  c.queue_capacity = 1 << 17;
  cr_expect_eq(px_span_exporter_start(&c, &e, err, sizeof(err)), PX_ECONFIG);
  c.queue_capacity = 0;
  c.producers = 0;
  cr_expect_eq(px_span_exporter_start(&c, &e, err, sizeof(err)), PX_ECONFIG);
  cr_expect(strstr(err, "producers"), "%s", err);
  c.producers = 1;
  c.url = "https://127.0.0.1:9/";
  cr_expect_eq(px_span_exporter_start(&c, &e, err, sizeof(err)), PX_ECONFIG);
  cr_expect(strstr(err, "https"), "%s", err);
}

/* ---- a fake collector --------------------------------------------------------------- */

typedef enum {
  FC_OK,           /* 202, Content-Length: 0, keep-alive */
  FC_CHUNKED,      /* 200 with a chunked body */
  FC_CLOSE,        /* 200 with a body read to the close (no length) */
  FC_SILENT_CLOSE, /* 202 keep-alive, then the connection closed all the same */
  FC_DROP_SECOND,  /* on each connection, the second request read and the connection closed unanswered */
  FC_500,          /* 500 with a small body, keep-alive */
  FC_HANG,         /* the request read, never answered */
} fc_mode_t;

typedef struct {
  int lfd;
  uint16_t port;
  pthread_t thread;
  atomic_int mode, stop;
  atomic_int connections, requests, bad;
  atomic_int spans; /* in requests answered 2xx */
  pthread_mutex_t mu;
  uint64_t *ids; /* span ids received in requests answered 2xx */
  size_t nids, cap;
  int max_batch;
  char first_head[2048];
} fc_t;

/* Reads into buf until `want` bytes or "\r\n\r\n" (want 0); -1 on close or stop. */
static ssize_t fc_read(fc_t *fc, int fd, char *buf, size_t cap, size_t have, size_t want) {
  for (;;) {
    if (want == 0 && have >= 4 && memmem(buf, have, "\r\n\r\n", 4)) return (ssize_t)have;
    if (want && have >= want) return (ssize_t)have;
    if (have == cap || atomic_load(&fc->stop)) return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 20) <= 0) continue;
    ssize_t n = recv(fd, buf + have, cap - have, 0);
    if (n <= 0) return -1;
    have += (size_t)n;
  }
}

static void fc_record(fc_t *fc, const char *body, size_t len) {
  px_json_t *v = px_json_parse(body, len, NULL, 0);
  if (v == NULL || px_json_type(v) != PX_JSON_ARRAY) {
    atomic_fetch_add(&fc->bad, 1);
    px_json_free(v);
    return;
  }
  pthread_mutex_lock(&fc->mu);
  size_t n = px_json_count(v);
  if ((int)n > fc->max_batch) fc->max_batch = (int)n;
  for (size_t i = 0; i < n; i++) {
    const char *id = jstr(px_json_at(v, i), "id");
    if (id == NULL) {
      atomic_fetch_add(&fc->bad, 1);
      continue;
    }
    if (fc->nids == fc->cap) {
      fc->cap = fc->cap ? fc->cap * 2 : 256;
      fc->ids = realloc(fc->ids, fc->cap * sizeof(uint64_t));
    }
    fc->ids[fc->nids++] = get_hex64(id);
  }
  pthread_mutex_unlock(&fc->mu);
  atomic_fetch_add(&fc->spans, (int)n);
  px_json_free(v);
}

static void fc_send(int fd, const char *s) {
  ssize_t r = send(fd, s, strlen(s), MSG_NOSIGNAL);
  (void)r;
}

/* Serves one connection until it closes; returns when it does (or on stop). */
static void fc_serve(fc_t *fc, int fd) {
  static char buf[1 << 20];
  size_t have = 0;
  for (int nreq = 0;; nreq++) {
    ssize_t got = fc_read(fc, fd, buf, sizeof(buf), have, 0);
    if (got < 0) return;
    have = (size_t)got;
    char *end = memmem(buf, have, "\r\n\r\n", 4);
    size_t head_len = (size_t)(end - buf) + 4;
    if (atomic_fetch_add(&fc->requests, 1) == 0)
      snprintf(fc->first_head, sizeof(fc->first_head), "%.*s", (int)head_len, buf);
    const char *cl = memmem(buf, head_len, "Content-Length: ", 16);
    size_t body_len = cl ? strtoul(cl + 16, NULL, 10) : 0;
    got = fc_read(fc, fd, buf, sizeof(buf), have, head_len + body_len);
    if (got < 0) return;
    have = (size_t)got;
    fc_mode_t mode = atomic_load(&fc->mode);
    if (mode == FC_HANG) {
      while (fc_read(fc, fd, buf, sizeof(buf), 0, sizeof(buf)) >= 0) {
      }
      return;
    }
    if (mode == FC_DROP_SECOND && nreq == 1) return;
    if (mode != FC_500) fc_record(fc, buf + head_len, body_len);
    memmove(buf, buf + head_len + body_len, have - head_len - body_len);
    have -= head_len + body_len;
    switch (mode) {
    case FC_OK:
    case FC_DROP_SECOND: fc_send(fd, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"); break;
    case FC_SILENT_CLOSE: fc_send(fd, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"); return;
    case FC_CHUNKED:
      fc_send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");
      break;
    case FC_CLOSE: fc_send(fd, "HTTP/1.1 200 OK\r\n\r\nall of it, then the close"); return;
    case FC_500: fc_send(fd, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"); break;
    case FC_HANG: break;
    }
  }
}

static void *fc_main(void *arg) {
  fc_t *fc = arg;
  while (!atomic_load(&fc->stop)) {
    struct pollfd p = {.fd = fc->lfd, .events = POLLIN};
    if (poll(&p, 1, 20) <= 0) continue;
    int fd = accept(fc->lfd, NULL, NULL);
    if (fd < 0) continue;
    atomic_fetch_add(&fc->connections, 1);
    fc_serve(fc, fd);
    close(fd);
  }
  return NULL;
}

static fc_t *fc_start(fc_mode_t mode) {
  fc_t *fc = calloc(1, sizeof(*fc));
  pthread_mutex_init(&fc->mu, NULL);
  atomic_init(&fc->mode, (int)mode);
  fc->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  cr_assert_geq(fc->lfd, 0);
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fc->lfd, (struct sockaddr *)&in, sizeof(in)), 0);
  cr_assert_eq(listen(fc->lfd, 16), 0);
  socklen_t len = sizeof(in);
  getsockname(fc->lfd, (struct sockaddr *)&in, &len);
  fc->port = ntohs(in.sin_port);
  pthread_create(&fc->thread, NULL, fc_main, fc);
  return fc;
}

static void fc_stop(fc_t *fc) {
  atomic_store(&fc->stop, 1);
  pthread_join(fc->thread, NULL);
  close(fc->lfd);
  pthread_mutex_destroy(&fc->mu);
  free(fc->ids);
  free(fc);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Whether the collector received exactly ids 1..n, each once. */
static int fc_got_each_once(fc_t *fc, uint64_t n) {
  pthread_mutex_lock(&fc->mu);
  int ok = fc->nids == n;
  if (ok) qsort(fc->ids, fc->nids, sizeof(uint64_t), cmp_u64);
  for (size_t i = 0; ok && i < fc->nids; i++) ok = fc->ids[i] == i + 1;
  pthread_mutex_unlock(&fc->mu);
  return ok;
}

/* ---- the exporter ------------------------------------------------------------------- */

static px_span_exporter_t *start(uint16_t port, px_span_exporter_conf_t c) {
  char url[64], err[256];
  snprintf(url, sizeof(url), "http://127.0.0.1:%u/api/v2/spans", port);
  c.url = url;
  px_span_exporter_t *e = NULL;
  cr_assert_eq(px_span_exporter_start(&c, &e, err, sizeof(err)), 0, "%s", err);
  return e;
}

/* Span number i (ids from 1), as a CLIENT try. */
static void numbered(px_span_t *s, uint64_t i) {
  px_span_init(s);
  put_be64(s->trace_id, 0x1111);
  put_be64(s->trace_id + 8, i);
  put_be64(s->id, i);
  s->kind = PX_SPAN_CLIENT;
  s->timestamp_us = px_span_now_us();
  s->duration_us = 42;
  PX_SPAN_SET(s->name, S("POST /api/links"));
  PX_SPAN_SET(s->local.service, S("edge"));
  PX_SPAN_SET(s->cluster, S("backend"));
  s->attempt = 1;
}

static px_span_stats_t stats(px_span_exporter_t *e) {
  px_span_stats_t st;
  px_span_exporter_stats(e, &st);
  return st;
}

/* LeakSanitizer's check on demand, there in sanitized builds (weak: absent elsewhere):
 * Criterion's test processes end without the check LeakSanitizer makes at exit. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* Stops the exporter; every span taken is by then exported or counted as failed, and
 * nothing the exporter had is left behind. */
static px_span_stats_t stop_checked(px_span_exporter_t *e) {
  px_span_stats_t st;
  px_span_exporter_stop(e, &st);
  if (__lsan_do_recoverable_leak_check)
    cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "leaks (see above)");
  cr_expect_eq(st.submitted, st.exported + st.dropped_export_failed,
               "submitted %llu, exported %llu, failed %llu", (unsigned long long)st.submitted,
               (unsigned long long)st.exported, (unsigned long long)st.dropped_export_failed);
  return st;
}

/* Polls `what` of the stats until it reaches `want` or `ms` pass. */
#define WAIT_FOR(e, field, want, ms)                                                                         \
  do {                                                                                                       \
    uint64_t until_ = px_now_ms() + (ms);                                                                    \
    while (stats(e).field < (uint64_t)(want) && px_now_ms() < until_) sleep_ms(2);                           \
    cr_assert_eq(stats(e).field, (uint64_t)(want), #field " %llu, expected %llu",                            \
                 (unsigned long long)stats(e).field, (unsigned long long)(want));                            \
  } while (0)

static void submit_range(px_span_exporter_t *e, unsigned worker, uint64_t from, uint64_t to) {
  px_span_t s;
  for (uint64_t i = from; i <= to; i++) {
    numbered(&s, i);
    cr_assert_eq(px_span_submit(e, worker, &s), 0, "span %llu refused", (unsigned long long)i);
  }
}

Test(span, exports_batches_on_one_connection) {
  fc_t *fc = fc_start(FC_OK);
  px_span_exporter_t *e = start(fc->port, (px_span_exporter_conf_t){.producers = 2,
                                                                    .queue_capacity = 256,
                                                                    .batch_size = 10,
                                                                    .flush_interval_ms = 20,
                                                                    .timeout_ms = 2000});
  submit_range(e, 0, 1, 60);
  submit_range(e, 1, 61, 95);
  WAIT_FOR(e, exported, 95, 5000);
  px_span_stats_t st = stats(e);
  cr_expect_eq(st.submitted, 95);
  cr_expect_geq(st.batches_sent, 10, "95 spans in batches of at most 10");
  cr_expect_eq(st.batches_failed + st.dropped_export_failed + st.dropped_queue_full, 0);
  /* Later spans, after an idle moment, go on the same kept connection. */
  sleep_ms(50);
  submit_range(e, 1, 96, 100);
  WAIT_FOR(e, exported, 100, 5000);
  stop_checked(e);
  cr_expect_eq(atomic_load(&fc->bad), 0, "every body is a JSON array of spans");
  cr_expect(fc_got_each_once(fc, 100), "every span once (%zu received)", fc->nids);
  cr_expect_leq(fc->max_batch, 10);
  cr_expect_eq(atomic_load(&fc->connections), 1, "the connection is kept");
  cr_expect(strstr(fc->first_head, "POST /api/v2/spans HTTP/1.1\r\n") == fc->first_head, "%s",
            fc->first_head);
  char host[64];
  snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", fc->port);
  cr_expect(strstr(fc->first_head, host), "%s", fc->first_head);
  cr_expect(strstr(fc->first_head, "\r\nContent-Type: application/json\r\n"), "%s", fc->first_head);
  cr_expect(strstr(fc->first_head, "\r\nConnection: keep-alive\r\n"), "%s", fc->first_head);
  fc_stop(fc);
}

/* Each way an answer may be framed is read to its end; the connection is kept only when
 * the collector allows it, and a kept one it closed is replaced without losing a batch. */
static void framing_case(fc_mode_t mode, int want_connections) {
  fc_t *fc = fc_start(mode);
  px_span_exporter_t *e =
      start(fc->port, (px_span_exporter_conf_t){
                          .producers = 1, .batch_size = 5, .flush_interval_ms = 10, .timeout_ms = 2000});
  for (uint64_t i = 0; i < 3; i++) {
    submit_range(e, 0, i * 5 + 1, i * 5 + 5);
    WAIT_FOR(e, exported, (i + 1) * 5, 5000);
    sleep_ms(20); /* the collector's close arrives before the next batch */
  }
  cr_expect_eq(stop_checked(e).batches_failed, 0);
  cr_expect_eq(atomic_load(&fc->bad), 0);
  cr_expect(fc_got_each_once(fc, 15), "mode %d: every span once (%zu received)", mode, fc->nids);
  cr_expect_eq(atomic_load(&fc->connections), want_connections, "mode %d", mode);
  fc_stop(fc);
}

Test(span, answer_framing_chunked) { framing_case(FC_CHUNKED, 1); }
Test(span, answer_framing_read_to_close) { framing_case(FC_CLOSE, 3); }
Test(span, kept_connection_closed_while_idle) { framing_case(FC_SILENT_CLOSE, 3); }

Test(span, kept_connection_closed_under_a_request_is_retried) {
  /* The race a poll cannot see: the collector closes the kept connection as the
   * request arrives, unanswered. The batch goes again on a new connection. */
  fc_t *fc = fc_start(FC_DROP_SECOND);
  px_span_exporter_t *e =
      start(fc->port, (px_span_exporter_conf_t){
                          .producers = 1, .batch_size = 5, .flush_interval_ms = 10, .timeout_ms = 2000});
  submit_range(e, 0, 1, 5);
  WAIT_FOR(e, exported, 5, 5000);
  submit_range(e, 0, 6, 10);
  WAIT_FOR(e, exported, 10, 5000);
  px_span_stats_t st = stats(e);
  cr_expect_eq(st.batches_failed, 0);
  cr_expect_eq(st.batches_sent, 2);
  stop_checked(e);
  cr_expect(fc_got_each_once(fc, 10));
  cr_expect_eq(atomic_load(&fc->connections), 2);
  cr_expect_eq(atomic_load(&fc->requests), 3);
  fc_stop(fc);
}

Test(span, collector_500_then_recovers) {
  fc_t *fc = fc_start(FC_500);
  px_span_exporter_t *e =
      start(fc->port, (px_span_exporter_conf_t){
                          .producers = 1, .batch_size = 100, .flush_interval_ms = 20, .timeout_ms = 2000});
  submit_range(e, 0, 1, 5);
  WAIT_FOR(e, dropped_export_failed, 5, 5000);
  cr_expect_eq(stats(e).batches_failed, 1);
  cr_expect_eq(stats(e).exported, 0);
  atomic_store(&fc->mode, FC_OK);
  submit_range(e, 0, 6, 10);
  WAIT_FOR(e, exported, 5, 5000);
  px_span_stats_t st = stats(e);
  cr_expect_eq(st.batches_sent, 1);
  cr_expect_eq(st.dropped_export_failed, 5);
  stop_checked(e);
  cr_expect_eq(atomic_load(&fc->connections), 1, "a 500 with a length leaves the connection usable");
  pthread_mutex_lock(&fc->mu);
  cr_expect_eq(fc->nids, 5);
  for (size_t i = 0; i < fc->nids; i++) cr_expect_geq(fc->ids[i], 6);
  pthread_mutex_unlock(&fc->mu);
  fc_stop(fc);
}

Test(span, collector_hangs) {
  const uint32_t timeout_ms = 500;
  fc_t *fc = fc_start(FC_HANG);
  px_span_exporter_t *e = start(fc->port, (px_span_exporter_conf_t){.producers = 1,
                                                                    .queue_capacity = 8,
                                                                    .batch_size = 64,
                                                                    .flush_interval_ms = 10,
                                                                    .timeout_ms = timeout_ms});
  submit_range(e, 0, 1, 1);
  /* The exporter is now inside a POST that gets no answer. */
  uint64_t until = px_now_ms() + 2000;
  while (atomic_load(&fc->requests) < 1 && px_now_ms() < until) sleep_ms(1);
  cr_assert_eq(atomic_load(&fc->requests), 1);
  submit_range(e, 0, 2, 9); /* the ring's 8 slots */
  px_span_t s;
  numbered(&s, 10);
  cr_expect_eq(px_span_submit(e, 0, &s), -1, "a full ring refuses");
  cr_expect_eq(stats(e).dropped_queue_full, 1);

  /* Submits keep returning at once while the collector hangs. */
  uint64_t worst = 0, t0 = px_now_ns();
  for (int i = 0; i < 20000; i++) {
    uint64_t a = px_now_ns();
    px_span_submit(e, 0, &s);
    uint64_t d = px_now_ns() - a;
    if (d > worst) worst = d;
  }
  uint64_t total = px_now_ns() - t0;
  cr_expect_lt(worst, (uint64_t)timeout_ms * 1000000 / 10, "a submit took %llu us",
               (unsigned long long)(worst / 1000));
  cr_expect_lt(total, 400000000ull, "20000 submits took %llu ms", (unsigned long long)(total / 1000000));

  /* The hung POST times out; stop's one more request is bounded by the timeout too. */
  WAIT_FOR(e, batches_failed, 1, timeout_ms + 1500);
  uint64_t s0 = px_now_ms();
  px_span_stats_t fin = stop_checked(e);
  uint64_t took = px_now_ms() - s0;
  cr_expect_leq(took, timeout_ms + 400, "stop took %llu ms", (unsigned long long)took);
  cr_expect_geq(fin.dropped_queue_full, 1);
  cr_expect_eq(fin.exported, 0);
  cr_expect_geq(fin.submitted, 9);
  cr_expect_geq(atomic_load(&fc->requests), 2, "the batch behind was tried");
  fc_stop(fc);
}

Test(span, collector_hangs_stop_during_the_post) {
  const uint32_t timeout_ms = 400;
  fc_t *fc = fc_start(FC_HANG);
  px_span_exporter_t *e = start(
      fc->port, (px_span_exporter_conf_t){.producers = 1, .flush_interval_ms = 10, .timeout_ms = timeout_ms});
  submit_range(e, 0, 1, 3);
  uint64_t until = px_now_ms() + 2000;
  while (atomic_load(&fc->requests) < 1 && px_now_ms() < until) sleep_ms(1);
  submit_range(e, 0, 4, 6);
  uint64_t s0 = px_now_ms();
  px_span_stats_t fin = stop_checked(e);
  uint64_t took = px_now_ms() - s0;
  cr_expect_leq(took, timeout_ms + 300, "stop took %llu ms", (unsigned long long)took);
  cr_expect_eq(fin.submitted, 6);
  cr_expect_eq(fin.dropped_export_failed, 6);
  fc_stop(fc);
}

Test(span, collector_down) {
  /* A port bound but not listening: every connect is refused. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&in, sizeof(in)), 0);
  socklen_t len = sizeof(in);
  getsockname(fd, (struct sockaddr *)&in, &len);
  px_span_exporter_t *e = start(
      ntohs(in.sin_port), (px_span_exporter_conf_t){
                              .producers = 1, .batch_size = 4, .flush_interval_ms = 10, .timeout_ms = 1000});
  submit_range(e, 0, 1, 4);
  WAIT_FOR(e, dropped_export_failed, 4, 3000);
  submit_range(e, 0, 5, 8);
  WAIT_FOR(e, dropped_export_failed, 8, 3000);
  cr_expect_geq(stats(e).batches_failed, 2);
  uint64_t s0 = px_now_ms();
  submit_range(e, 0, 9, 10);
  px_span_stats_t fin = stop_checked(e);
  cr_expect_leq(px_now_ms() - s0, 500, "a refused connect fails at once");
  cr_expect_eq(fin.dropped_export_failed, 10);
  cr_expect_eq(fin.exported, 0);
  close(fd);
}

Test(span, stop_flushes_what_is_queued) {
  fc_t *fc = fc_start(FC_OK);
  /* A long interval and a ring far from half full: nothing is sent until stop. */
  px_span_exporter_t *e = start(fc->port, (px_span_exporter_conf_t){.producers = 3,
                                                                    .queue_capacity = 1024,
                                                                    .batch_size = 16,
                                                                    .flush_interval_ms = 60000,
                                                                    .timeout_ms = 2000});
  submit_range(e, 0, 1, 20);
  submit_range(e, 2, 21, 40);
  sleep_ms(20);
  cr_expect_eq(stats(e).exported, 0);
  cr_expect_eq(stop_checked(e).exported, 40);
  cr_expect(fc_got_each_once(fc, 40), "every queued span sent at stop (%zu received)", fc->nids);
  cr_expect_eq(atomic_load(&fc->bad), 0);
  fc_stop(fc);
}

Test(span, half_full_ring_wakes_the_exporter) {
  fc_t *fc = fc_start(FC_OK);
  px_span_exporter_t *e = start(
      fc->port, (px_span_exporter_conf_t){
                    .producers = 1, .queue_capacity = 64, .flush_interval_ms = 60000, .timeout_ms = 2000});
  submit_range(e, 0, 1, 31);
  sleep_ms(30);
  cr_expect_eq(stats(e).exported, 0, "below half: waits for the interval");
  submit_range(e, 0, 32, 32);
  WAIT_FOR(e, exported, 32, 3000);
  stop_checked(e);
  fc_stop(fc);
}

/* ---- many producers at once ------------------------------------------------------- */

typedef struct {
  px_span_exporter_t *e;
  unsigned worker;
  uint64_t from, n, refused;
} producer_t;

static void *producer_main(void *arg) {
  producer_t *p = arg;
  px_span_t s;
  for (uint64_t i = 0; i < p->n; i++) {
    numbered(&s, p->from + i);
    if (px_span_submit(p->e, p->worker, &s) != 0) p->refused++;
    if (i % 128 == 0) sleep_ms(1);
  }
  return NULL;
}

Test(span, concurrent_producers_account_for_every_span) {
  fc_t *fc = fc_start(FC_OK);
  enum { W = 4, N = 5000 };
  px_span_exporter_t *e = start(fc->port, (px_span_exporter_conf_t){.producers = W,
                                                                    .queue_capacity = 512,
                                                                    .batch_size = 100,
                                                                    .flush_interval_ms = 5,
                                                                    .timeout_ms = 2000});
  producer_t p[W];
  pthread_t th[W];
  for (unsigned i = 0; i < W; i++) {
    p[i] = (producer_t){e, i, 1 + (uint64_t)i * N, N, 0};
    pthread_create(&th[i], NULL, producer_main, &p[i]);
  }
  uint64_t refused = 0;
  for (unsigned i = 0; i < W; i++) {
    pthread_join(th[i], NULL);
    refused += p[i].refused;
  }
  px_span_stats_t mid = stats(e); /* read while the exporter runs */
  cr_expect_leq(mid.exported, mid.submitted);
  px_span_stats_t fin = stop_checked(e);
  cr_expect_eq(fin.dropped_export_failed, 0);
  cr_expect_eq(fin.exported, fin.submitted);
  pthread_mutex_lock(&fc->mu);
  size_t got = fc->nids;
  qsort(fc->ids, fc->nids, sizeof(uint64_t), cmp_u64);
  for (size_t i = 1; i < fc->nids; i++) cr_expect_neq(fc->ids[i], fc->ids[i - 1], "span sent twice");
  pthread_mutex_unlock(&fc->mu);
  cr_expect_eq(mid.dropped_queue_full, refused);
  cr_expect_eq(mid.submitted + refused, (uint64_t)W * N);
  cr_expect_eq(got, mid.submitted, "every span taken reached the collector (%llu refused)",
               (unsigned long long)refused);
  cr_expect_eq(atomic_load(&fc->bad), 0);
  fc_stop(fc);
}
