/* The running configuration (proxy/runtime.h): snapshots built from a parsed config,
 * the weighted split choice and its run-time weights, round-robin endpoint choice
 * with the retry exclude mask, and the snapshot's reference count. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif

#include "config.h"
#include "core.h"
#include "net.h"
#include "runtime.h"

static const char yaml[] = "listeners:\n"
                           "  - name: out\n"
                           "    address: 127.0.0.1:15001\n"
                           "    routes:\n"
                           "      - { name: plain, match: { path: /plain }, cluster: a }\n"
                           "      - name: canary\n"
                           "        match: { path: /canary }\n"
                           "        split:\n"
                           "          - { cluster: a, weight: 90 }\n"
                           "          - { cluster: b, weight: 10, canary: true }\n"
                           "        canary: { override_header: x-canary }\n"
                           "      - name: three\n"
                           "        match: { path: /three }\n"
                           "        split:\n"
                           "          - { cluster: a, weight: 50 }\n"
                           "          - { cluster: b, weight: 0 }\n"
                           "          - { cluster: c, weight: 50 }\n"
                           "      - name: zero-last\n"
                           "        split:\n"
                           "          - { cluster: a, weight: 1 }\n"
                           "          - { cluster: c, weight: 0 }\n"
                           "  - name: in\n"
                           "    address: 127.0.0.1:8001\n"
                           "    routes:\n"
                           "      - { name: app, cluster: c }\n"
                           "clusters:\n"
                           "  - { name: a, endpoints: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003] }\n"
                           "  - { name: b, endpoints: [127.0.0.1:9101] }\n"
                           "  - { name: c, endpoints: ['[::1]:9201', 127.0.0.1:9202] }\n";

static px_snapshot_t *snap;

static void setup(void) {
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("t.yaml", yaml, strlen(yaml), &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "  %s\n", errs.items[i]);
  px_errlist_free(&errs);
  cr_assert_not_null(cfg);
  snap = px_snapshot_new(cfg, 2, 7, NULL, NULL);
  cr_assert_not_null(snap);
}

static void teardown(void) {
  if (snap) px_snapshot_unref(snap);
  snap = NULL;
}

TestSuite(runtime, .init = setup, .fini = teardown);

static px_route_rt_t *route(const char *listener, size_t i) {
  px_listener_rt_t *l = px_snapshot_listener(snap, listener);
  cr_assert_not_null(l);
  cr_assert(i < l->conf->nroutes);
  return &l->routes[i];
}

static px_cluster_t *cluster(const char *name) {
  for (size_t i = 0; i < snap->cfg->nclusters; i++)
    if (strcmp(snap->clusters[i].conf->name, name) == 0) return &snap->clusters[i];
  cr_assert_fail("no cluster %s", name);
  return NULL;
}

Test(runtime, snapshot_mirrors_the_config) {
  cr_expect_eq(snap->nworkers, 2);
  cr_expect_eq(snap->generation, 7);
  cr_expect_eq(atomic_load(&snap->refs), 1);
  px_cluster_t *a = cluster("a"), *c = cluster("c");
  cr_expect_eq(a->neps, 3);
  cr_expect_str_eq(a->eps[0].name, "127.0.0.1:9001");
  cr_expect_str_eq(a->eps[2].name, "127.0.0.1:9003");
  cr_expect_str_eq(c->eps[0].name, "[::1]:9201");
  cr_expect_eq(atomic_load(&a->st->connections), 0);
  cr_expect_eq(atomic_load(&a->eps[1].st->active_requests), 0);

  px_listener_rt_t *out = px_snapshot_listener(snap, "out"), *in = px_snapshot_listener(snap, "in");
  cr_assert(out && in);
  cr_expect_str_eq(out->conf->name, "out");
  cr_expect_str_eq(in->routes[0].conf->name, "app");
  cr_expect_null(px_snapshot_listener(snap, "nope"));
  cr_expect_null(px_snapshot_listener(snap, "ou"));
  cr_expect_null(route("out", 0)->rs, "no split, no route state");
  cr_expect_eq(atomic_load(&route("out", 1)->rs->weights[0]), 90);
  cr_expect_eq(atomic_load(&route("out", 1)->rs->weights[1]), 10);
}

Test(runtime, plain_route_picks_its_cluster) {
  px_route_rt_t *rt = route("out", 0);
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.0), cluster("a"));
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.999999), cluster("a"));
  cr_expect_eq(px_route_pick(snap, 0, route("in", 0), PX_CANARY_FORCE_NONE, 0, 0, 0.5), cluster("c"));
}

/* Share of n draws of px_rand01 that pick `want`. */
static double share(const px_route_rt_t *rt, const px_cluster_t *want, int n) {
  int hits = 0;
  for (int i = 0; i < n; i++) {
    px_cluster_t *c = px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, px_rand01());
    cr_assert_not_null(c);
    hits += c == want;
  }
  return (double)hits / n;
}

