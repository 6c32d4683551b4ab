/* The canary's decisions (SPEC §7), pure: which cluster of a split a request goes to,
 * sticky and monotone when the route hashes a key; the weights that give the canary a
 * share; the per-interval figures of each side and the verdict on them; and the run that
 * turns verdicts into a rollback or the next promotion step. No sockets, no event loop,
 * no logging, no allocation, no globals: time comes in as `now_ms`, monotonic
 * milliseconds, and randomness as `r`, uniform in [0, 1), so every decision can be
 * replayed in a test. The I/O layer reads the override and sticky headers, calls
 * px_canary_pick per request, records each answer in its worker's window, and every
 * analysis interval sums the workers' windows, asks px_canary_analyze and hands the
 * verdict to px_canary_run_tick; it logs, counts and applies what comes back.
 *
 * Weights are the split's, one per cluster of the route, `canary` the index of the canary
 * entry (-1 when the route has none; an index past the end counts as none too). Negative
 * weights count as 0 (the configuration allows 0..10000). Nothing here locks: a window
 * belongs to one worker, and the run to the one timer that analyses the route. */
#ifndef PX_CANARY_H
#define PX_CANARY_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

/* ---- assignment ---------------------------------------------------------------------- */

/* The hash of a sticky key (the header's or cookie's value, as sent): FNV-1a 64 over its
 * bytes, then murmur3's fmix64 so that every bit of the result depends on every byte.
 * Unseeded on purpose: every sidecar, in every process, after every restart and on every
 * machine, must put the same key on the same side. It is therefore fixed forever:
 * changing it (or the seed it does not have) moves users between stable and canary. */
uint64_t px_canary_key_hash(px_str_t key);

/* A hash's position in basis points, 0..9999, from its high 32 bits scaled (not a modulo,
 * which would favour the low buckets). px_canary_pick keeps the low 32 bits for the choice
 * among stable clusters, so the two are independent. */
uint32_t px_canary_bucket(uint64_t h);

/* The canary's share of the traffic in basis points, floor(weights[canary] × 10000 / sum);
 * 0 when the weights sum to 0 or there is no canary. A canary worth less than a basis
 * point (weight 1 of 20000) gets no keyed traffic: 1 bp is the sticky resolution. */
int px_canary_share_bp(const int *weights, size_t n, int canary);

typedef enum { PX_CANARY_FORCE_NONE, PX_CANARY_FORCE_CANARY, PX_CANARY_FORCE_STABLE } px_canary_force_t;

/* The override header's value: "always" forces the canary, "never" the stable side, in
 * any case and with spaces or tabs around it; anything else (empty, "yes", "al ways")
 * forces nothing, so a typo falls back to the ordinary split rather than failing. */
px_canary_force_t px_canary_override(px_str_t value);

/* The index of the cluster a request goes to, or -1 when nothing can take it.
 *
 * Forced canary: the canary, even at weight 0 (that is what the header is for: trying a
 *   canary nobody else sees). Without a canary the force is ignored.
 * Forced stable: a non-canary entry by their weights (by the key when `has_key`, else by
 *   `r`); if they all weigh 0, the first non-canary entry; -1 when the split has no
 *   non-canary entry at all ("never" is never). Without a canary the force is ignored.
 * A key, no force: the canary iff px_canary_bucket(key_hash) < px_canary_share_bp. As in
 *   nginx's split_clients, raising the canary's share only moves keys from stable to
 *   canary and lowering it only moves them back. A key on the stable side picks among the
 *   non-canary entries by their weights with the hash's low 32 bits, so it stays on the
 *   same stable cluster while the stable weights keep their proportions.
 * No key, no force: a weighted draw over all entries with `r`.
 * No canary: a plain weighted choice over all entries, by the key's low 32 bits when
 *   `has_key`, else by `r`.
 * -1 otherwise only when every weight that could apply is 0. `r` outside [0, 1) is clamped
 * into it; it is not read when the key decides. */
int px_canary_pick(const int *weights, size_t n, int canary, px_canary_force_t force, int has_key,
                   uint64_t key_hash, double r);

