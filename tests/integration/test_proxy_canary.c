/* Canary splitting through the real binary (SPEC §7, issue 19): the split's share within
 * a binomial bound, the override header both ways, sticky keys that stay on their side
 * and move only one way as the canary's weight goes up and then down through the admin
 * API, the admin API's validation, a weight change under a request loop that loses
 * nothing, and the reload rule for run-time weights. Each fake upstream names itself in
 * its body: S for stable, C for canary. */
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness_proxy.h"

#define CFG                                                                                                  \
  "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"                                     \
  "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"                                                  \
  "    routes:\n      - name: app\n        match: { prefix: / }\n"                                           \
  "        split:\n          - { cluster: stable, weight: %d }\n"                                            \
  "          - { cluster: canary, weight: %d, canary: true }\n"                                              \
  "        canary: { override_header: x-canary, sticky: { header: x-user-id } }\n"                           \
  "clusters:\n  - { name: stable, endpoints: [%s] }\n  - { name: canary, endpoints: [%s] }\n"

/* With analysis; `extra` holds more keys of the canary block. Its latency gate is loosened (20 x the 1 ms
 * floor): a healthy canary's p99 under a sanitizer build on a loaded 2-core host reached 2.2 ms and was
 * rolled back (a CI flake); these tests are about error rates and promotion, and the latency verdicts are
 * unit-tested (test_canary.c). */
#define CFG_A                                                                                                \
  "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: info }\n"                                     \
  "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"                                                  \
  "    routes:\n      - name: app\n        match: { prefix: / }\n"                                           \
  "        split:\n          - { cluster: stable, weight: %d }\n"                                            \
  "          - { cluster: canary, weight: %d, canary: true }\n"                                              \
  "        canary:\n          analysis: { interval: 1s, min_requests: 20, max_latency_ratio: 20 }\n%s"       \
  "clusters:\n  - { name: stable, endpoints: [%s] }\n  - { name: canary, endpoints: [%s] }\n"

static fu_t *up_s, *up_c;
static char ep_s[64], ep_c[64];

/* The two fake upstreams: stable answers 200 "S", the canary `raw_c`. */
static void start_ups(const char *raw_c) {
  up_s = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nS"});
  up_c = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = raw_c});
  snprintf(ep_s, sizeof(ep_s), "%s", tp_ep(up_s));
  snprintf(ep_c, sizeof(ep_c), "%s", tp_ep(up_c));
}

static void start(tp_t *p, int ws, int wc) {
  start_ups("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC");
  tp_prepare(p);
  tp_launch(p, CFG, p->admin, p->port, ws, wc, ep_s, ep_c);
}

static void stop(tp_t *p) {
  cr_assert_eq(tp_stop(p), 0);
  fu_stop(up_s);
  fu_stop(up_c);
}

/* 'S' or 'C': who answered a GET with these header lines. */
static char who(tp_t *p, const char *headers) {
  th_resp_t r;
  cr_assert_eq(th_http(p->port, "GET", "/x", headers, NULL, &r), 0);
  cr_assert_eq(r.status, 200, "status %d: %.*s", r.status, (int)r.body_len, r.body);
  char c = r.body_len == 1 ? r.body[0] : '?';
  const char *u = th_header(&r, "x-outrigger-upstream");
  cr_expect(u && strcmp(u, c == 'C' ? "canary" : "stable") == 0, "x-outrigger-upstream: %s for %c",
            u ? u : "-", c);
  th_resp_free(&r);
  return c;
}

/* POST /canary/app with `body`; returns the status, the answer's body in *out (freed by
 * the caller with th_resp_free). */
static int set_weights(tp_t *p, const char *body, th_resp_t *out) {
  cr_assert_eq(th_http(p->admin, "POST", "/canary/app", "Content-Type: application/json\r\n", body, out), 0);
  return out->status;
}

static void weights(tp_t *p, int ws, int wc) {
  char body[96];
  snprintf(body, sizeof(body), "{\"weights\": {\"stable\": %d, \"canary\": %d}}", ws, wc);
  th_resp_t r;
  cr_assert_eq(set_weights(p, body, &r), 200, "%.*s", (int)r.body_len, r.body);
  th_resp_free(&r);
}

