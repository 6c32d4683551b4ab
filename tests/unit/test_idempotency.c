/* The inbound idempotency rules (proxy/idempotency.h). What a user relies on: an
 * Idempotency-Key is read as the draft's quoted string or as a bare token, and anything
 * else is refused with 400; two requests are the same one only with the same method,
 * target and body; one client's keys never meet another's; a repeat while the first runs
 * gets 409, a key reused for another request 422, and only a final, non-5xx answer that
 * fits max_response_bytes is stored. */
#include <criterion/criterion.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idempotency.h"

static px_str_t S(const char *s) { return (px_str_t){s, strlen(s)}; }

/* LeakSanitizer's check on demand, there in the Sanitize build (weak: absent elsewhere);
 * Criterion's test processes end without the one LeakSanitizer makes at exit. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static void expect_no_leaks(void) {
  if (__lsan_do_recoverable_leak_check)
    cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "leaks (see above)");
}

/* Parses `v` into a buffer of exactly PX_IDEM_KEY_MAX bytes on the heap, so that ASan
 * sees any write past it. */
static px_idem_key_rc_t parse_n(const char *v, size_t vn, char *key, size_t *keylen) {
  char *out = malloc(PX_IDEM_KEY_MAX);
  const char *why = NULL;
  size_t n = 12345;
  px_idem_key_rc_t rc = px_idem_key_parse((px_str_t){v, vn}, out, &n, &why);
  if (rc == PX_IDEM_KEY_OK) {
    cr_assert(n >= 1 && n <= PX_IDEM_KEY_MAX);
    memcpy(key, out, n);
    key[n] = '\0';
    *keylen = n;
  } else {
    cr_assert(why != NULL && *why != '\0', "an invalid key comes with a reason");
    cr_assert_eq(n, 12345, "*len is left alone on failure");
  }
  free(out);
  return rc;
}

static px_idem_key_rc_t parse(const char *v, char *key, size_t *keylen) {
  return parse_n(v, strlen(v), key, keylen);
}

static void expect_key(const char *v, const char *want) {
  char key[PX_IDEM_KEY_MAX + 1];
  size_t n = 0;
  cr_expect_eq(parse(v, key, &n), PX_IDEM_KEY_OK, "[%s] should be accepted", v);
  cr_expect_eq(n, strlen(want), "[%s]", v);
  cr_expect_str_eq(key, want, "[%s]", v);
}

static void expect_invalid_n(const char *v, size_t vn) {
  char key[PX_IDEM_KEY_MAX + 1];
  size_t n = 0;
  cr_expect_eq(parse_n(v, vn, key, &n), PX_IDEM_KEY_INVALID, "[%.*s] should be refused", (int)vn, v);
}

static void expect_invalid(const char *v) { expect_invalid_n(v, strlen(v)); }

/* ---- the key ------------------------------------------------------------ */

Test(idem_key, quoted_strings) {
  expect_key("\"abc\"", "abc");
  expect_key("\"8e03978e-40d5-43e8-bc93-6894a57f9324\"", "8e03978e-40d5-43e8-bc93-6894a57f9324");
  expect_key("\"a b\"", "a b"); /* SP is a string character */
  expect_key("\" \"", " ");
  expect_key("\"x;y=1,z\"", "x;y=1,z"); /* inside the quotes these are just bytes */
  expect_key("  \"abc\"", "abc");       /* optional whitespace around the item */
  expect_key("\"abc\"  ", "abc");
  expect_key("\t\"abc\"\t ", "abc");
}

Test(idem_key, every_printable_byte_in_a_string) {
  char v[128], want[128];
  size_t n = 0, w = 0;
  v[n++] = '"';
  for (int c = 0x20; c <= 0x7e; c++) {
    if (c == '"' || c == '\\') v[n++] = '\\';
    v[n++] = (char)c;
    want[w++] = (char)c;
  }
  v[n++] = '"';
  v[n] = '\0';
  want[w] = '\0';
  expect_key(v, want);
}

/* Each byte value at each place of a string long enough to be read eight bytes at a time
 * (and at its very end), against the sf-string rule as the draft writes it. */
