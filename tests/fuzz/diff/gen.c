/* Cases for the differential fuzzer (diff.h): well-formed requests of every framing,
 * pipelined, then mutated the ways that have fooled proxies (byte flips; CR, LF, NUL,
 * space and tab insertions; duplicated lines, case changes, chunk-size, extension and
 * length edits; cuts); split writes and half-closes; and the upstream's script of
 * answers, honest and lying. Everything comes from one seed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diff.h"

/* ---- randomness: splitmix64, so one seed gives one case --------------------------- */

typedef struct {
  uint64_t s;
} rng_t;

static uint64_t rnext(rng_t *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint32_t rbelow(rng_t *r, uint32_t n) { return n ? (uint32_t)(rnext(r) % n) : 0; }
static int rchance(rng_t *r, int percent) { return (int)rbelow(r, 100) < percent; }
static const char *rpick(rng_t *r, const char *const *v, size_t n) { return v[rbelow(r, (uint32_t)n)]; }
#define RPICK(r, arr) rpick(r, arr, sizeof(arr) / sizeof(arr[0]))

/* A length: mostly small, sometimes past one read buffer (16 KiB) or the retry buffer
 * (64 KiB). */
static uint32_t rlength(rng_t *r) {
  int k = (int)rbelow(r, 100);
  if (k < 15) return 0;
  if (k < 70) return 1 + rbelow(r, 200);
  if (k < 95) return 200 + rbelow(r, 4000);
  return 16 * 1024 + rbelow(r, 54 * 1024);
}

/* ---- the spots of a stream a mutation aims at ------------------------------------- */

typedef enum { SP_LINE, SP_NAME_END, SP_VALUE, SP_TARGET, SP_CHUNK, SP_LENGTH, SP_TE, SP__N } spot_kind_t;

#define MAX_SPOTS 256
typedef struct {
  px_buf_t b;
  struct {
    spot_kind_t kind;
    size_t off;
  } spot[MAX_SPOTS];
  int nspots;
} stream_t;

static void spot(stream_t *s, spot_kind_t kind) {
  if (s->nspots < MAX_SPOTS) s->spot[s->nspots++] = (typeof(s->spot[0])){kind, s->b.len};
}

/* Replaces `del` bytes at `off` with `ins`, moving the spots after it. */
static void edit(stream_t *s, size_t off, size_t del, const char *ins, size_t ins_len) {
  if (off > s->b.len) off = s->b.len;
  if (del > s->b.len - off) del = s->b.len - off;
  if (s->b.len - del + ins_len > DF_MAX_CLIENT) return;
  px_buf_reserve(&s->b, ins_len);
  memmove(s->b.data + off + ins_len, s->b.data + off + del, s->b.len - off - del);
  memcpy(s->b.data + off, ins, ins_len);
  s->b.len = s->b.len - del + ins_len;
  for (int i = 0; i < s->nspots; i++) {
    if (s->spot[i].off > off)
      s->spot[i].off = s->spot[i].off + ins_len >= del ? s->spot[i].off + ins_len - del : off;
  }
}

static int find_spot(stream_t *s, rng_t *r, spot_kind_t kind, size_t *off) {
  int n = 0;
  for (int i = 0; i < s->nspots; i++) n += s->spot[i].kind == kind;
  if (n == 0) return 0;
  int k = (int)rbelow(r, (uint32_t)n);
  for (int i = 0; i < s->nspots; i++)
    if (s->spot[i].kind == kind && k-- == 0) {
      *off = s->spot[i].off;
      return *off <= s->b.len;
    }
  return 0;
}

/* ---- well-formed requests -------------------------------------------------------- */

static void add(stream_t *s, const char *str) { px_buf_append_cstr(&s->b, str); }

static void header(stream_t *s, const char *name, const char *value) {
  spot(s, SP_LINE);
  add(s, name);
  spot(s, SP_NAME_END);
  add(s, ": ");
  spot(s, SP_VALUE);
  add(s, value);
  add(s, "\r\n");
}

/* A field value: visible ASCII with inner spaces and tabs, sometimes obs-text. */
static void rvalue(rng_t *r, char *v, size_t cap) {
  size_t n = 1 + rbelow(r, (uint32_t)(cap < 40 ? cap - 1 : 39));
  for (size_t i = 0; i < n; i++) {
    int k = (int)rbelow(r, 100);
    v[i] = k < 85   ? (char)(0x21 + rbelow(r, 94))
           : k < 92 ? ' '
           : k < 95 ? '\t'
                    : (char)(0x80 + rbelow(r, 128));
  }
  while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--; /* OWS is trimmed: keep values comparable */
  if (n == 0) v[n++] = 'v';
  while (v[0] == ' ' || v[0] == '\t') v[0] = 'w';
  v[n] = '\0';
}

static void rtarget(rng_t *r, char *t, size_t cap, int *absolute) {
  static const char safe[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~";
  static const char odd[] = "!$&'()*+,;=:@{}|\\^`\"<>[]";
  size_t n = 0;
  *absolute = 0;
  if (rchance(r, 8)) {
    *absolute = 1;
    n += (size_t)snprintf(t, cap, "%s", rchance(r, 70) ? "http://svc:8080" : "HTTPS://svc.mesh");
    if (rchance(r, 20)) return; /* no path: "/" is meant */
  }
  int segs = 1 + (int)rbelow(r, 3);
  for (int i = 0; i < segs && n + 24 < cap; i++) {
    t[n++] = '/';
    int len = (int)rbelow(r, 12);
    for (int k = 0; k < len; k++)
      t[n++] = rchance(r, 92) ? safe[rbelow(r, sizeof(safe) - 1)] : odd[rbelow(r, sizeof(odd) - 1)];
  }
  if (rchance(r, 30) && n + 20 < cap) {
    t[n++] = '?';
    int len = (int)rbelow(r, 16);
    for (int k = 0; k < len; k++)
      t[n++] = rchance(r, 85) ? safe[rbelow(r, sizeof(safe) - 1)] : "/?=&%"[rbelow(r, 5)];
  }
  t[n] = '\0';
}

static void chunked_body(stream_t *s, rng_t *r, uint32_t len) {
  static const char *const exts[] = {";a=b", ";x", "; q=\"v \\\" w\"", " ;e", ";n=1;m=\"\"", ";tok=A-b.c"};
  uint32_t left = len;
  while (left > 0) {
    uint32_t n = rchance(r, 30) ? left : 1 + rbelow(r, left);
    char line[64];
    spot(s, SP_CHUNK);
    snprintf(line, sizeof(line), rchance(r, 20) ? "%X" : rchance(r, 10) ? "00%x" : "%x", n);
    add(s, line);
    if (rchance(r, 15)) add(s, RPICK(r, exts));
    add(s, "\r\n");
    for (uint32_t i = 0; i < n; i++) px_buf_append(&s->b, (char[]){(char)rnext(r)}, 1);
    add(s, "\r\n");
    left -= n;
  }
  spot(s, SP_CHUNK);
  add(s, rchance(r, 10) ? "000" : "0");
  if (rchance(r, 10)) add(s, ";last");
  add(s, "\r\n");
  if (rchance(r, 15)) header(s, "T-Checksum", "123");
  if (rchance(r, 5)) header(s, "T-Empty", "");
  add(s, "\r\n");
}

static void request(stream_t *s, rng_t *r, uint64_t id, int idx) {
  static const char *const methods[] = {"GET",  "GET", "GET", "GET",    "POST",    "POST",  "POST",
                                        "HEAD", "PUT", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"};
  static const char *const hosts[] = {"svc", "svc:8080", "127.0.0.1:1234", "[::1]:80", "a.b.c", ""};
  static const char *const names[] = {"Accept",          "User-Agent",    "Cookie", "X-Forwarded-For",
                                      "Idempotency-Key", "Cache-Control", "X-Fz",   "x-fz-2",
                                      "Authorization",   "If-None-Match"};
  const char *method = RPICK(r, methods);
  int minor = rchance(r, 85) ? 1 : 0;
  char target[256];
  int absolute;
  rtarget(r, target, sizeof(target), &absolute);
  if (!absolute && rchance(r, 2)) {
    method = "OPTIONS";
    strcpy(target, "*");
  }
  if (rchance(r, 3)) add(s, "\r\n"); /* an empty line before a request is ignored (RFC 9112 §2.2) */
  spot(s, SP_LINE);
  add(s, method);
  add(s, " ");
  spot(s, SP_TARGET);
  add(s, target);
  add(s, minor ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
  if (minor || rchance(r, 60)) header(s, "Host", rchance(r, 95) ? RPICK(r, hosts) : "svc");
  char v[64];
  if (rchance(r, 90)) {
    snprintf(v, sizeof(v), "dfz-%llu-%d", (unsigned long long)id, idx);
    header(s, "X-Request-Id", v);
  }
  int extra = (int)rbelow(r, 5);
  for (int i = 0; i < extra; i++) {
    rvalue(r, v, sizeof(v));
    header(s, RPICK(r, names), v);
  }
  if (rchance(r, 20)) {
    static const char *const conn[] = {"keep-alive", "close", "close, X-Fz", "X-Fz", "Keep-Alive, x-fz-2"};
    header(s, "Connection", RPICK(r, conn));
  }
  if (rchance(r, 5)) header(s, "Keep-Alive", "timeout=5");
  if (rchance(r, 5)) header(s, "TE", "trailers");
  int has_body = !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH")
                     ? rchance(r, 80)
                     : rchance(r, 8);
  if (!has_body) {
    add(s, "\r\n");
    return;
  }
  uint32_t len = rlength(r);
  int chunked = minor && rchance(r, 40);
  if (rchance(r, 3)) header(s, "Expect", "100-continue");
  if (chunked) {
    spot(s, SP_TE);
    header(s, "Transfer-Encoding", "chunked");
    add(s, "\r\n");
    chunked_body(s, r, len);
  } else {
    char l[32];
    snprintf(l, sizeof(l), "%u", len);
    spot(s, SP_LENGTH);
    header(s, "Content-Length", l);
    add(s, "\r\n");
    for (uint32_t i = 0; i < len; i++) px_buf_append(&s->b, (char[]){(char)rnext(r)}, 1);
  }
}

/* ---- mutations ------------------------------------------------------------------- */

static int mutate(stream_t *s, rng_t *r, char *what, size_t cap) {
  size_t off = s->b.len ? rbelow(r, (uint32_t)s->b.len) : 0;
  int k = (int)rbelow(r, 16);
  switch (k) {
  case 0: { /* a byte flipped */
    if (s->b.len == 0) return 0;
    char ch = (char)rnext(r);
    edit(s, off, 1, &ch, 1);
    snprintf(what, cap, "byte %zu set to 0x%02x", off, (unsigned char)ch);
    return 1;
  }
  case 1: { /* a byte inserted that matters to parsers */
    static const char ins[] = "\r\n\0 \t:;\",0";
    char ch = ins[rbelow(r, sizeof(ins) - 1)];
    if (find_spot(s, r, (spot_kind_t)rbelow(r, SP__N), &off) && rchance(r, 60)) off += rbelow(r, 3);
    edit(s, off, 0, &ch, 1);
    snprintf(what, cap, "0x%02x inserted at %zu", (unsigned char)ch, off);
    return 1;
  }
  case 2: /* a byte deleted */
    edit(s, off, 1, "", 0);
    snprintf(what, cap, "byte %zu deleted", off);
    return 1;
  case 3:
  case 4: { /* a CRLF turned into a bare LF, or a bare CR */
    const char *p = s->b.len > off ? memmem(s->b.data + off, s->b.len - off, "\r\n", 2) : NULL;
    if (!p) p = memmem(s->b.data, s->b.len, "\r\n", 2);
    if (!p) return 0;
    off = (size_t)(p - s->b.data);
    edit(s, k == 3 ? off : off + 1, 1, "", 0);
    snprintf(what, cap, "%s at %zu", k == 3 ? "bare LF" : "bare CR", off);
    return 1;
  }
  case 5: { /* a header line duplicated */
    if (!find_spot(s, r, SP_LINE, &off)) return 0;
    const char *e = memmem(s->b.data + off, s->b.len - off, "\r\n", 2);
    if (!e) return 0;
    size_t n = (size_t)(e - (s->b.data + off)) + 2;
    char line[512];
    if (n > sizeof(line)) return 0;
    memcpy(line, s->b.data + off, n);
    edit(s, off, 0, line, n);
    snprintf(what, cap, "line at %zu duplicated", off);
    return 1;
  }
  case 6: { /* a letter's case changed */
    for (size_t i = off; i < s->b.len && i < off + 64; i++) {
      char ch = s->b.data[i];
      if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') {
        ch ^= 0x20;
        edit(s, i, 1, &ch, 1);
        snprintf(what, cap, "case changed at %zu", i);
        return 1;
      }
    }
    return 0;
  }
  case 7: { /* a chunk line edited */
    static const char *const ins[] = {
        "0", " ", "\t", ";", ";=x", ";x=", "; x = y", "g", "+", "\r\n", ";\"a\"", "1"};
    if (!find_spot(s, r, SP_CHUNK, &off)) return 0;
    const char *e = memchr(s->b.data + off, '\r', s->b.len - off);
    size_t at = rchance(r, 50) || !e ? off : (size_t)(e - s->b.data);
    const char *x = RPICK(r, ins);
    edit(s, at, 0, x, strlen(x));
    snprintf(what, cap, "chunk line at %zu: \"%s\" inserted", at, x);
    return 1;
  }
  case 8: { /* a length edited, doubled, or joined by chunked */
    static const char *const vals[] = {
        "+5", "5, 5", "5 5", "-1", "0x10", "99999999999999999999", "9223372036854775808", "00", " 7"};
    if (!find_spot(s, r, SP_LENGTH, &off)) return 0;
    int how = (int)rbelow(r, 3);
    if (how == 0) {
      const char *v = memchr(s->b.data + off, ':', s->b.len - off);
      const char *e = v ? memmem(v, s->b.len - (size_t)(v - s->b.data), "\r\n", 2) : NULL;
      if (!e) return 0;
      const char *x = RPICK(r, vals);
      edit(s, (size_t)(v - s->b.data) + 2, (size_t)(e - v) - 2, x, strlen(x));
      snprintf(what, cap, "Content-Length set to \"%s\"", x);
    } else {
      const char *x = how == 1 ? "Content-Length: 3\r\n" : "Transfer-Encoding: chunked\r\n";
      edit(s, off, 0, x, strlen(x));
      snprintf(what, cap, "\"%.*s\" added", (int)strlen(x) - 2, x);
    }
    return 1;
  }
  case 9: { /* Transfer-Encoding edited */
    static const char *const vals[] = {"chunked, gzip", "gzip, chunked",    "xchunked", "",
                                       "CHUNKED",       "chunked, chunked", "identity", ",chunked",
                                       "chunked;q=1"};
    if (!find_spot(s, r, SP_TE, &off)) return 0;
    const char *v = memchr(s->b.data + off, ':', s->b.len - off);
    const char *e = v ? memmem(v, s->b.len - (size_t)(v - s->b.data), "\r\n", 2) : NULL;
    if (!e) return 0;
    const char *x = RPICK(r, vals);
    edit(s, (size_t)(v - s->b.data) + 2, (size_t)(e - v) - 2, x, strlen(x));
    snprintf(what, cap, "Transfer-Encoding set to \"%s\"", x);
    return 1;
  }
  case 10: /* whitespace before a colon */
    if (!find_spot(s, r, SP_NAME_END, &off)) return 0;
    edit(s, off, 0, rchance(r, 70) ? " " : "\t", 1);
    snprintf(what, cap, "whitespace before the colon at %zu", off);
    return 1;
  case 11: { /* a value folded onto a new line */
    if (!find_spot(s, r, SP_VALUE, &off)) return 0;
    const char *x = rchance(r, 70) ? "\r\n " : "\r\n\t";
    edit(s, off + 1, 0, x, 3);
    snprintf(what, cap, "obs-fold at %zu", off + 1);
    return 1;
  }
  case 12: { /* the target edited */
    static const char ins[] = "\x01\t\x0c\x7f\x80\xff# %?";
    if (!find_spot(s, r, SP_TARGET, &off)) return 0;
    char ch = ins[rbelow(r, sizeof(ins) - 1)];
    edit(s, off + rbelow(r, 4), 0, &ch, 1);
    snprintf(what, cap, "0x%02x in the target", (unsigned char)ch);
    return 1;
  }
  case 13: { /* a header name's bytes */
    static const char ins[] = "\x01\"(),/[]{}\x80 ";
    if (!find_spot(s, r, SP_NAME_END, &off) || off == 0) return 0;
    char ch = ins[rbelow(r, sizeof(ins) - 1)];
    edit(s, off - 1, 0, &ch, 1);
    snprintf(what, cap, "0x%02x in a field name", (unsigned char)ch);
    return 1;
  }
  case 14: { /* a control byte in a value */
    if (!find_spot(s, r, SP_VALUE, &off)) return 0;
    char ch = (char)(rchance(r, 80) ? rbelow(r, 0x20) : 0x7f);
    edit(s, off, 0, &ch, 1);
    snprintf(what, cap, "0x%02x in a field value", (unsigned char)ch);
    return 1;
  }
  default: /* cut short */
    edit(s, off, s->b.len - off, "", 0);
    snprintf(what, cap, "cut at %zu", off);
    return 1;
  }
}

/* ---- the upstream's script -------------------------------------------------------- */

static const char *const ub_names[UB__COUNT] = {"sized",   "chunked", "close", "nobody",
                                                "interim", "http10",  "short", "bad-chunk",
                                                "garbage", "reset",   "extra", "bad-head"};

const char *df_ub_name(df_ub_t kind) { return kind < UB__COUNT ? ub_names[kind] : "?"; }

static df_answer_t ranswer(rng_t *r) {
  static const int weights[UB__COUNT] = {30, 18, 9, 7, 5, 5, 4, 4, 3, 6, 4, 5};
  static const int statuses[] = {200, 200, 200, 201, 202, 301, 302, 400, 404, 409, 429, 500, 503};
  int total = 0;
  for (int i = 0; i < UB__COUNT; i++) total += weights[i];
  int k = (int)rbelow(r, (uint32_t)total), kind = 0;
  while (k >= weights[kind]) k -= weights[kind++];
  df_answer_t a = {.kind = (df_ub_t)kind,
                   .status = statuses[rbelow(r, sizeof(statuses) / sizeof(statuses[0]))],
                   .body_len = rlength(r),
                   .seed = (uint32_t)rnext(r)};
  if (a.kind == UB_NOBODY) a.status = rchance(r, 50) ? 204 : 304;
  return a;
}

void df_case_generate(df_case_t *c, uint64_t seed) {
  memset(c, 0, sizeof(*c));
  c->id = seed;
  rng_t r = {seed};
  r.s = rnext(&r); /* neighbouring seeds must not give overlapping streams */
  static stream_t s;
  memset(&s, 0, sizeof(s));
  int nreq = rchance(&r, 50) ? 1 : rchance(&r, 60) ? 2 : 3;
  for (int i = 0; i < nreq; i++) request(&s, &r, seed, i);
  int n = 0;
  if (rchance(&r, 55)) {
    int muts = 1 + (int)rbelow(&r, 3);
    for (int i = 0; i < muts; i++) {
      char what[96];
      if (!mutate(&s, &r, what, sizeof(what))) continue;
      n += snprintf(c->what + n, sizeof(c->what) - (size_t)n, "%s%s", n ? "; " : "", what);
      if ((size_t)n >= sizeof(c->what)) n = (int)sizeof(c->what) - 1;
      c->mutated = 1;
    }
  }
  if (!c->mutated) snprintf(c->what, sizeof(c->what), "%d well-formed request(s)", nreq);
  c->client = (unsigned char *)s.b.data;
  c->client_len = s.b.len;
  if (c->client == NULL) c->client = (unsigned char *)px_strdup("");
  c->nsplits = rchance(&r, 40) ? 1 + (int)rbelow(&r, DF_MAX_SPLITS) : 0;
  for (int i = 0; i < c->nsplits; i++) c->splits[i] = c->client_len ? rbelow(&r, (uint32_t)c->client_len) : 0;
  for (int i = 1; i < c->nsplits; i++) /* in order */
    for (int j = i; j > 0 && c->splits[j] < c->splits[j - 1]; j--) {
      size_t t = c->splits[j];
      c->splits[j] = c->splits[j - 1];
      c->splits[j - 1] = t;
    }
  c->half_close = rchance(&r, 8);
  c->nscript = nreq + 2;
  for (int i = 0; i < c->nscript; i++) c->script[i] = ranswer(&r);
}

void df_case_free(df_case_t *c) {
  free(c->client);
  c->client = NULL;
}

const df_answer_t *df_case_answer(const df_case_t *c, int k) {
  static const df_answer_t dflt = {UB_SIZED, 200, 5, 1};
  return k >= 0 && k < c->nscript ? &c->script[k] : &dflt;
}

/* ---- an answer's bytes, and what the client must see of it ------------------------ */

static void body_bytes(px_buf_t *b, uint32_t seed, uint32_t len) {
  rng_t r = {seed};
  char *p = px_buf_reserve(b, len);
  for (uint32_t i = 0; i < len; i++) p[i] = (char)rnext(&r);
  b->len += len;
}

static const char *reason(int status) {
  switch (status) {
  case 200: return "OK";
  case 201: return "Created";
  case 304: return "Not Modified";
  case 404: return "Not Found";
  case 500: return "Internal Server Error";
  default: return "Whatever";
  }
}

void df_answer_bytes(const df_answer_t *a, const char *method, size_t method_len, px_buf_t *out,
                     df_expect_t *ex) {
  int head = method_len == 4 && memcmp(method, "HEAD", 4) == 0;
  rng_t r = {a->seed};
  px_buf_t body = {0};
  memset(ex, 0, sizeof(*ex));
  ex->kind = EX_WHOLE;
  ex->status = a->status;
  ex->length_known = 1;
  switch (a->kind) {
  case UB_INTERIM:
    px_buf_append_cstr(out, rchance(&r, 50) ? "HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\n"
                                            : "HTTP/1.1 100 Continue\r\n\r\n");
    /* fall through */
  case UB_SIZED:
  case UB_EXTRA:
  case UB_HTTP10:
    body_bytes(&body, a->seed, a->body_len);
    px_buf_printf(out, "HTTP/1.%d %d %s\r\nX-Fz-Answer: %s\r\nContent-Length: %u\r\n\r\n",
                  a->kind == UB_HTTP10 ? 0 : 1, a->status, reason(a->status), df_ub_name(a->kind),
                  a->body_len);
    if (!head) px_buf_append(out, body.data, body.len);
    if (a->kind == UB_EXTRA)
      px_buf_append_cstr(out, "HTTP/1.1 299 Poison\r\nContent-Length: 6\r\n\r\npoison");
    ex->upstream_closes = a->kind == UB_HTTP10;
    break;
  case UB_CHUNKED: {
    body_bytes(&body, a->seed, a->body_len);
    px_buf_printf(out, "HTTP/1.1 %d %s\r\nTransfer-Encoding: chunked\r\nX-Fz-Answer: chunked\r\n\r\n",
                  a->status, reason(a->status));
    if (head) break;
    for (size_t off = 0; off < body.len;) {
      size_t n = 1 + rbelow(&r, (uint32_t)(body.len - off));
      px_buf_printf(out, "%zx%s\r\n", n, rchance(&r, 20) ? ";ext=\"v\"" : "");
      px_buf_append(out, body.data + off, n);
      px_buf_append_cstr(out, "\r\n");
      off += n;
    }
    px_buf_append_cstr(out, rchance(&r, 30) ? "0\r\nT-Upstream: yes\r\n\r\n" : "0\r\n\r\n");
    ex->length_known = 0;
    break;
  }
  case UB_CLOSE:
    body_bytes(&body, a->seed, a->body_len);
    px_buf_printf(out, "HTTP/1.1 %d %s\r\nX-Fz-Answer: close\r\n\r\n", a->status, reason(a->status));
    if (!head) px_buf_append(out, body.data, body.len);
    ex->length_known = 0;
    ex->upstream_closes = 1;
    break;
  case UB_NOBODY:
    if (a->status == 304)
      px_buf_printf(out, "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: %u\r\n\r\n",
                    a->body_len);
    else
      px_buf_append_cstr(out, "HTTP/1.1 204 No Content\r\nX-Fz-Answer: nobody\r\n\r\n");
    break;
  case UB_SHORT: {
    uint32_t n = a->body_len < 2 ? 10 : a->body_len;
    body_bytes(&body, a->seed, n);
    px_buf_printf(out, "HTTP/1.1 %d %s\r\nContent-Length: %u\r\n\r\n", a->status, reason(a->status), n);
    if (!head) {
      px_buf_append(out, body.data, n / 2);
      ex->kind = EX_TRUNCATED;
    }
    body.len = 0;
    ex->upstream_closes = 1;
    break;
  }
  case UB_BAD_CHUNK: {
    static const char *const bad[] = {"5\r\nhello\nX",         "zz\r\n",
                                      "5;=x\r\nhello\r\n",     "3\r\nabcde\r\n",
                                      "5\r\nhello\r\n0\r\n\n", "5 \r\nhello\r\n"};
    px_buf_printf(out, "HTTP/1.1 %d %s\r\nTransfer-Encoding: chunked\r\n\r\n", a->status, reason(a->status));
    if (!head) {
      px_buf_append_cstr(out, "4\r\nfine\r\n");
      px_buf_append_cstr(out, RPICK(&r, bad));
      ex->kind = EX_TRUNCATED;
    }
    ex->upstream_closes = 1;
    break;
  }
  case UB_GARBAGE:
    px_buf_append_cstr(out, rchance(&r, 50) ? "SSH-2.0-OpenSSH\r\n\x01\x02\x03\r\n\r\n"
                                            : "\x16\x03\x01\x02\x00\x01");
    ex->kind = EX_BAD;
    ex->upstream_closes = 1;
    break;
  case UB_RESET:
    ex->kind = EX_RESET;
    ex->upstream_closes = 1;
    break;
  case UB_BAD_HEAD: {
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
        "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        ("HTTP/1.1 200 OK\r\nX: a\x01"
         "b\r\nContent-Length: 0\r\n\r\n"), /* \x01 then b */
        "HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 0\r\n\r\n",
    };
    px_buf_append_cstr(out, RPICK(&r, bad));
    ex->kind = EX_BAD;
    ex->upstream_closes = 1;
    break;
  }
  case UB__COUNT: break;
  }
  int bodiless = head || ex->status == 204 || ex->status == 304;
  if (ex->kind == EX_WHOLE && !bodiless)
    ex->body = body;
  else
    px_buf_free(&body);
  if (bodiless) ex->length_known = 1;
}

void df_expect_free(df_expect_t *e) { px_buf_free(&e->body); }

/* ---- case files -------------------------------------------------------------------- */

void df_escape(px_buf_t *out, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = b[i];
    if (ch == '\r')
      px_buf_append_cstr(out, "\\r");
    else if (ch == '\n')
      px_buf_append_cstr(out, "\\n");
    else if (ch == '\t')
      px_buf_append_cstr(out, "\\t");
    else if (ch == '\\')
      px_buf_append_cstr(out, "\\\\");
    else if (ch == '"')
      px_buf_append_cstr(out, "\\\"");
    else if (ch < 0x20 || ch >= 0x7f)
      px_buf_printf(out, "\\x%02x", ch);
    else
      px_buf_append(out, &ch, 1);
  }
}