Test(canary, share_within_a_binomial_bound_and_override_both_ways, .timeout = 90) {
  tp_t p;
  start(&p, 80, 20);
  enum { N = 2000 };
  int canary = 0;
  for (int i = 0; i < N; i++) canary += who(&p, NULL) == 'C';
  double sd = sqrt(N * 0.2 * 0.8);
  cr_expect(fabs(canary - N * 0.2) <= 4 * sd, "%d of %d on the 20%% canary (4 sigma: %.0f)", canary, N,
            4 * sd);
  for (int i = 0; i < 50; i++) {
    cr_assert_eq(who(&p, "x-canary: always\r\n"), 'C');
    cr_assert_eq(who(&p, "X-Canary: Never\r\n"), 'S');
  }
  /* the override wins over a sticky key, and "always" reaches a canary at weight 0 */
  weights(&p, 100, 0);
  for (int i = 0; i < 20; i++) {
    cr_assert_eq(who(&p, NULL), 'S');
    cr_assert_eq(who(&p, "x-canary: always\r\nx-user-id: u1\r\n"), 'C');
  }
  stop(&p);
}

/* Keys hashed into basis points: raising the canary's share only moves keys to it,
 * lowering it only moves them back, and a key stays where it is between changes. */
Test(canary, sticky_keys_move_one_way_as_the_weight_changes, .timeout = 120) {
  tp_t p;
  start(&p, 95, 5);
  enum { KEYS = 200 };
  char side[KEYS], h[64];
  static const int up[] = {5, 20, 50, 80, 100}, down[] = {60, 30, 10, 0};
  int on_canary = 0;
  for (int k = 0; k < KEYS; k++) {
    snprintf(h, sizeof(h), "x-user-id: user-%d\r\n", k);
    side[k] = who(&p, h);
    on_canary += side[k] == 'C';
  }
  cr_expect(on_canary > 0 && on_canary < 30, "%d of %d keys on a 5%% canary", on_canary, KEYS);
  for (int step = 0; step < 9; step++) {
    int wc = step < 5 ? up[step] : down[step - 5];
    weights(&p, 100 - wc, wc);
    int now_canary = 0;
    for (int k = 0; k < KEYS; k++) {
      snprintf(h, sizeof(h), "x-user-id: user-%d\r\n", k);
      char c = who(&p, h);
      cr_assert_eq(who(&p, h), c, "key %d flips between two requests at canary %d", k, wc);
      if (step < 5)
        cr_expect(!(side[k] == 'C' && c == 'S'), "raising to %d moved key %d back to stable", wc, k);
      else
        cr_expect(!(side[k] == 'S' && c == 'C'), "lowering to %d moved key %d to the canary", wc, k);
      side[k] = c;
      now_canary += c == 'C';
    }
    if (wc == 100) cr_expect_eq(now_canary, KEYS);
    if (wc == 0) cr_expect_eq(now_canary, 0);
  }
  stop(&p);
}

/* Sticky by cookie: the same cookie value stays on one side among other cookies, and
 * keys spread over both sides by the weights. */
Test(canary, sticky_by_cookie, .timeout = 60) {
  start_ups("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nC");
  tp_t p;
  tp_prepare(&p);
  tp_launch(&p,
            "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn }\n"
            "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
            "    routes:\n      - name: app\n        split:\n          - { cluster: stable, weight: 50 }\n"
            "          - { cluster: canary, weight: 50, canary: true }\n"
            "        canary: { sticky: { cookie: sid } }\n"
            "clusters:\n  - { name: stable, endpoints: [%s] }\n  - { name: canary, endpoints: [%s] }\n",
            p.admin, p.port, ep_s, ep_c);
  int per[2] = {0};
  char h[96];
  for (int k = 0; k < 100; k++) {
    snprintf(h, sizeof(h), "Cookie: theme=dark; sid=s%d; lang=en\r\n", k);
    char c = who(&p, h);
    for (int again = 0; again < 3; again++) {
      snprintf(h, sizeof(h), "Cookie: sid=s%d\r\nCookie: other=%d\r\n", k, again);
      cr_assert_eq(who(&p, h), c, "cookie sid=s%d moved", k);
    }
    per[c == 'C']++;
  }
  cr_expect(per[0] > 25 && per[1] > 25, "stable %d, canary %d of 100 keys at 50/50", per[0], per[1]);
  stop(&p);
}

/* A request's retries stay on the side it was given: a canary answering 503, retried on
 * 5xx, gives its 503 after 3 tries and never a stable 200 after a retry. */
