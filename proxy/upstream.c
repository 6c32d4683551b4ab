#include "upstream.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "log.h"

/* A response head larger than this is refused as a bad response. */
#define PX_UPSTREAM_MAX_BUF (64 * 1024)

static struct px_cluster_worker_s *row_of(px_wctx_t *w, px_cluster_t *c) {
  struct px_cluster_worker_s *cw = &c->per_worker[w->id];
  if (PX_UNLIKELY(cw->pools == NULL)) {
    cw->pools = px_calloc(c->neps, sizeof(px_pool_t));
    for (size_t i = 0; i < c->neps; i++) px_queue_init(&cw->pools[i].idle);
    px_queue_init(&cw->waiters);
  }
  return cw;
}

static px_pool_t *pool_of(px_wctx_t *w, px_cluster_t *c, size_t ep) { return &row_of(w, c)->pools[ep]; }

static void handle_closed(px_upconn_t *up) {
  if (--up->nhandles > 0) return;
  if (up->rbuf) px_iobuf_put(&up->w->bufs, up->rbuf, up->rcap);
  px__wsnap_release(up->w, up->ws);
  free(up);
}
static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void on_tp_closed(px_transport_t *t) { handle_closed(t->data); }

static void up_close(px_upconn_t *up) {
  if (up->closing) return;
  up->closing = 1;
  if (up->idle) {
    px_queue_remove(&up->link);
    pool_of(up->w, up->cluster, up->ep)->nidle--;
    up->idle = 0;
  }
  atomic_fetch_sub_explicit(&up->cluster->st->connections, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&up->cluster->eps[up->ep].st->connections, 1, memory_order_relaxed);
  px_tp_close(&up->tp, on_tp_closed);
  uv_close((uv_handle_t *)&up->timer, on_timer_closed);
  /* A slot came free: a request waiting for one, on any worker, may take it. */
  if (PX_UNLIKELY(atomic_load_explicit(&up->cluster->st->pending, memory_order_relaxed) > 0) &&
      up->w->wake_all)
    up->w->wake_all(up->w);
}

static void on_alloc(px_transport_t *t, uv_buf_t *buf) {
  px_upconn_t *up = t->data;
  if (up->rbuf == NULL) {
    up->rbuf = px_iobuf_get(&up->w->bufs);
    up->rcap = PX_IOBUF_SIZE;
    up->rlen = 0;
  } else if (up->rlen == up->rcap && up->rcap < PX_UPSTREAM_MAX_BUF) {
    /* Only a response head that does not fit gets here: the owner resets rlen
     * after each body flush. */
    up->rbuf = px_iobuf_grow(&up->w->bufs, up->rbuf, up->rlen, up->rcap, up->rcap * 2);
    up->rcap *= 2;
  } else if (up->rlen == 0 && up->rfull == 2 && up->rcap < PX_IOBUF_BODY) {
    /* A response body arriving faster than a buffer a read, all of it forwarded: larger
     * reads from here on (the buffer goes back when the connection is pooled). */
    up->rbuf = px_iobuf_grow(&up->w->bufs, up->rbuf, 0, up->rcap, PX_IOBUF_BODY);
    up->rcap = PX_IOBUF_BODY;
  }
  buf->base = up->rbuf + up->rlen;
  buf->len = up->rcap - up->rlen;
}

static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf) {
  px_upconn_t *up = t->data;
  if (nread == 0) return;
  if (up->idle || up->owner == NULL) {
    /* An idle connection that speaks or closes is of no further use. */
    up_close(up);
    return;
  }
  if (nread < 0) {
    up->cb->on_eof(up->owner, up, (int)nread);
    return;
  }
  up->rlen += (size_t)nread;
  up->rfull = up->rlen == up->rcap ? PX_MIN(up->rfull + 1, 2) : 0;
  up->cb->on_read(up->owner, up, (size_t)nread);
}

