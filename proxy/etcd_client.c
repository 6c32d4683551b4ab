/* The etcd gateway client (etcd_client.h).
 *
 * A call or a watch (px_etcd_call_t; a watch is a call with a stream) owns no handle: it
 * holds the request and where its failover stands, and at most one connection at a time.
 * A connection (conn_t) is one try on one member and owns the two handles, its
 * transport and a timer (the try's timeout, or a failure to report from the loop); it
 * is freed once both have closed. The client owns one timer of its own, closed by
 * px_etcd_free, so that the client is always freed from a close callback, never while
 * a function of it is on the stack.
 *
 * Callbacks into the caller run only from the loop (connection events, timers), one at a
 * time, and with the call already off its connection; while one runs, its call is marked
 * in_cb and whatever the caller does to it (cancel, close, free the client) only marks
 * it gone: the code that ran the callback frees it afterwards. Every other call is freed
 * at once, its connection closed. */
#include "etcd_client.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "core.h"
#include "etcd_json.h"
#include "log.h"
#include "net.h"
#include "queue.h"
#include "transport.h"

#define RBUF_SIZE (16u << 10)
#define WARN_EVERY_MS 10000
#define WATCH_ERROR_MAX (64u << 10) /* the body of a watch answered with an error */
/* TCP keepalive on a watch: the first probe after 5 s of silence, then every 2 s, and 3
 * unanswered probes end the connection. */
#define WATCH_KEEPIDLE_S 5
#define WATCH_KEEPINTVL_S 2
#define WATCH_KEEPCNT 3

typedef struct conn_s conn_t;

typedef struct {
  char url[PX_ETCD_URL_MAX];
  char authority[PX_ETCD_URL_MAX]; /* the Host header */
  struct sockaddr_storage sa;
  conn_t *idle; /* kept for the next call */
} member_t;

struct px_etcd_s {
  uv_loop_t *loop;
  member_t *m;
  size_t n;
  uint64_t timeout_ms;
  size_t good; /* the member that last answered */
  int have_good;
  uint64_t warned_ms;
  int warned;
  px_queue_t calls, conns;
  uv_timer_t timer; /* only closed, by px_etcd_free: see the top of the file */
  unsigned nhandles;
  int freeing;
  void (*done)(void *data);
  void *done_data;
};

struct px_etcd_call_s {
  px_etcd_t *e;
  px_queue_t link; /* e->calls */
  int is_watch;
  char *path;
  px_buf_t body;
  size_t start, ntried; /* members tried: start, start + 1, ... (mod n) */
  int stale_retried;    /* a kept connection failed at once: tried again on a fresh one */
  int last_rc;
  char last_why[160];
  int in_cb, gone;
  conn_t *conn;
  px_etcd_call_cb cb;
  void *data;
};

struct px_etcd_watch_s {
  px_etcd_call_t c;
  px_etcd_msg_cb on_msg;
  px_etcd_end_cb on_end;
  int up; /* the 2xx head is in */
  px_etcd_stream_t split;
};

struct conn_s {
  px_transport_t tp;
  uv_timer_t timer;
  px_etcd_t *e;
  px_queue_t link; /* e->conns */
  size_t member;
  px_etcd_call_t *c; /* NULL when idle or closing */
  int closing, nhandles, idle, reading, writing, reused, got_bytes;
  int head_done, msg_done;
  int soon_err; /* what the timer reports when it fires at once */
  const char *soon_why;
  int cb_err; /* why a parser callback stopped the parser */
  size_t head_bytes;
  llhttp_t parser;
  px_buf_t out;  /* the request, until it is written */
  px_buf_t body; /* the answer's body (unary, or a watch answered with an error) */
  px_tp_write_t wreq;
  char rbuf[RBUF_SIZE];
};

static void try_next(px_etcd_call_t *c);
static void conn_start(px_etcd_call_t *c, size_t member, int fresh);

static px_etcd_watch_t *watch_of(px_etcd_call_t *c) { return PX_CONTAINER_OF(c, px_etcd_watch_t, c); }

