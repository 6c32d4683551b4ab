/* The verdict on one case of the differential fuzzer (diff.h). Everything is read with
 * the strict oracle (ref_http1.h), never with the sidecar's own codec:
 *
 *  - the client's bytes give K complete valid requests, then perhaps a tail that is
 *    incomplete or invalid;
 *  - the upstream must have received, in order, only those K requests (each possibly
 *    resent after a try the upstream dropped, when it may run twice), each faithfully:
 *    method, target, end-to-end fields, body and framing, plus the sidecar's own fields;
 *    never a byte of the tail as a complete request (a smuggled request);
 *  - the client must have received, for each request in order, the answer the upstream
 *    gave it (status and body, whole and well framed), or the sidecar's own error, or -
 *    once an answer closed the connection, or the client half-closed - nothing; never an
 *    answer cut short but where the upstream cut it, never an extra one, and never a
 *    wait: a request left unanswered on an open connection is a stall. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"
#include "ref_http1.h"

#define MAX_REQ 8

static char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char)(ch | 0x20) : ch; }
static int ieq_n(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (lower(a[i]) != lower(b[i])) return 0;
  return 1;
}
static int ieq(const char *a, size_t n, const char *b) { return strlen(b) == n && ieq_n(a, b, n); }
static int field_is(const ref_field_t *f, const char *name) { return ieq(f->name, f->name_len, name); }

/* A field's value as a NUL-terminated copy in a static ring (for messages and checks). */
static const char *fvalue(const ref_msg_t *m, const char *name) {
  static char ring[4][512];
  static int k;
  const ref_field_t *f = ref_field(m, name);
  if (!f) return NULL;
  k = (k + 1) % 4;
  snprintf(ring[k], sizeof(ring[k]), "%.*s", (int)f->value_len, f->value);
  return ring[k];
}

/* Whether the request names `name` in its Connection fields (so it is hop-by-hop). */
static int named_in_connection(const ref_msg_t *r, const ref_field_t *f) {
  char name[256];
  if (f->name_len >= sizeof(name)) return 0;
  memcpy(name, f->name, f->name_len);
  name[f->name_len] = '\0';
  return ref_has_token(r, "connection", name);
}

/* Fields of the client's request that the sidecar passes on as they are. */
static int end_to_end(const ref_msg_t *r, const ref_field_t *f) {
  static const char *const hop[] = {"connection",
                                    "keep-alive",
                                    "proxy-connection",
                                    "te",
                                    "trailer",
                                    "transfer-encoding",
                                    "upgrade",
                                    "expect",
                                    "host",
                                    "x-forwarded-for",
                                    "x-forwarded-proto",
                                    "x-request-id",
                                    "x-outrigger-attempt"};
  for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
    if (field_is(f, hop[i])) return 0;
  return !named_in_connection(r, f);
}
/* Fields of what the upstream got that the client's request does not account for. */
static int added_by_sidecar(const ref_field_t *f) {
  static const char *const own[] = {"host",         "x-forwarded-for",     "x-forwarded-proto",
                                    "x-request-id", "x-outrigger-attempt", "transfer-encoding"};
  for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
    if (field_is(f, own[i])) return 1;
  return 0;
}

static int is_absolute(const ref_msg_t *r) {
  return r->target_len > 0 && r->target[0] != '/' && r->target[0] != '*';
}

/* The authority and origin-form part of an absolute-form target. */
static void split_absolute(const ref_msg_t *r, const char **auth, size_t *auth_len, const char **orig,
                           size_t *orig_len) {
  const char *p = memchr(r->target, ':', r->target_len) + 3, *end = r->target + r->target_len;
  const char *e = p;
  while (e < end && *e != '/' && *e != '?') e++;
  *auth = p;
  *auth_len = (size_t)(e - p);
  *orig = e;
  *orig_len = (size_t)(end - e);
}

static int valid_request_id(const ref_field_t *f) {
  if (f->value_len == 0 || f->value_len > 200) return 0;
  for (size_t i = 0; i < f->value_len; i++)
    if ((unsigned char)f->value[i] <= 0x20 || (unsigned char)f->value[i] >= 0x7f) return 0;
  return 1;
}

/* Does the upstream's `u` carry the client's `r` faithfully? NULL, or what differs.
 * *attempt gets its x-outrigger-attempt. */
