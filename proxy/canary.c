#include "canary.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lb.h"

/* ---- assignment ---------------------------------------------------------------------- */

uint64_t px_canary_key_hash(px_str_t key) {
  /* The load balancers' hash (FNV-1a 64, then px_fmix64: FNV's last bytes barely reach
   * the high bits, which decide the side); fixed for the same reason. */
  return px_lb_hash(key.p, key.n);
}

uint32_t px_canary_bucket(uint64_t h) { return (uint32_t)(((h >> 32) * 10000u) >> 32); }

static uint64_t weight(const int *weights, size_t i) { return weights[i] > 0 ? (uint64_t)weights[i] : 0; }

static int has_canary(size_t n, int canary) { return canary >= 0 && (size_t)canary < n; }

/* The sum of the weights, leaving out entry `skip` (-1: none). */
static uint64_t sum_except(const int *weights, size_t n, int skip) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    if ((int)i != skip) s += weight(weights, i);
  return s;
}

int px_canary_share_bp(const int *weights, size_t n, int canary) {
  if (!has_canary(n, canary)) return 0;
  uint64_t sum = sum_except(weights, n, -1);
  return sum ? (int)(weight(weights, (size_t)canary) * 10000u / sum) : 0;
}

/* floor(x × m / 2^32), exactly and without overflow for any m: x / 2^32 as a fraction in
 * [0, 1) scaled to [0, m). */
static uint64_t scale32(uint32_t x, uint64_t m) { return x * (m >> 32) + ((x * (m & 0xffffffffu)) >> 32); }

/* `r` in [0, 1) scaled to [0, m), m > 0; NaN and values outside clamp to the ends. */
static uint64_t scale_r(double r, uint64_t m) {
  if (!(r > 0)) return 0;
  double t = r * (double)m;
  return t < (double)m ? (uint64_t)t : m - 1;
}

/* The entry whose run of the cumulative weights (entry `skip` left out) holds `pos`,
 * pos < the sum of those weights. */
static int at(const int *weights, size_t n, int skip, uint64_t pos) {
  for (size_t i = 0; i < n; i++) {
    if ((int)i == skip) continue;
    uint64_t w = weight(weights, i);
    if (pos < w) return (int)i;
    pos -= w;
  }
  return -1; /* not reached while pos < sum */
}

/* A weighted choice among the entries other than `skip`: by the key's low 32 bits, or by
 * r; -1 when they all weigh 0. */
static int choose(const int *weights, size_t n, int skip, int has_key, uint64_t key_hash, double r) {
  uint64_t sum = sum_except(weights, n, skip);
  if (sum == 0) return -1;
  return at(weights, n, skip, has_key ? scale32((uint32_t)key_hash, sum) : scale_r(r, sum));
}

static int choose_stable(const int *weights, size_t n, int canary, int has_key, uint64_t key_hash, double r) {
  int i = choose(weights, n, canary, has_key, key_hash, r);
  if (i >= 0) return i;
  for (size_t j = 0; j < n; j++) /* all stable at 0: the first of them, as forced */
    if ((int)j != canary) return (int)j;
  return -1;
}

int px_canary_pick(const int *weights, size_t n, int canary, px_canary_force_t force, int has_key,
                   uint64_t key_hash, double r) {
  if (!has_canary(n, canary)) return choose(weights, n, -1, has_key, key_hash, r);
  if (force == PX_CANARY_FORCE_CANARY) return canary;
  if (force == PX_CANARY_FORCE_STABLE) return choose_stable(weights, n, canary, has_key, key_hash, r);
  if (!has_key) return choose(weights, n, -1, 0, 0, r);
  /* The side depends on the share alone, so moving the share moves a key at most once
   * each way; the stable cluster depends on the stable weights alone. */
  if ((int)px_canary_bucket(key_hash) < px_canary_share_bp(weights, n, canary)) return canary;
  return choose(weights, n, canary, 1, key_hash, r);
}

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int ieq(px_str_t a, const char *s) {
  size_t n = strlen(s);
  if (a.n != n) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)a.p[i];
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    if (c != (unsigned char)s[i]) return 0;
  }
  return 1;
}

