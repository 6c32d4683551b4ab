#include "proxy.h"

#include <llhttp.h>
#include <stdlib.h>

#include "body.h"
#include "http1.h"
#include "log.h"
#include "net.h"
#include "router.h"
#include "upstream.h"


typedef enum {
  CS_HEAD,    /* reading a request head (or idle between requests) */
  CS_WAIT_UP, /* head parsed, waiting for an upstream connection */
  CS_BODY,    /* forwarding the request body */
  CS_SENT,    /* request fully sent; the response is still coming */
} px_cstate_t;

/* A piece of an outgoing write: either a pointer into a read buffer, or (p == NULL)
 * an offset into the side buffer that holds heads and chunk framing, resolved only
 * when the write is issued because the side buffer may move while it grows. */
typedef struct {
  const char *p;
  size_t off, len;
} px_piece_t;

typedef struct {
  px_piece_t *v;
  size_t n, cap;
  px_buf_t side;
  uv_buf_t *iov;
  size_t iovcap;
} px_out_t;


typedef struct px_conn_s px_conn_t;

typedef struct {
  px_conn_t *c;
  px_route_rt_t *route;
  px_cluster_t *cluster;
  px_upconn_t *up;
  px_buf_t uhead;
  size_t uhead_base;
  char rid[201];
  int method, minor, is_head, client_keep_alive, chunked_in, body_done, expect_continue;
  uint64_t body_in;
  /* `resendable`: the request may go upstream again after it was sent. It is safe to
   * run twice (px_http1_resend_safe), and `body` holds all of its body sent so far;
   * it turns 0 for good once a byte does not fit the route's retry.buffer_limit.
   * `body` is freed when the request ends. */
  int resendable;
  px_buf_t body;
  int attempt, max_attempts;
  uint64_t tried;
  size_t ep;
  int counted_active, counted_ep;
  /* response */
  llhttp_t rparser;
  px_hcollect_t rh;
  px_body_reader_t rbody; /* the upstream's framing of the body */
  px_body_mode_t mode;    /* the client's */
  int resp_started, resp_done, skip_1xx, up_reusable;
  const char *refused; /* why the response head cannot be passed on */
  int status;
  uint64_t start_ns;
} px_req_t;

struct px_conn_s {
  px_transport_t tp;
  uv_timer_t timer;
  px_tp_write_t down_wreq, up_wreq, cont_wreq;
  px_wctx_t *w;
  size_t lidx; /* the listener, in ws->snap->listeners */
  px_queue_t link;
  px_wsnap_t *ws;
  llhttp_t parser;
  char *rbuf;
  size_t rcap, rlen, rpos;
  px_hcollect_t hc;
  px_headscan_t scan;
  px_body_reader_t body; /* the request body, once its head is in */
  px_out_t down, upw;
  px_cstate_t state;
  int writing_down, writing_up, reading, closing, close_after, lingering, nhandles;
  int dl_kind;                 /* px_deadline_t */
  uint64_t deadline, armed_at; /* loop time, ms; armed_at 0: timer not running */
  char peer[48];
  px_req_t req;
};

static llhttp_settings_t req_settings, resp_settings;
static uv_once_t settings_once = UV_ONCE_INIT;

static void conn_process(px_conn_t *c);
static void conn_free(px_conn_t *c);
static void conn_close(px_conn_t *c);
static void conn_linger(px_conn_t *c);
static void try_upstream(px_req_t *req);
static void flush_up(px_conn_t *c);
static void flush_down(px_conn_t *c);
static void fail(px_conn_t *c, px_errkind_t kind, const char *detail);

/* ---- small helpers --------------------------------------------------------- */

static const px_listener_conf_t *lconf(px_conn_t *c) {
  return c->ws->snap->listeners[c->lidx].conf;
}
static px_listener_rt_t *lrt(px_conn_t *c) { return &c->ws->snap->listeners[c->lidx]; }

static void out_piece(px_out_t *o, const char *p, size_t off, size_t len) {
  if (len == 0) return;
  if (o->n == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 16;
    o->v = px_realloc(o->v, o->cap * sizeof(*o->v));
  }
  o->v[o->n++] = (px_piece_t){p, off, len};
}
/* Appends bytes to the side buffer and queues them. */
static void out_side(px_out_t *o, const char *p, size_t len) {
  size_t off = o->side.len;
  px_buf_append(&o->side, p, len);
  out_piece(o, NULL, off, len);
}
static void out_chunk_header(px_out_t *o, size_t n) {
  char tmp[24];
  int k = snprintf(tmp, sizeof(tmp), "%zx\r\n", n);
  out_side(o, tmp, (size_t)k);
}
/* A run of body bytes, framed as a chunk when the outgoing body is chunked. */
static void out_body(px_out_t *o, const char *at, size_t n, int chunked) {
  if (chunked) out_chunk_header(o, n);
  out_piece(o, at, 0, n);
  if (chunked) out_piece(o, "\r\n", 0, 2);
}
static void out_reset(px_out_t *o) {
  o->n = 0;
  o->side.len = 0;
}
static void out_free(px_out_t *o) {
  free(o->v);
  free(o->iov);
  px_buf_free(&o->side);
}
/* Resolves pieces into iovecs; returns how many. */
static unsigned out_iov(px_out_t *o) {
  if (o->iovcap < o->n) {
    o->iovcap = o->n;
    o->iov = px_realloc(o->iov, o->iovcap * sizeof(*o->iov));
  }
  for (size_t i = 0; i < o->n; i++) {
    const char *p = o->v[i].p ? o->v[i].p : o->side.data + o->v[i].off;
    o->iov[i] = uv_buf_init((char *)p, (unsigned)o->v[i].len);
  }
  return (unsigned)o->n;
}