/* ---- member URLs ------------------------------------------------------------------- */

static int url_fail(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int url_fail(char *why, size_t whylen, const char *fmt, ...) {
  if (why && whylen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return PX_ECONFIG;
}

int px_etcd_url_parse(const char *url, struct sockaddr_storage *sa, char *why, size_t whylen) {
  if (url && strlen(url) >= PX_ETCD_URL_MAX) return url_fail(why, whylen, "URL too long");
  px_http_url_t u;
  int rc = px_http_url_parse(url, &u, why, whylen);
  if (rc != 0) return rc;
  if (!u.port[0]) return url_fail(why, whylen, "a port is required (\"http://HOST:PORT\")");
  if (u.path[0] == '?') return url_fail(why, whylen, "a query is not allowed");
  if (u.path[0] && strcmp(u.path, "/") != 0)
    return url_fail(why, whylen, "a path is not allowed (only an empty one or \"/\")");
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  uint16_t port = (uint16_t)atoi(u.port);
  if (u.authority[0] == '[') {
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    inet_pton(AF_INET6, u.host, &a6->sin6_addr); /* px_http_url_parse checked it */
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
  } else {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    if (strcasecmp(u.host, "localhost") == 0) {
      a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, u.host, &a4->sin_addr) != 1) {
      return url_fail(
          why, whylen,
          "host \"%s\" is not an IPv4 address, a [bracketed] IPv6 address or localhost (names are "
          "not resolved)",
          u.host);
    }
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
  }
  if (sa) *sa = ss;
  return 0;
}

/* ---- the client ---------------------------------------------------------------------- */

static void client_handle_closed(px_etcd_t *e) {
  if (--e->nhandles > 0 || !e->freeing) return;
  void (*done)(void *) = e->done;
  void *data = e->done_data;
  free(e->m);
  free(e);
  if (done) done(data);
}

static void on_client_timer_closed(uv_handle_t *h) { client_handle_closed(h->data); }

px_etcd_t *px_etcd_new(uv_loop_t *loop, const char *const *urls, size_t n, uint64_t timeout_ms) {
  if (n == 0 || n > PX_ETCD_MAX_MEMBERS) return NULL;
  px_etcd_t *e = px_calloc(1, sizeof(*e));
  e->m = px_calloc(n, sizeof(member_t));
  for (size_t i = 0; i < n; i++) {
    member_t *m = &e->m[i];
    if (px_etcd_url_parse(urls[i], &m->sa, NULL, 0) != 0) {
      free(e->m);
      free(e);
      return NULL;
    }
    snprintf(m->url, sizeof(m->url), "%s", urls[i]);
    const char *auth = urls[i] + 7;
    snprintf(m->authority, sizeof(m->authority), "%.*s", (int)strcspn(auth, "/"), auth);
  }
  e->loop = loop;
  e->n = n;
  e->timeout_ms = timeout_ms ? timeout_ms : 1;
  px_queue_init(&e->calls);
  px_queue_init(&e->conns);
  uv_timer_init(loop, &e->timer);
  e->timer.data = e;
  e->nhandles = 1;
  return e;
}

const char *px_etcd_member(const px_etcd_t *e) { return e->have_good ? e->m[e->good].url : ""; }

/* ---- connections --------------------------------------------------------------------- */

static void conn_handle_closed(conn_t *conn) {
  if (--conn->nhandles > 0) return;
  px_etcd_t *e = conn->e;
  px_queue_remove(&conn->link);
  px_buf_free(&conn->out);
  px_buf_free(&conn->body);
  free(conn);
  client_handle_closed(e);
}
static void on_conn_timer_closed(uv_handle_t *h) { conn_handle_closed(h->data); }
static void on_conn_tp_closed(px_transport_t *t) { conn_handle_closed(t->data); }

/* Closes the connection; `broken` resets it (a try that failed half way), else a plain
 * close. Detaches its call, if any. */
static void conn_close(conn_t *conn, int broken) {
  if (conn->closing) return;
  conn->closing = 1;
  if (conn->idle) {
    conn->e->m[conn->member].idle = NULL;
    conn->idle = 0;
  }
  if (conn->c) conn->c->conn = NULL;
  conn->c = NULL;
  if (broken)
    px_tp_abort(&conn->tp, on_conn_tp_closed);
  else
    px_tp_close(&conn->tp, on_conn_tp_closed);
  uv_close((uv_handle_t *)&conn->timer, on_conn_timer_closed);
}

static int on_headers_complete(llhttp_t *p) {
  conn_t *conn = p->data;
  conn->head_done = 1;
  return HPE_PAUSED; /* feed() measures the head and looks at it */
}

static int on_message_complete(llhttp_t *p) {
  ((conn_t *)p->data)->msg_done = 1;
  return HPE_PAUSED;
}

/* Body bytes: a unary answer's are kept; a watch's are cut into messages and handed on
 * at once. -1 (HPE_USER) stops the parser: a limit (cb_err), or the watch went away from
 * inside on_msg. */
static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn_t *conn = p->data;
  px_etcd_call_t *c = conn->c;
  if (c->is_watch && watch_of(c)->up) {
    px_etcd_watch_t *w = watch_of(c);
    px_str_t msg;
    for (;;) {
      int r = px_etcd_stream_next(&w->split, &at, &n, &msg);
      if (r == 0) return 0;
      if (r < 0) {
        conn->cb_err = r;
        return -1;
      }
      c->in_cb = 1;
      w->on_msg(c->data, msg.p, msg.n);
      c->in_cb = 0;
      if (c->gone) return -1;
    }
  }
  size_t max = c->is_watch ? WATCH_ERROR_MAX : PX_ETCD_MAX_BODY;
  if (conn->body.len + n > max) {
    conn->cb_err = PX_ETOOLARGE;
    return -1;
  }
  px_buf_append(&conn->body, at, n);
  return 0;
}

