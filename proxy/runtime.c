#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "net.h"

/* Endpoint e of cluster c: its counters and breaker and health configured by this file. */
static void endpoint_setup(px_cluster_t *c, px_endpoint_t *ep) {
  ep->st = px_endpoint_state_get(c->st, ep->name);
  /* The endpoint keeps its breaker across reloads; the numbers are this file's. */
  px_breaker_transition_t tr;
  px_breaker_configure(&ep->st->breaker, c->conf->has_breaker ? &c->conf->breaker : NULL, px_now_ms(), &tr);
  px_endpoint_breaker_noted(c->st, ep->st, c->conf->name, &tr);
  px_health_transition_t ht;
  px_health_configure(&ep->st->health, c->conf->has_health_check ? &c->conf->health : NULL, &ht);
  if (ht.changed)
    px_info("health of %s in cluster %s: %s (the configuration changed)", ep->name, c->conf->name,
            px_health_state_name(ht.to));
}

px_snapshot_t *px_snapshot_new(px_config_t *cfg, int nworkers, unsigned generation, px_disc_lookup_fn lookup,
                               void *lookup_ctx) {
  px_snapshot_t *s = px_calloc(1, sizeof(*s));
  s->cfg = cfg;
  atomic_init(&s->refs, 1);
  s->generation = generation;
  s->nworkers = nworkers;
  s->clusters = px_calloc(cfg->nclusters, sizeof(*s->clusters));
  for (size_t i = 0; i < cfg->nclusters; i++) {
    px_cluster_t *c = &s->clusters[i];
    c->conf = &cfg->clusters[i];
    c->index = (int)i;
    c->metric_slot = px_metrics_cluster_slot(c->conf->name);
    c->st = px_cluster_state_get(c->conf->name);
    if (c->conf->has_discovery) {
      px_disc_view_t v = {0};
      if (lookup) lookup(lookup_ctx, c->conf, &v);
      c->neps = v.n;
      c->disc_revision = v.revision;
      c->disc_stale = v.stale;
      c->eps = px_calloc(c->neps ? c->neps : 1, sizeof(*c->eps));
      for (size_t e = 0; e < c->neps; e++) {
        px_endpoint_t *ep = &c->eps[e];
        snprintf(ep->name, sizeof(ep->name), "%s", v.eps[e].name);
        ep->own.sa = v.eps[e].sa;
        ep->own.text = ep->name;
        ep->conf = &ep->own;
        ep->weight = v.eps[e].weight;
        ep->discovered = 1;
        ep->revision = v.eps[e].revision;
        c->weighted |= ep->weight != 1;
        endpoint_setup(c, ep);
      }
    } else {
      c->neps = c->conf->nendpoints;
      c->eps = px_calloc(c->neps, sizeof(*c->eps));
      for (size_t e = 0; e < c->neps; e++) {
        px_endpoint_t *ep = &c->eps[e];
        ep->conf = &c->conf->endpoints[e];
        ep->weight = 1;
        px_addr_format((const struct sockaddr *)&ep->conf->sa, ep->name, sizeof(ep->name));
        endpoint_setup(c, ep);
      }
    }
    size_t nn = PX_MIN(c->neps, PX_LB_MAX_ENDPOINTS);
    const char **names = px_calloc(nn ? nn : 1, sizeof(*names));
    int *weights = px_calloc(nn ? nn : 1, sizeof(*weights));
    for (size_t e = 0; e < nn; e++) {
      names[e] = c->eps[e].name;
      weights[e] = c->eps[e].weight;
    }
    if (nn == 0 || px_lb_build(&c->lb, c->conf->lb, names, weights, nn, NULL) != 0) c->lb = NULL;
    free(names);
    free(weights);
    c->per_worker = px_calloc((size_t)nworkers, sizeof(*c->per_worker));
    for (int w = 0; w < nworkers; w++) c->per_worker[w].rr = (unsigned)w; /* spread starts */
  }
  s->listeners = px_calloc(cfg->nlisteners, sizeof(*s->listeners));
  for (size_t l = 0; l < cfg->nlisteners; l++) {
    px_listener_rt_t *lr = &s->listeners[l];
    lr->conf = &cfg->listeners[l];
    lr->metric_slot = px_metrics_listener_slot(lr->conf->name);
    lr->routes = px_calloc(lr->conf->nroutes, sizeof(*lr->routes));
    for (size_t r = 0; r < lr->conf->nroutes; r++) {
      px_route_rt_t *rt = &lr->routes[r];
      rt->conf = &lr->conf->routes[r];
      rt->metric_slot = px_metrics_route_slot(lr->conf->name, rt->conf->name);
      rt->canary = -1;
      if (rt->conf->nsplit) {
        int kept = 0;
        rt->rs = px_route_state_get(lr->conf->name, rt->conf, nworkers, &kept);
        for (size_t k = 0; k < rt->conf->nsplit; k++)
          if (rt->conf->split[k].canary) rt->canary = (int)k;
        if (kept)
          px_info(
              "route %s of listener %s keeps the weights set at run time (its split in the file is unchanged)",
              rt->conf->name, lr->conf->name);
      }
    }
  }
  return s;
}

