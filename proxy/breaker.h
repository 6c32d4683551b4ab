/* The per-endpoint circuit breaker (SPEC §6), pure decision logic: no sockets, no event
 * loop, no logging; time comes in as `now_ms`, monotonic milliseconds. The I/O layer keeps
 * one px_breaker_t per endpoint for the whole process (in the endpoint's shared state),
 * asks it before each try (admit) and tells it how the try went (report); transitions come
 * back in an out-parameter so the caller logs one line and counts them by cause.
 *
 * closed → open: `consecutive_failures` failures in a row (0 turns this trigger off), or
 *   a failure rate over `window` above `threshold` with at least `min_requests` there;
 *   the caller classifies: 5xx, connect failure, reset and timeout are failures.
 * open → half-open: on the first admit once open_duration × (opens in a row) has passed,
 *   capped at max_open_duration.
 * half-open: exactly half_open_requests probes go through (one given back with
 *   px_breaker_release_probe is replaced); a probe failure re-opens at once, and the
 *   breaker closes when half_open_requests probes have succeeded.
 *
 * Opens in a row: closing from half-open keeps the count, so an endpoint that flaps opens
 * for longer each time; it starts again from zero once the breaker has stayed closed for
 * max_open_duration (the longest penalty it could get), checked when it next opens.
 *
 * Thread safety: every call may come from any thread. A small mutex inside the breaker
 * guards it, taken twice per try (admit, report), each time for a few dozen instructions
 * that never block or allocate. Uncontended, glibc's mutex is one atomic instruction to
 * lock and one to unlock; contention needs two workers finishing a try to the same
 * endpoint in the same few nanoseconds, and then costs a short wait, no more. Next to a
 * proxied request (tens of microseconds at least) that is noise, and it keeps the window,
 * the counters and the state one consistent thing, which atomics one by one would not. */
#ifndef PX_BREAKER_H
#define PX_BREAKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"

/* The values are what the outrigger_circuit_breaker_state gauge reports. */
typedef enum { PX_BREAKER_CLOSED = 0, PX_BREAKER_OPEN = 1, PX_BREAKER_HALF_OPEN = 2 } px_breaker_state_t;

typedef enum {
  PX_BREAKER_ALLOW,       /* go ahead; report the outcome (or drop it if the try is abandoned) */
  PX_BREAKER_ALLOW_PROBE, /* a half-open probe slot is taken: report, or release_probe, exactly once */
  PX_BREAKER_REJECT,      /* open, or half-open with every probe slot taken: try another endpoint */
} px_breaker_admit_t;

typedef enum { PX_BREAKER_SUCCESS, PX_BREAKER_FAILURE } px_breaker_outcome_t;

/* Why a transition happened; also the label of the transitions counter. Closed → open:
 * consecutive_failures, failure_rate; open → half-open: open_elapsed; half-open → open:
 * probe_failed; half-open → closed: probe_succeeded; open or half-open → closed because a
 * reload removed the circuit_breaker block: disabled. */
#define PX_BREAKER_CAUSE_MAP(XX)                                                                             \
  XX(NONE, "none")                                                                                           \
  XX(CONSECUTIVE_FAILURES, "consecutive_failures")                                                           \
  XX(FAILURE_RATE, "failure_rate")                                                                           \
  XX(OPEN_ELAPSED, "open_elapsed")                                                                           \
  XX(PROBE_FAILED, "probe_failed")                                                                           \
  XX(PROBE_SUCCEEDED, "probe_succeeded")                                                                     \
  XX(DISABLED, "disabled")

typedef enum {
#define XX(e, name) PX_BREAKER_CAUSE_##e,
  PX_BREAKER_CAUSE_MAP(XX)
#undef XX
      PX_BREAKER_CAUSE__N
} px_breaker_cause_t;

/* What a call changed, for one log line and the metrics. Zeroed by every call that takes
 * one; `changed` says whether from → to happened. */
typedef struct {
  int changed;
  px_breaker_state_t from, to;
  px_breaker_cause_t cause;
  /* The breaker stayed closed although `suppressed` (a cause) would have opened it:
   * max_open_percent said no. Counted apart; the next failure asks again. */
  px_breaker_cause_t suppressed;
  uint64_t open_ms; /* on a transition to open: how long it stays open */
  int opens;        /* on a transition to open: opens in a row, this one included */
} px_breaker_transition_t;

/* Asked, under the breaker's lock, when closed would turn open: whether the endpoint's
 * cluster lets one more endpoint open (max_open_percent). It must not call back into the
 * same breaker. px_breaker_cluster_reserve is the usual body. */
typedef int (*px_breaker_may_open_cb)(void *ctx);

