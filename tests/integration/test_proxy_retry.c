/* Retries through the real binary (SPEC §5), against fake upstreams that fail on
 * purpose in a scripted order: what is retried and what is not, how many tries and on
 * which connection, how long the wait is, what the client gets when every try fails,
 * the Idempotency-Key that makes a POST safe to send twice, and the budget that keeps a
 * dead cluster from a retry storm. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_proxy.h"

#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
#define R200 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static fu_t *script(const char *const *s, int n) {
  return fu_start(&(fu_opts_t){.mode = FU_SCRIPT, .script = s, .nscript = n});
}
#define SCRIPT(...)                                                                                          \
  script((const char *const[]){__VA_ARGS__}, sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))

/* One route to the fake upstream with this retry policy (flow YAML, without braces). */
static void start(tp_t *p, fu_t *u, const char *retry) {
  char extra[512];
  snprintf(extra, sizeof(extra), ", timeout: 5s, retry: { %s }", retry);
  tp_start_simple(p, NULL, extra, tp_ep(u), NULL);
}

static int get(tp_t *p, const char *method, const char *headers, const char *body, th_resp_t *r) {
  return th_http(p->port, method, "/x", headers, body, r);
}

Test(retry, gateway_errors_are_retried_until_an_answer, .timeout = 30) {
  fu_t *u = SCRIPT(R503, R503, R200);
  tp_t p;
  start(&p, u, "attempts: 3, on: [gateway-error], backoff: { base: 5ms, max: 20ms }");
  int fd = th_connect(p.port);
  const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  th_resp_t r;
  cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(r.body, "ok");
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "3");
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 3);
  char v[64];
  for (int i = 0; i < 3; i++) {
    char want[16];
    snprintf(want, sizeof(want), "%d", i + 1);
    cr_expect_str_eq(tp_req_header(fu_head(u, i), "x-outrigger-attempt", v, sizeof(v)), want, "try %d", i);
  }
  /* The failed answers came whole and were dropped: the connection they came on is
   * reused, and nothing of them leaks into the next request's answer. */
  cr_expect_eq(fu_connections(u), 1, "a failed answer cost its connection");
  cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(r.body, "ok");
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "1");
  th_resp_free(&r);
  th_close(fd);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, exhausted_tries_give_the_last_answer, .timeout = 30) {
  fu_t *u = SCRIPT(R503, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\nx-which: 2\r\n\r\ntwo",
                   "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nx-which: 3\r\n\r\nlast");
  tp_t p;
  start(&p, u, "attempts: 3, on: [5xx], backoff: { base: 5ms, max: 20ms }");
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 500);
  cr_expect_str_eq(r.body, "last");
  cr_expect_str_eq(th_header(&r, "x-which"), "3");
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "3");
  cr_expect_null(th_header(&r, "x-outrigger-error"), "the upstream's answer, not the sidecar's");
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 3);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, retriable_status_retries_only_the_listed_codes, .timeout = 30) {
  fu_t *u = SCRIPT("HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n", R503, R200);
  tp_t p;
  start(&p, u, "attempts: 3, on: [retriable-status], status: [409], backoff: { base: 5ms, max: 20ms }");
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 503, "409 is listed and went again; 503 is not and reached the client");
  cr_expect_str_eq(r.body, "busy");
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "2");
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 2);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, without_a_retry_policy_an_error_status_goes_to_the_client, .timeout = 30) {
  fu_t *u = SCRIPT(R503, R200);
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL); /* the default: connect-failure only */
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 503);
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 1);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, a_reset_before_the_head_is_retried, .timeout = 30) {
  fu_t *u = SCRIPT("RESET", R200);
  tp_t p;
  start(&p, u, "attempts: 2, on: [reset], backoff: { base: 5ms, max: 20ms }");
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "2");
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
  /* Without `reset` in retry.on the client gets the sidecar's 502. */
  u = SCRIPT("RESET", R200);
  start(&p, u, "attempts: 2, on: [5xx]");
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  tp_assert_problem(&r, 502, "upstream_reset");
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, per_try_timeout_cuts_a_hung_try_and_the_next_answers, .timeout = 30) {
  fu_t *u = SCRIPT("STALL", R200);
  tp_t p;
  start(&p, u, "attempts: 2, on: [timeout], per_try_timeout: 300ms, backoff: { base: 5ms, max: 20ms }");
  int64_t t0 = th_now_ms();
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  int64_t took = th_now_ms() - t0;
  cr_expect_eq(r.status, 200);
  cr_expect_str_eq(th_header(&r, "x-outrigger-attempts"), "2");
  cr_expect_geq(took, 290, "the hung try was not waited for (%lld ms)", (long long)took);
  cr_expect_lt(took, 2000, "the hung try was not cut at 300 ms (%lld ms)", (long long)took);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, retry_after_sets_the_wait_capped_at_max, .timeout = 30) {
  fu_t *u = SCRIPT("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", R200);
  tp_t p;
  start(&p, u, "attempts: 2, on: [gateway-error], backoff: { base: 5ms, max: 3s }");
  int64_t t0 = th_now_ms();
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  int64_t took = th_now_ms() - t0;
  cr_expect_eq(r.status, 200);
  cr_expect_geq(took, 950, "Retry-After: 1 was not waited for (%lld ms)", (long long)took);
  cr_expect_lt(took, 2500, "%lld ms", (long long)took);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);

  u = SCRIPT("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Length: 0\r\n\r\n", R200);
  start(&p, u, "attempts: 2, on: [retriable-status], status: [429], backoff: { base: 5ms, max: 400ms }");
  t0 = th_now_ms();
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  took = th_now_ms() - t0;
  cr_expect_eq(r.status, 200);
  cr_expect_geq(took, 390, "the wait was not backoff.max (%lld ms)", (long long)took);
  cr_expect_lt(took, 2000, "Retry-After: 30 was not capped at backoff.max (%lld ms)", (long long)took);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, a_wait_past_the_route_timeout_gives_the_answer_at_hand, .timeout = 30) {
  fu_t *u =
      SCRIPT("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 4\r\n\r\nbusy", R200);
  tp_t p;
  tp_start_simple(&p, NULL,
                  ", timeout: 1s, retry: { attempts: 2, on: [gateway-error], backoff: { max: 10s } }",
                  tp_ep(u), NULL);
  int64_t t0 = th_now_ms();
  th_resp_t r;
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 503);
  cr_expect_str_eq(r.body, "busy");
  cr_expect_lt(th_now_ms() - t0, 900, "the answer waited for nothing");
  th_resp_free(&r);
  cr_expect_eq(fu_requests(u), 1);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* POST and PATCH go again only with an Idempotency-Key (SPEC §5). */