Test(runtime, split_90_10) {
  px_route_rt_t *rt = route("out", 1);
  double a = share(rt, cluster("a"), 100000);
  cr_expect(fabs(a - 0.90) <= 0.02, "stable got %.4f of the requests, want 0.90", a);
  double b = share(rt, cluster("b"), 100000);
  cr_expect(fabs(b - 0.10) <= 0.02, "canary got %.4f of the requests, want 0.10", b);
  /* The boundaries fall where the weights say. */
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.0), cluster("a"));
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.899), cluster("a"));
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.9), cluster("b"));
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, nextafter(1.0, 0.0)), cluster("b"));
}

Test(runtime, zero_weight_never_picked) {
  px_route_rt_t *rt = route("out", 2);
  px_cluster_t *b = cluster("b");
  int na = 0, nc = 0;
  for (int i = 0; i < 100000; i++) {
    px_cluster_t *c = px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, px_rand01());
    cr_assert_neq(c, b, "weight-0 cluster picked");
    na += c == cluster("a");
    nc += c == cluster("c");
  }
  cr_expect_eq(na + nc, 100000);
  cr_expect(fabs(na / 100000.0 - 0.5) <= 0.02, "a got %d", na);
  /* Deterministic draws over the whole range, including the edges. */
  for (int i = 0; i < 1000; i++)
    cr_assert_neq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, i / 1000.0), b, "r=%g", i / 1000.0);
  cr_expect_neq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, nextafter(1.0, 0.0)), b);
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.5), cluster("c"));

  /* A weight-0 entry last in the list is not a fallback either. */
  px_route_rt_t *zl = route("out", 3);
  cr_expect_eq(px_route_pick(snap, 0, zl, PX_CANARY_FORCE_NONE, 0, 0, 0.0), cluster("a"));
  cr_expect_eq(px_route_pick(snap, 0, zl, PX_CANARY_FORCE_NONE, 0, 0, nextafter(1.0, 0.0)), cluster("a"));
}

Test(runtime, all_weights_zero_gives_null) {
  px_route_rt_t *rt = route("out", 1);
  atomic_store(&rt->rs->weights[0], 0);
  atomic_store(&rt->rs->weights[1], 0);
  cr_expect_null(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.0));
  cr_expect_null(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, 0.5));
  cr_expect_null(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, nextafter(1.0, 0.0)));
}

Test(runtime, weight_change_takes_effect) {
  px_route_rt_t *rt = route("out", 1);
  px_cluster_t *a = cluster("a"), *b = cluster("b");
  /* Promote the canary fully, as the admin API would. */
  atomic_store(&rt->rs->weights[0], 0);
  atomic_store(&rt->rs->weights[1], 100);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, px_rand01()), b);
  /* Roll it back. */
  atomic_store(&rt->rs->weights[0], 100);
  atomic_store(&rt->rs->weights[1], 0);
  for (int i = 0; i < 10000; i++)
    cr_assert_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 0, 0, px_rand01()), a);
  /* 50/50. */
  atomic_store(&rt->rs->weights[1], 100);
  double s = share(rt, b, 100000);
  cr_expect(fabs(s - 0.5) <= 0.02, "canary got %.4f after 50/50", s);
  /* The file's weights are not touched: a reload that changes the split starts from them. */
  cr_expect_eq(rt->conf->split[0].weight, 90);
}

