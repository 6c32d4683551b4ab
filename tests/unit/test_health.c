/* Active health checks (proxy/health.h). What a user relies on: endpoints start healthy;
 * exactly unhealthy_threshold failed probes in a row take one out and exactly
 * healthy_threshold good ones in a row bring it back, a result of the other kind starting
 * the run again; only a 2xx answer passes; a cluster without health_check keeps its
 * endpoints in, and a reload that removes the block brings an unhealthy one back. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "health.h"

static px_health_conf_t conf(void) {
  return (px_health_conf_t){.path = "/healthz",
                            .interval_ms = 5000,
                            .timeout_ms = 1000,
                            .unhealthy_threshold = 3,
                            .healthy_threshold = 2};
}

static void init(px_health_t *h, px_health_conf_t c) { cr_assert_eq(px_health_init(h, &c), 0); }

/* `n` probes with result `ok`; the transition of the last one. */
static px_health_transition_t probes(px_health_t *h, int ok, int n) {
  px_health_transition_t tr = {0};
  for (int i = 0; i < n; i++) px_health_report(h, ok, &tr);
  return tr;
}

Test(health, endpoints_start_healthy) {
  px_health_t h;
  init(&h, conf());
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_snapshot_t s;
  px_health_snapshot(&h, &s);
  cr_expect_eq(s.enabled, 1);
  cr_expect_eq(s.failures, 0);
  px_health_destroy(&h);
}

Test(health, unhealthy_after_exactly_unhealthy_threshold_failures) {
  px_health_t h;
  init(&h, conf());
  px_health_transition_t tr = probes(&h, 0, 2);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY, "one below the threshold");
  cr_expect_eq(px_health_report(&h, 0, &tr), 1);
  cr_expect_eq(tr.from, PX_HEALTH_HEALTHY);
  cr_expect_eq(tr.to, PX_HEALTH_UNHEALTHY);
  cr_expect_eq(tr.probes, 3);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY);
  tr = probes(&h, 0, 10); /* more failures change nothing */
  cr_expect_eq(tr.changed, 0);
  px_health_destroy(&h);
}

Test(health, healthy_again_after_exactly_healthy_threshold_successes) {
  px_health_t h;
  init(&h, conf());
  probes(&h, 0, 3);
  px_health_transition_t tr;
  cr_expect_eq(px_health_report(&h, 1, &tr), 0);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY, "one below the threshold");
  cr_expect_eq(px_health_report(&h, 1, &tr), 1);
  cr_expect_eq(tr.from, PX_HEALTH_UNHEALTHY);
  cr_expect_eq(tr.to, PX_HEALTH_HEALTHY);
  cr_expect_eq(tr.probes, 2);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_destroy(&h);
}

Test(health, only_results_in_a_row_count) {
  px_health_t h;
  init(&h, conf());
  for (int i = 0; i < 10; i++) { /* two failures, a success: never three in a row */
    probes(&h, 0, 2);
    probes(&h, 1, 1);
  }
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  probes(&h, 0, 3);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY);
  for (int i = 0; i < 10; i++) { /* a success, a failure: never two good in a row */
    probes(&h, 1, 1);
    probes(&h, 0, 1);
  }
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY);
  px_health_snapshot_t s;
  px_health_snapshot(&h, &s);
  cr_expect_eq(s.failures, 1);
  cr_expect_eq(s.successes, 0);
  probes(&h, 1, 2);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_destroy(&h);
}

Test(health, thresholds_of_one_flip_at_once) {
  px_health_t h;
  px_health_conf_t c = conf();
  c.unhealthy_threshold = c.healthy_threshold = 1;
  init(&h, c);
  cr_expect_eq(px_health_report(&h, 0, NULL), 1);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY);
  cr_expect_eq(px_health_report(&h, 1, NULL), 1);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_destroy(&h);
}

Test(health, without_a_health_check_block_endpoints_stay_in) {
  px_health_t h;
  cr_assert_eq(px_health_init(&h, NULL), 0);
  px_health_transition_t tr = probes(&h, 0, 100);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_destroy(&h);
}

Test(health, a_reload_applies_new_thresholds_or_removes_checking) {
  px_health_t h;
  init(&h, conf());
  probes(&h, 0, 2);
  px_health_conf_t c = conf();
  c.unhealthy_threshold = 2;
  px_health_transition_t tr;
  px_health_configure(&h, &c, &tr);
  cr_expect_eq(tr.changed, 0, "the new threshold applies from the next probe");
  cr_expect_eq(px_health_report(&h, 0, &tr), 1);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_UNHEALTHY);
  px_health_configure(&h, NULL, &tr);
  cr_expect_eq(tr.changed, 1);
  cr_expect_eq(tr.from, PX_HEALTH_UNHEALTHY);
  cr_expect_eq(tr.to, PX_HEALTH_HEALTHY);
  cr_expect_eq(px_health_state(&h), PX_HEALTH_HEALTHY);
  px_health_destroy(&h);
}

Test(health, only_2xx_passes) {
  int pass[] = {200, 201, 204, 299};
  int fail[] = {0, -1, -110, 100, 199, 300, 301, 304, 404, 429, 500, 503, 599};
  for (size_t i = 0; i < PX_ARRAY_SIZE(pass); i++) cr_expect(px_health_probe_ok(pass[i]), "%d", pass[i]);
  for (size_t i = 0; i < PX_ARRAY_SIZE(fail); i++) cr_expect_not(px_health_probe_ok(fail[i]), "%d", fail[i]);
}

Test(health, names) {
  cr_expect_str_eq(px_health_state_name(PX_HEALTH_HEALTHY), "healthy");
  cr_expect_str_eq(px_health_state_name(PX_HEALTH_UNHEALTHY), "unhealthy");
}

/* Probes from several threads at once: exactly one of them sees the transition. */
static px_health_t shared;
static pthread_barrier_t go;

static void *prober(void *arg) {
  int *changed = arg;
  pthread_barrier_wait(&go);
  for (int i = 0; i < 20000; i++) *changed += px_health_report(&shared, 0, NULL);
  return NULL;
}

Test(health, one_transition_across_threads) {
  init(&shared, conf());
  pthread_barrier_init(&go, NULL, 8);
  pthread_t t[8];
  int changed[8] = {0};
  for (int i = 0; i < 8; i++) cr_assert_eq(pthread_create(&t[i], NULL, prober, &changed[i]), 0);
  int total = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    total += changed[i];
  }
  pthread_barrier_destroy(&go);
  cr_expect_eq(total, 1);
  cr_expect_eq(px_health_state(&shared), PX_HEALTH_UNHEALTHY);
  px_health_snapshot_t s;
  px_health_snapshot(&shared, &s);
  cr_expect_eq(s.failures, 8 * 20000, "every report counted; the run goes on past the transition");
  px_health_destroy(&shared);
}
