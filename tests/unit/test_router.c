/* Route matching (proxy/router.h) over listeners loaded from YAML, as the sidecar
 * loads them: first match wins, exact path vs prefix, host, methods, headers. */
#include <criterion/criterion.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "router.h"

static px_errlist_t errs;
static px_config_t *cfg;

static void teardown(void) {
  px_config_free(cfg);
  cfg = NULL;
  px_errlist_free(&errs);
}

TestSuite(router, .fini = teardown);

/* The listener made of `routes` (YAML list items indented for a route list). */
static const px_listener_conf_t *listener(const char *routes) {
  char text[4096];
  snprintf(text, sizeof(text),
           "listeners:\n"
           "  - name: out\n"
           "    address: 127.0.0.1:15001\n"
           "    routes:\n"
           "%s"
           "clusters:\n"
           "  - { name: c1, endpoints: [127.0.0.1:9001] }\n",
           routes);
  cfg = px_config_parse("t.yaml", text, strlen(text), &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "  %s\n", errs.items[i]);
  cr_assert_not_null(cfg, "config refused");
  cr_assert_eq(cfg->nlisteners, 1);
  return &cfg->listeners[0];
}

/* A request head with the given header lines ("Name", "value", ..., NULL). */
typedef struct {
  char buf[2048];
  size_t len;
  px_hspan_t h[16];
  px_head_t m;
} thead_t;

static thead_t head_buf;

static const px_head_t *head(const char *first, ...) {
  thead_t *t = &head_buf;
  memset(t, 0, sizeof(*t));
  t->m.base = t->buf;
  t->m.h = t->h;
  t->m.content_length = -1;
  va_list ap;
  va_start(ap, first);
  for (const char *name = first; name; name = va_arg(ap, const char *)) {
    const char *value = va_arg(ap, const char *);
    px_hspan_t *s = &t->h[t->m.nh++];
    s->name_off = (uint32_t)t->len;
    s->name_len = (uint32_t)strlen(name);
    memcpy(t->buf + t->len, name, s->name_len);
    t->len += s->name_len;
    s->value_off = (uint32_t)t->len;
    s->value_len = (uint32_t)strlen(value);
    memcpy(t->buf + t->len, value, s->value_len);
    t->len += s->value_len;
  }
  va_end(ap);
  return &t->m;
}

static px_str_t str(const char *s) { return (px_str_t){s, strlen(s)}; }

/* Route index for a request with no headers to speak of. */
static int match(const px_listener_conf_t *l, int method, const char *path, const char *host) {
  return px_router_match(l, method, str(path), str(host), head(NULL));
}

Test(router, first_match_wins) {
  const px_listener_conf_t *l = listener("      - { name: x, match: { prefix: /x }, cluster: c1 }\n"
                                         "      - { name: all, match: { prefix: / }, cluster: c1 }\n"
                                         "      - { name: x-too, match: { prefix: /x }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/x/1", ""), 0);
  cr_expect_eq(match(l, HTTP_GET, "/y", ""), 1);
  cr_expect_eq(match(l, HTTP_GET, "/", ""), 1);
}

Test(router, catch_all_first_shadows_the_rest) {
  const px_listener_conf_t *l = listener("      - { name: all, cluster: c1 }\n" /* no match: prefix / */
                                         "      - { name: x, match: { prefix: /x }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/x", ""), 0);
  cr_expect_eq(match(l, HTTP_POST, "/anything/at/all", "some.host"), 0);
}

Test(router, exact_path) {
  const px_listener_conf_t *l = listener("      - { name: exact, match: { path: /exact }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/exact", ""), 0);
  cr_expect_eq(match(l, HTTP_GET, "/exact/", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/exactly", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/exac", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/EXACT", ""), -1, "paths are case-sensitive");
  cr_expect_eq(match(l, HTTP_GET, "/", ""), -1);
}

Test(router, prefix_path) {
  const px_listener_conf_t *l = listener("      - { name: api, match: { prefix: /api/ }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/api/", ""), 0);
  cr_expect_eq(match(l, HTTP_GET, "/api/v1/links", ""), 0);
  cr_expect_eq(match(l, HTTP_GET, "/api", ""), -1, "shorter than the prefix");
  cr_expect_eq(match(l, HTTP_GET, "/apix", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/API/v1", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/x/api/", ""), -1, "a prefix is anchored at the start");
}

Test(router, exact_before_prefix_in_file_order) {
  const px_listener_conf_t *l = listener("      - { name: health, match: { path: /healthz }, cluster: c1 }\n"
                                         "      - { name: rest, match: { prefix: / }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/healthz", ""), 0);
  cr_expect_eq(match(l, HTTP_GET, "/healthz/deep", ""), 1);
}

Test(router, host_case_insensitive) {
  const px_listener_conf_t *l = listener("      - { name: s, match: { host: Shortener.Mesh }, cluster: c1 }\n"
                                         "      - { name: other, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/", "shortener.mesh"), 0);
  cr_expect_eq(match(l, HTTP_GET, "/", "SHORTENER.MESH"), 0);
  cr_expect_eq(match(l, HTTP_GET, "/", "shortener.mesh2"), 1);
  cr_expect_eq(match(l, HTTP_GET, "/", "shortener"), 1);
  cr_expect_eq(match(l, HTTP_GET, "/", ""), 1, "no Host: a host rule does not match");
  /* As the proxy calls it: the Host header's port stripped first. */
  px_str_t h = px_router_host(str("Shortener.Mesh:8080"));
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/"), h, head(NULL)), 0);
}

