/* The buffered HTTP/1.1 server behind httpserver.h.
 *
 * Each connection owns one read buffer. A request head stays in it while the
 * request is handled, and the parser's spans are kept as offsets from the start of
 * the message, so growing or compacting the buffer never invalidates them. Bodies
 * are copied out into a per-connection buffer as they arrive, which lets the read
 * buffer drop body bytes and stay bounded by max_header_bytes.
 *
 * Pipelining: llhttp is paused at the end of every message; the request is handled
 * and answered before the remaining buffered bytes are parsed, and reading stops
 * while a response write is pending. Answers therefore leave in order and memory
 * stays bounded whatever the client sends.
 *
 * Before llhttp sees a request head, a small scanner checks it for what llhttp
 * 8.1 tolerates but the project refuses (SPEC §4): bare LF line ends, obs-folded
 * lines and NUL bytes. The same scanner measures the head for the 431 limit.
 *
 * One timer per connection carries a single deadline whose meaning depends on the
 * state (idle, reading a head, reading a body, writing, lingering). Moving a
 * deadline later only updates a field; the timer re-arms itself when it fires
 * early, so a keep-alive request usually costs no timer operation at all. */
#include "httpserver.h"

#include "http1.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

#include "log.h"
#include "net.h"

#define HS_READ_BUF 16384
#define HS_LINGER_MS 1000

enum { CB_NONE, CB_URL, CB_FIELD, CB_VALUE };
enum { DL_IDLE, DL_HEAD, DL_BODY, DL_WRITE, DL_LINGER };

typedef struct {
  uint32_t name_off, name_len, val_off, val_len;
} span_t;

typedef struct hconn_s hconn_t;

struct px_hsrv_s {
  uv_loop_t *loop;
  px_tp_listener_t listener;
  uv_timer_t guard; /* closed last by px_hsrv_close so its callback never runs synchronously */
  px_hsrv_opts_t opts;
  llhttp_settings_t settings;
  hconn_t *conns; /* doubly linked list of live connections */
  size_t nconns, busy;
  int listening, guarded, draining, closing;
  void (*close_cb)(void *data);
  void *close_data;
  time_t date_sec;
  char date[48]; /* "Date: ...\r\n" for date_sec */
  char discard[4096];
};

struct hconn_s {
  px_transport_t tp;
  uv_timer_t timer;
  px_tp_write_t wreq;
  px_hsrv_t *srv;
  hconn_t *prev, *next;
  llhttp_t parser;

  char *rbuf;
  size_t rcap, rlen; /* bytes held */
  size_t rpos;       /* bytes handed to llhttp */
  size_t msg_start;  /* where the current message begins */

  /* head scanner, absolute positions in rbuf */
  px_headscan_t scan;
  int head_done;
  size_t head_len;

  /* the request being assembled; offsets relative to msg_start */
  int last_cb;
  uint32_t url_off, url_len;
  span_t *spans;
  size_t nspans, spans_cap;
  px_header_t *hdrs;
  size_t hdrs_cap;
  px_buf_t body;
  int err_status; /* set by a parser callback that refused the request */
  const char *err_msg;
  int keep_alive;
  int upgrade;
  int expect_continue; /* the client waits for "100 Continue" before its body */

  /* the response */
  px_hres_t res;
  px_buf_t head;
  uv_buf_t wbufs[2];

