#include "retry.h"

#include <string.h>

#include "config.h"

static int status_listed(const px_retry_in_t *in, int status) {
  for (size_t i = 0; i < in->nstatus; i++)
    if (in->status_list[i] == status) return 1;
  return 0;
}

/* Whether the route retries an answer with this status. */
static int status_retried(const px_retry_in_t *in, int s) {
  if ((in->on & PX_RETRY_ON_5XX) && s >= 500 && s <= 599) return 1;
  if ((in->on & PX_RETRY_ON_GATEWAY_ERROR) && (s == 502 || s == 503 || s == 504)) return 1;
  return (in->on & PX_RETRY_ON_RETRIABLE_STATUS) && status_listed(in, s);
}

px_retry_t px_retry_decide(const px_retry_in_t *in) {
  if (in->attempt >= in->attempts) return PX_RETRY_NO; /* every try counts, the first included */
  /* The upstream may have done the work for every outcome below but a connect failure:
   * only a request that may run twice, kept whole, goes again. */
  int again = in->resendable && in->body_done;
  if (in->status > 0) return again && status_retried(in, in->status) ? PX_RETRY_OTHER : PX_RETRY_NO;
  switch (in->kind) {
  case PX_ERR_CONNECT_FAILURE: /* nothing was sent: safe whatever the request */
    return (in->on & PX_RETRY_ON_CONNECT_FAILURE) ? PX_RETRY_OTHER : PX_RETRY_NO;
  case PX_ERR_UPSTREAM_RESET:
    /* A pooled connection the upstream closed as it was reused, most likely at its
     * keep-alive timeout, before it read the request. "Most likely": an upstream that
     * read the request, did the work and then died looks the same from here. The
     * endpoint is not to blame, so the same one will do. */
    if (in->stale && again) return PX_RETRY_SAME;
    return again && (in->on & PX_RETRY_ON_RESET) ? PX_RETRY_OTHER : PX_RETRY_NO;
  case PX_ERR_UPSTREAM_TIMEOUT: return again && (in->on & PX_RETRY_ON_TIMEOUT) ? PX_RETRY_OTHER : PX_RETRY_NO;
  default: return PX_RETRY_NO; /* a malformed answer: the upstream is broken, not unlucky */
  }
}

uint64_t px_retry_backoff_ms(int n, uint64_t base_ms, uint64_t max_ms, double r) {
  uint64_t cap = base_ms;
  for (int i = 1; i < n && cap < max_ms; i++) cap *= 2;
  if (cap > max_ms) cap = max_ms;
  return (uint64_t)(r * (double)cap);
}

px_retry_reason_t px_retry_reason(const px_retry_in_t *in, px_retry_t d) {
  if (in->status > 0) {
    int s = in->status;
    if ((in->on & PX_RETRY_ON_5XX) && s >= 500 && s <= 599) return PX_RETRY_REASON_STATUS_5XX;
    if ((in->on & PX_RETRY_ON_GATEWAY_ERROR) && (s == 502 || s == 503 || s == 504))
      return PX_RETRY_REASON_GATEWAY_ERROR;
    return PX_RETRY_REASON_RETRIABLE_STATUS;
  }
  switch (in->kind) {
  case PX_ERR_CONNECT_FAILURE: return PX_RETRY_REASON_CONNECT_FAILURE;
  case PX_ERR_UPSTREAM_TIMEOUT: return PX_RETRY_REASON_TIMEOUT;
  default: return d == PX_RETRY_SAME ? PX_RETRY_REASON_STALE_CONNECTION : PX_RETRY_REASON_RESET;
  }
}

int px_retry_budget_check(int retries, int requests, double ratio, int min_concurrency, int max_retries) {
  if (retries >= max_retries) return PX_DENIED_MAX_RETRIES;
  double allowed = ratio * (double)requests;
  return retries < min_concurrency || (double)retries < allowed ? -1 : PX_DENIED_BUDGET;
}

int px_retry_budget_allows(int retries, int requests, double ratio, int min_concurrency, int max_retries) {
  return px_retry_budget_check(retries, requests, ratio, min_concurrency, max_retries) < 0;
}

/* ---- Retry-After ----------------------------------------------------------------------- */

typedef struct {
  const char *p, *end;
} cur_t;

static int lit(cur_t *c, const char *s) {
  size_t n = strlen(s);
  if ((size_t)(c->end - c->p) < n || memcmp(c->p, s, n) != 0) return 0;
  c->p += n;
  return 1;
}

