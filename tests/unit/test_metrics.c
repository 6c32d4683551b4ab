/* The /metrics counters (proxy/metrics.h): per-worker counting summed at scrape
 * time, status classes, the latency histogram, and the Prometheus text format.
 * Criterion runs each test in its own process, so each starts with an empty slot
 * registry. */
#include <criterion/criterion.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static px_metrics_t *w[2];
static px_buf_t out;

static void setup(void) {
  w[0] = calloc(1, sizeof(px_metrics_t));
  w[1] = calloc(1, sizeof(px_metrics_t));
  cr_assert(w[0] && w[1]);
  out = (px_buf_t){0};
}

static void teardown(void) {
  free(w[0]);
  free(w[1]);
  px_buf_free(&out);
}

TestSuite(metrics, .init = setup, .fini = teardown);

static const char *render(void) {
  out.len = 0;
  px_metrics_render(w, 2, &out);
  px_buf_reserve(&out, 1)[0] = '\0';
  return out.data;
}

/* The value of the sample line that starts with `series` (name and labels exactly
 * as rendered), or -1 when there is none. */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  return -1;
}

#define MS 1000000ull /* ns */
#define US 1000ull

Test(metrics, slots_are_stable_by_name) {
  int r1 = px_metrics_route_slot("in", "app");
  cr_expect_geq(r1, 0);
  cr_expect_eq(px_metrics_route_slot("in", "app"), r1, "a reload keeps the slot");
  cr_expect_neq(px_metrics_route_slot("in", "other"), r1);
  cr_expect_neq(px_metrics_route_slot("out", "app"), r1, "route names are per listener");
  int c1 = px_metrics_cluster_slot("c1");
  cr_expect_eq(px_metrics_cluster_slot("c1"), c1);
  cr_expect_neq(px_metrics_cluster_slot("c2"), c1);
  int l1 = px_metrics_listener_slot("in");
  cr_expect_eq(px_metrics_listener_slot("in"), l1);
  cr_expect_neq(px_metrics_listener_slot("out"), l1);
}

/* Cluster slots index counters unchecked on the hot path: past the registry's size
 * they used to be -1. The rest share one series. */
Test(metrics, clusters_past_the_registry_share_a_slot) {
  char name[32];
  int last = -1;
  for (int i = 0; i < PX_METRICS_MAX_CLUSTERS + 40; i++) {
    snprintf(name, sizeof(name), "c%d", i);
    int s = px_metrics_cluster_slot(name);
    cr_assert(s >= 0 && s < PX_METRICS_MAX_CLUSTERS, "%s got slot %d", name, s);
    cr_assert_eq(px_metrics_cluster_slot(name), s);
    last = s;
  }
  cr_expect_eq(last, PX_METRICS_MAX_CLUSTERS - 1);
  cr_expect_eq(px_metrics_cluster_slot("c0"), 0, "named slots stay");
  px_metric_inc(&w[0]->upstream[last][1], 3);
  cr_expect_eq(
      sample(render(), "outrigger_upstream_responses_total{cluster=\"(other clusters)\",class=\"2xx\"}"), 3);
}

Test(metrics, render_sums_workers) {
  int ls = px_metrics_listener_slot("in");
  int rs = px_metrics_route_slot("in", "app");
  for (int i = 0; i < 3; i++) px_metrics_request(w[0], ls, rs, -1, 200, 1 * MS);
  px_metrics_request(w[1], ls, rs, -1, 201, 1 * MS);
  px_metrics_request(w[1], ls, rs, -1, 204, 1 * MS);
  px_metrics_request(w[1], ls, rs, -1, 503, 1 * MS);
  const char *t = render();
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"app\",class=\"2xx\"}"), 5, "%s",
               t);
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"app\",class=\"5xx\"}"), 1, "%s",
               t);
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"app\",class=\"4xx\"}"), -1,
               "classes never seen are left out");
  cr_expect_eq(sample(t, "outrigger_request_duration_seconds_count{listener=\"in\"}"), 6, "%s", t);

  /* Counting more after a scrape shows in the next scrape. */
  px_metrics_request(w[0], ls, rs, -1, 502, 1 * MS);
  t = render();
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"app\",class=\"5xx\"}"), 2);
}

