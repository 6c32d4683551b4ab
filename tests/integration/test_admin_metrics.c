/* GET /metrics of the real binary after traffic that touches every family (issue 20):
 * the counts land where the events happened (per listener, route, cluster, endpoint),
 * each family has one HELP and one TYPE line before its samples, no series is printed
 * twice, label values are escaped (a route is named with a quote and a backslash), and
 * `promtool check metrics` (Debian's prometheus package) accepts the whole exposition,
 * its lint included. Without promtool that check is skipped with a message. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core.h"
#include "harness_proxy.h"

#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
#define R500 "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1\r\n\r\nC"
#define ROK "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nS"

/* %d admin, %d port, %s extra route lines, then the endpoints: web, flaky (dead, live),
 * bad, gw, slow, stable, canary. */
#define CFG                                                                                                  \
  "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn }\n"                                     \
  "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"                                                  \
  "    idempotency: { enabled: true }\n"                                                                     \
  "    routes:\n"                                                                                            \
  "      - { name: ok, match: { prefix: /ok }, cluster: web }\n"                                             \
  "      - { name: 'q\"uo\\te', match: { prefix: /q }, cluster: web }\n"                                     \
  "      - { name: fault, match: { prefix: /fault }, cluster: web,\n"                                        \
  "          fault: { abort: { status: 418, percent: 100 } } }\n"                                            \
  "      - { name: flaky, match: { prefix: /flaky }, cluster: flaky }\n"                                     \
  "      - { name: bad, match: { prefix: /bad }, cluster: bad, retry: { attempts: 2, on: [5xx] } }\n"        \
  "      - { name: gw, match: { prefix: /gw }, cluster: gw, retry: { attempts: 2, on: [gateway-error] } }\n" \
  "      - { name: slow, match: { prefix: /slow }, cluster: slow }\n"                                        \
  "      - name: split\n        match: { prefix: /split }\n"                                                 \
  "        split:\n          - { cluster: stable, weight: 50 }\n"                                            \
  "          - { cluster: canary, weight: 50, canary: true }\n"                                              \
  "        canary: { analysis: { interval: 1s, min_requests: 5 } }\n"                                        \
  "%s"                                                                                                       \
  "clusters:\n"                                                                                              \
  "  - { name: web, endpoints: [%s] }\n"                                                                     \
  "  - { name: flaky, endpoints: [%s, %s] }\n"                                                               \
  "  - { name: bad, endpoints: [%s], circuit_breaker: { consecutive_failures: 3, open_duration: 30s } }\n"   \
  "  - { name: gw, endpoints: [%s], limits: { max_retries: 0 } }\n"                                          \
  "  - { name: slow, endpoints: [%s], limits: { max_requests: 1 } }\n"                                       \
  "  - { name: stable, endpoints: [%s], health_check: { interval: 200ms, timeout: 100ms } }\n"               \
  "  - { name: canary, endpoints: [%s] }\n"

typedef struct {
  fu_t *web, *live, *bad, *gw, *slow, *stable, *canary;
  char ep[8][64]; /* web, dead, live, bad, gw, slow, stable, canary */
  tp_t p;
} world_t;

static void write_cfg(world_t *x, int launch, const char *extra) {
  if (launch)
    tp_launch(&x->p, CFG, x->p.admin, x->p.port, extra, x->ep[0], x->ep[1], x->ep[2], x->ep[3], x->ep[4],
              x->ep[5], x->ep[6], x->ep[7]);
  else
    tp_rewrite(&x->p, CFG, x->p.admin, x->p.port, extra, x->ep[0], x->ep[1], x->ep[2], x->ep[3], x->ep[4],
               x->ep[5], x->ep[6], x->ep[7]);
}

