/* The etcd gateway client (proxy/etcd_client.h) on a uv loop in the test's thread,
 * against a real 3-member etcd (harness_etcd.h) and, for the answers etcd cannot be made
 * to give on purpose, against canned ones from a small blocking server in a thread.
 *
 * Every loop run is bounded by a guard timer; every test ends by freeing the client and
 * closing the loop, which fails when a handle leaked. */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "etcd_client.h"
#include "etcd_json.h"
#include "harness_etcd.h"
#include "log.h"

static uv_loop_t loop;
static uv_timer_t guard;
static te_cluster_t cl;

static void setup(void) {
  signal(SIGPIPE, SIG_IGN);
  /* The client's warnings are expected here (members down on purpose); TE_DEBUG=1 shows
   * them and every member failure. */
  px_log_setup("test", getenv("TE_DEBUG") ? PX_LOG_DEBUG : PX_LOG_ERROR, 0);
  cr_assert_eq(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &guard);
}

static void teardown(void) { te_stop(&cl); }

typedef struct {
  const int *flag;
  uint64_t deadline;
} guard_t;

static void on_guard(uv_timer_t *t) {
  guard_t *g = t->data;
  if (*g->flag || uv_now(&loop) >= g->deadline) uv_stop(&loop);
}

/* Runs the loop until *flag is set or ms have passed: whether *flag is set. */
static int run_until(const int *flag, int ms) {
  uv_update_time(&loop);
  guard_t g = {flag, uv_now(&loop) + (uint64_t)ms};
  guard.data = &g;
  uv_timer_start(&guard, on_guard, 5, 5);
  while (!*flag && uv_now(&loop) < g.deadline) uv_run(&loop, UV_RUN_DEFAULT);
  uv_timer_stop(&guard);
  return *flag;
}

/* Runs the loop for ms whatever happens (nothing more is expected). */
static void run_for(int ms) {
  static const int never = 0;
  run_until(&never, ms);
}

static void on_freed(void *data) { *(int *)data = 1; }

/* Frees the client, lets libuv close everything, and checks that nothing is left. */
static void finish(px_etcd_t *e) {
  int freed = 0;
  if (e) {
    px_etcd_free(e, on_freed, &freed);
    cr_assert(run_until(&freed, 2000), "the client was not freed");
  }
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(uv_loop_close(&loop), 0, "a handle leaked");
}

static void reinit(void) {
  cr_assert_eq(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &guard);
}

/* ---- unary calls ---------------------------------------------------------------------- */

typedef struct {
  int done, rc, status, runs;
  px_buf_t body;
  int64_t ms; /* from the post to the callback */
  int64_t t0;
} res_t;

static void on_call(void *data, int rc, int status, const char *body, size_t n) {
  res_t *r = data;
  r->runs++;
  r->done = 1;
  r->rc = rc;
  r->status = status;
  r->ms = th_now_ms() - r->t0;
  r->body.len = 0;
  px_buf_append(&r->body, body ? body : "", n);
  px_buf_append(&r->body, "", 1);
  if (rc == 0) cr_expect_eq(body[n], '\0', "the body is NUL-terminated");
  uv_stop(&loop);
}

/* Posts and runs the loop until the answer (at most ms). */
static res_t post_wait(px_etcd_t *e, const char *path, const px_buf_t *body, int ms) {
  res_t r = {0};
  r.t0 = th_now_ms();
  cr_assert_not_null(px_etcd_post(e, path, body->data, body->len, on_call, &r));
  cr_assert(run_until(&r.done, ms), "POST %s: no answer within %d ms", path, ms);
  return r;
}

static void res_free(res_t *r) { px_buf_free(&r->body); }

static px_etcd_t *client(const char *const *urls, size_t n, uint64_t timeout_ms) {
  px_etcd_t *e = px_etcd_new(&loop, urls, n, timeout_ms);
  cr_assert_not_null(e);
  return e;
}

/* A client for the whole cluster. */
static px_etcd_t *cluster_client(uint64_t timeout_ms, char urls[][64]) {
  const char *u[TE_MAX_MEMBERS];
  for (int i = 0; i < cl.n; i++) {
    te_url(&cl, i, urls[i], 64);
    u[i] = urls[i];
  }
  return client(u, (size_t)cl.n, timeout_ms);
}

static void put_body(px_buf_t *b, const char *key, const char *value) {
  b->len = 0;
  px_etcd_put_body(b, key, strlen(key), value, strlen(value), 0);
}

static void range_body(px_buf_t *b, const char *key, int serializable) {
  b->len = 0;
  px_etcd_range_body(b, key, strlen(key), NULL, 0, 0);
  if (serializable) { /* answered by the member alone, leader or not */
    b->len--;
    px_buf_append_cstr(b, ",\"serializable\":true}");
  }
}

