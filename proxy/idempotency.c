#include "idempotency.h"

#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_Init and friends: see below */
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

/* ---- the key ------------------------------------------------------------ */

static px_idem_key_rc_t invalid(const char **why, const char *reason) {
  if (why) *why = reason;
  return PX_IDEM_KEY_INVALID;
}

/* RFC 9110 tchar, plus ':' and '/' (which sf-tokens allow too, and keys such as
 * "order:42/1" use): a bit for each of the 128 ASCII bytes, so that a keyed request's
 * key costs a shift and a test a byte. */
#define TOKEN_BIT(c) ((uint64_t)1 << ((c)&63))
static const uint64_t token_chars[2] = {
    /* 0x00-0x3f: ! # $ % & ' * + - . / 0-9 : */
    TOKEN_BIT('!') | TOKEN_BIT('#') | TOKEN_BIT('$') | TOKEN_BIT('%') | TOKEN_BIT('&') | TOKEN_BIT('\'') |
        TOKEN_BIT('*') | TOKEN_BIT('+') | TOKEN_BIT('-') | TOKEN_BIT('.') | TOKEN_BIT('/') |
        (((uint64_t)1 << 10) - 1) << ('0' & 63) | TOKEN_BIT(':'),
    /* 0x40-0x7f: A-Z ^ _ ` a-z | ~ */
    (((uint64_t)1 << 26) - 1) << ('A' & 63) | TOKEN_BIT('^') | TOKEN_BIT('_') | TOKEN_BIT('`') |
        (((uint64_t)1 << 26) - 1) << ('a' & 63) | TOKEN_BIT('|') | TOKEN_BIT('~'),
};

/* 1 when none of the eight bytes of `w` is special in an sf-string: each is 0x20-0x7E
 * and neither '"' nor '\\'. Each test sets a lane's top bit where it holds, the way
 * strlen finds a zero byte word-wise (a lane above one that holds may be set too; that a
 * lane is set is exact). */
static int sf_plain8(uint64_t w) {
  const uint64_t ones = 0x0101010101010101ull, tops = 0x8080808080808080ull;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  uint64_t below = (w - ones * 0x20) & ~w;                    /* < 0x20 */
  uint64_t above = w | ((w & ~tops) + ones);                  /* >= 0x7F */
  uint64_t quote = (q - ones) & ~q, bslash = (b - ones) & ~b; /* == '"', == '\\' */
  return ((below | above | quote | bslash) & tops) == 0;
}

static int key_token_char(unsigned char c) { return c < 128 && (token_chars[c >> 6] >> (c & 63) & 1); }

px_idem_key_rc_t px_idem_key_parse(px_str_t value, char out[PX_IDEM_KEY_MAX], size_t *len, const char **why) {
  const unsigned char *p = (const unsigned char *)value.p, *end = p + value.n;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
  if (p == end) return invalid(why, "empty Idempotency-Key");
  size_t n = 0;
  if (*p != '"') {
    n = (size_t)(end - p);
    for (size_t i = 0; i < n && i <= PX_IDEM_KEY_MAX; i++)
      if (!key_token_char(p[i]))
        return invalid(why, "Idempotency-Key is neither a quoted string nor a token");
    if (n > PX_IDEM_KEY_MAX) return invalid(why, "Idempotency-Key longer than 255 bytes");
    memcpy(out, p, n);
    *len = n;
    return PX_IDEM_KEY_OK;
  }
  p++;
  /* Eight bytes at a time while none is special (what the UUIDs and ULIDs of nearly
   * every key are); the loop below takes the rest, and anything special, a byte at a
   * time. */
  while (end - p >= 9 && n + 8 <= PX_IDEM_KEY_MAX) {
    uint64_t w;
    memcpy(&w, p, 8);
    if (!sf_plain8(w)) break;
    memcpy(out + n, p, 8);
    n += 8;
    p += 8;
  }
  for (;; p++) {
    if (p == end) return invalid(why, "unterminated Idempotency-Key string");
    unsigned char c = *p;
    if (c == '"') break;
    if (c == '\\') {
      if (p + 1 == end || (p[1] != '"' && p[1] != '\\')) return invalid(why, "bad escape in Idempotency-Key");
      c = *++p;
    } else if (c < 0x20 || c > 0x7e) {
      return invalid(why, "control or non-ASCII byte in Idempotency-Key");
    }
    if (n == PX_IDEM_KEY_MAX) return invalid(why, "Idempotency-Key longer than 255 bytes");
    out[n++] = (char)c;
  }
  if (p + 1 != end) return invalid(why, "parameters or data after the Idempotency-Key string");
  if (n == 0) return invalid(why, "empty Idempotency-Key");
  *len = n;
  return PX_IDEM_KEY_OK;
}

/* ---- SHA-256 ------------------------------------------------------------ */

/* SHA256_Init/Update/Final rather than EVP: OpenSSL 3 marks them deprecated in favour
 * of EVP, but an EVP digest goes through the provider layer, which costs an allocation
 * and a dispatch per context and about 0.5 µs a hash on this path (a keyed request makes
 * two), against a plain struct here that the same SHA-NI/AVX block code fills. They are
 * kept in OpenSSL 3.x; if a later OpenSSL drops them, this file is the one to change. */
