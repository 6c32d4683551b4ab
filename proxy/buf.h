/* A growable byte buffer. Used to build response heads, JSON bodies and
 * configuration dumps; the hot path reuses one per connection. */
#ifndef PX_BUF_H
#define PX_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core.h"

typedef struct {
  char *data;
  size_t len;
  size_t cap;
} px_buf_t;

void px_buf_init(px_buf_t *b, size_t cap);
void px_buf_free(px_buf_t *b);
/* Makes room for `extra` more bytes and returns where they go. */
char *px_buf_reserve(px_buf_t *b, size_t extra);
void px_buf_append(px_buf_t *b, const void *p, size_t n);
static inline void px_buf_append_str(px_buf_t *b, px_str_t s) { px_buf_append(b, s.p, s.n); }
void px_buf_append_cstr(px_buf_t *b, const char *s);
void px_buf_printf(px_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void px_buf_vprintf(px_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends `s` as the inside of a JSON string (quotes not included). */
void px_buf_json_escape(px_buf_t *b, const char *s, size_t n);
/* Appends a quoted JSON string. */
void px_buf_json_str(px_buf_t *b, const char *s, size_t n);
/* Appends an unsigned decimal number without going through printf. */
void px_buf_append_u64(px_buf_t *b, unsigned long long v);

#endif