static const llhttp_settings_t settings = {.on_headers_complete = on_headers_complete,
                                           .on_body = on_body,
                                           .on_message_complete = on_message_complete};

static void on_alloc(px_transport_t *t, uv_buf_t *buf) {
  conn_t *conn = t->data;
  buf->base = conn->rbuf;
  buf->len = sizeof(conn->rbuf);
}

static void on_written(px_tp_write_t *wr, int status);
static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf);
static void on_timer(uv_timer_t *t);

/* Reports err (with why, a string literal) from the loop: a failure found inside a
 * function of the API, which must not run callbacks. */
static void conn_fail_soon(conn_t *conn, int err, const char *why) {
  conn->soon_err = err;
  conn->soon_why = why;
  uv_timer_start(&conn->timer, on_timer, 0, 0);
}

static void conn_send(conn_t *conn) {
  px_etcd_call_t *c = conn->c;
  member_t *m = &conn->e->m[conn->member];
  llhttp_init(&conn->parser, HTTP_RESPONSE, &settings);
  conn->parser.data = conn;
  conn->head_done = conn->msg_done = conn->got_bytes = 0;
  conn->head_bytes = 0;
  conn->cb_err = 0;
  conn->body.len = 0;
  conn->out.len = 0;
  px_buf_printf(
      &conn->out,
      "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
      c->path, m->authority, c->body.len);
  px_buf_append(&conn->out, c->body.data, c->body.len);
  if (!conn->reading) {
    int r = px_tp_read_start(&conn->tp, on_alloc, on_read);
    if (r < 0) {
      conn_fail_soon(conn, r, "cannot read from the connection");
      return;
    }
    conn->reading = 1;
  }
  uv_buf_t b = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
  conn->wreq.data = conn;
  int r = px_tp_write_now(&conn->tp, &conn->wreq, &b, 1, on_written);
  if (r < 0)
    conn_fail_soon(conn, r, "sending the request failed");
  else if (r == 0)
    conn->writing = 1;
}

/* ---- ending calls and watches ----------------------------------------------------------- */

