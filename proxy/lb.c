#include "lb.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"

/* How far a hashed pick looks for a usable endpoint along the key's own path (ring points
 * clockwise, Maglev rehashes, random redraws) before it falls back to scanning every
 * endpoint. Only keys whose endpoint refuses take a step; with half the endpoints down
 * at most one key in 2^32 reaches the scan, and the scan keeps the answer deterministic. */
#define LB_RING_WALK 128
#define LB_TRIES 32
/* Bounds on the options, so that the build's arithmetic stays within 64 bits. */
#define LB_OPT_LIMIT (1u << 24)
#define LB_EMPTY 0xffffu /* a Maglev slot not yet taken; never an index (< 65535) */

static const uint64_t golden = 0x9e3779b97f4a7c15ull; /* 2^64 / φ: steps that never line up */

struct px_lb_s {
  px_lb_kind_t kind;
  size_t n;
  /* Inclusive running sums of the weights, NULL when all weights are equal (then every
   * endpoint counts as weight 1 and `total` is n). */
  uint32_t *cum;
  uint64_t total;
  int bits;         /* weighted round robin: the bits of a turn number (total <= 2^bits) */
  uint64_t *points; /* ring hash: the ring, ascending */
  uint16_t *owners; /* ring hash: the endpoint of each point */
  size_t npoints;
  uint16_t *table; /* Maglev: slot -> endpoint */
  uint32_t m;
};

/* ---- hashing --------------------------------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

#define FNV_BASIS 0xcbf29ce484222325ull

/* FNV-1a alone mixes its last bytes poorly into the high bits (and the ring compares
 * whole 64-bit values): px_fmix64 after it. */
uint64_t px_lb_hash(const void *p, size_t n) { return px_fmix64(fnv1a(FNV_BASIS, p, n)); }

/* The next of a key's (or a draw's) pseudo-random sequence of fallbacks. */
static uint64_t next_draw(uint64_t x) { return px_fmix64(x + golden); }

/* ---- weights and usability ------------------------------------------------------------- */

static int ok(const px_lb_in_t *in, size_t i) { return !in->usable || in->usable(in->data, i); }

static uint64_t weight(const px_lb_t *lb, size_t i) {
  return lb->cum ? lb->cum[i] - (i ? lb->cum[i - 1] : 0) : 1;
}

/* The endpoint whose run of the cumulative weights holds `pos` (< total). */
static size_t at(const px_lb_t *lb, uint64_t pos) {
  if (!lb->cum) return (size_t)pos;
  size_t lo = 0, hi = lb->n - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (lb->cum[mid] > pos)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

/* The last resort of every kind: the first usable endpoint from `start` on, so that a
 * pick fails only when none is usable. */
static int scan(const px_lb_t *lb, const px_lb_in_t *in, uint64_t start) {
  for (size_t k = 0; k < lb->n; k++) {
    size_t i = (size_t)((start + k) % lb->n);
    if (ok(in, i)) return (int)i;
  }
  return -1;
}

/* A weighted draw; when it lands on an unusable endpoint, fresh draws derived from it,
 * so the refused endpoint's share spreads over the others by weight. */
static int pick_random(const px_lb_t *lb, const px_lb_in_t *in, uint64_t x) {
  for (int k = 0; k < LB_TRIES; k++, x = next_draw(x)) {
    size_t e = at(lb, x % lb->total);
    if (ok(in, e)) return (int)e;
  }
  return scan(lb, in, x);
}

/* ---- the kinds ------------------------------------------------------------------------- */

static uint32_t reverse_bits(uint32_t x, int bits) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  x = (x >> 16) | (x << 16);
  return bits ? x >> (32 - bits) : 0;
}

