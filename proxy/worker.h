/* Workers: `workers` threads, each with its own libuv loop and its own
 * SO_REUSEPORT listening socket per listener, so the kernel spreads connections and
 * the hot path shares nothing but the atomic cluster counters.
 *
 * The main thread talks to a worker only through px_worker_post (a mutex-guarded
 * mailbox plus uv_async): new snapshot, drain, stop. Workers use the same mailbox to
 * wake each other when an upstream connection slot comes free while requests wait. */
#ifndef PX_WORKER_H
#define PX_WORKER_H

#include <uv.h>

#include "metrics.h"
#include "queue.h"
#include "runtime.h"
#include "transport.h"
#include "wctx.h"

/* One listening socket of a worker. Reloads may add and remove listeners; a
 * listener whose address stays keeps its socket, found by `addr`. */
typedef struct {
  px_tp_listener_t lst;
  size_t listener_index; /* into the worker's current snapshot's listeners */
  struct sockaddr_storage addr;
  struct px_worker_s *w;
} px_listen_t;

typedef struct px_worker_s {
  px_wctx_t x; /* what the data path sees: loop, snapshots, connections, counters, buffers */
  uv_thread_t thread;
  uv_async_t mailbox;
  uv_timer_t trim; /* a second after buffers went back to malloc: malloc_trim */
  uv_mutex_t mu;
  px_snapshot_t *next_snap; /* posted by main, taken by the worker */
  int *next_fds;            /* per listener of next_snap: a new listening fd, or -1 */
  int post_drain, post_stop, post_wake;
  int mailbox_closed;
  struct px_worker_s *all; /* every worker, this one included (for wake-ups) */
  int nall;
  px_listen_t **listens; /* one per listener of `x.cur`, same order */
  size_t nlistens;
} px_worker_t;

/* Creates worker `id` of the `nall` in `all` (not started). `fds` holds one listening
 * fd per listener. */
void px_worker_init(px_worker_t *w, int id, px_worker_t *all, int nall, px_snapshot_t *snap, int *fds,
                    size_t nfds);
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
/* Once every worker is joined (a running worker may still wake a joined one). */
void px_worker_free(px_worker_t *w);
/* Active downstream connections (read from another thread: approximate). */
size_t px_worker_conns(px_worker_t *w);

#endif
