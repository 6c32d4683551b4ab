/* The service registry on a real etcd (SPEC §12): a 3-member etcd-server cluster started
 * by the test on loopback ports, instances (a fake upstream behind a sidecar whose
 * inbound listener registers it) and a caller sidecar whose cluster discovers them.
 * Everything is started for real, bounded in time, and stopped by PID. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_etcd.h"
#include "harness_proxy.h"

#define TTL_S 2

typedef struct {
  fu_t *u;
  tp_t p;
  int alive;
} inst_t;

static char urls[512];

/* An instance: a fake upstream and its sidecar, whose listener registers service `svc`
 * with `labels` (YAML mapping text) and routes to the upstream (health-checked when
 * `health`). */
static void inst_start(inst_t *x, const char *svc, const char *labels, int health) {
  x->u = fu_start(&(fu_opts_t){.mode = health ? FU_HEALTH : FU_ECHO,
                               .raw = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"});
  tp_prepare(&x->p);
  tp_launch(&x->p,
            "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"
            "registry: { etcd: { endpoints: %s, timeout: 500ms } }\n"
            "listeners:\n  - name: inbound\n    address: 127.0.0.1:%d\n"
            "    register: { service: %s, ttl: %ds, labels: %s }\n"
            "    routes:\n      - { name: app, match: { prefix: / }, cluster: local }\n"
            "clusters:\n  - { name: local, endpoints: [%s]%s }\n",
            x->p.admin, urls, x->p.port, svc, TTL_S, labels, tp_ep(x->u),
            health ? ", health_check: { interval: 100ms, timeout: 100ms, unhealthy_threshold: 1, "
                     "healthy_threshold: 1 }"
                   : "");
  x->alive = 1;
}

/* Waits until the instance's record is written; ms it took, or -1. */
static int64_t inst_registered(inst_t *x, int timeout_ms) {
  int64_t t0 = th_now_ms();
  while (th_now_ms() - t0 < timeout_ms) {
    if (tp_metric(&x->p, "outrigger_registry_registered{listener=\"inbound\",service=\"app\"} ") == 1)
      return th_now_ms() - t0;
    usleep(10000);
  }
  return -1;
}

/* "127.0.0.1:PORT" of the instance's sidecar: what callers route to. */
static const char *inst_addr(const inst_t *x) {
  static char buf[4][32];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, 32, "127.0.0.1:%d", x->p.port);
  return b;
}

static void inst_kill9(inst_t *x) {
  kill(x->p.pid, SIGKILL);
  cr_assert(th_wait_exit(x->p.pid, 5000) != -2);
  th_tmpdir_remove(x->p.dir);
  x->p.dir = NULL;
  x->alive = 0;
}

static void inst_stop(inst_t *x) {
  if (x->alive) cr_expect_eq(tp_stop(&x->p), 0);
  x->alive = 0;
  if (x->u) fu_stop(x->u);
  x->u = NULL;
}

/* The caller: route / to discovered cluster `app` (service app), or, with `split`, a
 * 50/50 split between app-v1 and app-v2 (labels version: v1 / v2). `only_url` limits
 * its etcd to one member. */
static void caller_start(tp_t *p, int split, const char *etcd) {
  tp_prepare(p);
  tp_launch(
      p,
      "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"
      "registry: { etcd: { endpoints: %s, timeout: 500ms } }\n"
      "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
      "    routes:\n%s"
      "clusters:\n"
      "  - { name: app, discovery: { service: app } }\n"
      "  - { name: app-v1, discovery: { service: app, labels: { version: v1 } } }\n"
      "  - { name: app-v2, discovery: { service: app, labels: { version: v2 } } }\n",
      p->admin, etcd ? etcd : urls, p->port,
      split
          ? "      - name: all\n        match: { prefix: / }\n"
            "        split: [{ cluster: app-v1, weight: 50 }, { cluster: app-v2, weight: 50, canary: true }]\n"
          : "      - { name: all, match: { prefix: / }, cluster: app }\n");
}

/* Waits until cluster `c` of the caller has n endpoints; ms it took, or -1. */
static int64_t wait_endpoints(tp_t *p, const char *c, int n, int timeout_ms) {
  char series[128];
  snprintf(series, sizeof(series), "outrigger_discovery_endpoints{cluster=\"%s\"} ", c);
  int64_t t0 = th_now_ms();
  while (th_now_ms() - t0 < timeout_ms) {
    if (tp_metric(p, series) == n) return th_now_ms() - t0;
    usleep(10000);
  }
  return -1;
}

static int get(tp_t *p) {
  th_resp_t r;
  if (th_http(p->port, "GET", "/x", NULL, NULL, &r) != 0) return -1;
  int st = r.status;
  th_resp_free(&r);
  return st;
}

static te_cluster_t etcd;

static void setup(void) {
  cr_assert_eq(te_start(&etcd, 3), 0);
  te_urls_yaml(&etcd, urls, sizeof(urls));
}
static void teardown(void) { te_stop(&etcd); }

TestSuite(registry, .init = setup, .fini = teardown, .timeout = 60);

/* Registered instances are found; a new one takes traffic within 1 s of its record;
 * a canary split selects its clusters by label; GET /clusters says where each endpoint
 * came from. */
Test(registry, a_new_instance_takes_traffic_within_a_second) {
  inst_t a = {0}, b = {0};
  tp_t c;
  inst_start(&a, "app", "{ version: v1 }", 0);
  cr_assert_geq(inst_registered(&a, 3000), 0, "instance a never registered");
  caller_start(&c, 1, NULL);
  cr_assert_geq(wait_endpoints(&c, "app-v1", 1, 3000), 0);
  cr_expect_geq(wait_endpoints(&c, "app-v2", 0, 100), 0);
  /* Until v2 exists its share fails as no_healthy_endpoint; v1's succeeds. */
  for (int i = 0; i < 20; i++) {
    int st = get(&c);
    cr_assert(st == 200 || st == 503, "status %d", st);
  }
  cr_expect_gt(fu_requests(a.u), 0);
  inst_start(&b, "app", "{ version: v2 }", 0);
  cr_assert_geq(inst_registered(&b, 3000), 0, "instance b never registered");
  int64_t t0 = th_now_ms();
  while (fu_requests(b.u) == 0 && th_now_ms() - t0 < 1000) get(&c);
  cr_expect_gt(fu_requests(b.u), 0, "the new instance got no traffic within 1 s of registering");
  /* Now every request succeeds, split by label. */
  int before_a = fu_requests(a.u), before_b = fu_requests(b.u);
  for (int i = 0; i < 100; i++) cr_assert_eq(get(&c), 200);
  int na = fu_requests(a.u) - before_a, nb = fu_requests(b.u) - before_b;
  cr_expect(na > 20 && nb > 20, "the split sent %d to v1 and %d to v2", na, nb);
  cr_expect_eq(wait_endpoints(&c, "app", 2, 1000) >= 0, 1, "the unlabelled cluster takes both");
  th_resp_t r;
  cr_assert_eq(th_http(c.admin, "GET", "/clusters", NULL, NULL, &r), 0);
  cr_expect(strstr(r.body, "\"source\":\"etcd\""), "%s", r.body);
  cr_expect(strstr(r.body, "\"discovery\":{\"service\":\"app\",\"labels\":{\"version\":\"v2\"}"), "%s",
            r.body);
  cr_expect(strstr(r.body, inst_addr(&b)), "%s", r.body);
  th_resp_free(&r);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
  inst_stop(&b);
}

/* kill -9: the record lapses with its lease; SIGTERM: withdrawn at once. */
Test(registry, a_dead_instance_drops_out_within_its_ttl_and_a_stopped_one_at_once) {
  inst_t a = {0}, b = {0}, d = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 0);
  inst_start(&b, "app", "{}", 0);
  inst_start(&d, "app", "{}", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 3, 5000), 0);
  inst_kill9(&b);
  int64_t gone = wait_endpoints(&c, "app", 2, (TTL_S + 2) * 1000);
  cr_assert_geq(gone, 0, "a killed instance stayed past its ttl");
  cr_expect_leq(gone, TTL_S * 1000 + 600, "the record outlived its ttl: %lld ms", (long long)gone);
  cr_log_info("kill -9: gone after %lld ms (ttl %d s)", (long long)gone, TTL_S);
  kill(d.p.pid, SIGTERM);
  int64_t t = wait_endpoints(&c, "app", 1, 2000);
  cr_assert_geq(t, 0, "a stopped instance was not withdrawn");
  cr_expect_leq(t, 1000, "withdrawn only after %lld ms", (long long)t);
  cr_expect_eq(th_wait_exit(d.p.pid, 5000), 0);
  th_tmpdir_remove(d.p.dir);
  d.alive = 0;
  for (int i = 0; i < 20; i++) cr_expect_eq(get(&c), 200);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
  inst_stop(&b);
  inst_stop(&d);
}