static px_snapshot_t *snapshot_of(const char *text);

/* SPEC §7 and issue 19: a reload keeps the weights set at run time for a route whose split
 * the file left as it was, and starts again from the file's for one whose split changed. */
Test(runtime, reload_keeps_run_time_weights_while_the_split_is_unchanged) {
  px_route_rt_t *rt = route("out", 1);
  atomic_store(&rt->rs->weights[0], 75);
  atomic_store(&rt->rs->weights[1], 25);
  atomic_store(&rt->rs->set_at_run_time, 1);
  px_snapshot_t *same = snapshot_of(yaml);
  px_route_rt_t *r2 = &px_snapshot_listener(same, "out")->routes[1];
  cr_expect_eq(r2->rs, rt->rs, "one state for both snapshots");
  cr_expect_eq(atomic_load(&r2->rs->weights[1]), 25);
  /* another weight in the file: the file's weights again, in a state of its own */
  char changed[sizeof(yaml) + 8];
  snprintf(changed, sizeof(changed), "%s", yaml);
  char *at = strstr(changed, "weight: 10, canary");
  cr_assert_not_null(at);
  memcpy(at, "weight: 20", 10);
  px_snapshot_t *other = snapshot_of(changed);
  px_route_rt_t *r3 = &px_snapshot_listener(other, "out")->routes[1];
  cr_expect_neq(r3->rs, rt->rs);
  cr_expect_eq(atomic_load(&r3->rs->weights[0]), 90);
  cr_expect_eq(atomic_load(&r3->rs->weights[1]), 20);
  cr_expect_eq(atomic_load(&r3->rs->set_at_run_time), 0);
  cr_expect_eq(atomic_load(&rt->rs->weights[1]), 25, "the older snapshots keep theirs to their end");
  /* and the unchanged file after that: the changed split's state, not the old one */
  px_snapshot_t *back = snapshot_of(changed);
  cr_expect_eq(px_snapshot_listener(back, "out")->routes[1].rs, r3->rs);
  px_snapshot_unref(back);
  px_snapshot_unref(other);
  px_snapshot_unref(same);
}

/* Sticky keys and the override header through the route's pick (canary.c decides). */
Test(runtime, sticky_keys_and_the_override_pick_a_side) {
  px_route_rt_t *rt = route("out", 1);
  px_cluster_t *a = cluster("a"), *b = cluster("b");
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_CANARY, 0, 0, 0.0), b);
  cr_expect_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_STABLE, 0, 0, 0.99), a);
  int canary = 0;
  for (int i = 0; i < 1000; i++) {
    char key[24];
    snprintf(key, sizeof(key), "user-%d", i);
    uint64_t h = px_canary_key_hash((px_str_t){key, strlen(key)});
    px_cluster_t *c = px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 1, h, 0.0);
    cr_assert_eq(px_route_pick(snap, 0, rt, PX_CANARY_FORCE_NONE, 1, h, 0.99), c, "the key decides, not r");
    canary += c == b;
  }
  cr_expect(canary > 60 && canary < 140, "%d of 1000 keys on the 10%% canary", canary);
  cr_expect_gt(px_route_requests(rt->rs, 1), 0, "counted");
}

static int probe; /* px_cluster_pick's: no breaker here, so never set */

Test(runtime, round_robin_visits_every_endpoint_evenly) {
  px_cluster_t *a = cluster("a");
  for (int w = 0; w < 2; w++) {
    int seen[3] = {0};
    size_t prev = px_cluster_pick(a, w, 0, 0, 0, px_now_ms(), &probe);
    seen[prev]++;
    for (int i = 1; i < 3000; i++) {
      size_t e = px_cluster_pick(a, w, 0, 0, 0, px_now_ms(), &probe);
      cr_assert(e < 3);
      cr_assert_eq(e, (prev + 1) % 3, "worker %d: %zu after %zu", w, e, prev);
      seen[e]++;
      prev = e;
    }
    for (int e = 0; e < 3; e++) cr_expect_eq(seen[e], 1000, "worker %d endpoint %d: %d", w, e, seen[e]);
  }
}

