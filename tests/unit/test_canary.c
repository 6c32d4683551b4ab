/* The canary's decisions (proxy/canary.h). What a user relies on: a sticky key lands on
 * the same side and the same stable cluster on every call and every sidecar (the hash is
 * pinned here), raising the canary's share only moves keys to the canary and lowering it
 * only moves them back, unkeyed traffic splits by weight, the override header forces a
 * side even at weight 0; set_share keeps the sum and the stables' proportions; the
 * latency histogram is within 10% and merges exactly; a verdict names the figure that
 * failed with its numbers; and the run rolls back, fails and recovers, promotes step by
 * step only after passes, and stays put once rolled back or promoted. Randomness and time
 * are passed in: nothing here sleeps or draws from the process. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "canary.h"

#define SEC 1000u

/* splitmix64: a small deterministic PRNG, so every run draws the same numbers. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static double rng01(uint64_t *s) { return (double)(rng_next(s) >> 11) * 0x1p-53; }

/* The hash of "key-<i>". */
static uint64_t key(int i) {
  char b[32];
  int n = snprintf(b, sizeof(b), "key-%d", i);
  return px_canary_key_hash((px_str_t){b, (size_t)n});
}

static px_str_t str(const char *s) { return (px_str_t){s, strlen(s)}; }

/* |count − n·p| within 4 binomial standard deviations. */
static void expect_share(uint64_t count, uint64_t n, double p, const char *what) {
  double mean = (double)n * p, sd = sqrt((double)n * p * (1 - p));
  cr_expect_leq(fabs((double)count - mean), 4 * sd + 1e-9, "%s: %llu of %llu, expected %.0f ± %.0f", what,
                (unsigned long long)count, (unsigned long long)n, mean, 4 * sd);
}

/* ---- hashing and buckets ------------------------------------------------------------- */

Test(canary, the_hash_is_pinned_forever) {
  /* Changing any of these moves users between stable and canary on upgrade. */
  cr_expect_eq(px_canary_key_hash(str("")), 0xefd01f60ba992926u);
  cr_expect_eq(px_canary_key_hash(str("a")), 0x82a2a958a9bece5bu);
  cr_expect_eq(px_canary_key_hash(str("user-42")), 0xa39532c7ab051e8du);
  cr_expect_eq(px_canary_key_hash(str("alice@example.com")), 0x53e4b3bc79050458u);
  cr_expect_eq(px_canary_bucket(px_canary_key_hash(str("user-42"))), 6389);
  /* Only the bytes count, not what follows them. */
  cr_expect_eq(px_canary_key_hash((px_str_t){"user-42x", 7}), px_canary_key_hash(str("user-42")));
}

Test(canary, buckets_span_0_to_9999_evenly) {
  cr_expect_eq(px_canary_bucket(0), 0);
  cr_expect_eq(px_canary_bucket(UINT64_MAX), 9999);
  cr_expect_eq(px_canary_bucket(0xffffffffu), 0, "the low bits do not move the bucket");
  cr_expect_eq(px_canary_bucket((uint64_t)1 << 63), 5000);
  int decile[10] = {0};
  for (int i = 0; i < 100000; i++) {
    uint32_t b = px_canary_bucket(key(i));
    cr_assert_lt(b, 10000);
    decile[b / 1000]++;
  }
  for (int d = 0; d < 10; d++)
    cr_expect(abs(decile[d] - 10000) <= 400, "decile %d: %d of 100000", d, decile[d]);
}

Test(canary, share_in_basis_points) {
  int w[] = {90, 10};
  cr_expect_eq(px_canary_share_bp(w, 2, 1), 1000);
  cr_expect_eq(px_canary_share_bp(w, 2, 0), 9000);
  int thirds[] = {1, 2};
  cr_expect_eq(px_canary_share_bp(thirds, 2, 1), 6666, "rounded down");
  int zero[] = {0, 0};
  cr_expect_eq(px_canary_share_bp(zero, 2, 1), 0);
  cr_expect_eq(px_canary_share_bp(w, 2, -1), 0);
  cr_expect_eq(px_canary_share_bp(w, 2, 2), 0, "an index past the end is no canary");
  int tiny[] = {10000, 10000, 1};
  cr_expect_eq(px_canary_share_bp(tiny, 3, 2), 0);
}

/* ---- sticky assignment --------------------------------------------------------------- */

Test(canary, raising_the_share_only_moves_keys_to_the_canary_and_lowering_only_back) {
  enum { KEYS = 1000 };
  static int side[KEYS], stable_at[KEYS];
  for (int k = 0; k < KEYS; k++) stable_at[k] = -1;
  /* Stables at 2:1 whatever the share, so a stable key keeps its stable cluster too. */
  for (int up = 1; up >= 0; up--) {
    for (int step = 0; step <= 100; step++) {
      int s = (up ? step : 100 - step) * 100; /* the canary's share, bp */
      int w[] = {2 * (10000 - s), 10000 - s, 3 * s};
      cr_assert_eq(px_canary_share_bp(w, 3, 2), s);
      int on_canary = 0;
      for (int k = 0; k < KEYS; k++) {
        int c = px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 1, key(k), 0.5);
        cr_assert(c >= 0 && c <= 2);
        int now = c == 2;
        if (step > 0 && up) cr_assert(now || !side[k], "share %d bp: key %d left the canary", s, k);
        if (step > 0 && !up) cr_assert(!now || side[k], "share %d bp: key %d joined the canary", s, k);
        side[k] = now;
        on_canary += now;
        if (!now) {
          if (stable_at[k] < 0) stable_at[k] = c;
          cr_assert_eq(c, stable_at[k], "share %d bp: key %d changed stable cluster", s, k);
        }
      }
      if (s == 0) cr_expect_eq(on_canary, 0);
      if (s == 10000) cr_expect_eq(on_canary, KEYS);
    }
  }
}