/* The value of `key` as a range through e finds it. */
static void expect_value(px_etcd_t *e, const char *key, const char *want) {
  px_buf_t b = {0};
  range_body(&b, key, 0);
  res_t r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  px_etcd_range_t rg;
  cr_assert_eq(px_etcd_parse_range(r.body.data, r.body.len - 1, &rg, NULL), 0, "%s", r.body.data);
  cr_assert_eq(rg.nkvs, 1, "%s", r.body.data);
  cr_expect_eq(rg.kvs[0].value.n, strlen(want));
  cr_expect(memcmp(rg.kvs[0].value.p, want, strlen(want)) == 0);
  px_etcd_range_free(&rg);
  res_free(&r);
  px_buf_free(&b);
}

TestSuite(etcd_client, .init = setup, .fini = teardown);

Test(etcd_client, put_range_grant_and_errors_that_are_answers, .timeout = 30) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  px_etcd_t *e = cluster_client(2000, urls);
  px_buf_t b = {0};

  put_body(&b, "/t/k", "v1");
  res_t r = post_wait(e, "/v3/kv/put", &b, 5000);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.status, 200, "%s", r.body.data);
  int64_t rev = 0;
  cr_expect_eq(px_etcd_parse_header(r.body.data, r.body.len - 1, &rev, NULL), 0);
  cr_expect_gt(rev, 1);
  cr_expect_str_eq(px_etcd_member(e), urls[0]);
  res_free(&r);
  expect_value(e, "/t/k", "v1");

  /* With --election-timeout 500 etcd grants leases as short as 1 s (harness_etcd.h). */
  b.len = 0;
  px_etcd_lease_grant_body(&b, 1);
  r = post_wait(e, "/v3/lease/grant", &b, 5000);
  cr_assert_eq(r.rc, 0);
  int64_t id = 0, ttl = 0;
  cr_assert_eq(px_etcd_parse_lease_grant(r.body.data, r.body.len - 1, &id, &ttl, NULL), 0, "%s", r.body.data);
  cr_expect_neq(id, 0);
  cr_expect_eq(ttl, 1, "granted TTL %lld", (long long)ttl);
  res_free(&r);

  /* A request etcd refuses is an answer, not a member failing: 400 with its error. */
  b.len = 0;
  px_buf_append_cstr(&b, "{\"key\":\"not base64!\"}");
  r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_assert_eq(r.rc, 0);
  cr_expect_eq(r.status, 400, "%d %s", r.status, r.body.data);
  px_etcd_error_t err;
  cr_expect_eq(px_etcd_parse_header(r.body.data, r.body.len - 1, NULL, &err), PX_EUPSTREAM);
  cr_expect_eq(err.code, PX_ETCD_CODE_INVALID_ARGUMENT, "%s", r.body.data);
  res_free(&r);

  /* A path the gateway does not have: a text 404 from every member. */
  b.len = 0;
  px_buf_append_cstr(&b, "{}");
  r = post_wait(e, "/v3/kv/nosuch", &b, 5000);
  cr_expect_eq(r.rc, PX_EUPSTREAM);
  cr_expect_eq(r.status, 0);
  cr_expect_lt(r.ms, 1000);
  res_free(&r);

  px_buf_free(&b);
  finish(e);
}

Test(etcd_client, a_killed_member_fails_over_at_once_and_the_next_one_sticks, .timeout = 30) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  px_etcd_t *e = cluster_client(2000, urls);
  px_buf_t b = {0};
  put_body(&b, "/t/k", "before");
  res_t r = post_wait(e, "/v3/kv/put", &b, 5000);
  cr_assert_eq(r.rc, 0);
  cr_assert_str_eq(px_etcd_member(e), urls[0]);
  res_free(&r);

  /* The client holds a kept connection to member 0; the member goes away under it. */
  te_kill(&cl, 0, SIGKILL);
  range_body(&b, "/t/k", 1);
  r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_assert_eq(r.rc, 0, "%s", px_strerror(r.rc));
  cr_expect_eq(r.status, 200);
  cr_expect_lt(r.ms, 500, "failover took %lld ms", (long long)r.ms);
  cr_expect_str_eq(px_etcd_member(e), urls[1]);
  res_free(&r);

  /* Writes go on once the two left have a leader; they stay on member 1. */
  cr_assert_eq(te_wait_healthy(&cl), 0);
  put_body(&b, "/t/k", "after");
  r = post_wait(e, "/v3/kv/put", &b, 5000);
  cr_assert_eq(r.rc, 0, "%s", px_strerror(r.rc));
  cr_expect_lt(r.ms, 500);
  res_free(&r);
  expect_value(e, "/t/k", "after");
  cr_expect_str_eq(px_etcd_member(e), urls[1]);

  /* Member 0 comes back with its data and catches up. */
  cr_assert_eq(te_restart(&cl, 0), 0);
  const char *only0[] = {urls[0]};
  px_etcd_t *e0 = client(only0, 1, 2000);
  expect_value(e0, "/t/k", "after");
  px_etcd_free(e0, NULL, NULL);
  px_buf_free(&b);
  finish(e);
}

