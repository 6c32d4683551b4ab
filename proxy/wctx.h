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
  /* The worker's: a connection closed (a draining worker may finish). */
  void (*conn_closed)(struct px_wctx_s *w);
  /* The worker's: an upstream connection slot came free while requests wait for one:
   * every worker, this one included, runs px_upstream_wake soon (from its loop, never
   * inside this call). */
  void (*wake_all)(struct px_wctx_s *w);
} px_wctx_t;

/* Snapshot handles, on the worker's thread. */
px_wsnap_t *px__wsnap_use(px_wctx_t *w);
void px__wsnap_release(px_wctx_t *w, px_wsnap_t *ws);

#endif