Test(canary, a_key_keeps_its_side_and_its_stable_cluster) {
  int w[] = {30, 60, 10};
  int more_canary[] = {30, 60, 40}; /* the stable weights unchanged */
  uint64_t rng = 1;
  for (int k = 0; k < 1000; k++) {
    uint64_t h = key(k);
    int first = px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 1, h, rng01(&rng));
    for (int again = 0; again < 5; again++)
      cr_assert_eq(px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 1, h, rng01(&rng)), first,
                   "r does not matter");
    int later = px_canary_pick(more_canary, 3, 2, PX_CANARY_FORCE_NONE, 1, h, 0);
    if (first == 2) cr_assert_eq(later, 2);
    if (later != 2)
      cr_assert_eq(later, first, "key %d: same stable cluster while the stables are unchanged", k);
    /* "never" sends a stable key where it would have gone anyway. */
    if (first != 2) cr_assert_eq(px_canary_pick(w, 3, 2, PX_CANARY_FORCE_STABLE, 1, h, 0), first);
  }
}

Test(canary, keys_split_by_the_share_and_the_stable_weights) {
  int w[] = {60, 30, 10};
  uint64_t n = 100000, count[3] = {0};
  for (uint64_t k = 0; k < n; k++) count[px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 1, key((int)k), 0)]++;
  expect_share(count[2], n, 0.1, "canary");
  expect_share(count[0], n - count[2], 2.0 / 3, "first stable among stable keys");
}

/* ---- weighted random ----------------------------------------------------------------- */

Test(canary, requests_without_a_key_split_by_weight) {
  int w[] = {70, 20, 10};
  uint64_t n = 100000, count[3] = {0}, rng = 42;
  for (uint64_t i = 0; i < n; i++) count[px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 0, 0, rng01(&rng))]++;
  expect_share(count[0], n, 0.7, "stable a");
  expect_share(count[1], n, 0.2, "stable b");
  expect_share(count[2], n, 0.1, "canary");

  /* No canary: plain weights, by r or by key. */
  int two[] = {1, 3};
  uint64_t by_r = 0, by_key = 0;
  for (uint64_t i = 0; i < n; i++) {
    by_r += px_canary_pick(two, 2, -1, PX_CANARY_FORCE_NONE, 0, 0, rng01(&rng)) == 1;
    by_key += px_canary_pick(two, 2, -1, PX_CANARY_FORCE_NONE, 1, key((int)i), 0) == 1;
  }
  expect_share(by_r, n, 0.75, "no canary, by r");
  expect_share(by_key, n, 0.75, "no canary, by key");
}

Test(canary, r_at_the_ends_and_weights_at_zero) {
  int w[] = {0, 5, 0, 5};
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 0, 0, 0.0), 1);
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 0, 0, 0.999999999), 3);
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 0, 0, 1.0), 3, "clamped");
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 0, 0, -3), 1, "clamped");
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 0, 0, NAN), 1);
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 1, 0, 0.9), 1, "the key decides, not r");
  cr_expect_eq(px_canary_pick(w, 4, -1, PX_CANARY_FORCE_NONE, 1, 0xffffffffu, 0), 3);
  int neg[] = {-5, 5};
  cr_expect_eq(px_canary_pick(neg, 2, -1, PX_CANARY_FORCE_NONE, 0, 0, 0.0), 1, "a negative weight is 0");
  int zero[] = {0, 0};
  cr_expect_eq(px_canary_pick(zero, 2, 1, PX_CANARY_FORCE_NONE, 0, 0, 0.5), -1);
  cr_expect_eq(px_canary_pick(zero, 2, 1, PX_CANARY_FORCE_NONE, 1, key(1), 0.5), -1);
  cr_expect_eq(px_canary_pick(zero, 2, -1, PX_CANARY_FORCE_NONE, 0, 0, 0.5), -1);
  cr_expect_eq(px_canary_pick(NULL, 0, -1, PX_CANARY_FORCE_NONE, 0, 0, 0.5), -1);
}

/* ---- overrides ----------------------------------------------------------------------- */

Test(canary, override_values) {
  cr_expect_eq(px_canary_override(str("always")), PX_CANARY_FORCE_CANARY);
  cr_expect_eq(px_canary_override(str(" ALWAYS\t")), PX_CANARY_FORCE_CANARY);
  cr_expect_eq(px_canary_override(str("Never")), PX_CANARY_FORCE_STABLE);
  cr_expect_eq(px_canary_override(str("\t never  ")), PX_CANARY_FORCE_STABLE);
  const char *nothing[] = {"", " ", "yes", "true", "1", "alwaysx", "al ways", "nev", "never!", "\"always\""};
  for (size_t i = 0; i < PX_ARRAY_SIZE(nothing); i++)
    cr_expect_eq(px_canary_override(str(nothing[i])), PX_CANARY_FORCE_NONE, "\"%s\"", nothing[i]);
  cr_expect_eq(px_canary_override((px_str_t){NULL, 0}), PX_CANARY_FORCE_NONE);
  cr_expect_eq(px_canary_override((px_str_t){"neverland", 5}), PX_CANARY_FORCE_STABLE, "only its n bytes");
}

