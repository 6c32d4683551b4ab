/* Upstream connections and their pool (proxy/upstream.h), on a real loopback
 * connection: a connection goes back to the pool only when its exchange is over, and
 * never while a write of the request is still pending (the upstream answered before it
 * read all of the request): the next request would go out behind, or inside, the rest
 * of the last one. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "upstream.h"

static px_wctx_t w;
static px_snapshot_t *snap;
static int lfd = -1, lfd2 = -1;
static int connected, written_calls;
static void *connected_owner;
static px_upconn_t *connected_up;
static uv_async_t wake;

static void on_connect(void *owner, px_upconn_t *up, int status) {
  cr_assert_eq(status, 0, "connect: %s", uv_strerror(status));
  connected = 1;
  connected_owner = owner;
  connected_up = up;
}

/* The worker's wake-up, as worker.c does it: later, from the loop. */
static void on_wake(uv_async_t *a) { px_upstream_wake(a->data); }
static void wake_all(px_wctx_t *x) { (void)x, uv_async_send(&wake); }
static void on_read(void *owner, px_upconn_t *up, size_t n) { (void)owner, (void)up, (void)n; }
static void on_eof(void *owner, px_upconn_t *up, int status) { (void)owner, (void)up, (void)status; }
static void on_written(void *owner, px_upconn_t *up, int status) {
  (void)owner, (void)up, (void)status;
  written_calls++;
}
static const px_upconn_cb_t cb = {on_connect, on_read, on_eof, on_written};

/* An upstream that never reads: the kernel completes its connections and buffers what
 * they send until its small receive buffer is full. */
static void setup(void) {
  lfd = socket(AF_INET, SOCK_STREAM, 0);
  cr_assert_geq(lfd, 0);
  int small = 4096;
  setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  cr_assert_eq(listen(lfd, 16), 0);
  socklen_t sl = sizeof(sa);
  getsockname(lfd, (struct sockaddr *)&sa, &sl);
  lfd2 = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa2 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(lfd2, (struct sockaddr *)&sa2, sizeof(sa2)), 0);
  cr_assert_eq(listen(lfd2, 16), 0);
  sl = sizeof(sa2);
  getsockname(lfd2, (struct sockaddr *)&sa2, &sl);
  char yaml[1024];
  snprintf(yaml, sizeof(yaml),
           "listeners:\n"
           "  - { name: out, address: 127.0.0.1:1, routes: [ { name: r, cluster: up } ] }\n"
           "clusters:\n"
           "  - { name: up, endpoints: [127.0.0.1:%d] }\n"
           "  - { name: tight, endpoints: [127.0.0.1:%d], limits: { max_connections: 1, max_pending: 1 } }\n"
           "  - { name: two, endpoints: [127.0.0.1:%d, 127.0.0.1:%d], limits: { max_connections: 1 } }\n",
           ntohs(sa.sin_port), ntohs(sa.sin_port), ntohs(sa.sin_port), ntohs(sa2.sin_port));
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("t.yaml", yaml, strlen(yaml), &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "  %s\n", errs.items[i]);
  px_errlist_free(&errs);
  cr_assert_not_null(cfg);
  snap = px_snapshot_new(cfg, 1, 1, NULL, NULL);
  memset(&w, 0, sizeof(w));
  uv_loop_init(&w.loop);
  px_queue_init(&w.conns);
  px_iobufs_init(&w.bufs);
  w.cur = px_calloc(1, sizeof(*w.cur));
  w.cur->snap = snap;
  w.cur->users = 1;
  uv_async_init(&w.loop, &wake, on_wake);
  wake.data = &w;
  w.wake_all = wake_all;
}

static void teardown(void) {
  px_upstream_close_idle(&w, snap);
  uv_close((uv_handle_t *)&wake, NULL);
  uv_run(&w.loop, UV_RUN_DEFAULT); /* every connection closes */
  cr_expect_eq(uv_loop_close(&w.loop), 0);
  px__wsnap_release(&w, w.cur); /* not retired: the snapshot stays referenced */
  px_snapshot_unref(snap);
  free(w.cur);
  px_iobufs_free(&w.bufs);
  close(lfd);
  close(lfd2);
}

TestSuite(upstream, .init = setup, .fini = teardown, .timeout = 20);

static px_upconn_t *connect_one(px_cluster_t *c) {
  px_upconn_t *up = NULL;
  connected = 0;
  cr_assert_eq(px_upstream_acquire(&w, w.cur, c, 0, &w, &cb, &up, NULL), 0);
  while (!connected) uv_run(&w.loop, UV_RUN_ONCE);
  return up;
}

static int nidle(px_cluster_t *c) { return c->per_worker[0].pools[0].nidle; }

