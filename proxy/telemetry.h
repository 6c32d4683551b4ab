/* What a request leaves for operators (SPEC §8): its trace context, continued on every
 * upstream try with a span id of the try's own (trace.h); its spans, a SERVER span for
 * the request and a CLIENT span per try, handed to the exporter (span.h); its
 * access-log line (accesslog.h). request.c calls these at the request's start, at each
 * try's start and outcome, and at its end; each returns at once when its
 * configuration has neither tracing nor an access log.
 *
 * A try's span ends with its outcome (a failure, or the answer's head when the answer
 * is dropped for a retry) and goes out when the next try starts, or at the request's
 * end: then a committed answer's span ends with the answer. */
#ifndef PX_TELEMETRY_H
#define PX_TELEMETRY_H

#include "request.h"

/* The out-of-line halves of the calls below, for requests that have something to leave. */
void px__tel_begin(px_req_t *r);
void px__tel_try_start(px_req_t *r, size_t ep);
void px__tel_try_outcome(px_req_t *r, int status, px_errkind_t kind);
void px__tel_end(px_req_t *r);

/* The request begins, its snapshot chosen: its clock, and its trace context when
 * tracing and `have_head` (not for a head refused before it came whole). */
static inline void px_tel_begin(px_req_t *r, int have_head) {
  r->traced = r->try_open = r->tel_err = 0;
  r->tel_head = have_head;
  if (PX_UNLIKELY(r->ws->snap->tel_on)) px__tel_begin(r);
}
/* Try r->attempt starts on endpoint `ep`: its trace headers go at the end of r->uhead. */
static inline void px_tel_try_start(px_req_t *r, size_t ep) {
  if (PX_UNLIKELY(r->traced)) px__tel_try_start(r, ep);
}
/* The try's outcome: the status of its answer's head, or (status 0) the failure. */
static inline void px_tel_try_outcome(px_req_t *r, int status, px_errkind_t kind) {
  if (PX_UNLIKELY(r->try_open)) px__tel_try_outcome(r, status, kind);
}
/* The request ended: its spans and its access-log line. */
static inline void px_tel_end(px_req_t *r) {
  if (PX_UNLIKELY(r->ws->snap->tel_on)) px__tel_end(r);
}

#endif