Test(canary, overrides_force_a_side_both_ways) {
  uint64_t rng = 7;
  int w[] = {50, 50, 0}; /* the canary at weight 0: only the header reaches it */
  for (int i = 0; i < 1000; i++) {
    double r = rng01(&rng);
    cr_assert_eq(px_canary_pick(w, 3, 2, PX_CANARY_FORCE_CANARY, 0, 0, r), 2);
    cr_assert_eq(px_canary_pick(w, 3, 2, PX_CANARY_FORCE_CANARY, 1, key(i), r), 2);
    cr_assert_neq(px_canary_pick(w, 3, 2, PX_CANARY_FORCE_NONE, 1, key(i), r), 2);
  }
  int all_canary[] = {0, 0, 100};
  uint64_t n = 100000, first = 0;
  for (int i = 0; i < 1000; i++) {
    cr_assert_eq(px_canary_pick(all_canary, 3, 2, PX_CANARY_FORCE_NONE, 0, 0, rng01(&rng)), 2);
    cr_assert_eq(px_canary_pick(all_canary, 3, 2, PX_CANARY_FORCE_STABLE, 0, 0, rng01(&rng)), 0,
                 "all stable at 0: the first stable entry");
  }
  int canary_first[] = {100, 0, 0};
  cr_expect_eq(px_canary_pick(canary_first, 3, 0, PX_CANARY_FORCE_STABLE, 1, key(3), 0.5), 1);
  /* Forced stable by weight among the stables: {70, 20} of {70, 20, 10}. */
  int w3[] = {70, 20, 10};
  for (uint64_t i = 0; i < n; i++) {
    int c = px_canary_pick(w3, 3, 2, PX_CANARY_FORCE_STABLE, 0, 0, rng01(&rng));
    cr_assert(c == 0 || c == 1);
    first += c == 0;
  }
  expect_share(first, n, 70.0 / 90, "forced stable");
  /* Nothing to force to. */
  int only[] = {10};
  cr_expect_eq(px_canary_pick(only, 1, 0, PX_CANARY_FORCE_STABLE, 0, 0, 0.5), -1, "never is never");
  cr_expect_eq(px_canary_pick(only, 1, 0, PX_CANARY_FORCE_CANARY, 0, 0, 0.5), 0);
  int zero[] = {0, 0};
  cr_expect_eq(px_canary_pick(zero, 2, 1, PX_CANARY_FORCE_CANARY, 0, 0, 0.5), 1);
  cr_expect_eq(px_canary_pick(zero, 2, 1, PX_CANARY_FORCE_STABLE, 0, 0, 0.5), 0);
  /* Without a canary the force is ignored. */
  int two[] = {0, 10};
  cr_expect_eq(px_canary_pick(two, 2, -1, PX_CANARY_FORCE_CANARY, 0, 0, 0.1), 1);
  cr_expect_eq(px_canary_pick(two, 2, -1, PX_CANARY_FORCE_STABLE, 0, 0, 0.1), 1);
}

/* ---- set_share ----------------------------------------------------------------------- */

static void expect_weights(const int *got, const int *want, size_t n) {
  for (size_t i = 0; i < n; i++) cr_expect_eq(got[i], want[i], "weight %zu: %d, not %d", i, got[i], want[i]);
}

Test(canary, set_share_examples) {
  int out[3];
  px_canary_set_share((int[]){90, 10}, 2, 1, 20, out);
  expect_weights(out, (int[]){80, 20}, 2);
  px_canary_set_share((int[]){45, 45, 10}, 3, 2, 50, out);
  expect_weights(out, (int[]){25, 25, 50}, 3);
  px_canary_set_share((int[]){45, 45, 10}, 3, 2, 0, out);
  expect_weights(out, (int[]){50, 50, 0}, 3);
  px_canary_set_share((int[]){45, 45, 10}, 3, 2, 100, out);
  expect_weights(out, (int[]){0, 0, 100}, 3);
  px_canary_set_share((int[]){0, 0}, 2, 1, 30, out);
  expect_weights(out, (int[]){70, 30}, 2);
  px_canary_set_share((int[]){0, 0, 10}, 3, 2, 25, out);
  expect_weights(out, (int[]){4, 3, 3}, 3);
  px_canary_set_share((int[]){0, 0, 0}, 3, 2, 25, out);
  expect_weights(out, (int[]){38, 37, 25}, 3);
  px_canary_set_share((int[]){9000, 1000}, 2, 1, 150, out);
  expect_weights(out, (int[]){0, 10000}, 2);
  px_canary_set_share((int[]){9000, 1000}, 2, 1, -5, out);
  expect_weights(out, (int[]){10000, 0}, 2);
  /* 1/3 and 2/3 of 7: the remainder to the largest stable entry. */
  px_canary_set_share((int[]){1, 2, 4}, 3, 2, 0, out);
  expect_weights(out, (int[]){2, 5, 0}, 3);
  /* No canary, or nothing but the canary: unchanged. */
  px_canary_set_share((int[]){3, 4}, 2, -1, 50, out);
  expect_weights(out, (int[]){3, 4}, 2);
  px_canary_set_share((int[]){7}, 1, 0, 0, out);
  expect_weights(out, (int[]){7}, 1);
  /* In place. */
  int w[] = {45, 45, 10};
  px_canary_set_share(w, 3, 2, 50, w);
  expect_weights(w, (int[]){25, 25, 50}, 3);
}