void px_snapshot_ref(px_snapshot_t *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }

void px_snapshot_unref(px_snapshot_t *s) {
  if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    for (int w = 0; w < s->nworkers; w++) free(s->clusters[i].per_worker[w].pools);
    free(s->clusters[i].per_worker);
    for (size_t e = 0; e < s->clusters[i].neps; e++)
      px_endpoint_state_put(s->clusters[i].st, s->clusters[i].eps[e].st);
    px_cluster_state_put(s->clusters[i].st);
    px_lb_free(s->clusters[i].lb);
    free(s->clusters[i].eps);
  }
  free(s->clusters);
  for (size_t l = 0; l < s->cfg->nlisteners; l++) {
    for (size_t r = 0; r < s->listeners[l].conf->nroutes; r++)
      if (s->listeners[l].routes[r].rs) px_route_state_put(s->listeners[l].routes[r].rs);
    free(s->listeners[l].routes);
  }
  free(s->listeners);
  px_config_free(s->cfg);
  free(s);
}

px_listener_rt_t *px_snapshot_listener(px_snapshot_t *s, const char *name) {
  for (size_t l = 0; l < s->cfg->nlisteners; l++)
    if (strcmp(s->listeners[l].conf->name, name) == 0) return &s->listeners[l];
  return NULL;
}

static void cluster_health(const px_cluster_t *c, int *checked, int *healthy) {
  if (!c->conf->has_health_check) return;
  *checked = 1;
  for (size_t e = 0; e < c->neps && !*healthy; e++)
    *healthy = px_health_state(&c->eps[e].st->health) == PX_HEALTH_HEALTHY;
}

int px_snapshot_listener_healthy(px_snapshot_t *s, const char *name) {
  px_listener_rt_t *l = px_snapshot_listener(s, name);
  if (!l) return 1;
  int checked = 0, healthy = 0;
  for (size_t r = 0; r < l->conf->nroutes && !healthy; r++) {
    const px_route_conf_t *rc = &l->conf->routes[r];
    if (rc->cluster_index >= 0) cluster_health(&s->clusters[rc->cluster_index], &checked, &healthy);
    for (size_t k = 0; k < rc->nsplit; k++)
      cluster_health(&s->clusters[rc->split[k].cluster_index], &checked, &healthy);
  }
  return healthy || !checked;
}

px_cluster_t *px_route_pick(px_snapshot_t *s, int wid, const px_route_rt_t *rt, px_canary_force_t force,
                            int has_key, uint64_t key_hash, double r) {
  const px_route_conf_t *rc = rt->conf;
  if (rc->nsplit == 0) return &s->clusters[rc->cluster_index];
  /* One consistent set: the admin API may change them meanwhile. */
  int w[PX_SPLIT_MAX];
  px_route_weights_read(rt->rs, w);
  int k = px_canary_pick(w, rt->rs->n, rt->canary, force, has_key, key_hash, r);
  if (k < 0) return NULL;
  px_route_state_count(rt->rs, wid, (size_t)k);
  return &s->clusters[rc->split[k].cluster_index];
}

typedef struct {
  px_cluster_t *c;
  uint64_t exclude, now_ms;
} pick_ctx_t;