Test(canary, retries_stay_on_the_side, .timeout = 60) {
  start_ups("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1\r\n\r\nC");
  tp_t p;
  tp_prepare(&p);
  tp_launch(&p,
            "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn }\n"
            "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
            "    routes:\n      - name: app\n        split:\n          - { cluster: stable, weight: 50 }\n"
            "          - { cluster: canary, weight: 50, canary: true }\n"
            "        canary: {}\n"
            "        retry: { attempts: 3, on: [5xx], backoff: { base: 1ms, max: 2ms } }\n"
            "clusters:\n  - { name: stable, endpoints: [%s] }\n  - { name: canary, endpoints: [%s] }\n",
            p.admin, p.port, ep_s, ep_c);
  int seen[2] = {0};
  for (int i = 0; i < 200; i++) {
    th_resp_t r;
    cr_assert_eq(th_http(p.port, "GET", "/x", i % 4 ? NULL : "x-canary: always\r\n", NULL, &r), 0);
    const char *a = th_header(&r, "x-outrigger-attempts");
    if (r.status == 200) {
      cr_assert(r.body_len == 1 && r.body[0] == 'S');
      cr_assert(a && strcmp(a, "1") == 0, "a stable answer after %s tries: a retry changed sides",
                a ? a : "?");
      seen[0]++;
    } else {
      cr_assert_eq(r.status, 503);
      cr_assert(r.body_len == 1 && r.body[0] == 'C');
      cr_assert(a && strcmp(a, "3") == 0, "the canary's 503 after %s tries", a ? a : "?");
      seen[1]++;
    }
    th_resp_free(&r);
  }
  cr_expect(seen[0] > 40 && seen[1] > 90, "stable %d, canary %d", seen[0], seen[1]);
  stop(&p);
}

