/* Fuzzes the HTTP/1 codec the way the proxy drives it (proxy/downstream.c, proxy/try.c):
 *
 *   request:  px_headscan over the bytes as they arrive (in two reads, split at a
 *             point taken from the input), then llhttp over the whole buffer once the
 *             scanner saw a complete head (stopping at its end), px_http1_refuse,
 *             px_http1_request_body, px_http1_build_request and px_http1_finish_request,
 *             then the body with px_body_read, in one read and in two;
 *   response: the same bytes parsed as an upstream answer with HTTP_RESPONSE (the proxy
 *             does not scan those first): px_http1_response_refuse, interim answers
 *             skipped, px_http1_build_response, then the body the same way;
 *   errors:   px_http1_problem with the reason the proxy would give.
 *
 * Whatever the input, what the sidecar writes must be one well-formed head: CRLF line
 * ends only, no NUL, its end where a parser finds it, no hop-by-hop header but the
 * ones the sidecar adds itself, and llhttp must parse it back; and a body must read
 * the same however its bytes are split.
 *
 * And differentially, against the strict reading of tests/fuzz/diff/ref_http1.h: a
 * request the codec passes on must be one the oracle calls valid, ending where it says,
 * with the same method, target and body; a response it passes on must end where the
 * oracle says (it may be laxer there about what it rebuilds anyway: the status line). */
#include <llhttp.h>
#include <string.h>

#include "body.h"
#include "fuzz.h"
#include "http1.h"
#include "json.h"
#include "ref_http1.h"

/* What the driver keeps while llhttp parses: the proxy's own header collector
 * (px_hcollect_t, http1.h). */
typedef struct {
  const char *base;
  px_hcollect_t col;
} collect_t;

static int hc_field(collect_t *hc, const char *at, size_t len) {
  return px_hcollect_field(&hc->col, (uint32_t)(at - hc->base), (uint32_t)len);
}

static int hc_value(collect_t *hc, const char *at, size_t len) {
  return px_hcollect_value(&hc->col, (uint32_t)(at - hc->base), (uint32_t)len);
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  collect_t *hc = p->data;
  px_hcollect_url(&hc->col, (uint32_t)(at - hc->base), (uint32_t)n);
  return 0;
}
static int on_field(llhttp_t *p, const char *at, size_t n) { return hc_field(p->data, at, n); }
static int on_value(llhttp_t *p, const char *at, size_t n) { return hc_value(p->data, at, n); }
static int on_value_complete(llhttp_t *p) {
  collect_t *hc = p->data;
  return px_hcollect_value_done(&hc->col, hc->base);
}
/* The proxy stops llhttp at the end of every head, request or response. */
static int on_headers_complete(llhttp_t *p) { return HPE_PAUSED; }

/* Parser settings that collect header spans as the proxy does, for requests and
 * responses alike. */
static void collect_settings(llhttp_settings_t *s) {
  llhttp_settings_init(s);
  s->on_header_field = on_field;
  s->on_header_value = on_value;
  s->on_header_value_complete = on_value_complete;
  s->on_headers_complete = on_headers_complete;
}

/* ---- bodies ------------------------------------------------------------------ */

typedef struct {
  px_br_result_t res;
  size_t end;   /* PX_BR_END: where the body ended */
  uint64_t sum; /* FNV-1a over the data */
  size_t data_len;
} body_outcome_t;

static uint64_t fnv(uint64_t h, const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
  return h;
}