Test(etcd_client, a_member_that_never_answers_fails_over_after_the_timeout, .timeout = 30) {
  te_start(&cl, 3);
  int silent_port, silent = th_listen(0, 16, &silent_port); /* accepts (the kernel does), never reads */
  cr_assert(silent >= 0);
  char su[64], u0[64];
  snprintf(su, sizeof(su), "http://127.0.0.1:%d", silent_port);
  te_url(&cl, 0, u0, sizeof(u0));
  const char *urls[] = {su, u0};
  px_etcd_t *e = client(urls, 2, 300);
  px_buf_t b = {0};
  range_body(&b, "/t/none", 0);
  res_t r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_assert_eq(r.rc, 0, "%s", px_strerror(r.rc));
  cr_expect_geq(r.ms, 290, "failed over after %lld ms", (long long)r.ms);
  cr_expect_lt(r.ms, 1000, "failed over after %lld ms", (long long)r.ms);
  cr_expect_str_eq(px_etcd_member(e), u0);
  res_free(&r);
  /* The member that answered is tried first from now on. */
  r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_assert_eq(r.rc, 0);
  cr_expect_lt(r.ms, 250, "took %lld ms", (long long)r.ms);
  res_free(&r);
  px_buf_free(&b);
  finish(e);
  close(silent);
}

Test(etcd_client, every_member_down_fails_within_n_timeouts, .timeout = 30) {
  int p1, p2, s1 = th_listen(0, 16, &p1), s2 = th_listen(0, 16, &p2);
  cr_assert(s1 >= 0 && s2 >= 0);
  char refused[64], silent1[64], silent2[64];
  snprintf(refused, sizeof(refused), "http://127.0.0.1:%d", th_free_port());
  snprintf(silent1, sizeof(silent1), "http://127.0.0.1:%d", p1);
  snprintf(silent2, sizeof(silent2), "http://localhost:%d/", p2);
  const char *urls[] = {refused, silent1, silent2};
  px_etcd_t *e = client(urls, 3, 250);
  px_buf_t b = {0};
  range_body(&b, "/t/k", 0);
  res_t r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_expect_eq(r.rc, PX_ETIMEOUT, "%s", px_strerror(r.rc));
  cr_expect_eq(r.status, 0);
  cr_expect_geq(r.ms, 490, "%lld ms", (long long)r.ms);
  cr_expect_lt(r.ms, 3 * 250 + 400, "%lld ms", (long long)r.ms);
  cr_expect_str_eq(px_etcd_member(e), "");
  res_free(&r);
  finish(e);

  /* Refused everywhere: at once, and not a timeout. */
  reinit();
  const char *down[] = {refused, refused};
  e = client(down, 2, 5000);
  r = post_wait(e, "/v3/kv/range", &b, 5000);
  cr_expect_eq(r.rc, PX_EUPSTREAM, "%s", px_strerror(r.rc));
  cr_expect_lt(r.ms, 500);
  res_free(&r);
  px_buf_free(&b);
  finish(e);
  close(s1);
  close(s2);
}

/* ---- watches ---------------------------------------------------------------------------- */

typedef struct {
  px_etcd_t *e;
  px_etcd_watch_t *w;
  int created, events, ended, end_rc, errors, msgs;
  int error_code;
  char last_key[64], last_value[64];
  int canceled;
  int64_t compact_revision;
  int close_on_event; /* px_etcd_watch_close from inside on_msg, on the first event */
  int put_on_created; /* post a put from inside on_msg, on "created" */
  res_t put;
  px_buf_t body;
} wst_t;

static void on_msg(void *data, const char *msg, size_t n) {
  wst_t *s = data;
  s->msgs++;
  px_etcd_watch_msg_t m;
  px_etcd_error_t err;
  int rc = px_etcd_parse_watch(msg, n, &m, &err);
  if (rc == PX_EUPSTREAM) {
    s->errors++;
    s->error_code = err.code;
    if (getenv("TE_DEBUG")) fprintf(stderr, "watch error message: %.*s\n", (int)n, msg);
  } else {
    cr_assert_eq(rc, 0, "%.*s", (int)n, msg);
  }
  if (m.created) {
    s->created++;
    if (s->put_on_created) {
      put_body(&s->body, "/w/a", "1");
      s->put.t0 = th_now_ms();
      cr_assert_not_null(px_etcd_post(s->e, "/v3/kv/put", s->body.data, s->body.len, on_call, &s->put));
    }
  }
  if (m.canceled) {
    s->canceled++;
    s->compact_revision = m.compact_revision;
  }
  for (size_t i = 0; i < m.nevents; i++) {
    s->events++;
    snprintf(s->last_key, sizeof(s->last_key), "%.*s", (int)m.events[i].kv.key.n, m.events[i].kv.key.p);
    snprintf(s->last_value, sizeof(s->last_value), "%.*s", (int)m.events[i].kv.value.n,
             m.events[i].kv.value.p);
  }
  if (m.nevents && s->close_on_event) {
    px_etcd_watch_close(s->w);
    s->w = NULL;
  }
  px_etcd_watch_msg_free(&m);
  uv_stop(&loop);
}

