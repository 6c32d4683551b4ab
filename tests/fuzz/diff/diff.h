/* The differential fuzzer of the real binary (tests/fuzz/README.md): it sends mutated and
 * known-bad requests through a running `outrigger` to a strict fake upstream that answers
 * from a script (well, or lying about its framing on purpose), and judges what reached
 * the upstream and what the client got against a strict reading of RFC 9112
 * (ref_http1.h).
 *
 *   gen.c       a case: the client's bytes, how they are delivered, the upstream's script
 *   upstream.c  the strict fake upstream, which records every request it receives
 *   judge.c     the verdict on one case
 *   difffuzz.c  the driver: the sidecar's life, the loop, saved cases, the summary */
#ifndef DF_DIFF_H
#define DF_DIFF_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define DF_MAX_SPLITS 4
#define DF_MAX_SCRIPT 8
#define DF_MAX_CLIENT (96 * 1024)

/* What the fake upstream does with one request it received whole. */
typedef enum {
  UB_SIZED,     /* a sized answer, kept alive */
  UB_CHUNKED,   /* a chunked answer with extensions and trailers, kept alive */
  UB_CLOSE,     /* no framing: the body ends with the connection */
  UB_NOBODY,    /* 204, or 304 with the Content-Length of the representation */
  UB_INTERIM,   /* 100 Continue (with a length it must not be read by) before a sized answer */
  UB_HTTP10,    /* an HTTP/1.0 sized answer, then the close it implies */
  UB_SHORT,     /* promises a length, sends part of it, closes */
  UB_BAD_CHUNK, /* chunked, then broken framing after some data, then closes */
  UB_GARBAGE,   /* bytes that are not HTTP, then closes */
  UB_RESET,     /* closes without answering (reset or FIN) */
  UB_EXTRA,     /* a sized answer followed by a second, unasked one in the same write */
  UB_BAD_HEAD,  /* a head no proxy may pass on (two lengths, a length and chunked, ...) */
  UB__COUNT
} df_ub_t;

typedef struct {
  df_ub_t kind;
  int status;        /* of answers that have one */
  uint32_t body_len; /* of the body a whole answer carries */
  uint32_t seed;     /* the body's bytes, chunk sizes, variants */
} df_answer_t;

/* What a client must receive for an answer, given the request's method. */
typedef enum {
  EX_WHOLE,     /* the status and the body, whole */
  EX_TRUNCATED, /* the head with the status, then the connection closes mid-body */
  EX_BAD,       /* 502 upstream_bad_response */
  EX_RESET,     /* 502 upstream_reset, or the request resent if it may run twice */
} df_expect_kind_t;

typedef struct {
  df_expect_kind_t kind;
  int status;
  px_buf_t body;       /* EX_WHOLE: the body the client must get (none for HEAD, 204, 304) */
  int length_known;    /* EX_WHOLE: the answer is sized (an HTTP/1.0 client can keep its connection) */
  int upstream_closes; /* the upstream closes its connection after this answer */
} df_expect_t;

typedef struct {
  uint64_t id; /* the case's number in its run, from which its randomness came */
  unsigned char *client;
  size_t client_len;
  size_t splits[DF_MAX_SPLITS]; /* the client pauses after sending up to these offsets */
  int nsplits;
  int half_close; /* shutdown(SHUT_WR) once everything is sent */
  df_answer_t script[DF_MAX_SCRIPT];
  int nscript;
  /* What the generator meant, for the summary; the judge relies on ref_http1 only. */
  int mutated;
  char what[96];
} df_case_t;

/* ---- gen.c ---- */

/* A new case, all of it drawn from `seed` (the same seed, the same case). */
void df_case_generate(df_case_t *c, uint64_t seed);
void df_case_free(df_case_t *c);
/* The script's answer for the upstream's `k`-th request of the case (a sized 200 past
 * the script's end). */
const df_answer_t *df_case_answer(const df_case_t *c, int k);
/* The bytes the upstream sends for `a`, to a request with method `method`, and what
 * the client must then get. */
void df_answer_bytes(const df_answer_t *a, const char *method, size_t method_len, px_buf_t *out,
                     df_expect_t *expect);
void df_expect_free(df_expect_t *e);
const char *df_ub_name(df_ub_t kind);

/* A case as a file, to replay it: 0, or -1 with errno (or EINVAL for a malformed file). */
int df_case_save(const df_case_t *c, const char *path);
int df_case_load(df_case_t *c, const char *path);
/* The case as a C-escaped, human-readable block (client bytes, delivery, script). */
void df_case_describe(const df_case_t *c, px_buf_t *out);
/* Appends bytes as a C string literal body: printable ASCII as is, the rest escaped. */
void df_escape(px_buf_t *out, const void *p, size_t n);

/* ---- upstream.c ---- */

/* One request as the upstream read it: a strictly valid request, whole. */
typedef struct {
  int conn;           /* which upstream connection (numbered from 1 in the run) */
  unsigned char *raw; /* its bytes as received */
  size_t raw_len;
  int answer; /* the script index of the answer it got */
} df_upreq_t;

typedef struct df_upstream_s df_upstream_t;

df_upstream_t *df_upstream_start(void);
int df_upstream_port(const df_upstream_t *u);
/* Begins a case: forgets what was recorded, and answers from `c`'s script. */
void df_upstream_begin(df_upstream_t *u, const df_case_t *c);
/* Waits until the upstream has received nothing for `quiet_ms` and has read all that
 * was sent to it before the call (at most `max_ms`). */
void df_upstream_settle(df_upstream_t *u, int quiet_ms, int max_ms);
/* What it received in this case, in order: an array the caller frees, whose entries
 * live until the next begin. */
df_upreq_t *df_upstream_requests(df_upstream_t *u, int *n);
/* Why what it received was not a valid request (the first such thing), or NULL; `detail`
 * gets the bytes. */
const char *df_upstream_violation(df_upstream_t *u, px_buf_t *detail);
void df_upstream_stop(df_upstream_t *u);

/* ---- judge.c ---- */

typedef struct {
  int requests;      /* complete valid requests in the client's bytes */
  int tail;          /* 0 none, 1 incomplete, 2 invalid */
  int answered;      /* answers that came from the upstream */
  int refused_valid; /* valid requests the sidecar answered itself (stricter than the oracle) */
  int resends;
  const char *refusal; /* the sidecar's error kind for the last refusal, if any */
  char refusal_detail[128];
} df_stats_t;

/* Judges a case: the client's bytes, what the client received (and whether the
 * connection ended, by `eof`, or was still open when the client stopped reading), and
 * what the upstream received. NULL when all is well, else why not (and `detail`). */
const char *df_judge(const df_case_t *c, const unsigned char *got, size_t got_len, int eof,
                     const df_upreq_t *up, int nup, df_stats_t *st, px_buf_t *detail);

#endif