Test(router, host_ipv6_literal) {
  const px_listener_conf_t *l = listener("      - { name: v6, match: { host: \"[::1]\" }, cluster: c1 }\n"
                                         "      - { name: other, cluster: c1 }\n");
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/"), px_router_host(str("[::1]:8080")), head(NULL)), 0);
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/"), px_router_host(str("[::1]")), head(NULL)), 0);
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/"), px_router_host(str("[::2]:8080")), head(NULL)), 1);
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/"), px_router_host(str("127.0.0.1")), head(NULL)), 1);
}

Test(router, host_strips_port) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"example.com", "example.com"},
      {"example.com:8080", "example.com"},
      {"127.0.0.1:15001", "127.0.0.1"},
      {"[::1]:8080", "[::1]"},
      {"[2001:db8::1]", "[2001:db8::1]"},
      {"[fe80::1%25eth0]:80", "[fe80::1%25eth0]"},
      {"", ""},
      {":80", ""},
  };
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    px_str_t got = px_router_host(str(cases[i].in));
    cr_expect(px_str_eq(got, str(cases[i].out)), "px_router_host(\"%s\") = \"%.*s\", want \"%s\"",
              cases[i].in, (int)got.n, got.p, cases[i].out);
  }
}

Test(router, methods_mask) {
  const px_listener_conf_t *l =
      listener("      - { name: rw, match: { methods: [GET, POST] }, cluster: c1 }\n"
               "      - { name: del, match: { methods: [DELETE] }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/", ""), 0);
  cr_expect_eq(match(l, HTTP_POST, "/", ""), 0);
  cr_expect_eq(match(l, HTTP_DELETE, "/", ""), 1, "DELETE is method 0: bit 0");
  cr_expect_eq(match(l, HTTP_PUT, "/", ""), -1);
  cr_expect_eq(match(l, HTTP_HEAD, "/", ""), -1, "HEAD is not GET");
  cr_expect_eq(match(l, HTTP_PATCH, "/", ""), -1);
  cr_expect_eq(match(l, HTTP_LINK, "/", ""), -1); /* 31, the last one a mask can name */
  /* llhttp parses UNLINK (32) and SOURCE (33) too; a mask of 32 bits cannot name them,
   * so a route with a methods list never matches them (no aliasing onto DELETE/GET). */
  cr_expect_eq(match(l, HTTP_UNLINK, "/", ""), -1);
  cr_expect_eq(match(l, HTTP_SOURCE, "/", ""), -1);
}

Test(router, no_methods_means_any) {
  const px_listener_conf_t *l = listener("      - { name: any, match: { prefix: / }, cluster: c1 }\n");
  static const int ms[] = {HTTP_GET,     HTTP_HEAD,   HTTP_POST,  HTTP_DELETE,
                           HTTP_OPTIONS, HTTP_UNLINK, HTTP_SOURCE};
  for (size_t i = 0; i < PX_ARRAY_SIZE(ms); i++)
    cr_expect_eq(match(l, ms[i], "/", ""), 0, "method %d", ms[i]);
}

Test(router, header_match) {
  const px_listener_conf_t *l =
      listener("      - { name: dbg, match: { headers: { x-debug: \"1\", X-Team: Blue } }, cluster: c1 }\n"
               "      - { name: rest, cluster: c1 }\n");
  px_str_t p = str("/"), h = str("");
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("X-DEBUG", "1", "x-team", "Blue", NULL)), 0,
               "names are case-insensitive");
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("Host", "a", "x-team", "Blue", "X-Debug", "1", NULL)),
               0, "order does not matter");
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("x-debug", "1", "x-team", "blue", NULL)), 1,
               "values are exact");
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("x-debug", "10", "x-team", "Blue", NULL)), 1);
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("x-debug", "", "x-team", "Blue", NULL)), 1);
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head("x-debug", "1", NULL)), 1, "every header must match");
  cr_expect_eq(px_router_match(l, HTTP_GET, p, h, head(NULL)), 1);
}

Test(router, all_conditions_together) {
  const px_listener_conf_t *l =
      listener("      - name: strict\n"
               "        match: { prefix: /v1/, host: svc, methods: [POST], headers: { x-canary: always } }\n"
               "        cluster: c1\n"
               "      - { name: fallback, match: { prefix: /v1/ }, cluster: c1 }\n");
  const px_head_t *hd = head("x-canary", "always", NULL);
  cr_expect_eq(px_router_match(l, HTTP_POST, str("/v1/x"), str("svc"), hd), 0);
  hd = head("x-canary", "always", NULL);
  cr_expect_eq(px_router_match(l, HTTP_GET, str("/v1/x"), str("svc"), hd), 1, "method differs");
  cr_expect_eq(px_router_match(l, HTTP_POST, str("/v1/x"), str("other"), hd), 1, "host differs");
  cr_expect_eq(px_router_match(l, HTTP_POST, str("/v2/x"), str("svc"), hd), -1, "path differs");
  cr_expect_eq(px_router_match(l, HTTP_POST, str("/v1/x"), str("svc"), head("x-canary", "never", NULL)), 1,
               "header differs");
}

Test(router, no_match) {
  const px_listener_conf_t *l =
      listener("      - { name: only, match: { path: /only }, cluster: c1 }\n"
               "      - { name: post, match: { prefix: /p, methods: [POST] }, cluster: c1 }\n");
  cr_expect_eq(match(l, HTTP_GET, "/other", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "/p", ""), -1);
  cr_expect_eq(match(l, HTTP_GET, "", ""), -1);
}
