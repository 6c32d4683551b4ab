#include "trace.h"

#include <stddef.h>
#include <string.h>

/* ---- small pieces ------------------------------------------------------- */

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* RFC 9110 §5.5: a field value's surrounding spaces and tabs are not part of it. */
static px_str_t trim_ows(px_str_t s) {
  while (s.n && is_ows(s.p[0])) s.p++, s.n--;
  while (s.n && is_ows(s.p[s.n - 1])) s.n--;
  return s;
}

/* Lowercase only: both formats say lower-hex, and taking uppercase would make two
 * spellings of one id (W3C calls an uppercase traceparent invalid). */
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Reads 2 * n hex digits into n bytes; -1 on a non-hex digit. */
static int parse_hex(const char *p, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

/* Ids are 8 or 16 bytes: compared a word at a time. */
static int all_zero(const uint8_t *p, size_t n) {
  uint64_t acc = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= p[i];
  return acc == 0;
}

/* A 16-digit, nonzero span id (B3 and W3C alike: zero means "none"). */
static int parse_span(px_str_t s, uint8_t out[8]) {
  uint8_t id[8];
  if (s.n != 16 || parse_hex(s.p, 8, id) || all_zero(id, 8)) return -1;
  memcpy(out, id, 8);
  return 0;
}

/* A B3 trace id: 16 or 32 digits, nonzero; a 64-bit one is left-padded. */
static int parse_b3_trace(px_str_t s, uint8_t out[16], uint8_t *is64) {
  uint8_t id[16] = {0};
  if (s.n != 16 && s.n != 32) return -1;
  if (parse_hex(s.p, s.n / 2, id + 16 - s.n / 2) || all_zero(id, 16)) return -1;
  memcpy(out, id, 16);
  *is64 = s.n == 16;
  return 0;
}

/* Two digits a byte from one table look-up: ids are written on every traced try. */
static const char hex_pairs[512] = "000102030405060708090a0b0c0d0e0f"
                                   "101112131415161718191a1b1c1d1e1f"
                                   "202122232425262728292a2b2c2d2e2f"
                                   "303132333435363738393a3b3c3d3e3f"
                                   "404142434445464748494a4b4c4d4e4f"
                                   "505152535455565758595a5b5c5d5e5f"
                                   "606162636465666768696a6b6c6d6e6f"
                                   "707172737475767778797a7b7c7d7e7f"
                                   "808182838485868788898a8b8c8d8e8f"
                                   "909192939495969798999a9b9c9d9e9f"
                                   "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
                                   "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
                                   "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
                                   "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
                                   "e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
                                   "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void px_trace_hex(const uint8_t *id, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) memcpy(out + 2 * i, hex_pairs + 2 * id[i], 2);
  out[2 * n] = '\0';
}

/* ---- traceparent -------------------------------------------------------- */

int px_trace_parse_traceparent(px_str_t v, uint8_t trace_id[16], uint8_t parent_id[8], uint8_t *flags) {
  v = trim_ows(v);
  const char *p = v.p;
  uint8_t version, tid[16], pid[8], fl;
  if (v.n < 55 || parse_hex(p, 1, &version) || version == 0xff) return PX_EPARSE;
  /* A future version may add fields after the four we know, never change them
   * (Trace Context, "Versioning of traceparent"): read those and ignore the rest. */
  if (version == 0 ? v.n != 55 : v.n > 55 && p[55] != '-') return PX_EPARSE;
  if (p[2] != '-' || p[35] != '-' || p[52] != '-') return PX_EPARSE;
  if (parse_hex(p + 3, 16, tid) || all_zero(tid, 16)) return PX_EPARSE;
  if (parse_hex(p + 36, 8, pid) || all_zero(pid, 8)) return PX_EPARSE;
  if (parse_hex(p + 53, 1, &fl)) return PX_EPARSE;
  memcpy(trace_id, tid, 16);
  memcpy(parent_id, pid, 8);
  *flags = fl;
  return 0;
}