/* Turn `p` of a lap (0 <= p < total) as a position in the cumulative weights. With
 * weights the position is p with its bits reversed (van der Corput's sequence: each next
 * turn lands in the largest gap left), so every endpoint's turns come evenly spaced
 * through the lap (3:1:2 goes A C A B A C, not A A A B C C). Positions past the end keep
 * p itself, which keeps the lap a permutation: each position once, shares exact. */
static size_t turn(const px_lb_t *lb, uint64_t p) {
  if (!lb->cum) return (size_t)p;
  uint64_t r = reverse_bits((uint32_t)p, lb->bits);
  return at(lb, r < lb->total ? r : p);
}

static int pick_round_robin(const px_lb_t *lb, const px_lb_in_t *in) {
  uint64_t len = lb->total, p = in->ticket % len;
  size_t e = turn(lb, p);
  if (ok(in, e)) return (int)e;
  if (len == 1) return -1;
  /* The refused turn goes elsewhere: to a different turn each lap, so that over len - 1
   * laps every other turn takes it once, rather than the next endpoint taking them all. */
  uint64_t lap = in->ticket / len, q = (p + 1 + lap % (len - 1)) % len;
  e = turn(lb, q);
  if (ok(in, e)) return (int)e;
  return scan(lb, in, e + 1);
}

static int pick_least_request(const px_lb_t *lb, const px_lb_in_t *in) {
  int a = pick_random(lb, in, in->rand[0]);
  if (a < 0 || !in->active) return a;
  int b = pick_random(lb, in, in->rand[1]);
  if (b < 0) return a;
  /* Fewer in flight per unit of weight wins (with equal weights, the plain count), ties
   * to the first draw: idle endpoints then share by weight, as the draws do. */
  int ra = in->active(in->data, (size_t)a), rb = in->active(in->data, (size_t)b);
  uint64_t ca = (uint64_t)(ra > 0 ? ra : 0), cb = (uint64_t)(rb > 0 ? rb : 0);
  return cb * weight(lb, (size_t)a) < ca * weight(lb, (size_t)b) ? b : a;
}

/* The key's endpoint is the owner of the first point at or after its hash, wrapping.
 * Walking on clockwise past refused endpoints gives each key the endpoint it would have
 * if the refused ones were taken off the ring, and leaves every other key alone. */
static int pick_ring(const px_lb_t *lb, const px_lb_in_t *in) {
  size_t lo = 0, hi = lb->npoints;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (lb->points[mid] < in->hash)
      lo = mid + 1;
    else
      hi = mid;
  }
  size_t steps = PX_MIN(lb->npoints, (size_t)LB_RING_WALK), refused = LB_EMPTY;
  for (size_t s = 0; s < steps; s++) {
    size_t e = lb->owners[(lo + s) % lb->npoints];
    if (e == refused) continue; /* the same endpoint's next point: no need to ask again */
    if (ok(in, e)) return (int)e;
    refused = e;
  }
  return scan(lb, in, px_fmix64(in->hash ^ golden));
}

/* O(1): the key's slot. A refused slot sends the key to slots drawn from its hash, each
 * as likely to hold any endpoint as its share of the table. */
static int pick_maglev(const px_lb_t *lb, const px_lb_in_t *in) {
  uint64_t x = in->hash;
  for (int k = 0; k < LB_TRIES; k++, x = next_draw(x)) {
    size_t e = lb->table[x % lb->m];
    if (ok(in, e)) return (int)e;
  }
  return scan(lb, in, x);
}

int px_lb_pick(const px_lb_t *lb, const px_lb_in_t *in) {
  switch (lb->kind) {
  case PX_LB_ROUND_ROBIN: return pick_round_robin(lb, in);
  case PX_LB_LEAST_REQUEST: return pick_least_request(lb, in);
  case PX_LB_RING_HASH: return in->has_hash ? pick_ring(lb, in) : pick_random(lb, in, in->rand[0]);
  case PX_LB_MAGLEV: return in->has_hash ? pick_maglev(lb, in) : pick_random(lb, in, in->rand[0]);
  default: return pick_random(lb, in, in->rand[0]);
  }
}

