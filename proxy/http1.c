#include "http1.h"

#include <llhttp.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_head_find(const px_head_t *m, const char *name) {
  px_str_t want = {name, strlen(name)};
  for (size_t i = 0; i < m->nh; i++) /* the length first: most names differ in it */
    if (m->h[i].name_len == want.n && px_str_ieq(px_head_name(m, i), want)) return (int)i;
  return -1;
}

int px_hcollect_field(px_hcollect_t *hc, uint32_t off, uint32_t len) {
  if (hc->last == 1) { /* the name continues in this read */
    hc->h[hc->n - 1].name_len += len;
    return 0;
  }
  if (hc->n == PX_HTTP1_MAX_HEADERS) {
    hc->too_many = 1;
    return -1;
  }
  if (hc->n == hc->cap) {
    hc->cap = hc->cap ? hc->cap * 2 : 16;
    hc->h = px_realloc(hc->h, hc->cap * sizeof(*hc->h));
  }
  hc->h[hc->n++] = (px_hspan_t){off, len, off, 0};
  hc->last = 1;
  return 0;
}

int px_hcollect_value(px_hcollect_t *hc, uint32_t off, uint32_t len) {
  if (hc->last != 1 && hc->last != 2) {
    /* A value with no name before it: refused, and never written over the
     * previous header's value. */
    hc->empty_name = 1;
    return -1;
  }
  px_hspan_t *h = &hc->h[hc->n - 1];
  if (hc->last == 2) {
    if (off != h->value_off + h->value_len) { /* not a continuation: a folded line */
      hc->obs_fold = 1;
      return -1;
    }
    h->value_len += len;
    return 0;
  }
  h->value_off = off;
  h->value_len = len;
  hc->last = 2;
  return 0;
}

int px_hcollect_value_done(px_hcollect_t *hc, const char *base) {
  /* llhttp reports ": v" as a field of length 0 (or none at all); a line with an
   * empty name is not forwarded in either direction. */
  if (hc->n == 0 || hc->h[hc->n - 1].name_len == 0) {
    hc->empty_name = 1;
    return -1;
  }
  px_hspan_t *h = &hc->h[hc->n - 1];
  /* A field value has no whitespace at its end (RFC 9110 §5.5: it is OWS around the
   * value); llhttp keeps what precedes CRLF. */
  while (h->value_len > 0 &&
         (base[h->value_off + h->value_len - 1] == ' ' || base[h->value_off + h->value_len - 1] == '\t'))
    h->value_len--;
  if (PX_UNLIKELY(h->name_len == 17) &&
      px_str_ieq_cstr((px_str_t){base + h->name_off, 17}, "transfer-encoding"))
    hc->te_lines++;
  hc->last = 3;
  return 0;
}

void px_hcollect_url(px_hcollect_t *hc, uint32_t off, uint32_t len) {
  if (!hc->url_started) {
    hc->url_off = off;
    hc->url_len = 0;
    hc->url_started = 1;
  }
  hc->url_len += len;
}

const char *px_hcollect_error(const px_hcollect_t *hc) {
  if (hc->too_many) return "the request has too many header lines";
  if (hc->obs_fold) return "obs-folded header lines are not accepted";
  if (hc->empty_name) return "a header line has an empty name";
  return NULL;
}

void px_hcollect_reset(px_hcollect_t *hc) {
  hc->n = 0;
  hc->last = 0;
  hc->obs_fold = hc->too_many = hc->empty_name = 0;
  hc->te_lines = 0;
  hc->url_started = 0;
}

void px_hcollect_free(px_hcollect_t *hc) {
  free(hc->h);
  hc->h = NULL;
  hc->n = hc->cap = 0;
}

void px_headscan_reset(px_headscan_t *s, size_t start) {
  s->pos = s->line_start = start;
  s->nlines = 0;
  s->done = 0;
  s->head_end = 0;
  s->err = NULL;
}

/* The first of LF, CR or NUL in b[i, len), or len: sixteen bytes a step where SSE2
 * is there (every x86-64), never reading past len. */