/* Load through the caller while the etcd member it talks to is killed. */
typedef struct {
  tp_t *c;
  atomic_int stop, ok, failed;
} load_t;

static void *load_main(void *arg) {
  load_t *l = arg;
  while (!atomic_load(&l->stop)) {
    if (get(l->c) == 200)
      atomic_fetch_add(&l->ok, 1);
    else
      atomic_fetch_add(&l->failed, 1);
  }
  return NULL;
}

Test(registry, an_etcd_member_killed_under_load_fails_no_request) {
  inst_t a = {0}, b = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 0);
  inst_start(&b, "app", "{}", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 2, 5000), 0);
  load_t l = {.c = &c};
  pthread_t th;
  pthread_create(&th, NULL, load_main, &l);
  usleep(300000);
  cr_assert_eq(te_kill(&etcd, 0, SIGKILL), 0);
  usleep(TTL_S * 1000 * 1000 + 500000); /* past a ttl: the keepalives went to the other members */
  atomic_store(&l.stop, 1);
  pthread_join(th, NULL);
  cr_log_info("%d requests during the member's death", atomic_load(&l.ok));
  if (atomic_load(&l.failed)) {
    char *log = th_read_file(c.log, NULL);
    fprintf(stderr, "the caller's log:\n%s\n", log ? log : "");
    free(log);
  }
  cr_expect_eq(atomic_load(&l.failed), 0, "%d requests failed", atomic_load(&l.failed));
  cr_expect_gt(atomic_load(&l.ok), 50);
  if (wait_endpoints(&c, "app", 2, 100) < 0) {
    tp_t *all[] = {&c, &a.p, &b.p};
    for (int i = 0; i < 3; i++) {
      char *log = th_read_file(all[i]->log, NULL);
      fprintf(stderr, "---- log %d:\n%s\n", i, log ? log : "");
      free(log);
    }
    cr_expect_fail("an instance lost its record");
  }
  cr_expect_eq(tp_metric(&a.p, "outrigger_registry_registered{listener=\"inbound\",service=\"app\"} "), 1);
  /* A change still reaches the caller, through the members left. */
  kill(b.p.pid, SIGTERM);
  cr_expect_geq(wait_endpoints(&c, "app", 1, 2000), 0, "the caller no longer follows etcd");
  th_wait_exit(b.p.pid, 5000);
  th_tmpdir_remove(b.p.dir);
  b.alive = 0;
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
  inst_stop(&b);
}

