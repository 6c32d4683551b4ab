/* Large request bodies that nobody needs to see pass from the client's socket to the
 * upstream's by splice(2) (proxy/splice.h): the bytes must arrive intact and in
 * order, the connection must go on with what follows the body, and a client or an
 * upstream that breaks off mid-body must end the request as it would without it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness_proxy.h"

#define SPLICED "outrigger_request_body_spliced_bytes_total "

static char *make_body(size_t len, uint64_t *sum) {
  char *body = malloc(len);
  for (size_t i = 0; i < len; i++) body[i] = (char)fu_pattern(i * 5 + 3);
  *sum = fu_fnv1a(FU_FNV_INIT, body, len);
  return body;
}

/* Sends a POST of `len` bytes on fd (with `extra` header lines), then `after`. */
static void send_upload(int fd, size_t len, const char *extra, const char *after, uint64_t *sum) {
  char *body = make_body(len, sum);
  char head[512];
  snprintf(head, sizeof(head), "POST /up HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n",
           extra ? extra : "", len);
  cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
  cr_assert_eq(th_send_all(fd, body, len), 0);
  if (after) cr_assert_eq(th_send_all(fd, after, strlen(after)), 0);
  free(body);
}

static void expect_echo(int fd, size_t len, uint64_t sum) {
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 10000), 0);
  cr_assert_eq(r.status, 200);
  char want[32];
  snprintf(want, sizeof(want), "%zu", len);
  cr_assert_str_eq(th_header(&r, "x-body-len"), want);
  snprintf(want, sizeof(want), "%016llx", (unsigned long long)sum);
  cr_assert_str_eq(th_header(&r, "x-body-sum"), want, "the body changed on the way");
  th_resp_free(&r);
}

Test(splice, large_bodies_pass_intact_on_a_kept_connection, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  size_t lens[] = {(1u << 20) + 17, 8u << 20, 200000};
  for (size_t i = 0; i < 3; i++) { /* one connection: the pipe and the watchers are reused */
    uint64_t sum;
    send_upload(fd, lens[i], NULL, NULL, &sum);
    expect_echo(fd, lens[i], sum);
  }
  th_close(fd);
  /* Most of each went by splice: all but what came in with the head. */
  long spliced = tp_metric(&p, SPLICED);
  cr_expect_gt(spliced, (long)((1u << 20) + (8u << 20) + 200000 - 3 * 65536), "spliced %ld bytes", spliced);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(splice, small_kept_or_chunked_bodies_are_copied, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  /* A keyed POST may be resent: its body is kept, so it cannot pass unseen. */
  tp_start_simple(&p, NULL,
                  ", retry: { attempts: 2, on: [5xx], idempotency_key: passthrough, buffer_limit: 4MiB }",
                  tp_ep(u), NULL);
  int fd = th_connect(p.port);
  uint64_t sum;
  send_upload(fd, 60000, NULL, NULL, &sum); /* below the splice threshold */
  expect_echo(fd, 60000, sum);
  send_upload(fd, 2u << 20, "Idempotency-Key: \"k-1\"\r\n", NULL, &sum);
  expect_echo(fd, 2u << 20, sum);
  th_close(fd);
  cr_expect_eq(tp_metric(&p, SPLICED), 0);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* The next request's bytes arrive right behind the body, in the same send: the splice
 * takes exactly the body, and the next request is read as usual. */
Test(splice, a_pipelined_request_after_the_body_is_served, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  int fd = th_connect(p.port);
  uint64_t sum;
  send_upload(fd, 300000, NULL, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n", &sum);
  expect_echo(fd, 300000, sum);
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 10000), 0);
  cr_assert_eq(r.status, 200);
  cr_assert(strstr(r.body, "GET /next HTTP/1.1\r\n"), "%s", r.body);
  th_resp_free(&r);
  th_close(fd);
  cr_expect_gt(tp_metric(&p, SPLICED), 0);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* A client that stops mid-body, by closing or by ending its side: the upstream never
 * sees a complete request, the client no answer, and the sidecar serves on. */
static void check_client_stops(int half_close) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  for (int round = 0; round < 3; round++) {
    int fd = th_connect(p.port);
    const char *head = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n";
    cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
    static char part[400000];
    memset(part, 'p', sizeof(part));
    cr_assert_eq(th_send_all(fd, part, sizeof(part)), 0);
    usleep(100000); /* the splice is under way */
    if (half_close) {
      shutdown(fd, SHUT_WR);
      cr_expect_eq(th_wait_closed(fd, 5000), 1, "round %d: the connection was not closed", round);
    }
    th_close(fd);
  }
  th_resp_t r;
  cr_assert_eq(th_http(p.port, "GET", "/after", NULL, NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  cr_expect_eq(fu_complete_requests(u), 1, "only the last request was whole");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(splice, a_client_gone_mid_body_ends_its_request, .timeout = 60) { check_client_stops(0); }
Test(splice, a_client_ending_its_side_mid_body_gets_closed, .timeout = 60) { check_client_stops(1); }

/* A client that stalls mid-body: the route's timeout ends the request while the splice
 * waits for bytes, and the client gets the 504 (the upstream never a whole request). */
Test(splice, a_client_stalling_mid_body_meets_the_route_timeout, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, ", timeout: 1s", tp_ep(u), NULL);
  int fd = th_connect(p.port);
  const char *head = "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n";
  cr_assert_eq(th_send_all(fd, head, strlen(head)), 0);
  static char part[300000];
  memset(part, 's', sizeof(part));
  cr_assert_eq(th_send_all(fd, part, sizeof(part)), 0);
  int64_t t0 = th_now_ms();
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  tp_assert_problem(&r, 504, "upstream_timeout");
  th_resp_free(&r);
  int64_t took = th_now_ms() - t0;
  cr_expect(took >= 800 && took < 4000, "answered after %lld ms", (long long)took);
  th_close(fd);
  cr_expect_eq(fu_complete_requests(u), 0);
  cr_expect_gt(tp_metric(&p, SPLICED), 0, "the body did not go by splice");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}