static void on_written(px_tp_write_t *wr, int status) {
  px_upconn_t *up = wr->data;
  up->writing = 0;
  /* A write whose owner released the connection: the connection is closing (never
   * pooled with a write in flight), and the owner is serving something else now. */
  if (up->owner && !up->closing) up->cb->on_written(up->owner, up, status);
}

int px_upstream_write(px_upconn_t *up, uv_buf_t *bufs, unsigned n) {
  int r = px_tp_write_now(&up->tp, &up->wreq, bufs, n, on_written);
  if (r == 0) up->writing = 1;
  return r;
}

void px_upstream_read_start(px_upconn_t *up) {
  if (up->reading || up->closing) return;
  up->reading = 1;
  px_tp_read_start(&up->tp, on_alloc, on_read);
}

void px_upstream_read_stop(px_upconn_t *up) {
  if (!up->reading) return;
  up->reading = 0;
  px_tp_read_stop(&up->tp);
}

static void fail_connect(px_upconn_t *up, int status) {
  px_metric_inc(&up->w->metrics.upconn[up->cluster->metric_slot][PX_UPCONN_FAILED], 1);
  void *owner = up->owner;
  const px_upconn_cb_t *cb = up->cb;
  up->owner = NULL;
  up_close(up);
  cb->on_connect(owner, up, status);
}

static void on_connected(px_transport_t *t, int status) {
  px_upconn_t *up = t->data;
  if (up->closing) return; /* timed out or abandoned; already reported */
  uv_timer_stop(&up->timer);
  up->armed_at = 0;
  if (status != 0) {
    fail_connect(up, status);
    return;
  }
  up->connected = 1;
  up->cb->on_connect(up->owner, up, 0);
}

/* One timer per connection: the connect timeout, then the pool's idle timeout.
 * Like the client side's deadlines it is lazy: taking a connection from the pool
 * does not stop it, and a timer that fires before the idle deadline re-arms. */
static void on_timer(uv_timer_t *t) {
  px_upconn_t *up = t->data;
  up->armed_at = 0;
  if (up->closing) return;
  if (!up->connected) {
    if (up->owner) fail_connect(up, UV_ETIMEDOUT);
    return;
  }
  if (!up->idle) return;
  uint64_t now = uv_now(t->loop);
  if (now < up->idle_deadline) {
    uv_timer_start(&up->timer, on_timer, up->idle_deadline - now, 0);
    up->armed_at = up->idle_deadline;
    return;
  }
  up_close(up);
}

/* The newest idle connection to endpoint `ep`, taken from its pool; NULL when none. */
static px_upconn_t *pool_take(px_wctx_t *w, px_cluster_t *c, size_t ep) {
  px_pool_t *pool = pool_of(w, c, ep);
  if (px_queue_empty(&pool->idle)) return NULL;
  px_upconn_t *up = PX_CONTAINER_OF(pool->idle.next, px_upconn_t, link);
  px_queue_remove(&up->link);
  pool->nidle--;
  up->idle = 0;
  return up;
}

/* Lends a pooled connection: on_connect runs now. */
static void lend(px_upconn_t *up, void *owner, const px_upconn_cb_t *cb, px_upconn_t **out) {
  /* It keeps reading: an idle connection reads to notice the upstream closing it, and
   * toggling that per request would cost two epoll_ctl calls. */
  px_metric_inc(&up->w->metrics.upconn[up->cluster->metric_slot][PX_UPCONN_REUSED], 1);
  up->owner = owner;
  up->cb = cb;
  up->reused = 1;
  up->rlen = 0;
  *out = up;
  cb->on_connect(owner, up, 0);
}

/* Takes a connection slot of cluster `c`; 0 when max_connections is reached. */
static int slot_take(px_cluster_t *c) {
  if (atomic_fetch_add_explicit(&c->st->connections, 1, memory_order_relaxed) < c->conf->max_connections)
    return 1;
  atomic_fetch_sub_explicit(&c->st->connections, 1, memory_order_relaxed);
  return 0;
}

