/* Small things every part of Outrigger uses: error codes, allocation that aborts
 * on exhaustion, string slices. Nothing here holds state. */
#ifndef PX_CORE_H
#define PX_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PX_VERSION "0.1.0"

#define PX_LIKELY(x) __builtin_expect(!!(x), 1)
#define PX_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PX_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PX_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PX_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* Outrigger's own error codes, negative like libuv's (which pass through unchanged;
 * ours start far below libuv's range so the two never collide). */
#define PX_ERRNO_MAP(XX)                                                                                     \
  XX(CONFIG, "configuration error")                                                                          \
  XX(USAGE, "usage error")                                                                                   \
  XX(PARSE, "malformed input")                                                                               \
  XX(TOOLARGE, "input too large")                                                                            \
  XX(NOROUTE, "no route matched")                                                                            \
  XX(NOENDPOINT, "no usable endpoint")                                                                       \
  XX(OVERFLOW, "limit reached")                                                                              \
  XX(TIMEOUT, "timed out")                                                                                   \
  XX(UPSTREAM, "upstream failure")                                                                           \
  XX(NOTFOUND, "not found")

typedef enum {
  PX__EBASE = -30000,
#define XX(name, msg) PX_E##name,
  PX_ERRNO_MAP(XX)
#undef XX
      PX__ELAST
} px_errno_t;

/* Message for a PX_E* or libuv error code. */
const char *px_strerror(int err);
/* Short name ("EPARSE", "ECONNREFUSED") for a PX_E* or libuv error code. */
const char *px_err_name(int err);

/* Allocation: out-of-memory is not a recoverable condition for a proxy, so these
 * print a message and abort instead of returning NULL. */
void *px_malloc(size_t n);
void *px_calloc(size_t count, size_t n);
void *px_realloc(void *p, size_t n);
char *px_strdup(const char *s);
char *px_strndup(const char *s, size_t n);

/* A borrowed run of bytes; not NUL-terminated unless said so. */
typedef struct {
  const char *p;
  size_t n;
} px_str_t;

#define PX_STR(lit) ((px_str_t){(lit), sizeof(lit) - 1})

static inline int px_str_eq(px_str_t a, px_str_t b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }
/* ASCII case-insensitive comparison (header names, tokens). */
int px_str_ieq(px_str_t a, px_str_t b);
int px_str_ieq_cstr(px_str_t a, const char *s);

/* Fast per-thread pseudo-random numbers (xoshiro256** seeded from getrandom):
 * for request ids, load-balancing and split choices, not for secrets. */
uint64_t px_rand64(void);
/* murmur3's 64-bit finaliser: each input bit flips each output bit about half the time
 * (for hashes whose high and low bits are both used). */
static inline uint64_t px_fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  return k ^ (k >> 33);
}
double px_rand01(void); /* uniform in [0, 1) */

/* A fast non-cryptographic 64-bit hash of `n` bytes from `seed`, eight bytes at a time
 * (each word multiplied in and rotated, as murmur3 mixes its blocks, then px_fmix64), so
 * that its high and low bits both depend on every byte and on the length. Not for
 * anything an adversary may choose to collide unless the seed is secret. */
uint64_t px_hash64(const void *p, size_t n, uint64_t seed);

/* Monotonic clock in nanoseconds. */
uint64_t px_now_ns(void);
static inline uint64_t px_now_ms(void) { return px_now_ns() / 1000000; }

#endif
