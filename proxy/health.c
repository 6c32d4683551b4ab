#include "health.h"

#include <limits.h>
#include <string.h>

static px_health_state_t get_state(const px_health_t *h) {
  return (px_health_state_t)atomic_load_explicit(&h->state, memory_order_relaxed);
}

static void set_conf(px_health_t *h, const px_health_conf_t *conf) {
  h->enabled = conf != NULL;
  if (!conf) return;
  /* The config allows 1..1000; below 1 would flip on no evidence at all. */
  h->unhealthy_threshold = conf->unhealthy_threshold > 0 ? conf->unhealthy_threshold : 1;
  h->healthy_threshold = conf->healthy_threshold > 0 ? conf->healthy_threshold : 1;
}

static void transition(px_health_t *h, px_health_state_t to, int probes, px_health_transition_t *tr) {
  px_health_state_t from = get_state(h);
  atomic_store_explicit(&h->state, (int)to, memory_order_relaxed);
  /* The runs go on: GET /clusters shows how long an endpoint has been failing. */
  if (tr) *tr = (px_health_transition_t){.changed = 1, .from = from, .to = to, .probes = probes};
}

int px_health_init(px_health_t *h, const px_health_conf_t *conf) {
  memset(h, 0, sizeof(*h));
  int rc = pthread_mutex_init(&h->mu, NULL);
  if (rc != 0) return -rc;
  atomic_init(&h->state, PX_HEALTH_HEALTHY);
  set_conf(h, conf);
  return 0;
}

void px_health_destroy(px_health_t *h) { pthread_mutex_destroy(&h->mu); }

void px_health_configure(px_health_t *h, const px_health_conf_t *conf, px_health_transition_t *tr) {
  if (tr) memset(tr, 0, sizeof(*tr));
  pthread_mutex_lock(&h->mu);
  set_conf(h, conf);
  if (!h->enabled) {
    if (get_state(h) != PX_HEALTH_HEALTHY) transition(h, PX_HEALTH_HEALTHY, 0, tr);
    h->failures = h->successes = 0;
  }
  pthread_mutex_unlock(&h->mu);
}

int px_health_report(px_health_t *h, int ok, px_health_transition_t *tr) {
  px_health_transition_t local;
  if (!tr) tr = &local;
  memset(tr, 0, sizeof(*tr));
  pthread_mutex_lock(&h->mu);
  if (h->enabled) {
    /* Each result breaks the other kind's run: only results in a row count. */
    if (ok) {
      h->failures = 0;
      if (h->successes < INT_MAX) h->successes++; /* a healthy endpoint runs up years of them */
      if (get_state(h) == PX_HEALTH_UNHEALTHY && h->successes >= h->healthy_threshold)
        transition(h, PX_HEALTH_HEALTHY, h->successes, tr);
    } else {
      h->successes = 0;
      if (h->failures < INT_MAX) h->failures++;
      if (get_state(h) == PX_HEALTH_HEALTHY && h->failures >= h->unhealthy_threshold)
        transition(h, PX_HEALTH_UNHEALTHY, h->failures, tr);
    }
  }
  pthread_mutex_unlock(&h->mu);
  return tr->changed;
}

px_health_state_t px_health_state(const px_health_t *h) { return get_state(h); }

void px_health_snapshot(px_health_t *h, px_health_snapshot_t *out) {
  pthread_mutex_lock(&h->mu);
  *out = (px_health_snapshot_t){
      .state = get_state(h), .enabled = h->enabled, .failures = h->failures, .successes = h->successes};
  pthread_mutex_unlock(&h->mu);
}

const char *px_health_state_name(px_health_state_t s) {
  return s == PX_HEALTH_HEALTHY ? "healthy" : s == PX_HEALTH_UNHEALTHY ? "unhealthy" : "unknown";
}

int px_health_probe_ok(int status) { return status >= 200 && status <= 299; }
