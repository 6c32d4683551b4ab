/* Active health checks (SPEC §6, cluster `health_check`), pure: what a probe's answer
 * means, and the per-endpoint counter that takes an endpoint out of the rotation after
 * unhealthy_threshold failed probes in a row and brings it back after healthy_threshold
 * good ones in a row. Endpoints start healthy, so a new or reloaded cluster serves at
 * once instead of waiting a few intervals for its first verdict. No sockets, no timers:
 * the I/O layer sends a GET to health_check.path every interval and reports here.
 *
 * Thread safety: px_health_report may come from any thread (a mutex guards the counts;
 * probes are seconds apart, so its cost is nothing); px_health_state is a lock-free read,
 * since every worker's balancer asks it on every pick. */
#ifndef PX_HEALTH_H
#define PX_HEALTH_H

#include <pthread.h>
#include <stdatomic.h>

#include "config.h"

typedef enum { PX_HEALTH_HEALTHY = 0, PX_HEALTH_UNHEALTHY = 1 } px_health_state_t;

/* What a report changed, for one log line and the metrics. */
typedef struct {
  int changed;
  px_health_state_t from, to;
  int probes; /* the run of results in a row that decided it */
} px_health_transition_t;

/* The fields are private: read them through px_health_state and px_health_snapshot. */
typedef struct px_health_s {
  pthread_mutex_t mu;
  atomic_int state; /* px_health_state_t; written under mu, read without it */
  int enabled;      /* a health_check block is configured */
  int unhealthy_threshold, healthy_threshold;
  int failures;  /* failed probes in a row */
  int successes; /* good probes in a row */
} px_health_t;

/* Starts healthy. `conf` NULL, for a cluster without health_check, keeps the endpoint
 * healthy whatever is reported. 0, or a negative error code from pthread_mutex_init. */
int px_health_init(px_health_t *h, const px_health_conf_t *conf);
void px_health_destroy(px_health_t *h);

/* A reload's thresholds for an endpoint that keeps its state; they apply from the next
 * probe on. NULL stops checking: an unhealthy endpoint comes back at once. */
void px_health_configure(px_health_t *h, const px_health_conf_t *conf, px_health_transition_t *tr);

/* One probe's result (px_health_probe_ok). 1 when the state changed; `tr` may be NULL. */
int px_health_report(px_health_t *h, int ok, px_health_transition_t *tr);

/* Whether the endpoint is in the rotation, as of the last report; without a lock. */
px_health_state_t px_health_state(const px_health_t *h);

/* For GET /clusters. */
typedef struct {
  px_health_state_t state;
  int enabled;
  int failures, successes; /* the current runs */
} px_health_snapshot_t;

/* The state and the current runs, read together. */
void px_health_snapshot(px_health_t *h, px_health_snapshot_t *out);

/* "healthy", "unhealthy". */
const char *px_health_state_name(px_health_state_t s);

/* Whether a probe passed: `status` is the answer's status code, or 0 (or less) when there
 * was no answer (timeout, connection refused or reset). Only 2xx passes: a redirect or a
 * 503 from a draining endpoint says it should get no traffic. */
int px_health_probe_ok(int status);

#endif
