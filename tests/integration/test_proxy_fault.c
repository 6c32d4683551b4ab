/* Fault injection through the real binary (SPEC §5, route `fault`): each kind does what
 * it says, at about its percentage (within a binomial bound of five standard
 * deviations, so a correct sidecar fails it about once in 3 million runs), and is
 * counted in the metrics. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "harness_proxy.h"

static void start(tp_t *p, fu_t *u, const char *fault) {
  char extra[512];
  snprintf(extra, sizeof(extra), ", fault: { %s }", fault);
  tp_start_simple(p, NULL, extra, tp_ep(u), NULL);
}

/* Whether k of n is within five standard deviations of n × share. */
static void expect_share(int k, int n, double share, const char *what) {
  double mean = n * share, sd = sqrt(n * share * (1 - share));
  cr_expect(fabs(k - mean) <= 5 * sd + 1e-9, "%s: %d of %d, expected about %.0f (±%.0f)", what, k, n, mean,
            5 * sd);
}

Test(fault, abort_answers_without_calling_the_upstream, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  start(&p, u, "abort: { status: 418, percent: 100 }");
  th_resp_t r;
  cr_assert_eq(th_http(p.port, "GET", "/x", NULL, NULL, &r), 0);
  tp_assert_problem(&r, 418, "fault_abort");
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 0);
  cr_expect_eq(tp_metric(&p, "outrigger_faults_total{listener=\"edge\",route=\"r\",kind=\"abort\"} "), 1);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(fault, abort_at_its_percentage, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  start(&p, u, "abort: { status: 503, percent: 30 }");
  int n = 300, aborted = 0;
  for (int i = 0; i < n; i++) {
    th_resp_t r;
    cr_assert_eq(th_http(p.port, "GET", "/x", NULL, NULL, &r), 0);
    if (r.status == 503) {
      cr_expect_str_eq(th_header(&r, "x-outrigger-error"), "fault_abort");
      aborted++;
    } else {
      cr_expect_eq(r.status, 200);
    }
    th_resp_free(&r);
  }
  expect_share(aborted, n, 0.3, "aborted");
  cr_expect_eq(fu_requests(u), n - aborted, "an aborted request reached the upstream");
  cr_expect_eq(tp_metric(&p, "outrigger_faults_total{listener=\"edge\",route=\"r\",kind=\"abort\"} "),
               aborted);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(fault, delay_holds_the_request_and_not_the_worker, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  /* workers: 2 in the harness; the delayed request must not hold the others up. */
  start(&p, u, "delay: { duration: 400ms, percent: 50 }");
  int n = 60, slow = 0;
  for (int i = 0; i < n; i++) {
    int64_t a = th_now_ms();
    th_resp_t r;
    cr_assert_eq(th_http(p.port, "GET", "/x", NULL, NULL, &r), 0);
    cr_expect_eq(r.status, 200);
    th_resp_free(&r);
    int64_t took = th_now_ms() - a;
    if (took >= 390) slow++;
    cr_expect_lt(took, 1500, "%lld ms", (long long)took);
  }
  expect_share(slow, n, 0.5, "delayed");
  cr_expect_eq(tp_metric(&p, "outrigger_faults_total{listener=\"edge\",route=\"r\",kind=\"delay\"} "), slow);
  /* Three clients delayed at once, on two workers: if a delay held its worker, two of
   * them would wait one after the other. */
  cr_assert_eq(tp_stop(&p), 0);
  start(&p, u, "delay: { duration: 1s, percent: 100 }");
  int fds[3];
  const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  int64_t a = th_now_ms();
  for (int i = 0; i < 3; i++) {
    fds[i] = th_connect(p.port);
    cr_assert_eq(th_send_all(fds[i], req, strlen(req)), 0);
  }
  for (int i = 0; i < 3; i++) {
    th_resp_t r;
    cr_assert_eq(th_read_response(fds[i], &r, 5000), 0);
    cr_expect_eq(r.status, 200);
    th_resp_free(&r);
    th_close(fds[i]);
  }
  int64_t took = th_now_ms() - a;
  cr_expect_geq(took, 990);
  cr_expect_lt(took, 1800, "the delays were served one after another (%lld ms)", (long long)took);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(fault, drop_response_lets_the_upstream_finish_and_resets_the_client, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_BIG, .big_len = 300000});
  tp_t p;
  start(&p, u, "drop_response: { percent: 100 }");
  int fd = th_connect(p.port);
  const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  cr_expect_leq(n, 0, "the client got %zd bytes of a dropped answer", n);
  th_close(fd);
  cr_expect_eq(fu_requests(u), 1);
  cr_expect_eq(tp_metric(&p, "outrigger_faults_total{listener=\"edge\",route=\"r\",kind=\"drop_response\"} "),
               1);
  /* The whole answer was read: the upstream's connection went back to the pool. */
  th_resp_t r;
  cr_assert_eq(tp_stop(&p), 0);
  start(&p, u, "drop_response: { percent: 25 }");
  int total = 200, dropped = 0, before = fu_requests(u), conns = fu_connections(u);
  for (int i = 0; i < total; i++) {
    if (th_http(p.port, "GET", "/x", NULL, NULL, &r) != 0) {
      dropped++;
      continue;
    }
    cr_expect_eq(r.status, 200);
    cr_expect_eq(r.body_len, 300000);
    th_resp_free(&r);
  }
  expect_share(dropped, total, 0.25, "dropped");
  cr_expect_eq(fu_requests(u) - before, total, "every request reached the upstream");
  cr_expect_leq(fu_connections(u) - conns, 4, "dropped answers cost their upstream connections");
  cr_expect_eq(tp_metric(&p, "outrigger_faults_total{listener=\"edge\",route=\"r\",kind=\"drop_response\"} "),
               dropped);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}
