/* A connection's byte stream, whatever carries it: plain TCP now, TLS next (SPEC §11).
 * The client side, the upstream side and the admin server read, write, shut down and
 * close through this seam only, and accept and connect through it; nothing else in the
 * sidecar touches a uv_tcp_t. A transport is a small vtable in the manner of Redis's
 * connection types: TLS will be an equal of TCP behind the same calls.
 *
 * It is driven like a libuv stream: read_start delivers bytes into buffers the owner
 * allocates; a write that cannot finish at once completes through its callback; close
 * takes a callback, and the owner frees its memory there, never before. A call that
 * takes a callback and fails never runs it. */
#ifndef PX_TRANSPORT_H
#define PX_TRANSPORT_H

#include <sys/socket.h>
#include <uv.h>

typedef struct px_transport_s px_transport_t;
typedef struct px_tp_write_s px_tp_write_t;

typedef void (*px_tp_alloc_cb)(px_transport_t *t, uv_buf_t *buf);
/* nread > 0: bytes in buf; < 0: UV_EOF, UV_ENOBUFS (the buffer given was empty) or an
 * error; 0: nothing (a spurious wake-up). */
typedef void (*px_tp_read_cb)(px_transport_t *t, ssize_t nread, const uv_buf_t *buf);
typedef void (*px_tp_status_cb)(px_transport_t *t, int status); /* connect, shutdown */
typedef void (*px_tp_write_cb)(px_tp_write_t *req, int status);
typedef void (*px_tp_close_cb)(px_transport_t *t);
/* The raw descriptor is ready: `events` of UV_READABLE / UV_WRITABLE, or status < 0. */
typedef void (*px_tp_raw_cb)(px_transport_t *t, int status, int events);
typedef struct px_tp_raw_s px_tp_raw_t;

/* One write in flight; the caller owns it (usually inside its connection). */
struct px_tp_write_s {
  uv_write_t uv;
  px_transport_t *t;
  px_tp_write_cb cb;
  void *data;
};

typedef struct {
  int (*read_start)(px_transport_t *t, px_tp_alloc_cb alloc, px_tp_read_cb read);
  void (*read_stop)(px_transport_t *t);
  /* Writes what goes out now: bytes written (maybe fewer than given), UV_EAGAIN, or an
   * error. */
  int (*try_write)(px_transport_t *t, const uv_buf_t *bufs, unsigned n);
  /* Queues the bufs; cb runs once they are out. The bytes must stay until then. */
  int (*write)(px_transport_t *t, px_tp_write_t *req, const uv_buf_t *bufs, unsigned n, px_tp_write_cb cb);
  /* Ends the sending side once queued writes are out (FIN for TCP). */
  int (*shutdown)(px_transport_t *t, px_tp_status_cb cb);
  void (*close)(px_transport_t *t, px_tp_close_cb cb);
  /* Closes at once, telling the peer the connection broke (RST for TCP). */
  void (*abort)(px_transport_t *t, px_tp_close_cb cb);
  /* Watches the descriptor under the stream for `events` (0 stops), for a caller that
   * moves bytes through it itself (splice.h) while the stream neither reads nor has a
   * write pending. Returns the descriptor, or a negative error when the transport
   * cannot lend it (its bytes are not the socket's: TLS). */
  int (*raw_poll)(px_transport_t *t, int events, px_tp_raw_cb cb, void *data);
} px_transport_vt_t;

struct px_transport_s {
  const px_transport_vt_t *vt;
  void *data; /* the owner's */
  /* Private to the implementation. */
  px_tp_alloc_cb alloc;
  px_tp_read_cb read;
  px_tp_status_cb shutdown_cb, connect_cb;
  px_tp_close_cb close_cb;
  uv_tcp_t tcp;
  uv_shutdown_t sreq;
  uv_connect_t creq;
  px_tp_raw_t *raw; /* raw_poll's watcher, made on first use */
};

static inline int px_tp_read_start(px_transport_t *t, px_tp_alloc_cb alloc, px_tp_read_cb read) {
  return t->vt->read_start(t, alloc, read);
}
static inline void px_tp_read_stop(px_transport_t *t) { t->vt->read_stop(t); }
static inline int px_tp_try_write(px_transport_t *t, const uv_buf_t *bufs, unsigned n) {
  return t->vt->try_write(t, bufs, n);
}
static inline int px_tp_write(px_transport_t *t, px_tp_write_t *req, const uv_buf_t *bufs, unsigned n,
                              px_tp_write_cb cb) {
  return t->vt->write(t, req, bufs, n, cb);
}
static inline int px_tp_shutdown(px_transport_t *t, px_tp_status_cb cb) { return t->vt->shutdown(t, cb); }
static inline void px_tp_close(px_transport_t *t, px_tp_close_cb cb) { t->vt->close(t, cb); }
static inline void px_tp_abort(px_transport_t *t, px_tp_close_cb cb) { t->vt->abort(t, cb); }
static inline int px_tp_raw_poll(px_transport_t *t, int events, px_tp_raw_cb cb, void *data) {
  return t->vt->raw_poll(t, events, cb, data);
}
/* The data given to the last px_tp_raw_poll. */
void *px_tp_raw_data(const px_transport_t *t);

/* Writes what the transport takes now and queues the rest with `req`. Returns 1 when
 * everything went out (no callback will run), 0 when some was queued (cb runs when it
 * is out), or a negative error. `bufs` may be changed. Small answers almost always go
 * out at once, which saves a loop turn. */
int px_tp_write_now(px_transport_t *t, px_tp_write_t *req, uv_buf_t *bufs, unsigned n, px_tp_write_cb cb);

/* ---- TCP -------------------------------------------------------------------------- */

/* An outgoing TCP connection to `sa` (with TCP_NODELAY); cb reports the outcome. The
 * transport exists once this is called, whatever it returns: the owner closes it. */
int px_tcp_connect(px_transport_t *t, uv_loop_t *loop, const struct sockaddr *sa, px_tp_status_cb cb);

/* A listening socket. */
typedef struct px_tp_listener_s px_tp_listener_t;
typedef void (*px_tp_connection_cb)(px_tp_listener_t *l, int status);
struct px_tp_listener_s {
  void *data;
  px_tp_connection_cb on_connection;
  void (*close_cb)(px_tp_listener_t *l);
  uv_tcp_t tcp;
};

/* Listens on `fd`, an already bound socket (the listener takes it, also on error). */
int px_tp_listen_fd(px_tp_listener_t *l, uv_loop_t *loop, int fd, int backlog, px_tp_connection_cb cb);
/* The port it listens on, or -1. */
int px_tp_listener_port(px_tp_listener_t *l);
/* cb (may be NULL) runs once the listener is closed; the owner frees it there. */
void px_tp_listener_close(px_tp_listener_t *l, void (*cb)(px_tp_listener_t *l));
int px_tp_listener_closing(const px_tp_listener_t *l);

/* Accepts a pending connection into `t` (TCP, TCP_NODELAY set). The transport exists once
 * this is called, whatever it returns: the owner closes it. */
int px_tp_accept(px_tp_listener_t *l, px_transport_t *t);
/* The peer's address; 0 or a libuv error. */
int px_tp_peer(px_transport_t *t, struct sockaddr_storage *ss);

#endif