Test(idem_key, every_byte_at_every_place_of_a_long_string) {
  for (int c = 0; c < 256; c++) {
    int ok = c >= 0x20 && c <= 0x7e && c != '"' && c != '\\';
    for (size_t at = 0; at < 27; at++) {
      char v[32], key[PX_IDEM_KEY_MAX + 1];
      size_t n = 0;
      v[0] = '"';
      memset(v + 1, 'a', 27);
      v[1 + at] = (char)c;
      v[28] = '"';
      cr_expect_eq(parse_n(v, 29, key, &n), ok ? PX_IDEM_KEY_OK : PX_IDEM_KEY_INVALID, "byte 0x%02x at %zu",
                   c, at);
      if (ok) cr_expect(n == 27 && memcmp(key, v + 1, 27) == 0, "byte 0x%02x at %zu: the key", c, at);
    }
  }
}

Test(idem_key, escapes) {
  expect_key("\"a\\\"b\"", "a\"b");
  expect_key("\"a\\\\b\"", "a\\b");
  expect_key("\"\\\\\"", "\\");
  expect_key("\"\\\"\\\"\"", "\"\"");
  expect_key("\"0123456789abcdef\\\"0123456789\"", "0123456789abcdef\"0123456789"); /* past a word or two */
  expect_key("\"0123456789abcdef\\\\\"", "0123456789abcdef\\");
  expect_invalid("\"a\\b\""); /* only \" and \\ */
  expect_invalid("\"a\\n\"");
  expect_invalid("\"a\\ \"");
  expect_invalid("\"abc\\\""); /* the escaped quote does not close it */
  expect_invalid("\"abc\\");   /* a backslash at the end */
}

Test(idem_key, bare_tokens) {
  expect_key("abc", "abc");
  expect_key("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324");
  expect_key("01HGW2N7EH8QYZ5KJ3X4A9B6CD", "01HGW2N7EH8QYZ5KJ3X4A9B6CD");
  expect_key("order:42/1", "order:42/1");
  expect_key("!#$%&'*+-.^_`|~", "!#$%&'*+-.^_`|~");
  expect_key("7", "7");
  expect_key("  tok\t", "tok");
}

Test(idem_key, quoted_and_bare_are_one_key) {
  char a[PX_IDEM_KEY_MAX + 1], b[PX_IDEM_KEY_MAX + 1];
  size_t an = 0, bn = 0;
  cr_assert_eq(parse("\"k-1\"", a, &an), PX_IDEM_KEY_OK);
  cr_assert_eq(parse("k-1", b, &bn), PX_IDEM_KEY_OK);
  cr_expect(an == bn && memcmp(a, b, an) == 0);
}

Test(idem_key, empty_forms) {
  expect_invalid("");
  expect_invalid(" ");
  expect_invalid(" \t ");
  expect_invalid("\"\"");
  expect_invalid("  \"\"  ");
}

Test(idem_key, strings_that_do_not_end_right) {
  expect_invalid("\"");
  expect_invalid("\"abc");
  expect_invalid("\"abc\";p=1"); /* parameters */
  expect_invalid("\"abc\"; p");
  expect_invalid("\"abc\" x");
  expect_invalid("\"abc\"\"def\"");
  expect_invalid("\"abc\",\"def\""); /* a list, not an item */
  expect_invalid("\"abc\"x");
}

Test(idem_key, control_and_non_ascii_bytes_in_strings) {
  expect_invalid("\"a\tb\"");
  expect_invalid("\"a\x01q\"");
  expect_invalid("\"a\x1fq\"");
  expect_invalid("\"a\x7fq\"");
  expect_invalid("\"caf\xc3\xa9\"");
  expect_invalid_n("\"a\0b\"", 5);
  expect_invalid("\"a\rb\"");
  expect_invalid("\"a\nb\"");
}

Test(idem_key, bytes_a_token_cannot_hold) {
  expect_invalid("ab cd");
  expect_invalid("a,b");
  expect_invalid("a;b");
  expect_invalid("k;p=1");
  expect_invalid("a\\b");
  expect_invalid("ab\"c");
  expect_invalid("abc\"");
  expect_invalid("a(b)");
  expect_invalid("a=b");
  expect_invalid("a@b");
  expect_invalid("a[b]");
  expect_invalid("a{b}");
  expect_invalid("a?b");
  expect_invalid("a<b>");
  expect_invalid("a\x7f");
  expect_invalid("caf\xc3\xa9");
  expect_invalid_n("a\0b", 3);
}

