/* Active health checks through the real binary (SPEC §6, cluster `health_check`): the
 * prober takes an endpoint whose /healthz fails out of the rotation after
 * `unhealthy_threshold` probes and brings it back after `healthy_threshold`; with no
 * healthy endpoint, requests get 503 no_healthy_endpoint; /clusters and /metrics show it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness_proxy.h"

#define CHECK                                                                                                \
  ", health_check: { interval: 150ms, timeout: 100ms, unhealthy_threshold: 2, healthy_threshold: 2 }"

static char who(tp_t *p) {
  th_resp_t r;
  cr_assert_eq(th_http(p->port, "GET", "/x", NULL, NULL, &r), 0);
  char c = r.status == 200 && r.body_len == 1 ? r.body[0] : (char)('0' + r.status / 100);
  th_resp_free(&r);
  return c;
}

/* Waits up to 3 s for /clusters to show `want` for endpoint `ep`. */
static void wait_health(tp_t *p, const char *ep, const char *want) {
  char pat[128];
  snprintf(pat, sizeof(pat), "\"address\":\"%s\",\"health\":\"%s\"", ep, want);
  for (int k = 0;; k++) {
    th_resp_t r;
    cr_assert_eq(th_http(p->admin, "GET", "/clusters", NULL, NULL, &r), 0);
    int ok = strstr(r.body, pat) != NULL;
    if (!ok && k >= 60) cr_assert_fail("%s never became %s: %s", ep, want, r.body);
    th_resp_free(&r);
    if (ok) return;
    usleep(50 * 1000);
  }
}

Test(health, a_failing_endpoint_leaves_the_rotation_and_comes_back, .timeout = 30) {
  fu_t *a = fu_start(&(fu_opts_t){.mode = FU_HEALTH, .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"});
  fu_t *b = fu_start(&(fu_opts_t){.mode = FU_HEALTH, .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB"});
  char eps[128], ea[64];
  snprintf(ea, sizeof(ea), "%s", tp_ep(a));
  snprintf(eps, sizeof(eps), "%s, %s", ea, tp_ep(b));
  tp_t p;
  tp_start_simple(&p, NULL, NULL, eps, CHECK);
  int seen_a = 0;
  for (int i = 0; i < 20; i++) seen_a += who(&p) == 'A';
  cr_expect_gt(seen_a, 0);

  fu_set_health(a, 503);
  wait_health(&p, ea, "unhealthy");
  for (int i = 0; i < 20; i++) cr_expect_eq(who(&p), 'B', "an unhealthy endpoint got a request");
  th_resp_t r;
  cr_assert_eq(th_http(p.admin, "GET", "/metrics", NULL, NULL, &r), 0);
  char series[160];
  snprintf(series, sizeof(series), "outrigger_endpoint_healthy{cluster=\"c\",endpoint=\"%s\"} 0\n", ea);
  cr_expect(strstr(r.body, series), "%s", r.body);
  th_resp_free(&r);

  fu_set_health(a, 200);
  wait_health(&p, ea, "healthy");
  seen_a = 0;
  for (int i = 0; i < 20; i++) seen_a += who(&p) == 'A';
  cr_expect_gt(seen_a, 0, "the healed endpoint got no traffic back");

  /* None healthy: 503 no_healthy_endpoint at once. */
  fu_set_health(a, 500);
  fu_set_health(b, 500);
  wait_health(&p, ea, "unhealthy");
  wait_health(&p, tp_ep(b), "unhealthy");
  cr_assert_eq(th_http(p.port, "GET", "/x", NULL, NULL, &r), 0);
  tp_assert_problem(&r, 503, "no_healthy_endpoint");
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(a);
  fu_stop(b);
}

Test(health, a_probe_that_hangs_counts_as_failed, .timeout = 30) {
  fu_t *a = fu_start(&(fu_opts_t){.mode = FU_STALL});
  fu_t *b = fu_start(&(fu_opts_t){.mode = FU_HEALTH, .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nB"});
  char eps[128], ea[64];
  snprintf(ea, sizeof(ea), "%s", tp_ep(a));
  snprintf(eps, sizeof(eps), "%s, %s", ea, tp_ep(b));
  tp_t p;
  tp_start_simple(&p, NULL, NULL, eps, CHECK);
  wait_health(&p, ea, "unhealthy");
  for (int i = 0; i < 10; i++) cr_expect_eq(who(&p), 'B');
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(a);
  fu_stop(b);
}
