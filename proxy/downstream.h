/* The client connection: its transport and its one timer, the read buffer, request
 * heads (scanned by px_headscan, parsed by llhttp up to their end, framing decided by
 * px_http1_request_body) and bodies (px_body_read), the deadlines, the output towards
 * the client and its back-pressure, the lingering close. What a request means is the
 * handler's: request.c for the proxy.
 *
 * One request at a time. A head is handed over once complete; its bytes stay put in
 * the read buffer until its body is read (body runs reuse the buffer once consumed),
 * so spans into it stay valid until then: a handler that needs the head later keeps
 * what it needs. Pipelined requests wait in the buffer and are answered in order.
 *
 * Back-pressure both ways: the body is handed out as runs of the read buffer, and the
 * client is not read again until the consumer says it is done with them
 * (px_conn_body_consumed); the output is not accepted again while a write is pending
 * (px_conn_writing), and the handler hears when it is out (on_written).
 *
 * A client that ends its side after a whole request (a half-close) still gets that
 * answer; nothing after it is read or answered, and the connection closes once it is
 * out. One that ends mid-request is closed as soon as that is known.
 *
 * Deadlines: several at once (the connection's own and the handler's: the route's
 * timeout, a try's, a backoff), on one libuv timer armed for the earliest; moving a
 * deadline later costs no timer call. */
#ifndef PX_DOWNSTREAM_H
#define PX_DOWNSTREAM_H

#include <llhttp.h>

#include "body.h"
#include "http1.h"
#include "metrics.h"
#include "out.h"
#include "queue.h"
#include "iobuf.h"
#include "transport.h"

typedef enum {
  PX_DL_IDLE,    /* keep-alive: no request started */
  PX_DL_HEADER,  /* a head is arriving */
  PX_DL_LINGER,  /* closing gently: drop what the client still sends */
  PX_DL_ROUTE,   /* the handler's: the request's whole time */
  PX_DL_TRY,     /* the handler's: one upstream try */
  PX_DL_BACKOFF, /* the handler's: the wait before a retry */
  PX_DL__N
} px_dl_kind_t;

typedef struct {
  size_t max_header_bytes;
  uint64_t max_body_bytes;
  uint64_t header_timeout_ms, idle_timeout_ms;
} px_conn_limits_t;

typedef struct px_conn_s px_conn_t;

typedef struct {
  /* A request head is in (px_conn_head). The handler answers it, reads its body, or
   * both; the connection reads nothing more until it is done. */
  void (*on_head)(px_conn_t *c);
  /* More of the body may be read with px_conn_body_next. */
  void (*on_body)(px_conn_t *c);
  /* Everything queued on the output went out. */
  void (*on_written)(px_conn_t *c);
  /* The codec refused a head or a body, a head did not come in time, or a body broke
   * the limit: the handler answers (its output is empty and the connection will close
   * after), or, when its answer has started, closes. `kind` says which. */
  void (*on_error)(px_conn_t *c, px_errkind_t kind, const char *detail);
  /* A deadline of the handler's expired. */
  void (*on_deadline)(px_conn_t *c, px_dl_kind_t kind);
  /* The connection is closing (the client went, an error, a drain, a close): the
   * handler ends what is in flight. Called once, before on_free. */
  void (*on_close)(px_conn_t *c);
  /* Every handle is closed: the last moment the connection exists. */
  void (*on_free)(px_conn_t *c);
} px_conn_handler_t;

/* What the connection knows of the head it handed over. */
typedef struct {
  px_head_t h; /* spans into the read buffer */
  int http_major;
  int upgrade;         /* llhttp's: Upgrade with Connection: upgrade, or CONNECT */
  int keep_alive;      /* the client allows another request after this one */
  int body_mode;       /* px_body_mode_t: NONE, LENGTH or CHUNKED; < 0: refused (see refused) */
  const char *refused; /* why the framing is refused; px_http1_request_body's -400 / -501 */
  uint64_t content_length;
  int expect_continue; /* Expect: 100-continue */
  size_t head_bytes;   /* the head's length, blank lines before it included */
} px_conn_head_t;