/* Reads buf[from, size) as a body framed `mode`, in reads split at `split`. */
static body_outcome_t read_body(px_body_mode_t mode, uint64_t length, const char *buf, size_t from,
                                size_t size, size_t split) {
  body_outcome_t o = {.res = PX_BR_MORE, .sum = 0xcbf29ce484222325ull};
  px_body_reader_t r;
  px_body_reader_init(&r, mode, length);
  size_t cuts[2] = {split < from ? from : split > size ? size : split, size};
  const char *p = buf + from;
  for (int k = 0; k < 2; k++) {
    const char *end = buf + cuts[k];
    px_str_t d;
    while ((o.res = px_body_read(&r, &p, end, &d)) == PX_BR_DATA) {
      PX_FUZZ_CHECK(d.n > 0 && d.p >= buf + from && d.p + d.n <= end);
      o.sum = fnv(o.sum, d.p, d.n);
      o.data_len += d.n;
    }
    PX_FUZZ_CHECK(p >= buf + from && p <= end);
    if (o.res == PX_BR_END) {
      o.end = (size_t)(p - buf);
      return o;
    }
    if (o.res == PX_BR_ERROR) {
      PX_FUZZ_CHECK(r.err != NULL);
      return o;
    }
    PX_FUZZ_CHECK(p == end); /* it asks for more only once it took every byte */
  }
  return o;
}

/* The body read whole and split must agree on everything. */
static body_outcome_t check_body(px_body_mode_t mode, uint64_t length, const char *buf, size_t from,
                                 size_t size, size_t split) {
  body_outcome_t whole = read_body(mode, length, buf, from, size, size);
  body_outcome_t parts = read_body(mode, length, buf, from, size, split);
  PX_FUZZ_CHECK(whole.res == parts.res);
  PX_FUZZ_CHECK(whole.data_len == parts.data_len && whole.sum == parts.sum);
  if (whole.res == PX_BR_END) PX_FUZZ_CHECK(whole.end == parts.end);
  return whole;
}

/* ---- checks on what the sidecar writes ------------------------------------ */

/* One head: CRLF everywhere, no NUL, and the first blank line is its last line. */
static void check_head_bytes(const char *p, size_t n) {
  PX_FUZZ_CHECK(n >= 4 && memcmp(p + n - 4, "\r\n\r\n", 4) == 0);
  PX_FUZZ_CHECK(memmem(p, n, "\r\n\r\n", 4) == p + n - 4);
  for (size_t i = 0; i < n; i++) {
    PX_FUZZ_CHECK(p[i] != '\0');
    if (p[i] == '\n') PX_FUZZ_CHECK(i > 0 && p[i - 1] == '\r');
    if (p[i] == '\r') PX_FUZZ_CHECK(i + 1 < n && p[i + 1] == '\n');
  }
}

/* Header names of interest, counted in a built head (case-insensitively). */
enum {
  N_TE,
  N_CL,
  N_CONN,
  N_KEEPALIVE,
  N_TE2,
  N_TRAILER,
  N_UPGRADE,
  N_PROXYCONN,
  N_EXPECT,
  N_XFF,
  N_XFP,
  N_RID,
  N_ATTEMPT,
  N_ATTEMPTS,
  N_UPSTREAM,
  N_HOST,
  N_COUNT
};
static const char *const counted[N_COUNT] = {"transfer-encoding",
                                             "content-length",
                                             "connection",
                                             "keep-alive",
                                             "te",
                                             "trailer",
                                             "upgrade",
                                             "proxy-connection",
                                             "expect",
                                             "x-forwarded-for",
                                             "x-forwarded-proto",
                                             "x-request-id",
                                             "x-outrigger-attempt",
                                             "x-outrigger-attempts",
                                             "x-outrigger-upstream",
                                             "host"};

typedef struct {
  int n[N_COUNT];
  px_str_t value[N_COUNT]; /* of the last one seen */
  px_str_t last_name;      /* of the last header line */
} head_counts_t;

