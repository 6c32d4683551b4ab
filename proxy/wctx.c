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

/* Why the flush waits for the end of the loop turn: in a pod the upstream shares the
 * sidecar's core, and every write to it wakes it. Woken one request at a time, the app
 * preempts the sidecar once per request or two (the scheduler favours the task that
 * sleeps more), and each switch costs more than the request's own work; written
 * together after the turn's reads, the requests of a turn wake it once. This is how
 * HAProxy sends: after processing, not inside it. The idle handle keeps the loop from
 * blocking in poll when the flush was asked for outside the I/O phase (a timer's
 * retry, a close callback's new try). */
static void on_flush_check(uv_check_t *h) {
  px_wctx_t *w = h->data;
  w->flush(w);
  if (px_queue_empty(&w->flushq)) uv_idle_stop(&w->flush_idle);
}

static void on_flush_idle(uv_idle_t *h) { (void)h; }

void px_wctx_flush_init(px_wctx_t *w, void (*flush)(px_wctx_t *w)) {
  px_queue_init(&w->flushq);
  w->flush = flush;
  uv_check_init(&w->loop, &w->flush_check);
  uv_idle_init(&w->loop, &w->flush_idle);
  w->flush_check.data = w->flush_idle.data = w;
  uv_check_start(&w->flush_check, on_flush_check);
  uv_unref((uv_handle_t *)&w->flush_check);
  uv_unref((uv_handle_t *)&w->flush_idle);
}

void px_wctx_flush_soon(px_wctx_t *w) {
  if (!uv_is_active((uv_handle_t *)&w->flush_idle)) uv_idle_start(&w->flush_idle, on_flush_idle);
}

void px_wctx_flush_close(px_wctx_t *w) {
  if (uv_is_closing((uv_handle_t *)&w->flush_check)) return;
  uv_close((uv_handle_t *)&w->flush_check, NULL);
  uv_close((uv_handle_t *)&w->flush_idle, NULL);
}
