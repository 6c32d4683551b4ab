/* The retry filter: a try that failed before an answer was committed goes again when
 * px_retry_decide says so. */
#include "filter.h"
#include "request.h"
#include "retry.h"

static px_filter_rc_t on_try_failed(px_req_t *r, void *state, px_errkind_t kind, int stale) {
  (void)state;
  const px_retry_conf_t *rc = &r->route->conf->retry;
  px_retry_in_t in = {.kind = kind,
                      .stale = stale,
                      .attempt = r->attempt,
                      .attempts = rc->attempts,
                      .on_connect_failure = (rc->on & PX_RETRY_ON_CONNECT_FAILURE) != 0,
                      .resendable = r->resendable,
                      .body_done = r->c->body_done};
  switch (px_retry_decide(&in)) {
  case PX_RETRY_OTHER: px_req_retry(r, 1); return PX_FILTER_STOP;
  case PX_RETRY_SAME:
    r->tried = 0; /* the same endpoint is fine: only that connection was stale */
    px_req_retry(r, 0);
    return PX_FILTER_STOP;
  case PX_RETRY_NO: break;
  }
  return PX_FILTER_GO;
}

const px_filter_t px_filter_retry = {.name = "retry", .on_try_failed = on_try_failed};