static void start(world_t *x) {
  x->web = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  x->live = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  x->bad = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = R503});
  x->gw = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = R503});
  x->slow = fu_start(&(fu_opts_t){.mode = FU_SLOW, .delay_ms = 700});
  x->stable = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = ROK});
  x->canary = fu_start(&(fu_opts_t){.mode = FU_RAW, .raw = R500});
  fu_t *ups[8] = {x->web, NULL, x->live, x->bad, x->gw, x->slow, x->stable, x->canary};
  for (int i = 0; i < 8; i++)
    if (ups[i])
      snprintf(x->ep[i], sizeof(x->ep[i]), "%s", tp_ep(ups[i]));
    else /* nothing listens there: every connect is refused */
      snprintf(x->ep[i], sizeof(x->ep[i]), "127.0.0.1:%d", th_free_port());
  tp_prepare(&x->p);
  write_cfg(x, 1, "");
}

static void stop(world_t *x) {
  cr_assert_eq(tp_stop(&x->p), 0);
  fu_t *ups[] = {x->web, x->live, x->bad, x->gw, x->slow, x->stable, x->canary};
  for (size_t i = 0; i < PX_ARRAY_SIZE(ups); i++) fu_stop(ups[i]);
}

static char *scrape(tp_t *p) {
  th_resp_t r;
  cr_assert_eq(th_http(p->admin, "GET", "/metrics", NULL, NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(th_header(&r, "content-type"), "text/plain; version=0.0.4; charset=utf-8");
  char *text = strndup(r.body, r.body_len);
  th_resp_free(&r);
  return text;
}

/* The value of the sample whose name and labels are exactly `series`, or -1. */
static double val(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  return -1;
}

static int status_of(tp_t *p, const char *method, const char *path, const char *headers, const char *body) {
  th_resp_t r;
  cr_assert_eq(th_http(p->port, method, path, headers, body, &r), 0, "%s %s", method, path);
  int st = r.status;
  th_resp_free(&r);
  return st;
}

enum { N_OK = 12, N_FLAKY = 6 };

/* Traffic for every family; the counts the checks rely on are in the comments. */
static void drive(world_t *x) {
  tp_t *p = &x->p;
  /* Route ok, cluster web: N_OK answers on pooled connections. */
  for (int i = 0; i < N_OK; i++) cr_assert_eq(status_of(p, "GET", "/ok", NULL, NULL), 200);
  /* A name that needs escaping. */
  cr_assert_eq(status_of(p, "GET", "/q", NULL, NULL), 200);
  /* Refused before a route took it: the listener's alone. */
  cr_assert_eq(status_of(p, "GET", "/nowhere", NULL, NULL), 404);
  /* A fault. */
  cr_assert_eq(status_of(p, "GET", "/fault", NULL, NULL), 418);
  /* Inbound idempotency on route ok: kept, replayed, then the key with another body. */
  const char *key = "Idempotency-Key: \"k-1\"\r\n";
  cr_assert_eq(status_of(p, "POST", "/ok", key, "{}"), 200);
  th_resp_t r;
  cr_assert_eq(th_http(p->port, "POST", "/ok", key, "{}", &r), 0);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(th_header(&r, "idempotent-replayed"), "true");
  th_resp_free(&r);
  cr_assert_eq(status_of(p, "POST", "/ok", key, "{\"other\":1}"), 422);
  /* Connect failures, each retried on the live endpoint. */
  for (int i = 0; i < N_FLAKY; i++) cr_assert_eq(status_of(p, "GET", "/flaky", NULL, NULL), 200);
  /* Two 503s retried (on: [5xx]); the third failure in a row opens the breaker, so the
   * second request's retry and the third request find no endpoint (circuit_open). */
  for (int i = 0; i < 3; i++) cr_assert_eq(status_of(p, "GET", "/bad", NULL, NULL), 503);
  /* A retry limits.max_retries (0) refuses. */
  cr_assert_eq(status_of(p, "GET", "/gw", NULL, NULL), 503);
  /* Route slow (max_requests 1): a keyed POST in flight, its key again (409), then a
   * request past the limit (503 overloaded). */
  int a = th_connect(p->port);
  const char *first = "POST /slow HTTP/1.1\r\nHost: x\r\nIdempotency-Key: \"k-2\"\r\n"
                      "Content-Length: 1\r\n\r\nx";
  cr_assert_eq(th_send_all(a, first, strlen(first)), 0);
  for (int k = 0; k < 200 && fu_requests(x->slow) == 0; k++) usleep(10000);
  cr_assert_eq(fu_requests(x->slow), 1, "the first request never reached the upstream");
  cr_assert_eq(status_of(p, "POST", "/slow", "Idempotency-Key: \"k-2\"\r\n", "x"), 409);
  cr_assert_eq(th_http(p->port, "GET", "/slow", NULL, NULL, &r), 0);
  tp_assert_problem(&r, 503, "overloaded");
  th_resp_free(&r);
  cr_assert_eq(th_read_response(a, &r, 5000), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  th_close(a);
  /* The canary answers 500: its analysis (1 s intervals) rolls it back. */
  for (int i = 0;; i++) {
    for (int k = 0; k < 20; k++) status_of(p, "GET", "/split", NULL, NULL);
    char *m = scrape(p);
    double rb = val(m, "outrigger_canary_rollbacks_total{listener=\"edge\",route=\"split\"}");
    free(m);
    if (rb == 1) break;
    cr_assert_lt(i, 40, "the canary was never rolled back");
    usleep(100000);
  }
  /* A reload that applies, then one that is rejected. */
  write_cfg(x, 0, "      - { name: extra, match: { prefix: /extra }, cluster: web }\n");
  kill(p->pid, SIGHUP);
  for (int k = 0; tp_metric(p, "outrigger_config_reloads_total{result=\"ok\"} ") != 1; k++) {
    cr_assert_lt(k, 200, "the reload never applied");
    usleep(10000);
  }
  cr_assert_eq(status_of(p, "GET", "/extra", NULL, NULL), 200);
  tp_rewrite(p, "listeners: [\n");
  kill(p->pid, SIGHUP);
  for (int k = 0; tp_metric(p, "outrigger_config_reloads_total{result=\"rejected\"} ") != 1; k++) {
    cr_assert_lt(k, 200, "the broken file was never refused");
    usleep(10000);
  }
  /* The health check has probed by now (every 200 ms). */
}

/* Every line a HELP, a TYPE or a sample; each family's HELP then TYPE once, before all
 * of its samples, which stay together; no series twice. Returns the families seen. */
static int check_structure(const char *text) {
  char *copy = strdup(text);
  size_t cap = 4096, nseries = 0, nfam = 0;
  char **series = calloc(cap, sizeof(char *)), **fams = calloc(cap, sizeof(char *));
  char *types = calloc(cap, 1);
  char current[256] = "", help[256] = "";
  for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char name[256];
    if (strncmp(line, "# HELP ", 7) == 0) {
      cr_assert_eq(sscanf(line + 7, "%255s", name), 1);
      for (size_t i = 0; i < nfam; i++) cr_assert_str_neq(fams[i], name, "HELP for %s twice", name);
      snprintf(help, sizeof(help), "%s", name);
    } else if (strncmp(line, "# TYPE ", 7) == 0) {
      char type[32];
      cr_assert_eq(sscanf(line + 7, "%255s %31s", name, type), 2);
      cr_assert_str_eq(help, name, "TYPE %s without its HELP just before", name);
      cr_assert(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 || strcmp(type, "histogram") == 0,
                "%s", line);
      cr_assert_lt(nfam, cap);
      types[nfam] = type[0];
      fams[nfam++] = strdup(name);
      snprintf(current, sizeof(current), "%s", name);
      help[0] = '\0';
    } else {
      cr_assert(line[0] != '#', "a stray comment: %s", line);
      cr_assert_gt(nfam, 0, "a sample before any TYPE: %s", line);
      const char *sp = strrchr(line, ' ');
      cr_assert(sp && sp[1], "a sample without a value: %s", line);
      size_t n = strcspn(line, "{ ");
      snprintf(name, sizeof(name), "%.*s", (int)n, line);
      int ok = strcmp(name, current) == 0;
      if (!ok && types[nfam - 1] == 'h') /* a histogram's _bucket, _sum and _count */
        for (const char *sfx = "_bucket\0_sum\0_count\0"; *sfx && !ok; sfx += strlen(sfx) + 1)
          ok = strlen(name) == strlen(current) + strlen(sfx) &&
               strncmp(name, current, strlen(current)) == 0 && strcmp(name + strlen(current), sfx) == 0;
      cr_assert(ok, "sample outside its family's block (in %s): %s", current, line);
      cr_assert(strncmp(name, "outrigger_", 10) == 0, "%s", line);
      char *s = strndup(line, (size_t)(sp - line));
      for (size_t i = 0; i < nseries; i++) cr_assert_str_neq(series[i], s, "series twice: %s", s);
      if (nseries == cap) {
        cap *= 2;
        series = realloc(series, cap * sizeof(char *));
      }
      series[nseries++] = s;
    }
  }
  for (size_t i = 0; i < nseries; i++) free(series[i]);
  for (size_t i = 0; i < nfam; i++) free(fams[i]);
  free(series);
  free(fams);
  free(types);
  free(copy);
  return (int)nfam;
}

Test(admin_metrics, every_family_counts_where_it_happened, .timeout = 90) {
  world_t x;
  start(&x);
  drive(&x);
  char *m = scrape(&x.p);
  int nfam = check_structure(m);
  cr_log_info("%d families, %zu bytes", nfam, strlen(m));
  char s[512];
#define V(series) val(m, series)
  /* Answers: the listener's include the unrouted 404; the route's and its cluster's
   * histograms count what the route took. Route ok: N_OK GETs, the POST, its replay and
   * the 422. */
  cr_expect_eq(V("outrigger_requests_total{listener=\"edge\",route=\"ok\",class=\"2xx\"}"), N_OK + 2, "%s",
               m);
  cr_expect_eq(V("outrigger_requests_total{listener=\"edge\",route=\"ok\",class=\"4xx\"}"), 1);
  cr_expect_eq(V("outrigger_route_request_duration_seconds_count{listener=\"edge\",route=\"ok\"}"), N_OK + 3);
  cr_expect_eq(
      V("outrigger_route_request_duration_seconds_bucket{listener=\"edge\",route=\"ok\",le=\"+Inf\"}"),
      N_OK + 3);
  cr_expect_eq(V("outrigger_requests_total{listener=\"edge\",route=\"q\\\"uo\\\\te\",class=\"2xx\"}"), 1,
               "the route named q\"uo\\te, escaped");
  cr_expect_eq(V("outrigger_requests_total{listener=\"edge\",route=\"fault\",class=\"4xx\"}"), 1);
  cr_expect_eq(V("outrigger_faults_total{listener=\"edge\",route=\"fault\",kind=\"abort\"}"), 1);
  /* web: routes ok, q, fault, extra. */
  cr_expect_eq(V("outrigger_cluster_request_duration_seconds_count{cluster=\"web\"}"), N_OK + 3 + 1 + 1 + 1);
  cr_expect_eq(V("outrigger_errors_total{kind=\"no_route\"}"), 1);
  double lsum = 0;
  for (int c = 1; c <= 5; c++) {
    snprintf(s, sizeof(s), "outrigger_listener_requests_total{listener=\"edge\",class=\"%dxx\"}", c);
    if (V(s) > 0) lsum += V(s);
  }
  cr_expect_eq(lsum, V("outrigger_request_duration_seconds_count{listener=\"edge\"}"),
               "the listener's classes sum to its histogram's count");
  cr_expect_eq(V("outrigger_listener_requests_total{listener=\"edge\",class=\"4xx\"}"), 4,
               "404 (no route), 418 (fault), 422 and 409 (idempotency)");
  cr_expect_gt(V("outrigger_listener_requests_total{listener=\"edge\",class=\"5xx\"}"), 0);

  /* Upstream connections: each try to web had a new or a pooled one. */
  double created = V("outrigger_upstream_connections_created_total{cluster=\"web\"}");
  double reused = V("outrigger_upstream_connections_reused_total{cluster=\"web\"}");
  cr_expect_gt(reused, 0, "no pooled connection was reused");
  cr_expect_eq(created + reused, fu_requests(x.web), "created %g + reused %g, %d tries", created, reused,
               fu_requests(x.web));
  cr_expect_eq(V("outrigger_upstream_connect_failures_total{cluster=\"web\"}"), 0);
  double refused = V("outrigger_upstream_connect_failures_total{cluster=\"flaky\"}");
  cr_expect_geq(refused, 1);
  cr_expect_eq(V("outrigger_retries_total{cluster=\"flaky\",reason=\"connect_failure\"}"), refused,
               "each refused connect retried once");
  cr_expect_eq(V("outrigger_upstream_failures_total{cluster=\"flaky\"}"), refused);
  cr_expect_eq(fu_requests(x.live), N_FLAKY);
  cr_expect_geq(V("outrigger_upstream_connections_active{cluster=\"web\"}"), 1, "the pool keeps some");

  /* Retries and the breaker of bad's endpoint. */
  cr_expect_eq(V("outrigger_retries_total{cluster=\"bad\",reason=\"5xx\"}"), 2);
  cr_expect_eq(V("outrigger_retries_total{cluster=\"bad\",reason=\"gateway_error\"}"), 0);
  cr_expect_eq(fu_requests(x.bad), 3);
  cr_expect_eq(V("outrigger_upstream_responses_total{cluster=\"bad\",class=\"5xx\"}"), 3);
  snprintf(s, sizeof(s), "outrigger_circuit_breaker_state{cluster=\"bad\",endpoint=\"%s\"}", x.ep[3]);
  cr_expect_eq(V(s), 1, "not open");
  snprintf(
      s, sizeof(s),
      "outrigger_circuit_breaker_transitions_total{cluster=\"bad\",endpoint=\"%s\",cause=\"consecutive_failures\"}",
      x.ep[3]);
  cr_expect_eq(V(s), 1);
  snprintf(s, sizeof(s), "outrigger_circuit_breaker_suppressed_opens_total{cluster=\"bad\",endpoint=\"%s\"}",
           x.ep[3]);
  cr_expect_eq(V(s), 0);
  cr_expect_eq(V("outrigger_errors_total{kind=\"circuit_open\"}"), 2);
  cr_expect_eq(V("outrigger_retries_denied_total{cluster=\"gw\",limit=\"max_retries\"}"), 1);
  cr_expect_eq(V("outrigger_retries_denied_total{cluster=\"gw\",limit=\"budget\"}"), 0);
  cr_expect_eq(V("outrigger_retries_total{cluster=\"gw\",reason=\"gateway_error\"}"), 0);

  /* Limits and idempotency. */
  cr_expect_eq(V("outrigger_overflow_total{cluster=\"slow\",limit=\"max_requests\"}"), 1);
  cr_expect_eq(V("outrigger_overflow_total{cluster=\"slow\",limit=\"max_pending\"}"), 0);
  cr_expect_eq(V("outrigger_idempotency_replayed_total{listener=\"edge\"}"), 1);
  cr_expect_eq(V("outrigger_idempotency_conflicts_total{listener=\"edge\"}"), 1);
  cr_expect_eq(V("outrigger_idempotency_mismatches_total{listener=\"edge\"}"), 1);
  cr_expect_geq(V("outrigger_idempotency_stored_total{listener=\"edge\"}"), 1);
  cr_expect_gt(V("outrigger_idempotency_bytes{listener=\"edge\"}"), 0);
  cr_expect_geq(V("outrigger_idempotency_entries{listener=\"edge\",state=\"completed\"}"), 1);
  cr_expect_eq(V("outrigger_idempotency_evictions_total{listener=\"edge\"}"), 0);

  /* The canary: rolled back by a failed analysis. */
  cr_expect_eq(V("outrigger_canary_weight{listener=\"edge\",route=\"split\",cluster=\"canary\"}"), 0);
  cr_expect_eq(V("outrigger_canary_share_ratio{listener=\"edge\",route=\"split\"}"), 0);
  cr_expect_eq(V("outrigger_canary_analysis_state{listener=\"edge\",route=\"split\"}"), 2);
  cr_expect_geq(V("outrigger_canary_analyses_total{listener=\"edge\",route=\"split\",verdict=\"fail\"}"), 1);
  cr_expect_geq(V("outrigger_split_requests_total{listener=\"edge\",route=\"split\",cluster=\"canary\"}"), 5);
  cr_expect_geq(V("outrigger_split_requests_total{listener=\"edge\",route=\"split\",cluster=\"stable\"}"), 5);
  snprintf(s, sizeof(s), "outrigger_endpoint_healthy{cluster=\"stable\",endpoint=\"%s\"}", x.ep[6]);
  cr_expect_eq(V(s), 1);

  /* The process. */
  cr_expect_eq(V("outrigger_config_reloads_total{result=\"ok\"}"), 1);
  cr_expect_eq(V("outrigger_config_reloads_total{result=\"rejected\"}"), 1);
  cr_expect_eq(V("outrigger_config_generation"), 2);
  cr_expect_eq(V("outrigger_build_info{version=\"" PX_VERSION "\"}"), 1);
  cr_expect_gt(V("outrigger_start_time_seconds"), 1.6e9);
  cr_expect_eq(V("outrigger_workers"), 2);
  cr_expect_eq(V("outrigger_draining"), 0);
  cr_expect_geq(V("outrigger_downstream_connections_total"), N_OK);
#undef V
  free(m);
  stop(&x);
}

/* The path of `promtool`, or NULL when it is not in PATH. */
static char *promtool_path(void) {
  const char *path = getenv("PATH");
  if (!path) return NULL;
  char *dirs = strdup(path), *found = NULL;
  for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    char cand[1024];
    snprintf(cand, sizeof(cand), "%s/promtool", d);
    if (access(cand, X_OK) == 0) found = strdup(cand);
  }
  free(dirs);
  return found;
}

Test(admin_metrics, promtool_accepts_the_exposition, .timeout = 90) {
  char *promtool = promtool_path();
  if (!promtool) {
    cr_log_warn("promtool is not in PATH: skipping `promtool check metrics` (it comes with Debian's "
                "prometheus package, which scripts/setup.sh installs)");
    cr_skip_test("promtool not installed");
  }
  world_t x;
  start(&x);
  drive(&x);
  char *m = scrape(&x.p);
  char file[600], out[600], cmd[2048];
  snprintf(file, sizeof(file), "%s/metrics.txt", x.p.dir);
  snprintf(out, sizeof(out), "%s/promtool.out", x.p.dir);
  FILE *f = fopen(file, "w");
  cr_assert(f);
  fputs(m, f);
  fclose(f);
  snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s' > '%s' 2>&1", promtool, file, out);
  int rc = system(cmd);
  char *said = th_read_file(out, NULL);
  cr_log_info("promtool check metrics: exit %d, %zu bytes of output%s%s",
              WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, said ? strlen(said) : 0, said && *said ? ": " : "",
              said ? said : "");
  cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "promtool failed (%d): %s", rc, said ? said : "");
  cr_expect(said && said[0] == '\0', "promtool found problems:\n%s", said ? said : "(no output file)");
  free(said);
  free(m);
  free(promtool);
  stop(&x);
}