static void on_end(void *data, int rc) {
  wst_t *s = data;
  s->ended++;
  s->end_rc = rc;
  s->w = NULL;
  uv_stop(&loop);
}

static px_etcd_watch_t *watch_prefix(px_etcd_t *e, const char *prefix, wst_t *s) {
  px_buf_t b = {0}, end = {0};
  size_t n = strlen(prefix);
  px_buf_append(&end, prefix, n);
  end.data[n - 1]++;
  px_etcd_watch_create_body(&b, prefix, n, end.data, n, 0);
  s->e = e;
  s->w = px_etcd_watch(e, b.data, b.len, on_msg, on_end, s);
  cr_assert_not_null(s->w);
  px_buf_free(&b);
  px_buf_free(&end);
  return s->w;
}

Test(etcd_client, a_watch_gets_created_then_the_events, .timeout = 30) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  px_etcd_t *e = cluster_client(2000, urls);
  wst_t s = {0};
  s.put_on_created = 1; /* the put is posted from inside the watch's callback */
  s.close_on_event = 1; /* and the watch closed from inside its own */
  watch_prefix(e, "/w/", &s);
  cr_assert(run_until(&s.created, 5000), "no created message");
  cr_expect(px_etcd_watch_up(s.w));
  cr_assert(run_until(&s.events, 5000), "no event");
  cr_expect_str_eq(s.last_key, "/w/a");
  cr_expect_str_eq(s.last_value, "1");
  cr_assert(run_until(&s.put.done, 5000));
  cr_expect_eq(s.put.rc, 0);
  cr_expect_null(s.w, "closed");
  /* Closed: a later put reaches no callback. */
  cr_assert_eq(te_put(&cl, "/w/b", "2"), 0);
  run_for(200);
  cr_expect_eq(s.events, 1);
  cr_expect_eq(s.ended, 0, "on_end ran after px_etcd_watch_close");

  /* From a compacted revision: one canceled message, and the stream stays open. */
  int64_t rev = te_revision(&cl);
  cr_assert_gt(rev, 1);
  cr_assert_eq(te_compact(&cl, rev), 0);
  wst_t s2 = {0};
  px_buf_t b = {0};
  px_etcd_watch_create_body(&b, "/w/", 3, "/w0", 3, 1);
  s2.e = e;
  s2.w = px_etcd_watch(e, b.data, b.len, on_msg, on_end, &s2);
  cr_assert(run_until(&s2.canceled, 5000), "no cancel");
  cr_expect_eq(s2.compact_revision, rev);
  run_for(200);
  cr_expect_eq(s2.ended, 0);
  px_etcd_watch_close(s2.w);
  px_buf_free(&b);
  res_free(&s.put);
  px_buf_free(&s.body);
  finish(e);
}

typedef struct {
  wst_t first, second;
  char want_member[64];
} rewatch_t;

static void on_end_rewatch(void *data, int rc) {
  rewatch_t *rw = data;
  rw->first.ended++;
  rw->first.end_rc = rc;
  rw->first.w = NULL;
  /* A new watch from inside on_end. */
  watch_prefix(rw->first.e, "/w/", &rw->second);
  uv_stop(&loop);
}