Test(runtime, workers_round_robin_independently) {
  px_cluster_t *a = cluster("a");
  size_t w0[6], w1[6];
  /* Interleaving the workers' picks does not change either one's sequence. */
  for (int i = 0; i < 6; i++) {
    w0[i] = px_cluster_pick(a, 0, 0, 0, 0, px_now_ms(), &probe);
    w1[i] = px_cluster_pick(a, 1, 0, 0, 0, px_now_ms(), &probe);
  }
  for (int i = 1; i < 6; i++) {
    cr_expect_eq(w0[i], (w0[i - 1] + 1) % 3);
    cr_expect_eq(w1[i], (w1[i - 1] + 1) % 3);
  }
  cr_expect_neq(w0[0], w1[0], "workers start at different endpoints");
}

Test(runtime, exclude_skips_tried_endpoints) {
  px_cluster_t *a = cluster("a");
  for (int i = 0; i < 30; i++) {
    cr_assert_eq(px_cluster_pick(a, 0, 1u << 0 | 1u << 1, 0, 0, px_now_ms(), &probe), 2);
    cr_assert_eq(px_cluster_pick(a, 1, 1u << 2 | 1u << 0, 0, 0, px_now_ms(), &probe), 1);
    size_t e = px_cluster_pick(a, 0, 1u << 1, 0, 0, px_now_ms(), &probe);
    cr_assert(e == 0 || e == 2, "excluded endpoint 1 picked");
  }
  /* A retry after endpoint e failed never goes back to e while others remain. */
  for (int i = 0; i < 30; i++) {
    size_t first = px_cluster_pick(a, 1, 0, 0, 0, px_now_ms(), &probe);
    size_t second = px_cluster_pick(a, 1, 1ull << first, 0, 0, px_now_ms(), &probe);
    cr_assert_neq(first, second);
    size_t third = px_cluster_pick(a, 1, 1ull << first | 1ull << second, 0, 0, px_now_ms(), &probe);
    cr_assert(third != first && third != second);
  }
}

Test(runtime, all_excluded_still_returns_one) {
  px_cluster_t *a = cluster("a"), *b = cluster("b");
  for (int i = 0; i < 10; i++) {
    cr_assert(px_cluster_pick(a, 0, 0x7, 0, 0, px_now_ms(), &probe) < 3);
    cr_assert(px_cluster_pick(a, 1, ~0ull, 0, 0, px_now_ms(), &probe) < 3);
    cr_assert_eq(px_cluster_pick(b, 0, 0x1, 0, 0, px_now_ms(), &probe), 0, "the only endpoint, though tried");
  }
}

Test(runtime, refcount_frees_at_last_unref) {
  px_snapshot_t *s = snap;
  px_snapshot_ref(s); /* a request in flight */
  px_snapshot_ref(s); /* another */
  cr_expect_eq(atomic_load(&s->refs), 3);
  px_snapshot_unref(s); /* the worker moved to a new snapshot */
  px_snapshot_unref(s);
  /* Still usable by the last request: ASan reports any use after free here. */
  cr_expect_eq(atomic_load(&s->refs), 1);
  cr_expect_str_eq(s->clusters[0].eps[0].name, "127.0.0.1:9001");
  cr_expect_str_eq(s->cfg->listeners[0].name, "out");
  cr_expect_eq(px_route_pick(s, 0, route("out", 1), PX_CANARY_FORCE_NONE, 0, 0, 0.0), cluster("a"));
  px_snapshot_unref(s); /* frees it */
  snap = NULL;
#ifdef __SANITIZE_ADDRESS__
  /* LeakSanitizer's report at exit comes after Criterion has counted the test as
   * passed, so ask now: nothing of the snapshot or its config may be left. */
  cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "the last unref leaked (see the report above)");
#endif
}