Test(canary, set_share_keeps_the_sum_and_the_stable_proportions) {
  uint64_t rng = 99;
  for (int round = 0; round < 20000; round++) {
    size_t n = 2 + rng_next(&rng) % 5;
    int w[6], out[6];
    int zeros = rng_next(&rng) % 4 == 0;
    for (size_t i = 0; i < n; i++) w[i] = zeros && rng_next(&rng) % 2 ? 0 : (int)(rng_next(&rng) % 10001);
    int canary = (int)(rng_next(&rng) % n), share = (int)(rng_next(&rng) % 101);
    px_canary_set_share(w, n, canary, share, out);
    int64_t sum = 0, got = 0, stable = 0;
    for (size_t i = 0; i < n; i++) {
      sum += w[i];
      got += out[i];
      cr_assert_geq(out[i], 0);
      if ((int)i != canary) stable += w[i];
    }
    int64_t total = sum ? sum : 100;
    cr_assert_eq(got, total, "round %d: sum %lld, not %lld", round, (long long)got, (long long)total);
    int64_t cw = out[canary], rest = total - cw;
    cr_assert(llabs(cw * 100 - total * share) <= 50, "round %d: canary %lld of %lld for %d%%", round,
              (long long)cw, (long long)total, share);
    /* Each stable entry within one (a remainder share) of its exact proportion. */
    for (size_t i = 0; i < n; i++) {
      if ((int)i == canary) continue;
      double exact = stable ? (double)rest * w[i] / (double)stable : (double)rest / (double)(n - 1);
      cr_assert(fabs(out[i] - exact) < (double)(n - 1), "round %d: entry %zu is %d, exact %.2f", round, i,
                out[i], exact);
    }
  }
}

/* ---- windows ------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* The nearest-rank q-quantile of sorted v. */
static uint64_t exact_quantile(const uint64_t *v, size_t n, double q) {
  size_t rank = (size_t)ceil(q * (double)n);
  return v[rank ? rank - 1 : 0];
}

static void expect_quantiles(const uint64_t *v, size_t n, const char *what) {
  static px_canary_window_t w;
  memset(&w, 0, sizeof(w));
  for (size_t i = 0; i < n; i++) px_canary_window_record(&w, 0, v[i]);
  static uint64_t sorted[100000];
  memcpy(sorted, v, n * sizeof(*v));
  qsort(sorted, n, sizeof(*sorted), cmp_u64);
  const double qs[] = {0, 0.1, 0.5, 0.9, 0.99, 0.999, 1};
  for (size_t i = 0; i < PX_ARRAY_SIZE(qs); i++) {
    uint64_t want = exact_quantile(sorted, n, qs[i]), got = px_canary_window_quantile_us(&w, qs[i]);
    cr_expect(got >= want && (double)got <= (double)want * 1.1, "%s: q %.3f is %llu µs, exact %llu", what,
              qs[i], (unsigned long long)got, (unsigned long long)want);
  }
}

Test(canary, quantiles_within_ten_percent) {
  static uint64_t v[100000];
  for (size_t i = 0; i < 100000; i++) v[i] = i + 1;
  expect_quantiles(v, 100000, "uniform 1µs..100ms");
  uint64_t rng = 5;
  for (size_t i = 0; i < 100000; i++)
    v[i] = (uint64_t)exp(rng01(&rng) * log(1e8)); /* 1µs..100s, log-uniform */
  expect_quantiles(v, 100000, "log-uniform 1µs..100s");
  for (size_t i = 0; i < 100000; i++) v[i] = (uint64_t)(-log(1 - rng01(&rng)) * 20000); /* mean 20ms */
  expect_quantiles(v, 100000, "exponential");
  for (size_t i = 0; i < 1000; i++) v[i] = i < 990 ? 5000 : 800000; /* a slow tail */
  expect_quantiles(v, 1000, "a slow tail");
}

/* Every value's bucket bound, at the worst (a bucket's lowest value): within 1/16. */
static void expect_bound(uint64_t v) {
  static px_canary_window_t w;
  memset(&w, 0, sizeof(w));
  px_canary_window_record(&w, 0, v);
  px_canary_window_record(&w, 0, v);
  px_canary_window_record(&w, 0, 10 * v + 10); /* the slowest, so it does not cap the answer */
  uint64_t got = px_canary_window_quantile_us(&w, 0.5);
  cr_assert(got >= v && got <= v + v / 16, "%llu µs reads %llu", (unsigned long long)v,
            (unsigned long long)got);
}

Test(canary, every_bucket_bound_within_a_sixteenth) {
  for (uint64_t v = 0; v <= 4096; v++) expect_bound(v);
  for (int e = 12; e < PX_CANARY_HIST_MAX_EXP; e++)
    for (uint64_t sub = 0; sub < 16; sub++) {
      uint64_t low = (16 + sub) << (e - 4);
      expect_bound(low - 1);
      expect_bound(low);
      expect_bound(low + 1);
    }
}

