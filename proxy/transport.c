#include "transport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <unistd.h>

#include "core.h"

/* ---- TCP: the transport is a thin layer over a libuv stream ------------------------ */

static void tcp_on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  px_transport_t *t = h->data;
  (void)hint;
  t->alloc(t, buf);
}

static void tcp_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  px_transport_t *t = s->data;
  t->read(t, nread, buf);
}

static int tcp_read_start(px_transport_t *t, px_tp_alloc_cb alloc, px_tp_read_cb read) {
  t->alloc = alloc;
  t->read = read;
  return uv_read_start((uv_stream_t *)&t->tcp, tcp_on_alloc, tcp_on_read);
}

static void tcp_read_stop(px_transport_t *t) { uv_read_stop((uv_stream_t *)&t->tcp); }

static int tcp_try_write(px_transport_t *t, const uv_buf_t *bufs, unsigned n) {
  return uv_try_write((uv_stream_t *)&t->tcp, bufs, n);
}

static void tcp_on_write(uv_write_t *w, int status) {
  px_tp_write_t *req = PX_CONTAINER_OF(w, px_tp_write_t, uv);
  req->cb(req, status);
}

static int tcp_write(px_transport_t *t, px_tp_write_t *req, const uv_buf_t *bufs, unsigned n,
                     px_tp_write_cb cb) {
  req->t = t;
  req->cb = cb;
  return uv_write(&req->uv, (uv_stream_t *)&t->tcp, bufs, n, tcp_on_write);
}

static void tcp_on_shutdown(uv_shutdown_t *sr, int status) {
  px_transport_t *t = sr->data;
  t->shutdown_cb(t, status);
}

static int tcp_shutdown(px_transport_t *t, px_tp_status_cb cb) {
  t->shutdown_cb = cb;
  t->sreq.data = t;
  return uv_shutdown(&t->sreq, (uv_stream_t *)&t->tcp, tcp_on_shutdown);
}

/* ---- the raw descriptor ----------------------------------------------------------------
 *
 * libuv keeps one watcher per descriptor, and the stream has its own; a poll handle on
 * the same descriptor would trample it. So the poll watches a duplicate: the same
 * socket, its own epoll entry. The duplicate keeps the socket open, so it is closed
 * before the stream is (a reset must reach the peer when the stream says). */
struct px_tp_raw_s {
  uv_poll_t poll;
  int fd, events;
  px_transport_t *t;
  px_tp_raw_cb cb;
  void *data;
};

static void raw_on_poll(uv_poll_t *p, int status, int events) {
  px_tp_raw_t *rw = p->data;
  rw->cb(rw->t, status, events);
}

static int tcp_raw_poll(px_transport_t *t, int events, px_tp_raw_cb cb, void *data) {
  px_tp_raw_t *rw = t->raw;
  if (rw == NULL) {
    uv_os_fd_t fd;
    int r = uv_fileno((uv_handle_t *)&t->tcp, &fd);
    if (r != 0) return r;
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup_fd < 0) return uv_translate_sys_error(errno);
    rw = px_calloc(1, sizeof(*rw));
    r = uv_poll_init(t->tcp.loop, &rw->poll, dup_fd);
    if (r != 0) {
      close(dup_fd);
      free(rw);
      return r;
    }
    rw->fd = dup_fd;
    rw->t = t;
    rw->poll.data = rw;
    t->raw = rw;
  }
  rw->cb = cb;
  rw->data = data;
  if (events == rw->events) return rw->fd;
  rw->events = events;
  int r = events ? uv_poll_start(&rw->poll, events, raw_on_poll) : uv_poll_stop(&rw->poll);
  return r < 0 ? r : rw->fd;
}

void *px_tp_raw_data(const px_transport_t *t) { return t->raw ? t->raw->data : NULL; }

static void raw_on_close(uv_handle_t *h) { free(h->data); }

static void raw_close(px_transport_t *t) {
  px_tp_raw_t *rw = t->raw;
  if (rw == NULL) return;
  t->raw = NULL;
  uv_close((uv_handle_t *)&rw->poll, raw_on_close); /* stops watching: closing is safe now */
  close(rw->fd);
}