Test(upstream, a_finished_exchange_goes_back_to_the_pool) {
  px_cluster_t *c = &snap->clusters[0];
  px_upconn_t *up = connect_one(c);
  uv_buf_t b = uv_buf_init("GET / HTTP/1.1\r\n\r\n", 18);
  cr_assert_eq(px_upstream_write(up, &b, 1), 1);
  px_upstream_release(up, 1);
  cr_expect_eq(nidle(c), 1);
  px_upconn_t *again = connect_one(c); /* the pooled one, at once */
  cr_expect_eq(again, up);
  cr_expect(again->reused);
  px_upstream_release(again, 1);
}

Test(upstream, a_connection_with_a_write_pending_is_not_pooled) {
  px_cluster_t *c = &snap->clusters[0];
  px_upconn_t *up = connect_one(c);
  static char big[1 << 20];
  memset(big, 'x', sizeof(big));
  int r = 1;
  for (int i = 0; i < 64 && r == 1; i++) { /* until the socket is full */
    uv_buf_t b = uv_buf_init(big, sizeof(big));
    r = px_upstream_write(up, &b, 1);
  }
  cr_assert_eq(r, 0, "the upstream took 64 MiB without reading: the test proves nothing");
  px_upstream_release(up, 1);
  cr_expect_eq(nidle(c), 0, "pooled with a write pending");
  uv_run(&w.loop, UV_RUN_NOWAIT);
  cr_expect_eq(written_calls, 0, "the released owner heard of its write");
  cr_expect_eq(atomic_load(&c->st->connections), 0, "the connection was not closed");
}

/* limits.max_pending: at max_connections a request waits, and takes the connection the
 * first one gives back; past max_pending it is refused at once; a request that ends
 * while it waits leaves the queue. */
Test(upstream, at_max_connections_a_request_waits_for_one) {
  px_cluster_t *c = &snap->clusters[1];
  cr_assert_eq(c->conf->max_connections, 1);
  px_upconn_t *first = connect_one(c);
  int owner_b, owner_d;
  px_upconn_t *b = NULL, *x = NULL;
  px_upwait_t wait_b, wait_c, wait_d;
  connected = 0;
  cr_assert_eq(px_upstream_acquire(&w, w.cur, c, 0, &owner_b, &cb, &b, &wait_b), 0);
  cr_expect_null(b, "no connection yet: it waits");
  cr_expect_eq(connected, 0);
  cr_expect_eq(atomic_load(&c->st->pending), 1);
  cr_expect_eq(px_upstream_acquire(&w, w.cur, c, 0, &w, &cb, &x, &wait_c), PX_EOVERFLOW, "max_pending is 1");
  cr_expect_eq(px_upstream_acquire(&w, w.cur, c, 0, &w, &cb, &x, NULL), PX_EOVERFLOW);
  px_upstream_release(first, 1);
  for (int i = 0; i < 100 && !connected; i++) uv_run(&w.loop, UV_RUN_ONCE);
  cr_assert(connected, "the waiting request never got the connection");
  cr_expect_eq(connected_owner, &owner_b);
  cr_expect_eq(connected_up, first, "the connection given back is the one taken");
  cr_expect_eq(b, first);
  cr_expect_eq(atomic_load(&c->st->pending), 0);

  connected = 0;
  cr_assert_eq(px_upstream_acquire(&w, w.cur, c, 0, &owner_d, &cb, &x, &wait_d), 0);
  cr_expect_eq(atomic_load(&c->st->pending), 1);
  px_upstream_cancel(&w, &wait_d);
  cr_expect_eq(atomic_load(&c->st->pending), 0);
  px_upstream_cancel(&w, &wait_d); /* twice is harmless */
  px_upstream_release(b, 1);
  uv_run(&w.loop, UV_RUN_NOWAIT);
  cr_expect_eq(connected, 0, "a cancelled wait was served");
  cr_expect_eq(c->per_worker[0].pools[0].nidle, 1);
}

/* A slot held by an idle connection to another endpoint is worth less than the
 * request that needs it: the idle one is closed and a new connection made. */
Test(upstream, an_idle_connection_gives_its_slot_to_another_endpoint) {
  px_cluster_t *c = &snap->clusters[2];
  cr_assert_eq(c->neps, 2);
  px_upconn_t *up0 = NULL;
  connected = 0;
  cr_assert_eq(px_upstream_acquire(&w, w.cur, c, 0, &w, &cb, &up0, NULL), 0);
  while (!connected) uv_run(&w.loop, UV_RUN_ONCE);
  px_upstream_release(up0, 1);
  cr_expect_eq(c->per_worker[0].pools[0].nidle, 1);
  px_upconn_t *up1 = NULL;
  connected = 0;
  cr_assert_eq(px_upstream_acquire(&w, w.cur, c, 1, &w, &cb, &up1, NULL), 0,
               "refused although a slot was idle");
  cr_expect_eq(c->per_worker[0].pools[0].nidle, 0, "the idle connection was kept");
  while (!connected) uv_run(&w.loop, UV_RUN_ONCE);
  cr_expect_eq(connected_up, up1);
  cr_expect_eq(up1->ep, 1);
  cr_expect_eq(atomic_load(&c->st->connections), 1);
  px_upstream_release(up1, 1);
}