/* Every member down: the last known endpoints keep serving; when etcd returns the
 * caller catches up (an instance that came meanwhile, one that died meanwhile). */
Test(registry, with_etcd_gone_the_last_known_endpoints_serve_then_it_catches_up) {
  inst_t a = {0}, b = {0}, n = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 0);
  inst_start(&b, "app", "{}", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 2, 5000), 0);
  for (int i = 0; i < 3; i++) cr_assert_eq(te_kill(&etcd, i, SIGKILL), 0);
  for (int k = 0; tp_metric(&c, "outrigger_discovery_stale{cluster=\"app\"} ") != 1; k++) {
    cr_assert_lt(k, 300, "the caller never noticed etcd was gone");
    usleep(10000);
  }
  cr_expect_eq(tp_metric(&c, "outrigger_registry_up "), 0);
  int na = fu_requests(a.u), nb = fu_requests(b.u);
  for (int i = 0; i < 40; i++) cr_assert_eq(get(&c), 200);
  cr_expect(fu_requests(a.u) > na && fu_requests(b.u) > nb, "not both last known endpoints served");
  /* Meanwhile b dies and n starts. */
  inst_kill9(&b);
  inst_start(&n, "app", "{}", 0);
  usleep(500000);
  cr_assert_eq(te_restart_first(&etcd, 3), 0, "etcd did not come back");
  /* n registers once etcd answers; b's lease lapses a ttl after etcd's leader is back. */
  if (inst_registered(&n, 5000) < 0) {
    char *log = th_read_file(n.p.log, NULL);
    fprintf(stderr, "---- the new instance's log:\n%s\n", log ? log : "");
    free(log);
    cr_assert_fail("the new instance never registered after etcd returned");
  }
  int64_t t0 = th_now_ms();
  for (;;) {
    th_resp_t r;
    cr_assert_eq(th_http(c.admin, "GET", "/clusters", NULL, NULL, &r), 0);
    int caught =
        strstr(r.body, inst_addr(&n)) && !strstr(r.body, inst_addr(&b)) && strstr(r.body, inst_addr(&a));
    th_resp_free(&r);
    if (caught) break;
    cr_assert_lt(th_now_ms() - t0, (TTL_S + 5) * 1000, "the caller did not catch up");
    usleep(20000);
  }
  cr_expect_eq(tp_metric(&c, "outrigger_discovery_stale{cluster=\"app\"} "), 0);
  cr_expect_eq(tp_metric(&c, "outrigger_registry_up "), 1);
  for (int i = 0; i < 20; i++) cr_expect_eq(get(&c), 200);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
  inst_stop(&b);
  inst_stop(&n);
}

