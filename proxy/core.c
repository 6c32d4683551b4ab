#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <uv.h>

const char *px_strerror(int err) {
  switch (err) {
#define XX(name, msg) \
  case PX_E##name:    \
    return msg;
    PX_ERRNO_MAP(XX)
#undef XX
  default:
    return uv_strerror(err);
  }
}

const char *px_err_name(int err) {
  switch (err) {
#define XX(name, msg) \
  case PX_E##name:    \
    return "E" #name;
    PX_ERRNO_MAP(XX)
#undef XX
  default:
    return uv_err_name(err);
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

static inline unsigned char px__lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

int px_str_ieq(px_str_t a, px_str_t b) {
  if (a.n != b.n) return 0;
  for (size_t i = 0; i < a.n; i++)
    if (px__lower((unsigned char)a.p[i]) != px__lower((unsigned char)b.p[i])) return 0;
  return 1;
}

int px_str_ieq_cstr(px_str_t a, const char *s) {
  return px_str_ieq(a, (px_str_t){s, strlen(s)});
}

uint64_t px_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