/* Counts the header lines of a head that passed check_head_bytes. */
static void count_headers(const char *p, size_t n, head_counts_t *hc) {
  memset(hc, 0, sizeof(*hc));
  const char *end = p + n - 2; /* the final blank line */
  const char *line = (const char *)memmem(p, n, "\r\n", 2) + 2;
  while (line < end) {
    const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
    PX_FUZZ_CHECK(eol != NULL);
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    PX_FUZZ_CHECK(colon != NULL && colon > line);
    px_str_t name = {line, (size_t)(colon - line)};
    const char *v = colon + 1;
    while (v < eol && (*v == ' ' || *v == '\t')) v++;
    for (int k = 0; k < N_COUNT; k++) {
      if (px_str_ieq_cstr(name, counted[k])) {
        hc->n[k]++;
        hc->value[k] = (px_str_t){v, (size_t)(eol - v)};
      }
    }
    hc->last_name = name;
    line = eol + 2;
  }
}

/* llhttp must read a built head back, stopping exactly at its end. */
typedef struct {
  size_t nfields;
  const char *url;
  size_t url_len;
} reparse_t;
static int rp_url(llhttp_t *p, const char *at, size_t n) {
  reparse_t *r = p->data;
  if (!r->url) r->url = at;
  r->url_len += n;
  return 0;
}
static int rp_field_complete(llhttp_t *p) {
  ((reparse_t *)p->data)->nfields++;
  return 0;
}
static int rp_headers_complete(llhttp_t *p) { return HPE_PAUSED; }

static void reparse(const char *p, size_t n, llhttp_type_t type, llhttp_t *parser, reparse_t *r) {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_url = rp_url;
  s.on_header_field_complete = rp_field_complete;
  s.on_headers_complete = rp_headers_complete;
  memset(r, 0, sizeof(*r));
  llhttp_init(parser, type, &s);
  parser->data = r;
  llhttp_errno_t err = llhttp_execute(parser, p, n);
  if (err != HPE_PAUSED) fprintf(stderr, "re-parse: %s\n", llhttp_errno_name(err));
  PX_FUZZ_CHECK(err == HPE_PAUSED);
  PX_FUZZ_CHECK(llhttp_get_error_pos(parser) == p + n);
}

static void check_request(const px_head_t *h, const px_req_rewrite_t *rw, const px_buf_t *out) {
  check_head_bytes(out->data, out->len);
  head_counts_t c;
  count_headers(out->data, out->len, &c);
  PX_FUZZ_CHECK(c.n[N_TE] == (rw->chunked_body ? 1 : 0));
  if (rw->chunked_body) {
    PX_FUZZ_CHECK(px_str_ieq_cstr(c.value[N_TE], "chunked"));
    PX_FUZZ_CHECK(c.n[N_CL] == 0);
  }
  PX_FUZZ_CHECK(c.n[N_CONN] == 0 && c.n[N_KEEPALIVE] == 0 && c.n[N_TE2] == 0);
  PX_FUZZ_CHECK(c.n[N_TRAILER] == 0 && c.n[N_UPGRADE] == 0 && c.n[N_PROXYCONN] == 0);
  PX_FUZZ_CHECK(c.n[N_EXPECT] == 0);
  PX_FUZZ_CHECK(c.n[N_XFF] == 1 && c.n[N_XFP] == 1 && c.n[N_RID] == 1 && c.n[N_ATTEMPT] == 1);
  PX_FUZZ_CHECK(px_str_ieq_cstr(c.last_name, "x-outrigger-attempt"));

  llhttp_t parser;
  reparse_t r;
  reparse(out->data, out->len, HTTP_REQUEST, &parser, &r);
  PX_FUZZ_CHECK(llhttp_get_method(&parser) == h->method);
  if (rw->origin.p == NULL) {
    PX_FUZZ_CHECK(r.url_len == h->url_len && memcmp(r.url, h->base + h->url_off, r.url_len) == 0);
  } else { /* absolute-form in: origin-form out, the authority as the one Host */
    size_t slash = rw->origin.n == 0 || rw->origin.p[0] != '/';
    PX_FUZZ_CHECK(r.url_len == rw->origin.n + slash && r.url[0] == '/');
    PX_FUZZ_CHECK(memcmp(r.url + slash, rw->origin.p, rw->origin.n) == 0);
    PX_FUZZ_CHECK(c.n[N_HOST] == 1 && px_str_eq(c.value[N_HOST], rw->authority));
  }
}