/* The caller's watch is on member 0 alone; while member 0 is down the others change the
 * service and compact the history: watching from where it left off is refused, and the
 * caller lists again. */
Test(registry, a_compaction_during_the_watch_makes_it_list_again) {
  inst_t a = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 0);
  char one[160];
  te_url(&etcd, 0, one, sizeof(one) - 2);
  char only[168];
  snprintf(only, sizeof(only), "[%s]", one);
  caller_start(&c, 0, only);
  cr_assert_geq(wait_endpoints(&c, "app", 1, 5000), 0);
  cr_assert_eq(te_kill(&etcd, 0, SIGKILL), 0);
  cr_assert_eq(te_put(&etcd, "/outrigger/services/app/manual-1", "{\"address\":\"127.0.0.1:1\"}"), 0);
  for (int i = 0; i < 5; i++) cr_assert_eq(te_put(&etcd, "/outrigger/other/noise", "x"), 0);
  cr_assert_eq(te_compact(&etcd, te_revision(&etcd)), 0);
  cr_assert_eq(te_restart(&etcd, 0), 0);
  cr_expect_geq(wait_endpoints(&c, "app", 2, 8000), 0, "the record put while the watch was down never came");
  char *log = th_read_file(c.log, NULL);
  cr_expect(log && strstr(log, "was compacted"), "no relist after the compaction:\n%s", log ? log : "");
  free(log);
  cr_expect_geq(tp_metric(&c, "outrigger_discovery_relists_total{cluster=\"app\"} "), 1);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
}

/* Records that do not parse, or keys of the wrong shape, are skipped with a log line. */
Test(registry, malformed_and_foreign_records_are_skipped) {
  inst_t a = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 1, 5000), 0);
  const char *bad[][2] = {
      {"/outrigger/services/app/not-json", "{\"address\":"},
      {"/outrigger/services/app/no-port", "{\"address\":\"127.0.0.1\"}"},
      {"/outrigger/services/app/a-name", "{\"address\":\"example.com:80\"}"},
      {"/outrigger/services/app/zero-weight", "{\"address\":\"127.0.0.1:9\",\"weight\":0}"},
      {"/outrigger/services/app/deep/er", "{\"address\":\"127.0.0.1:9\"}"},
      {"/outrigger/services/app/array", "[1,2]"},
      {"/outrigger/services/other/x", "{\"address\":\"127.0.0.1:9\"}"}, /* another service: not ours */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert_eq(te_put(&etcd, bad[i][0], bad[i][1]), 0);
  for (int k = 0; tp_metric(&c, "outrigger_discovery_records_skipped_total{cluster=\"app\"} ") < 6; k++) {
    cr_assert_lt(k, 300, "the bad records were not all skipped");
    usleep(10000);
  }
  cr_expect_geq(wait_endpoints(&c, "app", 1, 100), 0, "a bad record became an endpoint");
  for (int i = 0; i < 10; i++) cr_expect_eq(get(&c), 200);
  /* A good record among them still counts; a caller started now lists them all. */
  cr_assert_eq(te_put(&etcd, "/outrigger/services/app/manual", "{\"address\":\"127.0.0.1:9\",\"x-new\":[1]}"),
               0);
  cr_expect_geq(wait_endpoints(&c, "app", 2, 2000), 0);
  tp_t c2;
  caller_start(&c2, 0, NULL);
  cr_expect_geq(wait_endpoints(&c2, "app", 2, 3000), 0);
  char *log = th_read_file(c2.log, NULL);
  cr_expect(log && strstr(log, "skipped the record at /outrigger/services/app/not-json"), "%s",
            log ? log : "");
  free(log);
  cr_expect_eq(tp_stop(&c2), 0);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
}

