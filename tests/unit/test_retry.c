/* The retry decisions (proxy/retry.h). What a user relies on: a connect failure
 * (nothing was sent) goes to another endpoint while the route's attempts allow; resets,
 * per-try timeouts and retried statuses go again only for a request that may run twice
 * and was kept whole, and only when the route lists them in retry.on; a stale pooled
 * connection is retried for such a request whatever retry.on says; no request gets more
 * tries than retry.attempts, the first included; the wait is full jitter under an
 * exponential cap, or the upstream's Retry-After; and the budget bounds retries in flight. */
#include <criterion/criterion.h>

#include "config.h"
#include "retry.h"

static const int statuses[] = {409, 429};

static px_retry_in_t base(void) {
  return (px_retry_in_t){.kind = PX_ERR_CONNECT_FAILURE,
                         .attempt = 1,
                         .attempts = 2,
                         .on = PX_RETRY_ON_CONNECT_FAILURE,
                         .status_list = statuses,
                         .nstatus = 2,
                         .resendable = 1,
                         .body_done = 1};
}

static px_retry_in_t answered(int status, unsigned on) {
  px_retry_in_t in = base();
  in.status = status;
  in.on = on;
  return in;
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
  in.on = PX_RETRY_ON_RESET | PX_RETRY_ON_5XX;
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
  px_retry_in_t st = answered(503, PX_RETRY_ON_5XX); /* nor an answer */
  st.attempt = st.attempts = 3;
  cr_expect_eq(px_retry_decide(&st), PX_RETRY_NO);
}

Test(retry, stale_connection_is_retried_when_safe) {
  px_retry_in_t in = base();
  in.kind = PX_ERR_UPSTREAM_RESET;
  in.stale = 1;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_SAME);
  in.on = 0; /* whatever retry.on says */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_SAME);
  in.resendable = 0; /* a POST, or a body past buffer_limit: it may have run */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in.resendable = 1;
  in.body_done = 0; /* the body is not all here to send again */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, reset_and_timeout_need_their_on_and_a_resendable_request) {
  px_errkind_t kinds[] = {PX_ERR_UPSTREAM_RESET, PX_ERR_UPSTREAM_TIMEOUT};
  unsigned ons[] = {PX_RETRY_ON_RESET, PX_RETRY_ON_TIMEOUT};
  for (int i = 0; i < 2; i++) {
    px_retry_in_t in = base();
    in.kind = kinds[i];
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "%s without its on", px_errkind_name(kinds[i]));
    in.on = ons[1 - i];
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "%s with the other on", px_errkind_name(kinds[i]));
    in.on = ons[i];
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER, "%s", px_errkind_name(kinds[i]));
    in.resendable = 0;
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "%s, not resendable", px_errkind_name(kinds[i]));
    in.resendable = 1;
    in.body_done = 0;
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "%s, body unfinished", px_errkind_name(kinds[i]));
  }
}

Test(retry, a_malformed_answer_is_not_retried) {
  px_retry_in_t in = base();
  in.kind = PX_ERR_BAD_RESPONSE;
  in.on = ~0u;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, statuses_by_class) {
  cr_expect_eq(px_retry_decide(&(px_retry_in_t){0}), PX_RETRY_NO);
  px_retry_in_t in = answered(500, PX_RETRY_ON_GATEWAY_ERROR);
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "500 is not a gateway error");
  int gw[] = {502, 503, 504};
  for (int i = 0; i < 3; i++) {
    in = answered(gw[i], PX_RETRY_ON_GATEWAY_ERROR);
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER, "%d", gw[i]);
  }
  int fivexx[] = {500, 501, 502, 507, 599};
  for (int i = 0; i < 5; i++) {
    in = answered(fivexx[i], PX_RETRY_ON_5XX);
    cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER, "%d", fivexx[i]);
  }
  in = answered(404, PX_RETRY_ON_5XX | PX_RETRY_ON_GATEWAY_ERROR);
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in = answered(503, PX_RETRY_ON_CONNECT_FAILURE | PX_RETRY_ON_RESET | PX_RETRY_ON_TIMEOUT);
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "an answer is not a failure of the connection");
}

