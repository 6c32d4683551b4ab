/* What a split route keeps across reloads (SPEC §7): its run-time weights, which the
 * admin API (and, with analysis, the canary's run) may change, and its request counts
 * per cluster. Kept by listener and route name, as cluster_state.h keeps a cluster's
 * counters, so that a reload that leaves the route's split as it was in the file keeps
 * the weights an operator set; a split changed in the file starts again from the file's
 * weights. Snapshots hold references; the last one frees the state.
 *
 * The weights are a set, changed as one: a sequence count around them (a seqlock) lets
 * a request read them without a lock and never see half of an old set and half of a
 * new one, which could be all zeros ({100, 0} becoming {0, 100}). The request counts are
 * per worker. */
#ifndef PX_ROUTE_STATE_H
#define PX_ROUTE_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "canary.h"
#include "config.h"

/* Split entries a route may have (the configuration refuses more). */
#define PX_SPLIT_MAX 64

/* One worker's answers of one analysis interval, by side ([0] stable, [1] canary): the
 * worker adds under the slot's lock (its own, so uncontended but at the interval's end),
 * the main thread takes them and starts the next interval. */
typedef struct {
  pthread_mutex_t mu;
  px_canary_window_t win[2];
  /* Requests sent to each split entry by this worker, since the state was made: written
   * by the worker alone (a load and a store, no shared line bouncing between workers),
   * summed by px_route_requests. */
  atomic_ullong requests[PX_SPLIT_MAX];
} px_canary_slot_t;

typedef struct px_route_state_s {
  char *listener, *route;
  char *split_sig; /* the file's split as it was when the weights were set from it */
  size_t n;        /* split entries */
  atomic_uint seq; /* even while the weights are a whole set: px_route_weights_read */
  atomic_int weights[PX_SPLIT_MAX];
  atomic_int set_at_run_time;          /* the weights are not the file's (admin, canary run) */
  atomic_ullong rollbacks, promotions; /* by the canary's run */
  atomic_ullong analyses[3];           /* intervals judged, by px_canary_verdict_kind_t */
  /* canary.analysis: per worker windows, and the run (main thread only) */
  int nworkers;
  px_canary_slot_t *slots;
  px_canary_run_t run;
  int run_started;
  uint64_t next_ms;         /* the current interval's end */
  px_canary_verdict_t last; /* the last interval's */
  int have_last;
  int refs, detached; /* under the registry's mutex */
  struct px_route_state_s *next;
} px_route_state_t;

/* The state of route `rc` of listener `listener` (which has a split), made or found. When
 * the route's split in the file differs from the one its weights came from (another
 * cluster, order, canary mark or weight), a new state starts from the file's weights
 * (the old one stays with the snapshots that hold it); else the run-time weights stay,
 * and *kept says so (1) when they are not the file's. */
px_route_state_t *px_route_state_get(const char *listener, const px_route_conf_t *rc, int nworkers,
                                     int *kept);
/* Records a finished request of worker `wid` for the analysis: its side, whether it
 * failed (a 5xx, the upstream's or the sidecar's, or no answer at all) and how long it
 * took. */
/* Counts a request of worker `wid` sent to split entry k. */
void px_route_state_count(px_route_state_t *s, int wid, size_t k);
/* Requests sent to split entry k, all workers. */
uint64_t px_route_requests(const px_route_state_t *s, size_t k);
void px_route_state_record(px_route_state_t *s, int wid, int canary, int failed, uint64_t latency_us);
/* The windows of the interval that ends now, summed over the workers, and a new one. */
void px_route_state_take(px_route_state_t *s, px_canary_window_t *stable, px_canary_window_t *canary);
void px_route_state_put(px_route_state_t *s);

/* The weights as one set, into out[0..s->n). */
void px_route_weights_read(px_route_state_t *s, int *out);
/* Sets the weights (s->n of them) as one set; from one thread at a time (the main
 * thread's admin API and canary runs). `run_time`: not the file's weights any more. */
void px_route_weights_write(px_route_state_t *s, const int *w, int run_time);

#endif
