#include "metrics.h"

#include <stddef.h>
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

static const char *const retry_reason_names[] = {
#define XX(e, name) name,
    PX_RETRY_REASON_MAP(XX)
#undef XX
};

const char *px_retry_reason_name(px_retry_reason_t r) { return retry_reason_names[r]; }

static void observe(px_hist_t *h, size_t b, uint64_t us) {
  px_metric_inc(&h->bucket[b], 1);
  px_metric_inc(&h->sum_us, us);
}

void px_metrics_request(px_metrics_t *m, int listener_slot, int route_slot, int cluster_slot, int status,
                        uint64_t duration_ns) {
  int cls = status / 100 - 1;
  if (cls < 0 || cls > 4) cls = 4;
  uint64_t us = duration_ns / 1000;
  size_t b = 0;
  while (b < PX_HIST_NBUCKETS && us > hist_bounds_us[b]) b++;
  if (listener_slot >= 0) {
    px_metric_inc(&m->lrequests[listener_slot][cls], 1);
    observe(&m->hist[listener_slot], b, us);
  }
  if (route_slot >= 0) {
    px_metric_inc(&m->requests[route_slot][cls], 1);
    observe(&m->route_hist[route_slot], b, us);
  }
  if (cluster_slot >= 0) observe(&m->cluster_hist[cluster_slot], b, us);
}

/* Label values come from the configuration and may contain anything. */
const char *px_metrics_esc(px_buf_t *tmp, const char *v) {
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

static const char *esc(px_buf_t *tmp, const char *v) { return px_metrics_esc(tmp, v); }

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

void px_metrics_family(px_buf_t *out, const char *name, const char *type, const char *help) {
  px_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One series of histogram `name`: the px_hist_t at byte `off` of every worker's
 * counters, summed; `labels` are its label pairs, escaped. */
static void hist_series(px_buf_t *out, const char *name, const char *labels, px_metrics_t *const *workers,
                        int nworkers, size_t off) {
  px_hist_t h = {{0}, 0};
  for (int w = 0; w < nworkers; w++) {
    const px_hist_t *p = (const px_hist_t *)(const void *)((const char *)workers[w] + off);
    for (int b = 0; b <= PX_HIST_NBUCKETS; b++) h.bucket[b] += load(&p->bucket[b]);
    h.sum_us += load(&p->sum_us);
  }
  uint64_t cum = 0;
  for (int b = 0; b < PX_HIST_NBUCKETS; b++) {
    cum += h.bucket[b];
    px_buf_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, (double)hist_bounds_us[b] / 1e6,
                  (unsigned long long)cum);
  }
  cum += h.bucket[PX_HIST_NBUCKETS];
  px_buf_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                (unsigned long long)cum, name, labels, (double)h.sum_us / 1e6, name, labels,
                (unsigned long long)cum);
}

/* A per-cluster counter family: one series a cluster, 0 included. */
#define CLUSTER_COUNTER(name, help, expr)                                                                    \
  do {                                                                                                       \
    px_metrics_family(out, name, "counter", help);                                                           \
    for (int k = 0; k < nclusters; k++)                                                                      \
      px_buf_printf(out, name "{cluster=\"%s\"} %llu\n", esc(&e1, cluster_names[k]),                         \
                    (unsigned long long)SUM(expr));                                                          \
  } while (0)