Test(etcd_client, killing_the_watchs_member_ends_it_and_a_new_one_goes_elsewhere, .timeout = 40) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  px_etcd_t *e = cluster_client(1000, urls);
  rewatch_t rw = {0};
  px_buf_t b = {0}, end = {0};
  px_etcd_watch_create_body(&b, "/w/", 3, "/w0", 3, 0);
  rw.first.e = e;
  rw.first.w = px_etcd_watch(e, b.data, b.len, on_msg, on_end_rewatch, &rw);
  cr_assert_not_null(rw.first.w);
  cr_assert(run_until(&rw.first.created, 5000));
  cr_expect_str_eq(px_etcd_member(e), urls[0]);

  int64_t t0 = th_now_ms();
  te_kill(&cl, 0, SIGKILL);
  cr_assert(run_until(&rw.first.ended, 3000), "on_end did not run");
  cr_expect_lt(th_now_ms() - t0, 1000);
  cr_expect_lt(rw.first.end_rc, 0);
  cr_expect_neq(rw.first.end_rc, PX_ETIMEOUT, "%s", px_strerror(rw.first.end_rc));
  cr_assert(run_until(&rw.second.created, 5000), "the new watch did not start");
  cr_expect_str_eq(px_etcd_member(e), urls[1]);
  /* A write sent while the two left elect a leader can hang for etcd's whole request
   * timeout (5 s and more): wait for the leader first. */
  cr_assert_eq(te_wait_healthy(&cl), 0);
  cr_assert_eq(te_put(&cl, "/w/x", "y"), 0);
  cr_assert(run_until(&rw.second.events, 5000), "no event on the new watch");
  cr_expect_str_eq(rw.second.last_key, "/w/x");

  /* A member stopped gracefully says so in the stream, then ends it. */
  kill(cl.pid[1], SIGTERM); /* not waiting: the rest of its stop takes seconds */
  cr_assert(run_until(&rw.second.ended, 5000), "on_end did not run");
  te_kill(&cl, 1, SIGKILL);
  cr_expect_eq(rw.second.errors, 1);
  /* 14 "transport is closing" or 1 "grpc: the client connection is closing", as it goes. */
  cr_expect(rw.second.error_code == PX_ETCD_CODE_UNAVAILABLE || rw.second.error_code == 1, "code %d",
            rw.second.error_code);
  cr_expect_eq(rw.second.end_rc, PX_EUPSTREAM, "%s", px_strerror(rw.second.end_rc));
  cr_expect_eq(rw.first.ended, 1);
  px_buf_free(&b);
  px_buf_free(&end);
  finish(e);
}

/* ---- callbacks that call back in ------------------------------------------------------------ */

typedef struct {
  px_etcd_t *e, *slow_e;
  px_etcd_watch_t *w1, *w2;
  px_etcd_call_t *a, *slow, *c, *d;
  res_t ra, rslow, rc, rd, rw2;
  int w1_msgs, w1_ended, w2_msgs, w2_ended;
  px_buf_t body;
} reenter_t;

static reenter_t re;

static void on_w2_msg(void *data, const char *msg, size_t n) { re.w2_msgs++; }
static void on_w2_end(void *data, int rc) { re.w2_ended++; }
static void on_w1_end(void *data, int rc) { re.w1_ended++; }

static void on_a(void *data, int rc, int status, const char *body, size_t n) {
  on_call(&re.ra, rc, status, body, n);
  px_etcd_cancel(re.a); /* its own: nothing */
  re.c = px_etcd_post(re.e, "/v3/kv/range", re.body.data, re.body.len, on_call, &re.rc);
  px_etcd_cancel(re.c); /* at once: never runs */
  re.w2 = px_etcd_watch(re.e, "{}", 2, on_w2_msg, on_w2_end, NULL);
  px_etcd_watch_close(re.w2);
  re.rd.t0 = th_now_ms();
  re.d = px_etcd_post(re.e, "/v3/kv/range", re.body.data, re.body.len, on_call, &re.rd);
}

static void on_w1_msg(void *data, const char *msg, size_t n) {
  re.w1_msgs++;
  px_etcd_cancel(re.slow); /* another client's call, in flight */
  re.ra.t0 = th_now_ms();
  re.a = px_etcd_post(re.e, "/v3/kv/range", re.body.data, re.body.len, on_a, NULL);
  px_etcd_watch_close(re.w1); /* its own watch */
}

/* Two calls on one client: the first answered cancels the other. */
static px_etcd_call_t *race[2];
static res_t race_res[2];
static void on_race(void *data, int rc, int status, const char *body, size_t n) {
  int i = (int)(intptr_t)data;
  on_call(&race_res[i], rc, status, body, n);
  px_etcd_cancel(race[1 - i]);
}

Test(etcd_client, cancel_and_close_from_inside_callbacks, .timeout = 30) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  re.e = cluster_client(2000, urls);
  int sp, silent = th_listen(0, 16, &sp);
  char su[64];
  snprintf(su, sizeof(su), "http://127.0.0.1:%d", sp);
  const char *slow_urls[] = {su};
  re.slow_e = client(slow_urls, 1, 10000);
  range_body(&re.body, "/t/k", 0);
  re.slow = px_etcd_post(re.slow_e, "/v3/kv/range", re.body.data, re.body.len, on_call, &re.rslow);
  px_buf_t b = {0};
  px_etcd_watch_create_body(&b, "/w/", 3, "/w0", 3, 0);
  re.w1 = px_etcd_watch(re.e, b.data, b.len, on_w1_msg, on_w1_end, NULL);
  cr_assert(run_until(&re.rd.done, 5000), "the last call did not finish");
  cr_expect_eq(re.rd.rc, 0);
  cr_expect_eq(re.ra.runs, 1);
  run_for(300); /* nothing else may run */
  cr_expect_eq(re.w1_msgs, 1);
  cr_expect_eq(re.w1_ended, 0);
  cr_expect_eq(re.rslow.runs, 0, "a cancelled call's callback ran");
  cr_expect_eq(re.rc.runs, 0, "a cancelled call's callback ran");
  cr_expect_eq(re.w2_msgs + re.w2_ended, 0, "a closed watch's callback ran");
  cr_expect_eq(re.ra.runs, 1);
  cr_expect_eq(re.rd.runs, 1);

  for (int i = 0; i < 2; i++) {
    race_res[i].t0 = th_now_ms();
    race[i] = px_etcd_post(re.e, "/v3/kv/range", re.body.data, re.body.len, on_race, (void *)(intptr_t)i);
  }
  int either = 0;
  for (int k = 0; k < 400 && !either; k++) {
    run_for(10);
    either = race_res[0].done || race_res[1].done;
  }
  cr_assert(either);
  run_for(300);
  cr_expect_eq(race_res[0].runs + race_res[1].runs, 1, "the cancelled one ran too");

  px_buf_free(&b);
  px_buf_free(&re.body);
  res_free(&re.ra);
  res_free(&re.rd);
  res_free(&race_res[0]);
  res_free(&race_res[1]);
  int freed = 0;
  px_etcd_free(re.slow_e, on_freed, &freed);
  cr_assert(run_until(&freed, 2000));
  finish(re.e);
  close(silent);
}

