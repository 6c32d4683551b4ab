#include "wctx.h"

#include <stdlib.h>
#include <string.h>

px_wsnap_t *px__wsnap_use(px_wctx_t *w) {
  w->cur->users++;
  return w->cur;
}

void px__wsnap_release(px_wctx_t *w, px_wsnap_t *ws) {
  if (--ws->users > 0 || ws == w->cur) return;
  for (px_wsnap_t **p = &w->retired; *p; p = &(*p)->next)
    if (*p == ws) {
      *p = ws->next;
      break;
    }
  px_snapshot_unref(ws->snap);
  free(ws);
}

char *px__iobuf_get(px_wctx_t *w) {
  if (w->nfree_bufs) return w->free_bufs[--w->nfree_bufs];
  return px_malloc(PX_IOBUF_SIZE);
}

void px__iobuf_put(px_wctx_t *w, char *buf, size_t cap) {
  if (cap == PX_IOBUF_SIZE && w->nfree_bufs < PX_MAX_FREE_BUFS) {
    w->free_bufs[w->nfree_bufs++] = buf;
    return;
  }
  free(buf);
}

char *px__iobuf_grow(px_wctx_t *w, char *buf, size_t len, size_t cap, size_t new_cap) {
  char *bigger = px_malloc(new_cap);
  memcpy(bigger, buf, len);
  px__iobuf_put(w, buf, cap);
  return bigger;
}

