/* Upstream connections and the per-worker, per-endpoint keep-alive pools.
 *
 * A connection is owned by one request while busy and by its pool while idle. An idle
 * connection keeps reading, so an upstream that closes it (or sends bytes nobody asked
 * for) is noticed and the connection dropped before a request picks it. */
#ifndef PX_UPSTREAM_H
#define PX_UPSTREAM_H

#include <uv.h>

#include "queue.h"
#include "transport.h"
#include "wctx.h"

typedef struct px_upconn_s px_upconn_t;

/* What the request using a connection is told. */
typedef struct {
  void (*on_connect)(void *owner, px_upconn_t *up, int status); /* 0 or libuv error */
  /* Bytes arrived in up->rbuf[up->rlen - n, up->rlen). */
  void (*on_read)(void *owner, px_upconn_t *up, size_t n);
  void (*on_eof)(void *owner, px_upconn_t *up, int status); /* UV_EOF or an error */
  /* A write px_upstream_write queued went out (status 0) or failed. */
  void (*on_written)(void *owner, px_upconn_t *up, int status);
} px_upconn_cb_t;

struct px_pool_s {
  px_queue_t idle;
  int nidle;
};

struct px_upconn_s {
  px_transport_t tp;
  px_tp_write_t wreq; /* the connection's, not the owner's: a write may outlive its owner */
  uv_timer_t timer;
  px_wctx_t *w;
  px_wsnap_t *ws; /* keeps the cluster alive while the connection lives */
  px_cluster_t *cluster;
  size_t ep;
  px_queue_t link; /* in the pool's idle list */
  void *owner;
  const px_upconn_cb_t *cb;
  char *rbuf;
  size_t rcap, rlen;
  int rfull;                        /* the last reads filled the buffer: how many in a row (up to 2) */
  int reused;                       /* came from the pool */
  uint64_t idle_deadline, armed_at; /* loop time, ms; armed_at 0: timer not running */
  int connected, closing, reading, idle, writing;
  int nhandles;
};

/* A request waiting for a connection because its cluster's max_connections is
 * reached (limits.max_pending): the owner's memory, queued in its cluster's per-worker
 * list until a connection comes free on any worker, or px_upstream_cancel. */
typedef struct {
  px_queue_t link;
  px_wsnap_t *ws;
  px_cluster_t *cluster;
  size_t ep;
  void *owner;
  const px_upconn_cb_t *cb;
  px_upconn_t **out;
  int queued;
} px_upwait_t;

/* Gives `owner` a connection to endpoint `ep` of cluster `c`: a pooled one
 * (cb->on_connect runs before this returns, with status 0) or a new one (on_connect
 * runs later; *out is set at once). At max_connections an idle connection of the
 * cluster to another endpoint is closed to make room; failing that, the request waits
 * in `wait` (when not NULL) while the cluster's max_pending allows: *out stays NULL
 * and on_connect runs once a connection comes free (with an error status when the
 * connect then fails). Returns 0, or PX_EOVERFLOW when the limits are reached, or a
 * libuv error; on error no callback runs. */
int px_upstream_acquire(px_wctx_t *w, px_wsnap_t *ws, px_cluster_t *c, size_t ep, void *owner,
                        const px_upconn_cb_t *cb, px_upconn_t **out, px_upwait_t *wait);
/* Stops waiting (the request ended first). */
void px_upstream_cancel(px_wctx_t *w, px_upwait_t *wait);
/* A connection slot may have come free (wctx's wake_all): serves this worker's waiting
 * requests, and closes its idle connections of clusters whose requests wait elsewhere. */
void px_upstream_wake(px_wctx_t *w);
/* Writes `bufs` (which may be changed): 1 when all went out, 0 when the rest is queued
 * (cb->on_written runs once it is out, unless the owner released the connection
 * first), or a libuv error. The bytes must stay until then. */
int px_upstream_write(px_upconn_t *up, uv_buf_t *bufs, unsigned n);
/* Starts / stops delivering response bytes to the owner. */
void px_upstream_read_start(px_upconn_t *up);
void px_upstream_read_stop(px_upconn_t *up);
/* The owner is done: the connection goes back to its pool when `reusable`, no write is
 * pending on it (the upstream answered before it read all of the request) and the pool
 * has room; else it is closed. */
void px_upstream_release(px_upconn_t *up, int reusable);
/* Closes every idle connection of this worker in snapshot `s` (on reload/drain). */
void px_upstream_close_idle(px_wctx_t *w, px_snapshot_t *s);
/* The worker moved from `old` to `cur` (a reload, or discovered endpoints swapped in):
 * its idle connections to an endpoint that `cur` still has, in a cluster of the same
 * name, move into `cur`'s pools (up to their limit); the others close. The caller frees
 * `old` afterwards when nothing else uses it. */
void px_upstream_adopt_idle(px_wctx_t *w, px_wsnap_t *old, px_wsnap_t *cur);

#endif