/* Opens a new connection on a slot already taken. 0, or a libuv error (the slot is
 * given back, no callback runs). */
static int connect_new(px_wctx_t *w, px_wsnap_t *ws, px_cluster_t *c, size_t ep, void *owner,
                       const px_upconn_cb_t *cb, px_upconn_t **out) {
  atomic_fetch_add_explicit(&c->eps[ep].st->connections, 1, memory_order_relaxed);
  px_metric_inc(&w->metrics.upconn[c->metric_slot][PX_UPCONN_CREATED], 1);
  px_upconn_t *up = px_calloc(1, sizeof(*up));
  up->w = w;
  up->ws = ws;
  ws->users++;
  up->cluster = c;
  up->ep = ep;
  up->owner = owner;
  up->cb = cb;
  px_queue_init(&up->link);
  uv_timer_init(&w->loop, &up->timer);
  up->tp.data = up->timer.data = up->wreq.data = up;
  up->nhandles = 2;
  int r = px_tcp_connect(&up->tp, &w->loop, (const struct sockaddr *)&c->eps[ep].conf->sa, on_connected);
  if (r != 0) {
    px_metric_inc(&w->metrics.upconn[c->metric_slot][PX_UPCONN_FAILED], 1);
    up->owner = NULL; /* the callback never runs for a call that failed */
    up_close(up);
    return r;
  }
  uv_timer_start(&up->timer, on_timer, c->conf->connect_timeout_ms, 0);
  up->armed_at = uv_now(&w->loop) + c->conf->connect_timeout_ms;
  *out = up;
  return 0;
}

/* At max_connections, an idle connection of the cluster in this worker (to any
 * endpoint) is worth less than a request waiting: closes one. 1 when it did. */
static int shed_idle(px_wctx_t *w, px_cluster_t *c) {
  struct px_cluster_worker_s *cw = row_of(w, c);
  for (size_t e = 0; e < c->neps; e++)
    if (!px_queue_empty(&cw->pools[e].idle)) {
      up_close(PX_CONTAINER_OF(cw->pools[e].idle.next, px_upconn_t, link));
      return 1;
    }
  return 0;
}

static void unqueue(px_wctx_t *w, px_upwait_t *wait) {
  px_queue_remove(&wait->link);
  row_of(w, wait->cluster)->nwaiters--;
  atomic_fetch_sub_explicit(&wait->cluster->st->pending, 1, memory_order_relaxed);
  wait->queued = 0;
}

/* Gives this worker's waiting requests of cluster `c` what has come free, oldest
 * first: a pooled connection to their endpoint, a slot, or the slot of an idle
 * connection to another endpoint. */
static void serve_waiters(px_wctx_t *w, px_cluster_t *c) {
  struct px_cluster_worker_s *cw = row_of(w, c);
  while (cw->nwaiters > 0) {
    px_upwait_t *wait = PX_CONTAINER_OF(cw->waiters.next, px_upwait_t, link);
    px_upconn_t *up = pool_take(w, c, wait->ep);
    if (up) {
      unqueue(w, wait);
      lend(up, wait->owner, wait->cb, wait->out);
      continue;
    }
    if (!slot_take(c)) {
      if (shed_idle(w, c)) continue;
      return; /* nothing free here: a close on any worker wakes us again */
    }
    unqueue(w, wait);
    int r = connect_new(w, wait->ws, c, wait->ep, wait->owner, wait->cb, wait->out);
    if (r != 0) wait->cb->on_connect(wait->owner, NULL, r);
  }
}