void df_case_describe(const df_case_t *c, px_buf_t *out) {
  px_buf_printf(out, "case %llu: %s\n  delivery: %d split(s)", (unsigned long long)c->id, c->what,
                c->nsplits);
  for (int i = 0; i < c->nsplits; i++) px_buf_printf(out, " %zu", c->splits[i]);
  px_buf_printf(out, "%s\n  upstream script:", c->half_close ? ", then half-closed" : "");
  for (int i = 0; i < c->nscript; i++)
    px_buf_printf(out, " %s/%d/%u", df_ub_name(c->script[i].kind), c->script[i].status,
                  c->script[i].body_len);
  px_buf_printf(out, "\n  client bytes (%zu): \"", c->client_len);
  df_escape(out, c->client, c->client_len > 4096 ? 4096 : c->client_len);
  px_buf_append_cstr(out, c->client_len > 4096 ? "\"...\n" : "\"\n");
}

#define CASE_MAGIC "outrigger-difffuzz-case 1\n"

int df_case_save(const df_case_t *c, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fprintf(f, CASE_MAGIC "id %llu\nwhat %s\nhalf_close %d\nsplits %d", (unsigned long long)c->id, c->what,
          c->half_close, c->nsplits);
  for (int i = 0; i < c->nsplits; i++) fprintf(f, " %zu", c->splits[i]);
  fprintf(f, "\nscript %d\n", c->nscript);
  for (int i = 0; i < c->nscript; i++)
    fprintf(f, "answer %s %d %u %u\n", df_ub_name(c->script[i].kind), c->script[i].status,
            c->script[i].body_len, c->script[i].seed);
  fprintf(f, "client %zu\n", c->client_len);
  fwrite(c->client, 1, c->client_len, f);
  return fclose(f) == 0 ? 0 : -1;
}

