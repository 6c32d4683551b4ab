#include "canary_run.h"

#include "log.h"

void px_canary_policy_of(const px_canary_conf_t *c, px_canary_policy_t *p) {
  *p = (px_canary_policy_t){.min_requests = c->min_requests,
                            .max_error_rate = c->max_error_rate,
                            .max_error_rate_delta = c->max_error_rate_delta,
                            .max_latency_ratio = c->max_latency_ratio,
                            .rollback = c->on_fail_rollback,
                            .promote_step_pct = c->has_promote ? c->promote_step : 0,
                            .promote_every_ms = c->promote_every_ms,
                            .promote_until_pct = c->has_promote ? c->promote_until : 0};
}

int px_canary_share_now(const px_route_rt_t *rt) {
  int w[PX_SPLIT_MAX];
  px_route_weights_read(rt->rs, w);
  return (px_canary_share_bp(w, rt->rs->n, rt->canary) + 50) / 100;
}

void px_canary_restart(const px_route_rt_t *rt, uint64_t now_ms) {
  if (!rt->rs || !rt->conf->canary.has_analysis) return;
  px_canary_policy_t p;
  px_canary_policy_of(&rt->conf->canary, &p);
  px_canary_run_start(&rt->rs->run, &p, px_canary_share_now(rt), now_ms);
  rt->rs->run_started = 1;
  rt->rs->next_ms = now_ms + rt->conf->canary.interval_ms;
  rt->rs->have_last = 0;
  px_canary_window_t a, b; /* the old share's answers are not the new one's */
  px_route_state_take(rt->rs, &a, &b);
}

/* Gives the canary `pct` percent of the traffic, as one set of weights. */
static void set_share(const px_route_rt_t *rt, int pct) {
  int w[PX_SPLIT_MAX], out[PX_SPLIT_MAX];
  px_route_weights_read(rt->rs, w);
  px_canary_set_share(w, rt->rs->n, rt->canary, pct, out);
  px_route_weights_write(rt->rs, out, 1);
}

/* The canary's weight to 0, the others as they are (SPEC §7); when they are all 0 (the
 * canary had everything), they share the whole sum again. */
static void rollback(const px_route_rt_t *rt) {
  int w[PX_SPLIT_MAX];
  px_route_weights_read(rt->rs, w);
  long others = 0;
  for (size_t k = 0; k < rt->rs->n; k++)
    if ((int)k != rt->canary) others += w[k];
  if (others == 0) {
    set_share(rt, 0);
    return;
  }
  w[rt->canary] = 0;
  px_route_weights_write(rt->rs, w, 1);
}

static void judge(const px_listener_rt_t *lr, const px_route_rt_t *rt, uint64_t now_ms) {
  px_route_state_t *rs = rt->rs;
  const px_canary_conf_t *cc = &rt->conf->canary;
  if (!rs->run_started) {
    px_canary_restart(rt, now_ms);
    return;
  }
  if (now_ms < rs->next_ms) return;
  rs->next_ms = now_ms + cc->interval_ms;
  px_canary_policy_t p;
  px_canary_policy_of(cc, &p);
  px_canary_window_t stable, canary;
  px_route_state_take(rs, &stable, &canary);
  px_canary_analyze(&p, &stable, &canary, &rs->last);
  rs->have_last = 1;
  atomic_fetch_add(&rs->analyses[rs->last.kind], 1);
  int share = 0;
  const char *route = rt->conf->name, *listener = lr->conf->name, *cl = rt->conf->split[rt->canary].cluster;
  switch (px_canary_run_tick(&rs->run, &p, &rs->last, now_ms, &share)) {
  case PX_CANARY_ACTION_ROLLBACK:
    rollback(rt);
    atomic_fetch_add(&rs->rollbacks, 1);
    px_warn("canary: route %s of listener %s: %s rolled back to weight 0: %s", route, listener, cl,
            rs->last.reason);
    break;
  case PX_CANARY_ACTION_PROMOTE:
    set_share(rt, share);
    atomic_fetch_add(&rs->promotions, 1);
    px_info(
        "canary: route %s of listener %s: %s promoted to %d%% (%s; error rate canary %.3f, stable %.3f; p99 "
        "canary %.1f ms, stable %.1f ms)",
        route, listener, cl, share, rs->run.state == PX_CANARY_PROMOTED ? "done" : "analysis passed",
        rs->last.canary_error_rate, rs->last.stable_error_rate, rs->last.canary_p99_ms,
        rs->last.stable_p99_ms);
    break;
  case PX_CANARY_ACTION_FAILING:
    px_warn("canary: route %s of listener %s: %s is failing (on_fail: none, weights kept): %s", route,
            listener, cl, rs->last.reason);
    break;
  case PX_CANARY_ACTION_RECOVERED:
    px_info("canary: route %s of listener %s: %s passes its analysis again", route, listener, cl);
    break;
  case PX_CANARY_ACTION_NONE: break;
  }
}

void px_canary_tick(px_snapshot_t *s, uint64_t now_ms) {
  for (size_t l = 0; l < s->cfg->nlisteners; l++) {
    const px_listener_rt_t *lr = &s->listeners[l];
    for (size_t r = 0; r < lr->conf->nroutes; r++) {
      const px_route_rt_t *rt = &lr->routes[r];
      if (rt->rs && rt->canary >= 0 && rt->conf->canary.has_analysis) judge(lr, rt, now_ms);
    }
  }
}