int px_upstream_acquire(px_wctx_t *w, px_wsnap_t *ws, px_cluster_t *c, size_t ep, void *owner,
                        const px_upconn_cb_t *cb, px_upconn_t **out, px_upwait_t *wait) {
  px_upconn_t *up = pool_take(w, c, ep);
  if (up) {
    lend(up, owner, cb, out);
    return 0;
  }
  if (PX_LIKELY(slot_take(c))) return connect_new(w, ws, c, ep, owner, cb, out);
  if (shed_idle(w, c) && slot_take(c)) return connect_new(w, ws, c, ep, owner, cb, out);
  if (wait == NULL) return PX_EOVERFLOW;
  if (atomic_fetch_add_explicit(&c->st->pending, 1, memory_order_relaxed) >= c->conf->max_pending) {
    atomic_fetch_sub_explicit(&c->st->pending, 1, memory_order_relaxed);
    return PX_EOVERFLOW;
  }
  *wait = (px_upwait_t){.ws = ws, .cluster = c, .ep = ep, .owner = owner, .cb = cb, .out = out, .queued = 1};
  struct px_cluster_worker_s *cw = row_of(w, c);
  px_queue_insert_tail(&cw->waiters, &wait->link);
  cw->nwaiters++;
  *out = NULL;
  /* Other workers' idle connections hold slots this request could use. */
  if (w->wake_all) w->wake_all(w);
  return 0;
}

void px_upstream_cancel(px_wctx_t *w, px_upwait_t *wait) {
  if (wait->queued) unqueue(w, wait);
}

static void wake_snapshot(px_wctx_t *w, px_snapshot_t *s) {
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    px_cluster_t *c = &s->clusters[i];
    if (c->per_worker[w->id].pools == NULL) continue; /* never used here */
    if (c->per_worker[w->id].nwaiters > 0)
      serve_waiters(w, c);
    else if (atomic_load_explicit(&c->st->pending, memory_order_relaxed) > 0)
      while (shed_idle(w, c)) {
      } /* requests wait on another worker: give them the slots */
  }
}

void px_upstream_wake(px_wctx_t *w) {
  wake_snapshot(w, w->cur->snap);
  for (px_wsnap_t *ws = w->retired; ws; ws = ws->next) wake_snapshot(w, ws->snap);
}

/* The endpoint of `c` named `name`, or -1; clusters this large are not searched (their
 * connections close instead: a reload of one is rare, a search per idle connection not). */
static int endpoint_named(const px_cluster_t *c, const char *name) {
  if (c->neps > 1024) return -1;
  for (size_t e = 0; e < c->neps; e++)
    if (strcmp(c->eps[e].name, name) == 0) return (int)e;
  return -1;
}

/* The cluster of snapshot `n` that takes over connections of `c` (the same name and the
 * same cluster state, which counts them in both; never with TLS, whose sessions are
 * configured per snapshot), or NULL. */
static px_cluster_t *successor(px_snapshot_t *n, const px_cluster_t *c) {
  for (size_t k = 0; k < n->cfg->nclusters; k++) {
    px_cluster_t *nc = &n->clusters[k];
    if (strcmp(nc->conf->name, c->conf->name) != 0) continue;
    return nc->st == c->st && !nc->conf->has_tls && !c->conf->has_tls ? nc : NULL;
  }
  return NULL;
}

/* Moves connection `up` (in no pool) to endpoint `ne` of cluster `nc` of snapshot `cur`
 * (successor's, and the endpoint of the same name; -1: none) when the pool there has
 * room, taking a reference on `cur`: 1, and the caller drops the one on the snapshot it
 * came from; else 0, and it is left as it was. */
static int move_to(px_wctx_t *w, px_upconn_t *up, px_wsnap_t *cur, px_cluster_t *nc, int ne) {
  if (ne < 0 || pool_of(w, nc, (size_t)ne)->nidle >= nc->conf->pool_max_idle_per_endpoint) return 0;
  up->cluster = nc;
  up->ep = (size_t)ne;
  up->ws = cur;
  cur->users++;
  return 1;
}

/* move_to for one connection that ends its request in a replaced snapshot. */
static void rehome(px_wctx_t *w, px_upconn_t *up, px_wsnap_t *cur) {
  px_wsnap_t *old = up->ws;
  px_cluster_t *nc = successor(cur->snap, up->cluster);
  if (move_to(w, up, cur, nc, nc ? endpoint_named(nc, up->cluster->eps[up->ep].name) : -1))
    px__wsnap_release(w, old); /* the connection's reference; its request holds its own */
}

