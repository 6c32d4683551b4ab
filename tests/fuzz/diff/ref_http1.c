/* The differential fuzzer's oracle (ref_http1.h): HTTP/1.1 read straight from RFC 9112 and
 * RFC 9110, on purpose without looking at the sidecar's codec or at llhttp.
 *
 * The reader is a plain recursive descent over the whole buffer with one cursor. Every
 * rule has the same shape, which is what gives the prefix property the fuzzer relies on:
 * running out of bytes anywhere means REF_NEED_MORE (the message may still go on), and a
 * byte that no valid message can have at that place means REF_INVALID. The checks that need
 * the whole head (Host, framing) run only once its empty line has been read, and a body is
 * only looked at once all of its bytes are present. Speed is not a goal: each call reads
 * everything again from the first byte. */
#include "ref_http1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *buf;
  size_t len;
  size_t pos; /* the cursor: everything before it has been read and found valid */
  ref_msg_t *m;
} ref_rd_t;

/* Every reader returns REF_COMPLETE when its piece was read whole; anything else ends the
 * parse with that result. */
#define REF_TRY(expr)                                                                                        \
  do {                                                                                                       \
    ref_result_t ref_r_ = (expr);                                                                            \
    if (ref_r_ != REF_COMPLETE) return ref_r_;                                                               \
  } while (0)

/* RFC 9112 §6.2 and §7.1 leave the bound of lengths to the recipient; the oracle takes the
 * largest value a signed 64-bit length holds, so only 2^63 and above are refused. */
#define REF_MAX_LEN ((uint64_t)INT64_MAX)

/* ---- character classes (RFC 5234 App. B, RFC 9110 §5.5 and §5.6.2, RFC 3986 §2) ---- */

static int ref_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static int ref_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static int ref_hexdig(unsigned char c) { return ref_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); }
static int ref_hexval(unsigned char c) { return ref_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }
static int ref_ows(unsigned char c) { return c == ' ' || c == '\t'; }
static int ref_in(unsigned char c, const char *set) { return c != 0 && strchr(set, c) != NULL; }
static int ref_tchar(unsigned char c) { return ref_digit(c) || ref_alpha(c) || ref_in(c, "!#$%&'*+-.^_`|~"); }
/* VCHAR / obs-text: every byte that is neither a control nor SP. */
static int ref_vchar_obs(unsigned char c) { return (c >= 0x21 && c <= 0x7E) || c >= 0x80; }
static int ref_unreserved(unsigned char c) { return ref_alpha(c) || ref_digit(c) || ref_in(c, "-._~"); }
static int ref_subdelim(unsigned char c) { return ref_in(c, "!$&'()*+,;="); }
static unsigned char ref_lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
}

