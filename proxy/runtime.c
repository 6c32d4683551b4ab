#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "net.h"

px_snapshot_t *px_snapshot_new(px_config_t *cfg, int nworkers, unsigned generation) {
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
    c->neps = c->conf->nendpoints;
    c->st = px_cluster_state_get(c->conf->name);
    c->eps = px_calloc(c->neps, sizeof(*c->eps));
    for (size_t e = 0; e < c->neps; e++) {
      c->eps[e].conf = &c->conf->endpoints[e];
      px_addr_format((const struct sockaddr *)&c->eps[e].conf->sa, c->eps[e].name, sizeof(c->eps[e].name));
      c->eps[e].st = px_endpoint_state_get(c->st, c->eps[e].name);
    }
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
      if (rt->conf->nsplit) {
        rt->weights = px_calloc(rt->conf->nsplit, sizeof(*rt->weights));
        for (size_t k = 0; k < rt->conf->nsplit; k++) atomic_init(&rt->weights[k], rt->conf->split[k].weight);
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
    free(s->clusters[i].eps);
  }
  free(s->clusters);
  for (size_t l = 0; l < s->cfg->nlisteners; l++) {
    for (size_t r = 0; r < s->listeners[l].conf->nroutes; r++) free(s->listeners[l].routes[r].weights);
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

px_cluster_t *px_route_pick_cluster(px_snapshot_t *s, const px_route_rt_t *rt, double r) {
  const px_route_conf_t *rc = rt->conf;
  if (rc->nsplit == 0) return &s->clusters[rc->cluster_index];
  /* One read of each weight: the admin API may change them meanwhile, and a pick
   * must be made from one consistent set (else a weight-0 entry could win). */
  int w[64];
  size_t n = PX_MIN(rc->nsplit, PX_ARRAY_SIZE(w));
  long total = 0;
  for (size_t k = 0; k < n; k++) total += w[k] = atomic_load_explicit(&rt->weights[k], memory_order_relaxed);
  if (total <= 0) return NULL;
  long pick = (long)(r * (double)total);
  size_t k = 0;
  while (k < n && (pick -= w[k]) >= 0) k++;
  return &s->clusters[rc->split[PX_MIN(k, n - 1)].cluster_index];
}

size_t px_cluster_pick(px_cluster_t *c, int wid, uint64_t exclude) {
  unsigned *rr = &c->per_worker[wid].rr;
  for (size_t tries = 0; tries < c->neps; tries++) {
    size_t i = (*rr)++ % c->neps;
    if (i >= 64 || !(exclude & (1ull << i))) return i;
  }
  return (*rr)++ % c->neps;
}