size_t px_lb_count(const px_lb_t *lb) { return lb->n; }

size_t px_lb_table_size(const px_lb_t *lb) { return lb->kind == PX_LB_MAGLEV ? lb->m : lb->npoints; }

/* ---- building -------------------------------------------------------------------------- */

static int is_prime(uint32_t m) {
  if (m < 2) return 0;
  for (uint32_t d = 2; (uint64_t)d * d <= m; d++)
    if (m % d == 0) return 0;
  return 1;
}

typedef struct {
  uint64_t h;
  const char *name;
  uint32_t owner;
} ring_point_t;

/* By position, then name, so that the ring is the same whatever order the endpoints are
 * listed in (two names sharing a point is a 2^-64 event, but then it is settled alike). */
static int point_cmp(const void *pa, const void *pb) {
  const ring_point_t *a = pa, *b = pb;
  if (a->h != b->h) return a->h < b->h ? -1 : 1;
  int c = strcmp(a->name, b->name);
  return c ? c : (a->owner > b->owner) - (a->owner < b->owner);
}

/* Each endpoint gets vnodes × weight points, hashes of its name followed by the point's
 * number; when that would pass `max`, every count shrinks in proportion (at least one). */
static void build_ring(px_lb_t *lb, const char *const *names, uint64_t vnodes, uint64_t max) {
  uint64_t want = 0;
  for (size_t i = 0; i < lb->n; i++) want += vnodes * weight(lb, i);
  uint64_t *count = px_calloc(lb->n, sizeof(*count));
  size_t np = 0;
  for (size_t i = 0; i < lb->n; i++) {
    count[i] = vnodes * weight(lb, i);
    if (want > max) count[i] = PX_MAX(1, count[i] * max / want);
    np += (size_t)count[i];
  }
  ring_point_t *pts = px_calloc(np, sizeof(*pts));
  size_t k = 0;
  for (size_t i = 0; i < lb->n; i++) {
    uint64_t base = fnv1a(FNV_BASIS, names[i], strlen(names[i]));
    for (uint32_t r = 0; r < count[i]; r++) {
      unsigned char le[4] = {(unsigned char)r, (unsigned char)(r >> 8), (unsigned char)(r >> 16),
                             (unsigned char)(r >> 24)};
      pts[k++] = (ring_point_t){px_fmix64(fnv1a(base, le, sizeof(le))), names[i], (uint32_t)i};
    }
  }
  qsort(pts, np, sizeof(*pts), point_cmp);
  lb->points = px_calloc(np, sizeof(*lb->points));
  lb->owners = px_calloc(np, sizeof(*lb->owners));
  for (size_t j = 0; j < np; j++) {
    lb->points[j] = pts[j].h;
    lb->owners[j] = (uint16_t)pts[j].owner;
  }
  lb->npoints = np;
  free(pts);
  free(count);
}

typedef struct {
  const char *name;
  uint32_t idx;
  uint32_t offset, skip, cur; /* the endpoint's permutation of the slots, and where it is */
  uint64_t credit;
} mg_ep_t;

static int mg_cmp(const void *pa, const void *pb) {
  const mg_ep_t *a = pa, *b = pb;
  int c = strcmp(a->name, b->name);
  return c ? c : (a->idx > b->idx) - (a->idx < b->idx);
}

/* The Maglev paper's population: each endpoint prefers the slots in the order of its own
 * permutation (offset + j × skip mod m, m prime, from two hashes of its name) and the
 * endpoints take turns claiming their next free preference until the table is full. The
 * turns go in name order, so the list's order does not matter. Weights: each turn adds
 * the endpoint's weight to its credit and it claims a slot only once the credit reaches
 * the largest weight, so heavier endpoints claim proportionally more often; with equal
 * weights this is the paper's algorithm exactly, every share within one slot. */
