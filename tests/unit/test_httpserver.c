/* The buffered HTTP server in-process: a loop thread runs it, the test talks to it
 * over loopback with blocking sockets. Covers what the shortener tests cannot reach
 * easily: pending writes with pipelining, timeouts, drain and clean shutdown. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpserver.h"

typedef struct {
  uv_loop_t loop;
  uv_async_t cmd;
  pthread_t thread;
  px_hsrv_t *srv;
  int port;
  int want_drain, want_close;
  int closed_cb_ran;
  int loop_close_rc;
  pthread_mutex_t lock;
} env_t;

static env_t env;

static void handler(void *data, const px_hreq_t *req, px_hres_t *res) {
  (void)data;
  if (px_str_eq(req->path, PX_STR("/big"))) {
    size_t n = (size_t)strtoul(req->query.p + 2, NULL, 10); /* ?n=N */
    for (size_t i = 0; i < n; i++) px_buf_append(&res->body, &"0123456789"[i % 10], 1);
    return;
  }
  if (px_str_eq(req->path, PX_STR("/close"))) res->close = 1;
  px_buf_printf(&res->body, "%.*s %.*s body=%zu", (int)req->method_name.n, req->method_name.p,
                (int)req->target.n, req->target.p, req->body.n);
  const px_str_t *h = px_hreq_header(req, "x-test");
  if (h) px_buf_printf(&res->body, " x-test=[%.*s]", (int)h->n, h->p);
  px_hres_header(res, "X-Served", "1");
}

static void on_closed(void *data) {
  env_t *e = data;
  e->closed_cb_ran = 1;
  e->srv = NULL;
  uv_close((uv_handle_t *)&e->cmd, NULL);
}

static void on_cmd(uv_async_t *a) {
  env_t *e = a->data;
  pthread_mutex_lock(&e->lock);
  int drain = e->want_drain, cls = e->want_close;
  e->want_drain = e->want_close = 0;
  pthread_mutex_unlock(&e->lock);
  if (drain && e->srv) px_hsrv_drain(e->srv);
  if (cls && e->srv) px_hsrv_close(e->srv, on_closed, e);
}

static void *loop_main(void *arg) {
  env_t *e = arg;
  uv_run(&e->loop, UV_RUN_DEFAULT);
  e->loop_close_rc = uv_loop_close(&e->loop);
  return NULL;
}

static void start(uint64_t header_ms, uint64_t idle_ms) {
  memset(&env, 0, sizeof(env));
  pthread_mutex_init(&env.lock, NULL);
  cr_assert_eq(uv_loop_init(&env.loop), 0);
  uv_async_init(&env.loop, &env.cmd, on_cmd);
  env.cmd.data = &env;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  px_hsrv_opts_t o = {.max_header_bytes = 4096,
                      .max_body_bytes = 1000,
                      .header_timeout_ms = header_ms,
                      .idle_timeout_ms = idle_ms,
                      .handler = handler,
                      .extra_headers = "X-Extra: yes\r\n"};
  cr_assert_eq(px_hsrv_start(&env.loop, (struct sockaddr *)&a, &o, &env.srv), 0);
  env.port = px_hsrv_port(env.srv);
  cr_assert(env.port > 0);
  pthread_create(&env.thread, NULL, loop_main, &env);
}

static void command(int drain, int cls) {
  pthread_mutex_lock(&env.lock);
  env.want_drain |= drain;
  env.want_close |= cls;
  pthread_mutex_unlock(&env.lock);
  uv_async_send(&env.cmd);
}

static void stop(void) {
  command(0, 1);
  pthread_join(env.thread, NULL);
  cr_expect(env.closed_cb_ran, "close callback did not run");
  cr_expect_eq(env.loop_close_rc, 0, "handles left open: %s", uv_strerror(env.loop_close_rc));
  pthread_mutex_destroy(&env.lock);
}

static int cconnect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)env.port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