static void tcp_on_close(uv_handle_t *h) {
  px_transport_t *t = h->data;
  if (t->close_cb) t->close_cb(t);
}

static void tcp_close(px_transport_t *t, px_tp_close_cb cb) {
  t->close_cb = cb;
  raw_close(t);
  uv_close((uv_handle_t *)&t->tcp, tcp_on_close);
}

static void tcp_abort(px_transport_t *t, px_tp_close_cb cb) {
  t->close_cb = cb;
  raw_close(t);
  /* SO_LINGER 0 and close: an RST. libuv refuses it while a shutdown is under way;
   * then the close is a plain one. */
  if (uv_tcp_close_reset(&t->tcp, tcp_on_close) != 0) uv_close((uv_handle_t *)&t->tcp, tcp_on_close);
}

static const px_transport_vt_t tcp_vt = {tcp_read_start, tcp_read_stop, tcp_try_write, tcp_write,
                                         tcp_shutdown,   tcp_close,     tcp_abort,     tcp_raw_poll};

static void tcp_init(px_transport_t *t, uv_loop_t *loop) {
  t->vt = &tcp_vt;
  t->raw = NULL;
  uv_tcp_init(loop, &t->tcp);
  t->tcp.data = t;
}

static void tcp_on_connect(uv_connect_t *cr, int status) {
  px_transport_t *t = cr->data;
  t->connect_cb(t, status);
}

int px_tcp_connect(px_transport_t *t, uv_loop_t *loop, const struct sockaddr *sa, px_tp_status_cb cb) {
  tcp_init(t, loop);
  uv_tcp_nodelay(&t->tcp, 1);
  t->connect_cb = cb;
  t->creq.data = t;
  return uv_tcp_connect(&t->creq, &t->tcp, sa, tcp_on_connect);
}

int px_tp_peer(px_transport_t *t, struct sockaddr_storage *ss) {
  int len = sizeof(*ss);
  return uv_tcp_getpeername(&t->tcp, (struct sockaddr *)ss, &len);
}

int px_tp_write_now(px_transport_t *t, px_tp_write_t *req, uv_buf_t *bufs, unsigned n, px_tp_write_cb cb) {
  int r = px_tp_try_write(t, bufs, n);
  if (r == UV_EAGAIN) r = 0;
  if (r < 0) return r;
  size_t done = (size_t)r;
  unsigned i = 0;
  while (i < n && done >= bufs[i].len) done -= bufs[i++].len;
  if (i == n) return 1;
  bufs[i].base += done;
  bufs[i].len -= done;
  r = px_tp_write(t, req, bufs + i, n - i, cb);
  return r < 0 ? r : 0;
}

/* ---- listening ------------------------------------------------------------------- */

static void on_listen_connection(uv_stream_t *s, int status) {
  px_tp_listener_t *l = s->data;
  l->on_connection(l, status);
}

int px_tp_listen_fd(px_tp_listener_t *l, uv_loop_t *loop, int fd, int backlog, px_tp_connection_cb cb) {
  l->on_connection = cb;
  uv_tcp_init(loop, &l->tcp);
  l->tcp.data = l;
  int r = uv_tcp_open(&l->tcp, fd);
  if (r != 0) {
    close(fd); /* the handle did not take it */
    return r;
  }
  return uv_listen((uv_stream_t *)&l->tcp, backlog, on_listen_connection);
}

int px_tp_listener_port(px_tp_listener_t *l) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

static void on_listener_closed(uv_handle_t *h) {
  px_tp_listener_t *l = h->data;
  if (l->close_cb) l->close_cb(l);
}

void px_tp_listener_close(px_tp_listener_t *l, void (*cb)(px_tp_listener_t *l)) {
  l->close_cb = cb;
  uv_close((uv_handle_t *)&l->tcp, on_listener_closed);
}

int px_tp_listener_closing(const px_tp_listener_t *l) { return uv_is_closing((const uv_handle_t *)&l->tcp); }

int px_tp_accept(px_tp_listener_t *l, px_transport_t *t) {
  tcp_init(t, l->tcp.loop);
  int r = uv_accept((uv_stream_t *)&l->tcp, (uv_stream_t *)&t->tcp);
  if (r == 0) uv_tcp_nodelay(&t->tcp, 1);
  return r;
}