static void call_free(px_etcd_call_t *c) {
  px_queue_remove(&c->link);
  free(c->path);
  px_buf_free(&c->body);
  if (c->is_watch) {
    px_etcd_stream_free(&watch_of(c)->split);
    free(watch_of(c));
  } else {
    free(c);
  }
}

/* Ends c without its callback: its connection closes, its memory goes. */
static void call_drop(px_etcd_call_t *c) {
  if (c->conn) conn_close(c->conn, 0);
  call_free(c);
}

/* Runs the unary call's callback and frees it. */
static void call_finish(px_etcd_call_t *c, int rc, int status, const char *body, size_t n) {
  if (c->conn) conn_close(c->conn, 0);
  c->in_cb = 1;
  c->cb(c->data, rc, status, body, n);
  call_free(c);
}

/* Runs the watch's on_end and frees it. */
static void watch_end(px_etcd_call_t *c, int rc) {
  if (c->conn) conn_close(c->conn, rc < 0 && rc != PX_EUPSTREAM);
  c->in_cb = 1;
  watch_of(c)->on_end(c->data, rc);
  call_free(c);
}

/* Every member failed c. */
static void fail_all(px_etcd_call_t *c) {
  px_etcd_t *e = c->e;
  uint64_t now = uv_now(e->loop);
  if (!e->warned || now - e->warned_ms >= WARN_EVERY_MS) {
    e->warned = 1;
    e->warned_ms = now;
    px_warn("etcd: every member failed POST %s (last: %s)", c->path, c->last_why);
  }
  int rc = c->last_rc == PX_ETIMEOUT ? PX_ETIMEOUT : PX_EUPSTREAM;
  if (c->is_watch)
    watch_end(c, rc);
  else
    call_finish(c, rc, 0, NULL, 0);
}

/* The try on conn failed with rc (why says how): the next member, or for a watch that is
 * up, the end. */
static void conn_fail(conn_t *conn, int rc, const char *why) {
  px_etcd_call_t *c = conn->c;
  size_t member = conn->member;
  int stale = conn->reused && !conn->got_bytes && rc != PX_ETIMEOUT;
  conn_close(conn, 1);
  if (c == NULL) return;
  if (c->is_watch && watch_of(c)->up) {
    px_debug("etcd: the watch on %s ended: %s", conn->e->m[member].url, why);
    watch_end(c, rc);
    return;
  }
  if (stale && !c->stale_retried) {
    /* A kept connection that etcd closed while it was idle (a restart): not the
     * member's failure. */
    c->stale_retried = 1;
    conn_start(c, member, 1);
    return;
  }
  snprintf(c->last_why, sizeof(c->last_why), "%s: %s", conn->e->m[member].url, why);
  c->last_rc = rc;
  px_debug("etcd: POST %s failed on %s", c->path, c->last_why);
  try_next(c);
}

/* Whether an etcd error says the member cannot serve now (another may). CANCELED comes
 * only from the member's side here (the gateway's own connection to its gRPC server
 * closing as the member stops: "grpc: the client connection is closing"); the leaderless
 * errors come with code 14, 4 or 2 depending on the request. */
static int unavailable(const px_etcd_error_t *err) {
  return err->code == PX_ETCD_CODE_UNAVAILABLE || err->code == 1 ||
         strstr(err->message, "request timed out") || strstr(err->message, "no leader") ||
         strstr(err->message, "context deadline exceeded") || strstr(err->message, "is closing");
}

/* What a whole answer means for its member: NULL when it goes to the caller, else why the
 * member failed (in buf). */
