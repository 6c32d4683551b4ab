#include "try.h"

#include "log.h"

static void pump(px_try_t *t);

/* ---- the response head ----------------------------------------------------------- */

static int on_field(llhttp_t *p, const char *at, size_t n) {
  px_try_t *t = p->data;
  return px_hcollect_field(&t->rh, (uint32_t)(at - t->up->rbuf), (uint32_t)n);
}
static int on_value(llhttp_t *p, const char *at, size_t n) {
  px_try_t *t = p->data;
  return px_hcollect_value(&t->rh, (uint32_t)(at - t->up->rbuf), (uint32_t)n);
}
static int on_value_complete(llhttp_t *p) {
  px_try_t *t = p->data;
  return px_hcollect_value_done(&t->rh, t->up->rbuf);
}

/* A response head is in: refuse what cannot be passed on, skip interim answers, hold
 * the final one. llhttp stops here (HPE_PAUSED); on_up_read reads on. Returning -1
 * makes it a bad response, with the reason in t->refused. */
static int on_headers_complete(llhttp_t *p) {
  px_try_t *t = p->data;
  t->resp = (px_head_t){.base = t->up->rbuf,
                        .h = t->rh.h,
                        .nh = t->rh.n,
                        .status = p->status_code,
                        .http_minor = p->http_minor,
                        .chunked = (p->flags & F_CHUNKED) != 0,
                        .content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1};
  t->refused = px_http1_response_refuse(&t->resp, p->http_major, p->flags, p->content_length);
  if (t->refused) return -1;
  if (t->resp.status < 200) {
    /* Interim responses (100 Continue from an upstream) are not forwarded: the
     * sidecar answered the client's Expect itself. */
    t->skip_1xx = 1;
    px_hcollect_reset(&t->rh);
  }
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {.on_header_field = on_field,
                                           .on_header_value = on_value,
                                           .on_header_value_complete = on_value_complete,
                                           .on_headers_complete = on_headers_complete};

/* ---- failures ---------------------------------------------------------------------- */

/* The try failed before an answer was committed: the upstream connection goes, and
 * the request decides what next. */
static void try_fail(px_try_t *t, px_errkind_t kind, const char *detail, int stale) {
  px_out_reset(&t->upw);
  px_try_end(t, 0);
  t->cb->on_fail(t, kind, detail, stale);
}

/* The committed answer broke. */
static void try_broken(px_try_t *t, px_errkind_t kind, const char *detail) {
  px_try_end(t, 0);
  t->cb->on_broken(t, kind, detail);
}

/* ---- the response body --------------------------------------------------------------- */

/* Response bytes from p to end, after a committed head: onto the client's output. */
static void body(px_try_t *t, const char *p, const char *end) {
  px_out_t *o = &t->conn->out;
  int chunked = t->mode == PX_BODY_CHUNKED;
  if (!t->resp_done) {
    px_str_t d;
    px_br_result_t r;
    while ((r = px_body_read(&t->rbody, &p, end, &d)) == PX_BR_DATA) {
      if (PX_UNLIKELY(t->tap)) t->cb->on_resp_body_run(t, d);
      if (!t->discard) px_out_body(o, d.p, d.n, chunked);
    }
    if (r == PX_BR_ERROR) {
      /* The head is out already (or queued): the client's connection is closed, so it
       * cannot take the cut answer for a whole one. */
      try_broken(t, PX_ERR_BAD_RESPONSE, t->rbody.err);
      return;
    }
    if (r == PX_BR_END) {
      if (chunked) px_out_last_chunk(o);
      t->resp_done = 1;
      t->reusable = llhttp_should_keep_alive(&t->parser);
    }
  }
  /* Bytes after the end of the response: the upstream is out of step. */
  if (t->resp_done && p != end) t->reusable = 0;
  if (t->resp_done) {
    t->cb->on_done(t); /* queued or not, the request flushes and finishes */
  } else if (o->n && !t->discard) {
    t->cb->on_output(t);
  } else {
    t->up->rlen = 0; /* the head went out already; nothing of this read is kept */
  }
}

/* Response bytes arrived: up->rbuf[up->rlen - n, up->rlen). */
static void on_up_read(void *owner, px_upconn_t *up, size_t n) {
  px_try_t *t = owner;
  const char *p = up->rbuf + up->rlen - n, *end = up->rbuf + up->rlen;
  if (t->committed) {
    body(t, p, end);
    return;
  }
  if (t->held) return; /* the request has not decided yet: the bytes wait in the buffer */
  for (;;) {           /* the head, after any interim ones */
    llhttp_errno_t err = llhttp_execute(&t->parser, p, (size_t)(end - p));
    if (err == HPE_OK) return; /* the head goes on in the next read */
    if (err != HPE_PAUSED) {
      const char *why = t->refused ? t->refused : px_hcollect_error(&t->rh);
      if (t->rh.too_many || up->rlen == up->rcap) why = "the upstream sent a response head that is too large";
      try_fail(t, PX_ERR_BAD_RESPONSE, why ? why : "the upstream sent a malformed response", 0);
      return;
    }
    p = llhttp_get_error_pos(&t->parser);
    if (!t->skip_1xx) break;
    t->skip_1xx = 0;
    llhttp_reset(&t->parser);
  }
  t->held = 1;
  t->body_at = (size_t)(p - up->rbuf);
  px_metric_inc(&t->w->metrics.upstream[t->cluster->metric_slot][t->resp.status / 100 - 1], 1);
  t->cb->on_head(t);
}

static void on_up_eof(void *owner, px_upconn_t *up, int status) {
  px_try_t *t = owner;
  t->reusable = 0;
  if (t->resp_done) return;                    /* answered whole; the connection is closed at the try's end */
  if (status == UV_ENOBUFS && !t->committed) { /* a head that filled the buffer at its largest (upstream.c) */
    try_fail(t, PX_ERR_BAD_RESPONSE, "the upstream sent a response head that is too large", 0);
    return;
  }
  if (t->committed || t->held) {
    if (status == UV_EOF && px_body_eof(&t->rbody) == PX_BR_END && t->committed) {
      /* A body delimited by the connection's end (RFC 9112 §6.3): it is complete. The
       * connection is released at the request's end, once the client has the bytes
       * still queued from its buffer. */
      if (t->mode == PX_BODY_CHUNKED) px_out_last_chunk(&t->conn->out);
      t->resp_done = 1;
      t->cb->on_done(t);
      return;
    }
    if (t->held && !t->committed) { /* ended before the request decided: it sees it at commit */
      t->held = 2;
      return;
    }
    try_broken(t, PX_ERR_UPSTREAM_RESET,
               "the upstream closed the connection before the response was complete");
    return;
  }
  /* Before any answer. On a pooled connection with nothing read back, the upstream may
   * have closed it (its keep-alive timeout) before it read the request: stale. */
  int stale = up->rlen == 0 && up->reused && !up->writing && t->body_sent;
  try_fail(t, PX_ERR_UPSTREAM_RESET,
           t->write_failed ? "the upstream connection failed while sending the request"
                           : "the upstream closed the connection before the response was complete",
           stale);
}

/* ---- the request going up ------------------------------------------------------------ */

static void written(px_try_t *t) {
  px_out_reset(&t->upw);
  if (!t->replay) px_conn_body_consumed(t->conn);
  if (!t->body_sent) pump(t);
}

/* The upstream stopped taking the request: it closed or reset the connection, maybe
 * after it answered (an early 413, a 503). Nothing more is sent; what it sent is read
 * first (received bytes stay readable after a reset), so an answer in the socket
 * reaches the client, and the end of the connection without one is the reset. */
static void write_failed(px_try_t *t) {
  px_out_reset(&t->upw);
  t->write_failed = 1;
}

static void on_up_written(void *owner, px_upconn_t *up, int status) {
  px_try_t *t = owner;
  (void)up;
  if (status < 0) {
    write_failed(t);
    return;
  }
  written(t);
}

/* Sends what is queued for the upstream, now. */
static void flush_now(px_try_t *t) {
  if (!t->active || !t->up || t->upw.n == 0 || t->up->writing) return;
  t->head_out = 1;
  unsigned n = px_out_iov(&t->upw);
  int r = px_upstream_write(t->up, t->upw.iov, n);
  if (r < 0)
    write_failed(t);
  else if (r == 1)
    written(t);
  /* else the upstream reads slower than the client sends: the client is not read
   * until this is out (its runs are not consumed yet). */
}

/* A request that is whole (its head, and all of its body if it has one) waits for the
 * loop turn's flush, so that the requests of a turn wake the upstream once (wctx.c says
 * why). A body still coming streams at once, head first: it goes on while it is read,
 * as fast as the upstream takes it (waiting for the turn's end cost a 1 MiB upload 4%,
 * and every later run of it 40%). */
static void flush_up(px_try_t *t) {
  if (t->head_out || !t->body_sent) {
    flush_now(t);
    return;
  }
  if (t->upw.n == 0 || t->up->writing || t->flush_queued) return;
  if (px_queue_empty(&t->w->flushq)) px_wctx_flush_soon(t->w);
  px_queue_insert_tail(&t->w->flushq, &t->flushq);
  t->flush_queued = 1;
}

static void unqueue(px_try_t *t) {
  if (!t->flush_queued) return;
  px_queue_remove(&t->flushq);
  t->flush_queued = 0;
}

void px_try_flush_all(px_wctx_t *w) {
  /* A flush may queue again (a body run read after the head went): it goes in this
   * same pass, at the tail. */
  while (!px_queue_empty(&w->flushq)) {
    px_try_t *t = PX_CONTAINER_OF(w->flushq.next, px_try_t, flushq);
    unqueue(t);
    flush_now(t);
  }
}

static void splice_end(px_try_t *t) {
  if (!t->splicing) return;
  t->splicing = 0;
  px_splice_stop(&t->sp);
  px_conn_body_taken(t->conn, t->sp.taken);
  px_metric_inc(&t->w->metrics.body_spliced, t->sp.taken);
  t->cb->on_body_passed(t, t->sp.taken);
}

static void on_spliced(px_splice_t *s, int status, int at_source) {
  px_try_t *t = s->data;
  splice_end(t);
  if (status == 0) {
    t->body_sent = 1;
  } else if (at_source) {
    /* The client ended or broke its side before the body's end: as when the bytes are
     * read (px_conn_body_next), the connection closes, which ends the request. */
    px_conn_close(t->conn);
  } else {
    write_failed(t);
  }
}

/* Between its first bytes (read with the head) and the rest: a large body nobody needs
 * to see goes by splice, once everything before it is out. */
static int splice_rest(px_try_t *t) {
  if (t->chunked_in || t->upw.n != 0 || !t->cb->body_unseen(t)) return 0;
  px_conn_t *c = t->conn;
  uint64_t n = px_conn_body_take(c, PX_SPLICE_MIN);
  if (n == 0) return 0;
  if (px_splice_start(&t->sp, &c->tp, &t->up->tp, n, on_spliced, t) < 0) {
    px_conn_body_untake(c); /* the body is copied */
    return 0;
  }
  t->splicing = 1;
  return 1;
}

/* Reads what the client sent of the body and queues it upstream. */
static void pump(px_try_t *t) {
  /* Not before the connection is up: the head goes first (on_up_connect). */
  if (!t->connected || t->up->writing || t->body_sent || t->replay || t->write_failed || t->splicing) return;
  if (t->head_out && splice_rest(t)) return;
  px_str_t d;
  px_br_result_t r;
  while ((r = px_conn_body_next(t->conn, &d)) == PX_BR_DATA) {
    t->cb->on_body_run(t, d);
    px_out_body(&t->upw, d.p, d.n, t->chunked_in);
  }
  if (r == PX_BR_ERROR) { /* the connection told the request, which ends the try */
    px_out_reset(&t->upw);
    return;
  }
  if (r == PX_BR_END) {
    if (t->chunked_in) px_out_last_chunk(&t->upw);
    t->body_sent = 1;
  }
  flush_up(t);
}

void px_try_body_ready(px_try_t *t) {
  if (t->active) pump(t);
}

static void on_up_connect(void *owner, px_upconn_t *up, int status) {
  px_try_t *t = owner;
  if (status != 0) {
    t->up = NULL;
    atomic_fetch_add_explicit(&t->cluster->eps[t->ep].st->failures_total, 1, memory_order_relaxed);
    px_debug("connect to %s failed: %s", t->cluster->eps[t->ep].name, px_strerror(status));
    try_fail(t, PX_ERR_CONNECT_FAILURE,
             status == UV_ETIMEDOUT ? "connecting to the upstream timed out"
                                    : "the upstream refused the connection",
             0);
    return;
  }
  t->up = up;
  t->connected = 1;
  atomic_fetch_add_explicit(&t->cluster->eps[t->ep].st->requests_total, 1, memory_order_relaxed);
  llhttp_init(&t->parser, HTTP_RESPONSE, &settings);
  t->parser.data = t;
  px_hcollect_reset(&t->rh);
  px_out_reset(&t->upw);
  px_out_piece(&t->upw, t->head->data, 0, t->head->len);
  if (t->replay) {
    /* A resend: the body went out on an earlier try and is all in the copy, since only
     * then is a request resent. It goes again as one chunk, or as it was under its
     * Content-Length; an empty chunked body as its last chunk alone. */
    px_out_body(&t->upw, t->replay->data, t->replay->len, t->chunked_in);
    if (t->chunked_in) px_out_last_chunk(&t->upw);
    t->body_sent = 1;
  }
  px_conn_continue(t->conn); /* the client may send its body now */
  px_upstream_read_start(up);
  if (t->body_sent)
    flush_up(t);
  else
    pump(t);
}

static const px_upconn_cb_t up_cb = {on_up_connect, on_up_read, on_up_eof, on_up_written};

void px_try_init(px_try_t *t, px_wctx_t *w, px_conn_t *conn, const px_try_cb_t *cb, void *data) {
  t->cb = cb;
  t->data = data;
  t->w = w;
  t->conn = conn;
  t->flush_queued = 0;
}

int px_try_start(px_try_t *t, px_wsnap_t *ws, px_cluster_t *cluster, size_t ep, const px_buf_t *head,
                 const px_buf_t *replay, int chunked_in) {
  px_conn_t *conn = t->conn;
  t->cluster = cluster;
  t->ep = ep;
  t->head = head;
  t->replay = replay;
  t->chunked_in = chunked_in;
  t->body_sent = conn->body_done && !replay && conn->head.body_mode <= PX_BODY_NONE;
  t->refused = NULL;
  t->skip_1xx = t->held = t->committed = t->resp_done = t->reusable = t->write_failed = t->discard = 0;
  t->head_out = t->splicing = 0;
  t->up = NULL; /* set by px_upstream_acquire, before the connection is up */
  t->connected = 0;
  t->active = 1;
  atomic_fetch_add_explicit(&cluster->eps[ep].st->active_requests, 1, memory_order_relaxed);
  t->counted_ep = 1;
  int r = px_upstream_acquire(t->w, ws, cluster, ep, t, &up_cb, &t->up, &t->wait);
  if (r < 0) {
    t->active = 0;
    atomic_fetch_sub_explicit(&cluster->eps[ep].st->active_requests, 1, memory_order_relaxed);
    t->counted_ep = 0;
  }
  return r;
}

/* The held answer's body follows its head (to the client, or to nobody). */
static void body_start(px_try_t *t, int request_is_head) {
  px_conn_t *c = t->conn;
  px_body_reader_init(&t->rbody, px_http1_response_body(&t->resp, request_is_head),
                      (uint64_t)PX_MAX(t->resp.content_length, 0));
  int closed = t->held == 2;
  t->committed = 1;
  t->held = 0;
  px_upconn_t *up = t->up;
  if (!closed) {
    body(t, up->rbuf + t->body_at, up->rbuf + up->rlen);
    return;
  }
  /* The upstream closed while the head was held: what it sent is all there is. */
  const char *p = up->rbuf + t->body_at, *end = up->rbuf + up->rlen;
  px_str_t d;
  px_br_result_t r;
  while ((r = px_body_read(&t->rbody, &p, end, &d)) == PX_BR_DATA) {
    if (PX_UNLIKELY(t->tap)) t->cb->on_resp_body_run(t, d);
    if (!t->discard) px_out_body(&c->out, d.p, d.n, t->mode == PX_BODY_CHUNKED);
  }
  if (r == PX_BR_ERROR) {
    try_broken(t, PX_ERR_BAD_RESPONSE, t->rbody.err);
    return;
  }
  if (r == PX_BR_MORE && px_body_eof(&t->rbody) != PX_BR_END) {
    try_broken(t, PX_ERR_UPSTREAM_RESET,
               "the upstream closed the connection before the response was complete");
    return;
  }
  if (t->mode == PX_BODY_CHUNKED) px_out_last_chunk(&c->out);
  t->resp_done = 1;
  t->reusable = 0;
  t->cb->on_done(t);
}

void px_try_commit(px_try_t *t, const px_resp_rewrite_t *rw) {
  px_conn_t *c = t->conn;
  t->mode = px_http1_build_response(&t->resp, rw, &c->out.side);
  if (t->mode == PX_BODY_CLOSE) c->close_after = 1; /* the client sees the end the same way */
  px_out_piece(&c->out, NULL, 0, c->out.side.len);
  body_start(t, rw->request_is_head);
}

void px_try_drain(px_try_t *t, int request_is_head) {
  t->discard = 1;
  t->mode = PX_BODY_LENGTH; /* nothing is framed for anybody */
  body_start(t, request_is_head);
}

void px_try_discard(px_try_t *t, int request_is_head) {
  if (t->held == 1 && t->up) {
    /* Small error answers usually came whole with their head: then the connection is
     * in step and can serve another request. */
    px_body_reader_t br;
    px_body_reader_init(&br, px_http1_response_body(&t->resp, request_is_head),
                        (uint64_t)PX_MAX(t->resp.content_length, 0));
    const char *p = t->up->rbuf + t->body_at, *end = t->up->rbuf + t->up->rlen;
    px_str_t d;
    px_br_result_t r;
    while ((r = px_body_read(&br, &p, end, &d)) == PX_BR_DATA) continue;
    if (r == PX_BR_END && p == end && llhttp_should_keep_alive(&t->parser)) {
      t->resp_done = 1;
      t->reusable = 1;
    }
  }
  t->held = 0;
  px_try_end(t, 1);
}

void px_try_output_written(px_try_t *t) {
  if (!t->active || !t->connected || t->resp_done) return;
  t->up->rlen = 0; /* the upstream's read buffer is free again */
  px_upstream_read_start(t->up);
}

void px_try_output_blocked(px_try_t *t) {
  /* The client reads slower than the upstream sends: stop reading the upstream until
   * this is out, so neither buffer grows. */
  if (t->active && t->connected) px_upstream_read_stop(t->up);
}

void px_try_end(px_try_t *t, int reusable) {
  unqueue(t);
  splice_end(t);
  px_upstream_cancel(t->w, &t->wait); /* when it still waits for a connection */
  if (t->counted_ep) {
    atomic_fetch_sub_explicit(&t->cluster->eps[t->ep].st->active_requests, 1, memory_order_relaxed);
    t->counted_ep = 0;
  }
  if (t->up) {
    px_upstream_release(t->up, reusable && t->reusable && t->resp_done && t->body_sent);
    t->up = NULL;
  }
  t->connected = 0;
  t->active = 0;
}

void px_try_free(px_try_t *t) {
  unqueue(t);
  px_hcollect_free(&t->rh);
  px_out_free(&t->upw);
}
