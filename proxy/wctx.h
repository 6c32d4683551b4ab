/* What the data path needs of the worker thread it runs on, kept below the worker so
 * that the data path (downstream.c, request.c, try.c, upstream.c) never includes it:
 * the loop, the snapshot handles, the connection list, the drain flag, the counters and
 * the read buffers. The worker (worker.h) embeds one and drives it. */
#ifndef PX_WCTX_H
#define PX_WCTX_H

#include <uv.h>

#include "iobuf.h"
#include "metrics.h"
#include "queue.h"
#include "runtime.h"

/* A worker's handle on a snapshot: `users` counts this worker's connections and
 * requests on it, without atomics; the snapshot reference is dropped when the
 * worker has moved on to a newer one and the last user is gone. */
typedef struct px_wsnap_s {
  px_snapshot_t *snap;
  int users;
  struct px_wsnap_s *next; /* retired list */
} px_wsnap_t;

typedef struct px_wctx_s {
  int id;
  uv_loop_t loop;
  px_wsnap_t *cur;
  px_wsnap_t *retired;
  px_queue_t conns; /* downstream connections */
  size_t nconns;
  int draining;
  px_metrics_t metrics;
  px_iobufs_t bufs; /* read buffers, reused */
  /* Tries with request bytes to send upstream, sent together once the loop turn's I/O
   * callbacks have run (px_wctx_flush_init, try.c). */
  px_queue_t flushq;
  uv_check_t flush_check;
  uv_idle_t flush_idle; /* started while flushq is not empty: the loop must not block */
  void (*flush)(struct px_wctx_s *w);
  /* The worker's: a connection closed (a draining worker may finish). */
  void (*conn_closed)(struct px_wctx_s *w);
  /* The worker's: an upstream connection slot came free while requests wait for one:
   * every worker, this one included, runs px_upstream_wake soon (from its loop, never
   * inside this call). */
  void (*wake_all)(struct px_wctx_s *w);
} px_wctx_t;

/* Sets up the turn-end flush on w->loop: `flush` runs after the I/O callbacks of each
 * loop turn in which px_wctx_flush_soon was called, and the loop does not block before
 * it runs. */
void px_wctx_flush_init(px_wctx_t *w, void (*flush)(px_wctx_t *w));
/* Asks for the flush of this loop turn (call when flushq becomes non-empty). */
void px_wctx_flush_soon(px_wctx_t *w);
/* Closes the flush's handles (the loop then may end). */
void px_wctx_flush_close(px_wctx_t *w);

/* Snapshot handles, on the worker's thread. */
px_wsnap_t *px__wsnap_use(px_wctx_t *w);
void px__wsnap_release(px_wctx_t *w, px_wsnap_t *ws);

#endif
