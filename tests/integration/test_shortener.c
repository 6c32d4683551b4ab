/* The shortener binary end to end (SPEC §2, §10): API, limits, strict parsing,
 * keep-alive and pipelining, shared database, signals and exit codes. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "harness.h"

static pid_t g_pid = -1;
static int g_port;
static char *g_dir;
static char g_db[512], g_log[512];

static pid_t start_shortener(const char *db, const char *label, int *port_out) {
  int port = th_free_port();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
  const char *argv[10] = {th_bin("shortener"), "--listen", listen, "--db", db};
  int n = 5;
  if (label) {
    argv[n++] = "--label";
    argv[n++] = label;
  }
  argv[n] = NULL;
  pid_t pid = th_spawn(argv, g_log);
  cr_assert(pid > 0);
  if (th_wait_port_pid(pid, port, 10000) != 0) {
    char *log = th_read_file(g_log, NULL);
    cr_log_error("shortener did not start; log:\n%s", log ? log : "(none)");
    free(log);
    th_stop(pid, 2000);
    cr_assert_fail("shortener did not start");
  }
  *port_out = port;
  return pid;
}

static void setup(void) {
  g_dir = th_tmpdir();
  cr_assert(g_dir);
  snprintf(g_db, sizeof(g_db), "%s/links.db", g_dir);
  snprintf(g_log, sizeof(g_log), "%s/shortener.log", g_dir);
  g_pid = start_shortener(g_db, NULL, &g_port);
}

static void teardown(void) {
  if (g_pid > 0) th_stop(g_pid, 5000);
  g_pid = -1;
  th_tmpdir_remove(g_dir);
  g_dir = NULL;
}

/* Creates a link and returns its code (static buffer). */
static const char *create(int port, const char *url) {
  static char code[16];
  char body[4096];
  snprintf(body, sizeof(body), "{\"url\": \"%s\"}", url);
  th_resp_t r;
  cr_assert_eq(th_http(port, "POST", "/api/links", "Content-Type: application/json\r\n", body, &r), 0);
  cr_assert_eq(r.status, 201, "status %d body %s", r.status, r.body);
  const char *p = strstr(r.body, "\"code\": \"");
  cr_assert(p, "no code in %s", r.body);
  p += 9;
  size_t n = strcspn(p, "\"");
  cr_assert_eq(n, 7, "code length %zu in %s", n, r.body);
  memcpy(code, p, n);
  code[n] = '\0';
  th_resp_free(&r);
  return code;
}

static void expect_error(const char *raw, size_t len, int status, const char *why) {
  th_resp_t r;
  cr_assert_eq(th_request(g_port, raw, len, &r, 10000), 0, "%s: no response", why);
  cr_expect_eq(r.status, status, "%s: status %d body %s", why, r.status, r.body);
  const char *ct = th_header(&r, "content-type");
  cr_expect(ct && strcmp(ct, "application/json") == 0, "%s: content-type %s", why, ct ? ct : "(none)");
  cr_expect(strstr(r.body, "\"error\"") != NULL, "%s: body %s", why, r.body);
  th_resp_free(&r);
}

