#include "metrics.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char *const errkind_names[] = {
#define XX(e, name, status) name,
    PX_ERRKIND_MAP(XX)
#undef XX
};
static const int errkind_status[] = {
#define XX(e, name, status) status,
    PX_ERRKIND_MAP(XX)
#undef XX
};

const char *px_errkind_name(px_errkind_t k) { return errkind_names[k]; }
int px_errkind_status(px_errkind_t k) { return errkind_status[k]; }

/* Upper bounds of the latency histogram, in microseconds. */
static const uint64_t hist_bounds_us[PX_HIST_NBUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

/* The slot registry: append-only name tables, written by the main thread while it
 * builds a snapshot and read by scrapes (also on the main thread). */
static uv_mutex_t reg_mu;
static uv_once_t reg_once = UV_ONCE_INIT;
static char *route_names[PX_METRICS_MAX_ROUTES][2];
static int nroutes;
static char *cluster_names[PX_METRICS_MAX_CLUSTERS];
static int nclusters;
static char *listener_names[PX_METRICS_MAX_LISTENERS];
static int nlisteners;

static void reg_init(void) { uv_mutex_init(&reg_mu); }

static int slot_of(char **names, int *n, int max, const char *name) {
  for (int i = 0; i < *n; i++)
    if (strcmp(names[i], name) == 0) return i;
  if (*n >= max) return -1;
  names[*n] = px_strdup(name);
  return (*n)++;
}

int px_metrics_route_slot(const char *listener, const char *route) {
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_mu);
  int slot = -1;
  for (int i = 0; i < nroutes && slot < 0; i++)
    if (strcmp(route_names[i][0], listener) == 0 && strcmp(route_names[i][1], route) == 0) slot = i;
  if (slot < 0 && nroutes < PX_METRICS_MAX_ROUTES) {
    route_names[nroutes][0] = px_strdup(listener);
    route_names[nroutes][1] = px_strdup(route);
    slot = nroutes++;
  }
  uv_mutex_unlock(&reg_mu);
  return slot;
}

int px_metrics_cluster_slot(const char *cluster) {
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_mu);
  int slot = slot_of(cluster_names, &nclusters, PX_METRICS_MAX_CLUSTERS - 1, cluster);
  /* Cluster slots index the hot path's counters unchecked: past the last name the
   * rest share one series rather than get no slot. */
  if (slot < 0) slot = slot_of(cluster_names, &nclusters, PX_METRICS_MAX_CLUSTERS, PX_METRICS_OTHER_CLUSTERS);
  uv_mutex_unlock(&reg_mu);
  return slot;
}

int px_metrics_listener_slot(const char *listener) {
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_mu);
  int slot = slot_of(listener_names, &nlisteners, PX_METRICS_MAX_LISTENERS, listener);
  uv_mutex_unlock(&reg_mu);
  return slot;
}

void px_metrics_request(px_metrics_t *m, int listener_slot, int route_slot, int status,
                        uint64_t duration_ns) {
  int cls = status / 100 - 1;
  if (cls < 0 || cls > 4) cls = 4;
  if (route_slot >= 0) px_metric_inc(&m->requests[route_slot][cls], 1);
  if (listener_slot < 0) return;
  uint64_t us = duration_ns / 1000;
  size_t b = 0;
  while (b < PX_HIST_NBUCKETS && us > hist_bounds_us[b]) b++;
  px_metric_inc(&m->hist[listener_slot][b], 1);
  px_metric_inc(&m->hist_sum_us[listener_slot], us);
}

/* A label value, escaped as the text format requires (backslash, quote, newline):
 * names come from the configuration and may contain anything. */
static const char *esc(px_buf_t *tmp, const char *v) {
  tmp->len = 0;
  for (const char *p = v; *p; p++) {
    if (*p == '\\' || *p == '"') px_buf_append(tmp, "\\", 1);
    if (*p == '\n') {
      px_buf_append(tmp, "\\n", 2);
      continue;
    }
    px_buf_append(tmp, p, 1);
  }
  px_buf_append(tmp, "", 1); /* NUL */
  return tmp->data;
}

static uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

#define SUM(expr)                                                                                            \
  ({                                                                                                         \
    uint64_t s_ = 0;                                                                                         \
    for (int w_ = 0; w_ < nworkers; w_++) {                                                                  \
      const px_metrics_t *m = workers[w_];                                                                   \
      s_ += load(&(expr));                                                                                   \
    }                                                                                                        \
    s_;                                                                                                      \
  })

