/* Load balancing (proxy/lb.h). What a user relies on: the same key reaches the same
 * endpoint, whatever the build and whatever the order the endpoints are listed in; ring
 * hash and Maglev spread keys evenly and, when one of N endpoints goes, move about 1/N of
 * them; an endpoint that is down (without a rebuild) gives up only its own keys; no
 * usable endpoint is the one way a pick fails; weights shift the shares; round robin
 * cycles, least request takes the less busy of two draws, random spreads.
 *
 * Keys are "user-N" strings and draws come from a fixed splitmix64 sequence, so every
 * number below is the same on each run; the bounds are set from the statistics of each
 * method (stated at each test), not from one lucky run. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"
#include "lb.h"

#define KEYS 100000

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Endpoint names as the config writes them; `skip` (or -1) leaves one out. */
typedef struct {
  char buf[1024][32];
  const char *p[1024];
  size_t n;
} names_t;

static names_t *names_make(size_t n, int skip) {
  names_t *nm = px_calloc(1, sizeof(*nm));
  for (size_t i = 0; i < n; i++) {
    if ((int)i == skip) continue;
    snprintf(nm->buf[nm->n], sizeof(nm->buf[0]), "10.0.%zu.%zu:8080", i / 200, i % 200 + 1);
    nm->p[nm->n] = nm->buf[nm->n];
    nm->n++;
  }
  return nm;
}

static px_lb_t *build(px_lb_kind_t kind, const names_t *nm, const int *w, const px_lb_opts_t *o) {
  px_lb_t *lb = NULL;
  cr_assert_eq(px_lb_build(&lb, kind, nm->p, w, nm->n, o), 0);
  return lb;
}

/* Which endpoints may take a request, and their requests in flight. */
typedef struct {
  const uint8_t *up; /* NULL: all */
  const int *active;
} view_t;

static int v_usable(void *d, size_t i) {
  const view_t *v = d;
  return !v->up || v->up[i];
}
static int v_active(void *d, size_t i) { return ((const view_t *)d)->active[i]; }

static uint64_t key_hash(int k) {
  char s[32];
  int n = snprintf(s, sizeof(s), "user-%d", k);
  return px_lb_hash(s, (size_t)n);
}

static int pick_key(const px_lb_t *lb, uint64_t h, const view_t *v) {
  px_lb_in_t in = {.hash = h, .has_hash = 1, .usable = v ? v_usable : NULL, .data = (void *)v};
  return px_lb_pick(lb, &in);
}

/* The endpoint of each of KEYS keys, as an index into `nm`. */
static int *assign(const px_lb_t *lb, const view_t *v) {
  int *to = px_calloc(KEYS, sizeof(*to));
  for (int k = 0; k < KEYS; k++) to[k] = pick_key(lb, key_hash(k), v);
  return to;
}

static const px_lb_kind_t hashed[] = {PX_LB_RING_HASH, PX_LB_MAGLEV};
static const px_lb_kind_t kinds[] = {PX_LB_ROUND_ROBIN, PX_LB_LEAST_REQUEST, PX_LB_RANDOM, PX_LB_RING_HASH,
                                     PX_LB_MAGLEV};
static const char *kind_name(px_lb_kind_t k) { return k == PX_LB_RING_HASH ? "ring_hash" : "maglev"; }

/* ---- the hash ------------------------------------------------------------------------- */

Test(lb, hash_is_stable_and_mixes_every_bit) {
  /* Pinned: a changed hash would send every sticky key elsewhere after an upgrade. */
  cr_expect_eq(px_lb_hash("", 0), 0xefd01f60ba992926ull);
  cr_expect_eq(px_lb_hash("127.0.0.1:9001", 14), px_lb_hash("127.0.0.1:9001", 14));
  cr_expect_neq(px_lb_hash("abc", 3), px_lb_hash("abd", 3));
  cr_expect_neq(px_lb_hash("abc", 3), px_lb_hash("abc", 4)); /* the NUL counts */
  /* Avalanche: flipping any one input bit flips each output bit about half the time
   * (128,000 trials per output bit: 0.5 ± 0.0014 one sigma; bound ±0.03). */
  static int flips[64];
  uint64_t s = 1;
  for (int t = 0; t < 2000; t++) {
    uint64_t x = splitmix(&s), hx = px_lb_hash(&x, sizeof(x));
    for (int b = 0; b < 64; b++) {
      uint64_t y = x ^ (1ull << b), d = hx ^ px_lb_hash(&y, sizeof(y));
      for (int o = 0; o < 64; o++) flips[o] += (int)((d >> o) & 1);
    }
  }
  for (int o = 0; o < 64; o++) {
    double p = flips[o] / (2000.0 * 64);
    cr_expect(p > 0.47 && p < 0.53, "output bit %d flips with p = %.4f", o, p);
  }
}