px_canary_force_t px_canary_override(px_str_t value) {
  while (value.n && is_blank(value.p[0])) value.p++, value.n--;
  while (value.n && is_blank(value.p[value.n - 1])) value.n--;
  if (ieq(value, "always")) return PX_CANARY_FORCE_CANARY;
  if (ieq(value, "never")) return PX_CANARY_FORCE_STABLE;
  return PX_CANARY_FORCE_NONE;
}

void px_canary_set_share(const int *weights, size_t n, int canary, int share_pct, int *out) {
  if (!has_canary(n, canary) || n == 1) {
    if (out != weights) memmove(out, weights, n * sizeof(*out));
    return;
  }
  int share = share_pct < 0 ? 0 : share_pct > 100 ? 100 : share_pct;
  uint64_t total = sum_except(weights, n, -1);
  if (total == 0) total = 100;
  uint64_t stable = sum_except(weights, n, canary);
  uint64_t cw = (total * (uint64_t)share + 50) / 100;
  uint64_t rest = total - cw;
  size_t nstable = n - 1, largest = n;
  for (size_t i = 0; i < n; i++) { /* everything read before anything is written: out may be weights */
    if ((int)i == canary) continue;
    if (largest == n || weight(weights, i) > weight(weights, largest)) largest = i;
  }
  uint64_t given = 0;
  for (size_t i = 0; i < n; i++) {
    if ((int)i == canary) continue;
    uint64_t w = stable ? rest * weight(weights, i) / stable : rest / nstable;
    out[i] = (int)w;
    given += w;
  }
  out[largest] += (int)(rest - given); /* less than one per stable entry */
  out[canary] = (int)cw;
}

/* ---- analysis windows ---------------------------------------------------------------- */

static size_t hist_index(uint64_t us) {
  if (us < PX_CANARY_HIST_SUB) return (size_t)us;
  int e = 63 - __builtin_clzll(us); /* us in [2^e, 2^(e+1)), e >= SUB_BITS */
  if (e >= PX_CANARY_HIST_MAX_EXP) return PX_CANARY_HIST_BUCKETS - 1;
  int shift = e - PX_CANARY_HIST_SUB_BITS;
  size_t sub = (size_t)(us >> shift) & (PX_CANARY_HIST_SUB - 1);
  return (size_t)(shift + 1) * PX_CANARY_HIST_SUB + sub;
}

/* The largest value bucket `i` holds (not for the last, open-ended bucket). */
static uint64_t hist_upper(size_t i) {
  if (i < PX_CANARY_HIST_SUB) return i;
  int shift = (int)(i / PX_CANARY_HIST_SUB) - 1;
  uint64_t sub = i % PX_CANARY_HIST_SUB;
  return ((PX_CANARY_HIST_SUB + sub + 1) << shift) - 1;
}

void px_canary_window_record(px_canary_window_t *w, int error, uint64_t latency_us) {
  w->requests++;
  if (error) w->errors++;
  if (latency_us > w->max_us) w->max_us = latency_us;
  w->buckets[hist_index(latency_us)]++;
}

void px_canary_window_merge(px_canary_window_t *into, const px_canary_window_t *from) {
  into->requests += from->requests;
  into->errors += from->errors;
  if (from->max_us > into->max_us) into->max_us = from->max_us;
  for (size_t i = 0; i < PX_CANARY_HIST_BUCKETS; i++) into->buckets[i] += from->buckets[i];
}

uint64_t px_canary_window_quantile_us(const px_canary_window_t *w, double q) {
  if (w->requests == 0) return 0;
  if (!(q > 0)) q = 0;
  if (q > 1) q = 1;
  double t = q * (double)w->requests;
  uint64_t rank = (uint64_t)t;
  if ((double)rank < t) rank++; /* ceil */
  if (rank < 1) rank = 1;
  if (rank > w->requests) rank = w->requests;
  uint64_t seen = 0;
  for (size_t i = 0; i < PX_CANARY_HIST_BUCKETS - 1; i++) {
    seen += w->buckets[i];
    if (seen >= rank) return PX_MIN(hist_upper(i), w->max_us);
  }
  return w->max_us;
}

/* ---- the verdict --------------------------------------------------------------------- */

/* A threshold in millionths, so rates compare exactly: 0.07 − 0.05 is 0.020000000000000004
 * in binary, which would fail a canary sitting exactly at max_error_rate_delta 0.02. */
