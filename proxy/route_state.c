#include "route_state.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "buf.h"
#include "core.h"

/* The registry: a list, since split routes are few and are looked up only when a
 * snapshot is built. */
static uv_mutex_t mu;
static uv_once_t once = UV_ONCE_INIT;
static px_route_state_t *states;

static void init(void) { uv_mutex_init(&mu); }

/* The split as the file gives it, one string: "LEN:cluster=weight[*]," per entry, '*'
 * for the canary; the name's length first, so no name can pass for two. */
static char *signature(const px_route_conf_t *rc) {
  px_buf_t b = {0};
  for (size_t k = 0; k < rc->nsplit; k++)
    px_buf_printf(&b, "%zu:%s=%d%s,", strlen(rc->split[k].cluster), rc->split[k].cluster, rc->split[k].weight,
                  rc->split[k].canary ? "*" : "");
  px_buf_append(&b, "", 1);
  return b.data;
}

static px_route_state_t *state_new(const char *listener, const px_route_conf_t *rc, int nworkers, char *sig) {
  px_route_state_t *s = px_calloc(1, sizeof(*s));
  s->nworkers = nworkers > 0 ? nworkers : 1;
  s->slots = px_calloc((size_t)s->nworkers, sizeof(*s->slots));
  for (int w = 0; w < s->nworkers; w++) pthread_mutex_init(&s->slots[w].mu, NULL);
  atomic_init(&s->rollbacks, 0);
  atomic_init(&s->promotions, 0);
  s->listener = px_strdup(listener);
  s->route = px_strdup(rc->name);
  s->split_sig = sig;
  s->n = PX_MIN(rc->nsplit, (size_t)PX_SPLIT_MAX);
  for (size_t k = 0; k < PX_SPLIT_MAX; k++) {
    atomic_init(&s->weights[k], k < s->n ? rc->split[k].weight : 0);
  }
  atomic_init(&s->set_at_run_time, 0);
  atomic_init(&s->seq, 0);
  s->next = states;
  states = s;
  return s;
}

/* Takes a state out of the registry; the snapshots that hold it keep it to their end. */
static void detach(px_route_state_t *s) {
  px_route_state_t **p = &states;
  while (*p && *p != s) p = &(*p)->next;
  if (*p) *p = s->next;
  s->next = NULL;
  s->detached = 1;
}

px_route_state_t *px_route_state_get(const char *listener, const px_route_conf_t *rc, int nworkers,
                                     int *kept) {
  uv_once(&once, init);
  char *sig = signature(rc);
  *kept = 0;
  uv_mutex_lock(&mu);
  px_route_state_t *s = states;
  while (s && (strcmp(s->listener, listener) != 0 || strcmp(s->route, rc->name) != 0)) s = s->next;
  if (s && strcmp(s->split_sig, sig) != 0) { /* the file changed the split: start again */
    detach(s);
    s = NULL;
  }
  if (!s) {
    s = state_new(listener, rc, nworkers, sig);
  } else {
    free(sig);
    *kept = atomic_load(&s->set_at_run_time);
  }
  s->refs++;
  uv_mutex_unlock(&mu);
  return s;
}

void px_route_state_put(px_route_state_t *s) {
  uv_mutex_lock(&mu);
  if (--s->refs == 0) {
    if (!s->detached) detach(s);
    free(s->listener);
    free(s->route);
    free(s->split_sig);
    for (int w = 0; w < s->nworkers; w++) pthread_mutex_destroy(&s->slots[w].mu);
    free(s->slots);
    free(s);
  }
  uv_mutex_unlock(&mu);
}

void px_route_weights_read(px_route_state_t *s, int *out) {
  unsigned a, b;
  do {
    a = atomic_load_explicit(&s->seq, memory_order_acquire);
    for (size_t k = 0; k < s->n; k++) out[k] = atomic_load_explicit(&s->weights[k], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    b = atomic_load_explicit(&s->seq, memory_order_relaxed);
  } while ((a & 1) || a != b);
}

void px_route_weights_write(px_route_state_t *s, const int *w, int run_time) {
  unsigned q = atomic_load_explicit(&s->seq, memory_order_relaxed);
  atomic_store_explicit(&s->seq, q + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  for (size_t k = 0; k < s->n; k++) atomic_store_explicit(&s->weights[k], w[k], memory_order_relaxed);
  atomic_store_explicit(&s->seq, q + 2, memory_order_release);
  atomic_store(&s->set_at_run_time, run_time);
}

void px_route_state_count(px_route_state_t *s, int wid, size_t k) {
  if (wid < 0 || wid >= s->nworkers || k >= PX_SPLIT_MAX) return;
  atomic_ullong *c = &s->slots[wid].requests[k];
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

uint64_t px_route_requests(const px_route_state_t *s, size_t k) {
  uint64_t n = 0;
  for (int w = 0; w < s->nworkers; w++)
    n += atomic_load_explicit(&s->slots[w].requests[k], memory_order_relaxed);
  return n;
}

void px_route_state_record(px_route_state_t *s, int wid, int canary, int failed, uint64_t latency_us) {
  if (wid < 0 || wid >= s->nworkers) return;
  px_canary_slot_t *sl = &s->slots[wid];
  pthread_mutex_lock(&sl->mu);
  px_canary_window_record(&sl->win[canary ? 1 : 0], failed, latency_us);
  pthread_mutex_unlock(&sl->mu);
}

void px_route_state_take(px_route_state_t *s, px_canary_window_t *stable, px_canary_window_t *canary) {
  memset(stable, 0, sizeof(*stable));
  memset(canary, 0, sizeof(*canary));
  for (int w = 0; w < s->nworkers; w++) {
    px_canary_slot_t *sl = &s->slots[w];
    pthread_mutex_lock(&sl->mu);
    px_canary_window_merge(stable, &sl->win[0]);
    px_canary_window_merge(canary, &sl->win[1]);
    memset(sl->win, 0, sizeof(sl->win));
    pthread_mutex_unlock(&sl->mu);
  }
}
