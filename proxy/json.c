#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

struct px_json_s {
  px_json_type_t type;
  size_t n; /* string length, or element/member count */
  union {
    int b;
    double num;
    char *s;
    px_json_t **items;
  } u;
  /* Set for object members, and used while a container is being built. */
  const char *key;
  size_t klen;
  px_json_t *next;
};

/* Every node and string lives in a chain of chunks owned by the document, so a
 * parse costs a handful of mallocs and freeing is one walk over the chain. */
typedef struct chunk_s {
  struct chunk_s *next;
  size_t used, cap;
  max_align_t data[];
} chunk_t;

typedef struct {
  chunk_t *chunks;
  px_json_t root;
} doc_t;

typedef struct {
  const char *p, *start, *end;
  doc_t *doc;
  char *err;
  size_t errlen;
  int failed;
} parser_t;

static void *arena_alloc(doc_t *d, size_t n) {
  n = (n + 15) & ~(size_t)15;
  chunk_t *c = d->chunks;
  if (c == NULL || c->cap - c->used < n) {
    size_t cap = PX_MAX((size_t)4096, n);
    c = px_malloc(sizeof(chunk_t) + cap);
    c->used = 0;
    c->cap = cap;
    c->next = d->chunks;
    d->chunks = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

static void fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(parser_t *ps, const char *fmt, ...) {
  if (ps->failed) return;
  ps->failed = 1;
  if (ps->err == NULL || ps->errlen == 0) return;
  int n = snprintf(ps->err, ps->errlen, "offset %zu: ", (size_t)(ps->p - ps->start));
  if (n < 0 || (size_t)n >= ps->errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
  va_end(ap);
}

static void skip_ws(parser_t *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int read_hex4(parser_t *ps, const char *q, unsigned *out) {
  if (ps->end - q < 4) return -1;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(q[i]);
    if (h < 0) return -1;
    v = (v << 4) | (unsigned)h;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the well-formed UTF-8 sequence at q (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *q, const unsigned char *end) {
  unsigned char c = q[0];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c == 0xE0)
    n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC)
    n = 3;
  else if (c == 0xED)
    n = 3, hi = 0x9F; /* no UTF-16 surrogates */
  else if (c >= 0xEE && c <= 0xEF)
    n = 3;
  else if (c == 0xF0)
    n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3)
    n = 4;
  else if (c == 0xF4)
    n = 4, hi = 0x8F;
  else
    return 0;
  if ((size_t)(end - q) < n) return 0;
  if (q[1] < lo || q[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (q[i] < 0x80 || q[i] > 0xBF) return 0;
  return n;
}

/* Parses the string whose opening quote is at ps->p; the result goes into the arena. */
static char *parse_string(parser_t *ps, size_t *len) {
  const char *q = ps->p + 1;
  /* Find the closing quote first: the decoded string is never longer than the raw one. */
  const char *e = q;
  while (e < ps->end && *e != '"') e += (*e == '\\' && e + 1 < ps->end) ? 2 : 1;
  if (e >= ps->end) {
    fail(ps, "unterminated string");
    return NULL;
  }
  char *out = arena_alloc(ps->doc, (size_t)(e - q) + 1);
  size_t o = 0;
  while (q < e) {
    unsigned char c = (unsigned char)*q;
    if (c == '\\') {
      char x = q[1];
      q += 2;
      switch (x) {
      case '"': out[o++] = '"'; break;
      case '\\': out[o++] = '\\'; break;
      case '/': out[o++] = '/'; break;
      case 'b': out[o++] = '\b'; break;
      case 'f': out[o++] = '\f'; break;
      case 'n': out[o++] = '\n'; break;
      case 'r': out[o++] = '\r'; break;
      case 't': out[o++] = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (read_hex4(ps, q, &cp) != 0) {
          ps->p = q;
          fail(ps, "bad \\u escape");
          return NULL;
        }
        q += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          ps->p = q;
          fail(ps, "lone low surrogate in \\u escape");
          return NULL;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (e - q < 6 || q[0] != '\\' || q[1] != 'u' || read_hex4(ps, q + 2, &lo) != 0 || lo < 0xDC00 ||
              lo > 0xDFFF) {
            ps->p = q;
            fail(ps, "high surrogate not followed by a low surrogate");
            return NULL;
          }
          q += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        o += put_utf8(out + o, cp);
        break;
      }
      default:
        ps->p = q - 1;
        fail(ps, "bad escape");
        return NULL;
      }
    } else if (c < 0x20) {
      ps->p = q;
      fail(ps, "control character in string");
      return NULL;
    } else if (c < 0x80) {
      out[o++] = (char)c;
      q++;
    } else {
      size_t n = utf8_seq((const unsigned char *)q, (const unsigned char *)e);
      if (n == 0) {
        ps->p = q;
        fail(ps, "invalid UTF-8");
        return NULL;
      }
      memcpy(out + o, q, n);
      o += n;
      q += n;
    }
  }
  out[o] = '\0';
  *len = o;
  ps->p = e + 1;
  return out;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser_t *ps, px_json_t *v) {
  const char *q = ps->p, *s = q;
  if (q < ps->end && *q == '-') q++;
  if (q < ps->end && *q == '0') {
    q++;
  } else if (q < ps->end && is_digit(*q)) {
    while (q < ps->end && is_digit(*q)) q++;
  } else {
    fail(ps, "bad number");
    return -1;
  }
  if (q < ps->end && *q == '.') {
    q++;
    if (q >= ps->end || !is_digit(*q)) {
      ps->p = q;
      fail(ps, "bad number: digit expected after '.'");
      return -1;
    }
    while (q < ps->end && is_digit(*q)) q++;
  }
  if (q < ps->end && (*q == 'e' || *q == 'E')) {
    q++;
    if (q < ps->end && (*q == '+' || *q == '-')) q++;
    if (q >= ps->end || !is_digit(*q)) {
      ps->p = q;
      fail(ps, "bad number: digit expected in exponent");
      return -1;
    }
    while (q < ps->end && is_digit(*q)) q++;
  }
  size_t n = (size_t)(q - s);
  char small[64];
  char *tmp = n < sizeof(small) ? small : px_malloc(n + 1);
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  double d = strtod(tmp, NULL);
  if (tmp != small) free(tmp);
  if (!isfinite(d)) {
    fail(ps, "number out of range");
    return -1;
  }
  v->type = PX_JSON_NUMBER;
  v->u.num = d;
  ps->p = q;
  return 0;
}

static int match_lit(parser_t *ps, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n) != 0) {
    fail(ps, "unexpected character");
    return -1;
  }
  ps->p += n;
  return 0;
}

/* Turns the linked children collected while parsing into an array. */
static void finish_container(parser_t *ps, px_json_t *v, px_json_t *first) {
  v->u.items = v->n ? arena_alloc(ps->doc, v->n * sizeof(px_json_t *)) : NULL;
  size_t i = 0;
  for (px_json_t *c = first; c; c = c->next) v->u.items[i++] = c;
}

static int parse_value(parser_t *ps, px_json_t *v, int depth);

static int parse_array(parser_t *ps, px_json_t *v, int depth) {
  v->type = PX_JSON_ARRAY;
  px_json_t *first = NULL, *last = NULL;
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p++;
    finish_container(ps, v, NULL);
    return 0;
  }
  for (;;) {
    px_json_t *c = arena_alloc(ps->doc, sizeof(*c));
    memset(c, 0, sizeof(*c));
    if (parse_value(ps, c, depth + 1) != 0) return -1;
    if (last)
      last->next = c;
    else
      first = c;
    last = c;
    v->n++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == ']') {
      ps->p++;
      break;
    }
    fail(ps, "expected ',' or ']'");
    return -1;
  }
  finish_container(ps, v, first);
  return 0;
}