void px_upstream_release(px_upconn_t *up, int reusable) {
  px_wctx_t *w = up->w;
  up->owner = NULL;
  up->cb = NULL;
  if (up->closing) return;
  /* Released to a snapshot a reload has replaced (its request began before the reload):
   * it goes on in the current one if that keeps its endpoint, as px_upstream_adopt_idle
   * moves those idle at the reload. */
  if (PX_UNLIKELY(up->ws != w->cur) && reusable && up->connected && !up->writing && !w->draining)
    rehome(w, up, w->cur);
  px_pool_t *pool = pool_of(w, up->cluster, up->ep);
  if (!reusable || !up->connected || up->writing || w->draining || up->ws != w->cur ||
      pool->nidle >= up->cluster->conf->pool_max_idle_per_endpoint) {
    up_close(up);
    return;
  }
  /* Idle connections hold no buffer; the next owner gets one from the free list. */
  if (up->rbuf) {
    px_iobuf_put(&w->bufs, up->rbuf, up->rcap);
    up->rbuf = NULL;
    up->rcap = up->rlen = 0;
    up->rfull = 0;
  }
  up->idle = 1;
  px_queue_insert_head(&pool->idle, &up->link); /* LIFO: reuse the warmest */
  pool->nidle++;
  up->idle_deadline = uv_now(&w->loop) + up->cluster->conf->pool_idle_timeout_ms;
  if (up->armed_at == 0 || up->idle_deadline < up->armed_at) {
    uv_timer_start(&up->timer, on_timer, up->cluster->conf->pool_idle_timeout_ms, 0);
    up->armed_at = up->idle_deadline;
  }
  px_upstream_read_start(up);
  /* Requests wait for a connection: this worker's take it, or it is closed for those
   * of another worker (px_upstream_wake). */
  if (PX_UNLIKELY(atomic_load_explicit(&up->cluster->st->pending, memory_order_relaxed) > 0) && w->wake_all)
    w->wake_all(w);
}

void px_upstream_close_idle(px_wctx_t *w, px_snapshot_t *s) {
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    px_cluster_t *c = &s->clusters[i];
    if (c->per_worker[w->id].pools == NULL) continue;
    for (size_t e = 0; e < c->neps; e++) {
      px_pool_t *pool = &c->per_worker[w->id].pools[e];
      while (!px_queue_empty(&pool->idle)) up_close(PX_CONTAINER_OF(pool->idle.next, px_upconn_t, link));
    }
  }
}

void px_upstream_adopt_idle(px_wctx_t *w, px_wsnap_t *old, px_wsnap_t *cur) {
  px_snapshot_t *s = old->snap;
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    px_cluster_t *c = &s->clusters[i];
    if (c->per_worker[w->id].pools == NULL) continue;
    px_cluster_t *nc = successor(cur->snap, c);
    for (size_t e = 0; e < c->neps; e++) {
      px_pool_t *pool = &c->per_worker[w->id].pools[e];
      int ne = nc && !px_queue_empty(&pool->idle) ? endpoint_named(nc, c->eps[e].name) : -1;
      while (!px_queue_empty(&pool->idle)) {
        px_upconn_t *up = PX_CONTAINER_OF(pool->idle.next, px_upconn_t, link);
        px_queue_remove(&up->link);
        pool->nidle--;
        up->idle = 0;
        if (up->ws != old || !move_to(w, up, cur, nc, ne)) {
          up_close(up);
          continue;
        }
        old->users--; /* the caller frees old when this reaches 0 */
        up->idle = 1;
        px_pool_t *to = pool_of(w, nc, (size_t)ne);
        px_queue_insert_tail(&to->idle, &up->link);
        to->nidle++;
      }
    }
  }
}