Test(retry, retriable_status_takes_only_the_listed_codes) {
  px_retry_in_t in = answered(409, PX_RETRY_ON_RETRIABLE_STATUS);
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER);
  in.status = 429;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_OTHER);
  in.status = 503;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "503 is not listed");
  in.status = 409;
  in.nstatus = 0;
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO, "an empty list retries nothing");
}

Test(retry, an_answer_is_retried_only_for_a_request_that_may_run_twice) {
  px_retry_in_t in = answered(503, PX_RETRY_ON_5XX);
  in.resendable = 0; /* a keyless POST: the upstream may have done the work */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
  in.resendable = 1;
  in.body_done = 0; /* an early answer to a body still coming */
  cr_expect_eq(px_retry_decide(&in), PX_RETRY_NO);
}

Test(retry, backoff_is_full_jitter_under_an_exponential_cap) {
  cr_expect_eq(px_retry_backoff_ms(1, 25, 250, 0.0), 0);
  cr_expect_eq(px_retry_backoff_ms(1, 25, 250, 0.5), 12);
  cr_expect_eq(px_retry_backoff_ms(2, 25, 250, 0.5), 25);
  cr_expect_eq(px_retry_backoff_ms(3, 25, 250, 0.999), 99);
  cr_expect_eq(px_retry_backoff_ms(4, 25, 250, 0.999), 199);
  cr_expect_eq(px_retry_backoff_ms(5, 25, 250, 0.999), 249, "capped at max");
  cr_expect_eq(px_retry_backoff_ms(60, 25, 250, 0.999), 249, "no overflow for many retries");
  cr_expect_eq(px_retry_backoff_ms(1, 500, 250, 0.5), 125, "a base above max is max");
  for (int n = 1; n < 10; n++)
    for (double r = 0; r < 1; r += 0.05) cr_expect_leq(px_retry_backoff_ms(n, 25, 250, r), 250);
}

static int64_t ra(const char *s, time_t now) { return px_retry_after_ms((px_str_t){s, strlen(s)}, now); }

Test(retry, retry_after_in_seconds_and_in_every_date_form) {
  time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
  cr_expect_eq(ra("0", now), 0);
  cr_expect_eq(ra("3", now), 3000);
  cr_expect_eq(ra("120", now), 120000);
  cr_expect_eq(ra("Sun, 06 Nov 1994 08:49:39 GMT", now), 2000);
  cr_expect_eq(ra("Sunday, 06-Nov-94 08:49:40 GMT", now), 3000);
  cr_expect_eq(ra("Sun Nov  6 08:49:41 1994", now), 4000);
  cr_expect_eq(ra("Sun, 06 Nov 1994 08:49:30 GMT", now), 0, "a date past waits nothing");
  cr_expect_eq(ra("Mon, 07 Nov 1994 08:49:37 GMT", now), 86400000);
}