static int parse_object(parser_t *ps, px_json_t *v, int depth) {
  v->type = PX_JSON_OBJECT;
  px_json_t *first = NULL, *last = NULL;
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
    finish_container(ps, v, NULL);
    return 0;
  }
  for (;;) {
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '"') {
      fail(ps, "expected a string key");
      return -1;
    }
    const char *key_at = ps->p;
    size_t klen;
    char *key = parse_string(ps, &klen);
    if (key == NULL) return -1;
    for (px_json_t *c = first; c; c = c->next) {
      if (c->klen == klen && memcmp(c->key, key, klen) == 0) {
        ps->p = key_at;
        fail(ps, "duplicate key \"%.*s\"", (int)PX_MIN(klen, (size_t)64), key);
        return -1;
      }
    }
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':') {
      fail(ps, "expected ':'");
      return -1;
    }
    ps->p++;
    px_json_t *c = arena_alloc(ps->doc, sizeof(*c));
    memset(c, 0, sizeof(*c));
    if (parse_value(ps, c, depth + 1) != 0) return -1;
    c->key = key;
    c->klen = klen;
    if (last)
      last->next = c;
    else
      first = c;
    last = c;
    v->n++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == '}') {
      ps->p++;
      break;
    }
    fail(ps, "expected ',' or '}'");
    return -1;
  }
  finish_container(ps, v, first);
  return 0;
}