/* Writes into `out` (n entries; it may be `weights` itself) weights that give the canary
 * `share_pct` percent (clamped to 0..100) of the traffic: the canary gets
 * round(sum × share_pct / 100) and the stable entries the rest in their present
 * proportions, rounded down, the remainder to the largest of them (the first on a tie) so
 * the sum is exactly the old sum (100 when it was 0). Stable entries all at 0 share the
 * rest equally. {90,10} canary 1 at 20 gives {80,20}; {45,45,10} canary 2 at 50 gives
 * {25,25,50}; at 0 the canary gets 0 and the stables the whole sum. Without a canary, or
 * when the split has only the canary (nothing else could take its traffic), `out` is the
 * weights unchanged. The sum may exceed a single weight's bound (10000): the caller
 * checks if it applies one. */
void px_canary_set_share(const int *weights, size_t n, int canary, int share_pct, int *out);

/* ---- analysis windows ---------------------------------------------------------------- */

/* Latency histogram: exact microseconds below 16, then 16 buckets per power of two up to
 * 2^27 µs (134 s), and one bucket above. A bucket spans at most 1/16 of its lower bound,
 * so its upper bound is within 6.25% of any value in it (8 per octave would be 12.5%). */
#define PX_CANARY_HIST_SUB_BITS 4
#define PX_CANARY_HIST_SUB (1 << PX_CANARY_HIST_SUB_BITS)
#define PX_CANARY_HIST_MAX_EXP 27 /* values from 2^27 µs go to the last bucket */
#define PX_CANARY_HIST_BUCKETS                                                                               \
  (PX_CANARY_HIST_SUB * (PX_CANARY_HIST_MAX_EXP - PX_CANARY_HIST_SUB_BITS + 1) + 1)

/* One side's requests over one interval. A plain struct: zero it to start, copy it, merge
 * one into another; the caller keeps one per side per worker and sums them each interval.
 * About 3 KiB. */
typedef struct {
  uint64_t requests;
  uint64_t errors;
  uint64_t max_us; /* the slowest request recorded, for the last bucket's bound */
  uint64_t buckets[PX_CANARY_HIST_BUCKETS];
} px_canary_window_t;

/* One answered (or failed) request: its latency in microseconds counts in the histogram
 * whether or not it was an error; the caller decides what an error is (SPEC: 5xx, connect
 * failure, reset, timeout). */
void px_canary_window_record(px_canary_window_t *w, int error, uint64_t latency_us);

/* Adds `from` into `into`: the same as if every request of `from` had been recorded there. */
void px_canary_window_merge(px_canary_window_t *into, const px_canary_window_t *from);

/* The q-quantile (q in [0, 1], clamped) by nearest rank: the upper bound of the bucket
 * holding the ceil(q × requests)-th fastest request, never above the slowest recorded.
 * 0 for an empty window (and for a window of 0 µs requests). */
uint64_t px_canary_window_quantile_us(const px_canary_window_t *w, double q);

/* ---- the verdict --------------------------------------------------------------------- */

/* Stable p99s below this count as this when judging latency: on loopback both sides
 * answer in tens of microseconds, and a ratio of two noises would fail good canaries. */
#define PX_CANARY_LATENCY_FLOOR_US 1000

typedef struct {
  int min_requests;            /* each side needs at least this many (and at least 1) */
  double max_error_rate;       /* canary errors / requests above this fails; <= 0 disables */
  double max_error_rate_delta; /* canary rate − stable rate above this fails; <= 0 disables */
  double max_latency_ratio;    /* canary p99 above this × stable p99 (floored) fails; <= 0 disables */
  int rollback;                /* on_fail: rollback (1) or none (0) */
  int promote_step_pct;        /* percent added per step; 0 = no promotion */
  uint64_t promote_every_ms;   /* at least this long between steps */
  int promote_until_pct;       /* promotion stops at this share (0..100) */
} px_canary_policy_t;

typedef enum { PX_CANARY_INSUFFICIENT, PX_CANARY_PASS, PX_CANARY_FAIL } px_canary_verdict_kind_t;

/* Which figure failed; also the label of the rollback metric. */
#define PX_CANARY_CAUSE_MAP(XX)                                                                              \
  XX(NONE, "none")                                                                                           \
  XX(ERROR_RATE, "error_rate")                                                                               \
  XX(ERROR_RATE_DELTA, "error_rate_delta")                                                                   \
  XX(LATENCY, "latency")

typedef enum {
#define XX(e, name) PX_CANARY_CAUSE_##e,
  PX_CANARY_CAUSE_MAP(XX)
#undef XX
      PX_CANARY_CAUSE__N
} px_canary_cause_t;

#define PX_CANARY_REASON_MAX 256

