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