static int parse_value(parser_t *ps, px_json_t *v, int depth) {
  skip_ws(ps);
  if (ps->p >= ps->end) {
    fail(ps, "unexpected end of input");
    return -1;
  }
  switch (*ps->p) {
  case '{':
  case '[':
    if (depth >= PX_JSON_MAX_DEPTH) {
      fail(ps, "nesting deeper than %d", PX_JSON_MAX_DEPTH);
      return -1;
    }
    return *ps->p == '{' ? parse_object(ps, v, depth) : parse_array(ps, v, depth);
  case '"':
    v->type = PX_JSON_STRING;
    v->u.s = parse_string(ps, &v->n);
    return v->u.s ? 0 : -1;
  case 't':
    v->type = PX_JSON_BOOL;
    v->u.b = 1;
    return match_lit(ps, "true");
  case 'f':
    v->type = PX_JSON_BOOL;
    v->u.b = 0;
    return match_lit(ps, "false");
  case 'n': v->type = PX_JSON_NULL; return match_lit(ps, "null");
  default:
    if (*ps->p == '-' || is_digit(*ps->p)) return parse_number(ps, v);
    fail(ps, "unexpected character");
    return -1;
  }
}

static void doc_free(doc_t *d) {
  chunk_t *c = d->chunks;
  while (c) {
    chunk_t *next = c->next;
    free(c);
    c = next;
  }
  free(d);
}

px_json_t *px_json_parse(const char *text, size_t len, char *err, size_t errlen) {
  doc_t *d = px_calloc(1, sizeof(*d));
  parser_t ps = {.p = text, .start = text, .end = text + len, .doc = d, .err = err, .errlen = errlen};
  if (err && errlen) err[0] = '\0';
  if (parse_value(&ps, &d->root, 0) == 0) {
    skip_ws(&ps);
    if (ps.p == ps.end) return &d->root;
    fail(&ps, "trailing characters after the JSON value");
  }
  doc_free(d);
  return NULL;
}

void px_json_free(px_json_t *root) {
  if (root) doc_free(PX_CONTAINER_OF(root, doc_t, root));
}

px_json_type_t px_json_type(const px_json_t *v) { return v->type; }

const char *px_json_type_name(px_json_type_t t) {
  static const char *const names[] = {"null", "boolean", "number", "string", "array", "object"};
  return (size_t)t < PX_ARRAY_SIZE(names) ? names[t] : "?";
}

const px_json_t *px_json_get(const px_json_t *obj, const char *key) {
  if (obj == NULL || obj->type != PX_JSON_OBJECT) return NULL;
  size_t klen = strlen(key);
  for (size_t i = 0; i < obj->n; i++) {
    const px_json_t *c = obj->u.items[i];
    if (c->klen == klen && memcmp(c->key, key, klen) == 0) return c;
  }
  return NULL;
}

size_t px_json_count(const px_json_t *v) {
  return v && (v->type == PX_JSON_ARRAY || v->type == PX_JSON_OBJECT) ? v->n : 0;
}

const px_json_t *px_json_at(const px_json_t *v, size_t i) {
  return i < px_json_count(v) ? v->u.items[i] : NULL;
}

const char *px_json_key_at(const px_json_t *v, size_t i, size_t *len) {
  if (v == NULL || v->type != PX_JSON_OBJECT || i >= v->n) return NULL;
  if (len) *len = v->u.items[i]->klen;
  return v->u.items[i]->key;
}

const char *px_json_str(const px_json_t *v, size_t *len) {
  if (v == NULL || v->type != PX_JSON_STRING) return NULL;
  if (len) *len = v->n;
  return v->u.s;
}

int px_json_num(const px_json_t *v, double *out) {
  if (v == NULL || v->type != PX_JSON_NUMBER) return -1;
  *out = v->u.num;
  return 0;
}

int px_json_int(const px_json_t *v, int64_t *out) {
  double d;
  if (px_json_num(v, &d) != 0) return -1;
  /* 2^63 is exact as a double; anything at or beyond it does not fit. */
  if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return -1;
  *out = (int64_t)d;
  return 0;
}

int px_json_bool(const px_json_t *v, int *out) {
  if (v == NULL || v->type != PX_JSON_BOOL) return -1;
  *out = v->u.b;
  return 0;
}

int px_json_is_null(const px_json_t *v) { return v != NULL && v->type == PX_JSON_NULL; }