/* ---- freeing with work in flight ------------------------------------------------------------- */

static int stray;     /* callbacks that ran after px_etcd_free */
static int free_done; /* px_etcd_free's done ran */
static px_etcd_t *to_free;
static void on_stray_call(void *data, int rc, int status, const char *body, size_t n) { stray++; }
static void on_stray_msg(void *data, const char *msg, size_t n) { stray++; }
static void on_stray_end(void *data, int rc) { stray++; }

static void start_work(px_etcd_t *e) {
  px_buf_t b = {0};
  range_body(&b, "/t/k", 0);
  for (int i = 0; i < 5; i++) px_etcd_post(e, "/v3/kv/range", b.data, b.len, on_stray_call, NULL);
  put_body(&b, "/t/k", "v");
  px_etcd_post(e, "/v3/kv/put", b.data, b.len, on_stray_call, NULL);
  b.len = 0;
  px_etcd_watch_create_body(&b, "/t/", 3, "/t0", 3, 0);
  px_etcd_watch(e, b.data, b.len, on_stray_msg, on_stray_end, NULL);
  px_buf_free(&b);
}

/* From inside a watch message: more work, then the client freed under it. */
static void on_msg_then_free(void *data, const char *msg, size_t n) {
  start_work(to_free);
  px_etcd_free(to_free, on_freed, &free_done);
  cr_expect_null(px_etcd_post(to_free, "/v3/kv/range", "{}", 2, on_stray_call, NULL), "a post after free");
  px_etcd_free(to_free, NULL, NULL); /* twice: nothing */
}

/* From inside a call's callback. */
static void on_call_then_free(void *data, int rc, int status, const char *body, size_t n) {
  (*(int *)data)++;
  start_work(to_free);
  px_etcd_free(to_free, on_freed, &free_done);
}

Test(etcd_client, free_with_calls_and_watches_in_flight, .timeout = 30) {
  te_start(&cl, 3);
  char urls[TE_MAX_MEMBERS][64];
  int sp, silent = th_listen(0, 16, &sp);
  char su[64];
  snprintf(su, sizeof(su), "http://127.0.0.1:%d", sp);

  /* At once, before the loop ran. */
  px_etcd_t *e = cluster_client(2000, urls);
  start_work(e);
  free_done = 0;
  px_etcd_free(e, on_freed, &free_done);
  cr_assert(run_until(&free_done, 2000));

  /* With connections up, a silent member among them. */
  const char *mixed[] = {su, urls[0]}; /* every call starts on the silent one */
  e = client(mixed, 2, 5000);
  start_work(e);
  run_for(100);
  free_done = 0;
  px_etcd_free(e, on_freed, &free_done);
  cr_assert(run_until(&free_done, 2000));

  /* From inside a watch's on_msg. */
  to_free = cluster_client(2000, urls);
  px_buf_t b = {0};
  px_etcd_watch_create_body(&b, "/t/", 3, "/t0", 3, 0);
  free_done = 0;
  px_etcd_watch(to_free, b.data, b.len, on_msg_then_free, on_stray_end, NULL);
  cr_assert(run_until(&free_done, 5000));

  /* From inside a call's callback. */
  to_free = cluster_client(2000, urls);
  range_body(&b, "/t/k", 0);
  int ran = 0;
  free_done = 0;
  px_etcd_post(to_free, "/v3/kv/range", b.data, b.len, on_call_then_free, &ran);
  cr_assert(run_until(&free_done, 5000));
  cr_expect_eq(ran, 1);

  run_for(200);
  cr_expect_eq(stray, 0, "a callback ran after px_etcd_free");
  px_buf_free(&b);
  finish(NULL);
  close(silent);
}

/* ---- canned answers -------------------------------------------------------------------------- */

