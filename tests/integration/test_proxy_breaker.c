/* Circuit breakers through the real binary (SPEC §6, cluster `circuit_breaker`): an
 * endpoint that keeps failing stops getting requests after `consecutive_failures`, gets
 * one probe after `open_duration` and comes back when it answers; with no endpoint left,
 * requests get 503 circuit_open at once; the state is in /metrics and /clusters. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_proxy.h"

#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
#define ROK "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
#define BREAKER ", circuit_breaker: { consecutive_failures: 3, open_duration: 1s, max_open_duration: 10s }"

static int get(tp_t *p) {
  th_resp_t r;
  cr_assert_eq(th_http(p->port, "GET", "/x", NULL, NULL, &r), 0);
  int st = r.status;
  th_resp_free(&r);
  return st;
}

Test(breaker, a_failing_endpoint_is_left_out_then_probed_and_brought_back, .timeout = 30) {
  fu_t *bad = fu_start(&(fu_opts_t){
      .mode = FU_SCRIPT, .script = (const char *const[]){R503, R503, R503, R503, ROK}, .nscript = 5});
  fu_t *good = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = ROK});
  char eps[128], series[256];
  snprintf(eps, sizeof(eps), "%s, %s", tp_ep(bad), tp_ep(good));
  tp_t p;
  tp_start_simple(&p, NULL, NULL, eps, BREAKER);
  int fails = 0;
  for (int i = 0; i < 30; i++) fails += get(&p) == 503;
  cr_expect_eq(fu_requests(bad), 3, "the failing endpoint got %d requests", fu_requests(bad));
  cr_expect_eq(fails, 3);
  snprintf(series, sizeof(series), "outrigger_circuit_breaker_state{cluster=\"c\",endpoint=\"%s\"} ",
           tp_ep(bad));
  cr_expect_eq(tp_metric(&p, series), 1, "not open");
  th_resp_t r;
  cr_assert_eq(th_http(p.admin, "GET", "/clusters", NULL, NULL, &r), 0);
  cr_expect(strstr(r.body, "\"breaker\":\"open\""), "%s", r.body);
  cr_expect(strstr(r.body, "\"breaker_transitions\":{\"consecutive_failures\":1,"), "%s", r.body);
  th_resp_free(&r);

  /* After open_duration one probe goes; it fails (the 4th 503) and the breaker opens again
   * for twice as long. */
  usleep(1100 * 1000);
  for (int i = 0; i < 10; i++) get(&p);
  cr_expect_eq(fu_requests(bad), 4, "not exactly one probe: %d", fu_requests(bad));
  cr_expect_eq(tp_metric(&p, series), 1);
  /* After 2 s the next probe succeeds: the endpoint is back in the rotation. */
  usleep(2100 * 1000);
  for (int i = 0; i < 10; i++) cr_expect_eq(get(&p), 200);
  cr_expect_gt(fu_requests(bad), 6, "the healed endpoint got no traffic back (%d)", fu_requests(bad));
  cr_expect_eq(tp_metric(&p, series), 0, "not closed");
  snprintf(
      series, sizeof(series),
      "outrigger_circuit_breaker_transitions_total{cluster=\"c\",endpoint=\"%s\",cause=\"probe_succeeded\"} ",
      tp_ep(bad));
  cr_expect_eq(tp_metric(&p, series), 1);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(bad);
  fu_stop(good);
}

Test(breaker, no_endpoint_left_is_503_circuit_open_at_once, .timeout = 30) {
  fu_t *bad = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = R503});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(bad), BREAKER);
  for (int i = 0; i < 3; i++) cr_expect_eq(get(&p), 503);
  th_resp_t r;
  for (int i = 0; i < 5; i++) {
    cr_assert_eq(th_http(p.port, "GET", "/x", NULL, NULL, &r), 0);
    tp_assert_problem(&r, 503, "circuit_open");
    th_resp_free(&r);
  }
  cr_expect_eq(fu_requests(bad), 3, "requests reached an open endpoint");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(bad);
}

Test(breaker, the_failure_rate_opens_a_breaker_that_never_fails_twice_in_a_row, .timeout = 30) {
  /* Every other answer a 503: never two failures in a row, a 50% failure rate. */
  static const char *half[40];
  for (int i = 0; i < 40; i++) half[i] = i % 2 ? R503 : ROK;
  fu_t *bad = fu_start(&(fu_opts_t){.mode = FU_SCRIPT, .script = half, .nscript = 40});
  fu_t *good = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = ROK});
  char eps[128], series[256];
  snprintf(eps, sizeof(eps), "%s, %s", tp_ep(bad), tp_ep(good));
  tp_t p;
  tp_start_simple(
      &p, NULL, NULL, eps,
      ", circuit_breaker: { consecutive_failures: 0, failure_rate: { threshold: 0.3, window: 10s, "
      "min_requests: 10 }, open_duration: 30s }");
  for (int i = 0; i < 60; i++) get(&p);
  cr_expect_eq(fu_requests(bad), 10, "the breaker opened after %d requests, not at min_requests",
               fu_requests(bad));
  snprintf(
      series, sizeof(series),
      "outrigger_circuit_breaker_transitions_total{cluster=\"c\",endpoint=\"%s\",cause=\"failure_rate\"} ",
      tp_ep(bad));
  cr_expect_eq(tp_metric(&p, series), 1);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(bad);
  fu_stop(good);
}

/* A reload that leaves the cluster alone keeps its breakers: the open endpoint stays
 * out (the file is rewritten with an unrelated change, a second route). */
#define RCFG                                                                                                 \
  "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn }\n"                                     \
  "listeners:\n  - name: l\n    address: 127.0.0.1:%d\n    routes:\n"                                        \
  "      - { name: r, match: { prefix: / }, cluster: c }\n%s"                                                \
  "clusters:\n  - { name: c, endpoints: [%s, %s]" BREAKER " }\n"

Test(breaker, a_reload_keeps_the_breakers, .timeout = 30) {
  fu_t *bad = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = R503});
  fu_t *good = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = ROK});
  char a[64], b[64], series[256];
  snprintf(a, sizeof(a), "%s", tp_ep(bad));
  snprintf(b, sizeof(b), "%s", tp_ep(good));
  tp_t p;
  tp_prepare(&p);
  tp_launch(&p, RCFG, p.admin, p.port, "", a, b);
  for (int i = 0; i < 20; i++) get(&p);
  cr_assert_eq(fu_requests(bad), 3);
  tp_rewrite(&p, RCFG, p.admin, p.port, "      - { name: other, match: { prefix: /other }, cluster: c }\n", a,
             b);
  kill(p.pid, SIGHUP);
  for (int k = 0; tp_metric(&p, "outrigger_config_reloads_total{result=\"ok\"} ") != 1; k++) {
    cr_assert_lt(k, 100, "the reload did not happen");
    usleep(20000);
  }
  snprintf(series, sizeof(series), "outrigger_circuit_breaker_state{cluster=\"c\",endpoint=\"%s\"} ", a);
  cr_expect_eq(tp_metric(&p, series), 1, "the reload closed the breaker");
  for (int i = 0; i < 20; i++) cr_expect_eq(get(&p), 200);
  cr_expect_eq(fu_requests(bad), 3, "the open endpoint got requests after the reload");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(bad);
  fu_stop(good);
}