typedef struct {
  px_canary_verdict_kind_t kind;
  px_canary_cause_t cause; /* on FAIL; else NONE */
  uint64_t stable_requests, canary_requests;
  uint64_t stable_errors, canary_errors;
  double stable_error_rate, canary_error_rate; /* 0 for a side without requests */
  double stable_p99_ms, canary_p99_ms;
  /* On FAIL the figure that failed and its numbers, e.g. "error rate 0.120 >
   * max_error_rate 0.050 (canary 12/100, stable 1/100)"; on INSUFFICIENT the counts that
   * fell short; empty on PASS. */
  char reason[PX_CANARY_REASON_MAX];
} px_canary_verdict_t;

/* Judges one interval. INSUFFICIENT when either side has fewer than min_requests (or no)
 * requests: too few to say anything, so neither a pass nor a failure. Otherwise FAIL on
 * the first of, in this order: the canary's error rate above max_error_rate; its rate
 * minus stable's above max_error_rate_delta; its p99 above max_latency_ratio ×
 * max(stable p99, PX_CANARY_LATENCY_FLOOR_US). Else PASS. Rates compare exactly, with the
 * thresholds taken to the millionth: 5/100 against 0.05 and 7/100 − 5/100 against 0.02
 * are at the threshold, not above it. */
void px_canary_analyze(const px_canary_policy_t *p, const px_canary_window_t *stable,
                       const px_canary_window_t *canary, px_canary_verdict_t *out);

/* ---- the run ------------------------------------------------------------------------- */

/* GET /canary's analysis.state. ROLLED_BACK and PROMOTED are final until an operator's
 * weight change (or a reload) starts a new run. */
typedef enum {
  PX_CANARY_OK,
  PX_CANARY_FAILING,
  PX_CANARY_ROLLED_BACK,
  PX_CANARY_PROMOTING,
  PX_CANARY_PROMOTED,
} px_canary_state_t;

typedef enum {
  PX_CANARY_ACTION_NONE,
  PX_CANARY_ACTION_ROLLBACK,  /* set the canary's share to 0 (px_canary_set_share); log, count */
  PX_CANARY_ACTION_PROMOTE,   /* set the canary's share to *new_share_pct */
  PX_CANARY_ACTION_FAILING,   /* on_fail none: it fails; weights stay, promotion pauses */
  PX_CANARY_ACTION_RECOVERED, /* failing, then a pass: judged good again */
} px_canary_action_t;

typedef struct {
  px_canary_state_t state;
  int share_pct;         /* the canary share being steered, percent */
  uint64_t last_step_ms; /* the run's start, its last promotion step or its recovery */
  /* The last failure's reason, kept after a recovery so GET /canary still says what
   * happened; empty until a failure. */
  char reason[PX_CANARY_REASON_MAX];
} px_canary_run_t;

/* Starts a run at `share_pct` (clamped to 0..100): PROMOTING when promotion is configured
 * and 0 < share < promote_until_pct, PROMOTED when it is configured and the share is
 * already there, else OK. A canary at 0% is not promoted: it gets no requests to be judged
 * by, so it would wait forever; it shows "ok" until someone gives it a share. */
void px_canary_run_start(px_canary_run_t *run, const px_canary_policy_t *p, int share_pct, uint64_t now_ms);

/* One analysis interval's verdict. `*new_share_pct` (if not NULL) is always written: the
 * canary's share after the tick.
 *   FAIL: ROLLBACK (share 0, rolled_back) with p->rollback; else FAILING on the way into
 *     failing and NONE while it stays there. The reason is kept either way.
 *   PASS: RECOVERED when failing (back to promoting or ok; the step clock starts again,
 *     so the canary passes for a whole promote_every_ms before it grows); PROMOTE when
 *     promoting and promote_every_ms has passed since the last step: the share grows by
 *     promote_step_pct, capped at promote_until_pct, and the run is promoted once there.
 *   INSUFFICIENT: NONE; nothing fails, recovers or promotes.
 * rolled_back and promoted are final: NONE. A policy changed by a reload applies from the
 * next tick; start a new run if promotion was added or removed. */
px_canary_action_t px_canary_run_tick(px_canary_run_t *run, const px_canary_policy_t *p,
                                      const px_canary_verdict_t *v, uint64_t now_ms, int *new_share_pct);

/* "ok", "failing", "rolled_back", "promoting", "promoted"; and the cause names of
 * PX_CANARY_CAUSE_MAP. */
const char *px_canary_state_name(px_canary_state_t s);
const char *px_canary_cause_name(px_canary_cause_t c);

#endif