/* Every byte value, alone and inside a token, against RFC 9110's tchar list (plus ':'
 * and '/') as written there. */
Test(idem_key, every_byte_in_a_token) {
  static const char allowed[] = "!#$%&'*+-.^_`|~:/0123456789"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  for (int c = 0; c < 256; c++) {
    int ok = c != 0 && memchr(allowed, c, sizeof(allowed) - 1) != NULL;
    int ws = c == ' ' || c == '\t';
    char v[4] = {'a', (char)c, 'z', '\0'};
    char out[PX_IDEM_KEY_MAX + 1];
    size_t n = 0;
    cr_expect_eq(px_idem_key_parse((px_str_t){v, 3}, out, &n, NULL),
                 ok ? PX_IDEM_KEY_OK : PX_IDEM_KEY_INVALID, "byte 0x%02x inside a token", c);
    if (ok) cr_expect(n == 3 && memcmp(out, v, 3) == 0, "byte 0x%02x: the key is not the token", c);
    if (ws || c == '"') continue; /* alone, it is whitespace or opens a string */
    cr_expect_eq(px_idem_key_parse((px_str_t){v + 1, 1}, out, &n, NULL),
                 ok ? PX_IDEM_KEY_OK : PX_IDEM_KEY_INVALID, "byte 0x%02x alone", c);
  }
}

Test(idem_key, length_limits) {
  char v[2 * PX_IDEM_KEY_MAX + 8], want[PX_IDEM_KEY_MAX + 2];
  memset(want, 'k', sizeof(want));
  want[PX_IDEM_KEY_MAX] = '\0';
  /* a token of 255 bytes, and of 256 */
  memset(v, 'k', PX_IDEM_KEY_MAX);
  v[PX_IDEM_KEY_MAX] = '\0';
  expect_key(v, want);
  v[PX_IDEM_KEY_MAX] = 'k';
  v[PX_IDEM_KEY_MAX + 1] = '\0';
  expect_invalid(v);
  /* a string of 255 bytes, and of 256 */
  v[0] = '"';
  memset(v + 1, 'k', PX_IDEM_KEY_MAX);
  v[PX_IDEM_KEY_MAX + 1] = '"';
  v[PX_IDEM_KEY_MAX + 2] = '\0';
  expect_key(v, want);
  v[PX_IDEM_KEY_MAX + 1] = 'k';
  v[PX_IDEM_KEY_MAX + 2] = '"';
  v[PX_IDEM_KEY_MAX + 3] = '\0';
  expect_invalid(v);
  /* the limit is on the key, not on the field: 255 escaped bytes take 512 */
  size_t n = 0;
  v[n++] = '"';
  for (int i = 0; i < PX_IDEM_KEY_MAX; i++) {
    v[n++] = '\\';
    v[n++] = '\\';
  }
  v[n++] = '"';
  v[n] = '\0';
  memset(want, '\\', PX_IDEM_KEY_MAX);
  expect_key(v, want);
  v[n - 1] = '\\';
  v[n++] = '\\';
  v[n++] = '"';
  v[n] = '\0';
  expect_invalid(v);
  /* surrounding whitespace does not count */
  memset(v, ' ', 4);
  memset(v + 4, 'k', PX_IDEM_KEY_MAX);
  memset(v + 4 + PX_IDEM_KEY_MAX, '\t', 3);
  v[7 + PX_IDEM_KEY_MAX] = '\0';
  memset(want, 'k', PX_IDEM_KEY_MAX);
  expect_key(v, want);
}

Test(idem_key, why_may_be_null) {
  char out[PX_IDEM_KEY_MAX];
  size_t n = 0;
  cr_expect_eq(px_idem_key_parse(S("\"bad"), out, &n, NULL), PX_IDEM_KEY_INVALID);
  cr_expect_eq(px_idem_key_parse(S("good"), out, &n, NULL), PX_IDEM_KEY_OK);
  cr_expect_eq(n, 4);
}

