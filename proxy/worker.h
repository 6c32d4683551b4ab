/* Workers: `workers` threads, each with its own libuv loop and its own
 * SO_REUSEPORT listening socket per listener, so the kernel spreads connections and
 * the hot path shares nothing but the atomic cluster counters.
 *
 * The main thread talks to a worker only through px_worker_post (a mutex-guarded
 * mailbox plus uv_async): new snapshot, drain, stop. */
#ifndef PX_WORKER_H
#define PX_WORKER_H

#include <uv.h>

#include "metrics.h"
#include "queue.h"
#include "runtime.h"
#include "transport.h"

/* A worker's handle on a snapshot: `users` counts this worker's connections and
 * requests on it, without atomics; the snapshot reference is dropped when the
 * worker has moved on to a newer one and the last user is gone. */
typedef struct px_wsnap_s {
  px_snapshot_t *snap;
  int users;
  struct px_wsnap_s *next; /* retired list */
} px_wsnap_t;

/* One listening socket of a worker. Reloads may add and remove listeners; a
 * listener whose address stays keeps its socket, found by `addr`. */
typedef struct {
  px_tp_listener_t lst;
  size_t listener_index; /* into the worker's current snapshot's listeners */
  struct sockaddr_storage addr;
  struct px_worker_s *w;
} px_listen_t;

typedef struct px_worker_s {
  int id;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t mailbox;
  uv_mutex_t mu;
  px_snapshot_t *next_snap; /* posted by main, taken by the worker */
  int *next_fds;            /* per listener of next_snap: a new listening fd, or -1 */
  int post_drain, post_stop;
  int mailbox_closed;

  px_wsnap_t *cur;
  px_wsnap_t *retired;
  px_listen_t **listens; /* one per listener of `cur`, same order */
  size_t nlistens;
  px_queue_t conns;         /* downstream connections */
  size_t nconns;
  int draining;
  px_metrics_t metrics;
  /* Free 16 KiB I/O buffers, so connections hold memory only while busy. */
  char **free_bufs;
  size_t nfree_bufs;
} px_worker_t;

#define PX_IOBUF_SIZE (16 * 1024)

/* Creates the worker (not started). `fds` holds one listening fd per listener. */
void px_worker_init(px_worker_t *w, int id, px_snapshot_t *snap, int *fds, size_t nfds);
int px_worker_start(px_worker_t *w);
/* Main thread: hand over a new snapshot (the worker takes the reference), with
 * `fds` (taken too; NULL when no listener is new): per listener of `snap`, a new
 * listening socket, or -1 for a listener whose address the worker listens on
 * already. The worker closes the sockets of listeners that are gone. */
void px_worker_post_snapshot(px_worker_t *w, px_snapshot_t *snap, int *fds);
/* Main thread: stop accepting and finish in-flight requests; or stop now. */
void px_worker_post_drain(px_worker_t *w);
void px_worker_post_stop(px_worker_t *w);
void px_worker_join(px_worker_t *w);
/* Active downstream connections (read from another thread: approximate). */
size_t px_worker_conns(px_worker_t *w);

/* For proxy.c and upstream.c, on the worker's thread. */
px_wsnap_t *px__wsnap_use(px_worker_t *w);
void px__wsnap_release(px_worker_t *w, px_wsnap_t *ws);
char *px__iobuf_get(px_worker_t *w);
/* Gives back a buffer of `cap` bytes: to the free list when it is a standard one. */
void px__iobuf_put(px_worker_t *w, char *buf, size_t cap);
/* Moves the first `len` bytes into a new buffer of `new_cap` bytes (a head that
 * outgrew a standard buffer) and gives the old one back. */
char *px__iobuf_grow(px_worker_t *w, char *buf, size_t len, size_t cap, size_t new_cap);
/* Called by proxy.c when a connection closes, so a draining worker can finish. */
void px__worker_conn_closed(px_worker_t *w);

#endif