struct px_conn_s {
  px_transport_t tp;
  uv_timer_t timer;
  px_tp_write_t wreq, cont_wreq;
  px_iobufs_t *bufs; /* where its read buffer comes from */
  const px_conn_handler_t *handler;
  void *data;      /* the handler's */
  px_queue_t link; /* the handler's list */
  px_conn_limits_t lim;
  char peer[48]; /* the client's address, without port or brackets */

  llhttp_t parser;
  char *rbuf;
  size_t rcap, rlen, rpos;
  int rfull; /* the last reads filled the buffer: how many in a row (up to 2) */
  px_hcollect_t hc;
  px_headscan_t scan;
  px_conn_head_t head;
  px_body_reader_t body;
  uint64_t body_in;
  int in_request, body_done, body_out; /* body_out: runs handed out, not yet consumed */
  int in_process, again;

  px_out_t out;
  uint64_t bytes_out; /* bytes given to the transport, for the access log */
  int writing, reading, closing, close_after, lingering, nhandles;
  int peer_eof;          /* the client ended its side after a whole request */
  uint64_t dl[PX_DL__N]; /* loop time, ms; 0: not set */
  uint64_t armed_at;     /* loop time the timer fires at; 0: not running */
};

/* Accepts a connection from `l` into `c` (zeroed memory the handler owns), on `loop`
 * with read buffers from `bufs`, and starts reading it. When the accept fails the
 * connection closes at once: on_close and, later, on_free run as for any other. */
void px_conn_accept(px_conn_t *c, px_tp_listener_t *l, uv_loop_t *loop, px_iobufs_t *bufs,
                    const px_conn_handler_t *handler, void *data, const px_conn_limits_t *lim);

/* The head being served. */
static inline const px_conn_head_t *px_conn_head(const px_conn_t *c) { return &c->head; }

/* The next run of the body: PX_BR_DATA with *d (valid until px_conn_body_consumed),
 * PX_BR_MORE (on_body says when there is more), PX_BR_END, or PX_BR_ERROR (on_error
 * has run: a malformed chunk, or the body past max_body_bytes; or the connection
 * closed: the client ended its side before the body's end). */
px_br_result_t px_conn_body_next(px_conn_t *c, px_str_t *d);
/* The runs handed out so far went where they were going: the buffer may be reused,
 * and the client read again. */
void px_conn_body_consumed(px_conn_t *c);

/* The rest of a body under Content-Length, for a consumer that moves it past the read
 * buffer (splice.h): the bytes still to come (at least `min`), with none of them
 * buffered, and the connection stops reading; 0 when it cannot be so (fewer bytes
 * left, bytes buffered or handed out, a chunked body, the client's end seen) and
 * nothing changed. */
uint64_t px_conn_body_take(px_conn_t *c, uint64_t min);
/* `n` more bytes of a taken body were read by the consumer. */
void px_conn_body_taken(px_conn_t *c, uint64_t n);
/* The consumer gives a taken body back before it read any: the connection reads it. */
void px_conn_body_untake(px_conn_t *c);

/* Writes what is queued on c->out; on_written runs once it is out. Returns 1 when it
 * went at once (on_written has run), 0 when it is pending or there was nothing to
 * write (no callback has run), -1 when the connection closed (on_close has run). */
int px_conn_flush(px_conn_t *c);
static inline int px_conn_writing(const px_conn_t *c) { return c->writing; }
/* "HTTP/1.1 100 Continue" (a write of its own, ahead of the answer), once, when the
 * head asked for it and its body is still to come. */
void px_conn_continue(px_conn_t *c);

/* Arms a deadline `ms` from now (0: clears it). */
void px_conn_deadline(px_conn_t *c, px_dl_kind_t kind, uint64_t ms);

/* The request is answered and its answer written: the connection reads the next one,
 * or closes (gently when the client may still be sending) when `close` is set (the
 * handler's reasons: draining) or c->close_after was. */
void px_conn_request_done(px_conn_t *c, int close);
/* Closes now (what is queued is dropped). */
void px_conn_close(px_conn_t *c);
/* Closes now with a reset, so the client knows it got no answer (fault injection's
 * drop_response). */
void px_conn_abort(px_conn_t *c);
/* Draining: an idle connection closes now, a busy one after its answer. */
void px_conn_drain(px_conn_t *c);

#endif