Test(canary, quantile_edges) {
  px_canary_window_t w = {0};
  cr_expect_eq(px_canary_window_quantile_us(&w, 0.99), 0, "empty");
  for (uint64_t us = 0; us < 16; us++) px_canary_window_record(&w, 0, us);
  cr_expect_eq(px_canary_window_quantile_us(&w, 0), 0);
  cr_expect_eq(px_canary_window_quantile_us(&w, 0.5), 7, "below 16µs exact");
  cr_expect_eq(px_canary_window_quantile_us(&w, 1), 15);
  cr_expect_eq(px_canary_window_quantile_us(&w, 7), 15, "q clamped");
  cr_expect_eq(px_canary_window_quantile_us(&w, -1), 0, "q clamped");
  px_canary_window_t slow = {0};
  px_canary_window_record(&slow, 1, 200 * 1000000u); /* past the last regular bucket */
  px_canary_window_record(&slow, 0, 1);
  cr_expect_eq(px_canary_window_quantile_us(&slow, 0.99), 200 * 1000000u, "the slowest recorded");
  cr_expect_eq(px_canary_window_quantile_us(&slow, 0.5), 1);
  cr_expect_eq(slow.requests, 2);
  cr_expect_eq(slow.errors, 1);
  px_canary_window_t same = {0};
  for (int i = 0; i < 100; i++) px_canary_window_record(&same, 0, 10000);
  cr_expect_eq(px_canary_window_quantile_us(&same, 0.99), 10000, "never above the slowest");
  px_canary_window_record(&same, 0, UINT64_MAX);
  cr_expect_eq(px_canary_window_quantile_us(&same, 1), UINT64_MAX);
}

Test(canary, merging_equals_recording_into_one) {
  static px_canary_window_t a, b, one, sum;
  uint64_t rng = 11;
  for (int i = 0; i < 50000; i++) {
    int err = rng_next(&rng) % 20 == 0;
    uint64_t us = rng_next(&rng) % (i % 2 ? 5000 : 300000000);
    px_canary_window_record(i % 3 ? &a : &b, err, us);
    px_canary_window_record(&one, err, us);
  }
  px_canary_window_merge(&sum, &a);
  px_canary_window_merge(&sum, &b);
  cr_expect_eq(memcmp(&sum, &one, sizeof(one)), 0);
  cr_expect_eq(sum.requests, 50000);
  px_canary_window_t empty = {0};
  px_canary_window_merge(&sum, &empty);
  cr_expect_eq(memcmp(&sum, &one, sizeof(one)), 0, "merging an empty window changes nothing");
}

/* ---- the verdict --------------------------------------------------------------------- */

static px_canary_policy_t policy(void) {
  return (px_canary_policy_t){.min_requests = 50,
                              .max_error_rate = 0.05,
                              .max_error_rate_delta = 0.02,
                              .max_latency_ratio = 1.5,
                              .rollback = 1};
}

/* `n` requests of `latency_us`, the first `errors` of them errors. */
static px_canary_window_t win(uint64_t n, uint64_t errors, uint64_t latency_us) {
  px_canary_window_t w = {0};
  for (uint64_t i = 0; i < n; i++) px_canary_window_record(&w, i < errors, latency_us);
  return w;
}

static px_canary_verdict_t judge(px_canary_policy_t p, px_canary_window_t stable, px_canary_window_t canary) {
  px_canary_verdict_t v;
  px_canary_analyze(&p, &stable, &canary, &v);
  return v;
}

Test(canary, too_few_requests_is_neither_pass_nor_fail) {
  px_canary_verdict_t v = judge(policy(), win(100, 0, 10000), win(49, 49, 10000));
  cr_expect_eq(v.kind, PX_CANARY_INSUFFICIENT);
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_NONE);
  cr_expect_str_eq(v.reason, "insufficient requests: canary 49, stable 100, min_requests 50");
  cr_expect_eq(judge(policy(), win(49, 0, 10000), win(100, 50, 10000)).kind, PX_CANARY_INSUFFICIENT);
  px_canary_policy_t p = policy();
  p.min_requests = 0;
  cr_expect_eq(judge(p, win(100, 0, 10000), win(0, 0, 0)).kind, PX_CANARY_INSUFFICIENT, "no requests at all");
  cr_expect_eq(judge(p, win(1, 0, 10000), win(1, 0, 10000)).kind, PX_CANARY_PASS);
  cr_expect_eq(judge(policy(), win(50, 0, 10000), win(50, 0, 10000)).kind, PX_CANARY_PASS, "exactly min");
}

Test(canary, a_good_canary_passes_with_its_figures) {
  px_canary_verdict_t v = judge(policy(), win(200, 2, 10000), win(100, 3, 12000));
  cr_expect_eq(v.kind, PX_CANARY_PASS);
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_NONE);
  cr_expect_str_eq(v.reason, "");
  cr_expect_eq(v.stable_requests, 200);
  cr_expect_eq(v.canary_requests, 100);
  cr_expect_eq(v.stable_errors, 2);
  cr_expect_eq(v.canary_errors, 3);
  cr_expect_float_eq(v.stable_error_rate, 0.01, 1e-12);
  cr_expect_float_eq(v.canary_error_rate, 0.03, 1e-12);
  cr_expect_float_eq(v.stable_p99_ms, 10.0, 1e-9);
  cr_expect_float_eq(v.canary_p99_ms, 12.0, 1e-9);
}

Test(canary, error_rate_fails) {
  px_canary_verdict_t v = judge(policy(), win(100, 1, 10000), win(100, 12, 10000));
  cr_expect_eq(v.kind, PX_CANARY_FAIL);
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_ERROR_RATE);
  cr_expect_str_eq(v.reason, "error rate 0.120 > max_error_rate 0.050 (canary 12/100, stable 1/100)");
  /* At the threshold is not above it: 5/100 against 0.05 (and a delta of 0.02 exactly). */
  cr_expect_eq(judge(policy(), win(100, 3, 10000), win(100, 5, 10000)).kind, PX_CANARY_PASS);
  cr_expect_eq(judge(policy(), win(100, 5, 10000), win(100, 6, 10000)).cause, PX_CANARY_CAUSE_ERROR_RATE);
}