  int busy, writing, close_after, closing, lingering, reading;
  int handles;
  int dkind;
  uint64_t deadline, timer_due;
  int timer_armed;
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

/* ---- connection lifetime -------------------------------------------------------- */

static void conn_process(hconn_t *c);
static void conn_close(hconn_t *c);
static void srv_maybe_done(px_hsrv_t *srv);

static void set_busy(hconn_t *c, int busy) {
  if (c->busy == busy) return;
  c->busy = busy;
  if (busy) c->srv->busy++;
  else c->srv->busy--;
}

static void on_timer(uv_timer_t *t);

static void set_deadline(hconn_t *c, int kind, uint64_t ms) {
  c->dkind = kind;
  c->deadline = uv_now(c->srv->loop) + ms;
  if (!c->timer_armed || c->timer_due > c->deadline) {
    uv_timer_start(&c->timer, on_timer, ms, 0);
    c->timer_due = c->deadline;
    c->timer_armed = 1;
  }
}

static void handle_closed(hconn_t *c) {
  if (--c->handles > 0) return;
  px_hsrv_t *srv = c->srv;
  if (c->prev) c->prev->next = c->next;
  else srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  srv->nconns--;
  free(c->rbuf);
  free(c->spans);
  free(c->hdrs);
  px_buf_free(&c->body);
  px_buf_free(&c->res.headers);
  px_buf_free(&c->res.body);
  px_buf_free(&c->head);
  free(c);
  srv_maybe_done(srv);
}
static void on_timer_closed(uv_handle_t *h) { handle_closed(h->data); }
static void on_tp_closed(px_transport_t *t) { handle_closed(t->data); }

static void conn_close(hconn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  set_busy(c, 0);
  px_tp_close(&c->tp, on_tp_closed);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void send_error(hconn_t *c, int status, const char *msg);
static int send_response(hconn_t *c, int is_head);
static void on_alloc(px_transport_t *t, uv_buf_t *buf);
static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf);

static void start_reading(hconn_t *c) {
  if (c->reading || c->closing) return;
  if (px_tp_read_start(&c->tp, on_alloc, on_read) == 0) c->reading = 1;
  else conn_close(c);
}

static void stop_reading(hconn_t *c) {
  if (!c->reading) return;
  px_tp_read_stop(&c->tp);
  c->reading = 0;
}

/* After the last response on a connection: send FIN, then read and discard what the
 * client still sends for a moment, so that closing with unread bytes (which makes
 * the kernel send RST) cannot destroy the response before the client has read it. */
static void on_shutdown(px_transport_t *t, int status) {
  hconn_t *c = t->data;
  if (status < 0) conn_close(c);
}

static void conn_linger(hconn_t *c) {
  if (c->closing || c->lingering) return;
  c->lingering = 1;
  set_busy(c, 0);
  if (px_tp_shutdown(&c->tp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  set_deadline(c, DL_LINGER, HS_LINGER_MS);
  start_reading(c);
}

static void on_timer(uv_timer_t *t) {
  hconn_t *c = t->data;
  c->timer_armed = 0;
  uint64_t now = uv_now(c->srv->loop);
  if (now < c->deadline) {
    uv_timer_start(&c->timer, on_timer, c->deadline - now, 0);
    c->timer_due = c->deadline;
    c->timer_armed = 1;
    return;
  }
  if (c->dkind == DL_HEAD || c->dkind == DL_BODY) {
    send_error(c, 408, "request not received in time");
    return;
  }
  conn_close(c); /* idle, write or linger timeout: nothing more to say */
}

/* ---- writing responses ---------------------------------------------------------- */

static void after_response(hconn_t *c) {
  c->writing = 0;
  if (c->close_after) {
    conn_linger(c);
    return;
  }
  set_busy(c, 0);
}

static void on_write(px_tp_write_t *req, int status) {
  hconn_t *c = req->data;
  if (status < 0) {
    conn_close(c);
    return;
  }
  after_response(c);
  if (!c->closing && !c->lingering) conn_process(c);
}

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

/* Builds the head for c->res and writes head and body, trying a synchronous write
 * first. Returns 1 when everything went out, 0 when a write is pending or the
 * connection failed. */
static int send_response(hconn_t *c, int is_head) {
  px_hsrv_t *srv = c->srv;
  px_hres_t *res = &c->res;
  if (res->status < 100 || res->status > 999) res->status = 500;
  if (srv->draining || res->close) c->close_after = 1;

  px_buf_t *h = &c->head;
  h->len = 0;
  px_buf_append(h, "HTTP/1.1 ", 9);
  px_buf_append_u64(h, (unsigned long long)res->status);
  px_buf_append(h, " ", 1);
  px_buf_append_cstr(h, px_http_reason(res->status));
  px_buf_append(h, "\r\n", 2);
  append_date(srv, h);
  if (srv->opts.extra_headers) px_buf_append_cstr(h, srv->opts.extra_headers);
  px_buf_append(h, res->headers.data, res->headers.len);
  int bodiless = res->status < 200 || res->status == 204 || res->status == 304;
  if (!bodiless) {
    px_buf_append(h, "Content-Length: ", 16);
    px_buf_append_u64(h, res->body.len);
    px_buf_append(h, "\r\n", 2);
  }
  if (c->close_after) px_buf_append(h, "Connection: close\r\n", 19);
  else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
    px_buf_append(h, "Connection: keep-alive\r\n", 24);
  px_buf_append(h, "\r\n", 2);

  c->wbufs[0] = uv_buf_init(h->data, (unsigned)h->len);
  c->wbufs[1] = uv_buf_init(res->body.data, (unsigned)res->body.len);
  unsigned nbufs = (bodiless || is_head || res->body.len == 0) ? 1 : 2;
  size_t total = c->wbufs[0].len + (nbufs == 2 ? c->wbufs[1].len : 0);

  int n = px_tp_try_write(&c->tp, c->wbufs, nbufs);
  if (n == UV_EAGAIN) n = 0;
  if (n < 0) {
    conn_close(c);
    return 0;
  }
  if ((size_t)n == total) {
    after_response(c);
    return 1;
  }
  uv_buf_t *b = c->wbufs;
  size_t done = (size_t)n;
  while (done >= b->len) {
    done -= b->len;
    b++;
    nbufs--;
  }
  b->base += done;
  b->len -= done;
  c->writing = 1;
  c->wreq.data = c;
  stop_reading(c);
  if (px_tp_write(&c->tp, &c->wreq, b, nbufs, on_write) != 0) {
    conn_close(c);
    return 0;
  }
  set_deadline(c, DL_WRITE, srv->opts.idle_timeout_ms);
  return 0;
}

/* Answers with a JSON error and closes the connection afterwards. */
static void send_error(hconn_t *c, int status, const char *msg) {
  c->res.headers.len = 0;
  c->res.body.len = 0;
  c->res.close = 1;
  c->res.status = status;
  px_buf_append_cstr(&c->res.headers, "Content-Type: application/json\r\n");
  px_buf_append_cstr(&c->res.body, "{\"error\": ");
  px_buf_json_str(&c->res.body, msg, strlen(msg));
  px_buf_append_cstr(&c->res.body, "}");
  c->close_after = 1;
  set_busy(c, 1);
  stop_reading(c);
  send_response(c, 0);
}

/* ---- parser callbacks ----------------------------------------------------------- */

static inline uint32_t rel(hconn_t *c, const char *at) {
  return (uint32_t)(at - (c->rbuf + c->msg_start));
}

static int cb_message_begin(llhttp_t *p) {
  hconn_t *c = p->data;
  c->last_cb = CB_NONE;
  c->url_off = c->url_len = 0;
  c->nspans = 0;
  c->body.len = 0;
  set_busy(c, 1);
  return 0;
}

static int cb_url(llhttp_t *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  if (c->last_cb == CB_URL) {
    c->url_len = rel(c, at + n) - c->url_off;
  } else {
    c->url_off = rel(c, at);
    c->url_len = (uint32_t)n;
  }
  c->last_cb = CB_URL;
  return 0;
}

static int cb_header_field(llhttp_t *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  if (c->last_cb == CB_FIELD) {
    span_t *s = &c->spans[c->nspans - 1];
    s->name_len = rel(c, at + n) - s->name_off;
  } else {
    if (c->nspans == c->spans_cap) {
      c->spans_cap = c->spans_cap ? c->spans_cap * 2 : 16;
      c->spans = px_realloc(c->spans, c->spans_cap * sizeof(*c->spans));
    }
    span_t *s = &c->spans[c->nspans++];
    s->name_off = rel(c, at);
    s->name_len = (uint32_t)n;
    s->val_off = s->val_len = 0;
  }
  c->last_cb = CB_FIELD;
  return 0;
}

static int cb_header_value(llhttp_t *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  if (c->nspans == 0) return -1;
  span_t *s = &c->spans[c->nspans - 1];
  if (c->last_cb == CB_VALUE) {
    s->val_len = rel(c, at + n) - s->val_off;
  } else {
    s->val_off = rel(c, at);
    s->val_len = (uint32_t)n;
  }
  c->last_cb = CB_VALUE;
  return 0;
}

static int cb_headers_complete(llhttp_t *p) {
  hconn_t *c = p->data;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    c->err_msg = "request body too large";
    return -1;
  }
  const char *base = c->rbuf + c->msg_start;
  c->expect_continue = 0;
  for (size_t i = 0; i < c->nspans && p->http_minor >= 1; i++) {
    const span_t *s = &c->spans[i];
    if (s->name_len == 6 && px_str_ieq((px_str_t){base + s->name_off, 6}, PX_STR("expect")) &&
        px_str_ieq((px_str_t){base + s->val_off, s->val_len}, PX_STR("100-continue")))
      c->expect_continue = 1;
  }
  return 0;
}

static int cb_body(llhttp_t *p, const char *at, size_t n) {
  hconn_t *c = p->data;
  if (c->body.len + n > c->srv->opts.max_body_bytes) {
    c->err_status = 413;
    c->err_msg = "request body too large";
    return -1;
  }
  px_buf_append(&c->body, at, n);
  return 0;
}

static int cb_message_complete(llhttp_t *p) {
  hconn_t *c = p->data;
  c->keep_alive = llhttp_should_keep_alive(p);
  c->upgrade = p->upgrade;
  return HPE_PAUSED;
}

/* ---- reading and dispatch ------------------------------------------------------- */

/* Checks the head bytes received so far (px_headscan). Returns 0 (fine so far,
 * c->head_done set when the empty line was seen) or -1 with c->err_msg set. */
static int scan_head(hconn_t *c) {
  int r = px_headscan(&c->scan, c->rbuf, c->rlen);
  if (r < 0) {
    c->err_msg = c->scan.err;
    return -1;
  }
  if (r == 1) {
    c->head_done = 1;
    c->head_len = c->scan.head_end - c->msg_start;
  }
  return 0;
}

static void next_message(hconn_t *c) {
  if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
  c->msg_start = c->rpos;
  px_headscan_reset(&c->scan, c->rpos);
  c->head_done = 0;
  c->head_len = 0;
  c->dkind = -1; /* the next head gets a fresh header_timeout */
}

static void dispatch(hconn_t *c) {
  px_hsrv_t *srv = c->srv;
  const char *base = c->rbuf + c->msg_start;
  if (c->hdrs_cap < c->nspans) {
    c->hdrs_cap = c->nspans;
    c->hdrs = px_realloc(c->hdrs, c->hdrs_cap * sizeof(*c->hdrs));
  }
  for (size_t i = 0; i < c->nspans; i++) {
    const span_t *s = &c->spans[i];
    size_t vl = s->val_len;
    while (vl > 0 && (base[s->val_off + vl - 1] == ' ' || base[s->val_off + vl - 1] == '\t')) vl--;
    c->hdrs[i].name = (px_str_t){base + s->name_off, s->name_len};
    c->hdrs[i].value = (px_str_t){base + s->val_off, vl};
  }
  px_hreq_t req;
  req.method = c->parser.method;
  req.method_name.p = llhttp_method_name((llhttp_method_t)c->parser.method);
  req.method_name.n = strlen(req.method_name.p);
  req.target = (px_str_t){base + c->url_off, c->url_len};
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
  req.headers = c->hdrs;
  req.nheaders = c->nspans;
  req.body = (px_str_t){c->body.data ? c->body.data : "", c->body.len};
  req.http_major = c->parser.http_major;
  req.http_minor = c->parser.http_minor;
  req.peer = (const struct sockaddr *)&c->peer;

  c->res.status = 200;
  c->res.headers.len = 0;
  c->res.body.len = 0;
  c->res.close = 0;
  c->close_after = !c->keep_alive || c->upgrade;
  srv->opts.handler(srv->opts.data, &req, &c->res);
}

static void conn_process(hconn_t *c) {
  px_hsrv_t *srv = c->srv;
  while (!c->writing && !c->closing && !c->lingering) {
    if (c->rpos == c->rlen) break;
    if (!c->head_done) {
      if (c->dkind != DL_HEAD) set_deadline(c, DL_HEAD, srv->opts.header_timeout_ms);
      if (scan_head(c) != 0) {
        send_error(c, 400, c->err_msg);
        return;
      }
      size_t have = c->head_done ? c->head_len : c->rlen - c->msg_start;
      if (have > srv->opts.max_header_bytes) {
        send_error(c, 431, "request header fields too large");
        return;
      }
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, c->rbuf + c->rpos, c->rlen - c->rpos);
    if (e == HPE_OK) {
      c->rpos = c->rlen;
      if (c->head_done && c->dkind != DL_BODY && c->busy) set_deadline(c, DL_BODY, srv->opts.idle_timeout_ms);
      if (c->expect_continue) {
        /* The body is wanted and has not started: say so rather than making the
         * client wait for its own timeout. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->expect_continue = 0;
        if (c->head_done && c->body.len == 0) {
          uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
          if (px_tp_try_write(&c->tp, &b, 1) != (int)b.len) {
            conn_close(c);
            return;
          }
        }
      }
      /* Body bytes were copied out; keep only the head. */
      if (c->head_done && c->rlen > c->msg_start + c->head_len) c->rpos = c->rlen = c->msg_start + c->head_len;
      break;
    }
    if (e == HPE_PAUSED) {
      c->rpos = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
      llhttp_resume(&c->parser);
      dispatch(c);
      int done = send_response(c, c->parser.method == HTTP_HEAD);
      if (c->closing || c->lingering) return;
      next_message(c);
      if (!done) return; /* on_write continues */
      continue;
    }
    if (c->err_status) {
      send_error(c, c->err_status, c->err_msg);
    } else {
      const char *why = llhttp_get_error_reason(&c->parser);
      char msg[160];
      snprintf(msg, sizeof(msg), "malformed request: %s", why ? why : llhttp_errno_name(e));
      send_error(c, 400, msg);
    }
    return;
  }
  if (c->closing || c->lingering || c->writing) return;
  if (srv->draining && !c->busy) {
    conn_close(c);
    return;
  }
  if (c->rpos == c->msg_start && c->rlen == c->rpos && c->dkind != DL_IDLE)
    set_deadline(c, DL_IDLE, srv->opts.idle_timeout_ms);
  start_reading(c);
}

static void on_alloc(px_transport_t *t, uv_buf_t *buf) {
  hconn_t *c = t->data;
  if (c->lingering) {
    *buf = uv_buf_init(c->srv->discard, sizeof(c->srv->discard));
    return;
  }
  if (c->rcap - c->rlen < 1024 && c->msg_start > 0) {
    size_t shift = c->msg_start;
    memmove(c->rbuf, c->rbuf + shift, c->rlen - shift);
    c->rlen -= shift;
    c->rpos -= shift;
    c->scan.pos -= shift;
    c->scan.line_start -= shift;
    c->msg_start = 0;
  }
  size_t limit = c->srv->opts.max_header_bytes + HS_READ_BUF;
  if (c->rcap - c->rlen < 1024 && c->rcap < limit) {
    c->rcap = PX_MIN(c->rcap * 2, limit);
    c->rbuf = px_realloc(c->rbuf, c->rcap);
  }
  *buf = uv_buf_init(c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf) {
  hconn_t *c = t->data;
  if (nread < 0) {
    /* EOF or error. A half-closed client may still be waiting for a pending
     * answer; otherwise there is nobody left to answer. */
    stop_reading(c);
    if (c->writing && nread == UV_EOF) c->close_after = 1;
    else conn_close(c);
    return;
  }
  if (nread == 0) return;
  if (c->lingering) return;
  c->rlen += (size_t)nread;
  if (c->dkind == DL_BODY) set_deadline(c, DL_BODY, c->srv->opts.idle_timeout_ms);
  conn_process(c);
}

/* ---- listener ------------------------------------------------------------------- */

static void on_connection(px_tp_listener_t *ls, int status) {
  px_hsrv_t *srv = ls->data;
  if (status < 0) {
    px_warn("http server: accept failed: %s", uv_strerror(status));
    return;
  }
  hconn_t *c = px_calloc(1, sizeof(*c));
  c->srv = srv;
  uv_timer_init(srv->loop, &c->timer);
  c->tp.data = c->timer.data = c;
  c->handles = 2;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  if (px_tp_accept(ls, &c->tp) != 0) {
    conn_close(c);
    return;
  }
  if (px_tp_peer(&c->tp, &c->peer) != 0) c->peer.ss_family = AF_UNSPEC;
  c->rcap = HS_READ_BUF;
  c->rbuf = px_malloc(c->rcap);
  llhttp_init(&c->parser, HTTP_REQUEST, &srv->settings);
  c->parser.data = c;
  c->dkind = -1;
  set_deadline(c, DL_IDLE, srv->opts.idle_timeout_ms);
  start_reading(c);
}

static void srv_maybe_done(px_hsrv_t *srv) {
  if (!srv->closing || srv->listening || srv->guarded || srv->nconns > 0) return;
  void (*cb)(void *) = srv->close_cb;
  void *data = srv->close_data;
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

int px_hsrv_start(uv_loop_t *loop, const struct sockaddr *addr, const px_hsrv_opts_t *opts,
                  px_hsrv_t **out) {
  int fd = px_listen_fd(addr, 0, 511);
  if (fd < 0) return fd;
  px_hsrv_t *srv = px_calloc(1, sizeof(*srv));
  srv->loop = loop;
  srv->opts = *opts;
  if (!srv->opts.max_header_bytes) srv->opts.max_header_bytes = 64 * 1024;
  if (!srv->opts.max_body_bytes) srv->opts.max_body_bytes = 1024 * 1024;
  if (!srv->opts.header_timeout_ms) srv->opts.header_timeout_ms = 10000;
  if (!srv->opts.idle_timeout_ms) srv->opts.idle_timeout_ms = 60000;
  llhttp_settings_init(&srv->settings);
  srv->settings.on_message_begin = cb_message_begin;
  srv->settings.on_url = cb_url;
  srv->settings.on_header_field = cb_header_field;
  srv->settings.on_header_value = cb_header_value;
  srv->settings.on_headers_complete = cb_headers_complete;
  srv->settings.on_body = cb_body;
  srv->settings.on_message_complete = cb_message_complete;

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
  for (hconn_t *c = srv->conns; c; c = c->next)
    if (!c->busy && !c->writing && !c->lingering) conn_close(c);
}

size_t px_hsrv_busy(const px_hsrv_t *srv) { return srv->busy; }

void px_hsrv_close(px_hsrv_t *srv, void (*cb)(void *data), void *data) {
  srv->close_cb = cb;
  srv->close_data = data;
  srv->closing = 1;
  srv->draining = 1;
  if (srv->listening && !px_tp_listener_closing(&srv->listener))
    px_tp_listener_close(&srv->listener, on_listener_closed);
  for (hconn_t *c = srv->conns; c; c = c->next) conn_close(c);
  uv_close((uv_handle_t *)&srv->guard, on_guard_closed);
}