static const char *same_request(const ref_msg_t *r, const ref_msg_t *u, int *attempt, px_buf_t *d) {
  if (u->method_len != r->method_len || memcmp(u->method, r->method, r->method_len) != 0)
    return "another method";
  if (u->major != 1 || u->minor != 1) return "not sent as HTTP/1.1";
  const char *host = NULL;
  size_t host_len = 0;
  if (is_absolute(r)) {
    const char *orig;
    size_t orig_len;
    split_absolute(r, &host, &host_len, &orig, &orig_len);
    int slash = orig_len == 0 || orig[0] != '/';
    if (u->target_len != orig_len + (size_t)slash || (slash && u->target[0] != '/') ||
        memcmp(u->target + slash, orig, orig_len) != 0)
      return "an absolute-form target not sent as its origin-form";
  } else if (u->target_len != r->target_len || memcmp(u->target, r->target, r->target_len) != 0) {
    return "another target";
  }
  if (!host) {
    const ref_field_t *h = ref_field(r, "host");
    if (h) {
      host = h->value;
      host_len = h->value_len;
    }
  }
  if (ref_field_count(u, "host") != 1) return "not exactly one Host";
  const ref_field_t *uh = ref_field(u, "host");
  if (host && (uh->value_len != host_len || memcmp(uh->value, host, host_len) != 0)) return "another Host";
  if (u->framing != r->framing) return "the body framed another way";
  if (u->body_len != r->body_len || (u->body_len && memcmp(u->body, r->body, u->body_len) != 0))
    return "another body";
  /* The end-to-end fields, in order. */
  size_t i = 0, j = 0;
  for (;;) {
    while (i < r->nfields && !end_to_end(r, &r->fields[i])) i++;
    while (j < u->nfields && added_by_sidecar(&u->fields[j])) j++;
    if (i == r->nfields || j == u->nfields) break;
    const ref_field_t *a = &r->fields[i], *b = &u->fields[j];
    int same_name = a->name_len == b->name_len && ieq_n(a->name, b->name, a->name_len);
    if (!same_name || a->value_len != b->value_len || memcmp(a->value, b->value, a->value_len) != 0) {
      if (d)
        px_buf_printf(d, "client field \"%.*s: %.*s\", upstream field \"%.*s: %.*s\"\n", (int)a->name_len,
                      a->name, (int)a->value_len, a->value, (int)b->name_len, b->name, (int)b->value_len,
                      b->value);
      return "an end-to-end field changed";
    }
    i++;
    j++;
  }
  if (i < r->nfields) {
    if (d)
      px_buf_printf(d, "client field \"%.*s\" missing upstream\n", (int)r->fields[i].name_len,
                    r->fields[i].name);
    return "an end-to-end field was dropped";
  }
  if (j < u->nfields) {
    if (d)
      px_buf_printf(d, "upstream field \"%.*s\" not from the client\n", (int)u->fields[j].name_len,
                    u->fields[j].name);
    return "a field was added or a hop-by-hop one passed on";
  }
  /* The sidecar's own fields. */
  if (ref_field_count(u, "x-forwarded-proto") != 1 || strcmp(fvalue(u, "x-forwarded-proto"), "http") != 0)
    return "x-forwarded-proto is not one \"http\"";
  if (ref_field_count(u, "x-forwarded-for") != 1) return "not exactly one x-forwarded-for";
  px_buf_t xff = {0};
  for (size_t k = 0; k < r->nfields; k++)
    if (field_is(&r->fields[k], "x-forwarded-for")) {
      px_buf_append(&xff, r->fields[k].value, r->fields[k].value_len);
      px_buf_append_cstr(&xff, ", ");
    }
  px_buf_append_cstr(&xff, "127.0.0.1");
  const ref_field_t *ux = ref_field(u, "x-forwarded-for");
  int xff_ok = ux->value_len == xff.len && memcmp(ux->value, xff.data, xff.len) == 0;
  px_buf_free(&xff);
  if (!xff_ok) return "x-forwarded-for is not the client's list plus the client";
  if (ref_field_count(u, "x-request-id") != 1) return "not exactly one x-request-id";
  for (size_t k = 0; k < r->nfields; k++)
    if (field_is(&r->fields[k], "x-request-id") && valid_request_id(&r->fields[k])) {
      const ref_field_t *ur = ref_field(u, "x-request-id");
      if (ur->value_len != r->fields[k].value_len ||
          memcmp(ur->value, r->fields[k].value, ur->value_len) != 0)
        return "the client's valid x-request-id was not kept";
      break;
    }
  const char *att = fvalue(u, "x-outrigger-attempt");
  char *end;
  long n = att ? strtol(att, &end, 10) : 0;
  if (ref_field_count(u, "x-outrigger-attempt") != 1 || n < 1 || *end != '\0')
    return "x-outrigger-attempt is not one try number";
  *attempt = (int)n;
  return NULL;
}

