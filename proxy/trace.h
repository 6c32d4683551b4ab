/* Trace context (W3C Trace Context Recommendation, Zipkin B3), pure: reading the trace
 * headers a request came with, deciding the request's context, and writing the headers
 * each upstream try carries. No I/O and no state but px_rand64's.
 *
 * The spans the sidecar makes: each request is a SERVER span (its id drawn here, its
 * parent the caller's span from the incoming headers, if any), each upstream try a
 * CLIENT span (a new id, its parent the SERVER span), and the upstream sees the CLIENT
 * span as its parent. The flow: px_trace_extract on the request's headers,
 * px_trace_begin once (trace id, sampling decision, SERVER span), then per try
 * px_trace_new_span_id and px_trace_write_headers. Whatever format the context came in,
 * every format written comes from the one context, so they always agree.
 *
 * Precedence when several formats come in (only those in `propagation` are read): a
 * valid W3C traceparent first (the standard, and the only one that carries tracestate);
 * then B3 single, then B3 multi, the order of Zipkin's Brave (B3Propagation tries `b3`
 * and falls back to the X-B3-* fields when it is absent or malformed; Envoy's Zipkin
 * tracer also reads `b3` first). A valid `b3` wins even when it is only a sampling
 * decision, as in Brave. A malformed one is skipped for the next; none valid starts a
 * new trace. */
#ifndef PX_TRACE_H
#define PX_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"

/* Which formats are read and written (a bit set). PX_PROP_B3 and PX_PROP_B3_SINGLE
 * each read both B3 forms; they differ in what is written. */
enum { PX_PROP_W3C = 1, PX_PROP_B3 = 2 /* X-B3-* fields */, PX_PROP_B3_SINGLE = 4 /* b3 */ };
/* Where the context came from: a new trace, or one continued from that format. */
enum { PX_TRACE_NEW = 0, PX_TRACE_W3C, PX_TRACE_B3 };
/* DEFER: no decision yet (B3 allows passing it on); px_trace_begin always decides. */
enum { PX_SAMPLE_NO = 0, PX_SAMPLE_YES = 1, PX_SAMPLE_DEFER = 2 };

/* The longest tracestate kept, as written (members joined by ","): the 512 characters
 * the Recommendation asks to propagate at least. */
#define PX_TRACESTATE_MAX 512
/* The most tracestate members kept (the Recommendation's limit). */
#define PX_TRACESTATE_MEMBERS 32

typedef struct {
  uint8_t trace_id[16]; /* a 64-bit B3 trace id is kept left-padded with zeros */
  uint8_t parent_id[8]; /* the caller's span (all zero: none) */
  uint8_t span_id[8];   /* this sidecar's SERVER span, set by px_trace_begin */
  uint8_t source;       /* PX_TRACE_* */
  uint8_t sampled;      /* PX_SAMPLE_* */
  uint8_t debug;        /* B3 debug (implies sampled); W3C has no such flag */
  uint8_t trace_id_64;  /* came as a 64-bit B3 id: written back as 16 hex in B3 */
  uint16_t tracestate_len;
  char tracestate[PX_TRACESTATE_MAX + 1]; /* normalised, NUL-terminated; W3C only */
} px_trace_ctx_t;

/* The request's trace fields as they came (names matched case-insensitively by the
 * caller, values raw bytes). A px_str_t with n == 0 is an absent field. */
typedef struct {
  px_str_t traceparent[2];
  unsigned n_traceparent; /* fields seen; more than one makes traceparent invalid */
  px_str_t tracestate[8];
  unsigned n_tracestate; /* fields seen, combined in order as one list; more than 8: dropped */
  px_str_t b3;           /* the single field */
  px_str_t b3_traceid, b3_spanid, b3_parentspanid, b3_sampled, b3_flags;
} px_trace_in_t;

/* Reads a traceparent value, `version-traceid-parentid-flags` in lowercase hex, spaces
 * and tabs around it allowed. Version 00 is exactly 55 characters; a higher version
 * (not ff) at least 55, followed by '-' if longer, its first four fields read as 00's.
 * Ids must not be all zero. `flags` gets the whole byte. 0, or PX_EPARSE (outputs untouched). */
int px_trace_parse_traceparent(px_str_t v, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags);

/* Reads `n` tracestate field values as one list into `out` (`cap` bytes, at least 1;
 * PX_TRACESTATE_MAX + 1 holds any result), normalised: members joined by "," without
 * spaces, empty ones skipped. Members past the 32nd are dropped (still checked); then,
 * while the list is longer than min(PX_TRACESTATE_MAX, cap - 1), members over 128
 * characters go first, last first, then members from the end. A malformed member or a
 * key seen twice: PX_EPARSE with an empty `out` (the whole list is dropped), else 0. */
int px_trace_parse_tracestate(const px_str_t *values, unsigned n, char *out, size_t cap, uint16_t *out_len);

/* Decides the request's context from its fields, reading only the formats in
 * `propagation` (precedence: the top of this file). With none valid, a new context
 * (PX_TRACE_NEW) that may still carry a B3 sampling-only decision. */
void px_trace_extract(const px_trace_in_t *in, unsigned propagation, px_trace_ctx_t *ctx);

/* Once per request, after px_trace_extract: draws a trace id when source is NEW; decides
 * sampling by `r01` (uniform in [0, 1)) < `sample_rate` when still deferred (a new trace
 * without a decision, B3 without x-b3-sampled), otherwise keeps it; draws the SERVER span. */
void px_trace_begin(px_trace_ctx_t *ctx, double sample_rate, double r01);

/* A fresh span id: nonzero (zero means "none" in both formats), from px_rand64. */
void px_trace_new_span_id(uint8_t id[8]);

/* Appends the header lines ("name: value\r\n", lowercase names) of the formats in
 * `propagation` that an upstream try carries, its parent `client_span`. The caller drops
 * the incoming fields of those formats. Nothing is written for a context without trace
 * id (px_trace_begin not run) or a zero `client_span`: both would be invalid. */
void px_trace_write_headers(const px_trace_ctx_t *ctx, const uint8_t client_span[8], unsigned propagation,
                            px_buf_t *out);

/* `n` bytes as 2n lowercase hex digits and a NUL into `out`. */
void px_trace_hex(const uint8_t *id, size_t n, char *out);

#endif
