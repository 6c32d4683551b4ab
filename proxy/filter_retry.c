/* The retry filter (SPEC §5): a try that failed, or answered with a status the route
 * retries, goes again when px_retry_decide says so, the cluster's retry budget has room
 * and the wait fits in the route's timeout; else the outcome reaches the client as it
 * is (the last try's answer, or the sidecar's error for the last failure). Also gives
 * keyless POST and PATCH requests an Idempotency-Key under `idempotency_key: generate`,
 * the same on every try, which is what lets them run twice.
 *
 * Budget: a request counts as one retry in flight on its cluster from its first retry
 * until it ends (cluster_state.h, exact across workers and reloads). */
#include <stdio.h>
#include <time.h>

#include "filter.h"
#include "request.h"
#include "retry.h"

typedef struct {
  int counted; /* one of the cluster's retries in flight */
  int retries; /* retries made, for the backoff's exponent */
} retry_state_t;

static px_filter_rc_t on_request(px_req_t *r, void *state) {
  (void)state;
  const px_retry_conf_t *rc = &r->route->conf->retry;
  if (rc->idempotency_key != PX_IDEMPOTENCY_KEY_GENERATE ||
      (r->method != HTTP_POST && r->method != HTTP_PATCH))
    return PX_FILTER_GO;
  if (px_head_find(&px_conn_head(r->c)->h, "idempotency-key") >= 0)
    return PX_FILTER_GO; /* the client's own */
  /* A Structured Field String (draft-ietf-httpapi-idempotency-key-header): quoted. */
  char line[64], id[37];
  px_uuid4(id);
  int n = snprintf(line, sizeof(line), "idempotency-key: \"%s\"", id);
  if (px_req_add_header(r, (px_str_t){line, (size_t)n}) == 0) r->key_added = 1;
  return PX_FILTER_GO;
}

static px_retry_in_t input(const px_req_t *r, int status, px_errkind_t kind, int stale) {
  const px_retry_conf_t *rc = &r->route->conf->retry;
  return (px_retry_in_t){.status = status,
                         .kind = kind,
                         .stale = stale,
                         .attempt = r->attempt,
                         .attempts = rc->attempts,
                         .on = rc->on,
                         .status_list = rc->status,
                         .nstatus = rc->nstatus,
                         .resendable = r->resendable,
                         .body_done = r->c->body_done};
}

/* Takes one of the cluster's retries in flight for the request, if the budget and
 * limits.max_retries allow; 0 when they do not. */
static int take_budget(px_req_t *r, retry_state_t *s) {
  if (s->counted) return 1;
  const px_retry_conf_t *rc = &r->route->conf->retry;
  px_cluster_state_t *st = r->cluster->st;
  int before = atomic_fetch_add_explicit(&st->active_retries, 1, memory_order_relaxed);
  int requests = atomic_load_explicit(&st->active_requests, memory_order_relaxed);
  int denied = px_retry_budget_check(before, requests, rc->budget_ratio, rc->budget_min_concurrency,
                                     r->cluster->conf->max_retries);
  if (denied >= 0) {
    atomic_fetch_sub_explicit(&st->active_retries, 1, memory_order_relaxed);
    px_metric_inc(&r->w->metrics.retries_denied[r->cluster->metric_slot][denied], 1);
    return 0;
  }
  s->counted = 1;
  return 1;
}

/* The wait before the next try: the upstream's Retry-After on a 503 or 429 when it
 * sent a valid one, else the backoff; either capped at backoff.max. */
static uint64_t wait_ms(const px_req_t *r, const retry_state_t *s, int status) {
  const px_retry_conf_t *rc = &r->route->conf->retry;
  if (status == 503 || status == 429) {
    const px_head_t *h = px_try_head(&r->t);
    int i = px_head_find(h, "retry-after");
    int64_t ms = i >= 0 ? px_retry_after_ms(px_head_value(h, (size_t)i), time(NULL)) : -1;
    if (ms >= 0) return PX_MIN((uint64_t)ms, rc->backoff_max_ms);
  }
  return px_retry_backoff_ms(s->retries + 1, rc->backoff_base_ms, rc->backoff_max_ms, px_rand01());
}

static px_filter_rc_t on_try_failed(px_req_t *r, void *state, px_errkind_t kind, int stale) {
  retry_state_t *s = state;
  px_retry_in_t in = input(r, 0, kind, stale);
  px_retry_t d = px_retry_decide(&in);
  if (d == PX_RETRY_NO) return PX_FILTER_GO;
  uint64_t *count = &r->w->metrics.retries[r->cluster->metric_slot][px_retry_reason(&in, d)];
  if (d == PX_RETRY_SAME) { /* only that connection was stale: at once, not against the budget */
    px_metric_inc(count, 1);
    r->tried = 0;
    px_req_retry(r, 0);
    return PX_FILTER_STOP;
  }
  if (!take_budget(r, s)) return PX_FILTER_GO;
  /* Nothing was sent on a connect failure, and the next try goes elsewhere: no wait. */
  uint64_t ms = kind == PX_ERR_CONNECT_FAILURE ? 0 : wait_ms(r, s, 0);
  if (px_req_retry_after(r, ms, 1) < 0) return PX_FILTER_GO;
  s->retries++;
  px_metric_inc(count, 1);
  return PX_FILTER_STOP;
}

static px_filter_rc_t on_response_head(px_req_t *r, void *state) {
  retry_state_t *s = state;
  int status = px_try_head(&r->t)->status;
  if (status < 400) return PX_FILTER_GO; /* the usual case, in one compare */
  px_retry_in_t in = input(r, status, PX_ERR__N, 0);
  px_retry_t d = px_retry_decide(&in);
  if (d == PX_RETRY_NO || !take_budget(r, s)) return PX_FILTER_GO;
  /* No time left in the route's timeout: this answer is the client's. */
  if (px_req_retry_after(r, wait_ms(r, s, status), 1) < 0) return PX_FILTER_GO;
  s->retries++;
  px_metric_inc(&r->w->metrics.retries[r->cluster->metric_slot][px_retry_reason(&in, d)], 1);
  return PX_FILTER_STOP;
}

static void on_end(px_req_t *r, void *state) {
  retry_state_t *s = state;
  if (s->counted) atomic_fetch_sub_explicit(&r->cluster->st->active_retries, 1, memory_order_relaxed);
}

const px_filter_t px_filter_retry = {.name = "retry",
                                     .state_size = sizeof(retry_state_t),
                                     .on_request = on_request,
                                     .on_try_failed = on_try_failed,
                                     .on_response_head = on_response_head,
                                     .on_end = on_end};