Test(canary, error_rate_delta_fails) {
  px_canary_verdict_t v = judge(policy(), win(100, 1, 10000), win(100, 4, 10000));
  cr_expect_eq(v.kind, PX_CANARY_FAIL);
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_ERROR_RATE_DELTA);
  cr_expect_str_eq(
      v.reason,
      "error rate 0.040 - stable 0.010 = 0.030 > max_error_rate_delta 0.020 (canary 4/100, stable 1/100)");
  /* 0.07 − 0.05 is 0.020000000000000004 in doubles; the comparison is exact. */
  px_canary_policy_t p = policy();
  p.max_error_rate = 0.5;
  cr_expect_eq(judge(p, win(100, 5, 10000), win(100, 7, 10000)).kind, PX_CANARY_PASS);
  cr_expect_eq(judge(p, win(1000, 50, 10000), win(1000, 71, 10000)).cause, PX_CANARY_CAUSE_ERROR_RATE_DELTA);
  /* A canary better than stable is no failure. */
  cr_expect_eq(judge(p, win(100, 40, 10000), win(100, 0, 10000)).kind, PX_CANARY_PASS);
}

Test(canary, latency_fails) {
  px_canary_verdict_t v = judge(policy(), win(100, 0, 10000), win(100, 0, 20000));
  cr_expect_eq(v.kind, PX_CANARY_FAIL);
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_LATENCY);
  cr_expect_str_eq(
      v.reason, "p99 20.0ms > max_latency_ratio 1.50 x stable p99 10.0ms (canary 100 requests, stable 100)");
  cr_expect_eq(judge(policy(), win(100, 0, 10000), win(100, 0, 15000)).kind, PX_CANARY_PASS, "at the ratio");
  /* The p99, not the mean: one slow request in a hundred is the 100th percentile only. */
  px_canary_window_t c = win(100, 0, 10000);
  px_canary_window_record(&c, 0, 900000);
  cr_expect_eq(judge(policy(), win(100, 0, 10000), c).kind, PX_CANARY_PASS);
}

Test(canary, sub_millisecond_noise_cannot_fail_a_canary) {
  /* Stable at 100µs, canary at 1.4ms: 14 times slower, but under 1.5 × the 1ms floor. */
  cr_expect_eq(judge(policy(), win(100, 0, 100), win(100, 0, 1400)).kind, PX_CANARY_PASS);
  cr_expect_eq(judge(policy(), win(100, 0, 100), win(100, 0, 1500)).kind, PX_CANARY_PASS);
  px_canary_verdict_t v = judge(policy(), win(100, 0, 100), win(100, 0, 1600));
  cr_expect_eq(v.cause, PX_CANARY_CAUSE_LATENCY);
  cr_expect_str_eq(v.reason,
                   "p99 1.6ms > max_latency_ratio 1.50 x the 1.0ms floor (stable p99 0.100ms; canary 100 "
                   "requests, stable 100)");
  cr_expect_float_eq(v.stable_p99_ms, 0.1, 1e-9);
}

Test(canary, checks_in_order_and_zero_disables) {
  px_canary_window_t stable = win(100, 1, 10000), bad = win(100, 50, 100000); /* fails all three */
  px_canary_policy_t p = policy();
  cr_expect_eq(judge(p, stable, bad).cause, PX_CANARY_CAUSE_ERROR_RATE);
  p.max_error_rate = 0;
  cr_expect_eq(judge(p, stable, bad).cause, PX_CANARY_CAUSE_ERROR_RATE_DELTA);
  p.max_error_rate_delta = 0;
  cr_expect_eq(judge(p, stable, bad).cause, PX_CANARY_CAUSE_LATENCY);
  p.max_latency_ratio = 0;
  px_canary_verdict_t v = judge(p, stable, bad);
  cr_expect_eq(v.kind, PX_CANARY_PASS);
  cr_expect_str_eq(v.reason, "");
  /* Each alone. */
  p = policy();
  p.max_error_rate_delta = p.max_latency_ratio = 0;
  cr_expect_eq(judge(p, stable, win(100, 6, 100000)).cause, PX_CANARY_CAUSE_ERROR_RATE);
  p = policy();
  p.max_error_rate = p.max_latency_ratio = 0;
  cr_expect_eq(judge(p, stable, win(100, 4, 100000)).cause, PX_CANARY_CAUSE_ERROR_RATE_DELTA);
  p = policy();
  p.max_error_rate = p.max_error_rate_delta = 0;
  cr_expect_eq(judge(p, stable, win(100, 90, 100000)).cause, PX_CANARY_CAUSE_LATENCY);
}

/* ---- the run ------------------------------------------------------------------------- */

static px_canary_verdict_t verdict(px_canary_verdict_kind_t kind, const char *reason) {
  px_canary_verdict_t v = {.kind = kind};
  snprintf(v.reason, sizeof(v.reason), "%s", reason);
  return v;
}

#define PASS verdict(PX_CANARY_PASS, "")
#define FEW verdict(PX_CANARY_INSUFFICIENT, "insufficient requests")
#define FAIL(why) verdict(PX_CANARY_FAIL, why)

/* One tick; the share after it must be `share`. */
static px_canary_action_t tick(px_canary_run_t *run, const px_canary_policy_t *p, px_canary_verdict_t v,
                               uint64_t now, int share) {
  int got = -1;
  px_canary_action_t a = px_canary_run_tick(run, p, &v, now, &got);
  cr_expect_eq(got, share, "at %llu: share %d, not %d", (unsigned long long)now, got, share);
  cr_expect_eq(run->share_pct, share);
  return a;
}

