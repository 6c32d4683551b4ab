/* Retry decisions (SPEC §3, §5), pure: what to do with a try that failed before an
 * answer was committed. Today: a connect failure goes again on another endpoint while
 * the route's attempts allow (the default 2 attempts on connect-failure: nothing was
 * sent, so it is always safe), and a request that met a stale pooled connection goes
 * again when it may run twice. Issue 17 extends this module to status, timeout and
 * reset retries with backoff and a budget. */
#ifndef PX_RETRY_H
#define PX_RETRY_H

#include "metrics.h"

typedef enum {
  PX_RETRY_NO,
  PX_RETRY_OTHER, /* another endpoint, one not tried yet if the route prefers it */
  PX_RETRY_SAME,  /* any endpoint, the same included: only that connection was bad */
} px_retry_t;

typedef struct {
  px_errkind_t kind;      /* how the try failed */
  int stale;              /* on a pooled connection the upstream closed unanswered */
  int attempt;            /* tries made so far, the failed one included */
  int attempts;           /* the route's retry.attempts */
  int on_connect_failure; /* retry.on has connect-failure */
  int resendable;         /* may run twice, its whole body kept (px_http1_resend_safe) */
  int body_done;          /* the client sent all of its body */
} px_retry_in_t;

px_retry_t px_retry_decide(const px_retry_in_t *in);

#endif