static int64_t ppm(double t) {
  if (t > 2) t = 2; /* a rate is at most 1: any more is "never", and stays in range */
  return (int64_t)(t * 1e6 + 0.5);
}

static double rate(uint64_t errors, uint64_t requests) {
  return requests ? (double)errors / (double)requests : 0;
}

void px_canary_analyze(const px_canary_policy_t *p, const px_canary_window_t *stable,
                       const px_canary_window_t *canary, px_canary_verdict_t *out) {
  memset(out, 0, sizeof(*out));
  uint64_t sr = stable->requests, se = stable->errors, cr = canary->requests, ce = canary->errors;
  uint64_t sp99 = px_canary_window_quantile_us(stable, 0.99);
  uint64_t cp99 = px_canary_window_quantile_us(canary, 0.99);
  out->stable_requests = sr;
  out->canary_requests = cr;
  out->stable_errors = se;
  out->canary_errors = ce;
  out->stable_error_rate = rate(se, sr);
  out->canary_error_rate = rate(ce, cr);
  out->stable_p99_ms = (double)sp99 / 1000;
  out->canary_p99_ms = (double)cp99 / 1000;
  char *why = out->reason;
  size_t len = sizeof(out->reason);

  uint64_t min = p->min_requests > 1 ? (uint64_t)p->min_requests : 1;
  if (sr < min || cr < min) {
    out->kind = PX_CANARY_INSUFFICIENT;
    snprintf(why, len, "insufficient requests: canary %" PRIu64 ", stable %" PRIu64 ", min_requests %d", cr,
             sr, p->min_requests);
    return;
  }
  out->kind = PX_CANARY_FAIL;

  /* ce / cr > t  ⇔  ce × 10^6 > t_ppm × cr; in 128 bits, as counts may be large. */
  if (p->max_error_rate > 0 && (__int128)ce * 1000000 > (__int128)ppm(p->max_error_rate) * cr) {
    out->cause = PX_CANARY_CAUSE_ERROR_RATE;
    snprintf(why, len,
             "error rate %.3f > max_error_rate %.3f (canary %" PRIu64 "/%" PRIu64 ", stable %" PRIu64
             "/%" PRIu64 ")",
             out->canary_error_rate, p->max_error_rate, ce, cr, se, sr);
    return;
  }
  /* ce / cr − se / sr > d  ⇔  (ce × sr − se × cr) × 10^6 > d_ppm × cr × sr. */
  if (p->max_error_rate_delta > 0 &&
      ((__int128)ce * sr - (__int128)se * cr) * 1000000 > (__int128)ppm(p->max_error_rate_delta) * cr * sr) {
    out->cause = PX_CANARY_CAUSE_ERROR_RATE_DELTA;
    snprintf(why, len,
             "error rate %.3f - stable %.3f = %.3f > max_error_rate_delta %.3f (canary %" PRIu64 "/%" PRIu64
             ", stable %" PRIu64 "/%" PRIu64 ")",
             out->canary_error_rate, out->stable_error_rate, out->canary_error_rate - out->stable_error_rate,
             p->max_error_rate_delta, ce, cr, se, sr);
    return;
  }
  uint64_t base = PX_MAX(sp99, (uint64_t)PX_CANARY_LATENCY_FLOOR_US);
  if (p->max_latency_ratio > 0 && (double)cp99 > p->max_latency_ratio * (double)base) {
    out->cause = PX_CANARY_CAUSE_LATENCY;
    if (sp99 >= PX_CANARY_LATENCY_FLOOR_US)
      snprintf(why, len,
               "p99 %.1fms > max_latency_ratio %.2f x stable p99 %.1fms (canary %" PRIu64
               " requests, stable %" PRIu64 ")",
               out->canary_p99_ms, p->max_latency_ratio, out->stable_p99_ms, cr, sr);
    else
      snprintf(why, len,
               "p99 %.1fms > max_latency_ratio %.2f x the %.1fms floor (stable p99 %.3fms; canary %" PRIu64
               " requests, stable %" PRIu64 ")",
               out->canary_p99_ms, p->max_latency_ratio, PX_CANARY_LATENCY_FLOOR_US / 1000.0,
               out->stable_p99_ms, cr, sr);
    return;
  }
  out->kind = PX_CANARY_PASS;
}