static void expect_state(const px_canary_run_t *run, px_canary_state_t s) {
  cr_expect_eq(run->state, s, "state %s, not %s", px_canary_state_name(run->state), px_canary_state_name(s));
}

Test(canary, a_failure_rolls_back_and_stays_rolled_back) {
  px_canary_policy_t p = policy();
  px_canary_run_t run;
  px_canary_run_start(&run, &p, 10, 0);
  expect_state(&run, PX_CANARY_OK);
  cr_expect_str_eq(run.reason, "");
  cr_expect_eq(tick(&run, &p, PASS, 10 * SEC, 10), PX_CANARY_ACTION_NONE);
  cr_expect_eq(tick(&run, &p, FEW, 20 * SEC, 10), PX_CANARY_ACTION_NONE);
  cr_expect_eq(tick(&run, &p, FAIL("error rate 0.120 > max_error_rate 0.050"), 30 * SEC, 0),
               PX_CANARY_ACTION_ROLLBACK);
  expect_state(&run, PX_CANARY_ROLLED_BACK);
  cr_expect_str_eq(run.reason, "error rate 0.120 > max_error_rate 0.050");
  /* Final: nothing moves it, and the reason stays the one that rolled it back. */
  cr_expect_eq(tick(&run, &p, PASS, 40 * SEC, 0), PX_CANARY_ACTION_NONE);
  cr_expect_eq(tick(&run, &p, FAIL("other"), 50 * SEC, 0), PX_CANARY_ACTION_NONE);
  expect_state(&run, PX_CANARY_ROLLED_BACK);
  cr_expect_str_eq(run.reason, "error rate 0.120 > max_error_rate 0.050");
  cr_expect_eq(px_canary_run_tick(&run, &p, &(px_canary_verdict_t){.kind = PX_CANARY_PASS}, 60 * SEC, NULL),
               PX_CANARY_ACTION_NONE, "new_share_pct may be NULL");
  /* An operator's new weights start a new run. */
  px_canary_run_start(&run, &p, 5, 70 * SEC);
  expect_state(&run, PX_CANARY_OK);
  cr_expect_str_eq(run.reason, "");
}

Test(canary, on_fail_none_fails_then_recovers) {
  px_canary_policy_t p = policy();
  p.rollback = 0;
  px_canary_run_t run;
  px_canary_run_start(&run, &p, 10, 0);
  cr_expect_eq(tick(&run, &p, FAIL("first"), 10 * SEC, 10), PX_CANARY_ACTION_FAILING);
  expect_state(&run, PX_CANARY_FAILING);
  cr_expect_str_eq(run.reason, "first");
  cr_expect_eq(tick(&run, &p, FAIL("second"), 20 * SEC, 10), PX_CANARY_ACTION_NONE, "reported once");
  cr_expect_str_eq(run.reason, "second", "the reason follows");
  cr_expect_eq(tick(&run, &p, FEW, 30 * SEC, 10), PX_CANARY_ACTION_NONE);
  expect_state(&run, PX_CANARY_FAILING);
  cr_expect_eq(tick(&run, &p, PASS, 40 * SEC, 10), PX_CANARY_ACTION_RECOVERED);
  expect_state(&run, PX_CANARY_OK);
  cr_expect_str_eq(run.reason, "second", "the last failure stays visible");
  cr_expect_eq(tick(&run, &p, PASS, 50 * SEC, 10), PX_CANARY_ACTION_NONE);
  cr_expect_eq(tick(&run, &p, FAIL("third"), 60 * SEC, 10), PX_CANARY_ACTION_FAILING, "and can fail again");
  /* A reload to on_fail rollback while failing: the next failure rolls back. */
  p.rollback = 1;
  cr_expect_eq(tick(&run, &p, FAIL("fourth"), 70 * SEC, 0), PX_CANARY_ACTION_ROLLBACK);
  expect_state(&run, PX_CANARY_ROLLED_BACK);
}

static px_canary_policy_t promotion(int step, uint64_t every_ms, int until) {
  px_canary_policy_t p = policy();
  p.promote_step_pct = step;
  p.promote_every_ms = every_ms;
  p.promote_until_pct = until;
  return p;
}

Test(canary, promotion_steps_every_interval_after_passes_up_to_until) {
  px_canary_policy_t p = promotion(10, 60 * SEC, 50);
  px_canary_run_t run;
  px_canary_run_start(&run, &p, 10, 0);
  expect_state(&run, PX_CANARY_PROMOTING);
  cr_expect_eq(tick(&run, &p, PASS, 30 * SEC, 10), PX_CANARY_ACTION_NONE, "too early");
  cr_expect_eq(tick(&run, &p, PASS, 60 * SEC, 20), PX_CANARY_ACTION_PROMOTE);
  expect_state(&run, PX_CANARY_PROMOTING);
  cr_expect_eq(run.last_step_ms, 60 * SEC);
  cr_expect_eq(tick(&run, &p, FEW, 120 * SEC, 20), PX_CANARY_ACTION_NONE, "insufficient never promotes");
  cr_expect_eq(tick(&run, &p, PASS, 130 * SEC, 30), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 189 * SEC, 30), PX_CANARY_ACTION_NONE);
  cr_expect_eq(tick(&run, &p, PASS, 190 * SEC, 40), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 250 * SEC, 50), PX_CANARY_ACTION_PROMOTE);
  expect_state(&run, PX_CANARY_PROMOTED);
  cr_expect_eq(tick(&run, &p, PASS, 400 * SEC, 50), PX_CANARY_ACTION_NONE, "final");
  cr_expect_eq(tick(&run, &p, FAIL("late"), 500 * SEC, 50), PX_CANARY_ACTION_NONE,
               "final, even on a failure");
  expect_state(&run, PX_CANARY_PROMOTED);
  cr_expect_str_eq(run.reason, "");
}