static void build_maglev(px_lb_t *lb, const char *const *names, uint32_t m) {
  mg_ep_t *ep = px_calloc(lb->n, sizeof(*ep));
  uint64_t wmax = 1;
  for (size_t i = 0; i < lb->n; i++) {
    uint64_t h = fnv1a(FNV_BASIS, names[i], strlen(names[i]));
    ep[i].name = names[i];
    ep[i].idx = (uint32_t)i;
    ep[i].offset = (uint32_t)(px_fmix64(h) % m);
    ep[i].skip = (uint32_t)(px_fmix64(h ^ golden) % (m - 1) + 1);
    ep[i].cur = ep[i].offset;
    wmax = PX_MAX(wmax, weight(lb, i));
  }
  qsort(ep, lb->n, sizeof(*ep), mg_cmp);
  lb->table = px_malloc((size_t)m * sizeof(*lb->table));
  lb->m = m;
  for (uint32_t s = 0; s < m; s++) lb->table[s] = LB_EMPTY;
  /* Every round the heaviest endpoints claim a slot, so the loop ends; each claim ends
   * too, since a permutation passes every slot. */
  for (uint32_t filled = 0; filled < m;) {
    for (size_t j = 0; j < lb->n && filled < m; j++) {
      mg_ep_t *e = &ep[j];
      e->credit += weight(lb, e->idx);
      if (e->credit < wmax) continue;
      e->credit -= wmax;
      while (lb->table[e->cur] != LB_EMPTY) e->cur = (uint32_t)(((uint64_t)e->cur + e->skip) % m);
      lb->table[e->cur] = (uint16_t)e->idx;
      filled++;
    }
  }
  free(ep);
}

int px_lb_build(px_lb_t **out, px_lb_kind_t kind, const char *const *names, const int *weights, size_t n,
                const px_lb_opts_t *opts) {
  px_lb_opts_t o = opts ? *opts : (px_lb_opts_t){0};
  uint64_t vnodes = o.ring_vnodes > 0 ? (uint64_t)o.ring_vnodes : PX_LB_RING_VNODES;
  uint64_t ring_max = o.ring_max ? o.ring_max : PX_LB_RING_MAX;
  uint32_t m = o.maglev_size ? o.maglev_size : PX_LB_MAGLEV_SIZE;
  if (n == 0 || n > PX_LB_MAX_ENDPOINTS || (int)kind < (int)PX_LB_ROUND_ROBIN ||
      (int)kind > (int)PX_LB_MAGLEV)
    return PX_ECONFIG;
  if (vnodes > LB_OPT_LIMIT || ring_max > LB_OPT_LIMIT || m > LB_OPT_LIMIT) return PX_ECONFIG;
  if (kind == PX_LB_MAGLEV && (m <= n || !is_prime(m))) return PX_ECONFIG;
  int equal = 1;
  for (size_t i = 0; weights && i < n; i++) {
    if (weights[i] < 1 || weights[i] > PX_LB_MAX_WEIGHT) return PX_ECONFIG;
    if (weights[i] != weights[0]) equal = 0;
  }
  px_lb_t *lb = px_calloc(1, sizeof(*lb));
  lb->kind = kind;
  lb->n = n;
  lb->total = n;
  if (!equal) {
    lb->cum = px_calloc(n, sizeof(*lb->cum));
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) lb->cum[i] = (uint32_t)(sum += (uint64_t)weights[i]);
    lb->total = sum;
    while ((1ull << lb->bits) < sum) lb->bits++;
  }
  if (kind == PX_LB_RING_HASH) build_ring(lb, names, vnodes, ring_max);
  if (kind == PX_LB_MAGLEV) build_maglev(lb, names, m);
  *out = lb;
  return 0;
}

void px_lb_free(px_lb_t *lb) {
  if (!lb) return;
  free(lb->cum);
  free(lb->points);
  free(lb->owners);
  free(lb->table);
  free(lb);
}
