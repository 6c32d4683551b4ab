#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <uv.h>

const char *px_strerror(int err) {
  switch (err) {
#define XX(name, msg)                                                                                        \
  case PX_E##name: return msg;
    PX_ERRNO_MAP(XX)
#undef XX
  default: return uv_strerror(err);
  }
}

const char *px_err_name(int err) {
  switch (err) {
#define XX(name, msg)                                                                                        \
  case PX_E##name: return "E" #name;
    PX_ERRNO_MAP(XX)
#undef XX
  default: return uv_err_name(err);
  }
}

static void px__oom(size_t n) {
  fprintf(stderr, "outrigger: out of memory allocating %zu bytes\n", n);
  abort();
}

void *px_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (PX_UNLIKELY(p == NULL)) px__oom(n);
  return p;
}

void *px_calloc(size_t count, size_t n) {
  void *p = calloc(count ? count : 1, n ? n : 1);
  if (PX_UNLIKELY(p == NULL)) px__oom(count * n);
  return p;
}

void *px_realloc(void *old, size_t n) {
  void *p = realloc(old, n ? n : 1);
  if (PX_UNLIKELY(p == NULL)) px__oom(n);
  return p;
}

char *px_strndup(const char *s, size_t n) {
  char *p = px_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *px_strdup(const char *s) { return px_strndup(s, strlen(s)); }

/* Eight bytes with their ASCII capitals made small, each byte in its own lane: with a
 * lane's top bit cleared first, adding to it never carries into the next. */
static inline uint64_t lower8(uint64_t w) {
  uint64_t low7 = w & 0x7f7f7f7f7f7f7f7full;
  uint64_t ge_a = low7 + 0x3f3f3f3f3f3f3f3full;                /* top bit: low7 >= 'A' */
  uint64_t gt_z = low7 + 0x2525252525252525ull;                /* top bit: low7 > 'Z' */
  uint64_t upper = (ge_a ^ gt_z) & ~w & 0x8080808080808080ull; /* 'A'..'Z', and ASCII */
  return w | (upper >> 2);
}

/* Up to eight bytes as a word, without a call to memcpy for a length it cannot know:
 * two overlapping loads of four (or of one and two) cover every length. Zero-padded. */
static inline uint64_t load_tail(const char *p, size_t n) {
  uint32_t lo = 0, hi = 0;
  if (n >= 4) {
    memcpy(&lo, p, 4);
    memcpy(&hi, p + n - 4, 4);
    return (uint64_t)lo | (uint64_t)hi << ((n - 4) * 8);
  }
  if (n == 0) return 0;
  /* 1 to 3 bytes: the first, the middle and the last (some twice). */
  return (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[n / 2] << ((n / 2) * 8) |
         (uint64_t)(unsigned char)p[n - 1] << ((n - 1) * 8);
}

/* Header names are compared on every request: eight bytes at a time. */
int px_str_ieq(px_str_t a, px_str_t b) {
  if (a.n != b.n) return 0;
  size_t i = 0;
  uint64_t x, y;
  for (; i + 8 <= a.n; i += 8) {
    memcpy(&x, a.p + i, 8);
    memcpy(&y, b.p + i, 8);
    if (x != y && lower8(x) != lower8(y)) return 0;
  }
  if (i == a.n) return 1;
  x = load_tail(a.p + i, a.n - i);
  y = load_tail(b.p + i, a.n - i);
  return x == y || lower8(x) == lower8(y);
}

int px_str_ieq_cstr(px_str_t a, const char *s) { return px_str_ieq(a, (px_str_t){s, strlen(s)}); }

uint64_t px_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A fast per-thread generator for request ids; they must be unique, not secret.
 * xoshiro256** seeded from getrandom(2). */
static __thread uint64_t rng_s[4];
static __thread int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t px_rand64(void) {
  if (PX_UNLIKELY(!rng_seeded)) {
    if (getrandom(rng_s, sizeof(rng_s), 0) != (ssize_t)sizeof(rng_s)) {
      rng_s[0] = px_now_ns();
      rng_s[1] = (uint64_t)(uintptr_t)&rng_seeded;
      rng_s[2] = 0x9e3779b97f4a7c15ull;
      rng_s[3] = 0xbf58476d1ce4e5b9ull;
    }
    rng_seeded = 1;
  }
  uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
  rng_s[2] ^= rng_s[0];
  rng_s[3] ^= rng_s[1];
  rng_s[1] ^= rng_s[2];
  rng_s[0] ^= rng_s[3];
  rng_s[2] ^= t;
  rng_s[3] = rotl(rng_s[3], 45);
  return r;
}

uint64_t px_hash64(const void *p, size_t n, uint64_t seed) {
  const char *b = p;
  uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull), w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, b + i, 8);
    w *= 0x87c37b91114253d5ull;
    h ^= (w << 31) | (w >> 33);
    h = ((h << 27) | (h >> 37)) * 5 + 0x52dce729;
  }
  w = load_tail(b + i, n - i);
  return px_fmix64(h ^ w * 0x4cf5ad432745937full);
}

double px_rand01(void) { return (double)(px_rand64() >> 11) * (1.0 / 9007199254740992.0); }