/* ---- hashed kinds ---------------------------------------------------------------------- */

Test(lb, same_key_same_endpoint_across_builds_and_orders) {
  names_t *nm = names_make(7, -1), *rev = px_calloc(1, sizeof(*rev));
  for (size_t i = 0; i < nm->n; i++) rev->p[i] = nm->p[nm->n - 1 - i];
  rev->n = nm->n;
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++) {
    px_lb_t *a = build(hashed[k], nm, NULL, NULL), *b = build(hashed[k], nm, NULL, NULL);
    px_lb_t *r = build(hashed[k], rev, NULL, NULL);
    for (int key = 0; key < 10000; key++) {
      uint64_t h = key_hash(key);
      int ea = pick_key(a, h, NULL), er = pick_key(r, h, NULL);
      cr_assert_eq(ea, pick_key(b, h, NULL), "%s key %d", kind_name(hashed[k]), key);
      cr_assert_str_eq(nm->p[ea], rev->p[er], "%s key %d: the list's order moved it", kind_name(hashed[k]),
                       key);
    }
    px_lb_free(a);
    px_lb_free(b);
    px_lb_free(r);
  }
  free(nm);
  free(rev);
}

/* Ring hash: with V points per endpoint an endpoint's share of the ring is a sum of V
 * arcs, so it is 1/N × (1 ± 1/√V) one sigma: 6.25% at the default V = 256; the bound is
 * 25%, four sigmas (the worst of 10 endpoints is typically 2 to 2.5 sigmas off).
 * Maglev: every endpoint holds ⌊M/N⌋ or ⌈M/N⌉ slots, so only the keys' own noise
 * remains (at most 1% one sigma for N ≤ 10 and 100,000 keys); bound 5%. */
Test(lb, ring_hash_and_maglev_balance_keys) {
  static const size_t ns[] = {3, 5, 10};
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++)
    for (size_t t = 0; t < PX_ARRAY_SIZE(ns); t++) {
      names_t *nm = names_make(ns[t], -1);
      px_lb_t *lb = build(hashed[k], nm, NULL, NULL);
      int *to = assign(lb, NULL), count[16] = {0};
      for (int i = 0; i < KEYS; i++) count[to[i]]++;
      double bound = hashed[k] == PX_LB_RING_HASH ? 0.25 : 0.05, worst = 0;
      for (size_t e = 0; e < nm->n; e++) {
        double dev = (double)count[e] * (double)nm->n / KEYS - 1;
        worst = PX_MAX(worst, dev < 0 ? -dev : dev);
        cr_expect(dev < bound && dev > -bound, "%s N=%zu endpoint %zu: share %.4f", kind_name(hashed[k]),
                  nm->n, e, (double)count[e] / KEYS);
      }
      cr_log_info("%s N=%zu: worst share off 1/N by %.1f%%", kind_name(hashed[k]), nm->n, 100 * worst);
      free(to);
      px_lb_free(lb);
      free(nm);
    }
}

Test(lb, maglev_gives_every_endpoint_the_same_number_of_slots) {
  /* A key whose hash is s lands on slot s: counting over every hash below M counts slots. */
  static const size_t ns[] = {3, 10, 1024};
  for (size_t t = 0; t < PX_ARRAY_SIZE(ns); t++) {
    names_t *nm = names_make(ns[t], -1);
    px_lb_t *lb = build(PX_LB_MAGLEV, nm, NULL, NULL);
    size_t m = px_lb_table_size(lb);
    cr_assert_eq(m, PX_LB_MAGLEV_SIZE);
    int *count = px_calloc(nm->n, sizeof(*count));
    for (uint64_t s = 0; s < m; s++) count[pick_key(lb, s, NULL)]++;
    for (size_t e = 0; e < nm->n; e++)
      cr_expect(count[e] == (int)(m / nm->n) || count[e] == (int)(m / nm->n) + 1,
                "N=%zu endpoint %zu: %d slots", nm->n, e, count[e]);
    free(count);
    px_lb_free(lb);
    free(nm);
  }
}