/* The `n` bytes at `a` equal the NUL-terminated `b`, ASCII case-insensitively. */
static int ref_ieq(const char *a, size_t n, const char *b) {
  if (strlen(b) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (ref_lower((unsigned char)a[i]) != ref_lower((unsigned char)b[i])) return 0;
  return 1;
}

/* The same, case-sensitively: methods are case-sensitive (RFC 9110 §9.1). */
static int ref_eq(const char *a, size_t n, const char *b) { return strlen(b) == n && memcmp(a, b, n) == 0; }

/* ---- primitives: each reads at the cursor and moves it past what it read ---- */

static ref_result_t ref_fail(ref_rd_t *rd, size_t off, const char *why) {
  rd->m->error = why;
  rd->m->error_off = off;
  return REF_INVALID;
}

static unsigned char ref_at(const ref_rd_t *rd) { return (unsigned char)rd->buf[rd->pos]; }

/* One expected byte. */
static ref_result_t ref_expect(ref_rd_t *rd, char c, const char *why) {
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (rd->buf[rd->pos] != c) return ref_fail(rd, rd->pos, why);
  rd->pos++;
  return REF_COMPLETE;
}

/* CRLF, the only line end the oracle accepts: RFC 9112 §2.2 lets a recipient take a bare LF
 * as a line end, but the sidecar's contract (SPEC §4) refuses it, and a bare CR must be
 * refused or replaced (§2.2), which a proxy must not do silently. `why` names the byte found
 * where the line should have ended. */
static ref_result_t ref_crlf(ref_rd_t *rd, const char *why) {
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (rd->buf[rd->pos] == '\n') return ref_fail(rd, rd->pos, "bare LF");
  if (rd->buf[rd->pos] != '\r') return ref_fail(rd, rd->pos, why);
  if (rd->pos + 1 >= rd->len) return REF_NEED_MORE;
  if (rd->buf[rd->pos + 1] != '\n') return ref_fail(rd, rd->pos, "CR not followed by LF");
  rd->pos += 2;
  return REF_COMPLETE;
}

/* *tchar, its length in *n. At the end of the buffer the token may still go on, so the caller
 * only ever sees a token together with the byte that ended it. */
static ref_result_t ref_token(ref_rd_t *rd, size_t *n) {
  size_t start = rd->pos;
  while (rd->pos < rd->len && ref_tchar(ref_at(rd))) rd->pos++;
  *n = rd->pos - start;
  return rd->pos < rd->len ? REF_COMPLETE : REF_NEED_MORE;
}

/* OWS / BWS = *( SP / HTAB ); *n says how much there was. */
static ref_result_t ref_skip_ows(ref_rd_t *rd, size_t *n) {
  size_t start = rd->pos;
  while (rd->pos < rd->len && ref_ows(ref_at(rd))) rd->pos++;
  *n = rd->pos - start;
  return rd->pos < rd->len ? REF_COMPLETE : REF_NEED_MORE;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3). Only major 1 is
 * this protocol; a 1.x with x > 1 is read as 1.1 would be (RFC 9110 §2.5). */
static ref_result_t ref_version(ref_rd_t *rd) {
  for (const char *p = "HTTP/"; *p; p++) REF_TRY(ref_expect(rd, *p, "bad HTTP-version"));
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (!ref_digit(ref_at(rd))) return ref_fail(rd, rd->pos, "bad HTTP-version");
  if (ref_at(rd) != '1') return ref_fail(rd, rd->pos, "HTTP major version is not 1");
  rd->m->major = 1;
  rd->pos++;
  REF_TRY(ref_expect(rd, '.', "bad HTTP-version"));
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (!ref_digit(ref_at(rd))) return ref_fail(rd, rd->pos, "bad HTTP-version");
  rd->m->minor = ref_at(rd) - '0';
  rd->pos++;
  return REF_COMPLETE;
}

/* ---- field sections (RFC 9112 §5, RFC 9110 §5) ---- */

/* *( field-line CRLF ) CRLF: field lines up to and including the empty line, into out[*n]. Used for the head
 * and for the trailer section (RFC 9112 §7.1.2), which follow the same rules. */
static ref_result_t ref_fields(ref_rd_t *rd, ref_field_t *out, size_t *n) {
  for (;;) {
    if (rd->pos >= rd->len) return REF_NEED_MORE;
    unsigned char c = ref_at(rd);
    if (c == '\r' || c == '\n') return ref_crlf(rd, "bad empty line");
    /* obs-fold (RFC 9112 §5.2), and whitespace between the start line and the first field
     * (§2.2): a recipient may reject either, and the sidecar's contract does. */
    if (ref_ows(c)) return ref_fail(rd, rd->pos, "obs-fold or whitespace before a field line");
    if (*n == REF_MAX_FIELDS) return ref_fail(rd, rd->pos, "too many fields");
    size_t name = rd->pos, name_len;
    REF_TRY(ref_token(rd, &name_len));
    if (name_len == 0) return ref_fail(rd, rd->pos, "bad byte in a field name");
    /* No whitespace between name and colon (RFC 9112 §5.1: MUST reject). */
    if (ref_at(rd) != ':') return ref_fail(rd, rd->pos, "field name not followed by ':'");
    rd->pos++;
    /* field-value = *field-content: VCHAR, obs-text, SP and HTAB (RFC 9110 §5.5); CR, LF and
     * NUL must be refused there, and the other controls are not in the grammar either. */
    size_t v = rd->pos;
    while (rd->pos < rd->len && (ref_vchar_obs(ref_at(rd)) || ref_ows(ref_at(rd)))) rd->pos++;
    size_t v_end = rd->pos;
    REF_TRY(ref_crlf(rd, "control byte in a field value"));
    while (v < v_end && ref_ows((unsigned char)rd->buf[v])) v++;
    while (v_end > v && ref_ows((unsigned char)rd->buf[v_end - 1])) v_end--;
    out[*n] = (ref_field_t){rd->buf + name, name_len, rd->buf + v, v_end - v};
    (*n)++;
  }
}

/* Walks a comma-separated list (RFC 9110 §5.6.1): elements are OWS-trimmed and empty ones
 * are skipped, as a recipient must allow. Returns 0 when no element is left. */
static int ref_list_next(const char *v, size_t n, size_t *i, const char **el, size_t *el_len) {
  while (*i < n) {
    size_t s = *i;
    while (*i < n && v[*i] != ',') (*i)++;
    size_t e = *i;
    if (*i < n) (*i)++;
    while (s < e && ref_ows((unsigned char)v[s])) s++;
    while (e > s && ref_ows((unsigned char)v[e - 1])) e--;
    if (e > s) {
      *el = v + s;
      *el_len = e - s;
      return 1;
    }
  }
  return 0;
}

const ref_field_t *ref_field(const ref_msg_t *m, const char *name) {
  for (size_t i = 0; i < m->nfields; i++)
    if (ref_ieq(m->fields[i].name, m->fields[i].name_len, name)) return &m->fields[i];
  return NULL;
}

size_t ref_field_count(const ref_msg_t *m, const char *name) {
  size_t n = 0;
  for (size_t i = 0; i < m->nfields; i++)
    n += (size_t)ref_ieq(m->fields[i].name, m->fields[i].name_len, name);
  return n;
}

/* Field lines with one name form one list (RFC 9110 §5.3), so every line is searched. */
int ref_has_token(const ref_msg_t *m, const char *field, const char *token) {
  for (size_t f = 0; f < m->nfields; f++) {
    if (!ref_ieq(m->fields[f].name, m->fields[f].name_len, field)) continue;
    const char *el;
    size_t el_len, i = 0;
    while (ref_list_next(m->fields[f].value, m->fields[f].value_len, &i, &el, &el_len))
      if (ref_ieq(el, el_len, token)) return 1;
  }
  return 0;
}

/* ---- hosts and request targets (RFC 9112 §3.2, RFC 9110 §4.2 and §7.2, RFC 3986 §3.2) ---- */

typedef enum {
  REF_HOST_FIELD,     /* a Host value: may be empty (RFC 9112 §3.2) */
  REF_HOST_URI,       /* an http(s) URI's authority: a host is required (RFC 9110 §4.2.1) */
  REF_HOST_AUTHORITY, /* CONNECT's authority-form: host ":" port, both required (RFC 9110 §9.3.6) */
} ref_host_mode_t;

/* IP-literal = "[" ( IPv6address / IPv6addrz / IPvFuture ) "]" at s[0] == '['. The IPv6 part is checked by
 * its alphabet only (hex digits, ':' and '.'), which is all a proxy needs to not be fooled
 * about where the host ends. Returns the literal's length, or 0 when it is not one. */
static size_t ref_ip_literal(const char *s, size_t n) {
  size_t i = 1;
  if (i < n && (s[i] == 'v' || s[i] == 'V')) {
    /* IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" ) */
    size_t h = ++i;
    while (i < n && ref_hexdig((unsigned char)s[i])) i++;
    if (i == h || i >= n || s[i] != '.') return 0;
    size_t r = ++i;
    while (i < n && (ref_unreserved((unsigned char)s[i]) || ref_subdelim((unsigned char)s[i]) || s[i] == ':'))
      i++;
    if (i == r) return 0;
  } else {
    size_t r = i;
    while (i < n && (ref_hexdig((unsigned char)s[i]) || s[i] == ':' || s[i] == '.')) i++;
    if (i == r) return 0;
    /* IPv6addrz (RFC 6874 §2): a zone, "%25" then 1*( unreserved / pct-encoded ). */
    if (i + 2 < n && s[i] == '%' && s[i + 1] == '2' && s[i + 2] == '5') {
      size_t z = i += 3;
      while (i < n && s[i] != ']') {
        if (s[i] == '%') {
          if (i + 2 >= n || !ref_hexdig((unsigned char)s[i + 1]) || !ref_hexdig((unsigned char)s[i + 2]))
            return 0;
          i += 3;
        } else if (ref_unreserved((unsigned char)s[i])) {
          i++;
        } else {
          return 0;
        }
      }
      if (i == z) return 0;
    }
  }
  if (i >= n || s[i] != ']') return 0;
  return i + 1;
}

/* uri-host [ ":" port ] with uri-host = IP-literal / reg-name, where reg-name = *( unreserved /
 * pct-encoded / sub-delims ), and port = *DIGIT. An IPv4 address is a reg-name by its alphabet.
 * No '@' is allowed, so userinfo is refused (RFC 9110 §4.2.4). */
static int ref_host_ok(const char *s, size_t n, ref_host_mode_t mode) {
  if (n == 0) return mode == REF_HOST_FIELD;
  size_t i = 0;
  if (s[0] == '[') {
    if ((i = ref_ip_literal(s, n)) == 0) return 0;
  } else {
    while (i < n && s[i] != ':') {
      unsigned char c = (unsigned char)s[i];
      if (c == '%') {
        if (i + 2 >= n || !ref_hexdig((unsigned char)s[i + 1]) || !ref_hexdig((unsigned char)s[i + 2]))
          return 0;
        i += 3;
      } else if (ref_unreserved(c) || ref_subdelim(c)) {
        i++;
      } else {
        return 0;
      }
    }
  }
  /* An empty host with a port (":80") would make the target URI "http://:80/", whose empty
   * host a recipient must reject (RFC 9110 §4.2.1); an empty Host field is the one allowed
   * empty form. */
  if (i == 0) return 0;
  if (i == n) return mode != REF_HOST_AUTHORITY;
  if (s[i++] != ':') return 0;
  if (i == n && mode == REF_HOST_AUTHORITY) return 0; /* CONNECT has no default port */
  for (; i < n; i++)
    if (!ref_digit((unsigned char)s[i])) return 0;
  return 1;
}

/* The four forms of request-target (RFC 9112 §3.2); the bytes were already found to be
 * 0x21-0x7E without '#'. Returns why the target is refused, or NULL. */
static const char *ref_target_check(const ref_msg_t *m) {
  const char *t = m->target;
  size_t n = m->target_len;
  /* CONNECT takes the authority-form and only that (RFC 9110 §9.3.6: "a client MUST send only
   * the target URI's authority component"); no other method may use it (RFC 9112 §3.2.3). */
  if (ref_eq(m->method, m->method_len, "CONNECT"))
    return ref_host_ok(t, n, REF_HOST_AUTHORITY) ? NULL : "CONNECT target is not host:port";
  if (t[0] == '/') return NULL; /* origin-form */
  if (n == 1 && t[0] == '*')    /* asterisk-form, OPTIONS only (RFC 9112 §3.2.4) */
    return ref_eq(m->method, m->method_len, "OPTIONS") ? NULL : "asterisk-form without OPTIONS";
  /* absolute-form (RFC 9112 §3.2.2), for the two schemes a proxy serves. */
  size_t scheme = 0;
  while (scheme < n && t[scheme] != ':') scheme++;
  if (!ref_ieq(t, scheme, "http") && !ref_ieq(t, scheme, "https"))
    return "request-target is in no allowed form";
  if (n - scheme < 3 || memcmp(t + scheme, "://", 3) != 0) return "request-target is in no allowed form";
  size_t a = scheme + 3, a_end = a;
  while (a_end < n && t[a_end] != '/' && t[a_end] != '?') a_end++;
  return ref_host_ok(t + a, a_end - a, REF_HOST_URI) ? NULL : "bad authority in absolute-form";
}

/* ---- start lines ---- */

/* request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 §3), with exactly one
 * SP at each place: the recipient may accept other whitespace there, the sidecar must not. */
static ref_result_t ref_request_line(ref_rd_t *rd) {
  ref_msg_t *m = rd->m;
  m->method = rd->buf + rd->pos;
  REF_TRY(ref_token(rd, &m->method_len));
  if (m->method_len == 0) return ref_fail(rd, rd->pos, "bad method");
  REF_TRY(ref_expect(rd, ' ', "method not followed by SP"));
  /* The target's bytes: no CTL, SP, DEL or obs-text can appear in a URI (RFC 3986 §2), and a
   * fragment is never sent (RFC 9112 §3.2). */
  size_t t = rd->pos;
  while (rd->pos < rd->len && ref_at(rd) != ' ') {
    unsigned char c = ref_at(rd);
    if (c < 0x21 || c > 0x7E || c == '#') return ref_fail(rd, rd->pos, "bad byte in the request-target");
    rd->pos++;
  }
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (rd->pos == t) return ref_fail(rd, rd->pos, "empty request-target");
  m->target = rd->buf + t;
  m->target_len = rd->pos - t;
  const char *why = ref_target_check(m);
  if (why) return ref_fail(rd, t, why);
  rd->pos++;
  REF_TRY(ref_version(rd));
  return ref_crlf(rd, "HTTP-version not followed by CRLF");
}

/* status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4); the
 * second SP is required even before an empty reason. status-code = 3DIGIT, 100..599 being the
 * range RFC 9110 §15 defines. */
static ref_result_t ref_status_line(ref_rd_t *rd) {
  REF_TRY(ref_version(rd));
  REF_TRY(ref_expect(rd, ' ', "HTTP-version not followed by SP"));
  int status = 0;
  for (int i = 0; i < 3; i++) {
    if (rd->pos >= rd->len) return REF_NEED_MORE;
    unsigned char c = ref_at(rd);
    if (!ref_digit(c)) return ref_fail(rd, rd->pos, "status-code is not 3DIGIT");
    if (i == 0 && (c < '1' || c > '5')) return ref_fail(rd, rd->pos, "status-code not in 100..599");
    status = status * 10 + (c - '0');
    rd->pos++;
  }
  rd->m->status = status;
  REF_TRY(ref_expect(rd, ' ', "status-code not followed by SP"));
  /* reason-phrase = *( HTAB / SP / VCHAR / obs-text ) */
  while (rd->pos < rd->len && (ref_vchar_obs(ref_at(rd)) || ref_ows(ref_at(rd)))) rd->pos++;
  return ref_crlf(rd, "control byte in the reason-phrase");
}

/* ---- framing (RFC 9112 §6) ---- */

/* Reads all Transfer-Encoding lines as one list (RFC 9110 §5.3). Each element is a coding
 * name, a token, optionally followed by parameters (RFC 9110 §10.1.4), which are taken as part
 * of the coding: only a bare "chunked" is chunked, since chunked defines no parameters. Sets
 * *chunked when the last coding is chunked and chunked appears once (RFC 9112 §6.1: a sender
 * must not apply it twice). Returns why the list is refused, or NULL. */
static const char *ref_te_scan(const ref_msg_t *m, int *chunked) {
  size_t n_chunked = 0;
  int last = 0;
  for (size_t f = 0; f < m->nfields; f++) {
    if (!ref_ieq(m->fields[f].name, m->fields[f].name_len, "transfer-encoding")) continue;
    const char *el;
    size_t el_len, i = 0;
    while (ref_list_next(m->fields[f].value, m->fields[f].value_len, &i, &el, &el_len)) {
      size_t k = 0;
      while (k < el_len && ref_tchar((unsigned char)el[k])) k++;
      size_t p = k;
      while (p < el_len && ref_ows((unsigned char)el[p])) p++;
      if (k == 0 || (p < el_len && el[p] != ';')) return "bad transfer-coding";
      last = ref_ieq(el, el_len, "chunked");
      n_chunked += (size_t)last;
    }
  }
  *chunked = last && n_chunked == 1;
  return NULL;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6) on exactly one field line. RFC 9112 §6.3 lets a
 * recipient accept a list of identical values; the sidecar's contract refuses any repeat. */
static const char *ref_content_length(ref_msg_t *m) {
  if (ref_field_count(m, "content-length") != 1) return "more than one Content-Length";
  const ref_field_t *f = ref_field(m, "content-length");
  if (f->value_len == 0) return "empty Content-Length";
  uint64_t v = 0;
  for (size_t i = 0; i < f->value_len; i++) {
    unsigned char c = (unsigned char)f->value[i];
    if (!ref_digit(c)) return "Content-Length is not 1*DIGIT";
    if (v > (REF_MAX_LEN - (uint64_t)(c - '0')) / 10) return "Content-Length too large";
    v = v * 10 + (uint64_t)(c - '0');
  }
  m->content_length = v;
  return NULL;
}

/* Fails at the first line of field `name`, or at the end of the head when there is none. */
static ref_result_t ref_fail_field(ref_rd_t *rd, const char *name, const char *why) {
  const ref_field_t *f = ref_field(rd->m, name);
  return ref_fail(rd, f ? (size_t)(f->name - rd->buf) : rd->pos, why);
}

/* RFC 9112 §9.3: "close" ends the connection; otherwise 1.1 persists and 1.0 persists only when
 * asked to with keep-alive (RFC 9112 Appendix C.2.2). */
static int ref_keep_alive(const ref_msg_t *m) {
  if (ref_has_token(m, "connection", "close")) return 0;
  if (m->minor >= 1) return 1;
  return ref_has_token(m, "connection", "keep-alive");
}

/* The checks on a whole request head: Host (RFC 9112 §3.2) and the body's framing (§6.1, §6.3). */
static ref_result_t ref_request_head(ref_rd_t *rd) {
  ref_msg_t *m = rd->m;
  size_t hosts = ref_field_count(m, "host");
  if (hosts > 1) return ref_fail_field(rd, "host", "more than one Host");
  if (hosts == 0 && m->minor >= 1) return ref_fail(rd, rd->pos, "HTTP/1.1 request without Host");
  const ref_field_t *host = ref_field(m, "host");
  if (host && !ref_host_ok(host->value, host->value_len, REF_HOST_FIELD))
    return ref_fail_field(rd, "host", "bad Host value");

  int has_te = ref_field_count(m, "transfer-encoding") > 0;
  int has_cl = ref_field_count(m, "content-length") > 0;
  /* §6.1: a 1.0 message with Transfer-Encoding has faulty framing; for a request that leaves
   * no safe way to find its end, so it is refused. */
  if (has_te && m->minor == 0)
    return ref_fail_field(rd, "transfer-encoding", "Transfer-Encoding in HTTP/1.0");
  /* §6.3 item 3: both is a request smuggling signature; the sidecar refuses it. */
  if (has_te && has_cl)
    return ref_fail_field(rd, "transfer-encoding", "both Transfer-Encoding and Content-Length");
  if (has_te) {
    int chunked;
    const char *why = ref_te_scan(m, &chunked);
    /* §6.3 item 4: a request whose final coding is not chunked has no determinable length. */
    if (!why && !chunked) why = "Transfer-Encoding does not end in one chunked";
    if (why) return ref_fail_field(rd, "transfer-encoding", why);
    m->framing = REF_BODY_CHUNKED;
  } else if (has_cl) {
    const char *why = ref_content_length(m);
    if (why) return ref_fail_field(rd, "content-length", why); /* §6.3 item 5 */
    m->framing = REF_BODY_LENGTH;
  } else {
    m->framing = REF_BODY_NONE; /* §6.3 item 6 */
  }
  m->keep_alive = ref_keep_alive(m);
  return REF_COMPLETE;
}

/* The framing of a whole response head (RFC 9112 §6.3, items in order). */
static ref_result_t ref_response_head(ref_rd_t *rd, const char *req_method) {
  ref_msg_t *m = rd->m;
  int has_te = ref_field_count(m, "transfer-encoding") > 0;
  int has_cl = ref_field_count(m, "content-length") > 0;
  int is_head = req_method && strcmp(req_method, "HEAD") == 0;
  int is_connect = req_method && strcmp(req_method, "CONNECT") == 0;
  m->keep_alive = ref_keep_alive(m);
  /* RFC 9110 §15.2 and §15.3.5 forbid Transfer-Encoding in 1xx and 204 (RFC 9112 §6.1: "A
   * server MUST NOT send a Transfer-Encoding header field in any response with a status code
   * of 1xx or 204"). */
  if (has_te && (m->status < 200 || m->status == 204))
    return ref_fail_field(rd, "transfer-encoding", "Transfer-Encoding in a 1xx or 204 response");
  /* Item 1: these never have content, whatever the fields say; the fields are then not
   * framing, so their values are not judged. */
  if (is_head || m->status < 200 || m->status == 204 || m->status == 304) {
    m->framing = REF_BODY_NONE;
    return REF_COMPLETE;
  }
  /* Item 2: a 2xx to CONNECT turns the connection into a tunnel right after the head, and
   * its Content-Length or Transfer-Encoding must be ignored (RFC 9110 §9.3.6). */
  if (is_connect && m->status < 300) {
    m->framing = REF_BODY_NONE;
    m->keep_alive = 0;
    return REF_COMPLETE;
  }
  if (has_te && has_cl)
    return ref_fail_field(rd, "transfer-encoding", "both Transfer-Encoding and Content-Length");
  if (has_te) {
    int chunked;
    const char *why = ref_te_scan(m, &chunked);
    if (why) return ref_fail_field(rd, "transfer-encoding", why);
    /* Item 4: a response not ending in chunked is read until close. */
    m->framing = chunked ? REF_BODY_CHUNKED : REF_BODY_CLOSE;
    /* §6.1: a 1.0 message with Transfer-Encoding: "close the connection after processing". */
    if (m->minor == 0) m->keep_alive = 0;
  } else if (has_cl) {
    const char *why = ref_content_length(m);
    if (why) return ref_fail_field(rd, "content-length", why);
    m->framing = REF_BODY_LENGTH;
  } else {
    m->framing = REF_BODY_CLOSE; /* item 8 */
  }
  if (m->framing == REF_BODY_CLOSE) m->keep_alive = 0;
  return REF_COMPLETE;
}

/* ---- bodies ---- */

static void *ref_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) {
    fputs("ref_http1: out of memory\n", stderr);
    abort();
  }
  return q;
}

