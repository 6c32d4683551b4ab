#include "breaker.h"

#include <limits.h>
#include <string.h>

/* ---- the failure-rate window ---------------------------------------------------------- */

/* Buckets are numbered by absolute time (now_ms / bucket_ms), so moving to now clears
 * exactly the buckets whose time has passed since the newest one, and a breaker that saw
 * nothing for a whole window starts empty. A failure therefore counts for between
 * window − window/10 and window: the oldest bucket leaves whole. */
static void window_clear(px_breaker_t *b) {
  memset(b->reqs, 0, sizeof(b->reqs));
  memset(b->fails, 0, sizeof(b->fails));
  b->win_reqs = b->win_fails = 0;
}

static void window_advance(px_breaker_t *b, uint64_t now_ms) {
  uint64_t t = now_ms / b->bucket_ms;
  /* Workers read the clock before taking the lock, so one may come in with a time a
   * little behind the last: it counts in the newest bucket. */
  if (t <= b->head) return;
  if (t - b->head >= PX_BREAKER_BUCKETS) {
    window_clear(b);
  } else {
    for (uint64_t n = b->head + 1; n <= t; n++) {
      size_t i = (size_t)(n % PX_BREAKER_BUCKETS);
      b->win_reqs -= b->reqs[i];
      b->win_fails -= b->fails[i];
      b->reqs[i] = b->fails[i] = 0;
    }
  }
  b->head = t;
}

static void window_add(px_breaker_t *b, uint64_t now_ms, int failed) {
  window_advance(b, now_ms);
  size_t i = (size_t)(b->head % PX_BREAKER_BUCKETS);
  b->reqs[i]++;
  b->win_reqs++;
  if (failed) {
    b->fails[i]++;
    b->win_fails++;
  }
}

/* failures / requests > threshold, in integers: 0.57 × 100 is 56.99999999999999 in binary. */
static int rate_exceeded(const px_breaker_t *b) {
  return b->win_reqs >= (uint64_t)b->conf.rate_min_requests &&
         b->win_fails * 1000000u > b->rate_ppm * b->win_reqs;
}

/* ---- settings ------------------------------------------------------------------------ */

static void set_conf(px_breaker_t *b, const px_breaker_conf_t *conf) {
  uint64_t old_bucket = b->bucket_ms;
  b->enabled = conf != NULL;
  if (!conf) return;
  b->conf = *conf;
  if (b->conf.half_open_requests < 1) b->conf.half_open_requests = 1; /* config allows 1..1000 */
  b->rate_ppm = (uint64_t)(conf->rate_threshold * 1e6 + 0.5);
  uint64_t w = conf->rate_window_ms ? conf->rate_window_ms : 1;
  b->bucket_ms = (w + PX_BREAKER_BUCKETS - 1) / PX_BREAKER_BUCKETS;
  if (b->bucket_ms != old_bucket) { /* the buckets would mean other times now */
    window_clear(b);
    b->head = 0;
  }
}

int px_breaker_init(px_breaker_t *b, const px_breaker_conf_t *conf) {
  memset(b, 0, sizeof(*b));
  int rc = pthread_mutex_init(&b->mu, NULL);
  if (rc != 0) return -rc;
  atomic_init(&b->state, PX_BREAKER_CLOSED);
  set_conf(b, conf);
  return 0;
}

void px_breaker_destroy(px_breaker_t *b) { pthread_mutex_destroy(&b->mu); }

/* ---- transitions --------------------------------------------------------------------- */

static void tr_clear(px_breaker_transition_t *tr) {
  if (tr) memset(tr, 0, sizeof(*tr));
}

static void tr_set(px_breaker_transition_t *tr, px_breaker_state_t from, px_breaker_state_t to,
                   px_breaker_cause_t cause) {
  if (!tr) return;
  tr->changed = 1;
  tr->from = from;
  tr->to = to;
  tr->cause = cause;
}

static px_breaker_state_t get_state(const px_breaker_t *b) {
  return (px_breaker_state_t)atomic_load_explicit(&b->state, memory_order_relaxed);
}

static void set_state(px_breaker_t *b, px_breaker_state_t s) {
  atomic_store_explicit(&b->state, (int)s, memory_order_relaxed);
}

/* Whether opens in a row starts again: the breaker has been closed, since it last closed,
 * for as long as the longest open time. */
static int opens_expired(const px_breaker_t *b, uint64_t now_ms) {
  return get_state(b) == PX_BREAKER_CLOSED && b->opens > 0 && now_ms >= b->closed_at_ms &&
         now_ms - b->closed_at_ms >= b->conf.max_open_duration_ms;
}

/* open_duration × opens, capped; saturating, since both come from the file. */
static uint64_t open_time(const px_breaker_conf_t *c, int opens) {
  uint64_t d = c->open_duration_ms, n = (uint64_t)opens;
  if (d != 0 && n > c->max_open_duration_ms / d) return c->max_open_duration_ms;
  d *= n;
  return d < c->max_open_duration_ms ? d : c->max_open_duration_ms;
}