Test(retry, malformed_retry_after_is_ignored) {
  const char *bad[] = {"",
                       "-1",
                       "1.5",
                       "3 ",
                       " 3",
                       "soon",
                       "Sun, 06 Nov 1994 08:49:39",
                       "Sun, 6 Nov 1994 08:49:39 GMT",
                       "Sun, 06 Nov 1994 25:49:39 GMT",
                       "Sun, 06 Foo 1994 08:49:39 GMT",
                       "Sun, 06 Nov 1994 08:49:39 GMTX",
                       "Sun Nov  6 08:49:41 94",
                       "Sunday, 06-Nov-1994 08:49:40 GMT"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_expect_eq(ra(bad[i], 784111777), -1, "'%s'", bad[i]);
}

Test(retry, rfc850_two_digit_years_are_the_latest_past_century) {
  time_t now = 1796083200; /* 2026-12-01 */
  cr_expect_eq(ra("Tuesday, 01-Dec-26 00:00:10 GMT", now), 10000);
  cr_expect_eq(ra("Monday, 01-Dec-80 00:00:10 GMT", now), 0, "1980, not 2080");
}

Test(retry, budget_bounds_retries_in_flight) {
  cr_expect(px_retry_budget_allows(0, 0, 0.2, 3, 3));
  cr_expect(px_retry_budget_allows(2, 1, 0.2, 3, 100), "min_concurrency whatever the load");
  cr_expect_not(px_retry_budget_allows(3, 10, 0.2, 3, 100), "max(3, 20%% of 10) = 3");
  cr_expect(px_retry_budget_allows(19, 100, 0.2, 3, 100));
  cr_expect_not(px_retry_budget_allows(20, 100, 0.2, 3, 100), "20%% of 100");
  cr_expect_not(px_retry_budget_allows(3, 1000, 0.2, 3, 3), "limits.max_retries caps the budget");
  cr_expect_not(px_retry_budget_allows(0, 1000, 0.2, 3, 0));
}

/* outrigger_retries_denied_total tells the two refusals apart. */
Test(retry, budget_check_names_what_refused) {
  cr_expect_eq(px_retry_budget_check(0, 0, 0.2, 3, 3), -1);
  cr_expect_eq(px_retry_budget_check(3, 10, 0.2, 3, 100), PX_DENIED_BUDGET);
  cr_expect_eq(px_retry_budget_check(20, 100, 0.2, 3, 100), PX_DENIED_BUDGET);
  cr_expect_eq(px_retry_budget_check(3, 1000, 0.2, 3, 3), PX_DENIED_MAX_RETRIES);
  cr_expect_eq(px_retry_budget_check(5, 10, 0.2, 3, 5), PX_DENIED_MAX_RETRIES, "both refuse: the limit says");
}

/* outrigger_retries_total's reason: the failure, or the retry.on rule the status met. */
Test(retry, reason_of_a_retry) {
  px_retry_in_t in = base();
  cr_expect_eq(px_retry_reason(&in, px_retry_decide(&in)), PX_RETRY_REASON_CONNECT_FAILURE);
  in.kind = PX_ERR_UPSTREAM_RESET;
  in.on = PX_RETRY_ON_RESET;
  cr_expect_eq(px_retry_reason(&in, px_retry_decide(&in)), PX_RETRY_REASON_RESET);
  in.stale = 1;
  cr_assert_eq(px_retry_decide(&in), PX_RETRY_SAME);
  cr_expect_eq(px_retry_reason(&in, PX_RETRY_SAME), PX_RETRY_REASON_STALE_CONNECTION);
  in = base();
  in.kind = PX_ERR_UPSTREAM_TIMEOUT;
  in.on = PX_RETRY_ON_TIMEOUT;
  cr_expect_eq(px_retry_reason(&in, px_retry_decide(&in)), PX_RETRY_REASON_TIMEOUT);
  in = answered(503, PX_RETRY_ON_5XX | PX_RETRY_ON_GATEWAY_ERROR);
  cr_expect_eq(px_retry_reason(&in, PX_RETRY_OTHER), PX_RETRY_REASON_STATUS_5XX, "5xx is asked first");
  in = answered(503, PX_RETRY_ON_GATEWAY_ERROR | PX_RETRY_ON_RETRIABLE_STATUS);
  cr_expect_eq(px_retry_reason(&in, PX_RETRY_OTHER), PX_RETRY_REASON_GATEWAY_ERROR);
  in = answered(429, PX_RETRY_ON_5XX | PX_RETRY_ON_RETRIABLE_STATUS);
  cr_assert_eq(px_retry_decide(&in), PX_RETRY_OTHER);
  cr_expect_eq(px_retry_reason(&in, PX_RETRY_OTHER), PX_RETRY_REASON_RETRIABLE_STATUS);
  cr_expect_str_eq(px_retry_reason_name(PX_RETRY_REASON_STATUS_5XX), "5xx");
  cr_expect_str_eq(px_retry_reason_name(PX_RETRY_REASON_CONNECT_FAILURE), "connect_failure");
}
