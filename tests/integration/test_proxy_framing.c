/* Message framing through the real binary, judged by a strict reading of RFC 9112:
 * how the sidecar frames what upstreams answer (sized, chunked, up to the close, none
 * for 204 and 304), and what it refuses before anything reaches the upstream (SPEC §4).
 * Each refusal here was once forwarded as it came (or stalled the connection). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"
#include "harness_proxy.h"

/* A sidecar in front of an upstream that answers every request with `raw`. */
static fu_t *start_raw(tp_t *p, const char *raw, int close_after) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = raw, .close_after = close_after});
  cr_assert(u);
  tp_start_simple(p, NULL, ", timeout: 5s", tp_ep(u), NULL);
  return u;
}

static void send_str(int fd, const char *s) { cr_assert_eq(th_send_all(fd, s, strlen(s)), 0); }

/* ---- (1) how upstream answers reach HTTP/1.1 and HTTP/1.0 clients ---------------- */

typedef struct {
  const char *name, *raw;
  int close_after, close_delimited, sized;
} answer_t;

static const answer_t answers[] = {
    {"sized", "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 0, 0, 1},
    {"chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nT: v\r\n\r\n",
     0, 0, 0},
    {"close-delimited", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world", 1, 1, 0},
    {"close-delimited 1.0", "HTTP/1.0 200 OK\r\n\r\nhello world", 1, 1, 0},
};

typedef struct {
  const char *name, *version, *extra;
  int keep_alive, minor;
} client_t;

static const client_t clients[] = {
    {"HTTP/1.1", "HTTP/1.1", "", 1, 1},
    {"HTTP/1.0 keep-alive", "HTTP/1.0", "Connection: keep-alive\r\n", 1, 0},
    {"HTTP/1.0", "HTTP/1.0", "", 0, 0},
};

/* Every answer arrives whole, framed so the client can tell where it ends; where the
 * connection may stay open it does, and a second request on it is answered too. A
 * close-delimited answer to an HTTP/1.1 client is re-framed as chunked: it used to end
 * without the last chunk, and the client saw a truncated body and a closed connection. */
Test(framing, every_upstream_framing_reaches_every_client_whole, .timeout = 60) {
  for (size_t a = 0; a < PX_ARRAY_SIZE(answers); a++) {
    tp_t p;
    fu_t *u = start_raw(&p, answers[a].raw, answers[a].close_after);
    for (size_t k = 0; k < PX_ARRAY_SIZE(clients); k++) {
      const client_t *cl = &clients[k];
      int fd = th_connect(p.port);
      char req[256];
      /* An HTTP/1.0 client cannot take chunks: an answer of unknown length ends with
       * the connection. */
      int stays_open = cl->keep_alive && (answers[a].sized || cl->minor == 1);
      for (int round = 0; round < (stays_open ? 2 : 1); round++) {
        snprintf(req, sizeof(req), "GET /r%d %s\r\nHost: x\r\n%s\r\n", round, cl->version, cl->extra);
        send_str(fd, req);
        th_resp_t r;
        cr_assert_eq(th_read_response(fd, &r, 3000), 0, "%s answer to a %s client, round %d: not whole",
                     answers[a].name, cl->name, round);
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(r.body, "hello world", "%s to %s: body %s", answers[a].name, cl->name, r.body);
        cr_assert_eq(r.closed, !stays_open, "%s answer to a %s client: closed %d", answers[a].name, cl->name,
                     r.closed);
        if (answers[a].close_delimited && cl->minor == 1)
          cr_assert_str_eq(th_header(&r, "transfer-encoding"), "chunked");
        th_resp_free(&r);
      }
      if (!stays_open)
        cr_assert_eq(th_wait_closed(fd, 3000), 1, "%s to %s: left open", answers[a].name, cl->name);
      th_close(fd);
    }
    cr_assert_eq(tp_stop(&p), 0);
    fu_stop(u);
  }
}

/* ---- (2) answers without a body whatever their head says ---------------------- */

/* A 304 carries the Content-Length of the representation (RFC 9110 §8.6; nginx and
 * Apache send it on revalidation), but no body. The sidecar used to wait for that many
 * body bytes: the next request on the connection hung until the route's timeout. The
 * same for a 204 with a length (which is not passed on, RFC 9110 §8.6) and a 100
 * Continue with one. */
static void check_bodiless(const char *raw, int want_status, const char *want_length) {
  tp_t p;
  fu_t *u = start_raw(&p, raw, 0);
  int fd = th_connect(p.port);
  for (int round = 0; round < 3; round++) {
    long long t0 = th_now_ms();
    send_str(fd, "GET /cached HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\n\r\n");
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 4000), 0, "round %d: no answer", round);
    long long took = th_now_ms() - t0;
    cr_assert_eq(r.status, want_status);
    cr_assert_eq(r.body_len, 0);
    const char *cl = th_header(&r, "content-length");
    if (want_length)
      cr_assert(cl && strcmp(cl, want_length) == 0, "content-length %s", cl ? cl : "(none)");
    else
      cr_assert_null(cl, "content-length %s on a %d", cl, want_status);
    cr_assert_eq(r.closed, 0);
    cr_assert_lt(took, 1000, "round %d took %lld ms: the connection stalled", round, took);
    th_resp_free(&r);
  }
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(framing, not_modified_with_a_length_does_not_stall, .timeout = 30) {
  check_bodiless("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n\r\n", 304, "1234");
}
Test(framing, no_content_with_a_length_does_not_stall, .timeout = 30) {
  check_bodiless("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, NULL);
}
Test(framing, interim_answer_with_a_length_is_skipped, .timeout = 30) {
  tp_t p;
  fu_t *u = start_raw(
      &p, "HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      0);
  int fd = th_connect(p.port);
  for (int round = 0; round < 2; round++) {
    send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 3000), 0);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok");
    th_resp_free(&r);
  }
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* ---- refusals: nothing of the request reaches the upstream ---------------------- */

typedef struct {
  const char *what, *raw;
  int status;
  const char *kind;
} bad_t;

/* Sends each request on a connection of its own: it gets the sidecar's own answer, the
 * connection closes, and the upstream saw no complete request: `heads_seen` of them at
 * most got their head through (a refusal found while the body streams). */
static void check_refused(const bad_t *cases, size_t n, int heads_seen) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  for (size_t i = 0; i < n; i++) {
    int fd = th_connect(p.port);
    cr_assert_eq(th_send_all(fd, cases[i].raw, strlen(cases[i].raw)), 0);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "%s: no answer", cases[i].what);
    cr_assert_eq(r.status, cases[i].status, "%s: status %d (%s)", cases[i].what, r.status, r.body);
    tp_assert_problem(&r, cases[i].status, cases[i].kind);
    cr_assert(r.closed, "%s: the connection stays open after a refusal", cases[i].what);
    th_resp_free(&r);
    th_close(fd);
    cr_assert_eq(fu_complete_requests(u), 0, "%s reached the upstream", cases[i].what);
    cr_assert_leq(fu_requests(u), heads_seen ? (int)i + 1 : 0, "%s: its head reached the upstream",
                  cases[i].what);
  }
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

#define POST_CHUNKED "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

/* (3) RFC 9112 §5.1: no whitespace in a field name; a server that trims it reads
 * another header than the router did. */
Test(framing, header_name_with_whitespace_is_refused, .timeout = 30) {
  static const bad_t cases[] = {
      {"User Agent", "GET / HTTP/1.1\r\nHost: x\r\nUser Agent: x\r\n\r\n", 400, "bad_request"},
      {"Host : beside Host", "GET / HTTP/1.1\r\nHost : evil\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"a tab in a name", "GET / HTTP/1.1\r\nHost: x\r\nX\tY: 1\r\n\r\n", 400, "bad_request"},
  };
  check_refused(cases, PX_ARRAY_SIZE(cases), 0);
}

/* (4), (5) Chunk framing beyond the grammar of RFC 9112 §7.1, each followed by a
 * request that would run as a second one if the body's end were read leniently. */
Test(framing, malformed_chunk_framing_is_refused, .timeout = 30) {
  static const bad_t cases[] = {
      {"an extension without a name", POST_CHUNKED "5;=b\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"an extension without a value", POST_CHUNKED "5;a=\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400,
       "bad_request"},
      {"a bare ';'", POST_CHUNKED "5;\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"whitespace after the size", POST_CHUNKED "5 \r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"a space inside a value", POST_CHUNKED "5;a=b c\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"bare LF after data", POST_CHUNKED "5\r\nhello\nX0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"bare CR after data", POST_CHUNKED "5\r\nhello\rX0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"no CRLF after data", POST_CHUNKED "5\r\nhelloXY0\r\n\r\n" SMUGGLED, 400, "bad_request"},
      {"a bare LF ending the body", POST_CHUNKED "5\r\nhello\r\n0\r\n\n" SMUGGLED, 400, "bad_request"},
      {"a bare LF ending a trailer section", POST_CHUNKED "5\r\nhello\r\n0\r\nT: v\r\n\n" SMUGGLED, 400,
       "bad_request"},
      {"an obs-folded trailer", POST_CHUNKED "5\r\nhello\r\n0\r\nT: v\r\n w\r\n\r\n" SMUGGLED, 400,
       "bad_request"},
      {"a trailer name with a space", POST_CHUNKED "5\r\nhello\r\n0\r\nT x: v\r\n\r\n" SMUGGLED, 400,
       "bad_request"},
      {"a chunk size past 63 bits", POST_CHUNKED "8000000000000000\r\nhello\r\n0\r\n\r\n" SMUGGLED, 400,
       "bad_request"},
  };
  check_refused(cases, PX_ARRAY_SIZE(cases), 1);
}

/* What the grammar allows passes, extensions and trailers dropped on the way (the
 * sidecar re-frames the body): the upstream's checksum says the body came whole. */
Test(framing, valid_chunk_framing_passes, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  static const char *const bodies[] = {
      "5;a=b;c=\"d\\\"e\"\r\nhello\r\n0\r\n\r\n",
      "5 ;a=b\r\nhello\r\n0\r\n\r\n",
      "005\r\nhello\r\n000\r\nTrailer-A: 1\r\nTrailer-B:\r\n\r\n",
      "2\r\nhe\r\n3;q=\"\"\r\nllo\r\n0;last\r\n\r\n",
  };
  char sum[32];
  snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)fu_fnv1a(FU_FNV_INIT, "hello", 5));
  int fd = th_connect(p.port);
  for (size_t i = 0; i < PX_ARRAY_SIZE(bodies); i++) {
    send_str(fd, POST_CHUNKED);
    send_str(fd, bodies[i]);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "body %zu: no answer", i);
    cr_assert_eq(r.status, 200, "body %zu: %d %s", i, r.status, r.body);
    cr_assert_str_eq(th_header(&r, "x-body-sum"), sum, "body %zu", i);
    cr_assert(strstr(r.body, "Trailer-A") == NULL, "a trailer was forwarded in the head");
    th_resp_free(&r);
  }
  th_close(fd);
  cr_assert_eq(fu_complete_requests(u), (int)PX_ARRAY_SIZE(bodies));
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* (6) RFC 9112 §3.2: a target holds no control character, tab, byte above 0x7e or
 * fragment; and RFC 9112 §3: a request line is not to be autocorrected. */
Test(framing, bad_request_targets_are_refused, .timeout = 30) {
  static const bad_t cases[] = {
      {"a form feed",
       "GET /a\x0c"
       "b HTTP/1.1\r\nHost: x\r\n\r\n",
       400, "bad_request"},
      {"a tab", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"a byte above 0x7e",
       "GET /a\x80"
       "b HTTP/1.1\r\nHost: x\r\n\r\n",
       400, "bad_request"},
      {"a fragment", "GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"two spaces before the target", "GET  /a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"two spaces before the version", "GET /a  HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
  };
  check_refused(cases, PX_ARRAY_SIZE(cases), 0);
}

/* (7) A Content-Length that does not fit in 63 bits is malformed (a signed parser
 * upstream would read 2^63 as negative); one that fits but exceeds max_body_bytes is
 * too large; and Transfer-Encoding that cannot frame a request is refused. */
Test(framing, unusable_request_framing_is_refused, .timeout = 30) {
  static const bad_t cases[] = {
      {"Content-Length 2^63", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775808\r\n\r\n",
       400, "bad_request"},
      {"Content-Length 2^64-1", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
       400, "bad_request"},
      {"Content-Length 2^64", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
       400, "bad_request"},
      {"Content-Length 2^63-1", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\n",
       413, "body_too_large"},
      {"Content-Length 100 MB", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413,
       "body_too_large"},
      {"a signed Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", 400,
       "bad_request"},
      {"Transfer-Encoding in HTTP/1.0",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "bad_request"},
      {"an empty Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400, "bad_request"},
      {"Transfer-Encoding without chunked",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello", 400, "bad_request"},
  };
  check_refused(cases, PX_ARRAY_SIZE(cases), 0);
}

/* ---- upstream answers the sidecar cannot pass on: 502, and nothing else breaks ---- */

static void check_bad_answer(const char *what, const char *raw) {
  tp_t p;
  fu_t *u = start_raw(&p, raw, 0);
  th_resp_t r;
  cr_assert_eq(tp_raw(&p, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0, "%s: no answer", what);
  tp_assert_problem(&r, 502, "upstream_bad_response");
  th_resp_free(&r);
  cr_assert_eq(fu_requests(u), 1, "%s: the request was sent again", what);
  cr_assert_eq(tp_stop(&p), 0, "%s: the sidecar did not exit cleanly", what);
  fu_stop(u);
}

Test(framing, unusable_upstream_answers_get_502, .timeout = 60) {
  check_bad_answer("a name with a space", "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 2\r\n\r\nok");
  check_bad_answer("Content-Length 2^63", "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\nok");
  check_bad_answer("a two-digit status", "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok");
  check_bad_answer("status 600", "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok");
  check_bad_answer("status 099", "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok");
  check_bad_answer("101 unasked",
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n");
  /* A head larger than the sidecar reads: a bad answer, not a reset to resend. */
  static char big[80 * 1024];
  size_t n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Big: ");
  memset(big + n, 'b', sizeof(big) - n - 64);
  strcpy(big + sizeof(big) - 64, "\r\nContent-Length: 2\r\n\r\nok");
  check_bad_answer("a head over 64 KiB", big);
}

/* A chunked answer that breaks after its head went out: the client's connection is
 * closed, so it cannot take the cut answer for a whole one. */
Test(framing, answer_broken_after_its_head_closes_the_client, .timeout = 30) {
  tp_t p;
  fu_t *u = start_raw(&p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\nX", 0);
  int fd = th_connect(p.port);
  send_str(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  th_resp_t r;
  cr_assert_neq(th_read_response(fd, &r, 3000), 0, "a cut answer reached the client as a whole one");
  cr_assert_eq(th_wait_closed(fd, 3000), 1);
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* ---- the sidecar's own answers, framed for the request they answer ---------------- */

/* A malformed request after a good one on a kept-alive connection: it used to be
 * dropped without a word (the failure was taken for the previous request's, whose
 * answer had started), found by the differential fuzzer. */
Test(framing, malformed_request_after_a_good_one_gets_400, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  static const char *const second[] = {"OST / HTTP/1.1\r\nHost: x\r\n\r\n",
                                       "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                                       "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(second); i++) {
    int fd = th_connect(p.port);
    send_str(fd, "PUT /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    send_str(fd, second[i]);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 3000), 0);
    cr_assert_eq(r.status, 200);
    th_resp_free(&r);
    cr_assert_eq(th_read_response(fd, &r, 3000), 0, "case %zu: the malformed second request got no answer",
                 i);
    tp_assert_problem(&r, 400, "bad_request");
    cr_assert(r.closed);
    th_resp_free(&r);
    th_close(fd);
  }
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* The sidecar's own answer to HEAD has no body (RFC 9110 §9.3.2): the client would read
 * it as the start of the next answer. Found by the differential fuzzer. */
Test(framing, own_answer_to_head_has_no_body, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_GARBAGE});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  send_str(fd, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
  char head[2048];
  tp_read_head_only(fd, head, sizeof(head));
  cr_assert(strncmp(head, "HTTP/1.1 502 ", 13) == 0, "%s", head);
  cr_assert(strstr(head, "x-outrigger-error: upstream_bad_response\r\n"), "%s", head);
  cr_assert(strstr(head, "content-length: "), "the length a GET would get is kept: %s", head);
  /* No body follows: the connection is open and quiet, or closed. */
  cr_assert_neq(th_wait_closed(fd, 300), 0, "a body followed the answer to HEAD");
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* An error answer to an HTTP/1.0 client says whether the connection stays: closed for
 * a plain 1.0 client (which the sidecar then does), kept and said so for one that asked
 * for keep-alive. Found by the differential fuzzer: a plain 1.0 client got an answer
 * without "connection: close" and a connection left open. */
Test(framing, own_answer_to_http10_says_what_happens_to_the_connection, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_GARBAGE});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  th_resp_t r;
  int fd = th_connect(p.port);
  send_str(fd, "GET / HTTP/1.0\r\n\r\n");
  cr_assert_eq(th_read_response(fd, &r, 3000), 0);
  tp_assert_problem(&r, 502, "upstream_bad_response");
  cr_assert_str_eq(th_header(&r, "connection"), "close");
  th_resp_free(&r);
  cr_assert_eq(th_wait_closed(fd, 3000), 1);
  th_close(fd);
  fd = th_connect(p.port);
  for (int round = 0; round < 2; round++) {
    send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    cr_assert_eq(th_read_response(fd, &r, 3000), 0, "round %d", round);
    tp_assert_problem(&r, 502, "upstream_bad_response");
    cr_assert_str_eq(th_header(&r, "connection"), "keep-alive");
    th_resp_free(&r);
  }
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}