/* Removing one of N endpoints (a build without it): the keys that move are about 1/N,
 * bounded by 1.5/N + 1%; on the ring only the removed endpoint's keys move, while Maglev
 * also moves a few others (the paper's "minimal disruption" is approximate): at most 2%
 * of all keys here. Every endpoint is removed in turn. */
Test(lb, removing_one_of_n_moves_about_one_nth_of_the_keys) {
  static const size_t ns[] = {3, 5, 10};
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++)
    for (size_t t = 0; t < PX_ARRAY_SIZE(ns); t++) {
      size_t n = ns[t];
      names_t *all = names_make(n, -1);
      px_lb_t *full = build(hashed[k], all, NULL, NULL);
      int *before = assign(full, NULL);
      double most = 0, most_other = 0;
      for (size_t gone = 0; gone < n; gone++) {
        names_t *less = names_make(n, (int)gone);
        px_lb_t *lb = build(hashed[k], less, NULL, NULL);
        int *after = assign(lb, NULL), moved = 0, other = 0;
        for (int i = 0; i < KEYS; i++) {
          const char *was = all->p[before[i]], *now = less->p[after[i]];
          if (strcmp(was, now) == 0) continue;
          moved++;
          if (before[i] != (int)gone) other++;
        }
        double f = (double)moved / KEYS, fo = (double)other / KEYS;
        most = PX_MAX(most, f);
        most_other = PX_MAX(most_other, fo);
        cr_expect(f < 1.5 / (double)n + 0.01 && f > 0.5 / (double)n, "%s N=%zu without %zu: %.4f moved",
                  kind_name(hashed[k]), n, gone, f);
        if (hashed[k] == PX_LB_RING_HASH)
          cr_expect_eq(other, 0, "ring N=%zu without %zu", n, gone);
        else
          cr_expect(fo <= 0.02, "maglev N=%zu without %zu: %.4f of the others' keys moved", n, gone, fo);
        free(after);
        px_lb_free(lb);
        free(less);
      }
      cr_log_info("%s N=%zu: at most %.4f of the keys moved (1/N = %.4f), %.4f of others'",
                  kind_name(hashed[k]), n, most, 1.0 / (double)n, most_other);
      free(before);
      px_lb_free(full);
      free(all);
    }
}

/* Marking an endpoint unusable, no rebuild: only its own keys move, and they spread over
 * the others (each takes at least half its fair part of them). On the ring each lands
 * where a build without that endpoint would put it. */
Test(lb, an_unusable_endpoint_gives_up_only_its_own_keys) {
  size_t n = 5;
  names_t *all = names_make(n, -1);
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++) {
    px_lb_t *lb = build(hashed[k], all, NULL, NULL);
    int *before = assign(lb, NULL);
    for (size_t down = 0; down < n; down++) {
      uint8_t up[8];
      memset(up, 1, sizeof(up));
      up[down] = 0;
      view_t v = {.up = up};
      int *after = assign(lb, &v), own = 0, took[8] = {0};
      names_t *less = names_make(n, (int)down);
      px_lb_t *rebuilt = hashed[k] == PX_LB_RING_HASH ? build(hashed[k], less, NULL, NULL) : NULL;
      for (int i = 0; i < KEYS; i++) {
        cr_assert_neq(after[i], (int)down);
        if (before[i] != (int)down) {
          cr_assert_eq(after[i], before[i], "%s: key %d moved off a usable endpoint", kind_name(hashed[k]),
                       i);
          continue;
        }
        own++;
        took[after[i]]++;
        if (rebuilt)
          cr_assert_str_eq(all->p[after[i]], less->p[pick_key(rebuilt, key_hash(i), NULL)], "ring key %d", i);
      }
      for (size_t e = 0; e < n; e++)
        if (e != down)
          cr_expect(took[e] > own / (int)(n - 1) / 2, "%s: endpoint %zu took %d of %zu's %d keys",
                    kind_name(hashed[k]), e, took[e], down, own);
      px_lb_free(rebuilt);
      free(less);
      free(after);
    }
    free(before);
    px_lb_free(lb);
  }
  free(all);
}