/* ---- deadlines ------------------------------------------------------------- */

/* One deadline per connection, for the phase it is in. The libuv timer is only
 * re-armed when a deadline moves earlier; one that fires early re-arms itself.
 * Most requests then cost no timer operation at all. */
typedef enum { DL_NONE, DL_IDLE, DL_HEADER, DL_ROUTE, DL_LINGER } px_deadline_t;

/* How long a connection closed with the client's bytes unread keeps reading and
 * dropping them (see conn_linger). */
#define PX_LINGER_MS 2000

static void on_conn_timer(uv_timer_t *t);

static void set_deadline(px_conn_t *c, px_deadline_t kind, uint64_t ms) {
  if (kind == DL_NONE || ms == 0) {
    c->dl_kind = DL_NONE; /* an armed timer finds nothing to do */
    return;
  }
  c->dl_kind = kind;
  c->deadline = uv_now(&c->w->loop) + ms;
  if (c->armed_at == 0 || c->deadline < c->armed_at) {
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
    c->armed_at = c->deadline;
  }
}

static void on_conn_timer(uv_timer_t *t) {
  px_conn_t *c = t->data;
  c->armed_at = 0;
  if (c->dl_kind == DL_NONE) return;
  uint64_t now = uv_now(&c->w->loop);
  if (now < c->deadline) {
    uv_timer_start(&c->timer, on_conn_timer, c->deadline - now, 0);
    c->armed_at = c->deadline;
    return;
  }
  switch ((px_deadline_t)c->dl_kind) {
  case DL_HEADER:
    fail(c, PX_ERR_REQUEST_TIMEOUT, "the request head did not arrive within header_timeout");
    break;
  case DL_ROUTE:
    fail(c, PX_ERR_UPSTREAM_TIMEOUT, "the upstream did not answer within the route timeout");
    break;
  default:
    conn_close(c); /* idle keep-alive connection, or the end of a lingering close */
    break;
  }
}

static void deadline_idle(px_conn_t *c) { set_deadline(c, DL_IDLE, lconf(c)->limits.idle_timeout_ms); }
static void deadline_header(px_conn_t *c) { set_deadline(c, DL_HEADER, lconf(c)->limits.header_timeout_ms); }

/* ---- reading from the client ------------------------------------------------- */

static void on_down_alloc(px_transport_t *t, uv_buf_t *buf) {
  px_conn_t *c = t->data;
  if (c->rbuf == NULL) {
    c->rbuf = px__iobuf_get(c->w);
    c->rcap = PX_IOBUF_SIZE;
    c->rlen = c->rpos = 0;
  } else if (c->rlen == c->rcap && c->state == CS_HEAD &&
             c->rcap <= lconf(c)->limits.max_header_bytes) {
    /* A head larger than the buffer: grow towards max_header_bytes. Header spans
     * are offsets, so moving the buffer is safe. */
    c->rbuf = px__iobuf_grow(c->w, c->rbuf, c->rlen, c->rcap, c->rcap * 2);
    c->rcap *= 2;
  }
  buf->base = c->rbuf + c->rlen;
  buf->len = c->rcap - c->rlen;
}

static void release_rbuf(px_conn_t *c) {
  if (c->rbuf == NULL) return;
  px__iobuf_put(c->w, c->rbuf, c->rcap);
  c->rbuf = NULL;
  c->rcap = c->rlen = c->rpos = 0;
}

static void on_down_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf);

static void read_start(px_conn_t *c) {
  if (c->reading || c->closing) return;
  c->reading = 1;
  px_tp_read_start(&c->tp, on_down_alloc, on_down_read);
}
static void read_stop(px_conn_t *c) {
  if (!c->reading) return;
  c->reading = 0;
  px_tp_read_stop(&c->tp);
}

