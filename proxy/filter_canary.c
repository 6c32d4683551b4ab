/* The canary filter (SPEC §7, canary.analysis): every finished request of a split route
 * under analysis goes into its worker's window for the side it went to, with whether it
 * failed and how long it took; the main thread's canary run (canary_run.c) judges the
 * windows every interval. The side itself was chosen before the chain (request.c), once
 * a request. */
#include "filter.h"
#include "request.h"

static int wanted(const px_listener_conf_t *lc, const px_route_conf_t *rc) {
  (void)lc;
  return rc->nsplit && rc->canary.enabled && rc->canary.has_analysis;
}

static void on_end(px_req_t *r, void *state) {
  (void)state;
  const px_route_rt_t *rt = r->route;
  if (!rt->rs || rt->canary < 0 || !r->cluster) return;
  int canary = r->cluster == &r->ws->snap->clusters[rt->conf->split[rt->canary].cluster_index];
  /* A 5xx, the upstream's or this sidecar's own (a failed try, a timeout), fails; so does
   * a request that got no answer at all. */
  int failed = r->status >= 500 || r->status == 0;
  px_route_state_record(rt->rs, r->w->id, canary, failed, (r->end_ns - r->start_ns) / 1000);
}

const px_filter_t px_filter_canary = {.name = "canary", .state_size = 0, .wanted = wanted, .on_end = on_end};