void px_metrics_render(px_metrics_t *const *workers, int nworkers, px_buf_t *out) {
  uv_once(&reg_once, reg_init);
  uv_mutex_lock(&reg_mu);
  px_buf_t e1 = {0}, e2 = {0}, lb = {0};

  /* Answers, by where they were counted: the listener (all of them), the route that
   * took them, the cluster of that route. A class's series appears at its first count. */
  px_metrics_family(
      out, "outrigger_listener_requests_total", "counter",
      "Requests answered by a listener, by status class; those refused before a route took them "
      "(malformed, no route, no usable cluster) included.");
  for (int l = 0; l < nlisteners; l++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = SUM(m->lrequests[l][c]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_listener_requests_total{listener=\"%s\",class=\"%s\"} %llu\n",
                    esc(&e1, listener_names[l]), class_names[c], (unsigned long long)v);
    }
  px_metrics_family(out, "outrigger_requests_total", "counter",
                    "Requests answered, by listener, the route that took them and status class.");
  for (int r = 0; r < nroutes; r++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = SUM(m->requests[r][c]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_requests_total{listener=\"%s\",route=\"%s\",class=\"%s\"} %llu\n",
                    esc(&e1, route_names[r][0]), esc(&e2, route_names[r][1]), class_names[c],
                    (unsigned long long)v);
    }

  px_metrics_family(
      out, "outrigger_request_duration_seconds", "histogram",
      "Time from request head to the end of the response, every answered request of a listener.");
  for (int l = 0; l < nlisteners; l++) {
    lb.len = 0;
    px_buf_printf(&lb, "listener=\"%s\"", esc(&e1, listener_names[l]));
    px_buf_append(&lb, "", 1);
    hist_series(out, "outrigger_request_duration_seconds", lb.data, workers, nworkers,
                offsetof(px_metrics_t, hist) + (size_t)l * sizeof(px_hist_t));
  }
  px_metrics_family(
      out, "outrigger_route_request_duration_seconds", "histogram",
      "Time from request head to the end of the response, by listener and the route that took the "
      "request.");
  for (int r = 0; r < nroutes; r++) {
    lb.len = 0;
    px_buf_printf(&lb, "listener=\"%s\",route=\"%s\"", esc(&e1, route_names[r][0]),
                  esc(&e2, route_names[r][1]));
    px_buf_append(&lb, "", 1);
    hist_series(out, "outrigger_route_request_duration_seconds", lb.data, workers, nworkers,
                offsetof(px_metrics_t, route_hist) + (size_t)r * sizeof(px_hist_t));
  }
  px_metrics_family(
      out, "outrigger_cluster_request_duration_seconds", "histogram",
      "Time from request head to the end of the response (the whole request: every try and backoff), "
      "by the cluster its route sent it to.");
  for (int k = 0; k < nclusters; k++) {
    lb.len = 0;
    px_buf_printf(&lb, "cluster=\"%s\"", esc(&e1, cluster_names[k]));
    px_buf_append(&lb, "", 1);
    hist_series(out, "outrigger_cluster_request_duration_seconds", lb.data, workers, nworkers,
                offsetof(px_metrics_t, cluster_hist) + (size_t)k * sizeof(px_hist_t));
  }

  static const char *const fault_names[] = {"abort", "delay", "drop_response"};
  px_metrics_family(out, "outrigger_faults_total", "counter",
                    "Faults injected by a route's fault policy, by kind.");
  for (int r = 0; r < nroutes; r++)
    for (int k = 0; k < 3; k++) {
      uint64_t v = SUM(m->faults[r][k]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_faults_total{listener=\"%s\",route=\"%s\",kind=\"%s\"} %llu\n",
                    esc(&e1, route_names[r][0]), esc(&e2, route_names[r][1]), fault_names[k],
                    (unsigned long long)v);
    }
  px_metrics_family(out, "outrigger_errors_total", "counter",
                    "Answers the sidecar made itself, by x-outrigger-error kind.");
  for (int e = 0; e < PX_ERR__N; e++)
    px_buf_printf(out, "outrigger_errors_total{kind=\"%s\"} %llu\n", errkind_names[e],
                  (unsigned long long)SUM(m->errors[e]));

  px_metrics_family(out, "outrigger_upstream_responses_total", "counter",
                    "Upstream responses (heads received), by cluster and status class.");
  for (int k = 0; k < nclusters; k++)
    for (int c = 0; c < 5; c++) {
      uint64_t v = SUM(m->upstream[k][c]);
      if (v == 0) continue;
      px_buf_printf(out, "outrigger_upstream_responses_total{cluster=\"%s\",class=\"%s\"} %llu\n",
                    esc(&e1, cluster_names[k]), class_names[c], (unsigned long long)v);
    }
  CLUSTER_COUNTER(
      "outrigger_upstream_failures_total",
      "Upstream tries that failed (connect failure, reset, timeout, bad response), each try once.",
      m->upstream_fail[k]);
  CLUSTER_COUNTER("outrigger_upstream_connections_created_total",
                  "Upstream connections opened (connects started).", m->upconn[k][PX_UPCONN_CREATED]);
  CLUSTER_COUNTER("outrigger_upstream_connect_failures_total",
                  "Upstream connects that failed: refused, unreachable, or not done within connect_timeout.",
                  m->upconn[k][PX_UPCONN_FAILED]);
  CLUSTER_COUNTER("outrigger_upstream_connections_reused_total",
                  "Tries that got an idle pooled (keep-alive) connection instead of a new one.",
                  m->upconn[k][PX_UPCONN_REUSED]);

  px_metrics_family(
      out, "outrigger_retries_total", "counter",
      "Retries made (tries after a request's first), by cluster and reason: the failure of the try "
      "before, or the retry.on rule its status met.");
  for (int k = 0; k < nclusters; k++)
    for (int why = 0; why < PX_RETRY_REASON__N; why++)
      px_buf_printf(out, "outrigger_retries_total{cluster=\"%s\",reason=\"%s\"} %llu\n",
                    esc(&e1, cluster_names[k]), retry_reason_names[why],
                    (unsigned long long)SUM(m->retries[k][why]));
  px_metrics_family(
      out, "outrigger_retries_denied_total", "counter",
      "Retries the route's policy allowed but that were not made, by cluster and the limit that "
      "refused them: the route's retry budget, or the cluster's limits.max_retries.");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out,
                  "outrigger_retries_denied_total{cluster=\"%s\",limit=\"budget\"} %llu\n"
                  "outrigger_retries_denied_total{cluster=\"%s\",limit=\"max_retries\"} %llu\n",
                  esc(&e1, cluster_names[k]), (unsigned long long)SUM(m->retries_denied[k][PX_DENIED_BUDGET]),
                  esc(&e2, cluster_names[k]),
                  (unsigned long long)SUM(m->retries_denied[k][PX_DENIED_MAX_RETRIES]));
  px_metrics_family(out, "outrigger_overflow_total", "counter",
                    "Requests refused with 503 overloaded, by cluster and the limit they met (max_pending: "
                    "max_connections reached and no room to wait).");
  for (int k = 0; k < nclusters; k++)
    px_buf_printf(out,
                  "outrigger_overflow_total{cluster=\"%s\",limit=\"max_requests\"} %llu\n"
                  "outrigger_overflow_total{cluster=\"%s\",limit=\"max_pending\"} %llu\n",
                  esc(&e1, cluster_names[k]), (unsigned long long)SUM(m->overflow[k][0]),
                  esc(&e2, cluster_names[k]), (unsigned long long)SUM(m->overflow[k][1]));

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

  /* Last: px_idem_stores_render's families follow (admin.c), the idempotency ones together. */
  static const struct {
    const char *name, *help;
  } idem[PX_IDEMSTAT__N] = {
      {"outrigger_idempotency_replayed_total", "Kept answers sent again (inbound idempotency), by listener."},
      {"outrigger_idempotency_conflicts_total",
       "Keyed requests answered 409 because the first with the key was still running, by listener."},
      {"outrigger_idempotency_mismatches_total",
       "Keyed requests answered 422 because the key was used for another request, by listener."},
  };
  for (int k = 0; k < PX_IDEMSTAT__N; k++) {
    px_metrics_family(out, idem[k].name, "counter", idem[k].help);
    for (int l = 0; l < nlisteners; l++) {
      uint64_t v = SUM(m->idem[l][k]);
      if (v)
        px_buf_printf(out, "%s{listener=\"%s\"} %llu\n", idem[k].name, esc(&e1, listener_names[l]),
                      (unsigned long long)v);
    }
  }

  px_buf_free(&e1);
  px_buf_free(&e2);
  px_buf_free(&lb);
  uv_mutex_unlock(&reg_mu);
}