static int post_tries(const char *mode, const char *headers, int *status) {
  fu_t *u = SCRIPT(R503, R200);
  tp_t p;
  char pol[256];
  snprintf(pol, sizeof(pol),
           "attempts: 2, on: [gateway-error], idempotency_key: %s, backoff: { base: 5ms, max: 20ms }", mode);
  start(&p, u, pol);
  th_resp_t r;
  cr_assert_eq(get(&p, "POST", headers, "{\"url\":\"http://a\"}", &r), 0);
  *status = r.status;
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  int n = fu_requests(u);
  fu_stop(u);
  return n;
}

Test(retry, a_keyless_post_is_retried_only_when_the_sidecar_gives_it_a_key, .timeout = 30) {
  int st;
  cr_expect_eq(post_tries("off", NULL, &st), 1);
  cr_expect_eq(st, 503);
  cr_expect_eq(post_tries("passthrough", NULL, &st), 1);
  cr_expect_eq(st, 503);
  cr_expect_eq(post_tries("off", "Idempotency-Key: \"k-1\"\r\n", &st), 1, "off never retries a POST");
  cr_expect_eq(post_tries("passthrough", "Idempotency-Key: \"k-1\"\r\n", &st), 2);
  cr_expect_eq(st, 200);
  cr_expect_eq(post_tries("generate", NULL, &st), 2);
  cr_expect_eq(st, 200);
}