/* Appends n bytes to the decoded body; *cap is its allocated size. Only bytes present in the
 * buffer are ever appended, so a huge declared size never allocates ahead of the data. */
static void ref_body_append(ref_msg_t *m, size_t *cap, const char *p, size_t n) {
  if (n == 0) return;
  if (m->body_len + n > *cap) {
    size_t want = *cap ? *cap : 64;
    while (want < m->body_len + n) want *= 2;
    m->body = ref_xrealloc(m->body, want);
    *cap = want;
  }
  memcpy(m->body + m->body_len, p, n);
  m->body_len += n;
}

/* quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4) at a DQUOTE. */
static ref_result_t ref_quoted_string(ref_rd_t *rd) {
  rd->pos++;
  for (;;) {
    if (rd->pos >= rd->len) return REF_NEED_MORE;
    unsigned char c = ref_at(rd);
    if (c == '"') {
      rd->pos++;
      return REF_COMPLETE;
    }
    if (c == '\\') { /* quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) */
      if (rd->pos + 1 >= rd->len) return REF_NEED_MORE;
      unsigned char q = (unsigned char)rd->buf[rd->pos + 1];
      if (!ref_ows(q) && !ref_vchar_obs(q)) return ref_fail(rd, rd->pos + 1, "bad quoted-pair");
      rd->pos += 2;
    } else if (ref_ows(c) || ref_vchar_obs(c)) { /* qdtext: the same set without DQUOTE and "\" */
      rd->pos++;
    } else {
      return ref_fail(rd, rd->pos, "control byte in a quoted-string");
    }
  }
}

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) (RFC 9112 §7.1.1),
 * chunk-ext-name = token, chunk-ext-val = token / quoted-string. Whitespace is only allowed
 * next to ';' and '=', never before the CRLF ("5 \r\n" is invalid). The extensions are not
 * kept: they have no meaning to a recipient that does not know them. */
