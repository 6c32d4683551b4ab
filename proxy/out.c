#include "out.h"

#include <stdlib.h>

void px__out_grow(px_out_t *o) {
  o->cap = o->cap ? o->cap * 2 : 16;
  o->v = px_realloc(o->v, o->cap * sizeof(*o->v));
}

void px_out_free(px_out_t *o) {
  free(o->v);
  free(o->iov);
  px_buf_free(&o->side);
  *o = (px_out_t){0};
}

unsigned px_out_iov(px_out_t *o) {
  if (o->iovcap < o->n) {
    o->iovcap = o->n;
    o->iov = px_realloc(o->iov, o->iovcap * sizeof(*o->iov));
  }
  for (size_t i = 0; i < o->n; i++) {
    const char *p = o->v[i].p ? o->v[i].p : o->side.data + o->v[i].off;
    o->iov[i] = uv_buf_init((char *)p, (unsigned)o->v[i].len);
  }
  return (unsigned)o->n;
}