static const char *const class_names[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

void px_metrics_render(px_metrics_t *const *workers, int nworkers, px_buf_t *out) {
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_mu);
  px_buf_t e1 = {0}, e2 = {0};

  px_buf_append_cstr(
      out, "# HELP outrigger_requests_total Requests answered, by listener, route and status class.\n"
           "# TYPE outrigger_requests_total counter\n");
  for (int r = 0; r < nroutes; r++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = SUM(m->requests[r][c]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_requests_total{listener=\"%s\",route=\"%s\",class=\"%s\"} %llu\n",
                    esc(&e1, route_names[r][0]), esc(&e2, route_names[r][1]), class_names[c],
                    (unsigned long long)v);
    }
  static const char *const fault_names[] = {"abort", "delay", "drop_response"};
  px_buf_append_cstr(out,
                     "# HELP outrigger_faults_total Faults injected by a route's fault policy, by kind.\n"
                     "# TYPE outrigger_faults_total counter\n");
  for (int r = 0; r < nroutes; r++)
    for (int k = 0; k < 3; k++) {
      uint64_t v = SUM(m->faults[r][k]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_faults_total{listener=\"%s\",route=\"%s\",kind=\"%s\"} %llu\n",
                    esc(&e1, route_names[r][0]), esc(&e2, route_names[r][1]), fault_names[k],
                    (unsigned long long)v);
    }

  px_buf_append_cstr(
      out, "# HELP outrigger_upstream_responses_total Upstream responses, by cluster and status class.\n"
           "# TYPE outrigger_upstream_responses_total counter\n");
  for (int k = 0; k < nclusters; k++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = SUM(m->upstream[k][c]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_upstream_responses_total{cluster=\"%s\",class=\"%s\"} %llu\n",
                    esc(&e1, cluster_names[k]), class_names[c], (unsigned long long)v);
    }
  px_buf_append_cstr(
      out,
      "# HELP outrigger_upstream_failures_total Upstream tries that failed (connect failure, reset, timeout, bad response), each try once.\n"
      "# TYPE outrigger_upstream_failures_total counter\n");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out, "outrigger_upstream_failures_total{cluster=\"%s\"} %llu\n", esc(&e1, cluster_names[k]),
                  (unsigned long long)SUM(m->upstream_fail[k]));
  px_buf_append_cstr(
      out, "# HELP outrigger_retries_total Retries made (tries after a request's first), by cluster.\n"
           "# TYPE outrigger_retries_total counter\n");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out, "outrigger_retries_total{cluster=\"%s\"} %llu\n", esc(&e1, cluster_names[k]),
                  (unsigned long long)SUM(m->retries[k]));
  px_buf_append_cstr(out,
                     "# HELP outrigger_overflow_total Requests refused with 503 overloaded, by cluster and "
                     "the limit they met (max_pending: max_connections reached and no room to wait).\n"
                     "# TYPE outrigger_overflow_total counter\n");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out,
                  "outrigger_overflow_total{cluster=\"%s\",limit=\"max_requests\"} %llu\n"
                  "outrigger_overflow_total{cluster=\"%s\",limit=\"max_pending\"} %llu\n",
                  esc(&e1, cluster_names[k]), (unsigned long long)SUM(m->overflow[k][0]),
                  esc(&e2, cluster_names[k]), (unsigned long long)SUM(m->overflow[k][1]));
  px_buf_append_cstr(
      out,
      "# HELP outrigger_retries_denied_total Retries the policy allowed but the cluster's retry budget or limits.max_retries refused.\n"
      "# TYPE outrigger_retries_denied_total counter\n");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out, "outrigger_retries_denied_total{cluster=\"%s\"} %llu\n", esc(&e1, cluster_names[k]),
                  (unsigned long long)SUM(m->retries_denied[k]));

  px_buf_printf(out,
                "# HELP outrigger_idempotency_replayed_total Kept answers sent again (inbound idempotency).\n"
                "# TYPE outrigger_idempotency_replayed_total counter\n"
                "outrigger_idempotency_replayed_total %llu\n",
                (unsigned long long)SUM(m->idem_replayed));

  px_buf_append_cstr(
      out, "# HELP outrigger_errors_total Answers the sidecar made itself, by x-outrigger-error kind.\n"
           "# TYPE outrigger_errors_total counter\n");
  for (int e = 0; e < PX_ERR__N; e++)
    px_buf_printf(out, "outrigger_errors_total{kind=\"%s\"} %llu\n", errkind_names[e],
                  (unsigned long long)SUM(m->errors[e]));

  px_buf_append_cstr(
      out, "# HELP outrigger_request_duration_seconds Time from request head to the end of the response.\n"
           "# TYPE outrigger_request_duration_seconds histogram\n");
  for (int l = 0; l < nlisteners; l++) {
    uint64_t cum = 0;
    const char *ln = esc(&e1, listener_names[l]);
    for (int b = 0; b <= PX_HIST_NBUCKETS; b++) {
      cum += SUM(m->hist[l][b]);
      if (b < PX_HIST_NBUCKETS)
        px_buf_printf(out, "outrigger_request_duration_seconds_bucket{listener=\"%s\",le=\"%g\"} %llu\n", ln,
                      (double)hist_bounds_us[b] / 1e6, (unsigned long long)cum);
      else
        px_buf_printf(out, "outrigger_request_duration_seconds_bucket{listener=\"%s\",le=\"+Inf\"} %llu\n",
                      ln, (unsigned long long)cum);
    }
    px_buf_printf(out, "outrigger_request_duration_seconds_sum{listener=\"%s\"} %.6f\n", ln,
                  (double)SUM(m->hist_sum_us[l]) / 1e6);
    px_buf_printf(out, "outrigger_request_duration_seconds_count{listener=\"%s\"} %llu\n", ln,
                  (unsigned long long)cum);
  }

  uint64_t acc = SUM(m->conns_accepted), closed = SUM(m->conns_closed);
  px_buf_printf(out,
                "# HELP outrigger_downstream_connections_total Client connections accepted.\n"
                "# TYPE outrigger_downstream_connections_total counter\n"
                "outrigger_downstream_connections_total %llu\n"
                "# HELP outrigger_downstream_connections_active Client connections open now.\n"
                "# TYPE outrigger_downstream_connections_active gauge\n"
                "outrigger_downstream_connections_active %llu\n",
                (unsigned long long)acc, (unsigned long long)(acc >= closed ? acc - closed : 0));
  px_buf_printf(out,
                "# HELP outrigger_request_body_spliced_bytes_total Request body bytes passed upstream "
                "by splice(2), never copied through the sidecar.\n"
                "# TYPE outrigger_request_body_spliced_bytes_total counter\n"
                "outrigger_request_body_spliced_bytes_total %llu\n",
                (unsigned long long)SUM(m->body_spliced));
  px_buf_free(&e1);
  px_buf_free(&e2);
  uv_mutex_unlock(&reg_mu);
}