static ref_result_t ref_chunk_ext(ref_rd_t *rd) {
  for (;;) {
    size_t ws, n;
    REF_TRY(ref_skip_ows(rd, &ws));
    if (ref_at(rd) != ';') {
      if (ws) return ref_fail(rd, rd->pos, "whitespace in a chunk line not before ';' or '='");
      return REF_COMPLETE;
    }
    rd->pos++;
    REF_TRY(ref_skip_ows(rd, &ws));
    REF_TRY(ref_token(rd, &n));
    if (n == 0) return ref_fail(rd, rd->pos, "bad chunk-ext-name");
    size_t after_name = rd->pos;
    REF_TRY(ref_skip_ows(rd, &ws));
    if (ref_at(rd) != '=') { /* no value: what follows the name is read as the next element */
      rd->pos = after_name;
      continue;
    }
    rd->pos++;
    REF_TRY(ref_skip_ows(rd, &ws));
    if (ref_at(rd) == '"') {
      REF_TRY(ref_quoted_string(rd));
    } else {
      REF_TRY(ref_token(rd, &n));
      if (n == 0) return ref_fail(rd, rd->pos, "bad chunk-ext-val");
    }
  }
}

/* chunk-size [ chunk-ext ] CRLF, chunk-size = 1*HEXDIG (RFC 9112 §7.1). The size is judged
 * digit by digit, so an overflow is refused as soon as it is certain. */
