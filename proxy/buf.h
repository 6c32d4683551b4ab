/* A growable byte buffer. Used to build response heads, JSON bodies and
 * configuration dumps; the hot path reuses one per connection. */
#ifndef PX_BUF_H
#define PX_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "core.h"

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} px_buf_t;

void px_buf_init(px_buf_t *b, size_t cap);
void px_buf_free(px_buf_t *b);
/* The slow half of px_buf_reserve: grows the buffer (doubling) to take `extra` more. */
char *px__buf_grow(px_buf_t *b, size_t extra);
/* Makes room for `extra` more bytes and returns where they go. Inline, with the
 * appends below: heads are built from many small appends, mostly of literals, whose
 * strlen the compiler then folds away. */
static inline char *px_buf_reserve(px_buf_t *b, size_t extra) {
  return b->cap - b->len < extra ? px__buf_grow(b, extra) : b->data + b->len;
}
static inline void px_buf_append(px_buf_t *b, const void *p, size_t n) {
  if (n == 0) return;
  memcpy(px_buf_reserve(b, n), p, n);
  b->len += n;
}
static inline void px_buf_append_str(px_buf_t *b, px_str_t s) { px_buf_append(b, s.p, s.n); }
static inline void px_buf_append_cstr(px_buf_t *b, const char *s) { px_buf_append(b, s, strlen(s)); }
void px_buf_printf(px_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void px_buf_vprintf(px_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends `s` as the inside of a JSON string (quotes not included). */
void px_buf_json_escape(px_buf_t *b, const char *s, size_t n);
/* Appends a quoted JSON string. */
void px_buf_json_str(px_buf_t *b, const char *s, size_t n);
/* Appends an unsigned decimal number without going through printf. */
void px_buf_append_u64(px_buf_t *b, unsigned long long v);

#endif
