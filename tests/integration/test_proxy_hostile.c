/* The sidecar against peers that misbehave, through the real binary: requests it
 * refuses before anything goes upstream, upstreams that stall, reset, lie or die,
 * connections that go stale or close early, clients that read slowly or keep sending
 * (SPEC §4). */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness_proxy.h"

/* An upstream that lies to HEAD, sending a body after the head: the client gets
 * the head only, and the upstream connection, out of step now, is not pooled:
 * the next request goes on a fresh one and is answered correctly. */
Test(proxy, upstream_body_after_head_answer_is_dropped, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_HEAD_BODY});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  const char *head = "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
  char buf[4096];
  tp_read_head_only(fd, buf, sizeof(buf));
  cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
  const char *get = "GET /after HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, get, strlen(get)), 0);
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 5000), 0, "the lie reached the client or broke the next answer");
  cr_assert_eq(r.status, 200);
  cr_assert(strstr(r.body, "GET /after ") == r.body, "%s", r.body);
  th_resp_free(&r);
  cr_assert_eq(fu_connections(u), 2, "the out-of-step upstream connection was reused");
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* An upstream that closes a kept-alive connection right after answering: the
 * next request may pick that pooled connection before its close is seen. A GET may
 * run twice, so it is sent again on a fresh one. */
Test(proxy, stale_pooled_connection_is_retried, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ONE_SHOT});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  for (int round = 0; round < 20; round++) {
    const char *pipe3 = "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                        "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(th_send_all(fd, pipe3, strlen(pipe3)), 0);
    for (int i = 0; i < 3; i++) {
      th_resp_t r;
      cr_assert_eq(th_read_response(fd, &r, 5000), 0, "round %d answer %d missing", round, i);
      cr_assert_eq(r.status, 200, "round %d answer %d: %d %s", round, i, r.status, r.body);
      th_resp_free(&r);
    }
  }
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* An upstream that refuses an upload at once (413 before reading the body): the
 * client, still sending, must get that answer, not a reset. The sidecar closes such a
 * connection gently: FIN first, then it reads and drops what the client still sends,
 * for a while, so the kernel never answers unread bytes with RST. */
typedef struct {
  int fd;
  size_t sent;
} sender_t;

static void *send_body(void *arg) {
  sender_t *s = arg;
  static char chunk[65536];
  memset(chunk, 'u', sizeof(chunk));
  for (int i = 0; i < 128; i++) { /* 8 MiB at most; stops at the first error */
    if (th_send_all(s->fd, chunk, sizeof(chunk)) != 0) break;
    s->sent += sizeof(chunk);
  }
  return NULL;
}

static void check_early_answer(size_t answer_len, int upstream_stops_reading_ms) {
  fu_t *u = fu_start(
      &(fu_opts_t){.mode = FU_EARLY_413, .big_len = answer_len, .delay_ms = upstream_stops_reading_ms});
  tp_t p;
  tp_start_simple(&p, "    limits: { max_body_bytes: 64MiB }\n", NULL, tp_ep(u), NULL);
  for (int round = 0; round < 5; round++) {
    int fd = th_connect(p.port);
    const char *head = "PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n";
    cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
    sender_t s = {fd, 0};
    pthread_t t;
    pthread_create(&t, NULL, send_body, &s);
    th_resp_t r;
    int rc = th_read_response(fd, &r, 10000);
    shutdown(fd, SHUT_RDWR); /* ends the sender if it still blocks */
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "round %d: the early answer was lost (%zu body bytes sent)", round, s.sent);
    cr_assert_eq(r.status, 413, "round %d: got %d: %.*s", round, r.status,
                 (int)(r.body_len < 300 ? r.body_len : 300), r.body);
    cr_assert_eq(r.body_len, answer_len ? answer_len : 9, "round %d: the answer was cut short", round);
    th_resp_free(&r);
    th_close(fd);
  }
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(proxy, early_answer_reaches_a_client_still_sending, .timeout = 60) { check_early_answer(0, 0); }
/* A large answer is still in the sidecar's socket buffer when it is done writing:
 * closing with the client's bytes unread would throw it away with a reset. */