static void csend(int fd, const char *s) {
  cr_assert_eq(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* Minimal response reader: head up to CRLFCRLF, then Content-Length bytes. Keeps
 * leftovers in a static buffer (one connection at a time). */
static char rb[8 << 20];
static size_t rlen;

typedef struct {
  int status;
  char head[2048];
  char *body;
  size_t body_len;
} resp_t;

static int read_resp(int fd, resp_t *r) {
  for (;;) {
    char *e = rlen ? memmem(rb, rlen, "\r\n\r\n", 4) : NULL;
    if (e) {
      size_t hl = (size_t)(e - rb) + 4;
      memcpy(r->head, rb, PX_MIN(hl, sizeof(r->head) - 1));
      r->head[PX_MIN(hl, sizeof(r->head) - 1)] = '\0';
      r->status = atoi(rb + 9);
      const char *cl = strcasestr(r->head, "\r\ncontent-length: ");
      size_t n = cl ? strtoul(cl + 18, NULL, 10) : 0;
      while (rlen < hl + n) {
        ssize_t got = recv(fd, rb + rlen, sizeof(rb) - rlen, 0);
        if (got <= 0) return -1;
        rlen += (size_t)got;
      }
      r->body = malloc(n + 1);
      memcpy(r->body, rb + hl, n);
      r->body[n] = '\0';
      r->body_len = n;
      memmove(rb, rb + hl + n, rlen - hl - n);
      rlen -= hl + n;
      return 0;
    }
    ssize_t got = recv(fd, rb + rlen, sizeof(rb) - rlen, 0);
    if (got <= 0) return -1;
    rlen += (size_t)got;
  }
}

/* 1 when the server closes within ms without sending anything more. */
static int sees_eof(int fd, int ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, ms) != 1) return 0;
  char c;
  ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

Test(httpserver, basic_request_and_headers, .timeout = 30) {
  start(0, 0);
  rlen = 0;
  int fd = cconnect();
  csend(fd,
        "POST /echo?q=1 HTTP/1.1\r\nHost: x\r\nX-Test:   padded value  \r\nContent-Length: 5\r\n\r\nhello");
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r.head);
  cr_expect(strstr(r.head, "\r\nX-Served: 1\r\n"), "%s", r.head);
  cr_expect(strstr(r.head, "\r\nX-Extra: yes\r\n"), "%s", r.head);
  cr_expect(strstr(r.head, "\r\nDate: "), "%s", r.head);
  cr_expect_str_eq(r.body, "POST /echo?q=1 body=5 x-test=[padded value]");
  free(r.body);

  csend(fd, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  /* the HEAD answer has a Content-Length but no body: the next bytes are the GET answer */
  char buf[4096];
  size_t have = 0;
  while (!memmem(buf, have, "body=0", 6) || !strstr(buf, "GET /echo body=0")) {
    ssize_t n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
    cr_assert(n > 0);
    have += (size_t)n;
    buf[have] = '\0';
  }
  cr_expect(strncmp(buf, "HTTP/1.1 200 OK", 15) == 0);
  char *second = strstr(buf + 1, "HTTP/1.1 200 OK");
  cr_assert(second, "%s", buf);
  cr_expect(strstr(buf, "\r\n\r\nHTTP/1.1 200 OK") == second - 4, "HEAD answer carried a body: %s", buf);
  close(fd);
  stop();
}

Test(httpserver, pipelined_big_responses_stay_in_order, .timeout = 30) {
  start(0, 0);
  rlen = 0;
  int fd = cconnect();
  /* The first answer is far larger than the socket buffers, so its write stays
   * pending while the next requests wait in the read buffer. */
  csend(fd, "GET /big?n=4000000 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /echo?second HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /big?n=70000 HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /echo?fourth HTTP/1.1\r\nHost: x\r\n\r\n");
  usleep(300 * 1000);
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.body_len, 4000000);
  cr_expect_eq(r.body[3999999], '9');
  free(r.body);
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_str_eq(r.body, "GET /echo?second body=0");
  free(r.body);
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.body_len, 70000);
  free(r.body);
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_str_eq(r.body, "GET /echo?fourth body=0");
  free(r.body);
  close(fd);
  stop();
}

/* Many pipelined requests in one send, each answered at once: all answered, in order
 * (the client connection takes them one after the other in a loop, not by nesting a
 * call per request). */
Test(httpserver, many_pipelined_requests_answered_in_order, .timeout = 30) {
  start(0, 0);
  rlen = 0;
  int fd = cconnect();
  enum { N = 3000 };
  px_buf_t all = {0};
  for (int i = 0; i < N; i++) px_buf_printf(&all, "GET /echo?%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  cr_assert_eq(send(fd, all.data, all.len, MSG_NOSIGNAL), (ssize_t)all.len);
  px_buf_free(&all);
  for (int i = 0; i < N; i++) {
    resp_t r;
    cr_assert_eq(read_resp(fd, &r), 0, "answer %d", i);
    cr_assert_eq(r.status, 200);
    char want[64];
    snprintf(want, sizeof(want), "GET /echo?%d body=0", i);
    cr_assert_str_eq(r.body, want);
    free(r.body);
  }
  close(fd);
  stop();
}

Test(httpserver, header_timeout_is_408, .timeout = 30) {
  start(200, 5000);
  rlen = 0;
  int fd = cconnect();
  csend(fd, "GET /echo HTTP/1.1\r\nHo");
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.status, 408);
  cr_expect(strstr(r.head, "Connection: close"), "%s", r.head);
  cr_expect(strstr(r.body, "\"error\""), "%s", r.body);
  free(r.body);
  cr_expect(sees_eof(fd, 3000));
  close(fd);
  stop();
}