static void on_down_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf) {
  px_conn_t *c = t->data;
  if (nread == 0) return;
  if (c->lingering) { /* everything the client still sends is dropped, until it closes */
    if (nread < 0) conn_close(c);
    c->rlen = c->rpos = 0;
    return;
  }
  if (nread < 0) {
    /* The client went away (or half-closed, which HTTP/1.1 clients do not do before
     * reading their answer): whatever is in flight for it is abandoned. */
    if (nread == UV_ENOBUFS) {
      if (c->state == CS_HEAD) {
        fail(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      } else {
        read_stop(c); /* buffer full of the next request(s): resumes when this one ends */
      }
      return;
    }
    conn_close(c);
    return;
  }
  if (c->state == CS_HEAD && c->rlen == c->rpos && c->dl_kind != DL_HEADER) deadline_header(c);
  c->rlen += (size_t)nread;
  conn_process(c);
}

/* ---- request parser callbacks ------------------------------------------------ */

/* llhttp parses request heads only; bodies are read by px_body_read (body.h). */
static int on_url(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  px_hcollect_url(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
  return 0;
}
static int on_req_field(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  return px_hcollect_field(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
}
static int on_req_value(llhttp_t *p, const char *at, size_t n) {
  px_conn_t *c = p->data;
  return px_hcollect_value(&c->hc, (uint32_t)(at - c->rbuf), (uint32_t)n);
}
static int on_req_value_complete(llhttp_t *p) {
  px_conn_t *c = p->data;
  return px_hcollect_value_done(&c->hc, c->rbuf); /* a later value piece belongs to a new field */
}
/* The parser stops right after every head: conn_process finds the end there. */
static int on_req_headers_complete(llhttp_t *p) { return HPE_PAUSED; }

/* ---- response parser callbacks ----------------------------------------------- */

static int on_resp_field(llhttp_t *p, const char *at, size_t n) {
  px_req_t *req = p->data;
  return px_hcollect_field(&req->rh, (uint32_t)(at - req->up->rbuf), (uint32_t)n);
}
static int on_resp_value(llhttp_t *p, const char *at, size_t n) {
  px_req_t *req = p->data;
  return px_hcollect_value(&req->rh, (uint32_t)(at - req->up->rbuf), (uint32_t)n);
}
static int on_resp_value_complete(llhttp_t *p) {
  px_req_t *req = p->data;
  return px_hcollect_value_done(&req->rh, req->up->rbuf);
}

/* A response head is in: refuse what cannot be passed on, write the client's head and
 * get the body reader ready. The parser stops here (HPE_PAUSED); on_up_read reads
 * the body, or the next head after an interim response. Returning -1 makes it a bad
 * response, with the reason in req->refused. */
static int on_resp_headers_complete(llhttp_t *p) {
  px_req_t *req = p->data;
  px_conn_t *c = req->c;
  px_head_t h = {.base = req->up->rbuf,
                 .h = req->rh.h,
                 .nh = req->rh.n,
                 .status = p->status_code,
                 .http_minor = p->http_minor,
                 .chunked = (p->flags & F_CHUNKED) != 0,
                 .content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1};
  req->refused = px_http1_response_refuse(&h, p->http_major, p->flags, p->content_length);
  if (req->refused) return -1;
  if (h.status < 200) {
    /* Interim responses (100 Continue from an upstream) are not forwarded: the
     * sidecar answered the client's Expect itself. */
    req->skip_1xx = 1;
    px_hcollect_reset(&req->rh);
    return HPE_PAUSED;
  }
  /* The client connection closes after this answer when the client asked for it,
   * when the sidecar drains, or when the request body is not fully read (an upstream
   * may answer early): the connection then cannot be resynchronised. */
  if (!req->client_keep_alive || c->w->draining || !req->body_done) c->close_after = 1;
  px_resp_rewrite_t rw = {.client_minor = req->minor,
                          .request_is_head = req->is_head,
                          .close = c->close_after,
                          .attempts = req->attempt,
                          .cluster = req->cluster->conf->name};
  size_t off = c->down.side.len;
  req->mode = px_http1_build_response(&h, &rw, &c->down.side);
  if (req->mode == PX_BODY_CLOSE) c->close_after = 1;
  out_piece(&c->down, NULL, off, c->down.side.len - off);
  px_body_reader_init(&req->rbody, px_http1_response_body(&h, req->is_head), (uint64_t)PX_MAX(h.content_length, 0));
  req->resp_started = 1;
  req->status = h.status;
  px_metric_inc(&c->w->metrics.upstream[req->cluster->metric_slot][h.status / 100 - 1], 1);
  return HPE_PAUSED;
}

static void settings_init(void) {
  llhttp_settings_init(&req_settings);
  req_settings.on_url = on_url;
  req_settings.on_header_field = on_req_field;
  req_settings.on_header_value = on_req_value;
  req_settings.on_header_value_complete = on_req_value_complete;
  req_settings.on_headers_complete = on_req_headers_complete;

  llhttp_settings_init(&resp_settings);
  resp_settings.on_header_field = on_resp_field;
  resp_settings.on_header_value = on_resp_value;
  resp_settings.on_header_value_complete = on_resp_value_complete;
  resp_settings.on_headers_complete = on_resp_headers_complete;
}

/* ---- the request's life ------------------------------------------------------ */

static void count_release(px_req_t *req) {
  if (req->counted_ep) {
    atomic_fetch_sub_explicit(&req->cluster->eps[req->ep].st->active_requests, 1, memory_order_relaxed);
    req->counted_ep = 0;
  }
  if (req->counted_active) {
    atomic_fetch_sub_explicit(&req->cluster->st->active_requests, 1, memory_order_relaxed);
    req->counted_active = 0;
  }
}

static void drop_upstream(px_req_t *req, int reusable) {
  if (req->up == NULL) return;
  px_upstream_release(req->up, reusable);
  req->up = NULL;
}

/* The response is fully written: account for it and get ready for the next request. */
static void req_finish(px_conn_t *c) {
  px_req_t *req = &c->req;
  px_metrics_request(&c->w->metrics, lrt(c)->metric_slot, req->route ? req->route->metric_slot : -1,
                     req->status, px_now_ns() - req->start_ns);
  drop_upstream(req, req->up_reusable && req->body_done);
  count_release(req);
  px_buf_free(&req->body);
  if (c->close_after || c->w->draining) {
    /* The client may still be sending (a body the answer did not wait for, reading
     * paused by back-pressure, pipelined requests): closing now, with its bytes
     * unread, would make the kernel reset the connection and throw away the end of
     * the answer still in the socket buffer. */
    if (!req->body_done || !c->reading || c->rpos < c->rlen)
      conn_linger(c);
    else
      conn_close(c);
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
  req->route = NULL;
  req->cluster = NULL;
  /* Until the next head is in, a failure (a malformed head, a slow one) is answered as
   * the connection's, not as this request's: it has not started an answer. */
  req->resp_started = req->resp_done = 0;
  req->attempt = 0;
  c->state = CS_HEAD;
  if (left == 0) {
    release_rbuf(c);
    deadline_idle(c);
  } else {
    deadline_header(c);
  }
  conn_process(c);
}

/* Everything queued for the client went out. */
static void down_written(px_conn_t *c) {
  px_req_t *req = &c->req;
  out_reset(&c->down);
  if (req->resp_done) {
    req_finish(c);
  } else if (req->up) {
    req->up->rlen = 0; /* the upstream's read buffer is free again */
    px_upstream_read_start(req->up);
  }
}

static void on_down_written(px_tp_write_t *wr, int status) {
  px_conn_t *c = wr->data;
  c->writing_down = 0;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  down_written(c);
}

static void flush_down(px_conn_t *c) {
  if (c->down.n == 0 || c->writing_down) return;
  unsigned n = out_iov(&c->down);
  int r = px_tp_write_now(&c->tp, &c->down_wreq, c->down.iov, n, on_down_written);
  if (r < 0) {
    conn_close(c);
  } else if (r == 0) {
    /* The client reads slower than the upstream sends: stop reading the upstream
     * until this is out, so neither buffer grows. */
    c->writing_down = 1;
    if (c->req.up) px_upstream_read_stop(c->req.up);
  } else {
    down_written(c);
  }
}

/* The sidecar answers by itself (SPEC §4): problem+json, x-outrigger-error, and
 * the cause counted. When the response has already started, all that can be done
 * is to close the connection. */
static void fail_with(px_conn_t *c, px_errkind_t kind, const char *detail, const char *extra) {
  px_req_t *req = &c->req;
  px_metric_inc(&c->w->metrics.errors[kind], 1);
  if (kind >= PX_ERR_CONNECT_FAILURE && kind != PX_ERR_NO_ENDPOINT && kind != PX_ERR_OVERLOADED && req->cluster)
    px_metric_inc(&c->w->metrics.upstream_fail[req->cluster->metric_slot], 1);
  drop_upstream(req, 0);
  if (req->resp_started || c->closing) {
    conn_close(c);
    return;
  }
  int status = px_errkind_status(kind);
  /* In CS_HEAD the request's fields are the previous request's: the head never came
   * whole, so the connection closes anyway. */
  int head = c->state == CS_HEAD;
  if (head || !req->body_done || !req->client_keep_alive || status == 400 || status == 408 || status == 413 ||
      status == 431 || status == 501)
    c->close_after = 1;
  if (c->w->draining) c->close_after = 1;
  px_debug("%s %s: %s", c->peer, px_errkind_name(kind), detail);
  out_reset(&c->down);
  char more[64 + 64];
  /* The tries made before giving up are part of the answer; an HTTP/1.0 client keeps
   * its connection only when told so. */
  snprintf(more, sizeof(more), "%s%s", !c->close_after && req->minor == 0 ? "connection: keep-alive\r\n" : "",
           extra ? extra : "");
  if (req->attempt > 0 && !head)
    snprintf(more + strlen(more), sizeof(more) - strlen(more), "x-outrigger-attempts: %d\r\n", req->attempt);
  extra = more;
  px_http1_problem(&c->down.side, status, px_errkind_name(kind), detail, c->close_after, extra);
  if (!head && req->is_head) { /* an answer to HEAD has the head alone (RFC 9110 §9.3.2) */
    const char *e = memmem(c->down.side.data, c->down.side.len, "\r\n\r\n", 4);
    c->down.side.len = (size_t)(e - c->down.side.data) + 4;
  }
  out_piece(&c->down, NULL, 0, c->down.side.len);
  req->resp_started = 1;
  req->resp_done = 1;
  req->status = status;
  if (c->state == CS_HEAD) req->start_ns = px_now_ns();
  c->state = CS_SENT;
  if (c->close_after) read_stop(c);
  set_deadline(c, DL_NONE, 0);
  if (c->writing_down) return; /* on_down_written will finish */
  flush_down(c);
}

static void fail(px_conn_t *c, px_errkind_t kind, const char *detail) { fail_with(c, kind, detail, NULL); }

/* A run of the request body: counted against max_body_bytes, kept while the request
 * may be resent, queued for the upstream. -1 when it is over the limit. */
static int req_body_data(px_conn_t *c, px_str_t d) {
  px_req_t *req = &c->req;
  req->body_in += d.n;
  if (req->body_in > lconf(c)->limits.max_body_bytes) return -1;
  if (req->resendable) {
    if (req->body.len + d.n <= req->route->conf->retry.buffer_limit)
      px_buf_append(&req->body, d.p, d.n);
    else
      req->resendable = 0;
  }
  out_body(&c->upw, d.p, d.n, req->chunked_in);
  return 0;
}

/* Reads what the client sent of the body and sends it upstream. */
static void body_process(px_conn_t *c) {
  px_req_t *req = &c->req;
  if (c->writing_up || req->up == NULL) return;
  if (c->rpos < c->rlen && !req->body_done) {
    const char *p = c->rbuf + c->rpos;
    px_str_t d;
    px_br_result_t r;
    while ((r = px_body_read(&c->body, &p, c->rbuf + c->rlen, &d)) == PX_BR_DATA) {
      if (req_body_data(c, d) < 0) {
        out_reset(&c->upw); /* the upstream never sees the body's end */
        fail(c, PX_ERR_BODY_TOO_LARGE, "the request body is larger than max_body_bytes");
        return;
      }
    }
    c->rpos = (size_t)(p - c->rbuf);
    if (r == PX_BR_ERROR) {
      /* A bad chunk while streaming: the upstream connection is dropped before the
       * body's end, so it never sees a complete request. */
      out_reset(&c->upw);
      fail(c, PX_ERR_BAD_REQUEST, c->body.err);
      return;
    }
    if (r == PX_BR_END) {
      if (req->chunked_in) out_piece(&c->upw, "0\r\n\r\n", 0, 5);
      req->body_done = 1;
    }
  }
  if (c->upw.n) {
    flush_up(c);
  } else if (!req->body_done) {
    c->rlen = c->rpos = 0;
    read_start(c);
  }
}

/* Everything queued for the upstream went out. */
static void up_written(px_conn_t *c) {
  out_reset(&c->upw);
  if (c->req.body_done) {
    c->state = CS_SENT;
    return;
  }
  if (c->rpos == c->rlen) c->rlen = c->rpos = 0;
  body_process(c);
}

static void on_up_written(px_tp_write_t *wr, int status) {
  px_conn_t *c = wr->data;
  px_req_t *req = &c->req;
  c->writing_up = 0;
  if (c->closing) {
    out_reset(&c->upw);
    if (c->nhandles == 0) conn_free(c);
    return;
  }
  if (status < 0) {
    /* The upstream stopped taking the request. If it has answered already, that
     * answer is what the client gets; otherwise it is a reset. */
    out_reset(&c->upw);
    if (!req->resp_started) fail(c, PX_ERR_UPSTREAM_RESET, "the upstream connection failed while sending the request");
    return;
  }
  read_start(c);
  up_written(c);
}

static void flush_up(px_conn_t *c) {
  px_req_t *req = &c->req;
  if (c->upw.n == 0 || c->writing_up || req->up == NULL) return;
  unsigned n = out_iov(&c->upw);
  int r = px_tp_write_now(&req->up->tp, &c->up_wreq, c->upw.iov, n, on_up_written);
  if (r < 0) {
    out_reset(&c->upw);
    fail(c, PX_ERR_UPSTREAM_RESET, "the upstream connection failed while sending the request");
  } else if (r == 0) {
    /* The upstream reads slower than the client sends: stop reading the client. */
    c->writing_up = 1;
    read_stop(c);
  } else {
    up_written(c);
  }
}

static void bad_response(px_conn_t *c, const char *why) {
  out_reset(&c->down);
  fail(c, PX_ERR_BAD_RESPONSE, why);
}

/* Response bytes arrived from the upstream: up->rbuf[up->rlen - n, up->rlen). */
static void on_up_read(void *owner, px_upconn_t *up, size_t n) {
  px_req_t *req = owner;
  px_conn_t *c = req->c;
  const char *p = up->rbuf + up->rlen - n, *end = up->rbuf + up->rlen;
  while (!req->resp_started) { /* the head, after any interim ones */
    llhttp_errno_t err = llhttp_execute(&req->rparser, p, (size_t)(end - p));
    if (err == HPE_OK) return; /* the head goes on in the next read */
    if (err != HPE_PAUSED) {
      const char *why = req->refused ? req->refused : px_hcollect_error(&req->rh);
      if (req->rh.too_many || up->rlen == up->rcap) why = "the upstream sent a response head that is too large";
      bad_response(c, why ? why : "the upstream sent a malformed response");
      return;
    }
    p = llhttp_get_error_pos(&req->rparser);
    if (req->skip_1xx) {
      req->skip_1xx = 0;
      llhttp_reset(&req->rparser);
    }
  }
  if (!req->resp_done) {
    int chunked = req->mode == PX_BODY_CHUNKED;
    px_str_t d;
    px_br_result_t r;
    while ((r = px_body_read(&req->rbody, &p, end, &d)) == PX_BR_DATA) out_body(&c->down, d.p, d.n, chunked);
    if (r == PX_BR_ERROR) {
      /* The head is out already (or queued): the client's connection is closed, so
       * it cannot take the cut answer for a whole one. */
      fail(c, PX_ERR_BAD_RESPONSE, req->rbody.err);
      return;
    }
    if (r == PX_BR_END) {
      if (chunked) out_piece(&c->down, "0\r\n\r\n", 0, 5);
      req->resp_done = 1;
      req->up_reusable = llhttp_should_keep_alive(&req->rparser);
    }
  }
  /* Bytes after the end of the response: the upstream is out of step. */
  if (req->resp_done && p != end) req->up_reusable = 0;
  if (c->down.n) {
    flush_down(c);
  } else if (req->resp_done) {
    if (!c->writing_down) req_finish(c);
  } else {
    up->rlen = 0; /* the head went out already; nothing of this read is kept */
  }
}

static void on_up_eof(void *owner, px_upconn_t *up, int status) {
  px_req_t *req = owner;
  px_conn_t *c = req->c;
  req->up_reusable = 0;
  if (req->resp_done) return; /* answered whole; the connection is closed at the request's end */
  if (status == UV_ENOBUFS) { /* a head that filled the read buffer at its largest (upstream.c) */
    bad_response(c, "the upstream sent a response head that is too large");
    return;
  }
  if (req->resp_started) {
    if (status == UV_EOF && px_body_eof(&req->rbody) == PX_BR_END) {
      /* A body delimited by the connection's end (RFC 9112 §6.3): it is complete. */
      drop_upstream(req, 0);
      if (req->mode == PX_BODY_CHUNKED) out_piece(&c->down, "0\r\n\r\n", 0, 5);
      req->resp_done = 1;
      if (c->down.n) flush_down(c);
      else if (!c->writing_down) req_finish(c);
      return;
    }
    fail(c, PX_ERR_UPSTREAM_RESET, "the upstream closed the connection before the response was complete");
    return;
  }
  if (up->rlen == 0 && up->reused && !c->writing_up && req->body_done && req->resendable &&
      req->attempt < req->route->conf->retry.attempts) {
    /* A pooled connection the upstream closed as we reused it, most likely at its
     * keep-alive timeout, before it read the request. "Most likely": an upstream that
     * read the request, did the work and then died looks the same from here, so only
     * a request that may safely run twice goes again, on a fresh connection; and not
     * once the upstream began to answer, nor past the route's attempts (every try
     * counts, the first included). */
    drop_upstream(req, 0);
    req->tried = 0; /* the same endpoint is fine: only that connection was stale */
    try_upstream(req);
    return;
  }
  fail(c, PX_ERR_UPSTREAM_RESET, "the upstream closed the connection before the response was complete");
}

static void on_up_connect(void *owner, px_upconn_t *up, int status);
static const px_upconn_cb_t up_cb = {on_up_connect, on_up_read, on_up_eof};

static void on_cont_written(px_tp_write_t *wr, int status) { (void)wr; (void)status; }

static void on_up_connect(void *owner, px_upconn_t *up, int status) {
  px_req_t *req = owner;
  px_conn_t *c = req->c;
  if (status != 0) {
    req->up = NULL;
    px_metric_inc(&c->w->metrics.upstream_fail[req->cluster->metric_slot], 1);
    atomic_fetch_add_explicit(&req->cluster->eps[req->ep].st->failures_total, 1, memory_order_relaxed);
    px_debug("connect to %s failed: %s (attempt %d of %d)", req->cluster->eps[req->ep].name,
             px_strerror(status), req->attempt, req->max_attempts);
    if (req->attempt < req->max_attempts) {
      try_upstream(req);
      return;
    }
    fail(c, PX_ERR_CONNECT_FAILURE,
         status == UV_ETIMEDOUT ? "connecting to the upstream timed out" : "the upstream refused the connection");
    return;
  }
  req->up = up;
  atomic_fetch_add_explicit(&req->cluster->eps[req->ep].st->requests_total, 1, memory_order_relaxed);
  llhttp_init(&req->rparser, HTTP_RESPONSE, &resp_settings);
  req->rparser.data = req;
  req->refused = NULL;
  px_hcollect_reset(&req->rh);

  px_http1_finish_request(&req->uhead, req->uhead_base, req->attempt);
  out_reset(&c->upw);
  out_piece(&c->upw, req->uhead.data, 0, req->uhead.len);
  if (req->body_in > 0 || (req->chunked_in && req->body_done)) {
    /* A resend: the body went out on an earlier try (a first try has parsed none of
     * it yet) and is all in req->body, since only then is a request resent. It goes
     * again as one chunk, or as it was under its Content-Length; an empty chunked
     * body as its last chunk alone. */
    if (req->body_in > 0) out_body(&c->upw, req->body.data, req->body.len, req->chunked_in);
    if (req->chunked_in) out_piece(&c->upw, "0\r\n\r\n", 0, 5);
  }
  if (req->expect_continue && !req->body_done) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
    req->expect_continue = 0;
    px_tp_write(&c->tp, &c->cont_wreq, &b, 1, on_cont_written);
  }
  c->state = req->body_done ? CS_SENT : CS_BODY;
  px_upstream_read_start(up);
  if (req->body_done) {
    flush_up(c);
  } else {
    body_process(c);
  }
}

static void try_upstream(px_req_t *req) {
  px_conn_t *c = req->c;
  if (req->counted_ep) {
    atomic_fetch_sub_explicit(&req->cluster->eps[req->ep].st->active_requests, 1, memory_order_relaxed);
    req->counted_ep = 0;
  }
  req->attempt++;
  int other = req->route->conf->retry.other_endpoint;
  req->ep = px_cluster_pick(req->cluster, c->w->id, other ? req->tried : 0);
  if (req->ep < 64) req->tried |= 1ull << req->ep;
  atomic_fetch_add_explicit(&req->cluster->eps[req->ep].st->active_requests, 1, memory_order_relaxed);
  req->counted_ep = 1;
  req->up = NULL;
  int r = px_upstream_acquire(c->w, c->ws, req->cluster, req->ep, req, &up_cb, &req->up);
  if (r == PX_EOVERFLOW) {
    fail_with(c, PX_ERR_OVERLOADED, "the cluster's max_connections is reached", "x-outrigger-overloaded: true\r\n");
  } else if (r < 0) {
    on_up_connect(req, NULL, r);
  }
}

/* A complete request head is in the buffer: check it, route it, and start the
 * upstream exchange. */
static void req_begin(px_conn_t *c) {
  px_req_t *req = &c->req;
  llhttp_t *p = &c->parser;
  const px_listener_conf_t *lc;

  /* A keep-alive connection picks up a reloaded configuration at its next request,
   * unless the reload removed its listener: then this request is served by the
   * configuration the connection started with, and the connection closes after it. */
  int listener_gone = 0;
  if (c->ws != c->w->cur) {
    int k = px_config_listener_at(c->w->cur->snap->cfg, &lconf(c)->address.sa);
    if (k >= 0) {
      px_wsnap_t *old = c->ws;
      c->ws = px__wsnap_use(c->w);
      c->lidx = (size_t)k;
      px__wsnap_release(c->w, old);
    } else {
      listener_gone = 1;
    }
  }
  lc = lconf(c);
  set_deadline(c, DL_NONE, 0);

  req->route = NULL;
  req->cluster = NULL;
  req->up = NULL;
  req->start_ns = px_now_ns();
  req->method = llhttp_get_method(p);
  req->minor = llhttp_get_http_minor(p);
  req->is_head = req->method == HTTP_HEAD;
  req->client_keep_alive = llhttp_should_keep_alive(p);
  req->chunked_in = (p->flags & F_CHUNKED) != 0;
  req->body_done = 0;
  req->body_in = 0;
  req->attempt = 0;
  req->tried = 0;
  req->counted_active = req->counted_ep = 0;
  req->resp_started = req->resp_done = req->skip_1xx = 0;
  req->up_reusable = 0;
  req->status = 0;
  req->expect_continue = 0;
  req->resendable = 0;
  c->close_after = listener_gone;
  c->state = CS_WAIT_UP;

  if (c->rpos > lc->limits.max_header_bytes) {
    fail(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
    return;
  }
  px_head_t h = {.base = c->rbuf, .h = c->hc.h, .nh = c->hc.n, .method = req->method,
                 .http_minor = req->minor, .url_off = c->hc.url_off, .url_len = c->hc.url_len,
                 .chunked = req->chunked_in,
                 .content_length = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1};
  int host_idx = px_head_find(&h, "host");
  const char *refused = px_http1_refuse(&h, llhttp_get_http_major(p), llhttp_get_upgrade(p), host_idx);
  if (refused) {
    fail(c, PX_ERR_BAD_REQUEST, refused);
    return;
  }
  int mode = px_http1_request_body(&h, p->flags, p->content_length, c->hc.te_lines, &refused);
  if (mode < 0) {
    fail(c, mode == -501 ? PX_ERR_NOT_IMPLEMENTED : PX_ERR_BAD_REQUEST, refused);
    return;
  }
  if (mode == PX_BODY_LENGTH && p->content_length > lc->limits.max_body_bytes) {
    fail(c, PX_ERR_BODY_TOO_LARGE, "the request body is larger than max_body_bytes");
    return;
  }
  /* The body, if any, is read once an upstream connection is ready (body_process). */
  px_body_reader_init(&c->body, (px_body_mode_t)mode, p->content_length);
  req->body_done = mode == PX_BODY_NONE;
  int ex = px_head_find(&h, "expect");
  if (ex >= 0 && px_str_ieq_cstr(px_head_value(&h, (size_t)ex), "100-continue")) req->expect_continue = 1;

  px_str_t url = {c->rbuf + c->hc.url_off, c->hc.url_len};
  px_str_t authority = {NULL, 0}, origin = {NULL, 0};
  int absolute = px_http1_absolute_target(url, &authority, &origin);
  if (absolute < 0) {
    fail(c, PX_ERR_BAD_REQUEST, "an absolute-form target needs an authority that is host[:port]");
    return;
  }
  if (absolute) url = origin;
  const char *q = memchr(url.p, '?', url.n);
  px_str_t path = {url.p, q ? (size_t)(q - url.p) : url.n};
  if (path.n == 0) path = PX_STR("/"); /* "http://host" and "http://host?q" mean the root */
  px_str_t host = absolute       ? px_router_host(authority)
                  : host_idx >= 0 ? px_router_host(px_head_value(&h, (size_t)host_idx))
                                  : (px_str_t){"", 0};
  int ri = px_router_match(lc, req->method, path, host, &h);
  if (ri < 0) {
    fail(c, PX_ERR_NO_ROUTE, "no route of this listener matches the request");
    return;
  }
  req->route = &lrt(c)->routes[ri];
  const px_route_conf_t *rc = req->route->conf;
  req->cluster = px_route_pick_cluster(c->ws->snap, req->route, px_rand01());
  if (req->cluster == NULL || req->cluster->neps == 0) {
    fail(c, PX_ERR_NO_ENDPOINT, "the route has no cluster with a usable endpoint");
    return;
  }
  if (atomic_fetch_add_explicit(&req->cluster->st->active_requests, 1, memory_order_relaxed) >=
      req->cluster->conf->max_requests) {
    atomic_fetch_sub_explicit(&req->cluster->st->active_requests, 1, memory_order_relaxed);
    fail_with(c, PX_ERR_OVERLOADED, "the cluster's max_requests is reached", "x-outrigger-overloaded: true\r\n");
    return;
  }
  req->counted_active = 1;
  req->max_attempts = (rc->retry.on & PX_RETRY_ON_CONNECT_FAILURE) ? rc->retry.attempts : 1;
  /* A body that may never be resent, or is declared larger than the limit, is not
   * kept: it costs nothing to stream. */
  req->body.len = 0;
  req->resendable = px_http1_resend_safe(&h, rc->retry.idempotency_key != PX_IDEMPOTENCY_KEY_OFF) &&
                    (h.content_length < 0 || (uint64_t)h.content_length <= rc->retry.buffer_limit);
  /* Room for a small body at once; a large one grows only as its bytes really arrive. */
  if (req->resendable && h.content_length > 0) px_buf_reserve(&req->body, (size_t)PX_MIN(h.content_length, 65536));

  px_req_rewrite_t rw = {.client_ip = c->peer,
                         .proto = "http",
                         .host_fallback = req->cluster->eps[0].name,
                         .chunked_body = req->chunked_in,
                         .authority = authority,
                         .origin = origin};
  req->uhead.len = 0;
  px_http1_build_request(&h, &rw, &req->uhead, req->rid);
  req->uhead_base = req->uhead.len;
  set_deadline(c, DL_ROUTE, rc->timeout_ms);
  try_upstream(req);
}

/* Drives the parser over what is buffered, in the current state. */
static void conn_process(px_conn_t *c) {
  if (c->closing) return;
  if (c->state == CS_BODY) {
    body_process(c);
    return;
  }
  if (c->state != CS_HEAD) return;
  if (c->rpos == c->rlen) {
    read_start(c);
    return;
  }
  /* llhttp only sees a head that is complete and passed the checks it lacks. */
  int sr = px_headscan(&c->scan, c->rbuf, c->rlen);
  if (sr < 0) {
    fail(c, PX_ERR_BAD_REQUEST, c->scan.err);
    return;
  }
  if (sr == 0) {
    if (c->rlen - c->rpos > lconf(c)->limits.max_header_bytes) {
      fail(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      return;
    }
    read_start(c);
    return;
  }
  llhttp_errno_t err = llhttp_execute(&c->parser, c->rbuf + c->rpos, c->rlen - c->rpos);
  if (err == HPE_PAUSED) {
    c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
    req_begin(c);
    return;
  }
  if (err == HPE_OK) {
    c->rpos = c->rlen;
    if (c->rlen > lconf(c)->limits.max_header_bytes) {
      fail(c, PX_ERR_HEADERS_TOO_LARGE, "the request head is larger than max_header_bytes");
      return;
    }
    read_start(c);
    return;
  }
  const char *why_hc = px_hcollect_error(&c->hc);
  if (why_hc) {
    fail(c, c->hc.too_many ? PX_ERR_HEADERS_TOO_LARGE : PX_ERR_BAD_REQUEST, why_hc);
  } else {
    px_buf_t why = {0};
    px_buf_printf(&why, "malformed request: %s", llhttp_get_error_reason(&c->parser));
    fail(c, PX_ERR_BAD_REQUEST, why.data);
    px_buf_free(&why);
  }
}

/* ---- connection life --------------------------------------------------------- */

/* The upstream write's request lives in the connection, and its callback may run
 * after the connection's own handles have closed: the last of them frees it. */
static void conn_free(px_conn_t *c) {
  release_rbuf(c);
  px_hcollect_free(&c->hc);
  px_hcollect_free(&c->req.rh);
  px_buf_free(&c->req.uhead);
  px_buf_free(&c->req.body);
  out_free(&c->down);
  out_free(&c->upw);
  px_wctx_t *w = c->w;
  px__wsnap_release(w, c->ws);
  free(c);
  w->conn_closed(w);
}

static void handle_closed(px_conn_t *c) {
  if (--c->nhandles > 0 || c->writing_up) return;
  conn_free(c);
}
static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void on_tp_closed(px_transport_t *t) { handle_closed(t->data); }

static void conn_close(px_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  drop_upstream(&c->req, 0);
  count_release(&c->req);
  px_queue_remove(&c->link);
  c->w->nconns--;
  px_metric_inc(&c->w->metrics.conns_closed, 1);
  px_tp_close(&c->tp, on_tp_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void on_linger_shutdown(px_transport_t *t, int status) {
  px_conn_t *c = t->data;
  if (status < 0) conn_close(c); /* also ECANCELED from a close already under way */
}

/* Closes gently: FIN after the answer (uv_shutdown waits for queued writes), then
 * reads and drops what the client still sends until it closes too, or PX_LINGER_MS
 * pass, as nginx's lingering_close does. */
static void conn_linger(px_conn_t *c) {
  if (c->closing || c->lingering) return;
  c->lingering = 1;
  if (px_tp_shutdown(&c->tp, on_linger_shutdown) != 0) {
    conn_close(c);
    return;
  }
  set_deadline(c, DL_LINGER, PX_LINGER_MS);
  c->rlen = c->rpos = 0;
  read_start(c);
}

void px_proxy_accept(px_wctx_t *w, px_tp_listener_t *l, size_t listener_index) {
  uv_once(&settings_once, settings_init);
  px_conn_t *c = px_calloc(1, sizeof(*c));
  c->w = w;
  c->lidx = listener_index;
  uv_timer_init(&w->loop, &c->timer);
  c->nhandles = 2;
  c->tp.data = c->timer.data = c;
  c->down_wreq.data = c->up_wreq.data = c->cont_wreq.data = c;
  c->req.c = c;
  c->ws = px__wsnap_use(w);
  px_queue_insert_tail(&w->conns, &c->link);
  w->nconns++;
  px_metric_inc(&w->metrics.conns_accepted, 1);
  if (px_tp_accept(l, &c->tp) != 0) {
    conn_close(c);
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
  llhttp_init(&c->parser, HTTP_REQUEST, &req_settings);
  c->parser.data = c;
  px_headscan_reset(&c->scan, 0);
  c->state = CS_HEAD;
  deadline_idle(c);
  read_start(c);
}

void px_proxy_drain(px_wctx_t *w) {
  px_queue_t *q = w->conns.next;
  while (q != &w->conns) {
    px_conn_t *c = PX_CONTAINER_OF(q, px_conn_t, link);
    q = q->next;
    if (c->state == CS_HEAD && c->rlen == c->rpos)
      conn_close(c);
    else
      c->close_after = 1;
  }
}

void px_proxy_close_all(px_wctx_t *w) {
  while (!px_queue_empty(&w->conns)) conn_close(PX_CONTAINER_OF(w->conns.next, px_conn_t, link));
}
