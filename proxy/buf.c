#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void px_buf_init(px_buf_t *b, size_t cap) {
  b->data = cap ? px_malloc(cap) : NULL;
  b->len = 0;
  b->cap = cap;
}

void px_buf_free(px_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *px__buf_grow(px_buf_t *b, size_t extra) {
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < extra) cap *= 2;
  b->data = px_realloc(b->data, cap);
  b->cap = cap;
  return b->data + b->len;
}

void px_buf_vprintf(px_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char *dst = px_buf_reserve(b, 128);
  int n = vsnprintf(dst, b->cap - b->len, fmt, ap);
  if (n >= 0 && (size_t)n >= b->cap - b->len) {
    dst = px_buf_reserve(b, (size_t)n + 1);
    n = vsnprintf(dst, b->cap - b->len, fmt, ap2);
  }
  va_end(ap2);
  if (n > 0) b->len += (size_t)n;
}

void px_buf_printf(px_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  px_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void px_buf_json_escape(px_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '"': px_buf_append(b, "\\\"", 2); break;
    case '\\': px_buf_append(b, "\\\\", 2); break;
    case '\n': px_buf_append(b, "\\n", 2); break;
    case '\r': px_buf_append(b, "\\r", 2); break;
    case '\t': px_buf_append(b, "\\t", 2); break;
    default:
      if (c < 0x20 || c == 0x7f) {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        px_buf_append(b, esc, 6);
      } else {
        px_buf_append(b, &s[i], 1);
      }
    }
  }
}

void px_buf_json_str(px_buf_t *b, const char *s, size_t n) {
  px_buf_append(b, "\"", 1);
  px_buf_json_escape(b, s, n);
  px_buf_append(b, "\"", 1);
}

void px_buf_append_u64(px_buf_t *b, unsigned long long v) {
  if (v < 10) { /* attempt counts, mostly */
    char d = (char)('0' + v);
    px_buf_append(b, &d, 1);
    return;
  }
  char tmp[24];
  size_t i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  px_buf_append(b, tmp + i, sizeof(tmp) - i);
}
