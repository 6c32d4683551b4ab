#include "worker.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "net.h"
#include "proxy.h"
#include "try.h"
#include "upstream.h"

static px_wsnap_t *wsnap_new(px_snapshot_t *snap) {
  px_wsnap_t *ws = px_calloc(1, sizeof(*ws));
  ws->snap = snap;
  return ws;
}

static void on_connection(px_tp_listener_t *lst, int status) {
  px_listen_t *l = lst->data;
  if (status < 0) {
    px_warn("accept on worker %d: %s", l->w->x.id, uv_strerror(status));
    return;
  }
  px_proxy_accept(&l->w->x, &l->lst, l->listener_index);
}

/* Finishes a drain once the last client connection is gone: what is left are idle
 * upstream connections and the mailbox, and closing them lets uv_run return. */
static void maybe_finish(px_worker_t *w) {
  if (!w->x.draining || w->x.nconns > 0 || uv_is_closing((uv_handle_t *)&w->mailbox)) return;
  px_upstream_close_idle(&w->x, w->x.cur->snap);
  for (px_wsnap_t *ws = w->x.retired; ws; ws = ws->next) px_upstream_close_idle(&w->x, ws->snap);
  /* Under the mutex, so the main thread never sends to a closed async handle. */
  uv_mutex_lock(&w->mu);
  w->mailbox_closed = 1;
  uv_close((uv_handle_t *)&w->mailbox, NULL);
  uv_mutex_unlock(&w->mu);
  uv_close((uv_handle_t *)&w->trim, NULL);
  px_wctx_flush_close(&w->x);
}

/* Buffers went back to malloc (a burst of connections ended): a second later, when the
 * rest of the burst has gone too, malloc hands its free pages back to the system. One
 * call per second at most, and none while buffers are reused from the free list. */
static void on_trim(uv_timer_t *t) {
  px_worker_t *w = t->data;
  w->x.bufs.freed = 0;
  malloc_trim(0);
}

static void on_bufs_freed(px_iobufs_t *b) {
  px_worker_t *w = b->data;
  if (!uv_is_closing((uv_handle_t *)&w->trim) && !uv_is_active((uv_handle_t *)&w->trim))
    uv_timer_start(&w->trim, on_trim, 1000, 0);
}

static void on_conn_closed(px_wctx_t *x) { maybe_finish(PX_CONTAINER_OF(x, px_worker_t, x)); }

/* Every worker, this one included, serves its waiting requests from its own loop. */
static void wake_all(px_wctx_t *x) {
  px_worker_t *self = PX_CONTAINER_OF(x, px_worker_t, x);
  for (int i = 0; i < self->nall; i++) {
    px_worker_t *w = &self->all[i];
    uv_mutex_lock(&w->mu);
    w->post_wake = 1;
    if (!w->mailbox_closed) uv_async_send(&w->mailbox);
    uv_mutex_unlock(&w->mu);
  }
}

static void on_listen_closed(px_tp_listener_t *lst) { free(lst->data); }

static void listen_close(px_listen_t *l) { px_tp_listener_close(&l->lst, on_listen_closed); }

static void close_listeners(px_worker_t *w) {
  for (size_t i = 0; i < w->nlistens; i++)
    if (w->listens[i]) listen_close(w->listens[i]);
  w->nlistens = 0;
}

/* Starts accepting on `fd` for listener `index` of the current snapshot; NULL (and
 * the fd closed) when libuv refuses it. */
static px_listen_t *listen_open(px_worker_t *w, size_t index, int fd) {
  px_listen_t *l = px_calloc(1, sizeof(*l));
  l->w = w;
  l->listener_index = index;
  l->addr = w->x.cur->snap->listeners[index].conf->address.sa;
  l->lst.data = l;
  int r = px_tp_listen_fd(&l->lst, &w->x.loop, fd, PX_LISTEN_BACKLOG, on_connection);
  if (r != 0) {
    px_error("worker %d: listen on %s: %s", w->x.id, w->x.cur->snap->listeners[index].conf->address.text,
             uv_strerror(r));
    listen_close(l);
    return NULL;
  }
  return l;
}

/* After a reload: one listening socket per listener of the new snapshot, kept when
 * its address was there before, opened from `fds` when new; the rest closed. */
static void relisten(px_worker_t *w, int *fds) {
  px_snapshot_t *s = w->x.cur->snap;
  size_t n = s->cfg->nlisteners;
  px_listen_t **next = px_calloc(n ? n : 1, sizeof(*next));
  for (size_t i = 0; i < n; i++) {
    if (fds && fds[i] >= 0) {
      if (w->x.draining)
        close(fds[i]); /* a draining worker accepts nothing new */
      else
        next[i] = listen_open(w, i, fds[i]);
      continue;
    }
    for (size_t k = 0; k < w->nlistens; k++) {
      px_listen_t *l = w->listens[k];
      if (l && px_addr_same(&l->addr, &s->listeners[i].conf->address.sa)) {
        l->listener_index = i;
        next[i] = l;
        w->listens[k] = NULL;
        break;
      }
    }
  }
  for (size_t k = 0; k < w->nlistens; k++)
    if (w->listens[k]) listen_close(w->listens[k]);
  free(w->listens);
  w->listens = next;
  w->nlistens = n;
}