/* ---- SHA-256 ------------------------------------------------------------ */

static void hex(const uint8_t *d, char out[2 * PX_SHA256_LEN + 1]) {
  for (int i = 0; i < PX_SHA256_LEN; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void expect_digest(const uint8_t *d, const char *want) {
  char h[2 * PX_SHA256_LEN + 1];
  hex(d, h);
  cr_expect_str_eq(h, want);
}

Test(idem_sha256, known_vectors) {
  uint8_t d[PX_SHA256_LEN];
  px_sha256("abc", 3, d);
  expect_digest(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  px_sha256("", 0, d);
  expect_digest(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  px_sha256(m, strlen(m), d);
  expect_digest(d, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(idem_sha256, incremental_equals_one_shot) {
  /* a million 'a's, fed in runs of every size from 0 to 999 */
  size_t total = 1000000;
  char *a = malloc(total);
  memset(a, 'a', total);
  px_sha256_t h = {0};
  px_sha256_init(&h);
  size_t off = 0;
  for (size_t run = 0; off < total; run = (run + 1) % 1000) {
    size_t n = PX_MIN(run, total - off);
    px_sha256_update(&h, a + off, n);
    off += n;
  }
  uint8_t inc[PX_SHA256_LEN], one[PX_SHA256_LEN];
  px_sha256_final(&h, inc);
  cr_expect_eq(h.started, 0, "final ends the digest");
  expect_digest(inc, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  px_sha256(a, total, one);
  cr_expect_eq(memcmp(inc, one, PX_SHA256_LEN), 0);
  /* and a byte at a time over arbitrary bytes */
  for (size_t i = 0; i < 4096; i++) a[i] = (char)(i * 131 + 7);
  px_sha256_init(&h);
  for (size_t i = 0; i < 4096; i++) px_sha256_update(&h, a + i, 1);
  px_sha256_final(&h, inc);
  px_sha256(a, 4096, one);
  cr_expect_eq(memcmp(inc, one, PX_SHA256_LEN), 0);
  free(a);
}

Test(idem_sha256, discard_is_safe_whatever_the_state) {
  px_sha256_t h = {0};
  px_sha256_discard(&h); /* never started */
  px_sha256_init(&h);
  px_sha256_update(&h, "partial", 7);
  px_sha256_discard(&h); /* abandoned midway: wiped */
  cr_expect_eq(h.started, 0);
  px_sha256_discard(&h); /* twice */
  uint8_t d[PX_SHA256_LEN];
  px_sha256_init(&h);
  px_sha256_final(&h, d);
  px_sha256_discard(&h); /* after final */
  expect_digest(d, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  expect_no_leaks();
}

/* ---- the fingerprint ---------------------------------------------------- */

static void fp_sha(const char *method, const char *target, const char *body, size_t bodylen,
                   uint8_t out[PX_SHA256_LEN]) {
  px_sha256_t h;
  px_idem_fp_start(&h, S(method), S(target));
  px_sha256_update(&h, body, bodylen);
  px_sha256_final(&h, out);
}

Test(idem_fp, sha_is_of_method_space_target_nul_body) {
  uint8_t a[PX_SHA256_LEN], b[PX_SHA256_LEN];
  fp_sha("POST", "/pay?order=7", "{\"amount\":10}", 13, a);
  px_sha256("POST /pay?order=7\0{\"amount\":10}", 31, b);
  cr_expect_eq(memcmp(a, b, PX_SHA256_LEN), 0);
  fp_sha("POST", "/pay", "", 0, a); /* a bodiless request */
  px_sha256("POST /pay", 10, b);    /* with the literal's own NUL */
  cr_expect_eq(memcmp(a, b, PX_SHA256_LEN), 0);
}

Test(idem_fp, sha_tells_the_parts_apart) {
  uint8_t base[PX_SHA256_LEN], other[PX_SHA256_LEN];
  fp_sha("POST", "/pay", "{\"amount\":10}", 13, base);
  fp_sha("POST", "/pay", "{\"amount\":11}", 13, other);
  cr_expect_neq(memcmp(base, other, PX_SHA256_LEN), 0, "body");
  fp_sha("POST", "/pay", "", 0, other);
  cr_expect_neq(memcmp(base, other, PX_SHA256_LEN), 0, "no body");
  fp_sha("PATCH", "/pay", "{\"amount\":10}", 13, other);
  cr_expect_neq(memcmp(base, other, PX_SHA256_LEN), 0, "method");
  fp_sha("POST", "/pay?", "{\"amount\":10}", 13, other);
  cr_expect_neq(memcmp(base, other, PX_SHA256_LEN), 0, "target");
  /* where the target ends and the body starts is fixed by the NUL */
  fp_sha("POST", "/pa", "y{\"amount\":10}", 14, other);
  cr_expect_neq(memcmp(base, other, PX_SHA256_LEN), 0, "the target's last byte moved into the body");
  fp_sha("POST", "/pay", "{\"amount\":10}", 13, other);
  cr_expect_eq(memcmp(base, other, PX_SHA256_LEN), 0, "and the same request is the same");
}

/* Short targets are hashed from a copy, long ones in place: the same digest either way. */
Test(idem_fp, sha_of_targets_of_every_length) {
  char t[600], m[640];
  for (size_t n = 1; n < sizeof(t); n += 7) {
    memset(t, 'p', n);
    t[0] = '/';
    memcpy(m, "PUT ", 4);
    memcpy(m + 4, t, n);
    m[4 + n] = '\0';
    memcpy(m + 5 + n, "body", 4);
    uint8_t a[PX_SHA256_LEN], b[PX_SHA256_LEN];
    px_sha256_t h;
    px_idem_fp_start(&h, S("PUT"), (px_str_t){t, n});
    px_sha256_update(&h, "body", 4);
    px_sha256_final(&h, a);
    px_sha256(m, 9 + n, b);
    cr_assert_eq(memcmp(a, b, PX_SHA256_LEN), 0, "target of %zu bytes", n);
  }
}

Test(idem_fp, head_differs_by_method_and_by_target) {
  uint64_t base = px_idem_fp_head(S("POST"), S("/pay"));
  cr_expect_neq(base, px_idem_fp_head(S("PATCH"), S("/pay")), "method");
  cr_expect_neq(base, px_idem_fp_head(S("POST"), S("/pay/")), "path");
  cr_expect_neq(base, px_idem_fp_head(S("POST"), S("/pay?x=1")), "query");
  cr_expect_neq(base, px_idem_fp_head(S("POST"), S("/Pay")), "targets are compared as sent");
  cr_expect_neq(base, px_idem_fp_head(S("POS"), S("T/pay")), "the split between method and target");
  cr_expect_eq(base, px_idem_fp_head(S("POST"), S("/pay")), "and the same request is the same");
}

/* Unseeded: the same in every process, so that a shared store can compare it. */
Test(idem_fp, head_is_fixed) {
  cr_expect_eq(px_idem_fp_head(S("POST"), S("/pay")),
               px_hash64("/pay", 4, px_hash64("POST", 4, 0x6a09e667bb67ae85ull)));
}

Test(idem_fp, head_digests_of_many_targets_do_not_collide) {
  enum { N = 20000 };
  uint64_t *h = malloc(N * sizeof(*h));
  char t[32];
  for (int i = 0; i < N; i++) {
    int n = snprintf(t, sizeof(t), "/orders/%d", i);
    h[i] = px_idem_fp_head(S("POST"), (px_str_t){t, (size_t)n});
  }
  int same = 0;
  for (int i = 0; i < N; i++)
    for (int j = i + 1; j < N; j++) same += h[i] == h[j];
  cr_expect_eq(same, 0);
  free(h);
}

/* ---- the scope and the store key ---------------------------------------- */

Test(idem_scope, none_is_zero_and_authorization_is_its_digest) {
  px_idem_scope_t s, z;
  memset(&s, 0xaa, sizeof(s));
  px_idem_scope_none(&s);
  memset(&z, 0, sizeof(z));
  cr_expect_eq(memcmp(&s, &z, sizeof(s)), 0);
  uint8_t d[PX_SHA256_LEN];
  px_idem_scope_authorization(S("Bearer abc"), &s);
  px_sha256("Bearer abc", 10, d);
  cr_expect_eq(memcmp(s.b, d, PX_SHA256_LEN), 0);
  px_idem_scope_t t;
  px_idem_scope_authorization(S("Bearer abd"), &t);
  cr_expect_neq(memcmp(&s, &t, sizeof(s)), 0);
  px_idem_scope_authorization(S(""), &t);
  cr_expect_neq(memcmp(&t, &z, sizeof(t)), 0, "an empty Authorization is not no Authorization");
}

Test(idem_scope, identity_never_meets_an_authorization_value) {
  px_idem_scope_t id, auth, z = {{0}};
  px_idem_scope_identity(S("spiffe://mesh.local/edge"), &id);
  px_idem_scope_authorization(S("spiffe://mesh.local/edge"), &auth);
  cr_expect_neq(memcmp(&id, &auth, sizeof(id)), 0);
  cr_expect_neq(memcmp(&id, &z, sizeof(id)), 0);
  uint8_t d[PX_SHA256_LEN];
  px_sha256("\0identity\0spiffe://mesh.local/edge", 34, d);
  cr_expect_eq(memcmp(id.b, d, PX_SHA256_LEN), 0);
}

Test(idem_scope, store_key_format) {
  char out[PX_IDEM_STORE_KEY_MAX];
  px_idem_scope_t s;
  px_idem_scope_none(&s);
  size_t n = px_idem_store_key(&s, "k-1", 3, out);
  cr_expect_eq(n, 32 + 3);
  cr_expect_eq(memcmp(out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0k-1", n), 0);
  px_idem_scope_authorization(S("abc"), &s); /* SHA-256("abc"), ba7816bf... */
  n = px_idem_store_key(&s, "a:b", 3, out);
  cr_expect_eq(n, 32 + 3);
  cr_expect_eq((unsigned char)out[0], 0xba);
  cr_expect_eq((unsigned char)out[31], 0xad);
  cr_expect_eq(memcmp(out + 32, "a:b", 3), 0);
  char key[PX_IDEM_KEY_MAX];
  memset(key, 'x', sizeof(key));
  char *big = malloc(PX_IDEM_STORE_KEY_MAX); /* exactly the maximum, for ASan */
  cr_expect_eq(px_idem_store_key(&s, key, sizeof(key), big), PX_IDEM_STORE_KEY_MAX);
  cr_expect_eq(memcmp(big + 32, key, sizeof(key)), 0);
  free(big);
}

Test(idem_scope, one_key_two_clients_two_store_keys) {
  char a[PX_IDEM_STORE_KEY_MAX], b[PX_IDEM_STORE_KEY_MAX];
  px_idem_scope_t sa, sb;
  px_idem_scope_authorization(S("Bearer alice"), &sa);
  px_idem_scope_authorization(S("Bearer bob"), &sb);
  size_t an = px_idem_store_key(&sa, "k", 1, a), bn = px_idem_store_key(&sb, "k", 1, b);
  cr_expect_eq(an, bn);
  cr_expect_neq(memcmp(a, b, an), 0);
}

/* ---- the decisions ------------------------------------------------------ */

static px_idempotency_conf_t conf(void) {
  return (px_idempotency_conf_t){.enabled = 1,
                                 .methods = (1u << HTTP_POST) | (1u << HTTP_PATCH),
                                 .required = 0,
                                 .ttl_ms = 86400000,
                                 .max_entries = 100000,
                                 .max_response_bytes = 65536};
}

Test(idem_decide, admit) {
  px_idempotency_conf_t c = conf();
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 1), PX_IDEM_ADMIT_KEYED);
  cr_expect_eq(px_idem_admit(&c, HTTP_PATCH, 1), PX_IDEM_ADMIT_KEYED);
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 0), PX_IDEM_ADMIT_PASS, "keyless, not required");
  cr_expect_eq(px_idem_admit(&c, HTTP_GET, 1), PX_IDEM_ADMIT_PASS, "another method, key or not");
  cr_expect_eq(px_idem_admit(&c, HTTP_PUT, 0), PX_IDEM_ADMIT_PASS);
  cr_expect_eq(px_idem_admit(&c, 40, 1), PX_IDEM_ADMIT_PASS, "methods past 31 are never in the mask");
  cr_expect_eq(px_idem_admit(&c, -1, 1), PX_IDEM_ADMIT_PASS);
  c.required = 1;
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 0), PX_IDEM_ADMIT_MISSING);
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 1), PX_IDEM_ADMIT_KEYED);
  cr_expect_eq(px_idem_admit(&c, HTTP_GET, 0), PX_IDEM_ADMIT_PASS, "required only for its methods");
  c.enabled = 0;
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 0), PX_IDEM_ADMIT_PASS, "disabled: nothing is required");
  cr_expect_eq(px_idem_admit(&c, HTTP_POST, 1), PX_IDEM_ADMIT_PASS);
  c = conf();
  c.methods |= 1u << 31;
  cr_expect_eq(px_idem_admit(&c, 31, 1), PX_IDEM_ADMIT_KEYED, "bit 31 is a method too");
}

