/* Retry decisions (SPEC §5), pure: whether a try that failed, or answered with a status
 * the route retries, goes again and where; how long to wait first (exponential backoff
 * with full jitter, or the upstream's Retry-After, capped); and whether the cluster's
 * retry budget lets one more retry be in flight.
 *
 * Safe by construction: a try that failed before anything was sent (a connect failure)
 * may go again whatever the request; any other goes again only when the request may
 * run twice and is kept whole (`resendable`: GET, HEAD, OPTIONS, TRACE, PUT and DELETE,
 * POST and PATCH with an Idempotency-Key, the body within retry.buffer_limit; see
 * px_http1_resend_safe) and the client sent all of its body. Nothing is retried once a
 * byte of the answer reached the client: the request decides on the held head. */
#ifndef PX_RETRY_H
#define PX_RETRY_H

#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "metrics.h"

typedef enum {
  PX_RETRY_NO,
  PX_RETRY_OTHER, /* another endpoint, one not tried yet if the route prefers it */
  PX_RETRY_SAME,  /* any endpoint, the same included: only that connection was bad */
} px_retry_t;

typedef struct {
  /* What happened: `status` > 0 for an answer the upstream gave (its head held), else
   * the failure `kind`. */
  int status;
  px_errkind_t kind;
  int stale;              /* on a pooled connection the upstream closed unanswered */
  int attempt;            /* tries made so far, the failed one included */
  int attempts;           /* the route's retry.attempts */
  unsigned on;            /* retry.on: PX_RETRY_ON_* (config.h) */
  const int *status_list; /* retry.status, for retriable-status */
  size_t nstatus;
  int resendable; /* may run twice, its whole body kept (px_http1_resend_safe) */
  int body_done;  /* the client sent all of its body */
} px_retry_in_t;

px_retry_t px_retry_decide(const px_retry_in_t *in);

/* Why the retry `d` (not PX_RETRY_NO) that px_retry_decide gave for `in` is made, for
 * outrigger_retries_total: the failure, or the retry.on rule the status met. */
px_retry_reason_t px_retry_reason(const px_retry_in_t *in, px_retry_t d);

/* The wait before retry number `n` (1 for the first retry): full jitter, `r` uniform in
 * [0, 1) times min(max, base × 2^(n-1)). */
uint64_t px_retry_backoff_ms(int n, uint64_t base_ms, uint64_t max_ms, double r);

/* Retry-After (RFC 9110 §10.2.3) as milliseconds to wait from `now` (Unix seconds):
 * delay-seconds, or an HTTP-date in any of the three forms a recipient must accept
 * (IMF-fixdate, RFC 850, asctime). A date in the past waits 0. -1 when malformed. */
int64_t px_retry_after_ms(px_str_t v, time_t now);

/* Whether one more retry may be in flight on a cluster with `retries` in flight already
 * and `requests` requests in flight: fewer than max(min_concurrency, ratio × requests)
 * (the route's budget) and fewer than the cluster's limits.max_retries. */
int px_retry_budget_allows(int retries, int requests, double ratio, int min_concurrency, int max_retries);
/* The same, saying which refused: -1 allowed, else PX_DENIED_MAX_RETRIES (checked first)
 * or PX_DENIED_BUDGET (metrics.h), for outrigger_retries_denied_total. */
int px_retry_budget_check(int retries, int requests, double ratio, int min_concurrency, int max_retries);

#endif
