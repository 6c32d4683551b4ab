/* HTTP/1.1 head handling for the proxy, as pure functions over parsed spans: which
 * headers are hop-by-hop, the request head sent upstream, the response head sent to
 * the client, and the sidecar's own problem+json answers (SPEC §4). No I/O here. */
#ifndef PX_HTTP1_H
#define PX_HTTP1_H

#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "core.h"
#include "trace.h"

/* A header as offsets into the buffer that holds the head, so the buffer may grow
 * (realloc) while a head is still arriving. */
typedef struct {
  uint32_t name_off, name_len, value_off, value_len;
} px_hspan_t;

/* The most header lines a head may have (more is refused with 431 by the proxy,
 * and a response with more is a bad response). */
#define PX_HTTP1_MAX_HEADERS 128

/* What the proxy needs to know about a parsed head, apart from the header list. */
typedef struct {
  const char *base; /* the buffer the spans are relative to */
  px_hspan_t *h;
  size_t nh;
  int method;                /* llhttp_method_t (requests) */
  int status;                /* responses */
  int http_minor;            /* 0 or 1 */
  uint32_t url_off, url_len; /* requests */
  int chunked;               /* Transfer-Encoding: chunked */
  int64_t content_length;    /* -1 when absent */
  int keep_alive;            /* the peer allows reuse after this message */
} px_head_t;

static inline px_str_t px_head_name(const px_head_t *m, size_t i) {
  return (px_str_t){m->base + m->h[i].name_off, m->h[i].name_len};
}
static inline px_str_t px_head_value(const px_head_t *m, size_t i) {
  return (px_str_t){m->base + m->h[i].value_off, m->h[i].value_len};
}
/* Index of the first header named `name` (case-insensitive), or -1. */
int px_head_find(const px_head_t *m, const char *name);

/* Header spans of a head arriving over several reads, from llhttp's field and value
 * callbacks (offsets into the buffer, which may grow between reads). Refuses what
 * llhttp 8.1 lets through: an obs-folded line (a second value piece that does not
 * continue the first), a value with no name before it (": v"), and more than
 * PX_HTTP1_MAX_HEADERS lines. */
typedef struct {
  px_hspan_t *h;
  size_t n, cap;
  int last; /* 0 none, 1 field, 2 value, 3 value complete */
  int obs_fold, too_many, empty_name;
  /* Transfer-Encoding lines: llhttp sets no flag for one with an empty value, and a
   * request with one but no chunked must be refused (RFC 9112 §6.3). */
  unsigned te_lines;
  uint32_t url_off, url_len; /* requests: the target, once url_started */
  int url_started;
} px_hcollect_t;

/* The request target, which may also arrive in pieces. */
void px_hcollect_url(px_hcollect_t *hc, uint32_t off, uint32_t len);

/* Return 0, or -1 (for llhttp: stop) with the reason flag set. */
int px_hcollect_field(px_hcollect_t *hc, uint32_t off, uint32_t len);
int px_hcollect_value(px_hcollect_t *hc, uint32_t off, uint32_t len);
/* The header line is complete; -1 when its name was empty. `base` is the buffer the
 * offsets are relative to. */
int px_hcollect_value_done(px_hcollect_t *hc, const char *base);
/* Why the collector stopped llhttp, or NULL when it did not. */
const char *px_hcollect_error(const px_hcollect_t *hc);
/* Forgets the headers and the target (keeps the array for the next head). */
void px_hcollect_reset(px_hcollect_t *hc);
void px_hcollect_free(px_hcollect_t *hc);

/* An incremental check of a request head as its bytes arrive, before llhttp sees
 * them. llhttp 8.1 lets three things through that SPEC §4 refuses: a bare LF after
 * the request line, a NUL after a header value, and obs-folded lines (which it hands
 * over as a second value callback). Blank lines before the request line
 * are tolerated (RFC 9112 §2.2). */
typedef struct {
  size_t pos, line_start; /* offsets into the caller's buffer */
  unsigned nlines;
  int done;
  size_t head_end; /* offset just past the blank line, once done */
  const char *err;
} px_headscan_t;