/* A blocking HTTP/1.1 server in a thread that gives every request the same answer. */
typedef struct {
  int lfd, port;
  char *resp;
  size_t resp_len;
  int keep;        /* keep the connection for more requests */
  int close_after; /* with keep: close after this many requests on one connection */
  int close_delay; /* ms to wait before that close */
  atomic_int accepted, requests, stop;
  pthread_t th;
} fake_t;

/* Reads one request (head and Content-Length body): 0, or -1 at EOF, error or stop. */
static int fake_read_request(fake_t *f, int fd) {
  char buf[8192];
  size_t got = 0;
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (atomic_load(&f->stop)) return -1;
    if (poll(&p, 1, 20) <= 0) continue;
    ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
    if (n <= 0) return -1;
    got += (size_t)n;
    buf[got] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
      if (got == sizeof(buf) - 1) return -1;
      continue;
    }
    const char *clen = strcasestr(buf, "content-length:");
    size_t want = (size_t)(end + 4 - buf) + (clen ? strtoul(clen + 15, NULL, 10) : 0);
    if (got >= want) return 0; /* one request at a time: nothing is pipelined here */
  }
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  while (!atomic_load(&f->stop)) {
    struct pollfd p = {f->lfd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) continue;
    atomic_fetch_add(&f->accepted, 1);
    for (int n = 1; fake_read_request(f, fd) == 0; n++) {
      atomic_fetch_add(&f->requests, 1);
      if (th_send_all(fd, f->resp, f->resp_len) != 0) break;
      if (!f->keep) break;
      if (f->close_after && n == f->close_after) {
        usleep((useconds_t)f->close_delay * 1000);
        break;
      }
    }
    close(fd);
  }
  return NULL;
}

static fake_t *fake_start(const char *resp, size_t len) {
  fake_t *f = calloc(1, sizeof(*f));
  f->lfd = th_listen(0, 16, &f->port);
  cr_assert(f->lfd >= 0);
  f->resp = malloc(len);
  memcpy(f->resp, resp, len);
  f->resp_len = len;
  return f;
}

static void fake_run(fake_t *f) { cr_assert_eq(pthread_create(&f->th, NULL, fake_main, f), 0); }

static void fake_stop(fake_t *f) {
  atomic_store(&f->stop, 1);
  pthread_join(f->th, NULL);
  close(f->lfd);
  free(f->resp);
  free(f);
}

static void fake_url(const fake_t *f, char *out, size_t n) {
  snprintf(out, n, "http://127.0.0.1:%d", f->port);
}

#define OK_ANSWER "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

Test(etcd_client, keeps_one_connection_and_survives_etcd_closing_it, .timeout = 30) {
  fake_t *f = fake_start(OK_ANSWER, strlen(OK_ANSWER));
  f->keep = 1;
  f->close_after = 2;
  f->close_delay = 50;
  fake_run(f);
  char u[64];
  fake_url(f, u, sizeof(u));
  const char *urls[] = {u};
  px_etcd_t *e = client(urls, 1, 2000);
  px_buf_t b = {0};
  px_buf_append_cstr(&b, "{}");
  for (int i = 0; i < 2; i++) {
    res_t r = post_wait(e, "/v3/kv/range", &b, 3000);
    cr_assert_eq(r.rc, 0);
    cr_expect_str_eq(r.body.data, "{}");
    res_free(&r);
  }
  cr_expect_eq(atomic_load(&f->accepted), 1, "the connection was not kept");
  /* The server closes the kept connection while the loop does not run: the next call
   * finds it dead on use and tries once more on a fresh one; with one member, that is
   * not the member failing. */
  usleep(200 * 1000);
  res_t r = post_wait(e, "/v3/kv/range", &b, 3000);
  cr_expect_eq(r.rc, 0, "%s", px_strerror(r.rc));
  cr_expect_eq(atomic_load(&f->accepted), 2);
  cr_expect_eq(atomic_load(&f->requests), 3);
  res_free(&r);
  px_buf_free(&b);
  finish(e);
  fake_stop(f);
}

typedef struct {
  const char *name;
  const char *status_line; /* with body: the answer is these with a Content-Length */
  const char *body;
  const char *raw; /* or this, as it is; neither: built by the test */
  int taken;       /* 1: the caller gets member A's answer; 0: B answers instead */
  int status;      /* with taken */
} case_t;