static inline size_t next_special(const char *b, size_t i, size_t len) {
#ifdef __SSE2__
  const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r'), nul = _mm_setzero_si128();
  for (; i + 16 <= len; i += 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + i));
    __m128i m =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)), _mm_cmpeq_epi8(v, nul));
    unsigned mask = (unsigned)_mm_movemask_epi8(m);
    if (mask) return i + (size_t)__builtin_ctz(mask);
  }
#endif
  for (; i < len; i++)
    if (b[i] == '\n' || b[i] == '\r' || b[i] == '\0') return i;
  return len;
}

/* One pass, stopping only at the bytes that matter: a line ends at CR LF; a CR before
 * anything but LF, an LF without its CR and a NUL are refused. */
int px_headscan(px_headscan_t *s, const char *b, size_t len) {
  if (s->done) return 1;
  size_t i = s->pos;
  while (i < len) {
    if (i == s->line_start && s->nlines > 0 && (b[i] == ' ' || b[i] == '\t')) {
      s->err = "obs-folded header lines are not accepted";
      return -1;
    }
    size_t k = next_special(b, i, len);
    if (k == len) break;
    if (b[k] == '\0') {
      s->err = "NUL byte in the request head";
      return -1;
    }
    if (b[k] == '\n') {
      s->err = "bare LF where CRLF is due";
      return -1;
    }
    /* A CR must be followed by LF: llhttp ends a head at CR and any byte, so a lone CR
     * would make this check and the parser disagree on where a request ends (a
     * smuggling pattern). A CR that is the last byte so far is looked at again with
     * the next bytes. */
    if (k + 1 == len) {
      s->pos = k;
      return 0;
    }
    if (b[k + 1] != '\n') {
      s->err = "CR not followed by LF in the request head";
      return -1;
    }
    i = k + 2;
    if (k == s->line_start) { /* an empty line */
      if (s->nlines == 0) {   /* before the request line: tolerated */
        s->line_start = i;
        continue;
      }
      s->done = 1;
      s->head_end = i;
      s->pos = i;
      return 1;
    }
    s->nlines++;
    s->line_start = i;
  }
  s->pos = len;
  return 0;
}

/* Header names the proxy treats specially, recognised with one switch on the
 * length and one case-insensitive compare, since this runs for every header of
 * every message in both directions. */
typedef enum {
  H_OTHER,
  H_HOP, /* hop-by-hop: never forwarded */
  H_CONNECTION,
  H_HOST,
  H_EXPECT,
  H_REQUEST_ID,
  H_CONTENT_LENGTH,
  H_XFF,
  H_XFP,
  H_ATTEMPT,
  H_OWN_RESPONSE, /* x-outrigger-attempts / x-outrigger-upstream: set by this hop */
  /* trace context (trace.h): taken out and written anew when the sidecar traces */
  H_TRACEPARENT,
  H_TRACESTATE,
  H_B3,
  H_B3_TRACEID,
  H_B3_SPANID,
  H_B3_PARENT,
  H_B3_SAMPLED,
  H_B3_FLAGS,
} px_hkind_t;

#define L1(i) (unsigned char)((i) >= 'A' && (i) <= 'Z' ? (i) + 32 : (i))
#define L4(i) L1(i), L1(i + 1), L1(i + 2), L1(i + 3)
#define L16(i) L4(i), L4(i + 4), L4(i + 8), L4(i + 12)
static const unsigned char lower_tab[256] = {
    L16(0),   L16(16),  L16(32),  L16(48),  L16(64),  L16(80),  L16(96),  L16(112),
    L16(128), L16(144), L16(160), L16(176), L16(192), L16(208), L16(224), L16(240),
};
#undef L1
#undef L4
#undef L16

/* `lit` is lowercase and exactly name.n bytes long. */
static inline int name_is(px_str_t name, const char *lit) {
  for (size_t i = 0; i < name.n; i++)
    if (lower_tab[(unsigned char)name.p[i]] != (unsigned char)lit[i]) return 0;
  return 1;
}

