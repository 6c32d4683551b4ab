/* Counters for GET /metrics. Each worker owns a px_metrics_t and is its only
 * writer, so counting is a plain add (relaxed atomic store) on the hot path; a
 * scrape sums the workers. Label sets (listener/route, cluster) get a slot from a
 * registry when a snapshot is built, so slots survive reloads by name. */
#ifndef PX_METRICS_H
#define PX_METRICS_H

#include <stdint.h>

#include "buf.h"

#define PX_METRICS_MAX_ROUTES 1024
#define PX_METRICS_MAX_CLUSTERS 256
#define PX_METRICS_MAX_LISTENERS 64
#define PX_HIST_NBUCKETS 14

/* The errors the sidecar answers itself (SPEC §4): x-outrigger-error values. */
#define PX_ERRKIND_MAP(XX)                                                                                   \
  XX(BAD_REQUEST, "bad_request", 400)                                                                        \
  XX(NO_ROUTE, "no_route", 404)                                                                              \
  XX(REQUEST_TIMEOUT, "request_timeout", 408)                                                                \
  XX(BODY_TOO_LARGE, "body_too_large", 413)                                                                  \
  XX(HEADERS_TOO_LARGE, "headers_too_large", 431)                                                            \
  XX(NOT_IMPLEMENTED, "not_implemented", 501)                                                                \
  XX(CONNECT_FAILURE, "upstream_connect_failure", 502)                                                       \
  XX(UPSTREAM_RESET, "upstream_reset", 502)                                                                  \
  XX(BAD_RESPONSE, "upstream_bad_response", 502)                                                             \
  XX(NO_ENDPOINT, "no_healthy_endpoint", 503)                                                                \
  XX(OVERLOADED, "overloaded", 503)                                                                          \
  XX(UPSTREAM_TIMEOUT, "upstream_timeout", 504)                                                              \
  XX(FAULT_ABORT, "fault_abort", 503) /* fault.abort's status, whatever it is */                             \
  XX(IDEM_KEY_MISSING, "idempotency_key_missing", 400)                                                       \
  XX(IDEM_KEY_INVALID, "idempotency_key_invalid", 400)                                                       \
  XX(IDEM_IN_FLIGHT, "idempotency_in_flight", 409)                                                           \
  XX(IDEM_MISMATCH, "idempotency_key_mismatch", 422)                                                         \
  XX(CIRCUIT_OPEN, "circuit_open", 503)

typedef enum {
#define XX(e, name, status) PX_ERR_##e,
  PX_ERRKIND_MAP(XX)
#undef XX
      PX_ERR__N
} px_errkind_t;

const char *px_errkind_name(px_errkind_t k);
int px_errkind_status(px_errkind_t k);

/* Why a retry was made (outrigger_retries_total's `reason`): the failure of the try before
 * it, or the retry.on rule its answer's status met (5xx first, then gateway-error, then
 * retriable-status). A reset of a pooled connection the upstream had closed, retried at
 * once on any endpoint and outside the budget, is stale_connection. */
#define PX_RETRY_REASON_MAP(XX)                                                                              \
  XX(CONNECT_FAILURE, "connect_failure")                                                                     \
  XX(RESET, "reset")                                                                                         \
  XX(STALE_CONNECTION, "stale_connection")                                                                   \
  XX(TIMEOUT, "timeout")                                                                                     \
  XX(STATUS_5XX, "5xx")                                                                                      \
  XX(GATEWAY_ERROR, "gateway_error")                                                                         \
  XX(RETRIABLE_STATUS, "retriable_status")

typedef enum {
#define XX(e, name) PX_RETRY_REASON_##e,
  PX_RETRY_REASON_MAP(XX)
#undef XX
      PX_RETRY_REASON__N
} px_retry_reason_t;

const char *px_retry_reason_name(px_retry_reason_t r);

/* Retries refused (outrigger_retries_denied_total's `limit`). */
enum { PX_DENIED_BUDGET, PX_DENIED_MAX_RETRIES, PX_DENIED__N };
/* Upstream connection events, per cluster. */
enum { PX_UPCONN_CREATED, PX_UPCONN_FAILED, PX_UPCONN_REUSED, PX_UPCONN__N };
/* Inbound idempotency outcomes, per listener: a kept answer sent again (replayed), 409
 * for a key whose request still runs (conflict), 422 for a key used with another
 * request (mismatch). */