/* ---- tracestate --------------------------------------------------------- */

static int key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

static int key_chars(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!key_char(p[i])) return 0;
  return 1;
}

static int lcalpha(char c) { return c >= 'a' && c <= 'z'; }

/* simple-key = lcalpha 0*255(keychar); multi-tenant-key = tenant-id "@" system-id, with
 * tenant-id = (lcalpha / DIGIT) 0*240(keychar) and system-id = lcalpha 0*13(keychar).
 * '@' is no keychar, so a second one fails the character check. */
static int key_ok(const char *p, size_t n) {
  const char *at = memchr(p, '@', n);
  if (!at) return n >= 1 && n <= 256 && lcalpha(p[0]) && key_chars(p, n);
  size_t tn = (size_t)(at - p), sn = n - tn - 1;
  const char *s = at + 1;
  if (tn < 1 || tn > 241 || !(lcalpha(p[0]) || (p[0] >= '0' && p[0] <= '9')) || !key_chars(p, tn)) return 0;
  return sn >= 1 && sn <= 14 && lcalpha(s[0]) && key_chars(s, sn);
}

/* A member "key=value" with its surrounding OWS already taken off: the key's length, or
 * -1. value = 0*255(chr) nblk-chr, chr = 0x20-0x7e but ',' and '=', nblk-chr the same
 * without space; the trim already took any trailing space, so "k= " arrives empty. */
static int member_check(px_str_t m) {
  const char *eq = memchr(m.p, '=', m.n);
  if (!eq) return -1;
  size_t kn = (size_t)(eq - m.p), vn = m.n - kn - 1;
  if (!key_ok(m.p, kn) || vn < 1 || vn > 256) return -1;
  for (size_t i = 1; i <= vn; i++) {
    unsigned char c = (unsigned char)eq[i];
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return -1;
  }
  return (int)kn;
}

typedef struct {
  const char *p;
  uint16_t n, kn;
  uint8_t keep;
} ts_member_t;

static size_t joined_len(const ts_member_t *m, unsigned k) {
  size_t len = 0, kept = 0;
  for (unsigned i = 0; i < k; i++)
    if (m[i].keep) len += m[i].n, kept++;
  return kept ? len + kept - 1 : 0;
}

int px_trace_parse_tracestate(const px_str_t *values, unsigned n, char *out, size_t cap, uint16_t *out_len) {
  ts_member_t m[PX_TRACESTATE_MEMBERS];
  unsigned k = 0;
  out[0] = '\0';
  *out_len = 0;
  for (unsigned f = 0; f < n; f++) {
    px_str_t v = values[f];
    /* Several fields are one list (RFC 9110 §5.3): a field boundary is a ','. */
    for (size_t i = 0; i < v.n;) {
      size_t j = i;
      while (j < v.n && v.p[j] != ',') j++;
      px_str_t s = trim_ows((px_str_t){v.p + i, j - i});
      i = j + 1;
      if (s.n == 0) continue; /* allowed: joined fields and lax writers make them */
      int kn = member_check(s);
      if (kn < 0) return PX_EPARSE;
      /* Two values for one key: no telling which the vendor meant, so neither is kept.
       * Later members are checked against the kept ones only, which keeps this linear;
       * a duplicate among dropped members changes nothing that is passed on. */
      for (unsigned x = 0; x < k; x++)
        if (m[x].kn == kn && memcmp(m[x].p, s.p, (size_t)kn) == 0) return PX_EPARSE;
      if (k < PX_TRACESTATE_MEMBERS) m[k++] = (ts_member_t){s.p, (uint16_t)s.n, (uint16_t)kn, 1};
    }
  }
  /* Trace Context, "tracestate Limits": truncate whole members, those over 128 characters first,
   * then from the end (the most recently added vendors sit at the front). */
  size_t limit = PX_MIN(cap - 1, (size_t)PX_TRACESTATE_MAX);
  for (unsigned i = k; i-- > 0 && joined_len(m, k) > limit;)
    if (m[i].n > 128) m[i].keep = 0;
  for (unsigned i = k; i-- > 0 && joined_len(m, k) > limit;) m[i].keep = 0;
  size_t len = 0;
  for (unsigned i = 0; i < k; i++) {
    if (!m[i].keep) continue;
    if (len) out[len++] = ',';
    memcpy(out + len, m[i].p, m[i].n);
    len += m[i].n;
  }
  out[len] = '\0';
  *out_len = (uint16_t)len;
  return 0;
}