Test(retry, generate_sends_one_quoted_key_on_every_try, .timeout = 30) {
  fu_t *u = SCRIPT(R503, R503, R200);
  tp_t p;
  start(&p, u,
        "attempts: 3, on: [gateway-error], idempotency_key: generate, backoff: { base: 5ms, max: 20ms }");
  th_resp_t r;
  cr_assert_eq(get(&p, "POST", NULL, "{}", &r), 0);
  cr_expect_eq(r.status, 200);
  th_resp_free(&r);
  char k0[128], k[128];
  cr_assert_not_null(tp_req_header(fu_head(u, 0), "idempotency-key", k0, sizeof(k0)), "%s", fu_head(u, 0));
  cr_expect_eq(strlen(k0), 38, "a quoted UUID: %s", k0);
  cr_expect(k0[0] == '"' && k0[37] == '"' && k0[15] == '4', "%s", k0);
  for (int i = 1; i < 3; i++) {
    cr_assert_not_null(tp_req_header(fu_head(u, i), "idempotency-key", k, sizeof(k)));
    cr_expect_str_eq(k, k0, "try %d carried another key", i + 1);
  }
  /* A client's own key is passed on as it is, and no second one is added. */
  cr_assert_eq(get(&p, "POST", "Idempotency-Key: \"mine\"\r\n", "{}", &r), 0);
  th_resp_free(&r);
  const char *h = fu_head(u, 3);
  cr_assert_not_null(h);
  cr_expect_str_eq(tp_req_header(h, "idempotency-key", k, sizeof(k)), "\"mine\"");
  cr_expect_null(strcasestr(strcasestr(h, "idempotency-key") + 1, "idempotency-key"), "two keys: %s", h);
  /* GET needs no key, and gets none. */
  cr_assert_eq(get(&p, "GET", NULL, NULL, &r), 0);
  th_resp_free(&r);
  cr_expect_null(tp_req_header(fu_head(u, 4), "idempotency-key", k, sizeof(k)));
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(retry, an_answer_that_started_is_never_retried, .timeout = 30) {
  fu_t *u = SCRIPT("!HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly the start", R200);
  tp_t p;
  start(&p, u, "attempts: 3, on: [reset, 5xx, connect-failure], backoff: { base: 5ms, max: 20ms }");
  int fd = th_connect(p.port);
  const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
  th_resp_t r;
  cr_expect_neq(th_read_response(fd, &r, 5000), 0, "a cut answer was taken for a whole one");
  th_close(fd);
  cr_expect_eq(fu_requests(u), 1, "the request went again after its answer had started");
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* A dead cluster under concurrent load: without a budget, 5 attempts would send it five
 * times the requests; with it, retries in flight stay within max(min_concurrency,
 * ratio × requests in flight). */
typedef struct {
  int port, n, failed;
} load_t;

static void *load_main(void *arg) {
  load_t *l = arg;
  for (int i = 0; i < l->n; i++) {
    th_resp_t r;
    if (th_http(l->port, "GET", "/x", NULL, NULL, &r) != 0 || r.status != 503) l->failed++;
    if (r.head) th_resp_free(&r);
  }
  return NULL;
}

Test(retry, the_budget_keeps_a_dead_cluster_from_a_retry_storm, .timeout = 60) {
  fu_t *u = SCRIPT(R503);
  tp_t p;
  start(&p, u,
        "attempts: 5, on: [gateway-error], backoff: { base: 10ms, max: 40ms }, "
        "budget: { ratio: 0.1, min_concurrency: 1 }");
  enum { NT = 16, PER = 25 };
  pthread_t th[NT];
  load_t l[NT];
  for (int i = 0; i < NT; i++) {
    l[i] = (load_t){.port = p.port, .n = PER};
    pthread_create(&th[i], NULL, load_main, &l[i]);
  }
  int failed = 0;
  for (int i = 0; i < NT; i++) {
    pthread_join(th[i], NULL);
    failed += l[i].failed;
  }
  cr_expect_eq(failed, 0, "every request gets the upstream's 503");
  int sent = fu_requests(u), requests = NT * PER;
  cr_log_info("%d requests, %d reached the upstream", requests, sent);
  cr_expect_lt(sent, requests * 3 / 2, "%d requests sent %d tries to a dead cluster", requests, sent);
  cr_expect_gt(sent, requests, "no retry at all went through the budget");
  /* The refusals are counted. */
  th_resp_t r;
  cr_assert_eq(th_http(p.admin, "GET", "/metrics", NULL, NULL, &r), 0);
  const char *budget = "outrigger_retries_denied_total{cluster=\"c\",limit=\"budget\"} ";
  const char *m = strstr(r.body, budget);
  cr_assert_not_null(m, "%s", r.body);
  cr_expect_gt(atoi(m + strlen(budget)), 0, "the budget, not limits.max_retries, refused them");
  const char *gw = "outrigger_retries_total{cluster=\"c\",reason=\"gateway_error\"} ";
  m = strstr(r.body, gw);
  cr_assert_not_null(m);
  cr_expect_eq(atoi(m + strlen(gw)), sent - requests);
  th_resp_free(&r);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}
