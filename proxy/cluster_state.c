#include "cluster_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core.h"
#include "log.h"

/* The registry: lists, since clusters are few and are looked up only when a snapshot
 * is built. */
static uv_mutex_t mu;
static uv_once_t once = UV_ONCE_INIT;
static px_cluster_state_t *clusters;
static int nclusters;

static void init(void) { uv_mutex_init(&mu); }

px_cluster_state_t *px_cluster_state_get(const char *name) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  px_cluster_state_t *c = clusters;
  while (c && strcmp(c->name, name) != 0) c = c->next;
  if (!c) {
    c = px_calloc(1, sizeof(*c));
    c->name = px_strdup(name);
    c->next = clusters;
    clusters = c;
    nclusters++;
  }
  c->refs++;
  uv_mutex_unlock(&mu);
  return c;
}

void px_cluster_state_put(px_cluster_state_t *c) {
  uv_mutex_lock(&mu);
  if (--c->refs == 0) {
    px_cluster_state_t **p = &clusters;
    while (*p != c) p = &(*p)->next;
    *p = c->next;
    nclusters--;
    while (c->eps) { /* endpoints are put before their cluster; none is left but by a bug */
      px_endpoint_state_t *e = c->eps;
      c->eps = e->next;
      free(e);
    }
    free(c->name);
    free(c);
  }
  uv_mutex_unlock(&mu);
}

px_endpoint_state_t *px_endpoint_state_get(px_cluster_state_t *c, const char *name) {
  uv_mutex_lock(&mu);
  px_endpoint_state_t *e = c->eps;
  while (e && strcmp(e->name, name) != 0) e = e->next;
  if (!e) {
    e = px_calloc(1, sizeof(*e));
    snprintf(e->name, sizeof(e->name), "%s", name);
    px_breaker_init(&e->breaker, NULL);
    px_health_init(&e->health, NULL);
    e->probe_fd = -1;
    e->next = c->eps;
    c->eps = e;
  }
  e->refs++;
  uv_mutex_unlock(&mu);
  return e;
}

void px_endpoint_state_put(px_cluster_state_t *c, px_endpoint_state_t *e) {
  uv_mutex_lock(&mu);
  if (--e->refs == 0) {
    px_endpoint_state_t **p = &c->eps;
    while (*p != e) p = &(*p)->next;
    *p = e->next;
    px_breaker_destroy(&e->breaker);
    px_health_destroy(&e->health);
    free(e);
  }
  uv_mutex_unlock(&mu);
}

void px_endpoint_breaker_noted(px_cluster_state_t *c, px_endpoint_state_t *e, const char *cluster,
                               const px_breaker_transition_t *tr) {
  if (tr->suppressed != PX_BREAKER_CAUSE_NONE) atomic_fetch_add(&e->suppressed_opens, 1);
  if (!tr->changed) return;
  atomic_fetch_add(&e->transitions[tr->cause], 1);
  if (tr->to == PX_BREAKER_CLOSED && tr->from != PX_BREAKER_CLOSED) atomic_fetch_sub(&c->open_endpoints, 1);
  if (tr->to == PX_BREAKER_OPEN)
    px_warn("circuit breaker of %s in cluster %s: %s -> open (%s), for %llu ms (open %d times in a row)",
            e->name, cluster, px_breaker_state_name(tr->from), px_breaker_cause_name(tr->cause),
            (unsigned long long)tr->open_ms, tr->opens);
  else
    px_info("circuit breaker of %s in cluster %s: %s -> %s (%s)", e->name, cluster,
            px_breaker_state_name(tr->from), px_breaker_state_name(tr->to), px_breaker_cause_name(tr->cause));
}

int px_breaker_room(void *ctx) {
  px_breaker_room_t *r = ctx;
  return px_breaker_cluster_reserve(&r->c->open_endpoints, r->size, r->max_open_percent);
}

int px_cluster_state_count(void) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  int n = nclusters;
  uv_mutex_unlock(&mu);
  return n;
}