Test(canary, admin_api_validates_and_reports, .timeout = 60) {
  tp_t p;
  start(&p, 90, 10);
  th_resp_t r;
  static const struct {
    const char *body;
    int status;
    const char *says;
  } bad[] = {
      {"{\"weights\": {\"nope\": 5}}", 422, "nope"},
      {"{\"weights\": {\"canary\": -1}}", 422, "canary"},
      {"{\"weights\": {\"canary\": 10001}}", 422, "0 to 10000"},
      {"{\"weights\": {\"canary\": 2.5}}", 422, "integer"},
      {"{\"weights\": {\"stable\": 0, \"canary\": 0}}", 422, "all be 0"},
      {"{\"weights\": [1, 2]}", 400, "weights"},
      {"{\"weights\": {", 400, "offset"},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cr_expect_eq(set_weights(&p, bad[i].body, &r), bad[i].status, "%s: %d", bad[i].body, r.status);
    const char *ct = th_header(&r, "content-type");
    cr_expect(ct && strcmp(ct, "application/problem+json") == 0, "%s", bad[i].body);
    cr_expect(strstr(r.body, bad[i].says) != NULL, "%s: %.*s", bad[i].body, (int)r.body_len, r.body);
    th_resp_free(&r);
  }
  cr_assert_eq(th_http(p.admin, "POST", "/canary/other", NULL, "{\"weights\": {}}", &r), 0);
  cr_expect_eq(r.status, 404);
  th_resp_free(&r);
  /* nothing changed by the refusals */
  cr_assert_eq(th_http(p.admin, "GET", "/canary", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect(
      strstr(r.body, "\"route\":\"app\",\"listener\":\"edge\",\"weights\":{\"stable\":90,\"canary\":10}") !=
          NULL,
      "%.*s", (int)r.body_len, r.body);
  cr_expect(strstr(r.body, "\"canary\":\"canary\"") != NULL);
  cr_expect(strstr(r.body, "\"weights_source\":\"file\"") != NULL);
  th_resp_free(&r);
  /* a partial change keeps the other weights, counts the requests per cluster */
  cr_assert_eq(set_weights(&p, "{\"weights\": {\"canary\": 30}}", &r), 200);
  cr_expect(strstr(r.body, "\"weights\":{\"stable\":90,\"canary\":30}") != NULL, "%.*s", (int)r.body_len,
            r.body);
  th_resp_free(&r);
  for (int i = 0; i < 20; i++) who(&p, "x-canary: always\r\n");
  cr_assert_eq(th_http(p.admin, "GET", "/canary", NULL, NULL, &r), 0);
  cr_expect(strstr(r.body, "\"requests\":{\"stable\":0,\"canary\":20}") != NULL, "%.*s", (int)r.body_len,
            r.body);
  cr_expect(strstr(r.body, "\"weights_source\":\"run_time\"") != NULL);
  th_resp_free(&r);
  cr_assert_eq(th_http(p.admin, "GET", "/canary/app", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 405);
  th_resp_free(&r);
  stop(&p);
}

/* Weights flipped back and forth between all-stable and all-canary while requests run:
 * every request is answered (a half-read set could be all zeros). */
Test(canary, weight_changes_under_a_request_loop_lose_nothing, .timeout = 90) {
  tp_t p;
  start(&p, 100, 0);
  pid_t child = fork();
  cr_assert_neq(child, -1);
  if (child == 0) { /* flips the weights 200 times */
    for (int i = 0; i < 200; i++) {
      char body[96];
      snprintf(body, sizeof(body), "{\"weights\": {\"stable\": %d, \"canary\": %d}}", i % 2 ? 0 : 100,
               i % 2 ? 100 : 0);
      th_resp_t r;
      if (th_http(p.admin, "POST", "/canary/app", NULL, body, &r) != 0 || r.status != 200) _exit(1);
      th_resp_free(&r);
    }
    _exit(0);
  }
  int seen[2] = {0}, failed = 0;
  for (int i = 0; i < 1500; i++) {
    th_resp_t r = {0};
    if (th_http(p.port, "GET", "/x", NULL, NULL, &r) != 0 || r.status != 200) {
      failed++;
    } else {
      seen[r.body[0] == 'C']++;
    }
    if (r.status) th_resp_free(&r);
  }
  int st = 0;
  cr_assert_eq(waitpid(child, &st, 0), child);
  cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the admin loop failed");
  cr_expect_eq(failed, 0, "%d of 1500 requests failed while the weights changed", failed);
  cr_expect(seen[0] > 0 && seen[1] > 0, "stable %d, canary %d", seen[0], seen[1]);
  stop(&p);
}

static void reload(tp_t *p, int ws, int wc, int n) {
  tp_rewrite(p, CFG, p->admin, p->port, ws, wc, ep_s, ep_c);
  kill(p->pid, SIGHUP);
  char want[96];
  snprintf(want, sizeof(want), "outrigger_config_reloads_total{result=\"ok\"} %d\n", n);
  for (int k = 0;; k++) {
    th_resp_t r;
    cr_assert_eq(th_http(p->admin, "GET", "/metrics", NULL, NULL, &r), 0);
    int done = strstr(r.body, want) != NULL;
    th_resp_free(&r);
    if (done) break;
    cr_assert_lt(k, 100, "reload %d did not happen", n);
    usleep(20000);
  }
}

static int canary_weight(tp_t *p) {
  th_resp_t r;
  cr_assert_eq(th_http(p->admin, "GET", "/canary", NULL, NULL, &r), 0);
  const char *at = strstr(r.body, "\"canary\":");
  int w = -1;
  cr_assert(at && sscanf(at, "\"canary\":%d", &w) == 1, "%.*s", (int)r.body_len, r.body);
  th_resp_free(&r);
  return w;
}

Test(canary, reload_keeps_run_time_weights_unless_the_split_changed, .timeout = 60) {
  tp_t p;
  start(&p, 90, 10);
  weights(&p, 75, 25);
  reload(&p, 90, 10, 1); /* the same split in the file: the admin's weights stay */
  cr_expect_eq(canary_weight(&p), 25);
  size_t n;
  char *log = th_read_file(p.log, &n);
  cr_expect(log && strstr(log, "route app of listener edge keeps the weights set at run time"), "%s",
            log ? log : "(no log)");
  free(log);
  reload(&p, 80, 20, 2); /* the file's split changed: its weights */
  cr_expect_eq(canary_weight(&p), 20);
  stop(&p);
}

/* ---- analysis: rollback, a healthy canary left alone, promotion --------------------- */

static void start_a(tp_t *p, int ws, int wc, const char *canary_status, const char *extra) {
  static char raw_c[128];
  snprintf(raw_c, sizeof(raw_c), "HTTP/1.1 %s\r\nContent-Length: 1\r\n\r\nC", canary_status);
  start_ups(raw_c);
  tp_prepare(p);
  tp_launch(p, CFG_A, p->admin, p->port, ws, wc, extra, ep_s, ep_c);
}

/* Requests for `ms` milliseconds; returns how many the canary answered. */
static int load(tp_t *p, int ms) {
  int64_t end = th_now_ms() + ms;
  int canary = 0;
  while (th_now_ms() < end) {
    th_resp_t r;
    cr_assert_eq(th_http(p->port, "GET", "/x", NULL, NULL, &r), 0);
    canary += r.body_len == 1 && r.body[0] == 'C';
    th_resp_free(&r);
  }
  return canary;
}

static char *canary_doc(tp_t *p) {
  th_resp_t r;
  cr_assert_eq(th_http(p->admin, "GET", "/canary", NULL, NULL, &r), 0);
  char *doc = strndup(r.body, r.body_len);
  th_resp_free(&r);
  return doc;
}

/* Load until GET /canary shows `state` (at most `secs` seconds). */
static char *until_state(tp_t *p, const char *state, int secs) {
  char want[64];
  snprintf(want, sizeof(want), "\"analysis\":{\"state\":\"%s\"", state);
  for (int i = 0; i < secs * 4; i++) {
    load(p, 250);
    char *doc = canary_doc(p);
    if (strstr(doc, want)) return doc;
    free(doc);
  }
  char *doc = canary_doc(p);
  cr_assert_fail("no state %s after %d s: %s", state, secs, doc);
  return doc;
}

Test(canary, analysis_rolls_back_a_failing_canary, .timeout = 60) {
  tp_t p;
  start_a(&p, 80, 20, "500 Internal Server Error", "");
  char *doc = until_state(&p, "rolled_back", 8);
  cr_expect(strstr(doc, "\"weights\":{\"stable\":80,\"canary\":0}"), "%s", doc);
  cr_expect(strstr(doc, "error rate 1.000 > max_error_rate 0.050"), "%s", doc);
  free(doc);
  cr_expect_eq(load(&p, 300), 0, "no request reaches a rolled-back canary");
  size_t n;
  char *log = th_read_file(p.log, &n);
  cr_expect(log &&
                strstr(log, "canary: route app of listener edge: canary rolled back to weight 0: error rate"),
            "%s", log ? log : "");
  free(log);
  th_resp_t m;
  cr_assert_eq(th_http(p.admin, "GET", "/metrics", NULL, NULL, &m), 0);
  cr_expect(strstr(m.body, "outrigger_canary_rollbacks_total{listener=\"edge\",route=\"app\"} 1\n"));
  cr_expect(
      strstr(m.body, "outrigger_canary_weight{listener=\"edge\",route=\"app\",cluster=\"canary\"} 0\n"));
  th_resp_free(&m);
  stop(&p);
}

Test(canary, analysis_leaves_a_healthy_canary_alone, .timeout = 60) {
  tp_t p;
  start_a(&p, 80, 20, "200 OK", "");
  cr_expect_gt(load(&p, 3500), 0);
  char *doc = canary_doc(&p);
  cr_expect(strstr(doc, "\"analysis\":{\"state\":\"ok\""), "%s", doc);
  cr_expect(strstr(doc, "\"weights\":{\"stable\":80,\"canary\":20}"), "%s", doc);
  cr_expect(strstr(doc, "\"verdict\":\"pass\""), "%s", doc);
  cr_expect(strstr(doc, "\"rollbacks\":0"), "%s", doc);
  free(doc);
  stop(&p);
}

Test(canary, promotion_steps_up_to_until, .timeout = 60) {
  tp_t p;
  start_a(&p, 90, 10, "200 OK", "          promote: { step: 20, every: 1s, until: 50 }\n");
  char *doc = until_state(&p, "promoted", 10);
  cr_expect(strstr(doc, "\"weights\":{\"stable\":50,\"canary\":50}"), "%s", doc);
  cr_expect(strstr(doc, "\"promotions\":2"), "10 -> 30 -> 50: %s", doc);
  free(doc);
  size_t n;
  char *log = th_read_file(p.log, &n);
  cr_expect(log && strstr(log, "canary promoted to 30% (analysis passed") &&
                strstr(log, "canary promoted to 50% (done"),
            "%s", log ? log : "");
  free(log);
  stop(&p);
}