/* Exactly `n` digits (`n` = -1: one or two, for asctime's day, padded with a space). */
static int digits(cur_t *c, int n, int *out) {
  int v = 0, k = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && (n < 0 ? k < 2 : k < n)) {
    v = v * 10 + (*c->p++ - '0');
    k++;
  }
  if (n < 0 ? k == 0 : k != n) return 0;
  *out = v;
  return 1;
}

static int month(cur_t *c, int *mon) {
  static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (c->end - c->p < 3) return 0;
  for (int i = 0; i < 12; i++)
    if (memcmp(c->p, names + 3 * i, 3) == 0) {
      *mon = i;
      c->p += 3;
      return 1;
    }
  return 0;
}

static int hms(cur_t *c, struct tm *tm) {
  return digits(c, 2, &tm->tm_hour) && lit(c, ":") && digits(c, 2, &tm->tm_min) && lit(c, ":") &&
         digits(c, 2, &tm->tm_sec) && tm->tm_hour < 24 && tm->tm_min < 60 && tm->tm_sec < 61;
}

/* The day name: three letters, or (RFC 850) the whole name; not checked against the
 * date, which alone says when. */
static int dayname(cur_t *c, int full) {
  static const char *const names[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                      "Friday", "Saturday", "Sunday"};
  for (int i = 0; i < 7; i++) {
    if (full ? lit(c, names[i]) : (c->end - c->p >= 3 && memcmp(c->p, names[i], 3) == 0 && (c->p += 3)))
      return 1;
  }
  return 0;
}

/* An HTTP-date (RFC 9110 §5.6.7) as Unix seconds, or -1. */
static int64_t http_date(px_str_t v, time_t now) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  cur_t c = {v.p, v.p + v.n}, save = c;
  int year = 0;
  if (dayname(&c, 0) && lit(&c, ", ")) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
    if (!(digits(&c, 2, &tm.tm_mday) && lit(&c, " ") && month(&c, &tm.tm_mon) && lit(&c, " ") &&
          digits(&c, 4, &year) && lit(&c, " ") && hms(&c, &tm) && lit(&c, " GMT")))
      return -1;
  } else if ((c = save, dayname(&c, 1)) && lit(&c, ", ")) { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
    int yy;
    if (!(digits(&c, 2, &tm.tm_mday) && lit(&c, "-") && month(&c, &tm.tm_mon) && lit(&c, "-") &&
          digits(&c, 2, &yy) && lit(&c, " ") && hms(&c, &tm) && lit(&c, " GMT")))
      return -1;
    /* A two-digit year more than 50 years ahead is the latest past year ending so. */
    struct tm nowtm;
    gmtime_r(&now, &nowtm);
    int cur = nowtm.tm_year + 1900;
    year = cur - cur % 100 + yy;
    if (year > cur + 50) year -= 100;
  } else { /* asctime: Sun Nov  6 08:49:37 1994 */
    c = save;
    if (!(dayname(&c, 0) && lit(&c, " ") && month(&c, &tm.tm_mon) && lit(&c, " "))) return -1;
    if (c.p < c.end && *c.p == ' ') c.p++;
    if (!(digits(&c, -1, &tm.tm_mday) && lit(&c, " ") && hms(&c, &tm) && lit(&c, " ") &&
          digits(&c, 4, &year)))
      return -1;
  }
  if (c.p != c.end || tm.tm_mday < 1 || tm.tm_mday > 31 || year < 1970) return -1;
  tm.tm_year = year - 1900;
  time_t t = timegm(&tm);
  return t == (time_t)-1 ? -1 : (int64_t)t;
}

int64_t px_retry_after_ms(px_str_t v, time_t now) {
  if (v.n == 0) return -1;
  if (v.p[0] >= '0' && v.p[0] <= '9') { /* delay-seconds = 1*DIGIT */
    uint64_t s = 0;
    for (size_t i = 0; i < v.n; i++) {
      if (v.p[i] < '0' || v.p[i] > '9') return -1;
      if (s < 100000000) s = s * 10 + (uint64_t)(v.p[i] - '0'); /* past ~3 years it is "long" */
    }
    return (int64_t)(s * 1000);
  }
  int64_t t = http_date(v, now);
  if (t < 0) return -1;
  return t <= (int64_t)now ? 0 : (t - (int64_t)now) * 1000;
}