static void to_open(px_breaker_t *b, uint64_t now_ms, px_breaker_cause_t cause, px_breaker_transition_t *tr) {
  px_breaker_state_t from = get_state(b);
  if (opens_expired(b, now_ms)) b->opens = 0;
  if (b->opens < 1000000) b->opens++; /* past that the cap has long applied */
  uint64_t d = open_time(&b->conf, b->opens);
  b->reopen_at_ms = now_ms + d;
  b->probe_successes = 0;
  /* The run and the window stay as they were, for GET /clusters to show what opened it;
   * nothing counts there until the breaker closes and clears them. */
  set_state(b, PX_BREAKER_OPEN);
  tr_set(tr, from, PX_BREAKER_OPEN, cause);
  if (tr) {
    tr->open_ms = d;
    tr->opens = b->opens;
  }
}

static void to_closed(px_breaker_t *b, uint64_t now_ms, px_breaker_cause_t cause,
                      px_breaker_transition_t *tr) {
  px_breaker_state_t from = get_state(b);
  b->closed_at_ms = now_ms;
  b->reopen_at_ms = 0;
  b->consecutive = 0;
  b->probe_successes = 0;
  window_clear(b); /* each closed period judges the endpoint afresh */
  set_state(b, PX_BREAKER_CLOSED);
  tr_set(tr, from, PX_BREAKER_CLOSED, cause);
}

void px_breaker_configure(px_breaker_t *b, const px_breaker_conf_t *conf, uint64_t now_ms,
                          px_breaker_transition_t *tr) {
  tr_clear(tr);
  pthread_mutex_lock(&b->mu);
  set_conf(b, conf);
  px_breaker_state_t s = get_state(b);
  if (!b->enabled) { /* no breaking: forget the past, so enabling it again starts clean */
    if (s != PX_BREAKER_CLOSED) to_closed(b, now_ms, PX_BREAKER_CAUSE_DISABLED, tr);
    b->consecutive = 0;
    b->opens = 0;
    window_clear(b);
  } else if (s == PX_BREAKER_HALF_OPEN && b->probe_successes >= b->conf.half_open_requests) {
    /* Fewer probes are asked for now, and enough have passed: no report would come to
     * close it, since admit hands out no more slots. */
    to_closed(b, now_ms, PX_BREAKER_CAUSE_PROBE_SUCCEEDED, tr);
  }
  pthread_mutex_unlock(&b->mu);
}

/* ---- admit, report, release ---------------------------------------------------------- */

px_breaker_admit_t px_breaker_admit(px_breaker_t *b, uint64_t now_ms, px_breaker_transition_t *tr) {
  tr_clear(tr);
  /* Closed (or disabled, which stays closed) admits all and changes nothing: no lock for
   * the case of nearly every request. A breaker that opens meanwhile is a try admitted
   * just before it opened, which report already takes as late news. */
  if (get_state(b) == PX_BREAKER_CLOSED) return PX_BREAKER_ALLOW;
  pthread_mutex_lock(&b->mu);
  px_breaker_admit_t r = PX_BREAKER_ALLOW;
  if (b->enabled) {
    px_breaker_state_t s = get_state(b);
    if (s == PX_BREAKER_OPEN && now_ms >= b->reopen_at_ms) {
      b->probe_successes = 0;
      set_state(b, PX_BREAKER_HALF_OPEN);
      tr_set(tr, PX_BREAKER_OPEN, PX_BREAKER_HALF_OPEN, PX_BREAKER_CAUSE_OPEN_ELAPSED);
      s = PX_BREAKER_HALF_OPEN;
    }
    if (s == PX_BREAKER_OPEN) {
      r = PX_BREAKER_REJECT;
    } else if (s == PX_BREAKER_HALF_OPEN) {
      /* A period needs half_open_requests successes; more slots than that are never out,
       * so no more probes than that are ever in flight. */
      if (b->probes + b->probe_successes < b->conf.half_open_requests) {
        b->probes++;
        r = PX_BREAKER_ALLOW_PROBE;
      } else {
        r = PX_BREAKER_REJECT;
      }
    }
  }
  pthread_mutex_unlock(&b->mu);
  return r;
}

static void give_back_probe(px_breaker_t *b) {
  if (b->probes > 0) b->probes--;
}