static const char *judge(int status, const char *body, size_t n, char *buf, size_t len) {
  if (status == 502 || status == 503 || status == 504) {
    snprintf(buf, len, "HTTP %d", status);
    return buf;
  }
  if (status < 200 || (status >= 300 && status < 400)) {
    snprintf(buf, len, "unexpected HTTP %d", status);
    return buf;
  }
  int ok = status < 300;
  /* Gateway answers carry only base64, numbers and etcd's field names, so a 2xx body
   * without "error" is no error (and a 4 MiB range is not parsed twice). */
  if (ok && !memmem(body, n, "\"error\"", 7)) return NULL;
  px_etcd_error_t err;
  if (px_etcd_parse_header(body, n, NULL, &err) != PX_EUPSTREAM) {
    if (ok) return NULL;
    snprintf(buf, len, "HTTP %d without an etcd error", status);
    return buf;
  }
  if (!unavailable(&err)) return NULL;
  snprintf(buf, len, "HTTP %d: %s", status, err.message);
  return buf;
}

/* The whole answer is in; `extra`: bytes came after it. */
static void answer_done(conn_t *conn, int extra) {
  px_etcd_call_t *c = conn->c;
  px_etcd_t *e = conn->e;
  int status = conn->parser.status_code;
  char buf[320];
  px_buf_append(&conn->body, "", 1); /* NUL-terminated for the caller's convenience */
  conn->body.len--;
  const char *why = judge(status, conn->body.data, conn->body.len, buf, sizeof(buf));
  if (why) {
    conn_fail(conn, PX_EUPSTREAM, why);
    return;
  }
  e->good = conn->member;
  e->have_good = 1;
  px_buf_t body = conn->body;
  conn->body = (px_buf_t){0};
  if (c->is_watch) {
    /* A watch answered with an error that is not the member's (a bad body): the caller
     * sees it as a message. */
    c->in_cb = 1;
    watch_of(c)->on_msg(c->data, body.data, body.len);
    c->in_cb = 0;
    if (c->gone)
      call_drop(c);
    else
      watch_end(c, PX_EUPSTREAM);
    px_buf_free(&body);
    return;
  }
  member_t *m = &e->m[conn->member];
  c->conn = NULL;
  conn->c = NULL;
  if (!extra && !conn->writing && !e->freeing && m->idle == NULL && llhttp_should_keep_alive(&conn->parser)) {
    conn->idle = 1;
    m->idle = conn;
    uv_timer_stop(&conn->timer);
  } else {
    conn_close(conn, 0);
  }
  call_finish(c, 0, status, body.data, body.len);
  px_buf_free(&body);
}

/* A watch's head is in: a 2xx starts the stream; anything else is read whole and
 * judged like a unary answer. */
static void watch_head(conn_t *conn) {
  px_etcd_watch_t *w = watch_of(conn->c);
  int status = conn->parser.status_code;
  if (status < 200 || status > 299) return;
  w->up = 1;
  conn->e->good = conn->member;
  conn->e->have_good = 1;
  uv_timer_stop(&conn->timer); /* silent for as long as nothing changes */
}

/* The watch's stream ended with the answer (the member ended it). */
static void watch_over(conn_t *conn) {
  px_etcd_call_t *c = conn->c;
  px_debug("etcd: the watch on %s ended: the member ended the stream", conn->e->m[conn->member].url);
  watch_end(c, PX_EUPSTREAM);
}

/* Answer bytes p[0..n). */
static void feed(conn_t *conn, const char *p, size_t n) {
  px_etcd_call_t *c = conn->c;
  const char *end = p + n;
  for (;;) {
    llhttp_errno_t err = llhttp_execute(&conn->parser, p, (size_t)(end - p));
    if (err == HPE_OK) {
      if (!conn->head_done && (conn->head_bytes += (size_t)(end - p)) > PX_ETCD_MAX_HEAD)
        conn_fail(conn, PX_ETOOLARGE, "answer head too large");
      return;
    }
    if (err != HPE_PAUSED) break;
    const char *at = llhttp_get_error_pos(&conn->parser);
    if (conn->msg_done) {
      if (c->is_watch && watch_of(c)->up)
        watch_over(conn);
      else
        answer_done(conn, at != end);
      return;
    }
    /* The head is complete. */
    if ((conn->head_bytes += (size_t)(at - p)) > PX_ETCD_MAX_HEAD) {
      conn_fail(conn, PX_ETOOLARGE, "answer head too large");
      return;
    }
    if (conn->parser.status_code < 200) { /* an interim answer: etcd sends none */
      conn_fail(conn, PX_EPARSE, "unexpected interim answer");
      return;
    }
    if (c->is_watch) watch_head(conn);
    llhttp_resume(&conn->parser);
    p = at;
  }
  if (c->gone) { /* the watch went away from inside on_msg */
    call_drop(c);
    return;
  }
  if (conn->cb_err == PX_ETOOLARGE && !c->is_watch) {
    conn_fail(conn, PX_ETOOLARGE, "answer body too large");
    return;
  }
  if (conn->cb_err) {
    conn_fail(conn, conn->cb_err,
              conn->cb_err == PX_ETOOLARGE ? "watch message too large"
                                           : "the watch stream is not JSON objects");
    return;
  }
  char why[160];
  snprintf(why, sizeof(why), "malformed answer: %s", llhttp_get_error_reason(&conn->parser));
  conn_fail(conn, PX_EPARSE, why);
}