_Static_assert(sizeof(SHA256_CTX) <= sizeof(((px_sha256_t *)0)->opaque),
               "px_sha256_t is too small for SHA256_CTX");
_Static_assert(_Alignof(SHA256_CTX) <= 8, "px_sha256_t is not aligned enough for SHA256_CTX");

static SHA256_CTX *ctx_of(px_sha256_t *h) { return (SHA256_CTX *)(void *)h->opaque; }

void px_sha256_init(px_sha256_t *h) {
  SHA256_Init(ctx_of(h));
  h->started = 1;
}

void px_sha256_update(px_sha256_t *h, const void *p, size_t n) {
  if (n) SHA256_Update(ctx_of(h), p, n);
}

void px_sha256_final(px_sha256_t *h, uint8_t out[PX_SHA256_LEN]) {
  SHA256_Final(out, ctx_of(h));
  h->started = 0;
}

void px_sha256_discard(px_sha256_t *h) {
  if (h->started) OPENSSL_cleanse(h->opaque, sizeof(h->opaque));
  h->started = 0;
}

void px_sha256(const void *p, size_t n, uint8_t out[PX_SHA256_LEN]) { SHA256(p, n, out); }

/* ---- the fingerprint ---------------------------------------------------- */

/* Any fixed basis will do; this one is SHA-256's first two initial hash words, so it is
 * plainly not chosen to collide anything. */
#define HEAD_SEED 0x6a09e667bb67ae85ull

uint64_t px_idem_fp_head(px_str_t method, px_str_t target) {
  return px_hash64(target.p, target.n, px_hash64(method.p, method.n, HEAD_SEED));
}

void px_idem_fp_start(px_sha256_t *h, px_str_t method, px_str_t target) {
  px_sha256_init(h);
  char b[256]; /* one update rather than four, for the targets of nearly every request */
  if (method.n + target.n + 2 <= sizeof(b)) {
    memcpy(b, method.p, method.n);
    b[method.n] = ' ';
    memcpy(b + method.n + 1, target.p, target.n);
    b[method.n + 1 + target.n] = '\0';
    px_sha256_update(h, b, method.n + target.n + 2);
    return;
  }
  px_sha256_update(h, method.p, method.n);
  px_sha256_update(h, " ", 1);
  px_sha256_update(h, target.p, target.n);
  px_sha256_update(h, "", 1); /* the NUL */
}

/* ---- the scope and the store key ---------------------------------------- */

void px_idem_scope_none(px_idem_scope_t *s) { memset(s->b, 0, sizeof(s->b)); }

void px_idem_scope_authorization(px_str_t value, px_idem_scope_t *s) { px_sha256(value.p, value.n, s->b); }

void px_idem_scope_identity(px_str_t identity, px_idem_scope_t *s) {
  static const char tag[] = "\0identity"; /* and the literal's own NUL: "\0identity\0" */
  px_sha256_t h;
  px_sha256_init(&h);
  px_sha256_update(&h, tag, sizeof(tag));
  px_sha256_update(&h, identity.p, identity.n);
  px_sha256_final(&h, s->b);
}

size_t px_idem_store_key(const px_idem_scope_t *s, const char *key, size_t keylen,
                         char out[PX_IDEM_STORE_KEY_MAX]) {
  memcpy(out, s->b, sizeof(s->b));
  keylen = PX_MIN(keylen, (size_t)PX_IDEM_KEY_MAX);
  if (key != out + sizeof(s->b)) memcpy(out + sizeof(s->b), key, keylen);
  return sizeof(s->b) + keylen;
}

/* ---- the decisions ------------------------------------------------------ */

px_idem_admit_t px_idem_admit(const px_idempotency_conf_t *c, int method, int has_key) {
  if (!c->enabled || method < 0 || method >= 32 || !(c->methods & (1u << method))) return PX_IDEM_ADMIT_PASS;
  if (has_key) return PX_IDEM_ADMIT_KEYED;
  return c->required ? PX_IDEM_ADMIT_MISSING : PX_IDEM_ADMIT_PASS;
}

px_idem_decision_t px_idem_decide_head(px_idem_found_t found, uint64_t stored_head, uint64_t req_head) {
  if (found == PX_IDEM_FOUND_NOTHING) return PX_IDEM_RUN;
  if (stored_head != req_head) return PX_IDEM_MISMATCH;
  return found == PX_IDEM_FOUND_IN_FLIGHT ? PX_IDEM_CONFLICT : PX_IDEM_NEED_BODY;
}

px_idem_decision_t px_idem_decide_body(const uint8_t stored_sha[PX_SHA256_LEN],
                                       const uint8_t req_sha[PX_SHA256_LEN]) {
  return memcmp(stored_sha, req_sha, PX_SHA256_LEN) == 0 ? PX_IDEM_REPLAY : PX_IDEM_MISMATCH;
}

int px_idem_response_storable(int status, size_t header_bytes, uint64_t body_bytes,
                              size_t max_response_bytes) {
  if (status < 200 || status > 499 || status == 408 || status == 425 || status == 429) return 0;
  return header_bytes <= max_response_bytes && body_bytes <= max_response_bytes - header_bytes;
}