static ref_result_t ref_chunk_line(ref_rd_t *rd, uint64_t *size) {
  size_t start = rd->pos;
  uint64_t v = 0;
  while (rd->pos < rd->len && ref_hexdig(ref_at(rd))) {
    uint64_t d = (uint64_t)ref_hexval(ref_at(rd));
    if (v > (REF_MAX_LEN - d) / 16) return ref_fail(rd, rd->pos, "chunk size too large");
    v = v * 16 + d;
    rd->pos++;
  }
  if (rd->pos >= rd->len) return REF_NEED_MORE;
  if (rd->pos == start) return ref_fail(rd, rd->pos, "bad chunk size");
  REF_TRY(ref_chunk_ext(rd));
  REF_TRY(ref_crlf(rd, "bad byte in a chunk line"));
  *size = v;
  return REF_COMPLETE;
}

/* chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 §7.1); the data is decoded
 * into m->body and the trailer fields into m->trailers. */
static ref_result_t ref_chunked_body(ref_rd_t *rd) {
  ref_msg_t *m = rd->m;
  size_t cap = 0;
  for (;;) {
    uint64_t size;
    REF_TRY(ref_chunk_line(rd, &size));
    if (size == 0) break; /* last-chunk = 1*("0") [ chunk-ext ] CRLF */
    if ((uint64_t)(rd->len - rd->pos) < size) return REF_NEED_MORE;
    ref_body_append(m, &cap, rd->buf + rd->pos, (size_t)size);
    rd->pos += (size_t)size;
    REF_TRY(ref_crlf(rd, "chunk data not followed by CRLF"));
  }
  return ref_fields(rd, m->trailers, &m->ntrailers);
}