enum { PX_IDEMSTAT_REPLAYED, PX_IDEMSTAT_CONFLICT, PX_IDEMSTAT_MISMATCH, PX_IDEMSTAT__N };

/* A latency histogram: counts per bucket (the last is +Inf) and the sum, in µs. */
typedef struct {
  uint64_t bucket[PX_HIST_NBUCKETS + 1];
  uint64_t sum_us;
} px_hist_t;

typedef struct {
  uint64_t requests[PX_METRICS_MAX_ROUTES][5];     /* by route slot and status class */
  uint64_t lrequests[PX_METRICS_MAX_LISTENERS][5]; /* every answer, routed or not, by listener */
  uint64_t upstream[PX_METRICS_MAX_CLUSTERS][5];   /* upstream responses by class */
  uint64_t upstream_fail[PX_METRICS_MAX_CLUSTERS]; /* connect failure, reset, timeout, bad response */
  uint64_t upconn[PX_METRICS_MAX_CLUSTERS][PX_UPCONN__N];
  uint64_t retries[PX_METRICS_MAX_CLUSTERS][PX_RETRY_REASON__N]; /* tries after the first, by cause */
  uint64_t retries_denied[PX_METRICS_MAX_CLUSTERS][PX_DENIED__N];
  uint64_t overflow[PX_METRICS_MAX_CLUSTERS][2]; /* 503 overloaded: max_requests, max_pending */
  uint64_t faults[PX_METRICS_MAX_ROUTES][3];     /* by route slot: abort, delay, drop_response */
  uint64_t idem[PX_METRICS_MAX_LISTENERS][PX_IDEMSTAT__N];
  uint64_t errors[PX_ERR__N];
  px_hist_t hist[PX_METRICS_MAX_LISTENERS];        /* every answered request */
  px_hist_t route_hist[PX_METRICS_MAX_ROUTES];     /* those a route took */
  px_hist_t cluster_hist[PX_METRICS_MAX_CLUSTERS]; /* the same, by the route's cluster */
  uint64_t conns_accepted;
  uint64_t conns_closed;
  uint64_t body_spliced; /* request body bytes passed upstream by splice (splice.h) */
} px_metrics_t;

static inline void px_metric_inc(uint64_t *c, uint64_t by) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + by, __ATOMIC_RELAXED);
}

/* Slots for label sets; -1 when the registry is full (the series is then not kept).
 * A cluster always gets one: past PX_METRICS_MAX_CLUSTERS - 1 names, the rest share
 * the slot labelled PX_METRICS_OTHER_CLUSTERS. */
#define PX_METRICS_OTHER_CLUSTERS "(other clusters)"
int px_metrics_route_slot(const char *listener, const char *route);
int px_metrics_cluster_slot(const char *cluster);
int px_metrics_listener_slot(const char *listener);

/* One answered request: its status class and duration go to the listener's series, and
 * to the route's and its cluster's when a route took it (slot -1: none). One bucket
 * search serves the three histograms. */
void px_metrics_request(px_metrics_t *m, int listener_slot, int route_slot, int cluster_slot, int status,
                        uint64_t duration_ns);

/* The HELP and TYPE lines of family `name` ("counter", "gauge", "histogram"), which go
 * once before all of its samples. */
void px_metrics_family(px_buf_t *out, const char *name, const char *type, const char *help);
/* `v` escaped as a label value of the text format (backslash, double quote, newline),
 * NUL-terminated in `tmp`; valid until tmp is used again. */
const char *px_metrics_esc(px_buf_t *tmp, const char *v);

/* Extra gauges the caller knows (reloads, per-cluster connections...), printed as-is. */
typedef void (*px_metrics_extra_cb)(void *data, px_buf_t *out);

/* Renders the Prometheus text format (version 0.0.4) from all workers' counters. */
void px_metrics_render(px_metrics_t *const *workers, int nworkers, px_buf_t *out);

#endif