/* ---- cluster and endpoint state across reloads (cluster_state.h) ----------------- */

static px_snapshot_t *snapshot_of(const char *text) {
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("r.yaml", text, strlen(text), &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "  %s\n", errs.items[i]);
  px_errlist_free(&errs);
  cr_assert_not_null(cfg);
  return px_snapshot_new(cfg, 1, 1, NULL, NULL);
}

static px_cluster_t *cluster_in(px_snapshot_t *s, const char *name) {
  for (size_t i = 0; i < s->cfg->nclusters; i++)
    if (strcmp(s->clusters[i].conf->name, name) == 0) return &s->clusters[i];
  return NULL;
}

#define ROUTE_TO(c)                                                                                          \
  "listeners:\n  - { name: l, address: 127.0.0.1:15001, routes: [{ name: r, cluster: " c " }] }\n"
#define ONE_ROUTE ROUTE_TO("a")

/* A reload that keeps a cluster keeps its counts: requests in flight on the old
 * configuration and new ones are counted together, so a limit holds across it. */
Test(runtime, a_kept_cluster_keeps_its_state) {
  px_snapshot_t *old =
      snapshot_of(ONE_ROUTE "clusters:\n  - { name: a, endpoints: [127.0.0.1:9001, 127.0.0.1:9002] }\n");
  px_cluster_t *a = cluster_in(old, "a");
  atomic_fetch_add(&a->st->active_requests, 1);
  atomic_fetch_add(&a->eps[1].st->requests_total, 5);
  px_snapshot_t *next = snapshot_of(
      ONE_ROUTE "clusters:\n  - { name: a, endpoints: [127.0.0.1:9002], limits: { max_requests: 7 } }\n"
                "  - { name: b, endpoints: [127.0.0.1:9101] }\n");
  px_cluster_t *a2 = cluster_in(next, "a");
  cr_expect_eq(a2->st, a->st, "the same cluster's state");
  cr_expect_eq(atomic_load(&a2->st->active_requests), 1);
  cr_expect_eq(a2->eps[0].st, a->eps[1].st, "an endpoint is known by its address");
  cr_expect_eq(atomic_load(&a2->eps[0].st->requests_total), 5);
  cr_expect_neq(cluster_in(next, "b")->st, a->st);
  atomic_fetch_sub(&a->st->active_requests, 1); /* the old request ends on the old snapshot */
  cr_expect_eq(atomic_load(&a2->st->active_requests), 0);
  px_snapshot_unref(old);
  cr_expect_eq(atomic_load(&a2->eps[0].st->requests_total), 5, "outlives the old snapshot");
  px_snapshot_unref(next);
}

/* An endpoint a reload removes loses its state with the last snapshot naming it: added
 * back, it starts afresh. A removed cluster's state goes the same way. */
Test(runtime, a_removed_endpoint_loses_its_state) {
  /* Cluster x is only in this test's snapshots (the suite's has a, b and c). */
  int before = px_cluster_state_count();
  px_snapshot_t *s1 =
      snapshot_of(ROUTE_TO("x") "clusters:\n  - { name: x, endpoints: [127.0.0.1:9001, 127.0.0.1:9002] }\n"
                                "  - { name: gone, endpoints: [127.0.0.1:9301] }\n");
  cr_expect_eq(px_cluster_state_count(), before + 2);
  atomic_fetch_add(&cluster_in(s1, "x")->eps[0].st->requests_total, 3);
  px_snapshot_t *s2 = snapshot_of(ROUTE_TO("x") "clusters:\n  - { name: x, endpoints: [127.0.0.1:9002] }\n");
  cr_expect_eq(px_cluster_state_count(), before + 2, "still named by the old snapshot");
  px_snapshot_unref(s1);
  cr_expect_eq(px_cluster_state_count(), before + 1, "the removed cluster's state is gone");
  px_snapshot_t *s3 =
      snapshot_of(ROUTE_TO("x") "clusters:\n  - { name: x, endpoints: [127.0.0.1:9001, 127.0.0.1:9002] }\n");
  cr_expect_eq(atomic_load(&cluster_in(s3, "x")->eps[0].st->requests_total), 0,
               "a re-added endpoint starts afresh");
  px_snapshot_unref(s2);
  px_snapshot_unref(s3);
  cr_expect_eq(px_cluster_state_count(), before);
}

