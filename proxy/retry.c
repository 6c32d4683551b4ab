#include "retry.h"

px_retry_t px_retry_decide(const px_retry_in_t *in) {
  if (in->attempt >= in->attempts) return PX_RETRY_NO; /* every try counts, the first included */
  if (in->kind == PX_ERR_CONNECT_FAILURE) return in->on_connect_failure ? PX_RETRY_OTHER : PX_RETRY_NO;
  /* A pooled connection the upstream closed as it was reused, most likely at its
   * keep-alive timeout, before it read the request. "Most likely": an upstream that read
   * the request, did the work and then died looks the same from here, so only a request
   * that may safely run twice goes again. */
  if (in->kind == PX_ERR_UPSTREAM_RESET && in->stale && in->resendable && in->body_done) return PX_RETRY_SAME;
  return PX_RETRY_NO;
}