static void on_read(px_transport_t *t, ssize_t nread, const uv_buf_t *buf) {
  conn_t *conn = t->data;
  if (nread == 0 || conn->closing) return;
  if (conn->c == NULL) { /* an idle connection that speaks or ends is of no more use */
    conn_close(conn, 0);
    return;
  }
  if (nread > 0) {
    conn->got_bytes = 1;
    feed(conn, buf->base, (size_t)nread);
    return;
  }
  if (nread == UV_EOF && conn->head_done && !(conn->c->is_watch && watch_of(conn->c)->up)) {
    /* An answer delimited by the connection's end is whole now (on_message_complete
     * pauses, so llhttp_finish says HPE_PAUSED then). */
    llhttp_finish(&conn->parser);
    if (conn->msg_done) {
      answer_done(conn, 1);
      return;
    }
  }
  conn_fail(conn, (int)nread,
            nread == UV_EOF ? "the connection ended before the whole answer" : uv_strerror((int)nread));
}

static void on_written(px_tp_write_t *wr, int status) {
  conn_t *conn = wr->data;
  conn->writing = 0;
  if (conn->closing || conn->c == NULL) return;
  if (status < 0) conn_fail(conn, status, "sending the request failed");
}

static void on_connected(px_transport_t *t, int status) {
  conn_t *conn = t->data;
  if (conn->closing) return; /* timed out or dropped */
  if (status < 0) {
    char why[96];
    snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
    conn_fail(conn, status, why);
    return;
  }
  conn_send(conn);
}

static void on_timer(uv_timer_t *t) {
  conn_t *conn = t->data;
  if (conn->closing || conn->c == NULL) return;
  if (conn->soon_err) {
    int err = conn->soon_err;
    conn->soon_err = 0;
    char why[128];
    snprintf(why, sizeof(why), "%s: %s", conn->soon_why, px_strerror(err));
    conn_fail(conn, err, why);
    return;
  }
  char why[96];
  snprintf(why, sizeof(why), "no whole answer within %llu ms", (unsigned long long)conn->e->timeout_ms);
  conn_fail(conn, PX_ETIMEOUT, why);
}

/* A watch's socket probes the member while the stream is silent. The transport does not
 * offer keepalive, and libuv's own sets only the idle time (the kernel's default
 * interval and count would take 11 minutes), so the options go on the descriptor. */
