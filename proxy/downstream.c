#include "downstream.h"

#include <stdlib.h>
#include <string.h>

#include "net.h"

/* How long a connection closed with the client's bytes unread keeps reading and
 * dropping them (see conn_linger). */
#define PX_LINGER_MS 2000

static void process(px_conn_t *c);
static void read_start(px_conn_t *c);
static void read_stop(px_conn_t *c);

/* ---- deadlines --------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void start_timer(px_conn_t *c, uint64_t at, uint64_t now) {
  uv_timer_start(&c->timer, on_timer, at > now ? at - now : 0, 0);
  c->armed_at = at;
}

/* A deadline only ever moves the timer earlier; one that fires early finds the
 * earliest of what is set and re-arms for it. */
void px_conn_deadline(px_conn_t *c, px_dl_kind_t kind, uint64_t ms) {
  if (ms == 0) {
    c->dl[kind] = 0;
    return;
  }
  uint64_t now = uv_now(c->timer.loop), at = now + ms;
  c->dl[kind] = at;
  if (c->armed_at == 0 || at < c->armed_at) start_timer(c, at, now);
}

static void on_timer(uv_timer_t *t) {
  px_conn_t *c = t->data;
  c->armed_at = 0;
  uint64_t now = uv_now(t->loop);
  for (int k = 0; k < PX_DL__N && !c->closing; k++) {
    if (c->dl[k] == 0 || c->dl[k] > now) continue;
    c->dl[k] = 0;
    switch ((px_dl_kind_t)k) {
    case PX_DL_HEADER:
      c->handler->on_error(c, PX_ERR_REQUEST_TIMEOUT,
                           "the request head did not arrive within header_timeout");
      break;
    case PX_DL_IDLE:
    case PX_DL_LINGER:
      px_conn_close(c); /* an idle keep-alive connection, or the end of a lingering close */
      break;
    default: c->handler->on_deadline(c, (px_dl_kind_t)k); break;
    }
  }
  if (c->closing) return;
  uint64_t next = 0;
  for (int k = 0; k < PX_DL__N; k++)
    if (c->dl[k] && (next == 0 || c->dl[k] < next)) next = c->dl[k];
  if (next) start_timer(c, next, now);
}

/* ---- reading ------------------------------------------------------------------------- */

static void release_rbuf(px_conn_t *c) {
  if (c->rbuf == NULL) return;
  px_iobuf_put(c->bufs, c->rbuf, c->rcap);
  c->rbuf = NULL;
  c->rcap = c->rlen = c->rpos = 0;
  c->rfull = 0;
}

static void on_alloc(px_transport_t *t, uv_buf_t *buf) {
  px_conn_t *c = t->data;
  if (c->rbuf == NULL) {
    c->rbuf = px_iobuf_get(c->bufs);
    c->rcap = PX_IOBUF_SIZE;
    c->rlen = c->rpos = 0;
  } else if (c->rlen == c->rcap && !c->in_request && c->rcap <= c->lim.max_header_bytes) {
    /* A head larger than the buffer: grow towards max_header_bytes. Header spans are
     * offsets, so moving the buffer is safe. */
    c->rbuf = px_iobuf_grow(c->bufs, c->rbuf, c->rlen, c->rcap, c->rcap * 2);
    c->rcap *= 2;
  } else if (c->rlen == 0 && c->rfull == 2 && c->in_request && c->rcap < PX_IOBUF_BODY) {
    /* A body arriving faster than a buffer a read, all of it forwarded (nothing in the
     * buffer is referenced any more): larger reads from here on. */
    c->rbuf = px_iobuf_grow(c->bufs, c->rbuf, 0, c->rcap, PX_IOBUF_BODY);
    c->rcap = PX_IOBUF_BODY;
  }
  buf->base = c->rbuf + c->rlen;
  buf->len = c->rcap - c->rlen;
}