/* Whether a request may be sent again after an upstream may have run it (SPEC §5). */
static int resend_safe(const ref_msg_t *r) {
  static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
    if (r->method_len == strlen(safe[i]) && memcmp(r->method, safe[i], r->method_len) == 0) return 1;
  int keyed = (r->method_len == 4 && memcmp(r->method, "POST", 4) == 0) ||
              (r->method_len == 5 && memcmp(r->method, "PATCH", 5) == 0);
  const ref_field_t *k = ref_field(r, "idempotency-key");
  return keyed && k && k->value_len > 0;
}

/* An answer the client got: well formed for a proxy's output, with the sidecar's fields. */
static const char *check_answer_fields(const ref_msg_t *a) {
  static const char *const never[] = {"keep-alive", "te", "trailer", "upgrade", "proxy-connection"};
  for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
    if (ref_field(a, never[i])) return "a hop-by-hop field reached the client";
  if (ref_field_count(a, "transfer-encoding") > 1) return "two Transfer-Encoding fields reached the client";
  const char *te = fvalue(a, "transfer-encoding");
  if (te && strcmp(te, "chunked") != 0) return "a transfer coding other than chunked reached the client";
  if (a->major != 1 || a->minor != 1) return "the answer is not HTTP/1.1";
  return NULL;
}

typedef struct {
  ref_msg_t *req[MAX_REQ];
  int nreq;
  ref_msg_t *up; /* parsed upstream requests */
  int nup;
  ref_msg_t resp;
  px_buf_t *d;
} judge_t;

#define FAIL(...)                                                                                            \
  do {                                                                                                       \
    px_buf_printf(j->d, __VA_ARGS__);                                                                        \
    px_buf_append_cstr(j->d, "\n");                                                                          \
    verdict = "see detail";                                                                                  \
    goto out;                                                                                                \
  } while (0)