Test(metrics, status_classes) {
  int ls = px_metrics_listener_slot("in");
  int rs = px_metrics_route_slot("in", "r");
  static const struct {
    int status;
    const char *cls;
  } cases[] = {{100, "1xx"}, {199, "1xx"}, {200, "2xx"}, {299, "2xx"}, {301, "3xx"},
               {404, "4xx"}, {499, "4xx"}, {500, "5xx"}, {504, "5xx"}, {599, "5xx"}};
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    memset(w[0], 0, sizeof(*w[0]));
    px_metrics_request(w[0], ls, rs, -1, cases[i].status, 0);
    const char *t = render();
    char series[128];
    snprintf(series, sizeof(series), "outrigger_requests_total{listener=\"in\",route=\"r\",class=\"%s\"}",
             cases[i].cls);
    cr_expect_eq(sample(t, series), 1, "status %d not counted as %s:\n%s", cases[i].status, cases[i].cls, t);
  }
  /* Two routes of two listeners are two series. */
  memset(w[0], 0, sizeof(*w[0]));
  int rs2 = px_metrics_route_slot("out", "r");
  px_metrics_request(w[0], ls, rs, -1, 200, 0);
  px_metrics_request(w[1], px_metrics_listener_slot("out"), rs2, -1, 200, 0);
  px_metrics_request(w[1], px_metrics_listener_slot("out"), rs2, -1, 200, 0);
  const char *t = render();
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"r\",class=\"2xx\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"out\",route=\"r\",class=\"2xx\"}"), 2);
}

Test(metrics, histogram_buckets_cumulative) {
  int ls = px_metrics_listener_slot("in");
  int rs = px_metrics_route_slot("in", "app");
  px_metrics_request(w[0], ls, rs, -1, 200, 50 * US);
  px_metrics_request(w[1], ls, rs, -1, 200, 100 * US); /* on a bound: le is inclusive */
  px_metrics_request(w[0], ls, rs, -1, 200, 101 * US);
  px_metrics_request(w[1], ls, rs, -1, 200, 3 * MS);
  px_metrics_request(w[0], ls, rs, -1, 200, 10000 * MS); /* beyond the last bound */
  const char *t = render();
#define B(le) sample(t, "outrigger_request_duration_seconds_bucket{listener=\"in\",le=\"" le "\"}")
  cr_expect_eq(B("0.0001"), 2, "%s", t);
  cr_expect_eq(B("0.00025"), 3);
  cr_expect_eq(B("0.001"), 3);
  cr_expect_eq(B("0.0025"), 3);
  cr_expect_eq(B("0.005"), 4);
  cr_expect_eq(B("1"), 4);
  cr_expect_eq(B("5"), 4);
  cr_expect_eq(B("+Inf"), 5);
#undef B
  cr_expect_eq(sample(t, "outrigger_request_duration_seconds_count{listener=\"in\"}"), 5);
  double sum = sample(t, "outrigger_request_duration_seconds_sum{listener=\"in\"}");
  cr_expect(sum > 10.0032 && sum < 10.0033, "sum %f", sum);

  /* Every bucket line, in order: bounds increase, counts never decrease, +Inf last. */
  const char *prefix = "outrigger_request_duration_seconds_bucket{listener=\"in\",le=\"";
  double last_le = -1, last_v = -1;
  int n = 0, inf_seen = 0;
  for (const char *p = strstr(t, prefix); p; p = strstr(p + 1, prefix)) {
    const char *le = p + strlen(prefix);
    const char *v = strstr(le, "} ") + 2;
    cr_assert(!inf_seen, "a bucket after +Inf");
    if (strncmp(le, "+Inf\"", 5) == 0) {
      inf_seen = 1;
    } else {
      double b = strtod(le, NULL);
      cr_expect_gt(b, last_le);
      last_le = b;
    }
    double val = strtod(v, NULL);
    cr_expect_geq(val, last_v, "bucket le=%.10s is below the one before", le);
    last_v = val;
    n++;
  }
  cr_expect_eq(n, PX_HIST_NBUCKETS + 1);
  cr_expect(inf_seen);
  cr_expect_eq(last_v, 5, "+Inf equals the count");
}

/* The per-route and per-cluster histograms see the same duration as the listener's; the
 * listener's class counter also sees answers no route took. */