/* ---- extract ------------------------------------------------------------ */

/* A new context: everything but the tracestate's bytes cleared (they count only up to
 * its length, and a context is made for every traced request). */
static void ctx_new(px_trace_ctx_t *ctx) {
  memset(ctx, 0, offsetof(px_trace_ctx_t, tracestate));
  ctx->tracestate[0] = '\0';
  ctx->source = PX_TRACE_NEW;
  ctx->sampled = PX_SAMPLE_DEFER;
}

static int extract_w3c(const px_trace_in_t *in, px_trace_ctx_t *ctx) {
  uint8_t flags;
  /* Two traceparents disagree or repeat: either way there is no one parent to take. */
  if (in->n_traceparent != 1) return -1;
  if (px_trace_parse_traceparent(in->traceparent[0], ctx->trace_id, ctx->parent_id, &flags)) return -1;
  ctx->source = PX_TRACE_W3C;
  /* The only flag of version 00 we act on; the others are not ours to pass on. */
  ctx->sampled = (flags & 1) ? PX_SAMPLE_YES : PX_SAMPLE_NO;
  /* A malformed tracestate is dropped and the traceparent still used; so is one split
   * over more fields than the caller could keep: a partial list is a changed one. */
  if (in->n_tracestate <= PX_ARRAY_SIZE(in->tracestate))
    px_trace_parse_tracestate(in->tracestate, in->n_tracestate, ctx->tracestate, sizeof(ctx->tracestate),
                              &ctx->tracestate_len);
  return 0;
}

/* b3's sampling state: 0, 1, or d (debug, which implies sampled). */
static int b3_sampling_state(char s, px_trace_ctx_t *c) {
  switch (s) {
  case '0': c->sampled = PX_SAMPLE_NO; return 0;
  case '1': c->sampled = PX_SAMPLE_YES; return 0;
  case 'd': c->sampled = PX_SAMPLE_YES, c->debug = 1; return 0;
  default: return -1;
  }
}

/* b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]], or a sampling state alone. */
static int extract_b3_single(px_str_t v, px_trace_ctx_t *ctx) {
  px_trace_ctx_t c;
  ctx_new(&c);
  v = trim_ows(v);
  if (v.n == 0) return -1;
  if (v.n == 1) { /* sampling only: a new trace that keeps the caller's decision */
    if (b3_sampling_state(v.p[0], &c)) return -1;
    *ctx = c;
    return 0;
  }
  const char *dash = memchr(v.p, '-', v.n);
  if (!dash) return -1;
  size_t tn = (size_t)(dash - v.p), i = tn + 1;
  if (parse_b3_trace((px_str_t){v.p, tn}, c.trace_id, &c.trace_id_64)) return -1;
  if (v.n - i < 16 || parse_span((px_str_t){v.p + i, 16}, c.parent_id)) return -1;
  i += 16;
  if (i < v.n) {
    if (v.n - i < 2 || v.p[i] != '-' || b3_sampling_state(v.p[i + 1], &c)) return -1;
    i += 2;
  }
  if (i < v.n) { /* the caller's parent: checked, not kept (it is not ours to pass on) */
    uint8_t grand[8];
    if (v.n - i != 17 || v.p[i] != '-' || parse_span((px_str_t){v.p + i + 1, 16}, grand)) return -1;
  }
  c.source = PX_TRACE_B3;
  *ctx = c;
  return 0;
}