static void check_response(const px_head_t *h, const px_resp_rewrite_t *rw, px_body_mode_t mode,
                           const px_buf_t *out) {
  check_head_bytes(out->data, out->len);
  PX_FUZZ_CHECK(out->len > 9 && memcmp(out->data, "HTTP/1.1 ", 9) == 0);
  head_counts_t c;
  count_headers(out->data, out->len, &c);
  PX_FUZZ_CHECK(c.n[N_TE] == (mode == PX_BODY_CHUNKED ? 1 : 0));
  if (mode == PX_BODY_CHUNKED) PX_FUZZ_CHECK(px_str_ieq_cstr(c.value[N_TE], "chunked"));
  if (mode == PX_BODY_CHUNKED || mode == PX_BODY_CLOSE) PX_FUZZ_CHECK(c.n[N_CL] == 0);
  PX_FUZZ_CHECK(c.n[N_CONN] <= 1 && c.n[N_KEEPALIVE] == 0 && c.n[N_TE2] == 0);
  PX_FUZZ_CHECK(c.n[N_TRAILER] == 0 && c.n[N_UPGRADE] == 0 && c.n[N_PROXYCONN] == 0);
  PX_FUZZ_CHECK(c.n[N_ATTEMPTS] == 1 && c.n[N_UPSTREAM] == 1);
  if (mode == PX_BODY_CLOSE || rw->close)
    PX_FUZZ_CHECK(c.n[N_CONN] == 1 && px_str_ieq_cstr(c.value[N_CONN], "close"));

  llhttp_t parser;
  reparse_t r;
  reparse(out->data, out->len, HTTP_RESPONSE, &parser, &r);
  PX_FUZZ_CHECK(llhttp_get_status_code(&parser) == h->status);
}

/* A problem+json answer: one head whose content-length is the body's, and a body
 * that is JSON with the status in it. */
static void check_problem(int status, const char *kind, const char *detail, int close, const char *extra) {
  px_buf_t out = {0};
  px_http1_problem(&out, status, kind, detail, close, extra);
  const char *end = memmem(out.data, out.len, "\r\n\r\n", 4);
  PX_FUZZ_CHECK(end != NULL);
  size_t head_len = (size_t)(end - out.data) + 4;
  check_head_bytes(out.data, head_len);
  head_counts_t c;
  count_headers(out.data, head_len, &c);
  PX_FUZZ_CHECK(c.n[N_CL] == 1 && c.n[N_CONN] == (close ? 1 : 0));
  size_t body_len = out.len - head_len;
  char num[32];
  snprintf(num, sizeof(num), "%zu", body_len);
  PX_FUZZ_CHECK(px_str_ieq_cstr(c.value[N_CL], num));
  char err[128];
  px_json_t *j = px_json_parse(out.data + head_len, body_len, err, sizeof(err));
  PX_FUZZ_CHECK(j != NULL);
  int64_t st = 0;
  PX_FUZZ_CHECK(px_json_int(px_json_get(j, "status"), &st) == 0 && st == status);
  px_json_free(j);
  px_buf_free(&out);
}

/* ---- against the oracle ------------------------------------------------------- */

/* ref_msg_t is large; the fuzzer runs one input at a time. */
static ref_msg_t oracle;