/* A closed breaker's outcome: into the window and the run of failures, then the triggers. */
static void report_closed(px_breaker_t *b, uint64_t now_ms, int failed, px_breaker_may_open_cb may_open,
                          void *ctx, px_breaker_transition_t *tr) {
  window_add(b, now_ms, failed);
  /* Saturating: with consecutive_failures 0, or opening held back, the run may go on. */
  if (!failed)
    b->consecutive = 0;
  else if (b->consecutive < INT_MAX)
    b->consecutive++;
  px_breaker_cause_t cause = PX_BREAKER_CAUSE_NONE;
  if (b->conf.consecutive_failures > 0 && b->consecutive >= b->conf.consecutive_failures)
    cause = PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES;
  else if (rate_exceeded(b))
    cause = PX_BREAKER_CAUSE_FAILURE_RATE;
  if (cause == PX_BREAKER_CAUSE_NONE) return;
  if (!may_open || may_open(ctx)) {
    to_open(b, now_ms, cause, tr);
  } else if (tr) {
    tr->suppressed = cause; /* the counts stay: the next outcome asks again */
  }
}

int px_breaker_report(px_breaker_t *b, uint64_t now_ms, px_breaker_outcome_t outcome, int was_probe,
                      px_breaker_may_open_cb may_open, void *ctx, px_breaker_transition_t *tr) {
  px_breaker_transition_t local;
  if (!tr) tr = &local;
  tr_clear(tr);
  int failed = outcome == PX_BREAKER_FAILURE;
  pthread_mutex_lock(&b->mu);
  if (was_probe) give_back_probe(b);
  if (b->enabled) {
    switch (get_state(b)) {
    case PX_BREAKER_CLOSED:
      /* A probe reports here only when a reload closed the breaker while it was out: its
       * outcome is an ordinary one now. */
      report_closed(b, now_ms, failed, may_open, ctx, tr);
      break;
    case PX_BREAKER_OPEN:
      /* A try admitted before the breaker opened, or a probe of a half-open period that
       * another probe's failure ended: the breaker has decided, late news does not move it. */
      break;
    case PX_BREAKER_HALF_OPEN:
      /* Only probes judge a half-open endpoint. A probe from an earlier half-open period
       * (it outlived the open time in between) counts for this one: it is news from the
       * endpoint as it is now. */
      if (!was_probe) break;
      if (failed) {
        to_open(b, now_ms, PX_BREAKER_CAUSE_PROBE_FAILED, tr);
      } else if (++b->probe_successes >= b->conf.half_open_requests) {
        to_closed(b, now_ms, PX_BREAKER_CAUSE_PROBE_SUCCEEDED, tr);
      }
      break;
    }
  }
  pthread_mutex_unlock(&b->mu);
  return tr->changed;
}

void px_breaker_release_probe(px_breaker_t *b) {
  pthread_mutex_lock(&b->mu);
  give_back_probe(b);
  pthread_mutex_unlock(&b->mu);
}

/* ---- reading ------------------------------------------------------------------------- */

px_breaker_state_t px_breaker_state(const px_breaker_t *b) { return get_state(b); }

void px_breaker_snapshot(px_breaker_t *b, uint64_t now_ms, px_breaker_snapshot_t *out) {
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&b->mu);
  out->state = get_state(b);
  out->enabled = b->enabled;
  if (b->enabled && out->state == PX_BREAKER_CLOSED) window_advance(b, now_ms); /* expiry is lazy */
  out->consecutive_failures = b->consecutive;
  out->window_requests = b->win_reqs;
  out->window_failures = b->win_fails;
  out->opens = opens_expired(b, now_ms) ? 0 : b->opens;
  out->reopen_at_ms = out->state == PX_BREAKER_OPEN ? b->reopen_at_ms : 0;
  out->probes_in_flight = b->probes;
  out->probe_successes = b->probe_successes;
  pthread_mutex_unlock(&b->mu);
}

const char *px_breaker_state_name(px_breaker_state_t s) {
  switch (s) {
  case PX_BREAKER_CLOSED: return "closed";
  case PX_BREAKER_OPEN: return "open";
  case PX_BREAKER_HALF_OPEN: return "half_open";
  }
  return "unknown";
}

const char *px_breaker_cause_name(px_breaker_cause_t c) {
  static const char *const names[] = {
#define XX(e, name) name,
      PX_BREAKER_CAUSE_MAP(XX)
#undef XX
  };
  return (unsigned)c < PX_BREAKER_CAUSE__N ? names[c] : "unknown";
}

/* ---- max_open_percent ---------------------------------------------------------------- */

int px_breaker_cluster_may_open(int open, int size, int max_open_percent) {
  if (open <= 0) return 1; /* one endpoint may always open, whatever the share */
  /* (open + 1) / size <= max_open_percent / 100, without rounding */
  return (int64_t)(open + 1) * 100 <= (int64_t)max_open_percent * size;
}

int px_breaker_cluster_reserve(atomic_int *open, int size, int max_open_percent) {
  int cur = atomic_load(open);
  while (px_breaker_cluster_may_open(cur, size, max_open_percent)) {
    if (atomic_compare_exchange_weak(open, &cur, cur + 1)) return 1;
  }
  return 0;
}