/* X-B3-*. x-b3-sampled is "1" or "0", or "true" / "false" in any case, which tracers
 * from before the B3 spec send (Brave takes them too); any other value invalidates the
 * context rather than guess. x-b3-flags "1" is debug; other values are ignored, as the
 * B3 spec allows. Sampling alone (no ids) is a new trace that keeps that decision. */
static int extract_b3_multi(const px_trace_in_t *in, px_trace_ctx_t *ctx) {
  if (!in->b3_sampled.n && !in->b3_flags.n && !in->b3_traceid.n && !in->b3_spanid.n && !in->b3_parentspanid.n)
    return -1; /* none came: the usual case */
  px_trace_ctx_t c;
  ctx_new(&c);
  if (in->b3_sampled.n) {
    px_str_t s = trim_ows(in->b3_sampled);
    if (px_str_eq(s, PX_STR("1")) || px_str_ieq_cstr(s, "true"))
      c.sampled = PX_SAMPLE_YES;
    else if (px_str_eq(s, PX_STR("0")) || px_str_ieq_cstr(s, "false"))
      c.sampled = PX_SAMPLE_NO;
    else
      return -1;
  }
  if (in->b3_flags.n && px_str_eq(trim_ows(in->b3_flags), PX_STR("1")))
    c.debug = 1, c.sampled = PX_SAMPLE_YES;
  if (!in->b3_traceid.n && !in->b3_spanid.n && !in->b3_parentspanid.n) {
    if (c.sampled == PX_SAMPLE_DEFER) return -1; /* nothing to act on */
    *ctx = c;
    return 0;
  }
  if (parse_b3_trace(trim_ows(in->b3_traceid), c.trace_id, &c.trace_id_64)) return -1;
  if (parse_span(trim_ows(in->b3_spanid), c.parent_id)) return -1;
  uint8_t grand[8];
  if (in->b3_parentspanid.n && parse_span(trim_ows(in->b3_parentspanid), grand)) return -1;
  c.source = PX_TRACE_B3;
  *ctx = c;
  return 0;
}

void px_trace_extract(const px_trace_in_t *in, unsigned propagation, px_trace_ctx_t *ctx) {
  ctx_new(ctx);
  /* Each reader fills `ctx` only when it succeeds, so a failed one leaves it new. */
  if ((propagation & PX_PROP_W3C) && extract_w3c(in, ctx) == 0) return;
  if (!(propagation & (PX_PROP_B3 | PX_PROP_B3_SINGLE))) return;
  if (in->b3.n && extract_b3_single(in->b3, ctx) == 0) return;
  extract_b3_multi(in, ctx);
}

/* ---- begin and write ---------------------------------------------------- */

static void rand_bytes(uint8_t *p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t r = px_rand64();
    memcpy(p, &r, 8);
  }
  if (n) {
    uint64_t r = px_rand64();
    memcpy(p, &r, n);
  }
}

void px_trace_new_span_id(uint8_t id[8]) {
  do rand_bytes(id, 8);
  while (all_zero(id, 8));
}

void px_trace_begin(px_trace_ctx_t *ctx, double sample_rate, double r01) {
  if (ctx->source == PX_TRACE_NEW) {
    do rand_bytes(ctx->trace_id, 16);
    while (all_zero(ctx->trace_id, 16));
    ctx->trace_id_64 = 0;
    memset(ctx->parent_id, 0, sizeof(ctx->parent_id));
    ctx->tracestate_len = 0;
    ctx->tracestate[0] = '\0';
  }
  if (ctx->debug) ctx->sampled = PX_SAMPLE_YES;
  /* A decision made upstream is kept, so that every hop of a trace records it or none
   * does (parent-based sampling); only an open one is ours to take. */
  if (ctx->sampled == PX_SAMPLE_DEFER) ctx->sampled = r01 < sample_rate ? PX_SAMPLE_YES : PX_SAMPLE_NO;
  px_trace_new_span_id(ctx->span_id);
}