/* ---- discovered clusters (SPEC §12) ------------------------------------------------ */

static const char disc_yaml[] = "registry: { etcd: { endpoints: [http://127.0.0.1:2379] } }\n"
                                "listeners:\n"
                                "  - name: in\n"
                                "    address: 127.0.0.1:8001\n"
                                "    routes:\n"
                                "      - { name: d, match: { path: /d }, cluster: d }\n"
                                "      - { name: s, cluster: s }\n"
                                "clusters:\n"
                                "  - { name: d, discovery: { service: app } }\n"
                                "  - name: s\n"
                                "    endpoints: [127.0.0.1:9001]\n"
                                "    health_check: { interval: 1s }\n";

static px_disc_ep_t disc_eps[2];

static void lookup_two(void *ctx, const px_cluster_conf_t *cc, px_disc_view_t *out) {
  int *calls = ctx;
  (*calls)++;
  cr_assert_str_eq(cc->name, "d");
  for (int i = 0; i < 2; i++) {
    snprintf(disc_eps[i].name, sizeof(disc_eps[i].name), "127.0.0.1:%d", 7001 + i);
    cr_assert_eq(px_addr_parse(disc_eps[i].name, &disc_eps[i].sa), 0);
    disc_eps[i].weight = i ? 3 : 1;
    disc_eps[i].revision = 40 + i;
  }
  *out = (px_disc_view_t){.eps = disc_eps, .n = 2, .revision = 42, .stale = 0};
}

Test(runtime, a_discovered_cluster_takes_the_registry_endpoints_with_their_weights) {
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("d.yaml", disc_yaml, strlen(disc_yaml), &errs);
  px_errlist_free(&errs);
  cr_assert_not_null(cfg);
  /* Without a lookup (at start, nothing listed yet) it has no endpoint. */
  px_config_ref(cfg);
  px_snapshot_t *empty = px_snapshot_new(cfg, 1, 1, NULL, NULL);
  cr_expect_eq(cluster_in(empty, "d")->neps, 0);
  cr_expect_eq(cluster_in(empty, "s")->neps, 1);
  cr_expect_eq(cluster_in(empty, "s")->eps[0].discovered, 0);
  /* The same configuration, shared, with what the registry found. */
  int calls = 0;
  px_snapshot_t *s = px_snapshot_new(cfg, 1, 1, lookup_two, &calls);
  cr_expect_eq(calls, 1, "only the discovered cluster is looked up");
  px_cluster_t *d = cluster_in(s, "d");
  cr_assert_eq(d->neps, 2);
  cr_expect(d->eps[1].discovered);
  cr_expect_str_eq(d->eps[1].name, "127.0.0.1:7002");
  cr_expect_eq(d->eps[1].weight, 3);
  cr_expect_eq(d->eps[1].revision, 41);
  cr_expect_eq(d->disc_revision, 42);
  cr_expect(d->weighted);
  disc_eps[1].name[0] = '\0'; /* copied: the registry's view may change under it */
  cr_expect_str_eq(d->eps[1].name, "127.0.0.1:7002");
  /* Round robin honours the weights: 1 in 4 to the first. */
  int n[2] = {0};
  for (int i = 0; i < 400; i++) {
    int is_probe;
    int e = px_cluster_pick(d, 0, 0, 0, 0, px_now_ms(), &is_probe);
    cr_assert(e == 0 || e == 1);
    n[e]++;
  }
  cr_expect_eq(n[0], 100, "weights 1 and 3: %d and %d", n[0], n[1]);
  px_snapshot_unref(empty); /* the configuration stays with the other snapshot */
  cr_expect_str_eq(cluster_in(s, "s")->conf->name, "s");
  px_snapshot_unref(s);
}