/* The codec passed a request head on, and its body read `b`: the oracle must agree. */
static void check_request_against_oracle(const char *buf, size_t size, const px_head_t *h,
                                         const body_outcome_t *b) {
  ref_result_t rr = ref_parse_request(buf, size, &oracle);
  if (rr == REF_INVALID) fprintf(stderr, "oracle: invalid at %zu: %s\n", oracle.error_off, oracle.error);
  PX_FUZZ_CHECK(rr != REF_INVALID);
  PX_FUZZ_CHECK((rr == REF_COMPLETE) == (b->res == PX_BR_END));
  if (rr != REF_COMPLETE) return;
  PX_FUZZ_CHECK(oracle.wire_len == b->end);
  const char *method = llhttp_method_name((llhttp_method_t)h->method);
  PX_FUZZ_CHECK(oracle.method_len == strlen(method) && memcmp(oracle.method, method, oracle.method_len) == 0);
  PX_FUZZ_CHECK(oracle.target == h->base + h->url_off && oracle.target_len == h->url_len);
  PX_FUZZ_CHECK(oracle.body_len == b->data_len);
  PX_FUZZ_CHECK(fnv(0xcbf29ce484222325ull, (const char *)oracle.body, oracle.body_len) == b->sum);
  ref_msg_free(&oracle);
}

/* The codec took a response whose final head ends at `from` and whose body read `b`
 * (framed `in`): where the oracle says it ends, so must it. Interim answers before it
 * are messages of their own to the oracle. */
static void check_response_against_oracle(const char *buf, size_t size, int is_head, px_body_mode_t in,
                                          const body_outcome_t *b) {
  size_t off = 0;
  ref_result_t rr;
  while ((rr = ref_parse_response(buf + off, size - off, is_head ? "HEAD" : "GET", 1, &oracle)) ==
             REF_COMPLETE &&
         oracle.status < 200) {
    off += oracle.wire_len;
    ref_msg_free(&oracle);
  }
  if (rr != REF_COMPLETE)
    return; /* laxer than the oracle, or the oracle wants more: nothing forwarded as whole */
  size_t end = in == PX_BODY_CLOSE ? size : b->res == PX_BR_END ? b->end : 0;
  if (end != off + oracle.wire_len)
    fprintf(stderr, "oracle: the response ends at %zu, the codec says %zu\n", off + oracle.wire_len, end);
  PX_FUZZ_CHECK(end == off + oracle.wire_len);
  PX_FUZZ_CHECK(oracle.body_len == b->data_len);
  ref_msg_free(&oracle);
}

/* ---- the two directions ---------------------------------------------------- */

static void fuzz_response(const char *buf, size_t size, uint32_t knobs) {
  px_buf_t out = {0};
  px_resp_rewrite_t rw = {.client_minor = (knobs >> 9) & 1,
                          .request_is_head = (knobs >> 10) & 1,
                          .close = (knobs >> 11) & 1,
                          .attempts = 1 + (int)((knobs >> 12) & 3),
                          .cluster = "backend"};
  collect_t hc;
  memset(&hc, 0, sizeof(hc));
  hc.base = buf;
  llhttp_settings_t s;
  collect_settings(&s);
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &s);
  p.data = &hc;
  const char *at = buf;
  for (;;) { /* as on_up_read: heads until one that is not interim */
    llhttp_errno_t err = llhttp_execute(&p, at, (size_t)(buf + size - at));
    if (err == HPE_OK) goto out; /* the proxy would read more */
    if (err != HPE_PAUSED) {
      check_problem(502, "upstream_bad_response", llhttp_get_error_reason(&p), 1, NULL);
      goto out;
    }
    at = llhttp_get_error_pos(&p);
    px_head_t h = {.base = buf,
                   .h = hc.col.h,
                   .nh = hc.col.n,
                   .status = p.status_code,
                   .http_minor = p.http_minor,
                   .chunked = (p.flags & F_CHUNKED) != 0,
                   .content_length = (p.flags & F_CONTENT_LENGTH) ? (int64_t)p.content_length : -1};
    const char *refused = px_http1_response_refuse(&h, p.http_major, p.flags, p.content_length);
    if (refused) {
      check_problem(502, "upstream_bad_response", refused, 1, NULL);
      goto out;
    }
    PX_FUZZ_CHECK(h.status >= 100 && h.status <= 599 && h.status != 101);
    if (h.status < 200) {
      px_hcollect_reset(&hc.col);
      llhttp_reset(&p);
      continue;
    }
    px_body_mode_t mode = px_http1_build_response(&h, &rw, &out);
    check_response(&h, &rw, mode, &out);
    px_body_mode_t in = px_http1_response_body(&h, rw.request_is_head);
    if (in == PX_BODY_NONE) PX_FUZZ_CHECK(mode == PX_BODY_NONE);
    if (mode == PX_BODY_LENGTH) PX_FUZZ_CHECK(in == PX_BODY_LENGTH);
    size_t from = (size_t)(at - buf);
    body_outcome_t b = check_body(in, (uint64_t)PX_MAX(h.content_length, 0), buf, from, size,
                                  from + (knobs >> 16) % (size - from + 1));
    if (b.res != PX_BR_ERROR) check_response_against_oracle(buf, size, rw.request_is_head, in, &b);
    goto out;
  }