int df_case_load(df_case_t *c, const char *path) {
  memset(c, 0, sizeof(*c));
  size_t len;
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  char line[256], name[32];
  unsigned long long id;
  if (!fgets(line, sizeof(line), f) || strcmp(line, CASE_MAGIC) != 0) goto bad;
  if (!fgets(line, sizeof(line), f) || sscanf(line, "id %llu", &id) != 1) goto bad;
  c->id = id;
  if (!fgets(line, sizeof(line), f) || strncmp(line, "what ", 5) != 0) goto bad;
  line[strcspn(line, "\n")] = '\0';
  memcpy(c->what, line + 5, PX_MIN(strlen(line + 5) + 1, sizeof(c->what) - 1));
  if (!fgets(line, sizeof(line), f) || sscanf(line, "half_close %d", &c->half_close) != 1) goto bad;
  if (fscanf(f, "splits %d", &c->nsplits) != 1 || c->nsplits < 0 || c->nsplits > DF_MAX_SPLITS) goto bad;
  for (int i = 0; i < c->nsplits; i++)
    if (fscanf(f, " %zu", &c->splits[i]) != 1) goto bad;
  if (fscanf(f, " script %d ", &c->nscript) != 1 || c->nscript < 0 || c->nscript > DF_MAX_SCRIPT) goto bad;
  for (int i = 0; i < c->nscript; i++) {
    df_answer_t *a = &c->script[i];
    if (fscanf(f, "answer %31s %d %u %u ", name, &a->status, &a->body_len, &a->seed) != 4) goto bad;
    int k = 0;
    while (k < UB__COUNT && strcmp(name, ub_names[k]) != 0) k++;
    if (k == UB__COUNT) goto bad;
    a->kind = (df_ub_t)k;
  }
  if (fscanf(f, "client %zu", &len) != 1 || len > DF_MAX_CLIENT || fgetc(f) != '\n') goto bad;
  c->client = px_malloc(len + 1);
  if (fread(c->client, 1, len, f) != len) goto bad;
  c->client_len = len;
  fclose(f);
  return 0;
bad:
  fclose(f);
  free(c->client);
  c->client = NULL;
  errno = EINVAL;
  return -1;
}