Test(idem_decide, head) {
  uint64_t a = px_idem_fp_head(S("POST"), S("/pay")), b = px_idem_fp_head(S("POST"), S("/refund"));
  cr_expect_eq(px_idem_decide_head(PX_IDEM_FOUND_NOTHING, 0, a), PX_IDEM_RUN);
  cr_expect_eq(px_idem_decide_head(PX_IDEM_FOUND_IN_FLIGHT, a, a), PX_IDEM_CONFLICT);
  cr_expect_eq(px_idem_decide_head(PX_IDEM_FOUND_IN_FLIGHT, a, b), PX_IDEM_MISMATCH);
  cr_expect_eq(px_idem_decide_head(PX_IDEM_FOUND_COMPLETED, a, a), PX_IDEM_NEED_BODY);
  cr_expect_eq(px_idem_decide_head(PX_IDEM_FOUND_COMPLETED, a, b), PX_IDEM_MISMATCH);
}

Test(idem_decide, body) {
  uint8_t a[PX_SHA256_LEN], b[PX_SHA256_LEN], e[PX_SHA256_LEN];
  fp_sha("POST", "/pay", "one", 3, a);
  fp_sha("POST", "/pay", "two", 3, b);
  fp_sha("POST", "/pay", "", 0, e);
  cr_expect_eq(px_idem_decide_body(a, a), PX_IDEM_REPLAY);
  cr_expect_eq(px_idem_decide_body(a, b), PX_IDEM_MISMATCH);
  cr_expect_eq(px_idem_decide_body(e, e), PX_IDEM_REPLAY);
  cr_expect_eq(px_idem_decide_body(e, a), PX_IDEM_MISMATCH, "a body where the first had none");
}