Test(metrics, route_and_cluster_histograms) {
  int ls = px_metrics_listener_slot("in");
  int rs = px_metrics_route_slot("in", "app"), rs2 = px_metrics_route_slot("in", "other");
  int cs = px_metrics_cluster_slot("c1");
  px_metrics_request(w[0], ls, rs, cs, 200, 50 * US);
  px_metrics_request(w[1], ls, rs, cs, 503, 3 * MS);
  px_metrics_request(w[1], ls, rs2, cs, 200, 20 * MS);
  px_metrics_request(w[0], ls, -1, -1, 404, 1 * MS); /* refused before a route took it */
  const char *t = render();
#define RB(route, le)                                                                                        \
  sample(t, "outrigger_route_request_duration_seconds_bucket{listener=\"in\",route=\"" route "\",le=\"" le   \
            "\"}")
#define CB(le) sample(t, "outrigger_cluster_request_duration_seconds_bucket{cluster=\"c1\",le=\"" le "\"}")
  cr_expect_eq(RB("app", "0.0001"), 1, "%s", t);
  cr_expect_eq(RB("app", "0.0025"), 1);
  cr_expect_eq(RB("app", "0.005"), 2);
  cr_expect_eq(RB("app", "+Inf"), 2);
  cr_expect_eq(RB("other", "0.01"), 0);
  cr_expect_eq(RB("other", "0.025"), 1);
  cr_expect_eq(CB("0.0001"), 1);
  cr_expect_eq(CB("0.005"), 2);
  cr_expect_eq(CB("0.025"), 3);
  cr_expect_eq(CB("+Inf"), 3);
#undef RB
#undef CB
  cr_expect_eq(sample(t, "outrigger_route_request_duration_seconds_count{listener=\"in\",route=\"app\"}"), 2);
  double sum = sample(t, "outrigger_route_request_duration_seconds_sum{listener=\"in\",route=\"app\"}");
  cr_expect(sum > 0.00304 && sum < 0.00306, "sum %f", sum);
  cr_expect_eq(sample(t, "outrigger_cluster_request_duration_seconds_count{cluster=\"c1\"}"), 3);
  cr_expect_eq(sample(t, "outrigger_request_duration_seconds_count{listener=\"in\"}"), 4);
  cr_expect_eq(sample(t, "outrigger_listener_requests_total{listener=\"in\",class=\"2xx\"}"), 2);
  cr_expect_eq(sample(t, "outrigger_listener_requests_total{listener=\"in\",class=\"5xx\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_listener_requests_total{listener=\"in\",class=\"4xx\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_requests_total{listener=\"in\",route=\"app\",class=\"4xx\"}"), -1,
               "the unrouted answer is the listener's alone");
}

/* Names come from the configuration: a quote, a backslash or a newline in one must not
 * break the exposition. */