static void on_mailbox(uv_async_t *a) {
  px_worker_t *w = a->data;
  uv_mutex_lock(&w->mu);
  px_snapshot_t *snap = w->next_snap;
  int *fds = w->next_fds;
  int drain = w->post_drain, stop = w->post_stop, wake = w->post_wake;
  w->next_snap = NULL;
  w->next_fds = NULL;
  w->post_drain = w->post_stop = w->post_wake = 0;
  uv_mutex_unlock(&w->mu);

  if (snap) {
    px_wsnap_t *old = w->x.cur;
    w->x.cur = wsnap_new(snap);
    /* Idle upstream connections to endpoints the new snapshot keeps go on serving in
     * its pools; the others close, and busy ones close when their request ends. */
    px_upstream_adopt_idle(&w->x, old, w->x.cur);
    if (old->users == 0) {
      px_snapshot_unref(old->snap);
      free(old);
    } else {
      old->next = w->x.retired;
      w->x.retired = old;
    }
    relisten(w, fds);
    free(fds);
  }
  if ((drain || stop) && !w->x.draining) {
    w->x.draining = 1;
    close_listeners(w);
    px_proxy_drain(&w->x);
  }
  if (stop) px_proxy_close_all(&w->x);
  if (wake) px_upstream_wake(&w->x);
  maybe_finish(w);
}

void px_worker_init(px_worker_t *w, int id, px_worker_t *all, int nall, px_snapshot_t *snap, int *fds,
                    size_t nfds) {
  memset(w, 0, sizeof(*w));
  w->x.id = id;
  w->all = all;
  w->nall = nall;
  w->x.wake_all = wake_all;
  uv_loop_init(&w->x.loop);
  uv_mutex_init(&w->mu);
  uv_async_init(&w->x.loop, &w->mailbox, on_mailbox);
  w->mailbox.data = w;
  w->x.cur = wsnap_new(snap);
  px_queue_init(&w->x.conns);
  px_wctx_flush_init(&w->x, px_try_flush_all);
  px_iobufs_init(&w->x.bufs);
  uv_timer_init(&w->x.loop, &w->trim);
  w->trim.data = w;
  w->x.bufs.on_freed = on_bufs_freed;
  w->x.bufs.data = w;
  w->x.conn_closed = on_conn_closed;
  w->nlistens = nfds;
  w->listens = px_calloc(nfds ? nfds : 1, sizeof(*w->listens));
  for (size_t i = 0; i < nfds; i++) w->listens[i] = listen_open(w, i, fds[i]);
}

static void worker_main(void *arg) {
  px_worker_t *w = arg;
  uv_run(&w->x.loop, UV_RUN_DEFAULT);
  /* Everything is closed; let the loop see the last close callbacks. */
  close_listeners(w);
  uv_run(&w->x.loop, UV_RUN_DEFAULT);
  uv_loop_close(&w->x.loop);
  px_snapshot_unref(w->x.cur->snap);
  free(w->x.cur);
  w->x.cur = NULL;
  px_iobufs_free(&w->x.bufs);
  free(w->listens);
  w->listens = NULL;
}

int px_worker_start(px_worker_t *w) { return uv_thread_create(&w->thread, worker_main, w); }

/* A snapshot superseded before its worker took it hands on the sockets it brought
 * for listeners the newer one keeps (the newer one expects the worker to have them);
 * the others are closed. */
static void supersede(px_snapshot_t *old, int *old_fds, px_snapshot_t *snap, int **fds) {
  size_t n = snap->cfg->nlisteners;
  for (size_t i = 0; old_fds && i < old->cfg->nlisteners; i++) {
    if (old_fds[i] < 0) continue;
    int k = px_config_listener_at(snap->cfg, &old->cfg->listeners[i].address.sa);
    if (k < 0 || (*fds && (*fds)[k] >= 0)) {
      close(old_fds[i]);
      continue;
    }
    if (*fds == NULL) {
      *fds = px_malloc((n ? n : 1) * sizeof(int));
      for (size_t j = 0; j < n; j++) (*fds)[j] = -1;
    }
    (*fds)[k] = old_fds[i];
  }
  free(old_fds);
  px_snapshot_unref(old);
}

void px_worker_post_snapshot(px_worker_t *w, px_snapshot_t *snap, int *fds) {
  uv_mutex_lock(&w->mu);
  if (w->next_snap) supersede(w->next_snap, w->next_fds, snap, &fds);
  w->next_snap = snap;
  w->next_fds = fds;
  if (!w->mailbox_closed) uv_async_send(&w->mailbox);
  uv_mutex_unlock(&w->mu);
}

void px_worker_post_drain(px_worker_t *w) {
  uv_mutex_lock(&w->mu);
  w->post_drain = 1;
  if (!w->mailbox_closed) uv_async_send(&w->mailbox);
  uv_mutex_unlock(&w->mu);
}

void px_worker_post_stop(px_worker_t *w) {
  uv_mutex_lock(&w->mu);
  w->post_stop = 1;
  if (!w->mailbox_closed) uv_async_send(&w->mailbox);
  uv_mutex_unlock(&w->mu);
}

void px_worker_join(px_worker_t *w) {
  uv_thread_join(&w->thread);
  uv_mutex_lock(&w->mu);
  if (w->next_snap) {
    for (size_t i = 0; w->next_fds && i < w->next_snap->cfg->nlisteners; i++)
      if (w->next_fds[i] >= 0) close(w->next_fds[i]);
    free(w->next_fds);
    px_snapshot_unref(w->next_snap);
  }
  w->next_snap = NULL;
  w->next_fds = NULL;
  uv_mutex_unlock(&w->mu);
}

void px_worker_free(px_worker_t *w) { uv_mutex_destroy(&w->mu); }

size_t px_worker_conns(px_worker_t *w) { return __atomic_load_n(&w->x.nconns, __ATOMIC_RELAXED); }