/* The record is withdrawn while the app fails its health check, and back after. */
Test(registry, an_unhealthy_app_is_withdrawn_until_it_recovers) {
  inst_t a = {0}, b = {0};
  tp_t c;
  inst_start(&a, "app", "{}", 1);
  inst_start(&b, "app", "{}", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 2, 5000), 0);
  fu_set_health(a.u, 500);
  cr_expect_geq(wait_endpoints(&c, "app", 1, 3000), 0, "an unhealthy app stayed registered");
  cr_expect_eq(tp_metric(&a.p, "outrigger_registry_registered{listener=\"inbound\",service=\"app\"} "), 0);
  fu_set_health(a.u, 200);
  cr_expect_geq(wait_endpoints(&c, "app", 2, 3000), 0, "a recovered app was not registered again");
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
  inst_stop(&b);
}

/* A reload keeps the discovered endpoints and the records it does not change, and
 * replaces a record whose labels it changes. */
Test(registry, a_reload_keeps_what_it_does_not_change) {
  inst_t a = {0};
  tp_t c;
  inst_start(&a, "app", "{ version: v1 }", 0);
  caller_start(&c, 0, NULL);
  cr_assert_geq(wait_endpoints(&c, "app", 1, 5000), 0);
  cr_assert_geq(wait_endpoints(&c, "app-v1", 1, 1000), 0);
  long updates = tp_metric(&c, "outrigger_discovery_updates_total{cluster=\"app\"} ");
  /* The caller gets one more route: its discovered clusters answer at once. */
  tp_rewrite(&c,
             "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"
             "registry: { etcd: { endpoints: %s, timeout: 500ms } }\n"
             "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
             "    routes:\n      - { name: v1, match: { prefix: /v1 }, cluster: app-v1 }\n"
             "      - { name: all, match: { prefix: / }, cluster: app }\n"
             "clusters:\n"
             "  - { name: app, discovery: { service: app } }\n"
             "  - { name: app-v1, discovery: { service: app, labels: { version: v1 } } }\n"
             "  - { name: app-v2, discovery: { service: app, labels: { version: v2 } } }\n",
             c.admin, urls, c.port);
  kill(c.pid, SIGHUP);
  for (int k = 0; tp_metric(&c, "outrigger_config_reloads_total{result=\"ok\"} ") != 1; k++) {
    cr_assert_lt(k, 200, "the reload never applied");
    usleep(10000);
  }
  th_resp_t r;
  cr_assert_eq(th_http(c.port, "GET", "/v1/x", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 200, "the new route's discovered cluster had no endpoint after the reload");
  th_resp_free(&r);
  cr_expect_eq(get(&c), 200);
  cr_expect_eq(tp_metric(&c, "outrigger_discovery_updates_total{cluster=\"app\"} "), updates,
               "the reload listed the kept cluster again");
  /* The instance now says version v2: its record is written again with the new labels. */
  tp_rewrite(&a.p,
             "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"
             "registry: { etcd: { endpoints: %s, timeout: 500ms } }\n"
             "listeners:\n  - name: inbound\n    address: 127.0.0.1:%d\n"
             "    register: { service: app, ttl: %ds, labels: { version: v2 } }\n"
             "    routes:\n      - { name: app, match: { prefix: / }, cluster: local }\n"
             "clusters:\n  - { name: local, endpoints: [%s] }\n",
             a.p.admin, urls, a.p.port, TTL_S, tp_ep(a.u));
  kill(a.p.pid, SIGHUP);
  cr_expect_geq(wait_endpoints(&c, "app-v2", 1, 3000), 0, "the relabelled record never came");
  cr_expect_geq(wait_endpoints(&c, "app-v1", 0, 1000), 0, "the old labels stayed");
  cr_expect_geq(wait_endpoints(&c, "app", 1, 1000), 0);
  cr_expect_eq(tp_stop(&c), 0);
  inst_stop(&a);
}
