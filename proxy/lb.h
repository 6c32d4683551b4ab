/* Load balancing (SPEC §6, cluster `lb`), pure: which endpoint of a cluster a request
 * goes to, by round robin, least request (power of two choices), random, ring hash or
 * Maglev. No I/O, no locks, no clock, no randomness of its own: the caller passes the
 * request's key hash, its round-robin ticket and two random draws, and says through
 * callbacks which endpoints are usable and how many requests each has in flight, so the
 * same inputs always give the same endpoint (and the tests are deterministic).
 *
 * A px_lb_t is built once per cluster when the configuration loads (the ring and the
 * Maglev table are made there, never per request) and is then read-only: every worker
 * may pick from it at once. Picking never allocates.
 *
 * Unusable endpoints (health check failing, breaker open, already tried by this request)
 * are skipped without rebuilding anything, and without moving the keys of the others: a
 * pick looks at the key's own endpoint first and only walks on when that one refuses.
 * A pick fails (-1) only when no endpoint at all is usable. */
#ifndef PX_LB_H
#define PX_LB_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Indices are stored in 16 bits, so that the tables stay small. */
#define PX_LB_MAX_ENDPOINTS 65535
/* Endpoint weights are 1..PX_LB_MAX_WEIGHT; a weight-w endpoint takes w times the traffic
 * of a weight-1 one. */
#define PX_LB_MAX_WEIGHT 128
/* Defaults: ring points per unit of weight (an endpoint's share of the ring is off by
 * 1/√points one sigma: 6% here); the most points a ring may hold (past 256 endpoints of
 * weight 1, every endpoint gets proportionally fewer, at least one); and the Maglev
 * table size, a prime: the paper wants it above 100 × the endpoint count for ~1%
 * imbalance, which this one is up to 655 endpoints (at 1024, shares differ by < 2%). */
#define PX_LB_RING_VNODES 256
#define PX_LB_RING_MAX 65536
#define PX_LB_MAGLEV_SIZE 65537

typedef struct px_lb_s px_lb_t;

/* Build options; any field left 0 takes its default, none may pass 2^24. Tests use small
 * Maglev tables. */
typedef struct {
  int ring_vnodes;      /* ring points per unit of weight (PX_LB_RING_VNODES) */
  size_t ring_max;      /* ring points at most, or one per endpoint if more (PX_LB_RING_MAX) */
  uint32_t maglev_size; /* a prime greater than the endpoint count (PX_LB_MAGLEV_SIZE) */
} px_lb_opts_t;

/* What one pick knows about the request and the endpoints. Endpoints are named by their
 * index in the list the balancer was built from. */
typedef struct {
  uint64_t hash; /* ring_hash, maglev: px_lb_hash of the request's key */
  int has_hash;  /* 0: the request has no key (header or cookie absent): picked at random */
  /* round_robin: one more than the last pick's; a shared atomic counter's fetch-add keeps
   * the turns fair across workers, a per-worker counter is fair per worker. */
  uint64_t ticket;
  /* Two independent uniform 64-bit draws (px_rand64): random uses the first, least_request
   * both, the hashed kinds the first for keyless requests. With equal weights a draw `x`
   * stands for endpoint x % n; with weights, for the endpoint whose run of the cumulative
   * weights holds x % (sum of weights). */
  uint64_t rand[2];
  /* Whether endpoint `i` may take the request; NULL: all may. Asked only about candidates,
   * possibly more than once about one endpoint in a pick, so it must not change state. */
  int (*usable)(void *data, size_t i);
  /* least_request: requests in flight at endpoint `i`, summed over all workers. */
  int (*active)(void *data, size_t i);
  void *data; /* passed to both callbacks */
} px_lb_in_t;

/* A good non-cryptographic 64-bit hash (FNV-1a, then murmur3's fmix64 finaliser so every
 * input bit reaches every output bit), used for request keys and endpoint names alike. */
uint64_t px_lb_hash(const void *p, size_t n);

/* Builds the balancer `kind` over `n` endpoints named `names` ("127.0.0.1:9001"; ring and
 * Maglev positions come from the names, so the list's order does not matter to them), with
 * `weights` (NULL: all 1) and `opts` (NULL: defaults). 0, or PX_ECONFIG for no endpoints,
 * too many, a weight out of range or a Maglev size that is not a prime above `n`. */
int px_lb_build(px_lb_t **out, px_lb_kind_t kind, const char *const *names, const int *weights, size_t n,
                const px_lb_opts_t *opts);
/* Frees what px_lb_build made; NULL is a no-op. */
void px_lb_free(px_lb_t *lb);

/* The endpoint index for one request, or -1 when no endpoint is usable (answer 503). */
int px_lb_pick(const px_lb_t *lb, const px_lb_in_t *in);

/* How many endpoints the balancer was built over. */
size_t px_lb_count(const px_lb_t *lb);
/* Entries in its lookup table: ring points, Maglev slots, 0 for the other kinds (for the
 * admin API and the tests that bound memory). */
size_t px_lb_table_size(const px_lb_t *lb);

#endif