/* Half the endpoints down at once, with weights: still only their keys move. */
Test(lb, many_unusable_endpoints_move_only_their_keys) {
  names_t *nm = names_make(10, -1);
  static const int w[] = {1, 2, 3, 1, 2, 3, 1, 2, 3, 4};
  uint8_t up[10] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
  view_t v = {.up = up};
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++) {
    px_lb_t *lb = build(hashed[k], nm, w, NULL);
    int *before = assign(lb, NULL), *after = assign(lb, &v), moved = 0;
    for (int i = 0; i < KEYS; i++) {
      cr_assert(up[after[i]], "%s: key %d on a down endpoint", kind_name(hashed[k]), i);
      if (up[before[i]])
        cr_assert_eq(after[i], before[i], "%s: key %d moved", kind_name(hashed[k]), i);
      else
        moved++;
    }
    cr_log_info("%s: %.4f of the keys moved with 10 of 22 weight down", kind_name(hashed[k]),
                (double)moved / KEYS);
    free(before);
    free(after);
    px_lb_free(lb);
  }
  free(nm);
}

Test(lb, one_endpoint_takes_everything) {
  names_t *nm = names_make(1, -1);
  uint8_t down[1] = {0};
  int active[1] = {3};
  view_t v = {.up = down, .active = active}, all = {.active = active};
  for (size_t k = 0; k < PX_ARRAY_SIZE(kinds); k++) {
    px_lb_t *lb = build(kinds[k], nm, NULL, NULL);
    for (int i = 0; i < 100; i++) {
      px_lb_in_t in = {.hash = key_hash(i),
                       .has_hash = i % 2,
                       .ticket = (uint64_t)i,
                       .rand = {(uint64_t)i * 7, (uint64_t)i * 13},
                       .usable = v_usable,
                       .active = v_active,
                       .data = &all};
      cr_expect_eq(px_lb_pick(lb, &in), 0, "kind %d", kinds[k]);
      in.data = &v;
      cr_expect_eq(px_lb_pick(lb, &in), -1, "kind %d", kinds[k]);
    }
    px_lb_free(lb);
  }
  free(nm);
}

Test(lb, keyless_requests_on_hashed_kinds_go_at_random) {
  names_t *nm = names_make(4, -1);
  for (size_t k = 0; k < PX_ARRAY_SIZE(hashed); k++) {
    px_lb_t *lb = build(hashed[k], nm, NULL, NULL);
    int count[4] = {0};
    uint64_t s = 7;
    for (int i = 0; i < 40000; i++) {
      px_lb_in_t in = {.hash = 42, .has_hash = 0, .rand = {splitmix(&s), splitmix(&s)}};
      count[px_lb_pick(lb, &in)]++;
    }
    for (int e = 0; e < 4; e++)
      cr_expect(count[e] > 9000 && count[e] < 11000, "%s: %d", kind_name(hashed[k]), count[e]);
    px_lb_free(lb);
  }
  free(nm);
}

/* ---- every kind ------------------------------------------------------------------------ */

Test(lb, no_usable_endpoint_is_the_only_failure) {
  names_t *nm = names_make(10, -1);
  uint8_t none[10] = {0}, one[10] = {0};
  one[6] = 1;
  int active[10] = {0};
  for (size_t k = 0; k < PX_ARRAY_SIZE(kinds); k++) {
    px_lb_t *lb = build(kinds[k], nm, NULL, NULL);
    uint64_t s = 3;
    for (int i = 0; i < 5000; i++) {
      view_t vn = {.up = none, .active = active}, v1 = {.up = one, .active = active};
      px_lb_in_t in = {.hash = key_hash(i),
                       .has_hash = 1,
                       .ticket = (uint64_t)i,
                       .rand = {splitmix(&s), splitmix(&s)},
                       .usable = v_usable,
                       .active = v_active,
                       .data = &vn};
      cr_assert_eq(px_lb_pick(lb, &in), -1, "kind %d", kinds[k]);
      in.data = &v1; /* however far the key's own path is from it, the one usable is found */
      cr_assert_eq(px_lb_pick(lb, &in), 6, "kind %d", kinds[k]);
    }
    px_lb_free(lb);
  }
  free(nm);
}

