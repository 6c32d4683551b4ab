/* Policy filters: what the sidecar does to a request beyond carrying it, one filter per
 * feature, each in its own file, with its decisions in pure functions of its own
 * (unit-tested without sockets) and the filter only adapting them to the request.
 * Modelled on h2o's handlers and Envoy's HTTP filter chain.
 *
 * A filter is a small vtable; any hook may be NULL. Filters run in the order of
 * request.c's chain for on_request and on_try_failed, and in the reverse order for
 * on_response_head and on_end (the answer comes back through the chain, as through
 * Envoy's encoder filters). A hook that returns PX_FILTER_STOP has taken the request
 * over (answered it with px_req_fail, or started another try with px_req_retry):
 * later filters do not run for that event. Per-request state is `state_size` bytes,
 * zeroed when the request begins (px_req_filter_state). */
#ifndef PX_FILTER_H
#define PX_FILTER_H

#include <stddef.h>

#include "config.h"
#include "metrics.h"

typedef struct px_req_s px_req_t;

typedef enum { PX_FILTER_GO, PX_FILTER_STOP } px_filter_rc_t;

typedef struct px_filter_s {
  const char *name;
  size_t state_size;
  /* Whether the filter has anything to do on this route of this listener (NULL: on
   * every route); the others' hooks are not called for its requests at all. */
  int (*wanted)(const px_listener_conf_t *lc, const px_route_conf_t *rc);
  /* The request is routed (its route and cluster are set) and about to go upstream. */
  px_filter_rc_t (*on_request)(px_req_t *r, void *state);
  /* A try failed before an answer was committed (`stale`: a pooled connection the
   * upstream closed unanswered). GO lets the failure reach the client (as `kind`). */
  px_filter_rc_t (*on_try_failed)(px_req_t *r, void *state, px_errkind_t kind, int stale);
  /* A response head is held: GO passes it on to the client. A filter that keeps the
   * answer may set r->keep_head to a buffer: as the head is written for the client, its
   * end-to-end header lines go there too (px_resp_rewrite_t.keep). */
  px_filter_rc_t (*on_response_head)(px_req_t *r, void *state);
  /* The upstream's whole answer is queued for the client, its last bytes not yet
   * written: what must hold before the client can have the answer (and act on it)
   * happens here. Not called for an answer a fault drops or one the sidecar made. */
  void (*on_response_done)(px_req_t *r, void *state);
  /* The request ended, whatever way: completed, failed, timed out, or its client
   * went away. Exactly once per request that began. */
  void (*on_end)(px_req_t *r, void *state);
  /* Body taps, called only while the request's tap_body / tap_response is set (a
   * filter sets it in on_request, so other requests pay nothing): each run of the
   * request body as it is read from the client (once, whatever the tries), and each
   * run of the answer's body as it goes to the client (or is dropped, px_req_drop). */
  void (*on_request_body)(px_req_t *r, void *state, px_str_t run);
  void (*on_response_body)(px_req_t *r, void *state, px_str_t run);
} px_filter_t;

/* The filters there are (each in its filter_NAME.c). */
extern const px_filter_t px_filter_canary; /* canary.analysis: each answer into its side's window (SPEC §7) */
extern const px_filter_t px_filter_fault;  /* fault injection: abort, delay, drop_response (SPEC §5) */
extern const px_filter_t px_filter_idempotency; /* inbound Idempotency-Key: run once, replay (SPEC §5) */
extern const px_filter_t px_filter_limits;      /* cluster max_requests (SPEC §6) */
extern const px_filter_t px_filter_retry; /* retries, backoff, budget, outbound Idempotency-Key (SPEC §5) */

/* Inbound idempotency's stores, one per listener name for the process's life
 * (filter_idempotency.c): their counters for GET /metrics, and freeing them at exit. */
void px_idem_stores_render(px_buf_t *out);
void px_idem_stores_free(void);

#endif
