/* What goes out on a connection, as pieces: pointers into read buffers (bodies are
 * forwarded from the buffer they were read into, never copied) or runs of a side
 * buffer that holds heads and chunk framing. A side piece is an offset, resolved only
 * when the write is issued, because the side buffer may move while it grows. */
#ifndef PX_OUT_H
#define PX_OUT_H

#include <uv.h>

#include "buf.h"

typedef struct {
  const char *p; /* NULL: side.data + off */
  size_t off, len;
} px_piece_t;

typedef struct {
  px_piece_t *v;
  size_t n, cap;
  px_buf_t side;
  uv_buf_t *iov;
  size_t iovcap;
} px_out_t;

/* The slow half of px_out_piece: grows the piece array. */
void px__out_grow(px_out_t *o);

/* Queues `len` bytes at `p` (or, p NULL, at side offset `off`). */
static inline void px_out_piece(px_out_t *o, const char *p, size_t off, size_t len) {
  if (len == 0) return;
  if (o->n == o->cap) px__out_grow(o);
  o->v[o->n++] = (px_piece_t){p, off, len};
}
/* Appends bytes to the side buffer and queues them. */
static inline void px_out_side(px_out_t *o, const char *p, size_t len) {
  size_t off = o->side.len;
  px_buf_append(&o->side, p, len);
  px_out_piece(o, NULL, off, len);
}
/* Writes a chunk's size line ("1a2f\r\n": lowercase hex, no leading zeros) at `dst`,
 * which has room for 18 bytes; returns its length. Once a chunk, so not snprintf. */
static inline size_t px_chunk_size_line(char *dst, size_t n) {
  int digits = 1;
  while (digits < 16 && n >> (4 * digits)) digits++;
  for (int i = digits - 1; i >= 0; i--, n >>= 4) dst[i] = "0123456789abcdef"[n & 15];
  dst[digits] = '\r';
  dst[digits + 1] = '\n';
  return (size_t)digits + 2;
}
/* A run of body bytes, framed as a chunk when the outgoing body is chunked. An empty
 * run queues nothing: as a chunk it would be the last one. */
static inline void px_out_body(px_out_t *o, const char *at, size_t n, int chunked) {
  if (n == 0) return;
  if (chunked) {
    char tmp[24];
    px_out_side(o, tmp, px_chunk_size_line(tmp, n));
  }
  px_out_piece(o, at, 0, n);
  if (chunked) px_out_piece(o, "\r\n", 0, 2);
}
/* The last chunk of a chunked body. */
static inline void px_out_last_chunk(px_out_t *o) { px_out_piece(o, "0\r\n\r\n", 0, 5); }
static inline void px_out_reset(px_out_t *o) {
  o->n = 0;
  o->side.len = 0;
}
void px_out_free(px_out_t *o);
/* Resolves the pieces into o->iov; returns how many. */
unsigned px_out_iov(px_out_t *o);

#endif