static px_hkind_t classify(px_str_t n) {
  switch (n.n) {
  case 2:
    if (name_is(n, "te")) return H_HOP;
    return name_is(n, "b3") ? H_B3 : H_OTHER;
  case 4: return name_is(n, "host") ? H_HOST : H_OTHER;
  case 6: return name_is(n, "expect") ? H_EXPECT : H_OTHER;
  case 7: return name_is(n, "trailer") || name_is(n, "upgrade") ? H_HOP : H_OTHER;
  case 10:
    if (name_is(n, "connection")) return H_CONNECTION;
    if (name_is(n, "tracestate")) return H_TRACESTATE;
    if (name_is(n, "x-b3-flags")) return H_B3_FLAGS;
    return name_is(n, "keep-alive") ? H_HOP : H_OTHER;
  case 11:
    if (name_is(n, "traceparent")) return H_TRACEPARENT;
    return name_is(n, "x-b3-spanid") ? H_B3_SPANID : H_OTHER;
  case 12:
    if (name_is(n, "x-request-id")) return H_REQUEST_ID;
    if (name_is(n, "x-b3-traceid")) return H_B3_TRACEID;
    return name_is(n, "x-b3-sampled") ? H_B3_SAMPLED : H_OTHER;
  case 14: return name_is(n, "content-length") ? H_CONTENT_LENGTH : H_OTHER;
  case 15: return name_is(n, "x-forwarded-for") ? H_XFF : H_OTHER;
  case 16: return name_is(n, "proxy-connection") ? H_HOP : H_OTHER;
  case 17:
    if (name_is(n, "transfer-encoding")) return H_HOP;
    if (name_is(n, "x-b3-parentspanid")) return H_B3_PARENT;
    return name_is(n, "x-forwarded-proto") ? H_XFP : H_OTHER;
  case 19: return name_is(n, "x-outrigger-attempt") ? H_ATTEMPT : H_OTHER;
  case 20:
    return name_is(n, "x-outrigger-attempts") || name_is(n, "x-outrigger-upstream") ? H_OWN_RESPONSE
                                                                                    : H_OTHER;
  default: return H_OTHER;
  }
}

const char *px_http1_refuse(const px_head_t *h, int http_major, int upgrade, int host_idx) {
  if (http_major != 1 || h->http_minor > 1) return "only HTTP/1.0 and HTTP/1.1 requests are served";
  if (upgrade || h->method == HTTP_CONNECT) return "CONNECT and protocol upgrades are not supported";
  px_str_t url = {h->base + h->url_off, h->url_len};
  /* llhttp skips extra spaces after the method and after the target; the method is a
   * token and the target holds no space, so the byte on each side tells. RFC 9112 §3:
   * a request line is not to be autocorrected, it may be crafted to slip past filters. */
  if (url.p[-2] == ' ' || url.p[url.n + 1] == ' ')
    return "the request line has more than one space between its parts";
  if (memchr(url.p, '#', url.n)) return "a request target may not hold a fragment ('#')";
  if (url.n == 0 || url.p[0] != '/') { /* not origin-form: absolute-form or OPTIONS * (RFC 9112 §3.2) */
    px_str_t authority, origin;
    if (!(h->method == HTTP_OPTIONS && url.n == 1 && url.p[0] == '*') &&
        px_http1_absolute_target(url, &authority, &origin) == 0)
      return "the request target is in none of origin, absolute (http or https) or asterisk form";
  }
  if (host_idx < 0) return h->http_minor >= 1 ? "HTTP/1.1 requests need a Host header" : NULL;
  for (size_t i = (size_t)host_idx + 1; i < h->nh; i++)
    if (px_str_ieq(px_head_name(h, i), PX_STR("host"))) return "a request may have only one Host header";
  if (!px_http1_host_valid(px_head_value(h, (size_t)host_idx)))
    return "the Host header is not a valid host[:port]";
  return NULL;
}

int px_http1_request_body(const px_head_t *h, unsigned flags, uint64_t length, unsigned te_lines,
                          const char **why) {
  if (flags & F_TRANSFER_ENCODING) {
    if (h->http_minor == 0) { /* RFC 9112 §6.1: faulty framing, whatever else it says */
      *why = "Transfer-Encoding is not allowed in an HTTP/1.0 request";
      return -400;
    }
    if (!(flags & F_CHUNKED)) goto not_chunked;
    if (!px_http1_te_chunked_only(h)) {
      *why = "transfer codings other than chunked are not supported";
      return -501;
    }
    return PX_BODY_CHUNKED;
  }
  if (te_lines) goto not_chunked; /* one with an empty value, which llhttp does not flag */
  if (flags & F_CONTENT_LENGTH) {
    if (length > INT64_MAX) { /* a signed parser further on would read it as negative */
      *why = "a Content-Length must fit in 63 bits";
      return -400;
    }
    return length ? PX_BODY_LENGTH : PX_BODY_NONE;
  }
  return PX_BODY_NONE;
not_chunked: /* RFC 9112 §6.3: the length of the body cannot be known */
  *why = "a request with Transfer-Encoding must end it with chunked";
  return -400;
}

