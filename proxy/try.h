/* One upstream try of a request: a connection to the endpoint the request picked
 * (pooled or new), the request head and body written to it, the response head parsed
 * and *held* until the request commits it to the client (a filter may still retry the
 * request instead, or answer it otherwise), then the body streamed to the client's
 * output. A try never touches the client's socket: it asks the client connection for
 * runs of the request body and queues the answer on its output.
 *
 * Memory: a try lives inside its request; the upstream connection is the pool's, lent
 * for the try (px_upstream_acquire / px_upstream_release). Bodies pass by reference:
 * request body runs are the client connection's read buffer, response body runs the
 * upstream connection's, each reused only once the other side has written them. */
#ifndef PX_TRY_H
#define PX_TRY_H

#include <llhttp.h>

#include "body.h"
#include "splice.h"
#include "downstream.h"
#include "http1.h"
#include "out.h"
#include "upstream.h"

typedef struct px_try_s px_try_t;

typedef struct {
  /* A final response head is held (px_try_head): commit it or end the try. */
  void (*on_head)(px_try_t *t);
  /* The try failed before an answer was committed. `stale`: a pooled connection the
   * upstream closed before answering, maybe before it read anything. */
  void (*on_fail)(px_try_t *t, px_errkind_t kind, const char *detail, int stale);
  /* A run of the request body goes upstream (for a copy kept while it may be resent). */
  void (*on_body_run)(px_try_t *t, px_str_t d);
  /* Whether the rest of the body may pass without being seen (splice.h): nothing keeps
   * or taps it; then on_body_passed counts what went that way instead of on_body_run. */
  int (*body_unseen)(px_try_t *t);
  void (*on_body_passed)(px_try_t *t, uint64_t n);
  /* A run of the answer's body goes to the client (or is dropped), while `tap` is set. */
  void (*on_resp_body_run)(px_try_t *t, px_str_t d);
  /* The committed answer is complete, its last bytes queued on the client's output. */
  void (*on_done)(px_try_t *t);
  /* The committed answer broke: its client must not take it for a whole one. */
  void (*on_broken)(px_try_t *t, px_errkind_t kind, const char *detail);
  /* Bytes were queued on the client's output: flush them (see px_try_output_blocked). */
  void (*on_output)(px_try_t *t);
} px_try_cb_t;

struct px_try_s {
  const px_try_cb_t *cb;
  void *data; /* the request's */
  px_wctx_t *w;
  px_conn_t *conn;
  px_cluster_t *cluster;
  size_t ep;
  px_upconn_t *up;  /* from px_upstream_acquire on; `connected` once it is up */
  px_upwait_t wait; /* while it waits for a connection (limits.max_pending) */
  int active, connected, counted_ep;
  /* the request going up */
  const px_buf_t *head;   /* the request head, ready to send */
  const px_buf_t *replay; /* a resend: the whole body kept so far, or NULL */
  int chunked_in, body_sent, write_failed;
  int splicing; /* the rest of the body goes by sp */
  px_splice_t sp;
  px_out_t upw;
  px_queue_t flushq; /* in w->flushq while the first write waits for the turn's flush */
  int flush_queued, head_out;
  /* the answer coming back */
  llhttp_t parser;
  px_hcollect_t rh;
  px_body_reader_t rbody;
  px_head_t resp;      /* the held head, spans into up->rbuf */
  const char *refused; /* why the head cannot be passed on */
  px_body_mode_t mode; /* how the client gets the body */
  int skip_1xx, held, committed, resp_done, reusable;
  int discard;    /* committed to nobody: the body is read and dropped (px_try_drain) */
  int tap;        /* on_resp_body_run wanted */
  size_t body_at; /* where the body starts in up->rbuf, while held */
};

/* Once, for every try of the requests on client connection `conn`: the outcome of each
 * goes to `cb`, with `data`. */
void px_try_init(px_try_t *t, px_wctx_t *w, px_conn_t *conn, const px_try_cb_t *cb, void *data);
/* Starts a try towards endpoint `ep` of `cluster` (of snapshot `ws`): sends `head` (and
 * `replay` as the body when set; else the body is read from the client connection as
 * it comes). At the cluster's max_connections it waits for a connection while
 * max_pending allows (bounded by the request's deadlines). Returns 0 (the outcome comes
 * through the callbacks), PX_EOVERFLOW when both limits are reached, or a libuv error
 * (nothing started, no callback). */
int px_try_start(px_try_t *t, px_wsnap_t *ws, px_cluster_t *cluster, size_t ep, const px_buf_t *head,
                 const px_buf_t *replay, int chunked_in);

/* The held head. */
static inline const px_head_t *px_try_head(const px_try_t *t) { return &t->resp; }
/* Passes the held head on: the client's head is built from it (`rw`) onto the client's
 * output, and the body follows (the callbacks may run before this returns; nothing of
 * the request may be touched after it). A body delimited by the upstream's close makes
 * the client connection close after it. */
void px_try_commit(px_try_t *t, const px_resp_rewrite_t *rw);

/* Reads the held answer to its end without passing any of it on (fault injection's
 * drop_response: the upstream finishes its work), then on_done runs as for a committed
 * one; on_broken when it breaks. */
void px_try_drain(px_try_t *t, int request_is_head);

/* Drops the held head and the answer behind it, so that the request can go again: the
 * connection goes back to the pool when that answer is in whole already and the
 * upstream keeps the connection, else it is closed. Nothing of it reaches the client. */
void px_try_discard(px_try_t *t, int request_is_head);

/* More of the request body may be read (the client connection's on_body). */
void px_try_body_ready(px_try_t *t);
/* The client's output went out: response bytes may be read again. */
void px_try_output_written(px_try_t *t);
/* The client's output is backed up: stop reading the upstream until it is written. */
void px_try_output_blocked(px_try_t *t);

/* Sends what the tries of worker `w` queued upstream in this loop turn (the worker's
 * turn-end flush, px_wctx_flush_init). */
void px_try_flush_all(px_wctx_t *w);

/* Ends the try: the connection goes back to the pool when the exchange completed in
 * step (and `reusable`), else it is closed. */
void px_try_end(px_try_t *t, int reusable);
void px_try_free(px_try_t *t);

#endif