static ref_result_t ref_body(ref_rd_t *rd, int eof) {
  ref_msg_t *m = rd->m;
  switch (m->framing) {
  case REF_BODY_NONE: return REF_COMPLETE;
  case REF_BODY_LENGTH: {
    if ((uint64_t)(rd->len - rd->pos) < m->content_length) return REF_NEED_MORE;
    size_t n = (size_t)m->content_length, cap = 0;
    ref_body_append(m, &cap, rd->buf + rd->pos, n);
    rd->pos += n;
    return REF_COMPLETE;
  }
  case REF_BODY_CHUNKED: return ref_chunked_body(rd);
  case REF_BODY_CLOSE: {
    /* RFC 9112 §6.3 item 8: the body is whatever arrives before the close. */
    if (!eof) return REF_NEED_MORE;
    size_t cap = 0;
    ref_body_append(m, &cap, rd->buf + rd->pos, rd->len - rd->pos);
    rd->pos = rd->len;
    return REF_COMPLETE;
  }
  }
  return ref_fail(rd, rd->pos, "unknown framing");
}

/* ---- the two entry points ---- */

static ref_result_t ref_request(ref_rd_t *rd) {
  /* RFC 9112 §2.2: a server should ignore at least one empty line (CRLF) before the
   * request-line; the oracle allows any number. */
  while (rd->pos < rd->len && rd->buf[rd->pos] == '\r') REF_TRY(ref_crlf(rd, "bad empty line"));
  if (rd->pos < rd->len && rd->buf[rd->pos] == '\n') return ref_fail(rd, rd->pos, "bare LF");
  rd->m->skipped = rd->pos;
  REF_TRY(ref_request_line(rd));
  REF_TRY(ref_fields(rd, rd->m->fields, &rd->m->nfields));
  rd->m->head_len = rd->pos - rd->m->skipped;
  REF_TRY(ref_request_head(rd));
  REF_TRY(ref_body(rd, 0));
  rd->m->wire_len = rd->pos;
  return REF_COMPLETE;
}