out:
  px_hcollect_free(&hc.col);
  px_buf_free(&out);
}

static void fuzz_parsed_request(const char *buf, size_t size, size_t he, uint32_t knobs, collect_t *hc);

static void fuzz_request(const char *buf, size_t size, size_t split, uint32_t knobs) {
  /* The scanner sees the bytes in two reads and must decide as it would in one. */
  px_headscan_t s, whole;
  px_headscan_reset(&s, 0);
  int r = px_headscan(&s, buf, split);
  if (r == 0) r = px_headscan(&s, buf, size);
  px_headscan_reset(&whole, 0);
  int r_whole = px_headscan(&whole, buf, size);
  PX_FUZZ_CHECK(r == r_whole);
  if (r < 0) {
    PX_FUZZ_CHECK(s.err != NULL);
    check_problem(400, "bad_request", s.err, 1, NULL);
    return;
  }
  if (r == 0) return; /* the proxy would read more */
  PX_FUZZ_CHECK(s.head_end == whole.head_end);
  size_t he = s.head_end;
  PX_FUZZ_CHECK(he >= 4 && he <= size && memcmp(buf + he - 4, "\r\n\r\n", 4) == 0);
  PX_FUZZ_CHECK(memchr(buf, '\0', he) == NULL);

  collect_t hc;
  memset(&hc, 0, sizeof(hc));
  hc.base = buf;
  fuzz_parsed_request(buf, size, he, knobs, &hc);
  px_hcollect_free(&hc.col);
}

