#include "iobuf.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"

void px_iobufs_init(px_iobufs_t *b) {
  b->free = px_calloc(PX_MAX_FREE_BUFS, sizeof(char *));
  b->n = 0;
  b->freed = 0;
  b->on_freed = NULL;
  b->data = NULL;
}

void px_iobufs_free(px_iobufs_t *b) {
  while (b->n) free(b->free[--b->n]);
  free(b->free);
  b->free = NULL;
}

char *px_iobuf_get(px_iobufs_t *b) {
  if (b->n) return b->free[--b->n];
  return px_malloc(PX_IOBUF_SIZE);
}

void px_iobuf_put(px_iobufs_t *b, char *buf, size_t cap) {
  if (cap == PX_IOBUF_SIZE && b->n < PX_MAX_FREE_BUFS) {
    b->free[b->n++] = buf;
    return;
  }
  free(buf);
  b->freed += cap;
  if (b->on_freed && b->freed >= PX_IOBUF_TRIM_BYTES && b->freed - cap < PX_IOBUF_TRIM_BYTES) b->on_freed(b);
}

char *px_iobuf_grow(px_iobufs_t *b, char *buf, size_t len, size_t cap, size_t new_cap) {
  char *bigger = px_malloc(new_cap);
  memcpy(bigger, buf, len);
  px_iobuf_put(b, buf, cap);
  return bigger;
}
