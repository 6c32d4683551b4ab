/* Cluster and endpoint state that outlives a configuration: kept by cluster name and
 * endpoint address, shared by every worker and by every snapshot that names it. A reload
 * that leaves a cluster alone keeps its counts (and, as they come, its breaker, health,
 * run-time weights and outlier data), so limits stay exact across a SIGHUP and a breaker
 * does not close because the file was reloaded; an endpoint a reload removes keeps its
 * state while requests of the old configuration still use it, and loses it with the
 * last snapshot that names it (a re-added endpoint starts afresh).
 *
 * Getting and putting happen when snapshots are built and freed (not per request), under
 * one mutex; the counters themselves are atomics the hot path updates directly. */
#ifndef PX_CLUSTER_STATE_H
#define PX_CLUSTER_STATE_H

#include <stdatomic.h>

#include "breaker.h"
#include "health.h"

typedef struct px_endpoint_state_s {
  char name[64]; /* "127.0.0.1:9001" */
  atomic_int active_requests;
  atomic_int connections;
  atomic_ullong requests_total;
  atomic_ullong failures_total;
  px_breaker_t breaker;                           /* admits everything until a snapshot configures it */
  atomic_ullong transitions[PX_BREAKER_CAUSE__N]; /* by cause */
  atomic_ullong suppressed_opens;                 /* opens max_open_percent refused */
  px_health_t health;                             /* healthy until a snapshot's health_check says otherwise */
  /* The prober's (prober.c), touched by its thread alone: the probe under way. */
  int probe_fd, probe_phase;
  uint64_t probe_next_ms, probe_deadline_ms;
  size_t probe_got;
  char probe_buf[32];
  int probe_last_status; /* the last probe's result: a status, 0 none yet, -1 no answer */
  int refs;              /* under the registry's mutex */
  struct px_endpoint_state_s *next;
} px_endpoint_state_t;

typedef struct px_cluster_state_s {
  char *name;
  atomic_int connections; /* open upstream connections, all workers */
  atomic_int pending;     /* requests waiting for a connection slot */
  atomic_int active_requests;
  atomic_int active_retries;
  atomic_int open_endpoints; /* breakers open or half-open (max_open_percent) */
  int refs;                  /* under the registry's mutex */
  px_endpoint_state_t *eps;
  struct px_cluster_state_s *next;
} px_cluster_state_t;

/* The state of cluster `name`, made on first use; each get is matched by a put. */
px_cluster_state_t *px_cluster_state_get(const char *name);
void px_cluster_state_put(px_cluster_state_t *c);
/* The state of endpoint `name` of cluster `c` (which the caller holds). */
px_endpoint_state_t *px_endpoint_state_get(px_cluster_state_t *c, const char *name);
void px_endpoint_state_put(px_cluster_state_t *c, px_endpoint_state_t *e);

/* Accounts for a breaker transition of endpoint `e` of cluster `c` (named `cluster`):
 * the cluster's open count, the transition counters, and one log line. */
void px_endpoint_breaker_noted(px_cluster_state_t *c, px_endpoint_state_t *e, const char *cluster,
                               const px_breaker_transition_t *tr);
/* A px_breaker_may_open_cb over cluster `c` (its ctx): max_open_percent of `size`. */
typedef struct {
  px_cluster_state_t *c;
  int size, max_open_percent;
} px_breaker_room_t;
int px_breaker_room(void *ctx);

/* How many cluster states exist (for tests). */
int px_cluster_state_count(void);

#endif