/* The part of fuzz_request after the scanner accepted a head of `he` bytes. */
static void fuzz_parsed_request(const char *buf, size_t size, size_t he, uint32_t knobs, collect_t *hc) {
  llhttp_settings_t set;
  collect_settings(&set);
  set.on_url = on_url;
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &set);
  p.data = hc;
  llhttp_errno_t err = llhttp_execute(&p, buf, size);
  if (err != HPE_PAUSED) {
    /* A complete head either parses or is refused; llhttp asking for more would have
     * it read past what the scanner checked. */
    PX_FUZZ_CHECK(err != HPE_OK);
    const char *why = px_hcollect_error(&hc->col);
    if (why == NULL) why = llhttp_get_error_reason(&p);
    check_problem(hc->col.too_many ? 431 : 400, "bad_request", why ? why : "", (knobs >> 13) & 1, NULL);
    return;
  }
  px_head_t h = {.base = buf,
                 .h = hc->col.h,
                 .nh = hc->col.n,
                 .method = llhttp_get_method(&p),
                 .http_minor = llhttp_get_http_minor(&p),
                 .url_off = hc->col.url_off,
                 .url_len = hc->col.url_len,
                 .chunked = (p.flags & F_CHUNKED) != 0,
                 .content_length = (p.flags & F_CONTENT_LENGTH) ? (int64_t)p.content_length : -1};
  /* The proxy refuses these before building anything, and closes the connection. An
   * HTTP/0.9-style request line ("GET /\r\n") lands here: llhttp ends that message
   * after one line (minor 9, no headers), before where the scanner ends the head. */
  const char *refused =
      px_http1_refuse(&h, llhttp_get_http_major(&p), llhttp_get_upgrade(&p), px_head_find(&h, "host"));
  if (refused) {
    check_problem(400, "bad_request", refused, 1, NULL);
    return;
  }
  int mode = px_http1_request_body(&h, p.flags, p.content_length, hc->col.te_lines, &refused);
  if (mode < 0) {
    PX_FUZZ_CHECK(mode == -400 || mode == -501);
    check_problem(-mode, mode == -400 ? "bad_request" : "not_implemented", refused, 1, NULL);
    return;
  }
  PX_FUZZ_CHECK((mode == PX_BODY_CHUNKED) == h.chunked);
  px_str_t authority = {NULL, 0}, origin = {NULL, 0};
  int absolute = px_http1_absolute_target((px_str_t){buf + h.url_off, h.url_len}, &authority, &origin);
  if (absolute < 0) {
    check_problem(400, "bad_request", "an absolute-form target needs an authority that is host[:port]", 1,
                  NULL);
    return;
  }
  if (absolute) PX_FUZZ_CHECK(px_http1_host_valid(authority) && authority.n > 0);
  /* The body, or the next pipelined request, starts where the scanner said. */
  PX_FUZZ_CHECK(llhttp_get_error_pos(&p) == buf + he);
  PX_FUZZ_CHECK(hc->col.url_started && hc->col.url_off + hc->col.url_len <= he);
  for (size_t i = 0; i < hc->col.n; i++) {
    PX_FUZZ_CHECK(hc->col.h[i].name_off + hc->col.h[i].name_len <= he);
    PX_FUZZ_CHECK(hc->col.h[i].value_off + hc->col.h[i].value_len <= he);
  }
  px_req_rewrite_t rw = {.client_ip = "10.1.2.3",
                         .proto = (knobs & 1) ? "https" : "http",
                         .host_fallback = "backend.internal:8080",
                         .request_id = (knobs & 2) ? "fixed-id" : NULL,
                         .chunked_body = h.chunked,
                         .authority = authority,
                         .origin = origin};
  px_buf_t out = {0};
  char rid[201];
  px_http1_build_request(&h, &rw, &out, rid);
  size_t base = out.len;
  PX_FUZZ_CHECK(strlen(rid) > 0 && strlen(rid) <= 200);
  px_http1_finish_request(&out, base, 1);
  check_request(&h, &rw, &out);
  /* A retry re-sends the same head with another attempt number. */
  px_http1_finish_request(&out, base, 12);
  check_request(&h, &rw, &out);
  PX_FUZZ_CHECK(memcmp(out.data + out.len - 6, "12\r\n\r\n", 6) == 0);
  px_buf_free(&out);
  body_outcome_t b =
      check_body((px_body_mode_t)mode, p.content_length, buf, he, size, he + (knobs >> 16) % (size - he + 1));
  if (b.res != PX_BR_ERROR) check_request_against_oracle(buf, size, &h, &b);
  check_problem(502, "upstream_connect_failure", "no endpoint answered", (knobs >> 14) & 1,
                (knobs >> 15) & 1 ? "x-outrigger-overloaded: true\r\n" : NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > 65536) return 0;
  /* An exact-size copy, so that a read past the end is caught by ASan. */
  char *buf = malloc(size);
  PX_FUZZ_CHECK(buf != NULL);
  memcpy(buf, data, size);
  uint32_t knobs = 2166136261u; /* FNV-1a of the input: the split point and rewrite options */
  for (size_t i = 0; i < size; i++) knobs = (knobs ^ data[i]) * 16777619u;
  size_t split = knobs % (size + 1);
  fuzz_request(buf, size, split, knobs);
  fuzz_response(buf, size, knobs);
  free(buf);
  return 0;
}
