/* Active health checks (SPEC §6, cluster `health_check`): one prober for the process,
 * off the request path, on a thread of its own. Every `interval` each endpoint of a
 * cluster with a check gets `GET path` on a fresh connection; a 2xx within `timeout`
 * passes, anything else fails; health.c turns results into healthy/unhealthy by the
 * thresholds, and the balancer leaves unhealthy endpoints out (runtime.c). Probes of all
 * endpoints run at once (non-blocking sockets under one poll), so a hung endpoint delays
 * no other's. */
#ifndef PX_PROBER_H
#define PX_PROBER_H

#include "runtime.h"

/* Starts probing the endpoints of `s` (which it references). */
void px_prober_start(px_snapshot_t *s);
/* A reload: probe `s`'s endpoints from now on (health kept per endpoint by name). */
void px_prober_set(px_snapshot_t *s);
/* Stops the thread and lets the snapshot go. */
void px_prober_stop(void);

#endif