Test(httpserver, idle_timeout_closes_silently, .timeout = 30) {
  start(5000, 200);
  rlen = 0;
  int fd = cconnect();
  cr_expect(sees_eof(fd, 3000), "idle new connection not closed");
  close(fd);
  fd = cconnect();
  csend(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  free(r.body);
  cr_expect(sees_eof(fd, 3000), "idle keep-alive connection not closed");
  close(fd);
  stop();
}

Test(httpserver, limits, .timeout = 30) {
  start(0, 0);
  const char *cases[][2] = {
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", "413"},
      {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "400"},
      {"GET /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "400"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    rlen = 0;
    int fd = cconnect();
    csend(fd, cases[i][0]);
    resp_t r;
    cr_assert_eq(read_resp(fd, &r), 0, "case %zu", i);
    cr_expect_eq(r.status, atoi(cases[i][1]), "case %zu: %d", i, r.status);
    free(r.body);
    cr_expect(sees_eof(fd, 3000));
    close(fd);
  }
  rlen = 0;
  int fd = cconnect();
  char big[6000];
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  big[sizeof(big) - 1] = '\0';
  csend(fd, big);
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.status, 431);
  free(r.body);
  close(fd);
  stop();
}

Test(httpserver, drain_finishes_in_flight_and_closes_idle, .timeout = 30) {
  start(0, 0);
  rlen = 0;
  int idle = cconnect();
  csend(idle, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  resp_t r;
  cr_assert_eq(read_resp(idle, &r), 0);
  free(r.body);
  int busy = cconnect();
  csend(busy, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab");
  usleep(100 * 1000);
  command(1, 0);
  cr_expect(sees_eof(idle, 3000), "idle connection not closed on drain");
  usleep(100 * 1000);
  cr_expect_eq(cconnect(), -1, "still accepting after drain");
  csend(busy, "cd");
  rlen = 0;
  cr_assert_eq(read_resp(busy, &r), 0);
  cr_expect_str_eq(r.body, "POST /echo body=4");
  cr_expect(strstr(r.head, "Connection: close"), "%s", r.head);
  free(r.body);
  cr_expect(sees_eof(busy, 3000));
  close(idle);
  close(busy);
  stop();
}

Test(httpserver, close_with_open_connections, .timeout = 30) {
  start(0, 0);
  int a = cconnect(), b = cconnect();
  csend(b, "GET /echo HTTP/1.1\r\nHo");
  usleep(100 * 1000);
  stop();
  cr_expect(sees_eof(a, 3000));
  cr_expect(sees_eof(b, 3000));
  close(a);
  close(b);
}

Test(httpserver, start_fails_cleanly_on_bound_port, .timeout = 30) {
  start(0, 0);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", env.port, &a);
  px_hsrv_opts_t o = {.handler = handler};
  px_hsrv_t *srv = NULL;
  cr_expect_eq(px_hsrv_start(&loop, (struct sockaddr *)&a, &o, &srv), UV_EADDRINUSE);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_expect_eq(uv_loop_close(&loop), 0);
  stop();
}

Test(httpserver, expect_100_continue, .timeout = 30) {
  start(0, 0);
  rlen = 0;
  int fd = cconnect();
  csend(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  char buf[64];
  const char want[] = "HTTP/1.1 100 Continue\r\n\r\n";
  size_t have = 0;
  while (have < sizeof(want) - 1) {
    ssize_t n = recv(fd, buf + have, sizeof(want) - 1 - have, 0);
    cr_assert(n > 0, "no 100 Continue");
    have += (size_t)n;
  }
  cr_expect(memcmp(buf, want, have) == 0);
  csend(fd, "abcd");
  resp_t r;
  cr_assert_eq(read_resp(fd, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(r.body, "POST /echo body=4");
  free(r.body);
  close(fd);
  stop();
}