/* Weights 2:1. Maglev and round robin give exact shares (slots, turns); random and least
 * request draw by weight (±0.01 here is 3.7 sigmas over 30,000 draws); the ring's shares
 * carry its 1/√V noise (V = 512 and 256 points: ±0.017 one sigma), bound ±0.06 on 2/3. */
Test(lb, weights_two_to_one_give_two_thirds) {
  names_t *nm = names_make(2, -1);
  static const int w[] = {2, 1};
  int active[2] = {0, 0};
  view_t v = {.active = active};
  for (size_t k = 0; k < PX_ARRAY_SIZE(kinds); k++) {
    px_lb_t *lb = build(kinds[k], nm, w, NULL);
    int count[2] = {0};
    uint64_t s = 11;
    for (int i = 0; i < 30000; i++) {
      px_lb_in_t in = {.hash = key_hash(i),
                       .has_hash = 1,
                       .ticket = (uint64_t)i,
                       .rand = {splitmix(&s), splitmix(&s)},
                       .active = v_active,
                       .data = &v};
      count[px_lb_pick(lb, &in)]++;
    }
    double share = count[0] / 30000.0;
    double bound = kinds[k] == PX_LB_RING_HASH ? 0.06 : kinds[k] == PX_LB_ROUND_ROBIN ? 1e-9 : 0.01;
    cr_expect(share > 2.0 / 3 - bound && share < 2.0 / 3 + bound, "kind %d: %.4f", kinds[k], share);
    cr_log_info("kind %d, weights 2:1: %.4f to the heavier", kinds[k], share);
    px_lb_free(lb);
  }
  /* Maglev exactly: 2/3 of the slots, within one. */
  px_lb_t *lb = build(PX_LB_MAGLEV, nm, w, NULL);
  int slots = 0;
  for (uint64_t s = 0; s < PX_LB_MAGLEV_SIZE; s++) slots += pick_key(lb, s, NULL) == 0;
  cr_expect(abs(slots - 2 * PX_LB_MAGLEV_SIZE / 3) <= 1, "%d of %d slots", slots, PX_LB_MAGLEV_SIZE);
  px_lb_free(lb);
  free(nm);
}

/* ---- round robin, least request, random ------------------------------------------------ */

static int rr(const px_lb_t *lb, uint64_t ticket, const view_t *v) {
  px_lb_in_t in = {.ticket = ticket, .usable = v ? v_usable : NULL, .data = (void *)v};
  return px_lb_pick(lb, &in);
}

Test(lb, round_robin_cycles_and_spreads_a_skipped_turn) {
  names_t *nm = names_make(4, -1);
  px_lb_t *lb = build(PX_LB_ROUND_ROBIN, nm, NULL, NULL);
  for (uint64_t t = 0; t < 12; t++) cr_expect_eq(rr(lb, t, NULL), (int)(t % 4));
  /* Endpoint 1 down: its turns go to the others in turn, not all to endpoint 2. */
  uint8_t up[4] = {1, 0, 1, 1};
  view_t v = {.up = up};
  int count[4] = {0};
  for (uint64_t t = 0; t < 12000; t++) count[rr(lb, t, &v)]++;
  cr_expect_eq(count[1], 0);
  for (int e = 0; e < 4; e++)
    if (e != 1) cr_expect_eq(count[e], 4000, "endpoint %d: %d", e, count[e]);
  px_lb_free(lb);
  free(nm);
}

Test(lb, weighted_round_robin_interleaves) {
  names_t *nm = names_make(3, -1);
  static const int w[] = {3, 1, 2};
  px_lb_t *lb = build(PX_LB_ROUND_ROBIN, nm, w, NULL);
  /* Every lap of 6 turns gives exactly 3, 1 and 2, and never three in a row to one. */
  for (uint64_t lap = 0; lap < 100; lap++) {
    int count[3] = {0};
    for (uint64_t t = lap * 6; t < lap * 6 + 6; t++) count[rr(lb, t, NULL)]++;
    cr_expect(count[0] == 3 && count[1] == 1 && count[2] == 2, "lap %d: %d %d %d", (int)lap, count[0],
              count[1], count[2]);
  }
  int run = 1, longest = 1;
  for (uint64_t t = 1; t < 600; t++) {
    run = rr(lb, t, NULL) == rr(lb, t - 1, NULL) ? run + 1 : 1;
    longest = PX_MAX(longest, run);
  }
  cr_expect_lt(longest, 3);
  px_lb_free(lb);
  free(nm);
}

