/* The retry decision (proxy/retry.h): which failed tries go again, and where. What a
 * user relies on: a connect failure (nothing was sent) goes to another endpoint while
 * the route's attempts allow; a stale pooled connection is retried only for a request
 * that may run twice and was kept whole; nothing else is retried yet, and no request
 * gets more tries than retry.attempts, the first included. */
#include <criterion/criterion.h>

#include "retry.h"

static px_retry_in_t base(void) {
  return (px_retry_in_t){.kind = PX_ERR_CONNECT_FAILURE,
                         .stale = 0,
                         .attempt = 1,
                         .attempts = 2,
                         .on_connect_failure = 1,
                         .resendable = 1,
                         .body_done = 1};
}

Test(retry, connect_failure_goes_to_another_endpoint) {
  px_retry_in_t in = base();
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER);
  in.resendable = 0; /* nothing reached the upstream: safe whatever the method */
  in.body_done = 0;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER);
}

Test(retry, connect_failure_needs_the_route_to_ask) {
  px_retry_in_t in = base();
  in.on_connect_failure = 0;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, attempts_count_the_first_try) {
  px_retry_in_t in = base();
  in.attempt = 2;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in.attempts = 3;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER);
  in.attempts = 1;
  in.attempt = 1;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in.kind = PX_ERR_UPSTREAM_RESET; /* a stale connection is no exception */
  in.stale = 1;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, stale_connection_is_retried_when_safe) {
  px_retry_in_t in = base();
  in.kind = PX_ERR_UPSTREAM_RESET;
  in.stale = 1;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_SAME);
  in.resendable = 0; /* a POST, or a body past buffer_limit: it may have run */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in.resendable = 1;
  in.body_done = 0; /* the body is not all here to send again */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, stale_retry_does_not_need_connect_failure_on) {
  px_retry_in_t in = base();
  in.kind = PX_ERR_UPSTREAM_RESET;
  in.stale = 1;
  in.on_connect_failure = 0;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_SAME);
}

Test(retry, other_failures_are_not_retried) {
  px_errkind_t kinds[] = {PX_ERR_UPSTREAM_RESET, PX_ERR_UPSTREAM_TIMEOUT, PX_ERR_BAD_RESPONSE};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    px_retry_in_t in = base();
    in.kind = kinds[i];
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "%s", px_errkind_name(kinds[i]));
  }
}