Test(proxy, early_large_answer_reaches_a_client_still_sending, .timeout = 60) {
  check_early_answer(8u << 20, 0);
}
Test(proxy, early_answer_from_an_upstream_that_stops_reading, .timeout = 60) {
  check_early_answer(8u << 20, 1500);
}

/* The stale-connection race seen from the other side: an upstream that reads a
 * request on a reused connection, does the work and dies without answering looks,
 * from the sidecar, exactly like a connection that went stale. A request that may
 * run twice is sent again on a fresh connection; a POST without an Idempotency-Key,
 * or any POST under `idempotency_key: off`, is not (SPEC §5): its client gets 502
 * and the upstream saw it once. */
static void check_reused_then_dropped_body(const char *route_extra, const char *second, int want_status,
                                           const char *want_body) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_DROP_SECOND});
  tp_t p;
  tp_start_simple(&p, NULL, route_extra, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  const char *first = "GET /first HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, first, strlen(first)), 0);
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  cr_assert_eq(th_send_all(fd, second, strlen(second)), 0); /* goes out on the pooled connection */
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  if (want_status == 200) {
    cr_assert_eq(r.status, 200, "%s", r.head);
    cr_assert_eq(fu_requests(u), 3, "the dropped request was not sent again");
    cr_assert_eq(fu_connections(u), 2);
    if (want_body) { /* the upstream's checksum of the body the second try carried */
      char sum[32];
      snprintf(sum, sizeof(sum), "%016llx",
               (unsigned long long)fu_fnv1a(FU_FNV_INIT, want_body, strlen(want_body)));
      cr_assert_eq(strtoull(th_header(&r, "x-body-len"), NULL, 10), strlen(want_body), "%s", r.head);
      cr_assert_str_eq(th_header(&r, "x-body-sum"), sum, "the resent body differs");
    }
  } else {
    tp_assert_problem(&r, 502, "upstream_reset");
    usleep(200000); /* a resend, were there one, would have reached the upstream by now */
    cr_assert_eq(fu_requests(u), 2, "a request that must not run twice was sent again");
  }
  th_resp_free(&r);
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

static void check_reused_then_dropped(const char *route_extra, const char *second, int want_status) {
  check_reused_then_dropped_body(route_extra, second, want_status, NULL);
}

/* A body that fits retry.buffer_limit was kept, and goes again whole: sized, or
 * chunked (re-framed as one chunk). One that did not fit cannot be resent. */
Test(proxy, dropped_on_reuse_put_goes_again_with_its_body, .timeout = 30) {
  check_reused_then_dropped_body(NULL, "PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
                                 200, "hello world");
}
Test(proxy, dropped_on_reuse_chunked_put_goes_again_with_its_body, .timeout = 30) {
  check_reused_then_dropped_body(NULL,
                                 "PUT /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                                 200, "hello world");
}
/* An empty chunked body goes again as its last chunk: the resend used to send the head
 * alone, and the upstream waited for a body (found by the differential fuzzer). */
Test(proxy, dropped_on_reuse_empty_chunked_put_goes_again_whole, .timeout = 30) {
  check_reused_then_dropped_body(
      NULL, "PUT /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, "");
}
Test(proxy, dropped_on_reuse_body_over_buffer_limit_is_not_resent, .timeout = 30) {
  check_reused_then_dropped(", retry: { buffer_limit: 8 }",
                            "PUT /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", 502);
}

Test(proxy, dropped_on_reuse_chunked_body_over_buffer_limit_is_not_resent, .timeout = 30) {
  check_reused_then_dropped(
      ", retry: { buffer_limit: 8 }",
      "PUT /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
      502);
}

Test(proxy, dropped_on_reuse_get_is_sent_again, .timeout = 30) {
  check_reused_then_dropped(NULL, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n", 200);
}
Test(proxy, dropped_on_reuse_keyless_post_is_not, .timeout = 30) {
  check_reused_then_dropped(NULL, "POST /act HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 502);
}
Test(proxy, dropped_on_reuse_keyed_post_is_sent_again, .timeout = 30) {
  check_reused_then_dropped(NULL, "POST /act HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"k-1\"\r\n\r\n", 200);
}
/* A key the Connection header names is hop-by-hop: it was dropped on the way up, yet
 * the request was resent as if the upstream could tell the second run. */
Test(proxy, dropped_on_reuse_post_whose_key_is_hop_by_hop_is_not, .timeout = 30) {
  check_reused_then_dropped(NULL,
                            "POST /act HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"k-1\"\r\n"
                            "Connection: Idempotency-Key\r\n\r\n",
                            502);
}
/* retry.attempts counts every try: with one, the stale-connection resend has none left
 * (it used to allow one more than the route's attempts). */
Test(proxy, dropped_on_reuse_get_is_not_resent_past_attempts, .timeout = 30) {
  check_reused_then_dropped(", retry: { attempts: 1 }", "GET /again HTTP/1.1\r\nHost: x\r\n\r\n", 502);
}
Test(proxy, dropped_on_reuse_keyed_post_is_not_under_off, .timeout = 30) {
  check_reused_then_dropped(", retry: { idempotency_key: off }",
                            "POST /act HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"k-1\"\r\n\r\n", 502);
}

Test(proxy, upstream_stall_reset_garbage, .timeout = 30) {
  fu_t *stall = fu_start(&(fu_opts_t){.mode = FU_STALL});
  fu_t *reset = fu_start(&(fu_opts_t){.mode = FU_RESET});
  fu_t *garbage = fu_start(&(fu_opts_t){.mode = FU_GARBAGE});
  fu_t *gzip = fu_start(&(fu_opts_t){.mode = FU_TE_GZIP});
  tp_t p;
  tp_prepare(&p);
  tp_launch(&p,
            "admin: { address: 127.0.0.1:%d }\nlisteners:\n  - name: l\n    address: 127.0.0.1:%d\n"
            "    routes:\n"
            "      - { name: stall, match: { prefix: /stall }, cluster: stall, timeout: 300ms }\n"
            "      - { name: reset, match: { prefix: /reset }, cluster: reset }\n"
            "      - { name: garbage, match: { prefix: /garbage }, cluster: garbage }\n"
            "      - { name: gzip, match: { prefix: /gzip }, cluster: gzip }\n"
            "clusters:\n  - { name: stall, endpoints: [%s] }\n  - { name: reset, endpoints: [%s] }\n"
            "  - { name: garbage, endpoints: [%s] }\n  - { name: gzip, endpoints: [%s] }\n",
            p.admin, p.port, tp_ep(stall), tp_ep(reset), tp_ep(garbage), tp_ep(gzip));
  th_resp_t r;
  cr_assert_eq(tp_raw(&p, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  tp_assert_problem(&r, 504, "upstream_timeout");
  th_resp_free(&r);
  cr_assert_eq(tp_raw(&p, "GET /reset HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  tp_assert_problem(&r, 502, "upstream_reset");
  th_resp_free(&r);
  cr_assert_eq(tp_raw(&p, "GET /garbage HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  tp_assert_problem(&r, 502, "upstream_bad_response");
  th_resp_free(&r);
  /* A transfer coding the sidecar would drop when it re-frames the body. */
  cr_assert_eq(tp_raw(&p, "GET /gzip HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
  tp_assert_problem(&r, 502, "upstream_bad_response");
  th_resp_free(&r);
  /* Still serving after all that. */
  cr_assert_eq(th_http(p.admin, "GET", "/healthz", NULL, NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(stall);
  fu_stop(reset);
  fu_stop(garbage);
  fu_stop(gzip);
}

/* ---- hostile input: refused, never forwarded ------------------------------- */

Test(proxy, hostile_requests_are_refused_before_the_upstream, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p,
                  "    limits: { max_header_bytes: 8KiB, max_body_bytes: 64KiB, header_timeout: 300ms }\n",
                  NULL, tp_ep(u), NULL);
  static const char big_te[] = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  static const char nul_req[] = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n";
  struct {
    const char *name, *req;
    size_t len; /* 0: strlen */
    int status;
    const char *kind;
  } cases[] = {
      {"CL+TE",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0,
       400, "bad_request"},
      {"conflicting CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
       0, 400, "bad_request"},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n", 0, 400, "bad_request"},
      {"bare LF", "GET / HTTP/1.1\nHost: x\n\n", 0, 400, "bad_request"},
      {"NUL in header", nul_req, sizeof(nul_req) - 1, 400, "bad_request"},
      {"bare LF after request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 0, 400, "bad_request"},
      {"no Host", "GET / HTTP/1.1\r\n\r\n", 0, 400, "bad_request"},
      /* found by tests/fuzz: llhttp ends a head at CR + any byte, so a lone CR could
       * hide a second request from an outer proxy */
      {"lone CR", "GET /one HTTP/1.1\r\nHost: a\r\n\rXGET /smuggled HTTP/1.1\r\nHost: b\r\n\r\n", 0, 400,
       "bad_request"},
      {"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 0, 400, "bad_request"},
      {"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 0, 400, "bad_request"},
      {"garbage", "HELLO THERE\r\n\r\n", 0, 400, "bad_request"},
      {"CL too large", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n", 0, 413,
       "body_too_large"},
      /* RFC 9112 §3.2: the router and the upstream must not be able to read two hosts */
      {"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0, 400, "bad_request"},
      {"Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, 400, "bad_request"},
      {"Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, 400, "bad_request"},
      /* a coding the sidecar would strip as it re-frames the body (RFC 9112 §6.1) */
      {"gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 0,
       501, "not_implemented"},
      {"chunked twice",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       0, 400, "bad_request"}, /* llhttp's own refusal */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    th_resp_t r;
    size_t len = cases[i].len ? cases[i].len : strlen(cases[i].req);
    cr_assert_eq(th_request(p.port, cases[i].req, len, &r, 5000), 0, "%s: no answer", cases[i].name);
    tp_assert_problem(&r, cases[i].status, cases[i].kind);
    cr_assert(r.closed, "%s: connection kept open after a refused request", cases[i].name);
    th_resp_free(&r);
  }
  cr_assert_eq(fu_requests(u), 0, "a refused request reached the upstream");

  /* Oversized head: 431. */
  char *big = malloc(20000);
  int n = snprintf(big, 20000, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(big + n, 'a', 12000);
  memcpy(big + n + 12000, "\r\n\r\n", 4);
  th_resp_t r;
  cr_assert_eq(th_request(p.port, big, (size_t)n + 12004, &r, 5000), 0);
  tp_assert_problem(&r, 431, "headers_too_large");
  th_resp_free(&r);
  free(big);

  /* Slow head: 408 after header_timeout. */
  int fd = th_connect(p.port);
  cr_assert_eq(th_send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n", 25), 0);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  tp_assert_problem(&r, 408, "request_timeout");
  th_resp_free(&r);
  th_close(fd);
  cr_assert_eq(fu_requests(u), 0);

  /* A chunked body that grows past max_body_bytes while streaming: 413, and the
   * upstream never sees a complete request. */
  fd = th_connect(p.port);
  cr_assert_eq(th_send_all(fd, big_te, strlen(big_te)), 0);
  char chunk[8192 + 16];
  memset(chunk, 'z', sizeof(chunk));
  memcpy(chunk, "2000\r\n", 6);
  memcpy(chunk + 6 + 8192, "\r\n", 2);
  for (int i = 0; i < 10; i++) th_send_all(fd, chunk, 6 + 8192 + 2);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  tp_assert_problem(&r, 413, "body_too_large");
  th_resp_free(&r);
  th_close(fd);

  /* A bad chunk size in mid-stream: 400, upstream request left incomplete. */
  fd = th_connect(p.port);
  cr_assert_eq(th_send_all(fd, big_te, strlen(big_te)), 0);
  cr_assert_eq(th_send_all(fd, "5\r\nhello\r\n", 10), 0);
  usleep(100000);
  cr_assert_eq(th_send_all(fd, "zz\r\nhello\r\n0\r\n\r\n", 16), 0);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  tp_assert_problem(&r, 400, "bad_request");
  th_resp_free(&r);
  th_close(fd);
  usleep(200000);
  cr_assert_eq(fu_complete_requests(u), 0, "an upstream saw a complete request built from a bad one");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* An upstream that dies in the middle of a body it promised (sized or chunked):
 * the answer has started, so the client cannot get an error page; it must see the
 * answer cut short (the connection closed, no final chunk), never a complete
 * answer with fewer bytes, and never a hang. */
static void check_short_body(int chunked) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_SHORT, .chunked = chunked});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  const char *get = "GET /short HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, get, strlen(get)), 0);
  th_resp_t r;
  cr_assert_neq(th_read_response(fd, &r, 5000), 0, "a cut-short body reached the client as complete");
  cr_assert_eq(th_wait_closed(fd, 100), 1,
               "the client connection was left open (hanging) after the upstream died");
  th_close(fd);
  cr_assert_eq(th_http(p.admin, "GET", "/healthz", NULL, NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(proxy, upstream_dies_mid_body_sized, .timeout = 30) { check_short_body(0); }
Test(proxy, upstream_dies_mid_body_chunked, .timeout = 30) { check_short_body(1); }

/* ---- back-pressure ------------------------------------------------------------- */

static long rss_kib(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  char *st = th_read_file(path, NULL);
  if (!st) return -1;
  const char *v = strstr(st, "VmRSS:");
  long kib = v ? strtol(v + 6, NULL, 10) : -1;
  free(st);
  return kib;
}

/* A client that does not read must not make the sidecar buffer the upstream's
 * answer: the upstream is paused instead, and everything arrives intact once the
 * client reads. */
Test(proxy, slow_client_pauses_the_upstream, .timeout = 60) {
  const size_t len = 64u << 20;
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_BIG, .big_len = len});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  long before = rss_kib(p.pid);
  int fd = th_connect(p.port);
  const char *req = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
  usleep(1500000); /* the client reads nothing for a while */
  long during = rss_kib(p.pid);
  cr_assert_gt(before, 0);
  cr_assert_lt(during - before, 16 * 1024, "RSS grew by %ld KiB while the client did not read %zu bytes",
               during - before, len);
  /* Now read it all: nothing lost. */
  char *buf = malloc(1 << 20);
  size_t got = 0, head_end = 0;
  char head[4096];
  size_t hl = 0;
  while (got < len) {
    ssize_t n = recv(fd, buf, 1 << 20, 0);
    cr_assert_gt(n, 0, "connection ended after %zu body bytes", got);
    size_t off = 0;
    if (!head_end) { /* the head is small and comes first */
      size_t k = (size_t)n < sizeof(head) - hl ? (size_t)n : sizeof(head) - hl;
      memcpy(head + hl, buf, k);
      hl += k;
      char *e = memmem(head, hl, "\r\n\r\n", 4);
      if (!e) continue;
      head_end = (size_t)(e - head) + 4;
      off = head_end - (hl - k);
    }
    for (size_t i = off; i < (size_t)n; i++) {
      if ((unsigned char)buf[i] != fu_pattern(got)) cr_assert_fail("byte %zu differs", got);
      got++;
    }
  }
  cr_assert_eq(got, len);
  free(buf);
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* A body that arrives while the upstream connection is still being made waits for it:
 * the upstream gets the head first, then the body, never the body alone. The connect
 * is held up for real: the upstream's accept queue is full (a listen backlog of 0 with
 * one connection waiting), so the kernel drops the sidecar's SYN until the test makes
 * room and the SYN is sent again, a second later. */
Test(proxy, a_body_waits_for_its_upstream_connection, .timeout = 30) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(lfd, 0), 0);
  socklen_t sl = sizeof(sa);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  int filler = th_connect(ntohs(sa.sin_port)); /* the one place in the queue */
  cr_assert_geq(filler, 0);
  char ep[64];
  snprintf(ep, sizeof(ep), "127.0.0.1:%d", ntohs(sa.sin_port));
  tp_t p;
  tp_start_simple(&p, NULL, NULL, ep, ", connect_timeout: 10s");
  int fd = th_connect(p.port);
  const char *head = "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
  cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
  usleep(200 * 1000);
  cr_assert_eq(th_send_all(fd, "hello", 5), 0); /* a read of its own, the connect still pending */
  usleep(200 * 1000);
  int queued = accept(lfd, NULL, NULL); /* the filler's: room for the sidecar's SYN */
  cr_assert_geq(queued, 0);
  close(queued);
  struct pollfd pfd = {.fd = lfd, .events = POLLIN};
  cr_assert_eq(poll(&pfd, 1, 10000), 1, "the sidecar never connected");
  int up = accept(lfd, NULL, NULL);
  cr_assert_geq(up, 0);
  char got[1024];
  size_t n = 0;
  while (n < sizeof(got) - 1 &&
         !(n > 5 && memmem(got, n, "\r\n\r\n", 4) && memcmp(got + n - 5, "hello", 5) == 0)) {
    pfd = (struct pollfd){.fd = up, .events = POLLIN};
    cr_assert_eq(poll(&pfd, 1, 5000), 1, "the upstream got %zu bytes: %.*s", n, (int)n, got);
    ssize_t k = recv(up, got + n, sizeof(got) - 1 - n, 0);
    cr_assert_gt(k, 0, "the upstream got %zu bytes: %.*s", n, (int)n, got);
    n += (size_t)k;
  }
  got[n] = '\0';
  cr_assert(strncmp(got, "PUT /x HTTP/1.1\r\n", 17) == 0, "the upstream got: %s", got);
  cr_assert(memcmp(strstr(got, "\r\n\r\n") + 4, "hello", 6) == 0, "the upstream got: %s", got);
  const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  cr_assert_eq(th_send_all(up, answer, strlen(answer)), 0);
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body, "ok");
  th_resp_free(&r);
  th_close(fd);
  close(up);
  th_close(filler);
  close(lfd);
  cr_assert_eq(tp_stop(&p), 0);
}

/* A client that half-closes after its request (it has nothing more to send, as
 * `nc -N` and some HTTP/1.0 scripts do) still gets its answer, whole, and then the
 * connection closes; one that ends its side mid-body gets nothing (its request can
 * never be complete) and the connection closes at once. */
Test(proxy, half_closed_client_gets_its_answer, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_SLOW, .delay_ms = 300});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  const char *reqs[] = {"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n",
                        "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
                        "GET /slow HTTP/1.0\r\n\r\n"};
  for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
    int fd = th_connect(p.port);
    cr_assert_eq(th_send_all(fd, reqs[i], strlen(reqs[i])), 0);
    shutdown(fd, SHUT_WR);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "request %zu: no answer after the half-close", i);
    cr_assert_eq(r.status, 200, "request %zu", i);
    th_resp_free(&r);
    cr_assert_eq(th_wait_closed(fd, 3000), 1, "request %zu: the connection stayed open", i);
    th_close(fd);
  }
  int fd = th_connect(p.port);
  const char *cut = "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";
  cr_assert_eq(th_send_all(fd, cut, strlen(cut)), 0);
  shutdown(fd, SHUT_WR);
  cr_assert_eq(th_wait_closed(fd, 3000), 1, "a request cut by the client's end got bytes, or hung");
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}