static int ctx_usable(void *data, size_t i) {
  const pick_ctx_t *x = data;
  if (i < 64 && (x->exclude & (1ull << i))) return 0;
  if (x->c->conf->has_health_check && px_health_state(&x->c->eps[i].st->health) == PX_HEALTH_UNHEALTHY)
    return 0;
  if (!x->c->conf->has_breaker) return 1;
  /* An open breaker refuses; one whose time is up is worth asking (admit turns it
   * half-open), so it reads usable here without its state changing. */
  px_breaker_t *b = &x->c->eps[i].st->breaker;
  if (px_breaker_state(b) != PX_BREAKER_OPEN) return 1;
  px_breaker_snapshot_t sn;
  px_breaker_snapshot(b, x->now_ms, &sn);
  return x->now_ms >= sn.reopen_at_ms;
}

/* least_request: requests in flight at the endpoint, all workers together. */
static int ctx_active(void *data, size_t i) {
  const pick_ctx_t *x = data;
  return atomic_load_explicit(&x->c->eps[i].st->active_requests, memory_order_relaxed);
}

/* The balancer's pick, avoiding `exclude` and open breakers; -1 when none is usable. */
static int lb_pick(px_cluster_t *c, int wid, uint64_t exclude, uint64_t hash, int has_hash, uint64_t now_ms) {
  unsigned *rr = &c->per_worker[wid].rr;
  pick_ctx_t ctx = {c, exclude, now_ms};
  px_lb_in_t in = {.hash = hash,
                   .has_hash = has_hash,
                   .ticket = (*rr)++,
                   .usable = exclude || c->conf->has_breaker || c->conf->has_health_check ? ctx_usable : NULL,
                   .active = ctx_active,
                   .data = &ctx};
  px_lb_kind_t k = c->conf->lb;
  int hashed = k == PX_LB_RING_HASH || k == PX_LB_MAGLEV;
  if (k == PX_LB_RANDOM || k == PX_LB_LEAST_REQUEST || (hashed && !has_hash)) { /* keyless: at random */
    in.rand[0] = px_rand64();
    in.rand[1] = px_rand64();
  }
  return px_lb_pick(c->lb, &in);
}

int px_cluster_pick(px_cluster_t *c, int wid, uint64_t exclude, uint64_t hash, int has_hash, uint64_t now,
                    int *probe) {
  *probe = 0;
  unsigned *rr = &c->per_worker[wid].rr;
  /* The usual case in one step: a first try, round robin (what px_lb_pick gives for it),
   * no breaker; or more endpoints than the balancer takes. */
  if ((exclude == 0 && c->conf->lb == PX_LB_ROUND_ROBIN && !c->conf->has_breaker &&
       !c->conf->has_health_check && !c->weighted) ||
      PX_UNLIKELY(c->lb == NULL))
    return (int)((*rr)++ % c->neps);
  uint64_t refused = 0; /* by their breakers, at admission */
  for (size_t tries = 0; tries <= c->neps; tries++) {
    int i = lb_pick(c, wid, exclude | refused, hash, has_hash, now);
    if (i < 0 && exclude) /* every endpoint tried: any that its breaker lets through */
      i = lb_pick(c, wid, refused, hash, has_hash, now);
    if (i < 0) { /* no healthy endpoint at all, or every healthy one open */
      if (c->conf->has_health_check) {
        size_t healthy = 0;
        for (size_t e = 0; e < c->neps; e++)
          healthy += px_health_state(&c->eps[e].st->health) == PX_HEALTH_HEALTHY;
        if (healthy == 0) return -2;
      }
      return -1;
    }
    if (!c->conf->has_breaker) return i;
    px_breaker_transition_t tr;
    px_breaker_admit_t a = px_breaker_admit(&c->eps[i].st->breaker, now, &tr);
    px_endpoint_breaker_noted(c->st, c->eps[i].st, c->conf->name, &tr);
    if (a != PX_BREAKER_REJECT) {
      *probe = a == PX_BREAKER_ALLOW_PROBE;
      return i;
    }
    if (i >= 64) return -1; /* cannot be told apart from the others: give up */
    refused |= 1ull << i;
  }
  return -1;
}