/* Starts scanning a head that begins at offset `start`. */
void px_headscan_reset(px_headscan_t *s, size_t start);
/* Scans buf[s->pos, len). Returns 1 once the head is complete (s->head_end set),
 * 0 when more bytes are needed, -1 with s->err on a bare LF, NUL or folded line. */
int px_headscan(px_headscan_t *s, const char *buf, size_t len);

/* Why a parsed request head is refused before it is routed (400, connection
 * closed), or NULL: versions other than HTTP/1.0 and 1.1 (llhttp also takes
 * HTTP/0.9 "GET /" and "HTTP/2.0" request lines), CONNECT and upgrades, and an
 * HTTP/1.1 request without Host. More than one Host, or one that is not a valid
 * host[:port], is refused too (RFC 9112 §3.2), and so are a request line with more than
 * one space between its parts, a target holding a fragment ("#") and one in none of
 * the forms a proxy is sent: origin-form, absolute-form with http or https, or "*" for
 * OPTIONS (llhttp takes any scheme). `h->base` holds the request line. `host_idx` is px_head_find(h, "host").
 */
const char *px_http1_refuse(const px_head_t *h, int http_major, int upgrade, int host_idx);

/* How a request body is framed (RFC 9112 §6.3), from what llhttp made of the head:
 * its F_* `flags`, the Content-Length it read, and `te_lines`, the head's
 * Transfer-Encoding lines (llhttp flags none for one with an empty value). Returns
 * PX_BODY_NONE, PX_BODY_LENGTH or PX_BODY_CHUNKED; or -400 with *why for framing that
 * must be refused (a length beyond 63 bits, Transfer-Encoding in an HTTP/1.0 request
 * or without chunked last), -501 for codings besides chunked, which the sidecar
 * cannot pass on.  */
int px_http1_request_body(const px_head_t *h, unsigned flags, uint64_t length, unsigned te_lines,
                          const char **why);

/* Why an upstream's response head cannot be passed on (the request then gets 502), or
 * NULL: not HTTP/1.x, a status outside 100..599 (llhttp takes two digits and any up to
 * 999), a 101 that no request of the sidecar's asks for, a Content-Length beyond 63
 * bits, or codings besides chunked, which the sidecar would drop as it re-frames the
 * body (nginx answers those with 502 too). `flags` and `length` are llhttp's. */
const char *px_http1_response_refuse(const px_head_t *h, int http_major, unsigned flags, uint64_t length);

/* 1 when sending a request that reached the upstream once more cannot do its work
 * twice (SPEC §5): GET, HEAD, OPTIONS, TRACE, PUT and DELETE; POST and PATCH only
 * with a non-empty Idempotency-Key that goes upstream (not named in Connection), and
 * only when `keyed` (the route's idempotency_key is not off); any other method never. */
int px_http1_resend_safe(const px_head_t *h, int keyed);

/* Whether a Host value is uri-host [":" port] (RFC 9110 §7.2, RFC 3986 §3.2.2): a reg-name
 * ("%" only as pct-encoded) or a bracketed IP literal, then digits after a colon. Empty
 * is valid, an empty host before a port is not (RFC 9110 §4.2.1). */
int px_http1_host_valid(px_str_t v);

/* 1 when the head has no Transfer-Encoding or exactly the one coding `chunked` across
 * its Transfer-Encoding lines. Any other coding cannot be passed on: the sidecar
 * re-frames bodies and would drop it, handing the peer bytes it cannot decode. */
int px_http1_te_chunked_only(const px_head_t *h);

/* A request target in absolute-form ("http://host:port/path?query", RFC 9112 §3.2.2),
 * as a client configured with the sidecar as its HTTP proxy sends: returns 1 and sets
 * `authority` and `origin` (path and query, possibly empty: "/" is meant). Returns 0
 * for any other form, and -1 for an http(s) target whose authority is not host[:port]
 * (userinfo included: RFC 9110 §4.2.4 forbids it in http URIs). */
int px_http1_absolute_target(px_str_t target, px_str_t *authority, px_str_t *origin);

/* Hop-by-hop headers (RFC 9110 §7.6.1) and the ones Outrigger sets itself, plus any
 * header the Connection header names: these are never forwarded as they came. */
int px_http1_is_hop_by_hop(px_str_t name);

/* Appends a response's end-to-end header lines, as px_resp_rewrite_t.keep gets them,
 * for an answer that is not written for the client (px_req_drop). */
