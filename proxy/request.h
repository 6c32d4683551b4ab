/* The proxy's requests (SPEC §4): what the client connection (downstream.h) hands
 * over, routed, passed through the policy filters (filter.h), carried by upstream tries
 * (try.h), answered by the sidecar itself when it must (problem+json, the one failure
 * path), and ended by one end hook that runs exactly once however the request ends:
 * completed, failed, timed out, or abandoned by its client.
 *
 * Memory: a client connection and its request are one allocation (the request is
 * served one at a time); per-request state is reset at each begin, and what a request
 * allocates (its head for the upstream, a body kept for resends) is reused by the next
 * one on the connection and freed with the connection. */
#ifndef PX_REQUEST_H
#define PX_REQUEST_H

#include "downstream.h"
#include "filter.h"
#include "try.h"
#include "wctx.h"

#define PX_FILTER_STATE_BYTES 64

struct px_req_s {
  px_conn_t *c;
  px_wctx_t *w;
  px_wsnap_t *ws; /* the snapshot the connection serves from (the newest at each begin) */
  size_t lidx;    /* its listener, in ws->snap->listeners */
  px_route_rt_t *route;
  px_cluster_t *cluster;
  /* the request as it goes upstream */
  px_buf_t uhead;    /* its head, up to the attempt line */
  size_t uhead_base; /* px_http1_finish_request's cut */
  char rid[201];     /* its x-request-id */
  int method, minor, is_head, client_keep_alive, chunked_in;
  /* `resendable`: the request may go upstream again after it was sent: it is safe to
   * run twice (px_http1_resend_safe) and `body` holds all of its body sent so far; it
   * turns 0 for good once a byte does not fit the route's retry.buffer_limit. */
  int resendable;
  px_buf_t body;
  uint64_t body_sent;
  int attempt, max_attempts; /* tries made; allowed on connect failures */
  uint64_t tried;            /* endpoints tried, a bit each for the first 64 */
  px_try_t t;
  /* its life */
  int active, ended, resp_started, resp_done, status;
  uint64_t start_ns;
  _Alignas(16) unsigned char fstate[PX_FILTER_STATE_BYTES];
};

/* Answers the request with the sidecar's own error (SPEC §4: problem+json,
 * x-outrigger-error, the cause counted); `extra` (CRLF-terminated lines or NULL) goes
 * into the head. Once the answer has started, all that can be done is to close. */
void px_req_fail(px_req_t *r, px_errkind_t kind, const char *detail, const char *extra);
/* Another try of the request, on an endpoint the cluster picks (one not tried yet when
 * `other` and the route's retry.other_endpoint say so). */
void px_req_retry(px_req_t *r, int other);

#endif
