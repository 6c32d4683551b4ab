/* The fault filter (SPEC §5, route `fault`): failures made on purpose, to prove that
 * what sits in front copes. `delay` holds the request on the connection's timer (the
 * loop goes on), `abort` answers with its status without calling the upstream, and
 * `drop_response` lets the upstream do its work, reads its whole answer, and resets the
 * client's connection without a byte of it: the failure only an idempotency key makes
 * safe to retry. Decisions in fault.c; each fault counted per route. */
#include "fault.h"
#include "filter.h"
#include "request.h"

typedef struct {
  int decided, abort, drop;
} fault_state_t;

static void count(px_req_t *r, int which) {
  if (r->route->metric_slot >= 0) px_metric_inc(&r->w->metrics.faults[r->route->metric_slot][which], 1);
}

static int wanted(const px_listener_conf_t *lc, const px_route_conf_t *rc) {
  (void)lc;
  return rc->has_fault;
}

static px_filter_rc_t on_request(px_req_t *r, void *state) {
  const px_route_conf_t *rc = r->route->conf;
  fault_state_t *s = state;
  if (!s->decided) { /* not on the second call, after the delay */
    s->decided = 1;
    px_fault_t f = px_fault_pick(&rc->fault, px_rand01(), px_rand01(), px_rand01());
    s->abort = f.abort;
    s->drop = f.drop;
    if (f.delay) {
      count(r, 1);
      px_req_pause(r, rc->fault.delay_ms);
      return PX_FILTER_STOP;
    }
  }
  if (s->abort) {
    count(r, 0);
    px_req_fail_status(r, PX_ERR_FAULT_ABORT, rc->fault.abort_status,
                       "fault injection: the route's fault.abort", NULL);
    return PX_FILTER_STOP;
  }
  return PX_FILTER_GO;
}

static px_filter_rc_t on_response_head(px_req_t *r, void *state) {
  fault_state_t *s = state;
  if (!s->drop) return PX_FILTER_GO;
  count(r, 2);
  px_req_drop(r);
  return PX_FILTER_STOP;
}

const px_filter_t px_filter_fault = {.name = "fault",
                                     .state_size = sizeof(fault_state_t),
                                     .wanted = wanted,
                                     .on_request = on_request,
                                     .on_response_head = on_response_head};