static ref_result_t ref_response(ref_rd_t *rd, const char *req_method, int eof) {
  REF_TRY(ref_status_line(rd));
  REF_TRY(ref_fields(rd, rd->m->fields, &rd->m->nfields));
  rd->m->head_len = rd->pos;
  REF_TRY(ref_response_head(rd, req_method));
  REF_TRY(ref_body(rd, eof));
  rd->m->wire_len = rd->pos;
  return REF_COMPLETE;
}

/* Only a complete message hands its body to the caller. */
static ref_result_t ref_finish(ref_msg_t *m, ref_result_t r) {
  if (r != REF_COMPLETE) ref_msg_free(m);
  return r;
}

ref_result_t ref_parse_request(const char *buf, size_t len, ref_msg_t *m) {
  memset(m, 0, sizeof(*m));
  ref_rd_t rd = {buf, len, 0, m};
  return ref_finish(m, ref_request(&rd));
}

ref_result_t ref_parse_response(const char *buf, size_t len, const char *req_method, int eof, ref_msg_t *m) {
  memset(m, 0, sizeof(*m));
  ref_rd_t rd = {buf, len, 0, m};
  return ref_finish(m, ref_response(&rd, req_method, eof));
}

void ref_msg_free(ref_msg_t *m) {
  free(m->body);
  m->body = NULL;
  m->body_len = 0;
}
