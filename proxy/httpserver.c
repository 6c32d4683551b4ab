/* The buffered HTTP/1.1 server behind httpserver.h, a handler over the client
 * connection the proxy uses (downstream.h): that piece reads and checks heads, reads
 * bodies, keeps the deadlines, writes with back-pressure, answers pipelined requests in
 * order and closes gently. What is left here is the buffered part: a request's body is
 * copied out as it arrives (the read buffer then holds the head alone, so memory stays
 * bounded by max_header_bytes and max_body_bytes), the handler runs once it is whole,
 * and its response goes out as a head and a body.
 *
 * The head's bytes stay in the read buffer until the body is read; a request with a
 * body keeps a copy of its head for the handler. Deadlines: the connection's own (idle,
 * head) and one of the handler's, PX_DL_ROUTE, for a body that stops arriving (408)
 * and for an answer the client does not read (closed). */
#include "httpserver.h"

#include <llhttp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "downstream.h"
#include "http1.h"
#include "log.h"
#include "net.h"

typedef struct hconn_s hconn_t;

struct px_hsrv_s {
  uv_loop_t *loop;
  px_tp_listener_t listener;
  uv_timer_t guard; /* closed last by px_hsrv_close so its callback never runs synchronously */
  px_hsrv_opts_t opts;
  px_conn_limits_t lim;
  px_iobufs_t bufs;
  hconn_t *conns; /* doubly linked list of live connections */
  size_t nconns, busy;
  int listening, guarded, draining, closing;
  void (*close_cb)(void *data);
  void *close_data;
  time_t date_sec;
  char date[48]; /* "Date: ...\r\n" for date_sec */
};

struct hconn_s {
  px_conn_t c;
  px_hsrv_t *srv;
  hconn_t *prev, *next;
  /* the request */
  px_head_t req;     /* its head; base is the read buffer or `headcopy` */
  px_buf_t headcopy; /* the head's bytes, kept while its body is read */
  px_header_t *hdrs;
  size_t hdrs_cap;
  px_buf_t body;
  int minor, is_head;
  /* the response */
  px_hres_t res;
  px_buf_t head;
  int busy, answering, close_after;
  struct sockaddr_storage peer;
};

/* ---- small helpers ---------------------------------------------------------------- */

const px_str_t *px_hreq_header(const px_hreq_t *req, const char *name) {
  px_str_t n = {name, strlen(name)};
  for (size_t i = 0; i < req->nheaders; i++)
    if (px_str_ieq(req->headers[i].name, n)) return &req->headers[i].value;
  return NULL;
}

void px_hres_header(px_hres_t *res, const char *name, const char *value) {
  px_buf_append_cstr(&res->headers, name);
  px_buf_append(&res->headers, ": ", 2);
  px_buf_append_cstr(&res->headers, value);
  px_buf_append(&res->headers, "\r\n", 2);
}

void px_hres_json(px_hres_t *res, int status, const char *json, size_t n) {
  res->status = status;
  px_buf_append_cstr(&res->headers, "Content-Type: application/json\r\n");
  res->body.len = 0;
  px_buf_append(&res->body, json, n);
}

static void set_busy(hconn_t *h, int busy) {
  if (h->busy == busy) return;
  h->busy = busy;
  if (busy)
    h->srv->busy++;
  else
    h->srv->busy--;
}

/* ---- responses -------------------------------------------------------------------- */

