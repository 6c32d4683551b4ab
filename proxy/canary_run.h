/* The canary's run on the main thread (SPEC §7, canary.analysis and promote): every
 * analysis interval it takes each split route's windows from the workers, has canary.c
 * judge them, and applies what the run decides: a rollback (the canary's weight to 0), a
 * promotion step, or the state change only, each with one log line and a count. */
#ifndef PX_CANARY_RUN_H
#define PX_CANARY_RUN_H

#include <stdint.h>

#include "runtime.h"

/* Called often (every few hundred ms) with the running snapshot: routes whose interval
 * has ended are judged. */
void px_canary_tick(px_snapshot_t *s, uint64_t now_ms);
/* An operator set the weights: the run starts again from the new share. */
void px_canary_restart(const px_route_rt_t *rt, uint64_t now_ms);
/* The policy of a route's canary block, in canary.c's terms. */
void px_canary_policy_of(const px_canary_conf_t *c, px_canary_policy_t *p);
/* The canary's share of a route's weights now, in percent (rounded). */
int px_canary_share_now(const px_route_rt_t *rt);

#endif