static void expect_post_400(const char *body, const char *why) {
  px_buf_t b = {0};
  px_buf_printf(&b,
                "POST /api/links HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                strlen(body), body);
  expect_error(b.data, b.len, 400, why);
  px_buf_free(&b);
}

TestSuite(shortener, .init = setup, .fini = teardown, .timeout = 30);

Test(shortener, create_redirect_lookup) {
  const char *url = "https://example.com/some/path?q=1&r=2#frag";
  char body[256];
  snprintf(body, sizeof(body), "{\"url\": \"%s\"}", url);
  th_resp_t r;
  cr_assert_eq(th_http(g_port, "POST", "/api/links", NULL, body, &r), 0);
  cr_assert_eq(r.status, 201, "body %s", r.body);
  cr_expect_str_eq(th_header(&r, "Content-Type"), "application/json");
  char code[8];
  const char *p = strstr(r.body, "\"code\": \"");
  cr_assert(p);
  memcpy(code, p + 9, 7);
  code[7] = '\0';
  for (int i = 0; i < 7; i++)
    cr_expect(strchr("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", code[i]));
  char want[256];
  snprintf(want, sizeof(want), "\"short_url\": \"http://127.0.0.1:%d/%s\"", g_port, code);
  cr_expect(strstr(r.body, want), "body %s lacks %s", r.body, want);
  cr_expect(strstr(r.body, "\"url\": \"https://example.com/some/path?q=1&r=2#frag\""), "body %s", r.body);
  th_resp_free(&r);

  char path[64];
  snprintf(path, sizeof(path), "/%s", code);
  cr_assert_eq(th_http(g_port, "GET", path, NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 302);
  cr_expect_str_eq(th_header(&r, "Location"), url);
  th_resp_free(&r);

  /* The same redirect for an absolute-form target, as a client with http_proxy set sends. */
  snprintf(path, sizeof(path), "http://127.0.0.1:%d/%s", g_port, code);
  cr_assert_eq(th_http(g_port, "GET", path, NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 302);
  cr_expect_str_eq(th_header(&r, "Location"), url);
  th_resp_free(&r);

  snprintf(path, sizeof(path), "/api/links/%s", code);
  cr_assert_eq(th_http(g_port, "GET", path, NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect(strstr(r.body, want), "body %s", r.body);
  cr_expect(strstr(r.body, "\"url\": \"https://example.com/some/path?q=1&r=2#frag\""), "body %s", r.body);
  th_resp_free(&r);

  cr_assert_eq(th_http(g_port, "GET", "/healthz", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 200);
  cr_expect(strstr(r.body, "\"status\": \"ok\""), "body %s", r.body);
  th_resp_free(&r);
}

Test(shortener, http_scheme_any_case_accepted) {
  create(g_port, "HTTP://Example.COM:8080/x");
  create(g_port, "hTTpS://[::1]:443/");
}

Test(shortener, unknown_is_404) {
  const char *paths[] = {"/aaaaaaa", "/api/links/aaaaaaa",      "/api/links/short", "/nope/deeper",
                         "/",        "/api/links/aaaaaaa/extra"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    th_resp_t r;
    cr_assert_eq(th_http(g_port, "GET", paths[i], NULL, NULL, &r), 0);
    cr_expect_eq(r.status, 404, "%s -> %d", paths[i], r.status);
    cr_expect_str_eq(th_header(&r, "content-type"), "application/json");
    cr_expect(strstr(r.body, "\"error\""), "%s body %s", paths[i], r.body);
    th_resp_free(&r);
  }
}

Test(shortener, bad_bodies_are_400) {
  expect_post_400("not json", "non-JSON");
  expect_post_400("{\"url\": \"https://x.example\"", "truncated JSON");
  expect_post_400("{}", "missing url");
  expect_post_400("[\"https://x.example\"]", "array body");
  expect_post_400("{\"url\": 42}", "url not a string");
  expect_post_400("{\"url\": null}", "url null");
  expect_post_400("{\"url\": \"ftp://x.example/file\"}", "ftp scheme");
  expect_post_400("{\"url\": \"javascript:alert(1)\"}", "javascript scheme");
  expect_post_400("{\"url\": \"https://\"}", "no host");
  expect_post_400("{\"url\": \"https:///path\"}", "empty host");
  expect_post_400("{\"url\": \"https://x.example/a b\"}", "space");
  expect_post_400("{\"url\": \"https://x.example/\\r\\nX: y\"}", "CRLF");
  expect_post_400("{\"url\": \"\"}", "empty url");
  expect_post_400("", "empty body");

  px_buf_t u = {0};
  px_buf_append_cstr(&u, "https://x.example/");
  while (u.len < 2049) px_buf_append(&u, "a", 1);
  px_buf_t body = {0};
  px_buf_printf(&body, "{\"url\": \"%.*s\"}", (int)u.len, u.data);
  expect_post_400(body.data ? body.data : "", "2049-byte url");
  /* 2048 bytes is still fine */
  u.len = 2048;
  px_buf_append(&u, "", 1);
  create(g_port, u.data);
  px_buf_free(&u);
  px_buf_free(&body);
}

Test(shortener, body_too_large_is_413) {
  px_buf_t b = {0};
  size_t n = 64 * 1024;
  px_buf_printf(&b, "POST /api/links HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
  for (size_t i = 0; i < n; i++) px_buf_append(&b, "a", 1);
  expect_error(b.data, b.len, 413, "large body");
  px_buf_free(&b);

  /* chunked, so the size is only known while reading */
  px_buf_t c = {0};
  px_buf_append_cstr(&c, "POST /api/links HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 40; i++) {
    px_buf_append_cstr(&c, "400\r\n");
    for (int j = 0; j < 1024; j++) px_buf_append(&c, "a", 1);
    px_buf_append_cstr(&c, "\r\n");
  }
  px_buf_append_cstr(&c, "0\r\n\r\n");
  expect_error(c.data, c.len, 413, "large chunked body");
  px_buf_free(&c);
}

Test(shortener, huge_headers_are_431) {
  px_buf_t b = {0};
  px_buf_append_cstr(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
  for (int i = 0; i < 40 * 1024; i++) px_buf_append(&b, "b", 1);
  px_buf_append_cstr(&b, "\r\n\r\n");
  expect_error(b.data, b.len, 431, "huge header");
  px_buf_free(&b);
}

Test(shortener, wrong_method_is_405) {
  th_resp_t r;
  cr_assert_eq(th_http(g_port, "DELETE", "/api/links", NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 405);
  cr_expect_str_eq(th_header(&r, "Allow"), "POST");
  th_resp_free(&r);
  cr_assert_eq(th_http(g_port, "POST", "/healthz", NULL, "{}", &r), 0);
  cr_expect_eq(r.status, 405);
  cr_expect_str_eq(th_header(&r, "Allow"), "GET, HEAD");
  th_resp_free(&r);
  const char *code = create(g_port, "https://example.com/");
  char path[32];
  snprintf(path, sizeof(path), "/%s", code);
  cr_assert_eq(th_http(g_port, "PUT", path, NULL, "{}", &r), 0);
  cr_expect_eq(r.status, 405);
  cr_expect_str_eq(th_header(&r, "Allow"), "GET, HEAD");
  th_resp_free(&r);
}

Test(shortener, malformed_heads_are_400) {
  const char fold[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n";
  expect_error(fold, sizeof(fold) - 1, 400, "obs-fold");
  const char fold_tab[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: one\r\n\ttwo\r\n\r\n";
  expect_error(fold_tab, sizeof(fold_tab) - 1, 400, "obs-fold with tab");
  const char lf[] = "GET /healthz HTTP/1.1\nHost: x\n\n";
  expect_error(lf, sizeof(lf) - 1, 400, "bare LF");
  const char lf2[] = "GET /healthz HTTP/1.1\r\nHost: x\nX: y\r\n\r\n";
  expect_error(lf2, sizeof(lf2) - 1, 400, "bare LF in one header");
  const char nul[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n";
  expect_error(nul, sizeof(nul) - 1, 400, "NUL in header");
  const char both[] = "POST /api/links HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  expect_error(both, sizeof(both) - 1, 400, "CL and TE");
  const char garbage[] = "HELLO\r\n\r\n";
  expect_error(garbage, sizeof(garbage) - 1, 400, "garbage");
}

Test(shortener, keep_alive_200_requests) {
  const char *code = create(g_port, "https://example.com/keep");
  int fd = th_connect(g_port);
  cr_assert(fd >= 0);
  char req[128];
  for (int i = 0; i < 200; i++) {
    int n = (i % 2) ? snprintf(req, sizeof(req), "GET /%s HTTP/1.1\r\nHost: x\r\n\r\n", code)
                    : snprintf(req, sizeof(req), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_eq(th_send_all(fd, req, (size_t)n), 0);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "request %d", i);
    cr_assert_eq(r.status, (i % 2) ? 302 : 200, "request %d", i);
    cr_assert(!r.closed, "request %d closed the connection", i);
    th_resp_free(&r);
  }
  th_close(fd);
}

Test(shortener, pipelined_answers_in_order) {
  int fd = th_connect(g_port);
  cr_assert(fd >= 0);
  const char reqs[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      "GET /nothere HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /api/links HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n"
                      "{\"url\": \"https://example.com/pipe\"}";
  cr_assert_eq(th_send_all(fd, reqs, sizeof(reqs) - 1), 0);
  int want[] = {200, 404, 201};
  for (int i = 0; i < 3; i++) {
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "response %d", i);
    cr_expect_eq(r.status, want[i], "response %d: %d", i, r.status);
    th_resp_free(&r);
  }
  th_close(fd);
}

Test(shortener, http10_closes_unless_keep_alive) {
  th_resp_t r;
  const char a[] = "GET /healthz HTTP/1.0\r\n\r\n";
  cr_assert_eq(th_request(g_port, a, sizeof(a) - 1, &r, 5000), 0);
  cr_expect_eq(r.status, 200);
  cr_expect(r.closed);
  th_resp_free(&r);

  int fd = th_connect(g_port);
  const char b[] = "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(th_send_all(fd, b, sizeof(b) - 1), 0);
    cr_assert_eq(th_read_response(fd, &r, 5000), 0);
    cr_expect_eq(r.status, 200);
    cr_expect(!r.closed);
    cr_expect_str_eq(th_header(&r, "Connection"), "keep-alive");
    th_resp_free(&r);
  }
  th_close(fd);

  /* HTTP/1.1 with Connection: close is answered and closed */
  fd = th_connect(g_port);
  const char c[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  cr_assert_eq(th_send_all(fd, c, sizeof(c) - 1), 0);
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_expect(r.closed);
  cr_expect_str_eq(th_header(&r, "Connection"), "close");
  th_resp_free(&r);
  cr_expect_eq(th_wait_closed(fd, 3000), 1);
  th_close(fd);
}

Test(shortener, label_adds_version_header) {
  th_stop(g_pid, 5000);
  g_pid = start_shortener(g_db, "v2", &g_port);
  th_resp_t r;
  cr_assert_eq(th_http(g_port, "GET", "/healthz", NULL, NULL, &r), 0);
  cr_expect_str_eq(th_header(&r, "x-shortener-version"), "v2");
  th_resp_free(&r);
  cr_assert_eq(th_http(g_port, "GET", "/nope", NULL, NULL, &r), 0);
  cr_expect_str_eq(th_header(&r, "x-shortener-version"), "v2");
  th_resp_free(&r);
  const char lf[] = "GET / HTTP/1.1\nHost: x\n\n";
  cr_assert_eq(th_request(g_port, lf, sizeof(lf) - 1, &r, 5000), 0);
  cr_expect_eq(r.status, 400);
  cr_expect_str_eq(th_header(&r, "x-shortener-version"), "v2");
  th_resp_free(&r);
}

Test(shortener, two_processes_share_one_db) {
  int port_b;
  pid_t b = start_shortener(g_db, "b", &port_b);
  for (int i = 0; i < 5; i++) {
    char url[64];
    snprintf(url, sizeof(url), "https://example.com/shared/%d", i);
    const char *code = create(i % 2 ? port_b : g_port, url);
    char path[32];
    snprintf(path, sizeof(path), "/%s", code);
    th_resp_t r;
    cr_assert_eq(th_http(i % 2 ? g_port : port_b, "GET", path, NULL, NULL, &r), 0);
    cr_expect_eq(r.status, 302);
    cr_expect_str_eq(th_header(&r, "Location"), url);
    th_resp_free(&r);
  }
  cr_expect_eq(th_stop(b, 5000), 0);
}

Test(shortener, links_survive_restart) {
  const char *code = create(g_port, "https://example.com/persist");
  char path[32];
  snprintf(path, sizeof(path), "/%s", code);
  cr_assert_eq(th_stop(g_pid, 5000), 0);
  g_pid = start_shortener(g_db, NULL, &g_port);
  th_resp_t r;
  cr_assert_eq(th_http(g_port, "GET", path, NULL, NULL, &r), 0);
  cr_expect_eq(r.status, 302);
  th_resp_free(&r);
}

Test(shortener, sigterm_exits_0_and_finishes_in_flight) {
  /* A request whose body is still arriving when SIGTERM comes is finished. */
  int fd = th_connect(g_port);
  cr_assert(fd >= 0);
  const char head[] = "POST /api/links HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n{\"url\": ";
  cr_assert_eq(th_send_all(fd, head, sizeof(head) - 1), 0);
  usleep(100 * 1000);
  kill(g_pid, SIGTERM);
  usleep(100 * 1000);
  const char rest[] = "\"https://example.com/pipe\"}";
  cr_assert_eq(th_send_all(fd, rest, sizeof(rest) - 1), 0);
  th_resp_t r;
  cr_assert_eq(th_read_response(fd, &r, 5000), 0);
  cr_expect_eq(r.status, 201);
  cr_expect(r.closed);
  th_resp_free(&r);
  th_close(fd);
  cr_expect_eq(th_wait_exit(g_pid, 5000), 0);
  g_pid = -1;
  cr_expect_eq(th_connect(g_port), -1, "still accepting after drain");
}

static int run_exit(const char *const argv[]) {
  pid_t pid = th_spawn(argv, g_log);
  cr_assert(pid > 0);
  int st = th_wait_exit(pid, 10000);
  if (st == -2) st = th_stop(pid, 1000);
  return st;
}

Test(shortener, exit_codes) {
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", th_free_port());
  const char *sh = th_bin("shortener");
  cr_expect_eq(run_exit((const char *[]){sh, "--help", NULL}), 0);
  cr_expect_eq(run_exit((const char *[]){sh, "--version", NULL}), 0);
  cr_expect_eq(run_exit((const char *[]){sh, NULL}), 2);
  cr_expect_eq(run_exit((const char *[]){sh, "--listen", listen, NULL}), 2);
  cr_expect_eq(run_exit((const char *[]){sh, "--bogus", NULL}), 2);
  cr_expect_eq(run_exit((const char *[]){sh, "--listen", "nonsense", "--db", g_db, NULL}), 2);
  cr_expect_eq(run_exit((const char *[]){sh, "--listen", listen, "--db", g_db, "extra", NULL}), 2);
  cr_expect_eq(
      run_exit((const char *[]){sh, "--listen", listen, "--db", "/nonexistent-dir/x/links.db", NULL}), 3);
  /* the fixture's shortener holds g_port */
  char busy[64];
  snprintf(busy, sizeof(busy), "127.0.0.1:%d", g_port);
  cr_expect_eq(run_exit((const char *[]){sh, "--listen", busy, "--db", g_db, NULL}), 3);
}