void px_http1_end_to_end_headers(const px_head_t *resp, px_buf_t *out);

/* Fills `id` (37 bytes with NUL) with a random UUIDv4. */
void px_uuid4(char id[37]);

typedef struct {
  const char *client_ip;     /* appended to x-forwarded-for */
  const char *proto;         /* x-forwarded-proto: "http" or "https" */
  const char *host_fallback; /* Host for HTTP/1.0 requests that sent none */
  const char *request_id;    /* NULL: keep the client's x-request-id or make one */
  int chunked_body;          /* send the body chunked (length unknown) */
  /* An absolute-form target (px_http1_absolute_target): its authority replaces the
   * client's Host and its origin-form part is sent upstream. {NULL, 0}: neither. */
  px_str_t authority, origin;
  /* Tracing: the trace headers (px_http1_trace_in's) are left out, for the sidecar to
   * write its own on each try; else they pass as they came. */
  int drop_trace;
} px_req_rewrite_t;

/* The request's trace headers (traceparent, tracestate, b3, x-b3-*), for
 * px_trace_extract. */
void px_http1_trace_in(const px_head_t *req, px_trace_in_t *in);

/* Writes the request head to send upstream, up to but excluding the final
 * x-outrigger-attempt line and the blank line, so that a retry can re-send the same
 * head with another attempt number: see px_http1_finish_request. Writes the request
 * id it used (kept or made) into `rid_out` (at most 200 bytes + NUL). */
void px_http1_build_request(const px_head_t *req, const px_req_rewrite_t *rw, px_buf_t *out,
                            char rid_out[201]);
/* Appends "x-outrigger-attempt: N\r\n\r\n" to a head built by px_http1_build_request,
 * first cutting it back to `base_len` (its length before any attempt line). */
void px_http1_finish_request(px_buf_t *out, size_t base_len, int attempt);

typedef enum {
  PX_BODY_NONE,    /* no body (HEAD, 204, 304, 1xx) */
  PX_BODY_LENGTH,  /* Content-Length forwarded as is */
  PX_BODY_CHUNKED, /* re-chunked towards the client */
  PX_BODY_CLOSE,   /* delimited by closing the connection (HTTP/1.0 clients) */
} px_body_mode_t;

typedef struct {
  int client_minor; /* client's HTTP/1.x minor version */
  int request_is_head;
  int close;           /* the client connection closes after this response */
  int attempts;        /* x-outrigger-attempts */
  const char *cluster; /* x-outrigger-upstream */
  /* NULL, or a buffer the response's end-to-end header lines ("name: value\r\n") are
   * appended to as well: what reaches the client, less the framing (Content-Length,
   * Transfer-Encoding), the hop-by-hop headers (those its Connection header names
   * included) and this hop's own x-outrigger-*. For an answer kept to be sent again with
   * framing of its own (inbound idempotency), without classifying the head twice. */
  px_buf_t *keep;
} px_resp_rewrite_t;

/* How an upstream frames a response body (RFC 9112 §6.3): none after HEAD and for 1xx,
 * 204 and 304 whatever their head says; else chunked, sized, or up to the close. */
static inline px_body_mode_t px_http1_response_body(const px_head_t *h, int request_is_head) {
  if (request_is_head || h->status < 200 || h->status == 204 || h->status == 304) return PX_BODY_NONE;
  if (h->chunked) return PX_BODY_CHUNKED;
  return h->content_length >= 0 ? PX_BODY_LENGTH : PX_BODY_CLOSE;
}

/* Writes the response head for the client and returns how its body is framed. */
px_body_mode_t px_http1_build_response(const px_head_t *resp, const px_resp_rewrite_t *rw, px_buf_t *out);

/* Standard reason phrase for a status code ("OK", "Bad Gateway"), "" when unknown. */
const char *px_http_reason(int status);

/* A complete problem+json response (SPEC §4) for an error the sidecar makes itself.
 * `kind` goes into x-outrigger-error; `extra_headers` (CRLF-terminated lines or
 * NULL) is appended to the head. */
void px_http1_problem(px_buf_t *out, int status, const char *kind, const char *detail, int close,
                      const char *extra_headers);

#endif