Test(canary, promotion_is_capped_at_until) {
  px_canary_policy_t p = promotion(30, 10 * SEC, 50);
  px_canary_run_t run;
  px_canary_run_start(&run, &p, 10, 0);
  cr_expect_eq(tick(&run, &p, PASS, 10 * SEC, 40), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 20 * SEC, 50), PX_CANARY_ACTION_PROMOTE);
  expect_state(&run, PX_CANARY_PROMOTED);
  /* every 0: a step on each pass. */
  p = promotion(25, 0, 100);
  px_canary_run_start(&run, &p, 5, 0);
  cr_expect_eq(tick(&run, &p, PASS, 0, 30), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 0, 55), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 1, 80), PX_CANARY_ACTION_PROMOTE);
  cr_expect_eq(tick(&run, &p, PASS, 2, 100), PX_CANARY_ACTION_PROMOTE);
  expect_state(&run, PX_CANARY_PROMOTED);
}

Test(canary, a_failure_pauses_promotion_and_a_rollback_ends_it) {
  px_canary_policy_t p = promotion(10, 60 * SEC, 50);
  p.rollback = 0;
  px_canary_run_t run;
  px_canary_run_start(&run, &p, 10, 0);
  cr_expect_eq(tick(&run, &p, FAIL("slow"), 60 * SEC, 10), PX_CANARY_ACTION_FAILING);
  cr_expect_eq(tick(&run, &p, FAIL("slow"), 120 * SEC, 10), PX_CANARY_ACTION_NONE, "paused");
  cr_expect_eq(tick(&run, &p, PASS, 130 * SEC, 10), PX_CANARY_ACTION_RECOVERED);
  expect_state(&run, PX_CANARY_PROMOTING);
  cr_expect_eq(tick(&run, &p, PASS, 180 * SEC, 10), PX_CANARY_ACTION_NONE,
               "a whole interval after recovering");
  cr_expect_eq(tick(&run, &p, PASS, 190 * SEC, 20), PX_CANARY_ACTION_PROMOTE);
  p.rollback = 1;
  cr_expect_eq(tick(&run, &p, FAIL("errors"), 200 * SEC, 0), PX_CANARY_ACTION_ROLLBACK);
  expect_state(&run, PX_CANARY_ROLLED_BACK);
  cr_expect_eq(tick(&run, &p, PASS, 400 * SEC, 0), PX_CANARY_ACTION_NONE);
  /* A clock behind the last step waits. */
  px_canary_run_start(&run, &p, 10, 100 * SEC);
  cr_expect_eq(tick(&run, &p, PASS, 50 * SEC, 10), PX_CANARY_ACTION_NONE);
}

Test(canary, where_a_run_starts) {
  px_canary_run_t run;
  px_canary_policy_t p = promotion(10, SEC, 50);
  px_canary_run_start(&run, &p, 49, 0);
  expect_state(&run, PX_CANARY_PROMOTING);
  px_canary_run_start(&run, &p, 50, 0);
  expect_state(&run, PX_CANARY_PROMOTED);
  px_canary_run_start(&run, &p, 80, 0);
  expect_state(&run, PX_CANARY_PROMOTED);
  cr_expect_eq(run.share_pct, 80, "a share past until is left alone");
  px_canary_run_start(&run, &p, 0, 0);
  expect_state(&run, PX_CANARY_OK);
  cr_expect_eq(tick(&run, &p, PASS, 10 * SEC, 0), PX_CANARY_ACTION_NONE, "a canary at 0 is not promoted");
  px_canary_run_start(&run, &p, 150, 0);
  cr_expect_eq(run.share_pct, 100);
  p = promotion(0, SEC, 50);
  px_canary_run_start(&run, &p, 10, 0);
  expect_state(&run, PX_CANARY_OK);
  cr_expect_eq(tick(&run, &p, PASS, 10 * SEC, 10), PX_CANARY_ACTION_NONE, "step 0: no promotion");
}

Test(canary, names) {
  cr_expect_str_eq(px_canary_state_name(PX_CANARY_OK), "ok");
  cr_expect_str_eq(px_canary_state_name(PX_CANARY_FAILING), "failing");
  cr_expect_str_eq(px_canary_state_name(PX_CANARY_ROLLED_BACK), "rolled_back");
  cr_expect_str_eq(px_canary_state_name(PX_CANARY_PROMOTING), "promoting");
  cr_expect_str_eq(px_canary_state_name(PX_CANARY_PROMOTED), "promoted");
  cr_expect_str_eq(px_canary_state_name((px_canary_state_t)99), "unknown");
  cr_expect_str_eq(px_canary_cause_name(PX_CANARY_CAUSE_NONE), "none");
  cr_expect_str_eq(px_canary_cause_name(PX_CANARY_CAUSE_ERROR_RATE), "error_rate");
  cr_expect_str_eq(px_canary_cause_name(PX_CANARY_CAUSE_ERROR_RATE_DELTA), "error_rate_delta");
  cr_expect_str_eq(px_canary_cause_name(PX_CANARY_CAUSE_LATENCY), "latency");
  cr_expect_str_eq(px_canary_cause_name(PX_CANARY_CAUSE__N), "unknown");
}