#define PX_BREAKER_BUCKETS 10 /* the failure-rate window is a ring of this many time buckets */

/* The fields are private: read them through px_breaker_state and px_breaker_snapshot. */
typedef struct px_breaker_s {
  pthread_mutex_t mu;
  atomic_int state; /* px_breaker_state_t; written under mu, read without it */
  int enabled;      /* a circuit_breaker block is configured */
  px_breaker_conf_t conf;
  uint64_t rate_ppm;  /* threshold in millionths, so the comparison is exact */
  uint64_t bucket_ms; /* window / PX_BREAKER_BUCKETS, rounded up */
  uint64_t head;      /* the newest bucket's number: now_ms / bucket_ms */
  uint32_t reqs[PX_BREAKER_BUCKETS], fails[PX_BREAKER_BUCKETS];
  uint64_t win_reqs, win_fails; /* the sums over the ring */
  int consecutive;              /* failures in a row while closed */
  int opens;                    /* opens in a row */
  uint64_t closed_at_ms;        /* when it last closed from half-open */
  uint64_t reopen_at_ms;        /* open: when the next admit turns it half-open */
  int probes;                   /* probe slots taken and not yet reported or released */
  int probe_successes;          /* successful probes in this half-open period */
} px_breaker_t;

/* Starts closed. `conf` is copied (the breaker outlives configuration snapshots); NULL,
 * for a cluster without circuit_breaker, makes a breaker that admits everything. 0, or a
 * negative error code from pthread_mutex_init. */
int px_breaker_init(px_breaker_t *b, const px_breaker_conf_t *conf);
void px_breaker_destroy(px_breaker_t *b);

/* A reload's new settings for a breaker that keeps its state: the numbers apply from the
 * next decision on (an open breaker keeps its reopen time; a new window length starts an
 * empty window). NULL disables: an open or half-open breaker closes (cause "disabled"). */
void px_breaker_configure(px_breaker_t *b, const px_breaker_conf_t *conf, uint64_t now_ms,
                          px_breaker_transition_t *tr);

/* Whether a try may go to this endpoint now. An open breaker whose time is up turns
 * half-open here (reported in `tr`, which may be NULL) and hands out probe slots. */
px_breaker_admit_t px_breaker_admit(px_breaker_t *b, uint64_t now_ms, px_breaker_transition_t *tr);

/* The outcome of a try that admit let through; `was_probe` when admit said ALLOW_PROBE.
 * `may_open` (NULL: always yes) is asked before closed turns open. Outcomes of tries that
 * started before the breaker opened are ignored once it has. 1 when the state changed. */
int px_breaker_report(px_breaker_t *b, uint64_t now_ms, px_breaker_outcome_t outcome, int was_probe,
                      px_breaker_may_open_cb may_open, void *ctx, px_breaker_transition_t *tr);

/* Gives back the slot of a probe whose outcome says nothing about the endpoint (the
 * request was abandoned, or failed before reaching it), so another probe may go. */
void px_breaker_release_probe(px_breaker_t *b);

/* The state as of the last call; without a lock. An open breaker past its reopen time
 * still reads open until an admit turns it half-open. */
px_breaker_state_t px_breaker_state(const px_breaker_t *b);

/* For GET /clusters. */
typedef struct {
  px_breaker_state_t state;
  int enabled;
  int consecutive_failures;
  /* Closed: in the window ending now. Open or half-open: as they were when it opened. */
  uint64_t window_requests, window_failures;
  int opens;             /* opens in a row (0 once the reset rule applies) */
  uint64_t reopen_at_ms; /* open: when it may turn half-open; else 0 */
  int probes_in_flight;
  int probe_successes;
} px_breaker_snapshot_t;

/* The breaker as of `now_ms`, buckets past the window dropped; one consistent reading. */
void px_breaker_snapshot(px_breaker_t *b, uint64_t now_ms, px_breaker_snapshot_t *out);

/* "closed", "open", "half_open"; and the cause names of PX_BREAKER_CAUSE_MAP. */
const char *px_breaker_state_name(px_breaker_state_t s);
const char *px_breaker_cause_name(px_breaker_cause_t c);

/* max_open_percent: whether one more endpoint of a cluster of `size` may open when `open`
 * of them are open (or half-open) now: at most max_open_percent% of them, and one always. */
int px_breaker_cluster_may_open(int open, int size, int max_open_percent);

/* The same, taking the slot: increments `*open` if one more may open, atomically, so two
 * endpoints opening at once cannot both take the last slot. 1 when taken. The caller gives
 * the slot back (atomic_fetch_sub) on the endpoint's transition to closed. */
int px_breaker_cluster_reserve(atomic_int *open, int size, int max_open_percent);

#endif