Test(idem_decide, storable_statuses) {
  int kept[] = {200, 201, 202, 204, 301, 304, 400, 401, 403, 404, 409, 410, 422, 499};
  int not_kept[] = {100, 101, 103, 199, 408, 425, 429, 500, 502, 503, 504, 599, 0, -1, 600};
  for (size_t i = 0; i < PX_ARRAY_SIZE(kept); i++)
    cr_expect(px_idem_response_storable(kept[i], 10, 10, 1024), "%d is kept", kept[i]);
  for (size_t i = 0; i < PX_ARRAY_SIZE(not_kept); i++)
    cr_expect(!px_idem_response_storable(not_kept[i], 10, 10, 1024), "%d is not kept", not_kept[i]);
}

Test(idem_decide, storable_sizes_count_headers_and_body) {
  cr_expect(px_idem_response_storable(200, 24, 1000, 1024), "exactly the limit");
  cr_expect(!px_idem_response_storable(200, 25, 1000, 1024), "one over, by the headers");
  cr_expect(!px_idem_response_storable(200, 24, 1001, 1024), "one over, by the body");
  cr_expect(px_idem_response_storable(200, 1024, 0, 1024));
  cr_expect(!px_idem_response_storable(200, 1025, 0, 1024), "headers alone over the limit");
  cr_expect(!px_idem_response_storable(200, 2000, 0, 1024));
  cr_expect(!px_idem_response_storable(200, 0, UINT64_MAX, 1024), "an announced length too large");
  cr_expect(px_idem_response_storable(204, 0, 0, 0), "an empty answer fits a zero limit");
  cr_expect(!px_idem_response_storable(200, 1, 0, 0));
}