Test(etcd_client, judges_each_answer_for_its_member, .timeout = 60) {
  static const char ok_b[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{\"b\"}";
  const case_t cases[] = {
      {.name = "200 with Content-Length", .raw = OK_ANSWER, .taken = 1, .status = 200},
      {.name = "200 chunked with a trailer",
       .raw = "HTTP/1.1 200 OK\r\nTrailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"
              "1\r\n{\r\n1\r\n}\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n",
       .taken = 1,
       .status = 200},
      {.name = "200 read to the close",
       .raw = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",
       .taken = 1,
       .status = 200},
      {.name = "400 etcd error",
       .status_line = "HTTP/1.1 400 Bad Request",
       .body = "{\"error\":\"x\",\"message\":\"bad key\",\"code\":3}",
       .taken = 1,
       .status = 400},
      {.name = "404 stream-style etcd error",
       .status_line = "HTTP/1.1 404 Not Found",
       .body =
           "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"etcdserver: requested lease not found\"}}",
       .taken = 1,
       .status = 404},
      {.name = "404 text", .status_line = "HTTP/1.1 404 Not Found", .body = "Not Found"},
      {.name = "503", .status_line = "HTTP/1.1 503 Service Unavailable", .body = "{}"},
      {.name = "502", .status_line = "HTTP/1.1 502 Bad Gateway", .body = ""},
      {.name = "504", .status_line = "HTTP/1.1 504 Gateway Timeout", .body = "{\"error\":\"x\",\"code\":3}"},
      {.name = "500 context deadline exceeded",
       .status_line = "HTTP/1.1 500 Internal Server Error",
       .body =
           "{\"error\":\"context deadline exceeded\",\"message\":\"context deadline exceeded\",\"code\":2}"},
      {.name = "500 request timed out",
       .status_line = "HTTP/1.1 500 Internal Server Error",
       .body = "{\"error\":\"etcdserver: request timed out\",\"code\":4}"},
      {.name = "200 no leader in the stream",
       .status_line = "HTTP/1.1 200 OK",
       .body = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"etcdserver: no leader\"}}"},
      {.name = "408 a stopping member's cancel",
       .status_line = "HTTP/1.1 408 Request Timeout",
       .body = "{\"error\":\"grpc: the client connection is closing\",\"code\":1}"},
      {.name = "500 code 14",
       .status_line = "HTTP/1.1 500 Internal Server Error",
       .body = "{\"error\":\"gone\",\"code\":14}"},
      {.name = "500 not JSON", .status_line = "HTTP/1.1 500 Internal Server Error", .body = "oops"},
      {.name = "redirect",
       .raw = "HTTP/1.1 307 Temporary Redirect\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"},
      {.name = "interim answer",
       .raw = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"},
      {.name = "malformed status line", .raw = "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}"},
      {.name = "cut short", .raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"},
      {.name = "head over 16 KiB"},
      {.name = "body over 4 MiB"},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    const case_t *k = &cases[i];
    px_buf_t ans = {0};
    if (k->raw) {
      px_buf_append_cstr(&ans, k->raw);
    } else if (k->status_line) {
      px_buf_printf(&ans, "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                    k->status_line, strlen(k->body), k->body);
    } else if (strstr(k->name, "head")) {
      px_buf_append_cstr(&ans, "HTTP/1.1 200 OK\r\nX-Big: ");
      for (int j = 0; j < 17 * 1024; j++) px_buf_append(&ans, "a", 1);
      px_buf_append_cstr(&ans, "\r\nContent-Length: 2\r\n\r\n{}");
    } else {
      size_t n = PX_ETCD_MAX_BODY + 1;
      px_buf_printf(&ans, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);
      memset(px_buf_reserve(&ans, n), ' ', n);
      ans.len += n;
    }
    fake_t *a = fake_start(ans.data, ans.len), *bsrv = fake_start(ok_b, sizeof(ok_b) - 1);
    px_buf_free(&ans);
    fake_run(a);
    fake_run(bsrv);
    char ua[64], ub[64];
    fake_url(a, ua, sizeof(ua));
    fake_url(bsrv, ub, sizeof(ub));
    if (i > 0) reinit(); /* the suite's setup made the first loop */
    const char *urls[] = {ua, ub};
    px_etcd_t *e = client(urls, 2, 2000);
    px_buf_t b = {0};
    px_buf_append_cstr(&b, "{}");
    res_t r = post_wait(e, "/v3/kv/range", &b, 5000);
    cr_expect_eq(r.rc, 0, "%s: %s", k->name, px_strerror(r.rc));
    cr_expect_eq(atomic_load(&a->requests), 1, "%s", k->name);
    if (k->taken) {
      cr_expect_eq(r.status, k->status, "%s: status %d", k->name, r.status);
      cr_expect_eq(atomic_load(&bsrv->requests), 0, "%s: failed over", k->name);
      cr_expect_str_eq(px_etcd_member(e), ua, "%s", k->name);
    } else {
      cr_expect_eq(atomic_load(&bsrv->requests), 1, "%s: did not fail over", k->name);
      cr_expect_str_eq(r.body.data, "{\"b\"}", "%s", k->name);
      cr_expect_str_eq(px_etcd_member(e), ub, "%s", k->name);
    }
    res_free(&r);
    px_buf_free(&b);
    finish(e);
    fake_stop(a);
    fake_stop(bsrv);
  }
}