Test(lb, weighted_round_robin_skips_the_unusable) {
  names_t *nm = names_make(3, -1);
  static const int w[] = {3, 1, 2};
  uint8_t up[3] = {1, 1, 0};
  view_t v = {.up = up};
  px_lb_t *lb = build(PX_LB_ROUND_ROBIN, nm, w, NULL);
  int count[3] = {0};
  for (uint64_t t = 0; t < 6000; t++) count[rr(lb, t, &v)]++;
  cr_expect_eq(count[2], 0);
  cr_expect(count[0] > 2 * count[1], "%d %d", count[0], count[1]);
  cr_log_info("weights 3:1:2, the last down: %d and %d of 6000 turns", count[0], count[1]);
  px_lb_free(lb);
  free(nm);
}

static int lr(const px_lb_t *lb, uint64_t r0, uint64_t r1, const view_t *v) {
  px_lb_in_t in = {.rand = {r0, r1}, .usable = v_usable, .active = v_active, .data = (void *)v};
  return px_lb_pick(lb, &in);
}

Test(lb, least_request_takes_the_less_busy_of_two_draws) {
  names_t *nm = names_make(3, -1);
  px_lb_t *lb = build(PX_LB_LEAST_REQUEST, nm, NULL, NULL);
  int active[3] = {5, 2, 9};
  view_t v = {.active = active};
  /* With equal weights a draw x stands for endpoint x % n. */
  cr_expect_eq(lr(lb, 0, 1, &v), 1);
  cr_expect_eq(lr(lb, 1, 0, &v), 1);
  cr_expect_eq(lr(lb, 0, 2, &v), 0);
  cr_expect_eq(lr(lb, 5, 3, &v), 0); /* 2 (9 in flight) against 0 (5) */
  cr_expect_eq(lr(lb, 2, 2, &v), 2); /* the same endpoint twice: no choice */
  active[0] = active[2] = 7;
  cr_expect_eq(lr(lb, 2, 0, &v), 2); /* a tie goes to the first draw */
  cr_expect_eq(lr(lb, 0, 2, &v), 0);
  uint8_t up[3] = {1, 0, 1}; /* the less busy one is down: the draw is made again */
  v.up = up;
  cr_expect_neq(lr(lb, 1, 0, &v), 1);
  px_lb_free(lb);
  free(nm);

  /* Ten endpoints, endpoint i with i in flight: the busiest wins only when both draws
   * name it (1%), the idlest whenever one draw does (19%). */
  nm = names_make(10, -1);
  lb = build(PX_LB_LEAST_REQUEST, nm, NULL, NULL);
  int load[10];
  for (int i = 0; i < 10; i++) load[i] = i;
  view_t v10 = {.active = load};
  int count[10] = {0};
  uint64_t s = 5;
  for (int i = 0; i < 100000; i++) count[lr(lb, splitmix(&s), splitmix(&s), &v10)]++;
  cr_expect(count[9] > 800 && count[9] < 1200, "busiest: %d", count[9]);
  cr_expect(count[0] > 18000 && count[0] < 20000, "idlest: %d", count[0]);
  px_lb_free(lb);
  free(nm);
}

Test(lb, least_request_weighs_requests_by_weight) {
  names_t *nm = names_make(2, -1);
  static const int w[] = {2, 1};
  px_lb_t *lb = build(PX_LB_LEAST_REQUEST, nm, w, NULL);
  int active[2] = {3, 2}; /* 1.5 per unit of weight against 2 */
  view_t v = {.active = active};
  /* With weights 2:1 a draw x stands for endpoint 0 when x % 3 < 2, else endpoint 1. */
  cr_expect_eq(lr(lb, 2, 0, &v), 0);
  cr_expect_eq(lr(lb, 0, 2, &v), 0);
  active[0] = 5;
  cr_expect_eq(lr(lb, 0, 2, &v), 1);
  px_lb_free(lb);
  free(nm);
}