/* Appends a header line "name: <hex of id>\r\n" without going through printf: these
 * are written on every try of every traced request. */
static inline void hex_line(px_buf_t *out, const char *name, size_t nlen, const uint8_t *id, size_t n) {
  char *p = px_buf_reserve(out, nlen + 2 * n + 2);
  memcpy(p, name, nlen);
  px_trace_hex(id, n, p + nlen); /* its NUL goes where the CR goes next */
  p[nlen + 2 * n] = '\r';
  p[nlen + 2 * n + 1] = '\n';
  out->len += nlen + 2 * n + 2;
}
#define HEX_LINE(out, lit, id, n) hex_line(out, lit, sizeof(lit) - 1, id, n)

void px_trace_write_headers(const px_trace_ctx_t *ctx, const uint8_t client_span[8], unsigned propagation,
                            px_buf_t *out) {
  if (all_zero(ctx->trace_id, 16) || all_zero(client_span, 8)) return;
  int sampled = ctx->debug || ctx->sampled == PX_SAMPLE_YES;
  int decided = ctx->debug || ctx->sampled != PX_SAMPLE_DEFER;
  int has_server = !all_zero(ctx->span_id, 8);
  /* A 64-bit B3 trace id is the low half, written as 16 digits. */
  const uint8_t *b3tid = ctx->trace_id_64 ? ctx->trace_id + 8 : ctx->trace_id;
  size_t b3n = ctx->trace_id_64 ? 8 : 16;
  if (propagation & PX_PROP_W3C) {
    /* Always version 00, whatever came in: it is the version we know how to write. */
    char *p = px_buf_reserve(out, 70);
    memcpy(p, "traceparent: 00-", 16);
    px_trace_hex(ctx->trace_id, 16, p + 16);
    p[48] = '-';
    px_trace_hex(client_span, 8, p + 49);
    memcpy(p + 65, sampled ? "-01\r\n" : "-00\r\n", 5);
    out->len += 70;
    if (ctx->tracestate_len) {
      px_buf_append(out, "tracestate: ", 12);
      px_buf_append(out, ctx->tracestate, ctx->tracestate_len);
      px_buf_append(out, "\r\n", 2);
    }
  }
  if (propagation & PX_PROP_B3) {
    HEX_LINE(out, "x-b3-traceid: ", b3tid, b3n);
    HEX_LINE(out, "x-b3-spanid: ", client_span, 8);
    if (has_server) HEX_LINE(out, "x-b3-parentspanid: ", ctx->span_id, 8);
    /* Debug implies sampled, so B3 says not to send x-b3-sampled with it. */
    if (ctx->debug)
      px_buf_append(out, "x-b3-flags: 1\r\n", 15);
    else if (decided)
      px_buf_append(out, sampled ? "x-b3-sampled: 1\r\n" : "x-b3-sampled: 0\r\n", 17);
  }
  if (propagation & PX_PROP_B3_SINGLE) {
    char *p = px_buf_reserve(out, 4 + 32 + 1 + 16 + 2 + 17 + 2);
    size_t k = 4;
    memcpy(p, "b3: ", 4);
    px_trace_hex(b3tid, b3n, p + k);
    k += 2 * b3n;
    p[k++] = '-';
    px_trace_hex(client_span, 8, p + k);
    k += 16;
    /* The parent field comes after the sampling one, so it needs a decision before it. */
    if (decided) {
      p[k++] = '-';
      p[k++] = ctx->debug ? 'd' : sampled ? '1' : '0';
      if (has_server) {
        p[k++] = '-';
        px_trace_hex(ctx->span_id, 8, p + k);
        k += 16;
      }
    }
    p[k++] = '\r';
    p[k++] = '\n';
    out->len += k;
  }
}
