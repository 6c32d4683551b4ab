/* The running configuration: a loaded px_config_t plus what lives as long as it does:
 * per-route split weights that the admin API may change at run time, and per worker
 * round-robin positions and idle-connection pools. Cluster and endpoint counters
 * (atomic, so limits are exact across workers, SPEC §6) outlive it: they are kept by
 * name in cluster_state.h, and a snapshot holds references to them.
 *
 * A snapshot is reference-counted. Each worker holds one reference to the snapshot
 * it serves new requests from, and a request in flight keeps the snapshot it started
 * with (through its worker's px_wsnap_t, see wctx.h), so a reload never pulls state
 * from under a request. */
#ifndef PX_RUNTIME_H
#define PX_RUNTIME_H

#include <stdatomic.h>

#include "canary.h"
#include "cluster_state.h"
#include "config.h"
#include "lb.h"
#include "queue.h"
#include "route_state.h"
#include "sinks.h"

typedef struct px_pool_s px_pool_t;

typedef struct {
  const px_addr_conf_t *conf; /* the file's, or `own` for a discovered endpoint */
  char name[64];              /* "127.0.0.1:9001" */
  px_endpoint_state_t *st;    /* its counters, kept across reloads */
  int weight;                 /* 1 for the file's; a discovered record's `weight` */
  int discovered;             /* from the registry (SPEC §12), not the file */
  int64_t revision;           /* a discovered endpoint's record: its etcd mod_revision */
  px_addr_conf_t own;
} px_endpoint_t;

/* A discovered cluster's endpoints as the registry knows them at one moment (SPEC §12,
 * registry_run.h): what a snapshot is built with. */
typedef struct {
  char name[64]; /* canonical "127.0.0.1:8001" */
  struct sockaddr_storage sa;
  int weight;
  int64_t revision; /* its record's mod_revision */
} px_disc_ep_t;
typedef struct {
  const px_disc_ep_t *eps;
  size_t n;
  int64_t revision; /* the registry's revision the set reflects; 0 before the first list */
  int stale;        /* etcd is unreachable: these are the last known */
} px_disc_view_t;
/* Fills `out` for discovered cluster `cc`; the view is copied before the call returns. */
typedef void (*px_disc_lookup_fn)(void *ctx, const px_cluster_conf_t *cc, px_disc_view_t *out);

typedef struct {
  const px_cluster_conf_t *conf;
  int index;
  int metric_slot;
  px_endpoint_t *eps;
  size_t neps;
  px_cluster_state_t *st; /* its counters, kept across reloads */
  px_lb_t *lb;            /* its balancer (cluster `lb`), tables built with the snapshot */
  int weighted;           /* some endpoint's weight is not 1: the balancer always picks */
  int64_t disc_revision;  /* a discovered cluster's: the registry revision of eps */
  int disc_stale;         /* a discovered cluster's: etcd was unreachable (last known eps) */
  /* Per worker: its round-robin position, its idle-connection pools (one per
   * endpoint) and the requests waiting for a connection (limits.max_pending). A worker
   * touches only its own row, so these need no locking. */
  struct px_cluster_worker_s {
    unsigned rr;
    int nwaiters;
    px_pool_t *pools;   /* neps entries, allocated by the worker (see upstream.c) */
    px_queue_t waiters; /* px_upwait_t, oldest first; set up with the pools */
    char pad[64 - 2 * sizeof(int) - sizeof(void *) - sizeof(px_queue_t)];
  } * per_worker;
} px_cluster_t;

typedef struct {
  const px_route_conf_t *conf;
  int metric_slot;
  px_route_state_t *rs; /* a split's weights and counts, kept across reloads; NULL without */
  int canary;           /* the split entry marked canary, or -1 */
  atomic_uint filters;  /* request.c's: which filters the route wants; 0 until first asked */
} px_route_rt_t;

typedef struct {
  const px_listener_conf_t *conf;
  int metric_slot;
  px_route_rt_t *routes;
  _Atomic(void *) idem_store; /* filter_idempotency.c's store for the listener, once asked */
} px_listener_rt_t;

typedef struct px_snapshot_s {
  px_config_t *cfg;
  px_sinks_t sinks; /* the access log and span exporter cfg asks for (sinks.h), set by main */
  int tel_on;       /* tracing or an access log: requests have something to leave (telemetry.h) */
  atomic_int refs;
  unsigned generation;
  int nworkers;
  px_cluster_t *clusters;
  px_listener_rt_t *listeners;
} px_snapshot_t;

/* Takes ownership of (one reference to) `cfg`; the snapshot starts with one reference.
 * Discovered clusters get their endpoints from `lookup` (NULL: none yet). */
px_snapshot_t *px_snapshot_new(px_config_t *cfg, int nworkers, unsigned generation, px_disc_lookup_fn lookup,
                               void *lookup_ctx);
void px_snapshot_ref(px_snapshot_t *s);
/* Drops a reference; the last one frees the snapshot and its config. Pools must
 * have been emptied by their workers before (px_upstream_release_pools). */
void px_snapshot_unref(px_snapshot_t *s);

/* Whether listener `name`'s app passes its health checks: unless every endpoint of the
 * clusters its routes reach that have a health_check is unhealthy (clusters without
 * one do not count; a listener none of whose clusters has one is healthy). For the
 * registry, which withdraws the listener's record meanwhile (SPEC §12). */
int px_snapshot_listener_healthy(px_snapshot_t *s, const char *name);

/* Finds the listener runtime whose name matches, or NULL. */
px_listener_rt_t *px_snapshot_listener(px_snapshot_t *s, const char *name);

/* The cluster a request goes to: the route's cluster, or one of its split entries by
 * px_canary_pick over the run-time weights (the override header's `force`, the sticky
 * key's hash when `has_key`, else `r`, uniform in [0, 1)), counted in the route's
 * requests for worker `wid`. Returns NULL when nothing can take it (every weight that applies is 0). */
px_cluster_t *px_route_pick(px_snapshot_t *s, int wid, const px_route_rt_t *rt, px_canary_force_t force,
                            int has_key, uint64_t key_hash, double r);

/* The endpoint for a request: by the cluster's balancer, from worker `wid`'s turn (round
 * robin), keyed by `hash` when `has_hash` (ring hash, Maglev), avoiding the endpoints in
 * `exclude` (a bit each for the first 64: those already tried) while another is left,
 * and those unhealthy or whose circuit breaker is open at `now` (monotonic ms; the data
 * path passes its loop's time, read once a loop turn). -1 when every breaker refuses,
 * -2 when no endpoint is healthy. `probe` says the try is a half-open breaker's probe:
 * its outcome must be reported, or its slot released. */
int px_cluster_pick(px_cluster_t *c, int wid, uint64_t exclude, uint64_t hash, int has_hash, uint64_t now,
                    int *probe);

#endif