static void watch_keepalive(conn_t *conn) {
  uv_os_fd_t fd;
  if (uv_fileno((const uv_handle_t *)&conn->tp.tcp, &fd) != 0) return;
  int on = 1, idle = WATCH_KEEPIDLE_S, intvl = WATCH_KEEPINTVL_S, cnt = WATCH_KEEPCNT;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Tries c on `member`: its kept connection unless `fresh`, else a new one. */
static void conn_start(px_etcd_call_t *c, size_t member, int fresh) {
  px_etcd_t *e = c->e;
  member_t *m = &e->m[member];
  conn_t *conn = m->idle;
  /* The loop's clock stands where its last turn began: a caller that posts after
   * blocking work (or a long turn) would get a try shorter than the timeout. */
  uv_update_time(e->loop);
  if (conn && !fresh && !c->is_watch) {
    m->idle = NULL;
    conn->idle = 0;
    conn->reused = 1;
    conn->c = c;
    c->conn = conn;
    uv_timer_start(&conn->timer, on_timer, e->timeout_ms, 0);
    conn_send(conn);
    return;
  }
  conn = px_calloc(1, sizeof(*conn));
  conn->e = e;
  conn->member = member;
  conn->c = c;
  c->conn = conn;
  conn->tp.data = conn;
  uv_timer_init(e->loop, &conn->timer);
  conn->timer.data = conn;
  conn->nhandles = 2;
  e->nhandles++; /* the connection counts once, when both its handles closed */
  px_queue_insert_tail(&e->conns, &conn->link);
  int r = px_tcp_connect(&conn->tp, e->loop, (const struct sockaddr *)&m->sa, on_connected);
  if (r < 0) {
    conn_fail_soon(conn, r, "connect");
    return;
  }
  if (c->is_watch) watch_keepalive(conn);
  uv_timer_start(&conn->timer, on_timer, e->timeout_ms, 0);
}

static void try_next(px_etcd_call_t *c) {
  if (c->ntried == c->e->n) {
    fail_all(c);
    return;
  }
  size_t member = (c->start + c->ntried++) % c->e->n;
  conn_start(c, member, 0);
}

/* ---- the API -------------------------------------------------------------------------- */

static void call_init(px_etcd_t *e, px_etcd_call_t *c, const char *path, const char *body, size_t n,
                      void *data) {
  c->e = e;
  c->path = px_strdup(path);
  px_buf_append(&c->body, body, n);
  c->data = data;
  c->start = e->have_good ? e->good : 0;
  c->last_rc = PX_EUPSTREAM;
  px_queue_insert_tail(&e->calls, &c->link);
}

px_etcd_call_t *px_etcd_post(px_etcd_t *e, const char *path, const char *body, size_t n, px_etcd_call_cb cb,
                             void *data) {
  if (e->freeing) return NULL;
  px_etcd_call_t *c = px_calloc(1, sizeof(*c));
  call_init(e, c, path, body, n, data);
  c->cb = cb;
  try_next(c);
  return c;
}

void px_etcd_cancel(px_etcd_call_t *c) {
  if (c == NULL) return;
  if (c->in_cb) {
    c->gone = 1;
    return;
  }
  call_drop(c);
}

px_etcd_watch_t *px_etcd_watch(px_etcd_t *e, const char *body, size_t n, px_etcd_msg_cb on_msg,
                               px_etcd_end_cb on_end, void *data) {
  if (e->freeing) return NULL;
  px_etcd_watch_t *w = px_calloc(1, sizeof(*w));
  w->c.is_watch = 1;
  call_init(e, &w->c, "/v3/watch", body, n, data);
  w->on_msg = on_msg;
  w->on_end = on_end;
  px_etcd_stream_init(&w->split, 0);
  try_next(&w->c);
  return w;
}

void px_etcd_watch_close(px_etcd_watch_t *w) {
  if (w != NULL) px_etcd_cancel(&w->c);
}

int px_etcd_watch_up(const px_etcd_watch_t *w) { return w->up; }

void px_etcd_free(px_etcd_t *e, void (*done)(void *data), void *data) {
  if (e == NULL || e->freeing) return;
  e->freeing = 1;
  e->done = done;
  e->done_data = data;
  px_queue_t *q = e->calls.next;
  while (q != &e->calls) {
    px_etcd_call_t *c = PX_CONTAINER_OF(q, px_etcd_call_t, link);
    q = q->next;
    px_etcd_cancel(c);
  }
  for (q = e->conns.next; q != &e->conns; q = q->next) conn_close(PX_CONTAINER_OF(q, conn_t, link), 0);
  uv_close((uv_handle_t *)&e->timer, on_client_timer_closed);
}