static void append_date(px_hsrv_t *srv, px_buf_t *b) {
  time_t now = time(NULL);
  if (now != srv->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(srv->date, sizeof(srv->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    srv->date_sec = now;
  }
  px_buf_append_cstr(b, srv->date);
}

/* Builds the head for h->res and queues head and body on the connection's output;
 * on_written finishes the request once they are out. */
static void respond(hconn_t *h) {
  px_hsrv_t *srv = h->srv;
  px_hres_t *res = &h->res;
  if (res->status < 100 || res->status > 999) res->status = 500;
  if (srv->draining || res->close || h->c.close_after) h->close_after = 1;

  px_buf_t *b = &h->head;
  b->len = 0;
  px_buf_append(b, "HTTP/1.1 ", 9);
  px_buf_append_u64(b, (unsigned long long)res->status);
  px_buf_append(b, " ", 1);
  px_buf_append_cstr(b, px_http_reason(res->status));
  px_buf_append(b, "\r\n", 2);
  append_date(srv, b);
  if (srv->opts.extra_headers) px_buf_append_cstr(b, srv->opts.extra_headers);
  px_buf_append(b, res->headers.data, res->headers.len);
  int bodiless = res->status < 200 || res->status == 204 || res->status == 304;
  if (!bodiless) {
    px_buf_append(b, "Content-Length: ", 16);
    px_buf_append_u64(b, res->body.len);
    px_buf_append(b, "\r\n", 2);
  }
  if (h->close_after)
    px_buf_append(b, "Connection: close\r\n", 19);
  else if (h->minor == 0)
    px_buf_append(b, "Connection: keep-alive\r\n", 24);
  px_buf_append(b, "\r\n", 2);

  px_out_t *o = &h->c.out;
  px_out_reset(o);
  px_out_piece(o, b->data, 0, b->len);
  if (!bodiless && !h->is_head) px_out_piece(o, res->body.data, 0, res->body.len);
  h->answering = 1;
  px_conn_deadline(&h->c, PX_DL_ROUTE, srv->opts.idle_timeout_ms); /* for a client that does not read */
  px_conn_flush(&h->c);
}

/* Answers with a JSON error and closes the connection afterwards. */
static void send_error(hconn_t *h, int status, const char *msg) {
  px_hres_t *res = &h->res;
  res->headers.len = 0;
  res->body.len = 0;
  res->close = 1;
  res->status = status;
  px_buf_append_cstr(&res->headers, "Content-Type: application/json\r\n");
  px_buf_append_cstr(&res->body, "{\"error\": ");
  px_buf_json_str(&res->body, msg, strlen(msg));
  px_buf_append_cstr(&res->body, "}");
  h->close_after = 1;
  set_busy(h, 1);
  respond(h);
}

/* ---- requests --------------------------------------------------------------------- */

/* The body is all in: the handler answers. */
static void dispatch(hconn_t *h) {
  px_hsrv_t *srv = h->srv;
  const px_head_t *m = &h->req;
  if (h->hdrs_cap < m->nh) {
    h->hdrs_cap = m->nh;
    h->hdrs = px_realloc(h->hdrs, h->hdrs_cap * sizeof(*h->hdrs));
  }
  for (size_t i = 0; i < m->nh; i++) {
    px_str_t v = px_head_value(m, i);
    while (v.n > 0 && (v.p[v.n - 1] == ' ' || v.p[v.n - 1] == '\t')) v.n--;
    h->hdrs[i] = (px_header_t){px_head_name(m, i), v};
  }
  px_hreq_t req;
  req.method = m->method;
  req.method_name.p = llhttp_method_name((llhttp_method_t)m->method);
  req.method_name.n = strlen(req.method_name.p);
  req.target = (px_str_t){m->base + m->url_off, m->url_len};
  /* A server must take an absolute-form target too (RFC 9112 §3.2.2): its path is
   * what is served, "http://host" and "http://host?q" meaning the root. */
  px_str_t authority, origin;
  if (px_http1_absolute_target(req.target, &authority, &origin) != 1) origin = req.target;
  const char *q = memchr(origin.p, '?', origin.n);
  if (q) {
    req.path = (px_str_t){origin.p, (size_t)(q - origin.p)};
    req.query = (px_str_t){q + 1, origin.n - req.path.n - 1};
  } else {
    req.path = origin;
    req.query = (px_str_t){origin.p + origin.n, 0};
  }
  if (req.path.n == 0) req.path = PX_STR("/");
  req.headers = h->hdrs;
  req.nheaders = m->nh;
  req.body = (px_str_t){h->body.data ? h->body.data : "", h->body.len};
  req.http_major = 1;
  req.http_minor = h->minor;
  req.peer = (const struct sockaddr *)&h->peer;

  h->res.status = 200;
  h->res.headers.len = 0;
  h->res.body.len = 0;
  h->res.close = 0;
  srv->opts.handler(srv->opts.data, &req, &h->res);
  respond(h);
}

/* Copies out what has arrived of the body; dispatches once it is whole. */
static void read_body(hconn_t *h) {
  px_conn_t *c = &h->c;
  if (h->answering) return;
  px_str_t d;
  px_br_result_t r;
  while ((r = px_conn_body_next(c, &d)) == PX_BR_DATA) px_buf_append(&h->body, d.p, d.n);
  if (r == PX_BR_ERROR) return; /* on_error has answered */
  px_conn_body_consumed(c);
  if (r == PX_BR_MORE) {
    px_conn_deadline(c, PX_DL_ROUTE, h->srv->opts.idle_timeout_ms); /* for a body that stops coming */
    return;
  }
  dispatch(h);
}

/* ---- what the client connection tells --------------------------------------------- */

static void on_head(px_conn_t *c) {
  hconn_t *h = c->data;
  px_hsrv_t *srv = h->srv;
  const px_conn_head_t *hd = px_conn_head(c);
  set_busy(h, 1);
  h->req = hd->h;
  h->minor = hd->h.http_minor;
  h->is_head = hd->h.method == HTTP_HEAD;
  h->close_after = !hd->keep_alive || hd->upgrade;
  h->body.len = 0;
  if (hd->body_mode < 0) {
    send_error(h, hd->body_mode == -501 ? 501 : 400, hd->refused);
    return;
  }
  if (hd->body_mode == PX_BODY_LENGTH && hd->content_length > srv->opts.max_body_bytes) {
    send_error(h, 413, "request body too large");
    return;
  }
  if (!c->body_done) { /* the body will reuse the read buffer: keep the head */
    h->headcopy.len = 0;
    px_buf_append(&h->headcopy, hd->h.base, hd->head_bytes);
    h->req.base = h->headcopy.data;
    px_conn_continue(c);
  }
  read_body(h);
}

static void on_body(px_conn_t *c) { read_body(c->data); }

static void on_written(px_conn_t *c) {
  hconn_t *h = c->data;
  if (!h->answering) return;
  h->answering = 0;
  set_busy(h, 0);
  px_conn_request_done(c, h->close_after || h->srv->draining);
}

static void on_error(px_conn_t *c, px_errkind_t kind, const char *detail) {
  hconn_t *h = c->data;
  if (h->answering) { /* the answer has started: all that is left is to close */
    px_conn_close(c);
    return;
  }
  if (!c->in_request) h->is_head = 0, h->minor = 1;
  send_error(h, px_errkind_status(kind), detail);
}

static void on_deadline(px_conn_t *c, px_dl_kind_t kind) {
  hconn_t *h = c->data;
  if (kind != PX_DL_ROUTE) return;
  if (h->answering)
    px_conn_close(c); /* the client does not read its answer */
  else
    send_error(h, 408, "the request body did not arrive in time");
}

static void on_close(px_conn_t *c) { set_busy(c->data, 0); }

static void srv_maybe_done(px_hsrv_t *srv);

static void on_free(px_conn_t *c) {
  hconn_t *h = c->data;
  px_hsrv_t *srv = h->srv;
  if (h->prev)
    h->prev->next = h->next;
  else
    srv->conns = h->next;
  if (h->next) h->next->prev = h->prev;
  srv->nconns--;
  free(h->hdrs);
  px_buf_free(&h->headcopy);
  px_buf_free(&h->body);
  px_buf_free(&h->res.headers);
  px_buf_free(&h->res.body);
  px_buf_free(&h->head);
  free(h);
  srv_maybe_done(srv);
}

static const px_conn_handler_t handler = {on_head,     on_body,  on_written, on_error,
                                          on_deadline, on_close, on_free};

/* ---- listener ------------------------------------------------------------------- */

static void on_connection(px_tp_listener_t *ls, int status) {
  px_hsrv_t *srv = ls->data;
  if (status < 0) {
    px_warn("http server: accept failed: %s", uv_strerror(status));
    return;
  }
  hconn_t *h = px_calloc(1, sizeof(*h));
  h->srv = srv;
  h->next = srv->conns;
  if (srv->conns) srv->conns->prev = h;
  srv->conns = h;
  srv->nconns++;
  px_conn_accept(&h->c, ls, srv->loop, &srv->bufs, &handler, h, &srv->lim);
  if (h->c.closing) return;
  if (px_tp_peer(&h->c.tp, &h->peer) != 0) h->peer.ss_family = AF_UNSPEC;
}

static void srv_maybe_done(px_hsrv_t *srv) {
  if (!srv->closing || srv->listening || srv->guarded || srv->nconns > 0) return;
  void (*cb)(void *) = srv->close_cb;
  void *data = srv->close_data;
  px_iobufs_free(&srv->bufs);
  free(srv);
  if (cb) cb(data);
}

static void on_listener_closed(px_tp_listener_t *l) {
  px_hsrv_t *srv = l->data;
  srv->listening = 0;
  srv_maybe_done(srv);
}

static void on_guard_closed(uv_handle_t *h) {
  px_hsrv_t *srv = h->data;
  srv->guarded = 0;
  srv_maybe_done(srv);
}

int px_hsrv_start(uv_loop_t *loop, const struct sockaddr *addr, const px_hsrv_opts_t *opts, px_hsrv_t **out) {
  int fd = px_listen_fd(addr, 0, 511);
  if (fd < 0) return fd;
  px_hsrv_t *srv = px_calloc(1, sizeof(*srv));
  srv->loop = loop;
  srv->opts = *opts;
  if (!srv->opts.max_header_bytes) srv->opts.max_header_bytes = 64 * 1024;
  if (!srv->opts.max_body_bytes) srv->opts.max_body_bytes = 1024 * 1024;
  if (!srv->opts.header_timeout_ms) srv->opts.header_timeout_ms = 10000;
  if (!srv->opts.idle_timeout_ms) srv->opts.idle_timeout_ms = 60000;
  srv->lim = (px_conn_limits_t){.max_header_bytes = srv->opts.max_header_bytes,
                                .max_body_bytes = srv->opts.max_body_bytes,
                                .header_timeout_ms = srv->opts.header_timeout_ms,
                                .idle_timeout_ms = srv->opts.idle_timeout_ms};
  px_iobufs_init(&srv->bufs);

  srv->listener.data = srv;
  srv->listening = 1;
  uv_timer_init(loop, &srv->guard);
  srv->guard.data = srv;
  srv->guarded = 1;
  int err = px_tp_listen_fd(&srv->listener, loop, fd, 511, on_connection);
  if (err != 0) {
    /* The handles exist now, so they must be closed; the server frees itself in the
     * last callback and the caller has nothing to close. */
    srv->closing = 1;
    px_tp_listener_close(&srv->listener, on_listener_closed);
    uv_close((uv_handle_t *)&srv->guard, on_guard_closed);
    return err;
  }
  *out = srv;
  return 0;
}

int px_hsrv_port(const px_hsrv_t *srv) { return px_tp_listener_port((px_tp_listener_t *)&srv->listener); }

void px_hsrv_drain(px_hsrv_t *srv) {
  if (srv->draining) return;
  srv->draining = 1;
  if (srv->listening && !px_tp_listener_closing(&srv->listener))
    px_tp_listener_close(&srv->listener, on_listener_closed);
  for (hconn_t *h = srv->conns; h; h = h->next) px_conn_drain(&h->c); /* idle ones close now */
}

size_t px_hsrv_busy(const px_hsrv_t *srv) { return srv->busy; }

void px_hsrv_close(px_hsrv_t *srv, void (*cb)(void *data), void *data) {
  srv->close_cb = cb;
  srv->close_data = data;
  srv->closing = 1;
  srv->draining = 1;
  if (srv->listening && !px_tp_listener_closing(&srv->listener))
    px_tp_listener_close(&srv->listener, on_listener_closed);
  for (hconn_t *h = srv->conns; h; h = h->next) px_conn_close(&h->c);
  uv_close((uv_handle_t *)&srv->guard, on_guard_closed);
}