/* RFC 9110 §7.2 / RFC 3986 §3.2.2: Host is uri-host [":" port]. The check is on
 * characters and shape only (no DNS, no IP range checks): enough that the router and
 * the upstream cannot read one Host two ways. An empty value is allowed (a target
 * without authority). */
static const unsigned char host_chars[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1, ['-'] = 1,  ['.'] = 1, ['_'] = 1, ['~'] = 1,
    ['!'] = 1,         ['$'] = 1,         ['&'] = 1,         ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
    ['+'] = 1,         [','] = 1,         [';'] = 1,         ['='] = 1,  ['%'] = 1};
static int host_char(unsigned char ch) { return host_chars[ch]; }

static int hex_char(unsigned char ch) {
  return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

/* The inside of "[...]": an IPv6 address by its alphabet (hex digits, ':' and '.'), with
 * a zone or not, or IPvFuture, "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ). */
static int ip_literal_valid(const char *p, size_t n) {
  size_t i = 0;
  if (n == 0) return 0;
  if (p[0] == 'v' || p[0] == 'V') {
    for (i = 1; i < n && hex_char((unsigned char)p[i]); i++) {
    }
    if (i == 1 || i == n || p[i] != '.' || i + 1 == n) return 0;
    for (i++; i < n; i++)
      if (!(host_char((unsigned char)p[i]) && p[i] != '%') && p[i] != ':') return 0;
    return 1;
  }
  while (i < n && (hex_char((unsigned char)p[i]) || p[i] == ':' || p[i] == '.')) i++;
  if (i == 0) return 0;
  if (i == n) return 1;
  /* A zone (RFC 6874): "%25", then unreserved characters or pct-encoded bytes. */
  if (n - i < 4 || memcmp(p + i, "%25", 3) != 0) return 0;
  for (i += 3; i < n; i++) {
    if (p[i] == '%') {
      if (!(i + 2 < n && hex_char((unsigned char)p[i + 1]) && hex_char((unsigned char)p[i + 2]))) return 0;
      i += 2;
    } else if (!host_char((unsigned char)p[i]) || strchr("!$&'()*+,;=%", p[i])) {
      return 0;
    }
  }
  return 1;
}

int px_http1_host_valid(px_str_t v) {
  size_t i = 0;
  if (v.n > 0 && v.p[0] == '[') { /* IP-literal */
    size_t e = 1;
    while (e < v.n && v.p[e] != ']') e++;
    if (e == v.n || !ip_literal_valid(v.p + 1, e - 1)) return 0;
    i = e + 1;
  } else { /* reg-name: its characters, and "%" only with two hex digits */
    while (i < v.n && host_char((unsigned char)v.p[i])) i++;
    for (const char *pct = memchr(v.p, '%', i); pct; pct = memchr(pct + 1, '%', (size_t)(v.p + i - pct - 1)))
      if (pct + 2 >= v.p + i || !hex_char((unsigned char)pct[1]) || !hex_char((unsigned char)pct[2]))
        return 0;
  }
  if (i == v.n) return 1;
  /* A port needs a host before it: an http URI with an empty host is invalid (RFC 9110
   * §4.2.1). */
  if (v.p[i] != ':' || i == 0) return 0;
  for (i++; i < v.n; i++)
    if (v.p[i] < '0' || v.p[i] > '9') return 0;
  return 1;
}

int px_http1_absolute_target(px_str_t target, px_str_t *authority, px_str_t *origin) {
  size_t skip;
  if (target.n < 7 || (target.p[0] != 'h' && target.p[0] != 'H')) /* origin-form: the usual case */
    return 0;
  if (px_str_ieq((px_str_t){target.p, 7}, PX_STR("http://")))
    skip = 7;
  else if (target.n >= 8 && px_str_ieq((px_str_t){target.p, 8}, PX_STR("https://")))
    skip = 8;
  else
    return 0;
  size_t e = skip;
  while (e < target.n && target.p[e] != '/' && target.p[e] != '?') e++;
  *authority = (px_str_t){target.p + skip, e - skip};
  *origin = (px_str_t){target.p + e, target.n - e};
  return authority->n > 0 && px_http1_host_valid(*authority) ? 1 : -1;
}

int px_http1_te_chunked_only(const px_head_t *h) {
  int codings = 0, chunked = 0;
  for (size_t i = 0; i < h->nh; i++) {
    if (!px_str_ieq_cstr(px_head_name(h, i), "transfer-encoding")) continue;
    px_str_t v = px_head_value(h, i);
    size_t s = 0;
    while (s < v.n) { /* a list: empty elements and whitespace around them are allowed */
      while (s < v.n && (v.p[s] == ' ' || v.p[s] == '\t' || v.p[s] == ',')) s++;
      size_t e = s;
      while (e < v.n && v.p[e] != ',') e++;
      size_t t = e;
      while (t > s && (v.p[t - 1] == ' ' || v.p[t - 1] == '\t')) t--;
      if (t > s) {
        codings++;
        if (px_str_ieq_cstr((px_str_t){v.p + s, t - s}, "chunked")) chunked++;
      }
      s = e;
    }
  }
  return codings == chunked && chunked <= 1;
}

int px_http1_is_hop_by_hop(px_str_t name) {
  px_hkind_t k = classify(name);
  return k == H_HOP || k == H_CONNECTION;
}

/* Header names listed in Connection headers ("Connection: close, X-Foo"): those
 * headers are hop-by-hop too. At most 16 are remembered; more is not a real case. */
typedef struct {
  px_str_t tok[16];
  size_t n;
} px_conn_tokens_t;

/* A comma-separated list (RFC 9110 §5.6.1): elements trimmed of OWS; one with
 * whitespace inside is no token and names nothing (it used to be split at the space,
 * so `close," X-Fz` named X-Fz where a strict reading names no such field). */
static void conn_tokens_add(px_conn_tokens_t *t, px_str_t v) {
  size_t s = 0;
  while (s < v.n && t->n < PX_ARRAY_SIZE(t->tok)) {
    size_t e = s;
    while (e < v.n && v.p[e] != ',') e++;
    size_t a = s, b = e;
    while (a < b && (v.p[a] == ' ' || v.p[a] == '\t')) a++;
    while (b > a && (v.p[b - 1] == ' ' || v.p[b - 1] == '\t')) b--;
    if (b > a && !memchr(v.p + a, ' ', b - a) && !memchr(v.p + a, '\t', b - a))
      t->tok[t->n++] = (px_str_t){v.p + a, b - a};
    s = e + 1;
  }
}

/* Whether a Connection header of `m` names `name`. */
static int connection_names(const px_head_t *m, px_str_t name) {
  px_conn_tokens_t ct = {.n = 0};
  for (size_t i = 0; i < m->nh; i++)
    if (classify(px_head_name(m, i)) == H_CONNECTION) conn_tokens_add(&ct, px_head_value(m, i));
  for (size_t t = 0; t < ct.n; t++)
    if (px_str_ieq(ct.tok[t], name)) return 1;
  return 0;
}

int px_http1_resend_safe(const px_head_t *h, int keyed) {
  switch (h->method) {
  case HTTP_GET:
  case HTTP_HEAD:
  case HTTP_OPTIONS:
  case HTTP_TRACE:
  case HTTP_PUT:
  case HTTP_DELETE: return 1;
  case HTTP_POST:
  case HTTP_PATCH: {
    int k = keyed ? px_head_find(h, "idempotency-key") : -1;
    /* A key the Connection header names is hop-by-hop: it does not reach the upstream,
     * which then cannot tell a second run from the first. */
    return k >= 0 && px_head_value(h, (size_t)k).n > 0 && !connection_names(h, PX_STR("idempotency-key"));
  }
  default: return 0;
  }
}

/* Classifies every header of a head into kinds[] (H_HOP also for the headers a
 * Connection header names). */
static void classify_all(const px_head_t *m, unsigned char *kinds) {
  px_conn_tokens_t ct = {.n = 0};
  for (size_t i = 0; i < m->nh; i++) {
    kinds[i] = (unsigned char)classify(px_head_name(m, i));
    if (kinds[i] == H_CONNECTION) conn_tokens_add(&ct, px_head_value(m, i));
  }
  for (size_t t = 0; t < ct.n; t++)
    for (size_t i = 0; i < m->nh; i++)
      if (kinds[i] == H_OTHER && px_str_ieq(ct.tok[t], px_head_name(m, i))) kinds[i] = H_HOP;
}

static void append_header(px_buf_t *out, px_str_t name, px_str_t value) {
  char *p = px_buf_reserve(out, name.n + value.n + 4);
  memcpy(p, name.p, name.n);
  p += name.n;
  *p++ = ':';
  *p++ = ' ';
  memcpy(p, value.p, value.n);
  p += value.n;
  *p++ = '\r';
  *p++ = '\n';
  out->len += name.n + value.n + 4;
}

void px_uuid4(char id[37]) {
  static const char hex[] = "0123456789abcdef";
  /* Where each byte's two digits go in 8-4-4-4-12: no branch per byte. */
  static const unsigned char at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  uint8_t b[16];
  uint64_t a = px_rand64(), c = px_rand64();
  memcpy(b, &a, 8);
  memcpy(b + 8, &c, 8);
  b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
  for (int i = 0; i < 16; i++) {
    id[at[i]] = hex[b[i] >> 4];
    id[at[i] + 1] = hex[b[i] & 15];
  }
  id[8] = id[13] = id[18] = id[23] = '-';
  id[36] = '\0';
}

/* A client's x-request-id is kept when it is short visible ASCII, so it cannot be
 * used to smuggle anything into logs or upstream heads. */
static int valid_request_id(px_str_t v) {
  if (v.n == 0 || v.n > 200) return 0;
  for (size_t i = 0; i < v.n; i++)
    if ((unsigned char)v.p[i] <= 0x20 || (unsigned char)v.p[i] >= 0x7f) return 0;
  return 1;
}

/* A trace header, for px_trace_extract. A repeated traceparent is counted (two make the
 * context invalid); tracestate fields are one list; of the B3 headers the first counts. */
static void trace_in(px_trace_in_t *in, px_hkind_t k, px_str_t v) {
  px_str_t *slot = NULL;
  switch (k) {
  case H_TRACEPARENT:
    if (in->n_traceparent < PX_ARRAY_SIZE(in->traceparent)) in->traceparent[in->n_traceparent] = v;
    in->n_traceparent++;
    return;
  case H_TRACESTATE:
    if (in->n_tracestate < PX_ARRAY_SIZE(in->tracestate)) in->tracestate[in->n_tracestate] = v;
    in->n_tracestate++;
    return;
  case H_B3: slot = &in->b3; break;
  case H_B3_TRACEID: slot = &in->b3_traceid; break;
  case H_B3_SPANID: slot = &in->b3_spanid; break;
  case H_B3_PARENT: slot = &in->b3_parentspanid; break;
  case H_B3_SAMPLED: slot = &in->b3_sampled; break;
  case H_B3_FLAGS: slot = &in->b3_flags; break;
  default: return;
  }
  if (slot->p == NULL) *slot = v;
}

void px_http1_trace_in(const px_head_t *req, px_trace_in_t *in) {
  memset(in, 0, sizeof(*in));
  for (size_t i = 0; i < req->nh; i++) {
    px_hkind_t k = classify(px_head_name(req, i));
    if (k >= H_TRACEPARENT) trace_in(in, k, px_head_value(req, i));
  }
}

void px_http1_build_request(const px_head_t *req, const px_req_rewrite_t *rw, px_buf_t *out,
                            char rid_out[201]) {
  unsigned char kinds[PX_HTTP1_MAX_HEADERS];
  classify_all(req, kinds);

  const char *mname = llhttp_method_name((llhttp_method_t)req->method);
  px_buf_append_cstr(out, mname);
  px_buf_append(out, " ", 1);
  if (rw->origin.p == NULL) {
    px_buf_append(out, req->base + req->url_off, req->url_len);
  } else { /* absolute-form in, origin-form out */
    if (rw->origin.n == 0 || rw->origin.p[0] != '/') px_buf_append(out, "/", 1);
    px_buf_append_str(out, rw->origin);
  }
  px_buf_append(out, " HTTP/1.1\r\n", 11);

  int seen_host = 0;
  int xff_first = -1;
  px_str_t rid = {NULL, 0};
  for (size_t i = 0; i < req->nh; i++) {
    px_str_t value = px_head_value(req, i);
    switch ((px_hkind_t)kinds[i]) {
    case H_HOP:
    case H_CONNECTION:
    case H_EXPECT: /* Expect: 100-continue is answered by the sidecar itself */
    case H_XFP:
    case H_ATTEMPT: continue;
    case H_HOST:
      if (rw->authority.p) continue; /* the target's authority wins (RFC 9112 §3.2.2) */
      seen_host = 1;
      break;
    case H_REQUEST_ID:
      if (rid.p == NULL && valid_request_id(value)) rid = value;
      continue;
    case H_CONTENT_LENGTH:
      if (rw->chunked_body) continue;
      break;
    case H_XFF:
      if (xff_first < 0) xff_first = (int)i;
      continue;
    case H_TRACEPARENT ... H_B3_FLAGS:
      if (!rw->drop_trace) break; /* not tracing: the context passes as it came */
      continue;
    default: break;
    }
    append_header(out, px_head_name(req, i), value);
  }
  if (rw->authority.p)
    append_header(out, PX_STR("host"), rw->authority);
  else if (!seen_host && rw->host_fallback)
    append_header(out, PX_STR("host"), (px_str_t){rw->host_fallback, strlen(rw->host_fallback)});

  px_buf_append_cstr(out, "x-forwarded-for: ");
  if (xff_first >= 0) {
    /* Several x-forwarded-for headers are one list (RFC 9110 §5.3). */
    for (size_t i = (size_t)xff_first; i < req->nh; i++) {
      if (kinds[i] != H_XFF) continue;
      px_buf_append_str(out, px_head_value(req, i));
      px_buf_append(out, ", ", 2);
    }
  }
  px_buf_append_cstr(out, rw->client_ip);
  px_buf_append_cstr(out, "\r\nx-forwarded-proto: ");
  px_buf_append_cstr(out, rw->proto);
  px_buf_append_cstr(out, "\r\nx-request-id: ");
  if (rw->request_id) {
    snprintf(rid_out, 201, "%s", rw->request_id);
  } else if (rid.p) {
    memcpy(rid_out, rid.p, rid.n);
    rid_out[rid.n] = '\0';
  } else {
    px_uuid4(rid_out);
  }
  px_buf_append_cstr(out, rid_out);
  px_buf_append(out, "\r\n", 2);
  if (rw->chunked_body) px_buf_append_cstr(out, "transfer-encoding: chunked\r\n");
}

void px_http1_finish_request(px_buf_t *out, size_t base_len, int attempt) {
  out->len = base_len;
  px_buf_append_cstr(out, "x-outrigger-attempt: ");
  px_buf_append_u64(out, (unsigned long long)attempt);
  px_buf_append(out, "\r\n\r\n", 4);
}

const char *px_http1_response_refuse(const px_head_t *h, int http_major, unsigned flags, uint64_t length) {
  if (http_major != 1 || h->http_minor > 1) return "the upstream's answer is not HTTP/1.x";
  if (h->status < 100 || h->status > 599) return "the upstream's answer has a status outside 100..599";
  if (h->status == 101) return "the upstream switched protocols, which nothing asked for";
  if ((flags & F_CONTENT_LENGTH) && length > INT64_MAX)
    return "the upstream's Content-Length does not fit in 63 bits";
  if ((flags & F_TRANSFER_ENCODING) && !px_http1_te_chunked_only(h))
    return "the upstream used a transfer coding other than chunked";
  return NULL;
}

/* Whether a response header of this kind is kept for a replay (px_resp_rewrite_t.keep):
 * not framing, hop-by-hop or this hop's own. */
static int kept_end_to_end(px_hkind_t k) {
  return k != H_HOP && k != H_CONNECTION && k != H_OWN_RESPONSE && k != H_CONTENT_LENGTH;
}

void px_http1_end_to_end_headers(const px_head_t *resp, px_buf_t *out) {
  unsigned char kinds[PX_HTTP1_MAX_HEADERS];
  classify_all(resp, kinds);
  for (size_t i = 0; i < resp->nh; i++)
    if (kept_end_to_end((px_hkind_t)kinds[i]))
      append_header(out, px_head_name(resp, i), px_head_value(resp, i));
}

px_body_mode_t px_http1_build_response(const px_head_t *resp, const px_resp_rewrite_t *rw, px_buf_t *out) {
  unsigned char kinds[PX_HTTP1_MAX_HEADERS];
  classify_all(resp, kinds);

  px_body_mode_t mode;
  int close = rw->close;
  if (rw->request_is_head || resp->status == 204 || resp->status == 304 ||
      (resp->status >= 100 && resp->status < 200)) {
    mode = PX_BODY_NONE;
  } else if (resp->content_length >= 0 && !resp->chunked) {
    mode = PX_BODY_LENGTH;
  } else if (rw->client_minor >= 1) {
    mode = PX_BODY_CHUNKED;
  } else {
    mode = PX_BODY_CLOSE;
    close = 1;
  }

  px_buf_append(out, "HTTP/1.1 ", 9);
  px_buf_append_u64(out, (unsigned long long)resp->status);
  px_buf_append(out, " ", 1);
  px_buf_append_cstr(out, px_http_reason(resp->status));
  px_buf_append(out, "\r\n", 2);
  for (size_t i = 0; i < resp->nh; i++) {
    switch ((px_hkind_t)kinds[i]) {
    case H_HOP:
    case H_CONNECTION:
    case H_OWN_RESPONSE: /* set below; an inner hop's values are not passed through */ continue;
    case H_CONTENT_LENGTH:
      /* Kept where it still describes the body: sized, or HEAD and 304 (the size of
       * what a GET would get); never on a 204 (RFC 9110 §8.6). */
      if (mode != PX_BODY_LENGTH && mode != PX_BODY_NONE) continue;
      if (resp->status == 204) continue;
      break;
    default: break;
    }
    size_t at = out->len;
    append_header(out, px_head_name(resp, i), px_head_value(resp, i));
    if (rw->keep && kept_end_to_end((px_hkind_t)kinds[i]))
      px_buf_append(rw->keep, out->data + at, out->len - at);
  }
  if (mode == PX_BODY_CHUNKED) px_buf_append_cstr(out, "transfer-encoding: chunked\r\n");
  px_buf_append_cstr(out, "x-outrigger-attempts: ");
  px_buf_append_u64(out, (unsigned long long)rw->attempts);
  px_buf_append_cstr(out, "\r\nx-outrigger-upstream: ");
  px_buf_append_cstr(out, rw->cluster);
  px_buf_append(out, "\r\n", 2);
  if (close)
    px_buf_append_cstr(out, "connection: close\r\n");
  else if (rw->client_minor == 0)
    px_buf_append_cstr(out, "connection: keep-alive\r\n");
  px_buf_append(out, "\r\n", 2);
  return mode;
}

const char *px_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "";
  }
}

void px_http1_problem(px_buf_t *out, int status, const char *kind, const char *detail, int close,
                      const char *extra_headers) {
  const char *title = px_http_reason(status);
  px_buf_t body = {0};
  px_buf_append_cstr(&body, "{\"type\":\"urn:outrigger:error:");
  px_buf_json_escape(&body, kind, strlen(kind));
  px_buf_append_cstr(&body, "\",\"title\":");
  px_buf_json_str(&body, title, strlen(title));
  px_buf_printf(&body, ",\"status\":%d,\"detail\":", status);
  px_buf_json_str(&body, detail, strlen(detail));
  px_buf_append(&body, "}\n", 2);

  px_buf_printf(out,
                "HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
                "x-outrigger-error: %s\r\ncontent-length: %zu\r\n%s%s\r\n",
                status, title, kind, body.len, close ? "connection: close\r\n" : "",
                extra_headers ? extra_headers : "");
  px_buf_append(out, body.data, body.len);
  px_buf_free(&body);
}