static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf) {
  px_conn_t *c = t->data;
  if (nread == 0) return;
  if (c->lingering) { /* everything the client still sends is dropped, until it closes */
    if (nread < 0) px_conn_close(c);
    c->rlen = c->rpos = 0;
    return;
  }
  if (nread < 0) {
    if (nread == UV_ENOBUFS) {
      if (!c->in_request)
        c->handler->on_error(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      else
        read_stop(c); /* the buffer is full of what follows: read again once this request is done */
      return;
    }
    if (nread == UV_EOF && c->in_request) {
      /* The client's end during a request: a half-close (a client that says it has no
       * more to send) or a close. A whole request still gets its answer, as HAProxy
       * gives it; if the client is gone, the write says so. Nothing more is read or
       * answered after it. A body that needs more bytes than are buffered never
       * completes: px_conn_body_next closes then. */
      c->peer_eof = 1;
      c->close_after = 1;
      read_stop(c);
      if (!c->body_done && !c->body_out) c->handler->on_body(c); /* the consumer finds out */
      return;
    }
    /* The client went away mid-request, or between requests: nothing to answer. */
    px_conn_close(c);
    return;
  }
  if (!c->in_request && c->rlen == c->rpos && c->dl[PX_DL_HEADER] == 0) {
    c->dl[PX_DL_IDLE] = 0;
    px_conn_deadline(c, PX_DL_HEADER, c->lim.header_timeout_ms);
  }
  c->rlen += (size_t)nread;
  c->rfull = c->rlen == c->rcap ? PX_MIN(c->rfull + 1, 2) : 0;
  process(c);
}

static void read_start(px_conn_t *c) {
  if (c->reading || c->closing || c->peer_eof) return;
  c->reading = 1;
  px_tp_read_start(&c->tp, on_alloc, on_read);
}

static void read_stop(px_conn_t *c) {
  if (!c->reading) return;
  c->reading = 0;
  px_tp_read_stop(&c->tp);
}

/* ---- heads --------------------------------------------------------------------------- */

static int on_url(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  px_hcollect_url(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
  return 0;
}
static int on_field(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  return px_hcollect_field(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
}
static int on_value(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  return px_hcollect_value(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
}
static int on_value_complete(llhttp_t *p) {
  px_conn_t *c = p->data;
  return px_hcollect_value_done(&c->hc, c->rbuf); /* a later value piece belongs to a new field */
}
/* llhttp parses heads only and stops right after each (bodies are px_body_read's). */
static int on_headers_complete(llhttp_t *p) { return HPE_PAUSED; }

/* llhttp_settings_init only zeroes: the callbacks this parser needs, the rest NULL. */
static const llhttp_settings_t settings = {.on_url = on_url,
                                           .on_header_field = on_field,
                                           .on_header_value = on_value,
                                           .on_header_value_complete = on_value_complete,
                                           .on_headers_complete = on_headers_complete};

static void error(px_conn_t *c, px_errkind_t kind, const char *detail) {
  c->close_after = 1;
  read_stop(c);
  c->handler->on_error(c, kind, detail);
}

/* llhttp stopped at the end of a head of `head_bytes`: what the handler gets. */
static void head_in(px_conn_t *c) {
  llhttp_t *p = &c->parser;
  px_conn_head_t *hd = &c->head;
  hd->h = (px_head_t){.base = c->rbuf,
                      .h = c->hc.h,
                      .nh = c->hc.n,
                      .method = llhttp_get_method(p),
                      .http_minor = llhttp_get_http_minor(p),
                      .url_off = c->hc.url_off,
                      .url_len = c->hc.url_len,
                      .chunked = (p->flags & F_CHUNKED) != 0,
                      .content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1,
                      .keep_alive = llhttp_should_keep_alive(p)};
  hd->http_major = llhttp_get_http_major(p);
  hd->upgrade = llhttp_get_upgrade(p);
  hd->keep_alive = hd->h.keep_alive;
  hd->content_length = p->content_length;
  hd->refused = NULL;
  hd->body_mode = px_http1_request_body(&hd->h, p->flags, p->content_length, c->hc.te_lines, &hd->refused);
  int ex = px_head_find(&hd->h, "expect");
  /* Not to an HTTP/1.0 client, which would not know what it is (RFC 9110 §10.1.1). */
  hd->expect_continue =
      ex >= 0 && hd->h.http_minor >= 1 && px_str_ieq_cstr(px_head_value(&hd->h, (size_t)ex), "100-continue");
  hd->head_bytes = c->rpos;
  px_body_reader_init(&c->body, hd->body_mode < 0 ? PX_BODY_NONE : (px_body_mode_t)hd->body_mode,
                      p->content_length);
  c->body_done = hd->body_mode <= PX_BODY_NONE;
  c->body_in = 0;
  c->body_out = 0;
  c->in_request = 1;
  c->dl[PX_DL_HEADER] = c->dl[PX_DL_IDLE] = 0;
  c->handler->on_head(c);
}

static void process_once(px_conn_t *c);

/* Drives the parser over what is buffered. A request done from inside a handler
 * (an answer written at once) asks for the next one here: it is taken by the loop,
 * not by a nested call, so pipelined requests answered at once cost no stack. */
static void process(px_conn_t *c) {
  if (c->in_process) {
    c->again = 1;
    return;
  }
  c->in_process = 1;
  do {
    c->again = 0;
    process_once(c);
  } while (c->again && !c->closing);
  c->in_process = 0;
}

static void process_once(px_conn_t *c) {
  if (c->closing) return;
  if (c->in_request) {
    if (!c->body_done && !c->body_out && c->rpos < c->rlen) c->handler->on_body(c);
    return;
  }
  if (c->rpos == c->rlen) {
    read_start(c);
    return;
  }
  /* llhttp only sees a head that is complete and passed the checks it lacks. */
  int sr = px_headscan(&c->scan, c->rbuf, c->rlen);
  if (sr < 0) {
    error(c, PX_ERR_BAD_REQUEST, c->scan.err);
    return;
  }
  if (sr == 0) {
    if (c->rlen - c->rpos > c->lim.max_header_bytes) {
      error(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      return;
    }
    read_start(c);
    return;
  }
  llhttp_errno_t err = llhttp_execute(&c->parser, c->rbuf + c->rpos, c->rlen - c->rpos);
  if (err == HPE_PAUSED) {
    c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
    if (c->rpos > c->lim.max_header_bytes) {
      error(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      return;
    }
    head_in(c);
    return;
  }
  if (err == HPE_OK) {
    c->rpos = c->rlen;
    if (c->rlen > c->lim.max_header_bytes) {
      error(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      return;
    }
    read_start(c);
    return;
  }
  const char *why_hc = px_hcollect_error(&c->hc);
  if (why_hc) {
    error(c, c->hc.too_many ? PX_ERR_HEADERS_TOO_LARGE : PX_ERR_BAD_REQUEST, why_hc);
  } else {
    px_buf_t why = {0};
    px_buf_printf(&why, "malformed request: %s", llhttp_get_error_reason(&c->parser));
    error(c, PX_ERR_BAD_REQUEST, why.data);
    px_buf_free(&why);
  }
}

/* ---- bodies -------------------------------------------------------------------------- */

px_br_result_t px_conn_body_next(px_conn_t *c, px_str_t *d) {
  if (c->body_done) return PX_BR_END;
  if (c->closing) return PX_BR_ERROR;
  const char *p = c->rbuf ? c->rbuf + c->rpos : NULL;
  px_br_result_t r = p ? px_body_read(&c->body, &p, c->rbuf + c->rlen, d) : PX_BR_MORE;
  if (p) c->rpos = (size_t)(p - c->rbuf);
  switch (r) {
  case PX_BR_DATA:
    c->body_in += d->n;
    if (c->body_in > c->lim.max_body_bytes) {
      error(c, PX_ERR_BODY_TOO_LARGE, "the request body is larger than max_body_bytes");
      return PX_BR_ERROR;
    }
    c->body_out = 1;
    return PX_BR_DATA;
  case PX_BR_END: c->body_done = 1; return PX_BR_END;
  case PX_BR_ERROR:
    /* A bad chunk while streaming: the consumer drops the upstream connection before
     * the body's end, so the upstream never sees a complete request. */
    error(c, PX_ERR_BAD_REQUEST, c->body.err);
    return PX_BR_ERROR;
  case PX_BR_MORE: break;
  }
  if (c->peer_eof) { /* the rest of the body will never come */
    px_conn_close(c);
    return PX_BR_ERROR;
  }
  if (!c->body_out) {
    c->rlen = c->rpos = 0;
    read_start(c);
  }
  return PX_BR_MORE;
}

void px_conn_body_consumed(px_conn_t *c) {
  if (!c->body_out) return;
  c->body_out = 0;
  if (c->rpos == c->rlen) c->rlen = c->rpos = 0;
  if (!c->body_done) read_start(c);
}

uint64_t px_conn_body_take(px_conn_t *c, uint64_t min) {
  if (c->body_done || c->closing || c->peer_eof || c->body_out || c->rpos != c->rlen ||
      c->body.mode != PX_BODY_LENGTH || c->body.left < min)
    return 0;
  read_stop(c);
  c->rlen = c->rpos = 0;
  return c->body.left;
}

void px_conn_body_taken(px_conn_t *c, uint64_t n) {
  n = PX_MIN(n, c->body.left);
  c->body_in += n;
  c->body.left -= n;
  if (c->body.left == 0) {
    c->body.done = 1;
    c->body_done = 1;
  }
}

void px_conn_body_untake(px_conn_t *c) {
  if (!c->body_done) read_start(c);
}

/* ---- writing ------------------------------------------------------------------------- */

static void written(px_conn_t *c) {
  px_out_reset(&c->out);
  c->handler->on_written(c);
}

static void on_write(px_tp_write_t *wr, int status) {
  px_conn_t *c = wr->data;
  c->writing = 0;
  if (c->closing) return;
  if (status < 0) {
    px_conn_close(c);
    return;
  }
  written(c);
}

int px_conn_flush(px_conn_t *c) {
  if (c->closing) return -1;
  if (c->out.n == 0 || c->writing) return 0;
  unsigned n = px_out_iov(&c->out);
  for (unsigned i = 0; i < n; i++) c->bytes_out += c->out.iov[i].len;
  int r = px_tp_write_now(&c->tp, &c->wreq, c->out.iov, n, on_write);
  if (r < 0) {
    px_conn_close(c);
    return -1;
  }
  if (r == 0) {
    c->writing = 1; /* on_written once the client took it */
    return 0;
  }
  written(c);
  return 1;
}

static void on_continue_written(px_tp_write_t *wr, int status) {
  (void)wr;
  (void)status;
}

void px_conn_continue(px_conn_t *c) {
  static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (!c->head.expect_continue || c->body_done || c->closing) return;
  c->head.expect_continue = 0;
  uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
  px_tp_write(&c->tp, &c->cont_wreq, &b, 1, on_continue_written);
}

/* ---- the connection's life ----------------------------------------------------------- */

static void handle_closed(px_conn_t *c) {
  if (--c->nhandles > 0) return;
  release_rbuf(c);
  px_hcollect_free(&c->hc);
  px_out_free(&c->out);
  c->handler->on_free(c);
}
static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void on_tp_closed(px_transport_t *t) { handle_closed(t->data); }

static void conn_close(px_conn_t *c, int reset) {
  if (c->closing) return;
  c->closing = 1;
  c->handler->on_close(c);
  if (reset)
    px_tp_abort(&c->tp, on_tp_closed);
  else
    px_tp_close(&c->tp, on_tp_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void px_conn_close(px_conn_t *c) { conn_close(c, 0); }
void px_conn_abort(px_conn_t *c) { conn_close(c, 1); }

static void on_linger_shutdown(px_transport_t *t, int status) {
  px_conn_t *c = t->data;
  if (status < 0) px_conn_close(c); /* also ECANCELED from a close already under way */
}

/* Closes gently: FIN after the answer (the shutdown waits for queued writes), then
 * reads and drops what the client still sends until it closes too, or PX_LINGER_MS
 * pass, as nginx's lingering_close does. */
static void conn_linger(px_conn_t *c) {
  if (c->closing || c->lingering) return;
  c->lingering = 1;
  if (px_tp_shutdown(&c->tp, on_linger_shutdown) != 0) {
    px_conn_close(c);
    return;
  }
  for (int k = 0; k < PX_DL__N; k++) c->dl[k] = 0;
  px_conn_deadline(c, PX_DL_LINGER, PX_LINGER_MS);
  c->rlen = c->rpos = 0;
  read_start(c);
}

void px_conn_request_done(px_conn_t *c, int close) {
  if (c->closing) return;
  c->in_request = 0;
  c->dl[PX_DL_ROUTE] = c->dl[PX_DL_TRY] = c->dl[PX_DL_BACKOFF] = 0;
  if (close || c->close_after) {
    /* The client may still be sending (a body the answer did not wait for, reading
     * paused by back-pressure, pipelined requests): closing now, with its bytes
     * unread, would make the kernel reset the connection and throw away the end of
     * the answer still in the socket buffer. */
    if (c->peer_eof)
      px_conn_close(c); /* everything it sent was read: nothing to linger for */
    else if (!c->body_done || !c->reading || c->rpos < c->rlen)
      conn_linger(c);
    else
      px_conn_close(c);
    return;
  }
  /* Keep-alive: the next request may already be in the buffer (pipelining). */
  size_t left = c->rlen - c->rpos;
  if (left) memmove(c->rbuf, c->rbuf + c->rpos, left);
  c->rlen = left;
  c->rpos = 0;
  llhttp_reset(&c->parser);
  px_headscan_reset(&c->scan, 0);
  px_hcollect_reset(&c->hc);
  if (left == 0) {
    release_rbuf(c);
    px_conn_deadline(c, PX_DL_IDLE, c->lim.idle_timeout_ms);
  } else {
    px_conn_deadline(c, PX_DL_HEADER, c->lim.header_timeout_ms);
  }
  process(c);
}

void px_conn_drain(px_conn_t *c) {
  if (!c->in_request && c->rpos == c->rlen)
    px_conn_close(c);
  else
    c->close_after = 1;
}

void px_conn_accept(px_conn_t *c, px_tp_listener_t *l, uv_loop_t *loop, px_iobufs_t *bufs,
                    const px_conn_handler_t *handler, void *data, const px_conn_limits_t *lim) {
  c->bufs = bufs;
  c->handler = handler;
  c->data = data;
  c->lim = *lim;
  c->tp.data = c;
  c->wreq.data = c->cont_wreq.data = c;
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->nhandles = 2;
  if (px_tp_accept(l, &c->tp) != 0) {
    px_conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  if (px_tp_peer(&c->tp, &ss) == 0) {
    px_addr_format((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
    char *colon = strrchr(c->peer, ':'); /* x-forwarded-for carries the address only */
    if (colon) *colon = '\0';
    if (c->peer[0] == '[') {
      memmove(c->peer, c->peer + 1, strlen(c->peer));
      c->peer[strlen(c->peer) - 1] = '\0';
    }
  } else {
    strcpy(c->peer, "unknown");
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  px_headscan_reset(&c->scan, 0);
  px_conn_deadline(c, PX_DL_IDLE, c->lim.idle_timeout_ms);
  read_start(c);
}