Test(metrics, label_values_are_escaped) {
  px_buf_t b = {0};
  cr_expect_str_eq(px_metrics_esc(&b, "plain-name_1.x"), "plain-name_1.x");
  cr_expect_str_eq(px_metrics_esc(&b, "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  cr_expect_str_eq(px_metrics_esc(&b, ""), "");
  px_buf_free(&b);

  const char *ln = "in \"x\"", *rn = "r\\1\nz", *cn = "c\"1";
  int ls = px_metrics_listener_slot(ln), rs = px_metrics_route_slot(ln, rn), cs = px_metrics_cluster_slot(cn);
  px_metrics_request(w[0], ls, rs, cs, 200, 1 * MS);
  px_metric_inc(&w[1]->retries[cs][PX_RETRY_REASON_RESET], 2);
  px_metric_inc(&w[1]->idem[ls][PX_IDEMSTAT_REPLAYED], 1);
  const char *t = render();
  cr_expect_eq(
      sample(t, "outrigger_requests_total{listener=\"in \\\"x\\\"\",route=\"r\\\\1\\nz\",class=\"2xx\"}"), 1,
      "%s", t);
  cr_expect_eq(sample(t, "outrigger_listener_requests_total{listener=\"in \\\"x\\\"\",class=\"2xx\"}"), 1);
  cr_expect_eq(
      sample(
          t,
          "outrigger_route_request_duration_seconds_count{listener=\"in \\\"x\\\"\",route=\"r\\\\1\\nz\"}"),
      1);
  cr_expect_eq(sample(t, "outrigger_cluster_request_duration_seconds_count{cluster=\"c\\\"1\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_retries_total{cluster=\"c\\\"1\",reason=\"reset\"}"), 2);
  cr_expect_eq(sample(t, "outrigger_idempotency_replayed_total{listener=\"in \\\"x\\\"\"}"), 1);

  /* Every line is a comment or one whole sample whose label values hold only escapes. */
  regex_t re;
  cr_assert_eq(regcomp(&re,
                       "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                       "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\""
                       "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\[\\\\\"n])*\")*\\})? [-+.0-9eInf]+$",
                       REG_EXTENDED),
               0);
  char *copy = strdup(t);
  for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
    if (line[0] != '#') cr_expect_eq(regexec(&re, line, 0, NULL, 0), 0, "a broken line: \"%s\"", line);
  free(copy);
  regfree(&re);
}

Test(metrics, retries_denials_connections_idempotency) {
  int cs = px_metrics_cluster_slot("c1"), ls = px_metrics_listener_slot("in");
  px_metrics_listener_slot("out");
  px_metric_inc(&w[0]->retries[cs][PX_RETRY_REASON_GATEWAY_ERROR], 2);
  px_metric_inc(&w[1]->retries[cs][PX_RETRY_REASON_GATEWAY_ERROR], 1);
  px_metric_inc(&w[1]->retries[cs][PX_RETRY_REASON_CONNECT_FAILURE], 1);
  px_metric_inc(&w[0]->retries_denied[cs][PX_DENIED_BUDGET], 4);
  px_metric_inc(&w[1]->retries_denied[cs][PX_DENIED_MAX_RETRIES], 1);
  px_metric_inc(&w[0]->upconn[cs][PX_UPCONN_CREATED], 5);
  px_metric_inc(&w[1]->upconn[cs][PX_UPCONN_FAILED], 2);
  px_metric_inc(&w[1]->upconn[cs][PX_UPCONN_REUSED], 7);
  px_metric_inc(&w[0]->idem[ls][PX_IDEMSTAT_REPLAYED], 3);
  px_metric_inc(&w[1]->idem[ls][PX_IDEMSTAT_CONFLICT], 1);
  px_metric_inc(&w[1]->idem[ls][PX_IDEMSTAT_MISMATCH], 2);
  px_metric_inc(&w[0]->overflow[cs][1], 6);
  const char *t = render();
  cr_expect_eq(sample(t, "outrigger_retries_total{cluster=\"c1\",reason=\"gateway_error\"}"), 3, "%s", t);
  cr_expect_eq(sample(t, "outrigger_retries_total{cluster=\"c1\",reason=\"connect_failure\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_retries_total{cluster=\"c1\",reason=\"timeout\"}"), 0,
               "every reason listed");
  cr_expect_eq(sample(t, "outrigger_retries_denied_total{cluster=\"c1\",limit=\"budget\"}"), 4);
  cr_expect_eq(sample(t, "outrigger_retries_denied_total{cluster=\"c1\",limit=\"max_retries\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_upstream_connections_created_total{cluster=\"c1\"}"), 5);
  cr_expect_eq(sample(t, "outrigger_upstream_connect_failures_total{cluster=\"c1\"}"), 2);
  cr_expect_eq(sample(t, "outrigger_upstream_connections_reused_total{cluster=\"c1\"}"), 7);
  cr_expect_eq(sample(t, "outrigger_overflow_total{cluster=\"c1\",limit=\"max_pending\"}"), 6);
  cr_expect_eq(sample(t, "outrigger_overflow_total{cluster=\"c1\",limit=\"max_requests\"}"), 0);
  cr_expect_eq(sample(t, "outrigger_idempotency_replayed_total{listener=\"in\"}"), 3);
  cr_expect_eq(sample(t, "outrigger_idempotency_conflicts_total{listener=\"in\"}"), 1);
  cr_expect_eq(sample(t, "outrigger_idempotency_mismatches_total{listener=\"in\"}"), 2);
  cr_expect_eq(sample(t, "outrigger_idempotency_replayed_total{listener=\"out\"}"), -1,
               "a listener without idempotency has no series");
}

Test(metrics, errors_connections_upstream) {
  px_metric_inc(&w[0]->errors[PX_ERR_NO_ROUTE], 2);
  px_metric_inc(&w[1]->errors[PX_ERR_NO_ROUTE], 1);
  px_metric_inc(&w[1]->errors[PX_ERR_OVERLOADED], 4);
  px_metric_inc(&w[0]->conns_accepted, 5);
  px_metric_inc(&w[1]->conns_accepted, 2);
  px_metric_inc(&w[0]->conns_closed, 1);
  px_metric_inc(&w[1]->conns_closed, 2);
  int cs = px_metrics_cluster_slot("shortener-v1");
  px_metric_inc(&w[0]->upstream[cs][1], 7);
  px_metric_inc(&w[1]->upstream[cs][4], 3);
  px_metric_inc(&w[1]->upstream_fail[cs], 2);
  const char *t = render();
  cr_expect_eq(sample(t, "outrigger_errors_total{kind=\"no_route\"}"), 3, "%s", t);
  cr_expect_eq(sample(t, "outrigger_errors_total{kind=\"overloaded\"}"), 4);
  cr_expect_eq(sample(t, "outrigger_errors_total{kind=\"bad_request\"}"), 0, "every kind is listed, 0 too");
  cr_expect_eq(sample(t, "outrigger_downstream_connections_total"), 7);
  cr_expect_eq(sample(t, "outrigger_downstream_connections_active"), 4);
  cr_expect_eq(sample(t, "outrigger_upstream_responses_total{cluster=\"shortener-v1\",class=\"2xx\"}"), 7);
  cr_expect_eq(sample(t, "outrigger_upstream_responses_total{cluster=\"shortener-v1\",class=\"5xx\"}"), 3);
  cr_expect_eq(sample(t, "outrigger_upstream_failures_total{cluster=\"shortener-v1\"}"), 2);
}

Test(metrics, error_kinds_match_the_spec) {
  cr_expect_str_eq(px_errkind_name(PX_ERR_NO_ROUTE), "no_route");
  cr_expect_eq(px_errkind_status(PX_ERR_NO_ROUTE), 404);
  cr_expect_eq(px_errkind_status(PX_ERR_BAD_REQUEST), 400);
  cr_expect_eq(px_errkind_status(PX_ERR_REQUEST_TIMEOUT), 408);
  cr_expect_eq(px_errkind_status(PX_ERR_BODY_TOO_LARGE), 413);
  cr_expect_eq(px_errkind_status(PX_ERR_HEADERS_TOO_LARGE), 431);
  cr_expect_eq(px_errkind_status(PX_ERR_CONNECT_FAILURE), 502);
  cr_expect_eq(px_errkind_status(PX_ERR_NO_ENDPOINT), 503);
  cr_expect_eq(px_errkind_status(PX_ERR_UPSTREAM_TIMEOUT), 504);
}

Test(metrics, missing_slots_are_not_counted) {
  /* A full registry hands out -1: the request is still served, just not counted there. */
  px_metrics_request(w[0], -1, -1, -1, 200, 1 * MS);
  int ls = px_metrics_listener_slot("in");
  px_metrics_request(w[0], ls, -1, -1, 200, 1 * MS);
  const char *t = render();
  cr_expect_null(strstr(t, "outrigger_requests_total{"), "%s", t);
  cr_expect_eq(sample(t, "outrigger_request_duration_seconds_count{listener=\"in\"}"), 1);
}

/* Family of a sample name: histograms' _bucket/_sum/_count belong to the base name
 * when that name was declared a histogram. */
static void family_of(const char *name, size_t n, char *fam, size_t cap, const char *histos) {
  static const char *const sfx[] = {"_bucket", "_sum", "_count"};
  snprintf(fam, cap, "%.*s", (int)n, name);
  for (size_t i = 0; i < PX_ARRAY_SIZE(sfx); i++) {
    size_t s = strlen(sfx[i]);
    if (n > s && memcmp(name + n - s, sfx[i], s) == 0) {
      char base[256];
      snprintf(base, sizeof(base), " %.*s ", (int)(n - s), name);
      if (strstr(histos, base)) snprintf(fam, cap, "%.*s", (int)(n - s), name);
    }
  }
}

Test(metrics, prometheus_text_syntax) {
  int ls = px_metrics_listener_slot("in");
  px_metrics_listener_slot("out");
  int rs = px_metrics_route_slot("in", "app");
  int cs = px_metrics_cluster_slot("c1");
  px_metrics_request(w[0], ls, rs, cs, 200, 2 * MS);
  px_metrics_request(w[1], ls, rs, cs, 404, 20 * MS);
  px_metrics_request(w[1], ls, -1, -1, 400, 1 * MS);
  px_metric_inc(&w[0]->retries[cs][PX_RETRY_REASON_RESET], 1);
  px_metric_inc(&w[0]->idem[ls][PX_IDEMSTAT_CONFLICT], 1);
  px_metric_inc(&w[1]->faults[rs][0], 1);
  px_metric_inc(&w[1]->upstream[cs][1], 1);
  const char *t = render();
  cr_assert_gt(out.len, 0);
  cr_expect_eq(t[out.len - 1], '\n', "the exposition ends with a newline");

  regex_t sample_re, help_re, type_re;
  cr_assert_eq(
      regcomp(&sample_re,
              "^([a-zA-Z_:][a-zA-Z0-9_:]*)"
              "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\\n]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\\n]*\")*\\})?"
              " (-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|-Inf|NaN)$",
              REG_EXTENDED),
      0);
  cr_assert_eq(regcomp(&help_re, "^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) [^\n]+$", REG_EXTENDED), 0);
  cr_assert_eq(regcomp(&type_re,
                       "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
                       REG_EXTENDED),
               0);

  /* " name name2 ... " lists, so that strstr(" name ") finds whole names. */
  char helps[4096] = " ", types[4096] = " ", histos[4096] = " ", done[4096] = " ";
  char current[256] = "", pending_help[256] = "";
  int nsamples = 0;
  char *copy = strdup(t);
  for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    regmatch_t g[8];
    char name[256], key[260];
    if (regexec(&help_re, line, 8, g, 0) == 0) {
      snprintf(name, sizeof(name), "%.*s", (int)(g[1].rm_eo - g[1].rm_so), line + g[1].rm_so);
      snprintf(key, sizeof(key), " %s ", name);
      cr_expect_null(strstr(helps, key), "HELP for %s twice", name);
      strcat(strcat(helps, name), " ");
      snprintf(pending_help, sizeof(pending_help), "%s", name);
    } else if (regexec(&type_re, line, 8, g, 0) == 0) {
      snprintf(name, sizeof(name), "%.*s", (int)(g[1].rm_eo - g[1].rm_so), line + g[1].rm_so);
      snprintf(key, sizeof(key), " %s ", name);
      cr_expect_null(strstr(types, key), "TYPE for %s twice", name);
      cr_expect_str_eq(pending_help, name, "TYPE %s not right after its HELP", name);
      strcat(strcat(types, name), " ");
      if (strncmp(line + g[2].rm_so, "histogram", 9) == 0) strcat(strcat(histos, name), " ");
      if (current[0]) strcat(strcat(done, current), " ");
      snprintf(current, sizeof(current), "%s", name);
    } else if (regexec(&sample_re, line, 8, g, 0) == 0) {
      char fam[256];
      family_of(line + g[1].rm_so, (size_t)(g[1].rm_eo - g[1].rm_so), fam, sizeof(fam), histos);
      snprintf(key, sizeof(key), " %s ", fam);
      cr_expect(strstr(types, key) != NULL, "sample of %s before its TYPE: %s", fam, line);
      cr_expect_str_eq(fam, current, "sample of %s inside the block of %s: %s", fam, current, line);
      cr_expect_null(strstr(done, key), "family %s appears in two places", fam);
      nsamples++;
    } else {
      cr_expect(0, "not a valid exposition line: \"%s\"", line);
    }
  }
  free(copy);
  regfree(&sample_re);
  regfree(&help_re);
  regfree(&type_re);
  cr_expect_gt(nsamples, 20);
  /* The families a dashboard relies on, each declared once with its type. */
  cr_expect(strstr(t, "# TYPE outrigger_requests_total counter\n"));
  cr_expect(strstr(t, "# TYPE outrigger_request_duration_seconds histogram\n"));
  cr_expect(strstr(t, "# TYPE outrigger_errors_total counter\n"));
  cr_expect(strstr(t, "# TYPE outrigger_downstream_connections_active gauge\n"));
  cr_expect(strstr(histos, " outrigger_request_duration_seconds "));
  cr_expect(strstr(histos, " outrigger_route_request_duration_seconds "));
  cr_expect(strstr(histos, " outrigger_cluster_request_duration_seconds "));
  cr_expect(strstr(t, "# TYPE outrigger_listener_requests_total counter\n"));
  cr_expect(strstr(t, "# TYPE outrigger_retries_total counter\n"));
  cr_expect(strstr(t, "# TYPE outrigger_upstream_connections_reused_total counter\n"));
  cr_expect(strstr(t, "# TYPE outrigger_idempotency_conflicts_total counter\n"));
  cr_expect(strstr(t, "outrigger_request_duration_seconds_bucket{listener=\"out\",le=\"+Inf\"} 0\n"),
            "a listener with no requests yet still has its histogram");
}
