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

#define PX_FILTER_STATE_BYTES 128

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
  int attempt;      /* tries made */
  uint64_t tried;   /* endpoints tried, a bit each for the first 64 */
  uint64_t lb_hash; /* its key for ring_hash / maglev (cluster `hash`), when lb_keyed */
  int lb_keyed;
  int bk_pending, bk_probe; /* the try's outcome is due to its endpoint's breaker (a probe's) */
  int retry_other;          /* the retry waiting out its backoff prefers an endpoint not tried */
  int key_added;            /* a filter gave the request an Idempotency-Key: it may run twice */
  char xhdr[96];            /* header lines filters add upstream (px_req_add_header) */
  size_t xhdr_len;
  size_t fnext;               /* the filter on_request runs next (one paused, px_req_pause) */
  int dropping;               /* its answer is read and dropped, its client reset (px_req_drop) */
  int tap_body, tap_response; /* filters' body taps wanted (filter.h) */
  px_buf_t *keep_head;        /* set by on_response_head: px_resp_rewrite_t.keep */
  int absorbing;              /* its body is read here, not sent (px_req_absorb_body) */
  unsigned filters;           /* the filters its route wants, a bit each (request.c) */
  px_str_t authority, origin; /* an absolute-form target's parts (px_http1_absolute_target) */
  px_try_t t;
  /* its life */
  int active, ended, resp_started, resp_done, status;
  uint64_t start_ns, end_ns; /* monotonic: its head complete; its end hook (px_now_ns) */
  /* what it leaves for operators (telemetry.c) */
  px_trace_ctx_t *trace; /* its trace context; allocated on the connection's first traced request */
  int traced, tel_err;   /* tel_err: the sidecar's own answer's px_errkind_t + 1 */
  int tel_head;          /* its head came whole (its method and target are known) */
  uint64_t wall_us, out_base;
  int try_open, try_attempt, try_status, try_err; /* the current try's span */
  uint8_t try_span[8];
  uint64_t try_start_us, try_end_us;
  size_t try_ep;
  _Alignas(16) unsigned char fstate[PX_FILTER_STATE_BYTES];
};

/* Answers the request with the sidecar's own error (SPEC §4: problem+json,
 * x-outrigger-error, the cause counted); `extra` (CRLF-terminated lines or NULL) goes
 * into the head. Once the answer has started, all that can be done is to close. */
void px_req_fail(px_req_t *r, px_errkind_t kind, const char *detail, const char *extra);
/* The same with a status of the caller's (fault injection's abort). */
void px_req_fail_status(px_req_t *r, px_errkind_t kind, int status, const char *detail, const char *extra);
/* From on_request, returning PX_FILTER_STOP: the request waits `ms`, then the same
 * filter's on_request runs again (its state says it has waited) and the chain goes on. */
void px_req_pause(px_req_t *r, uint64_t ms);
/* From on_response_head, returning PX_FILTER_STOP: the upstream's answer is read to its
 * end and dropped, and the client's connection is reset without an answer. */
void px_req_drop(px_req_t *r);
/* From on_request, returning PX_FILTER_STOP: the body is read from the client without
 * going anywhere (the filters' on_request_body taps see it), then the same filter's
 * on_request runs again, as after px_req_pause. */
void px_req_absorb_body(px_req_t *r);
/* Answers the request from the sidecar with `status`, header lines `headers`
 * ("name: value\r\n"...; no framing headers) and `body` (not sent to HEAD). */
void px_req_respond(px_req_t *r, int status, px_str_t headers, px_str_t body);
/* Another try of the request, on an endpoint the cluster picks (one not tried yet when
 * `other` and the route's retry.other_endpoint say so). */
void px_req_retry(px_req_t *r, int other);
/* The same, after `ms` (a backoff); a held answer is dropped first (px_try_discard).
 * Returns -1, doing nothing, when the route's timeout would pass first: then the
 * caller lets the outcome reach the client. */
int px_req_retry_after(px_req_t *r, uint64_t ms, int other);
/* From on_request: a header line ("name: value", no CRLF) for the request going
 * upstream, on every try. Returns -1 when the room for such lines is used up. */
int px_req_add_header(px_req_t *r, px_str_t line);

#endif