const char *df_judge(const df_case_t *c, const unsigned char *got, size_t got_len, int eof,
                     const df_upreq_t *up, int nup, df_stats_t *st, px_buf_t *detail) {
  judge_t jj = {.d = detail}, *j = &jj;
  const char *verdict = NULL;
  memset(st, 0, sizeof(*st));

  /* The client's requests, as the oracle reads them. */
  size_t off = 0;
  while (j->nreq < MAX_REQ) {
    ref_msg_t *m = px_malloc(sizeof(*m));
    ref_result_t r = ref_parse_request((const char *)c->client + off, c->client_len - off, m);
    if (r != REF_COMPLETE) {
      st->tail = r == REF_INVALID ? 2 : off < c->client_len ? 1 : 0;
      free(m);
      break;
    }
    j->req[j->nreq++] = m;
    off += m->wire_len;
  }
  st->requests = j->nreq;

  /* What reached the upstream, as the oracle reads it (the upstream already refused to
   * record anything it found invalid). */
  j->up = px_calloc((size_t)nup + 1, sizeof(*j->up));
  for (int k = 0; k < nup; k++) {
    ref_result_t r = ref_parse_request((const char *)up[k].raw, up[k].raw_len, &j->up[k]);
    if (r != REF_COMPLETE) FAIL("upstream request %d does not parse again", k);
    j->nup++;
  }

  size_t pos = 0;          /* in what the client got */
  int u = 0;               /* in what the upstream got */
  int closed = 0;          /* an answer ended the connection */
  int upstream_closed = 0; /* an answer so far ended its upstream connection */
  int i;
  int abandoned = 0; /* the client half-closed: the rest is abandoned, sent upstream or not */
  for (i = 0; i < j->nreq && !closed; i++) {
    const ref_msg_t *r = j->req[i];
    char method[32];
    snprintf(method, sizeof(method), "%.*s", (int)(r->method_len < 31 ? r->method_len : 31), r->method);
    /* The upstream's tries of this request: consecutive ones that carry it, with one
     * request id. */
    int g = 0, attempt = 0, prev_attempt = 0;
    const char *mismatch = NULL; /* why the upstream's next request is not this one */
    px_buf_t why = {0};
    while (u + g < j->nup) {
      const char *diff = same_request(r, &j->up[u + g], &attempt, g == 0 ? &why : NULL);
      /* Tries count up; a first try the upstream never got (sent on a pooled connection
       * it had closed, then resent) is the only gap. */
      if (!diff && !(attempt > prev_attempt && (attempt == prev_attempt + 1 || (g == 0 && upstream_closed))))
        diff = "x-outrigger-attempt is not the try's number";
      if (diff && g == 0) {
        mismatch = diff;
        px_buf_t w = why;
        why = (px_buf_t){0};
        px_buf_printf(&why, "request %d as the client sent it:\n  \"", i);
        df_escape(&why, r->method, r->head_len);
        px_buf_append_cstr(&why, "\"\nthe upstream's next request:\n  \"");
        df_escape(&why, up[u].raw, up[u].raw_len > 2048 ? 2048 : up[u].raw_len);
        px_buf_printf(&why, "\"\n%s", w.data ? w.data : "");
        px_buf_free(&w);
      }
      if (diff) break;
      if (g > 0) { /* a resend must carry the first try's request id */
        const ref_field_t *a = ref_field(&j->up[u], "x-request-id"),
                          *b = ref_field(&j->up[u + g], "x-request-id");
        if (a->value_len != b->value_len || memcmp(a->value, b->value, a->value_len) != 0) break;
      }
      prev_attempt = attempt;
      g++;
    }
    if (abandoned) {
      u += g;
      px_buf_free(&why);
      continue;
    }
    /* Its answer, after any interim ones. */
    ref_result_t rr;
    for (;;) {
      rr = ref_parse_response((const char *)got + pos, got_len - pos, method, eof, &j->resp);
      if (rr != REF_COMPLETE || j->resp.status >= 200) break;
      if (j->resp.status != 100 || !ref_field(r, "expect"))
        FAIL("an interim %d answer for request %d", j->resp.status, i);
      pos += j->resp.wire_len;
      ref_msg_free(&j->resp);
    }
    if (rr == REF_INVALID) {
      px_buf_append_cstr(j->d, "answer bytes: \"");
      df_escape(j->d, got + pos, got_len - pos > 2048 ? 2048 : got_len - pos);
      px_buf_append_cstr(j->d, "\"");
      FAIL("the client got a malformed answer to request %d: %s at %zu", i, j->resp.error, j->resp.error_off);
    }
    df_expect_t ex = {0};
    if (g > 0) {
      df_answer_t a = *df_case_answer(c, up[u + g - 1].answer);
      px_buf_t scratch = {0};
      df_answer_bytes(&a, method, strlen(method), &scratch, &ex);
      px_buf_free(&scratch);
      upstream_closed |= ex.upstream_closes;
      for (int k = 0; k < g - 1; k++) { /* every try but the last was dropped by the upstream */
        df_expect_t e2;
        df_answer_t a2 = *df_case_answer(c, up[u + k].answer);
        px_buf_t s2 = {0};
        df_answer_bytes(&a2, method, strlen(method), &s2, &e2);
        px_buf_free(&s2);
        int dropped = e2.kind == EX_RESET;
        df_expect_free(&e2);
        if (!dropped) {
          df_expect_free(&ex);
          FAIL("request %d was sent again after the upstream answered it (%s)", i, df_ub_name(a2.kind));
        }
      }
      if (g > 1 && !resend_safe(r)) {
        df_expect_free(&ex);
        FAIL("request %d, which may not run twice, was sent %d times", i, g);
      }
      /* SPEC §3: the route's 2 attempts, every try counted. */
      if (prev_attempt > 2) {
        df_expect_free(&ex);
        FAIL("request %d was tried %d times", i, prev_attempt);
      }
      st->resends += g - 1;
    }
    if (rr == REF_NEED_MORE) {
      int truncated = pos < got_len;
      int expected_cut = g > 0 && ex.kind == EX_TRUNCATED;
      int kind = ex.kind;
      df_expect_free(&ex);
      if (truncated && !(eof && expected_cut)) {
        px_buf_append_cstr(j->d, "answer bytes: \"");
        df_escape(j->d, got + pos, got_len - pos > 2048 ? 2048 : got_len - pos);
        px_buf_append_cstr(j->d, "\"");
        FAIL("the answer to request %d was cut short (%s)", i,
             g ? df_ub_name(df_case_answer(c, up[u + g - 1].answer)->kind) : "no upstream try");
      }
      if (g > 0 && !eof && kind != EX_WHOLE)
        FAIL("the upstream failed request %d (%s), and the client connection was left hanging", i,
             df_ub_name(df_case_answer(c, up[u + g - 1].answer)->kind));
      if (g > 0 && kind == EX_TRUNCATED && eof) {
        /* An answer the upstream broke after its head: none or a cut one, and the
         * connection closed. */
        u += g;
        pos = got_len;
        closed = 1;
        i++;
        break;
      }
      if (c->half_close && eof) { /* the sidecar abandons what a half-closed client sent */
        abandoned = 1;
        u += g;
        px_buf_free(&why);
        continue;
      }
      if (!eof) FAIL("stall: request %d got no answer in time and the connection is still open", i);
      FAIL("request %d got no answer: the connection closed", i);
    }
    /* A complete answer. */
    const ref_msg_t *a = &j->resp;
    const char *bad = check_answer_fields(a);
    if (bad) {
      df_expect_free(&ex);
      FAIL("answer %d: %s", i, bad);
    }
    const char *err = fvalue(a, "x-outrigger-error");
    char attempts[16]; /* the tries the sidecar made, as the client must be told */
    snprintf(attempts, sizeof(attempts), "%d", prev_attempt);
    if (err) {
      int from_upstream = !strncmp(err, "upstream_", 9);
      if (!from_upstream) { /* stricter than the oracle */
        if (g > 0) {
          df_expect_free(&ex);
          FAIL("the sidecar answered request %d itself (%s) after the upstream got it", i, err);
        }
        st->refused_valid++;
        st->refusal = strncmp(err, "bad_request", 11) == 0 ? "bad_request" : err;
        const char *dj = a->body ? memmem(a->body, a->body_len, "\"detail\":\"", 10) : NULL;
        const char *de =
            dj ? memchr(dj + 10, '"', a->body_len - (size_t)(dj + 10 - (const char *)a->body)) : NULL;
        snprintf(st->refusal_detail, sizeof(st->refusal_detail), "%s: %.*s", err,
                 de ? (int)(de - dj - 10) : 0, de ? dj + 10 : "");
      } else {
        int want = strcmp(err, "upstream_reset") == 0          ? EX_RESET
                   : strcmp(err, "upstream_bad_response") == 0 ? EX_BAD
                                                               : -1;
        /* A pooled connection the upstream closed after an earlier answer, picked before
         * its close was seen: the request may have run, so one that may not run twice
         * gets 502 without a try the upstream saw. */
        int stale = g == 0 && want == EX_RESET && upstream_closed;
        if (!stale && (g == 0 || (int)ex.kind != want)) {
          int k = g ? (int)ex.kind : -1;
          df_expect_free(&ex);
          if (g == 0 && mismatch) px_buf_append(j->d, why.data, why.len);
          FAIL("request %d got %s, but its last try was %s (%d)", i, err,
               g ? df_ub_name(df_case_answer(c, up[u + g - 1].answer)->kind) : "never sent", k);
        }
        if (!stale && (!fvalue(a, "x-outrigger-attempts") ||
                       strcmp(fvalue(a, "x-outrigger-attempts"), attempts) != 0)) {
          df_expect_free(&ex);
          FAIL("the error answer to request %d does not count its %d tries", i, g);
        }
      }
    } else {
      if (g == 0) {
        px_buf_append(j->d, why.data, why.len);
        FAIL("request %d got an answer the upstream never gave (status %d)%s%s", i, a->status,
             mismatch ? ": the upstream's next request differs: " : "", mismatch ? mismatch : "");
      }
      if (ex.kind != EX_WHOLE) {
        int k = (int)ex.kind;
        df_expect_free(&ex);
        FAIL("request %d got a whole %d answer from a try that was %s (%d)", i, a->status,
             df_ub_name(df_case_answer(c, up[u + g - 1].answer)->kind), k);
      }
      if (a->status != ex.status) {
        df_expect_free(&ex);
        FAIL("request %d: status %d, the upstream answered %d", i, a->status, ex.status);
      }
      if (a->body_len != ex.body.len || (a->body_len && memcmp(a->body, ex.body.data, a->body_len) != 0)) {
        size_t want = ex.body.len;
        df_expect_free(&ex);
        FAIL("request %d: a body of %zu bytes, the upstream sent %zu", i, a->body_len, want);
      }
      if (!fvalue(a, "x-outrigger-attempts") || strcmp(fvalue(a, "x-outrigger-attempts"), attempts) != 0 ||
          !fvalue(a, "x-outrigger-upstream") || strcmp(fvalue(a, "x-outrigger-upstream"), "c") != 0) {
        df_expect_free(&ex);
        FAIL("answer %d lacks the sidecar's x-outrigger-attempts: %s / x-outrigger-upstream", i, attempts);
      }
      /* A connection the client and the answer both allow to persist stays open:
       * closing it would cost the next request a new connection for nothing. Not after
       * a client's half-close: it said it sends nothing more, and the sidecar may have
       * seen that before this answer's head went out. */
      if (r->keep_alive && !a->keep_alive && (ex.length_known || r->minor >= 1) && !c->half_close) {
        df_expect_free(&ex);
        FAIL("request %d: the connection was closed although both ends could keep it", i);
      }
      st->answered++;
    }
    df_expect_free(&ex);
    px_buf_free(&why);
    if (a->keep_alive && !r->keep_alive) FAIL("answer %d keeps a connection the client asked to close", i);
    closed = !a->keep_alive;
    pos += a->wire_len;
    u += g;
    ref_msg_free(&j->resp);
  }
  /* After the valid requests: the tail's answer, if any, is the sidecar's refusal. Once
   * the sidecar read the tail's request line it knows a HEAD has an answer without a
   * body; before, it does not: either is right. */
  if (!closed && pos < got_len) {
    const char *tail = (const char *)c->client + off;
    while (tail < (const char *)c->client + c->client_len && (*tail == '\r' || *tail == '\n')) tail++;
    int head = (size_t)((const char *)c->client + c->client_len - tail) > 5 && memcmp(tail, "HEAD ", 5) == 0;
    ref_result_t rr;
    while ((rr = ref_parse_response((const char *)got + pos, got_len - pos, "GET", eof, &j->resp)) ==
               REF_COMPLETE &&
           j->resp.status == 100) { /* the tail's Expect was answered before its body broke */
      pos += j->resp.wire_len;
      ref_msg_free(&j->resp);
    }
    if (head && rr != REF_COMPLETE)
      rr = ref_parse_response((const char *)got + pos, got_len - pos, "HEAD", eof, &j->resp);
    if (pos == got_len) goto done; /* only a 100 Continue: the body is awaited */
    if (rr != REF_COMPLETE) {
      px_buf_append_cstr(j->d, "bytes: \"");
      df_escape(j->d, got + pos, got_len - pos > 2048 ? 2048 : got_len - pos);
      px_buf_append_cstr(j->d, "\"");
      FAIL("after %d answers the client got %s", i, rr == REF_INVALID ? "a malformed answer" : "part of one");
    }
    const char *err = fvalue(&j->resp, "x-outrigger-error");
    /* The one upstream error a tail may get: its head was fine so far and went out on a
     * pooled connection an earlier answer had ended, picked before that close was seen
     * (the stale race of a valid request, with a body still on its way, so not resent). */
    int stale = err && strcmp(err, "upstream_reset") == 0 && upstream_closed;
    if (st->tail == 0 || !err || (strncmp(err, "upstream_", 9) == 0 && !stale))
      FAIL("an answer (%d %s) to a request the client never completed", j->resp.status,
           err ? err : "from upstream");
    pos += j->resp.wire_len;
    closed = !j->resp.keep_alive;
    ref_msg_free(&j->resp);
    if (pos < got_len) FAIL("more answers than requests");
  }
done:
  if (pos < got_len && !closed) FAIL("bytes after the last answer");
  if (u < j->nup) {
    px_buf_printf(j->d, "the extra one: \"");
    df_escape(j->d, up[u].raw, up[u].raw_len);
    px_buf_append_cstr(j->d, "\"\n");
    FAIL(
        "the upstream got %d requests; the client's bytes hold %d valid ones, %d of them answered (smuggled?)",
        j->nup, j->nreq, i);
  }
  if (closed && !eof) FAIL("the connection stayed open after an answer that closes it");

out:
  for (int k = 0; k < j->nreq; k++) {
    ref_msg_free(j->req[k]);
    free(j->req[k]);
  }
  for (int k = 0; k < j->nup; k++) ref_msg_free(&j->up[k]);
  free(j->up);
  return verdict;
}