Test(runtime, a_listener_is_healthy_unless_every_checked_endpoint_is_not) {
  px_snapshot_t *s = snapshot_of(disc_yaml);
  cr_expect(px_snapshot_listener_healthy(s, "in"));
  px_health_transition_t tr;
  px_endpoint_state_t *e = cluster_in(s, "s")->eps[0].st;
  for (int i = 0; i < 3; i++) px_health_report(&e->health, 0, &tr);
  cr_expect_eq(px_health_state(&e->health), PX_HEALTH_UNHEALTHY);
  cr_expect(!px_snapshot_listener_healthy(s, "in"), "the only checked cluster has no healthy endpoint");
  for (int i = 0; i < 2; i++) px_health_report(&e->health, 1, &tr);
  cr_expect(px_snapshot_listener_healthy(s, "in"));
  cr_expect(px_snapshot_listener_healthy(s, "nobody"));
  px_snapshot_unref(s);
}

/* A discovered ring_hash cluster that gains an endpoint moves only the keys the new one
 * takes (SPEC §12: the same balancers as static endpoints). */
static const char ring_yaml[] = "registry: { etcd: { endpoints: [http://127.0.0.1:2379] } }\n"
                                "listeners:\n"
                                "  - name: in\n"
                                "    address: 127.0.0.1:8001\n"
                                "    routes:\n"
                                "      - { name: d, cluster: d }\n"
                                "clusters:\n"
                                "  - { name: d, lb: ring_hash, hash: path, discovery: { service: app } }\n";

static px_disc_ep_t ring_eps[4];
static size_t ring_n;

static void lookup_ring(void *ctx, const px_cluster_conf_t *cc, px_disc_view_t *out) {
  (void)ctx, (void)cc;
  for (size_t i = 0; i < ring_n; i++) {
    snprintf(ring_eps[i].name, sizeof(ring_eps[i].name), "127.0.0.1:%zu", 7101 + i);
    cr_assert_eq(px_addr_parse(ring_eps[i].name, &ring_eps[i].sa), 0);
    ring_eps[i].weight = 1;
  }
  *out = (px_disc_view_t){.eps = ring_eps, .n = ring_n, .revision = (int64_t)ring_n};
}

Test(runtime, a_discovered_ring_moves_only_the_keys_a_new_endpoint_takes) {
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("r.yaml", ring_yaml, strlen(ring_yaml), &errs);
  px_errlist_free(&errs);
  cr_assert_not_null(cfg);
  px_config_ref(cfg);
  ring_n = 3;
  px_snapshot_t *a = px_snapshot_new(cfg, 1, 1, lookup_ring, NULL);
  ring_n = 4;
  px_snapshot_t *b = px_snapshot_new(cfg, 1, 1, lookup_ring, NULL);
  px_cluster_t *ca = cluster_in(a, "d"), *cb = cluster_in(b, "d");
  cr_assert_eq(ca->neps, 3);
  cr_assert_eq(cb->neps, 4);
  enum { KEYS = 4000 };
  int moved = 0, to_new = 0;
  for (int k = 0; k < KEYS; k++) {
    char key[32];
    int n = snprintf(key, sizeof(key), "/links/%d", k);
    uint64_t h = px_lb_hash(key, (size_t)n);
    int is_probe;
    int ea = px_cluster_pick(ca, 0, 0, h, 1, px_now_ms(), &is_probe),
        eb = px_cluster_pick(cb, 0, 0, h, 1, px_now_ms(), &is_probe);
    cr_assert(ea >= 0 && eb >= 0);
    if (strcmp(ca->eps[ea].name, cb->eps[eb].name) != 0) {
      moved++;
      to_new += strcmp(cb->eps[eb].name, "127.0.0.1:7104") == 0;
    }
  }
  cr_expect_eq(moved, to_new, "%d keys moved, only %d of them to the new endpoint", moved, to_new);
  cr_expect(moved > KEYS / 8 && moved < KEYS / 3, "the new endpoint took %d of %d keys", moved, KEYS);
  px_snapshot_unref(a);
  px_snapshot_unref(b);
}