Test(lb, random_spreads_and_skips_the_unusable) {
  names_t *nm = names_make(5, -1);
  px_lb_t *lb = build(PX_LB_RANDOM, nm, NULL, NULL);
  uint8_t up[5] = {1, 1, 0, 1, 1};
  view_t v = {.up = up};
  int count[5] = {0}, skipped[5] = {0};
  uint64_t s = 9;
  for (int i = 0; i < KEYS; i++) {
    px_lb_in_t in = {.rand = {splitmix(&s), splitmix(&s)}};
    count[px_lb_pick(lb, &in)]++;
    in.usable = v_usable;
    in.data = &v;
    skipped[px_lb_pick(lb, &in)]++;
  }
  /* 0.2 ± 0.0013 one sigma, 0.25 ± 0.0014: the bounds are ±4% of the share, 6 sigmas. */
  for (int e = 0; e < 5; e++) {
    cr_expect(count[e] > 19200 && count[e] < 20800, "endpoint %d: %d", e, count[e]);
    if (e == 2)
      cr_expect_eq(skipped[e], 0);
    else
      cr_expect(skipped[e] > 24000 && skipped[e] < 26000, "endpoint %d: %d", e, skipped[e]);
  }
  px_lb_free(lb);
  free(nm);
}

/* ---- building -------------------------------------------------------------------------- */

Test(lb, build_refuses_what_cannot_work) {
  names_t *nm = names_make(5, -1);
  px_lb_t *lb = NULL;
  static const int zero[] = {1, 0, 1, 1, 1}, big[] = {1, 1, PX_LB_MAX_WEIGHT + 1, 1, 1};
  cr_expect_eq(px_lb_build(&lb, PX_LB_RANDOM, nm->p, NULL, 0, NULL), PX_ECONFIG);
  cr_expect_eq(px_lb_build(&lb, PX_LB_RANDOM, nm->p, zero, 5, NULL), PX_ECONFIG);
  cr_expect_eq(px_lb_build(&lb, PX_LB_RANDOM, nm->p, big, 5, NULL), PX_ECONFIG);
  cr_expect_eq(px_lb_build(&lb, (px_lb_kind_t)99, nm->p, NULL, 5, NULL), PX_ECONFIG);
  px_lb_opts_t o = {.maglev_size = 65536}; /* not a prime: some permutations would miss slots */
  cr_expect_eq(px_lb_build(&lb, PX_LB_MAGLEV, nm->p, NULL, 5, &o), PX_ECONFIG);
  o.maglev_size = 5; /* no room for all */
  cr_expect_eq(px_lb_build(&lb, PX_LB_MAGLEV, nm->p, NULL, 5, &o), PX_ECONFIG);
  o.maglev_size = 7;
  cr_expect_eq(px_lb_build(&lb, PX_LB_MAGLEV, nm->p, NULL, 5, &o), 0);
  cr_expect_eq(px_lb_table_size(lb), 7);
  px_lb_free(lb);
  free(nm);
}

Test(lb, tables_stay_small_for_a_thousand_endpoints) {
  names_t *nm = names_make(1024, -1);
  px_lb_t *ring = build(PX_LB_RING_HASH, nm, NULL, NULL), *mg = build(PX_LB_MAGLEV, nm, NULL, NULL);
  /* 256 points each would be 262,144: the ring is capped, every endpoint keeping 64. */
  cr_expect_eq(px_lb_table_size(ring), PX_LB_RING_MAX);
  cr_expect_eq(px_lb_table_size(mg), PX_LB_MAGLEV_SIZE);
  cr_expect_eq(px_lb_count(ring), 1024);
  /* A small table for tests, and fewer ring points. */
  px_lb_opts_t o = {.ring_vnodes = 10, .maglev_size = 1031};
  px_lb_t *r2 = build(PX_LB_RING_HASH, nm, NULL, &o), *m2 = build(PX_LB_MAGLEV, nm, NULL, &o);
  cr_expect_eq(px_lb_table_size(r2), 10240);
  cr_expect_eq(px_lb_table_size(m2), 1031);
  px_lb_free(ring);
  px_lb_free(mg);
  px_lb_free(r2);
  px_lb_free(m2);
  free(nm);
}