/* ---- the run ------------------------------------------------------------------------- */

static int promotes(const px_canary_policy_t *p) { return p->promote_step_pct > 0; }

static int until_pct(const px_canary_policy_t *p) {
  return p->promote_until_pct < 0 ? 0 : p->promote_until_pct > 100 ? 100 : p->promote_until_pct;
}

/* Where a run that is not failing stands at `share`. */
static px_canary_state_t standing(const px_canary_policy_t *p, int share) {
  if (!promotes(p)) return PX_CANARY_OK;
  if (share >= until_pct(p)) return PX_CANARY_PROMOTED;
  return share > 0 ? PX_CANARY_PROMOTING : PX_CANARY_OK;
}

void px_canary_run_start(px_canary_run_t *run, const px_canary_policy_t *p, int share_pct, uint64_t now_ms) {
  memset(run, 0, sizeof(*run));
  run->share_pct = share_pct < 0 ? 0 : share_pct > 100 ? 100 : share_pct;
  run->last_step_ms = now_ms;
  run->state = standing(p, run->share_pct);
}

static void keep_reason(px_canary_run_t *run, const px_canary_verdict_t *v) {
  snprintf(run->reason, sizeof(run->reason), "%s", v->reason);
}

static px_canary_action_t tick(px_canary_run_t *run, const px_canary_policy_t *p,
                               const px_canary_verdict_t *v, uint64_t now_ms) {
  if (run->state == PX_CANARY_ROLLED_BACK || run->state == PX_CANARY_PROMOTED) return PX_CANARY_ACTION_NONE;
  switch (v->kind) {
  case PX_CANARY_INSUFFICIENT: return PX_CANARY_ACTION_NONE;
  case PX_CANARY_FAIL:
    keep_reason(run, v);
    if (p->rollback) {
      run->state = PX_CANARY_ROLLED_BACK;
      run->share_pct = 0;
      return PX_CANARY_ACTION_ROLLBACK;
    }
    if (run->state == PX_CANARY_FAILING) return PX_CANARY_ACTION_NONE;
    run->state = PX_CANARY_FAILING;
    return PX_CANARY_ACTION_FAILING;
  case PX_CANARY_PASS: break;
  }
  if (run->state == PX_CANARY_FAILING) {
    run->state = standing(p, run->share_pct);
    run->last_step_ms = now_ms;
    return PX_CANARY_ACTION_RECOVERED;
  }
  if (run->state != PX_CANARY_PROMOTING || !promotes(p)) return PX_CANARY_ACTION_NONE;
  /* A clock behind the last step (it should not be) waits rather than wraps. */
  if (now_ms < run->last_step_ms || now_ms - run->last_step_ms < p->promote_every_ms)
    return PX_CANARY_ACTION_NONE;
  int next = run->share_pct + p->promote_step_pct;
  run->share_pct = PX_MIN(next, until_pct(p));
  run->last_step_ms = now_ms;
  run->state = standing(p, run->share_pct);
  return PX_CANARY_ACTION_PROMOTE;
}

px_canary_action_t px_canary_run_tick(px_canary_run_t *run, const px_canary_policy_t *p,
                                      const px_canary_verdict_t *v, uint64_t now_ms, int *new_share_pct) {
  px_canary_action_t a = tick(run, p, v, now_ms);
  if (new_share_pct) *new_share_pct = run->share_pct;
  return a;
}

const char *px_canary_state_name(px_canary_state_t s) {
  switch (s) {
  case PX_CANARY_OK: return "ok";
  case PX_CANARY_FAILING: return "failing";
  case PX_CANARY_ROLLED_BACK: return "rolled_back";
  case PX_CANARY_PROMOTING: return "promoting";
  case PX_CANARY_PROMOTED: return "promoted";
  }
  return "unknown";
}

const char *px_canary_cause_name(px_canary_cause_t c) {
  static const char *const names[] = {
#define XX(e, name) name,
      PX_CANARY_CAUSE_MAP(XX)
#undef XX
  };
  return (unsigned)c < PX_CANARY_CAUSE__N ? names[c] : "unknown";
}
