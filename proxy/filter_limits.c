/* The limits filter: a cluster's max_requests (SPEC §6), counted across workers and
 * across reloads (cluster_state.h); a request over it gets 503 overloaded at once. */
#include "filter.h"
#include "request.h"

typedef struct {
  int counted;
} limits_state_t;

static px_filter_rc_t on_request(px_req_t *r, void *state) {
  limits_state_t *s = state;
  px_cluster_t *c = r->cluster;
  if (atomic_fetch_add_explicit(&c->st->active_requests, 1, memory_order_relaxed) >= c->conf->max_requests) {
    atomic_fetch_sub_explicit(&c->st->active_requests, 1, memory_order_relaxed);
    px_metric_inc(&r->w->metrics.overflow[c->metric_slot][0], 1);
    px_req_fail(r, PX_ERR_OVERLOADED, "the cluster's max_requests is reached",
                "x-outrigger-overloaded: true\r\n");
    return PX_FILTER_STOP;
  }
  s->counted = 1;
  return PX_FILTER_GO;
}

static void on_end(px_req_t *r, void *state) {
  limits_state_t *s = state;
  if (s->counted) atomic_fetch_sub_explicit(&r->cluster->st->active_requests, 1, memory_order_relaxed);
}

const px_filter_t px_filter_limits = {
    .name = "limits", .state_size = sizeof(limits_state_t), .on_request = on_request, .on_end = on_end};
