/* The configuration loader: the SPEC example, defaults, every kind of error with its
 * exact FILE:LINE:COL, all errors in one pass, value parsers, the JSON dump. */
#include <criterion/criterion.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

static px_errlist_t errs;
static px_config_t *cfg;

static void teardown(void) {
  px_config_free(cfg);
  cfg = NULL;
  px_errlist_free(&errs);
}

TestSuite(config, .fini = teardown);

static px_config_t *parse(const char *text) {
  cfg = px_config_parse("t.yaml", text, strlen(text), &errs);
  return cfg;
}

static void dump_errors(void) {
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "  %s\n", errs.items[i]);
}

/* Asserts that one error starts with "t.yaml:LINE:COL: " and contains `sub`. */
static void expect_error(int line, int col, const char *sub) {
  char prefix[64];
  snprintf(prefix, sizeof(prefix), "t.yaml:%d:%d: ", line, col);
  for (size_t i = 0; i < errs.n; i++)
    if (strncmp(errs.items[i], prefix, strlen(prefix)) == 0 && strstr(errs.items[i], sub)) return;
  dump_errors();
  cr_assert(0, "no error \"%s...%s\" among %zu", prefix, sub, errs.n);
}

/* A valid listener/cluster pair to put the key under test next to. */
#define BASE                                                                                                 \
  "listeners:\n"                                                                                             \
  "  - name: in\n"                                                                                           \
  "    address: 127.0.0.1:8001\n"                                                                            \
  "    routes:\n"                                                                                            \
  "      - { name: r1, cluster: c1 }\n"                                                                      \
  "clusters:\n"                                                                                              \
  "  - { name: c1, endpoints: [127.0.0.1:9001] }\n"

static const char spec_example[] =
    "workers: auto                  # event-loop threads; auto = number of CPUs\n"
    "drain_timeout: 10s\n"
    "admin: { address: 127.0.0.1:15000 }\n"
    "log: { level: info, format: text, access_log: stdout }\n"
    "\n"
    "tracing:\n"
    "  service_name: shortener\n"
    "  propagation: [w3c, b3]\n"
    "  sample_rate: 1.0\n"
    "  zipkin: http://127.0.0.1:9411/api/v2/spans\n"
    "\n"
    "listeners:\n"
    "  - name: inbound\n"
    "    address: 0.0.0.0:8001\n"
    "    tls: { cert: c.pem, key: k.pem, client_ca: ca.pem, allowed_identities: [\"spiffe://mesh.local/edge\"] }\n"
    "    limits: { max_header_bytes: 64KiB, max_body_bytes: 8MiB, header_timeout: 10s, idle_timeout: 60s }\n"
    "    idempotency: { enabled: true, methods: [POST, PATCH], required: false, ttl: 24h, max_entries: 100000, "
    "max_response_bytes: 64KiB }\n"
    "    routes:\n"
    "      - { name: app, match: { prefix: / }, cluster: local }\n"
    "\n"
    "  - name: outbound\n"
    "    address: 127.0.0.1:15001\n"
    "    routes:\n"
    "      - name: shorten\n"
    "        match: { prefix: /, host: shortener, methods: [GET, POST], headers: { x-debug: \"1\" } }\n"
    "        timeout: 2s\n"
    "        retry:\n"
    "          attempts: 3\n"
    "          on: [connect-failure, reset, gateway-error, retriable-status, timeout]\n"
    "          status: [409]\n"
    "          per_try_timeout: 500ms\n"
    "          backoff: { base: 25ms, max: 250ms }\n"
    "          budget: { ratio: 0.2, min_concurrency: 3 }\n"
    "          other_endpoint: true\n"
    "          idempotency_key: generate\n"
    "          buffer_limit: 64KiB\n"
    "        split:\n"
    "          - { cluster: shortener-v1, weight: 90 }\n"
    "          - { cluster: shortener-v2, weight: 10, canary: true }\n"
    "        canary:\n"
    "          override_header: x-canary\n"
    "          sticky: { header: x-user-id }\n"
    "          analysis: { interval: 10s, min_requests: 50, max_error_rate: 0.05, max_error_rate_delta: 0.02, "
    "max_latency_ratio: 1.5, on_fail: rollback }\n"
    "        fault:\n"
    "          abort: { status: 503, percent: 5 }\n"
    "          delay: { duration: 200ms, percent: 5 }\n"
    "          drop_response: { percent: 5 }\n"
    "\n"
    "clusters:\n"
    "  - name: shortener-v1\n"
    "    endpoints: [127.0.0.1:8001, 127.0.0.1:8002]\n"
    "    lb: round_robin\n"
    "    hash: { header: x-user-id }\n"
    "    connect_timeout: 250ms\n"
    "    pool: { max_idle_per_endpoint: 64, idle_timeout: 30s }\n"
    "    limits: { max_connections: 1024, max_pending: 1024, max_requests: 1024, max_retries: 3 }\n"
    "    circuit_breaker:\n"
    "      consecutive_failures: 5\n"
    "      failure_rate: { threshold: 0.5, window: 10s, min_requests: 20 }\n"
    "      open_duration: 30s\n"
    "      max_open_duration: 5m\n"
    "      half_open_requests: 1\n"
    "      max_open_percent: 50\n"
    "    health_check: { path: /healthz, interval: 5s, timeout: 1s, unhealthy_threshold: 3, healthy_threshold: 2 }\n"
    "    tls: { ca: ca.pem, cert: c.pem, key: k.pem, server_name: shortener.mesh.local }\n"
    /* The SPEC's excerpt references these two without defining them. */
    "  - { name: shortener-v2, endpoints: [127.0.0.1:8003] }\n"
    "  - { name: local, endpoints: [127.0.0.1:9001] }\n";

Test(config, spec_example_parses) {
  parse(spec_example);
  dump_errors();
  cr_assert_not_null(cfg);
  cr_assert_eq(cfg->workers, 0);
  cr_assert_eq(cfg->drain_timeout_ms, 10000);
  cr_assert_eq(cfg->has_admin, 1);
  cr_assert_str_eq(cfg->admin_address.text, "127.0.0.1:15000");
  cr_assert_eq(cfg->log_level, PX_LOG_INFO);
  cr_assert_eq(cfg->log_json, 0);
  cr_assert_str_eq(cfg->access_log, "stdout");
  cr_assert(cfg->tracing.enabled);
  cr_assert_str_eq(cfg->tracing.service_name, "shortener");
  cr_assert_eq(cfg->tracing.propagation, 3);
  cr_assert_str_eq(cfg->tracing.zipkin, "http://127.0.0.1:9411/api/v2/spans");

  cr_assert_eq(cfg->nlisteners, 2);
  px_listener_conf_t *in = &cfg->listeners[0];
  cr_assert_str_eq(in->name, "inbound");
  cr_assert_eq(in->pos.line, 13);
  cr_assert_eq(in->pos.col, 5);
  cr_assert(in->has_tls);
  cr_assert_str_eq(in->tls.key, "k.pem");
  cr_assert_str_eq(in->tls.client_ca, "ca.pem");
  cr_assert_eq(in->tls.allowed_identities.n, 1);
  cr_assert_str_eq(in->tls.allowed_identities.items[0], "spiffe://mesh.local/edge");
  cr_assert_eq(in->limits.max_header_bytes, 65536);
  cr_assert_eq(in->limits.max_body_bytes, 8u << 20);
  cr_assert_eq(in->limits.idle_timeout_ms, 60000);
  cr_assert(in->idempotency.enabled);
  cr_assert_eq(in->idempotency.methods, (1u << HTTP_POST) | (1u << HTTP_PATCH));
  cr_assert_eq(in->idempotency.ttl_ms, 24ull * 3600 * 1000);
  cr_assert_eq(in->idempotency.max_entries, 100000);
  cr_assert_eq(in->nroutes, 1);
  cr_assert_str_eq(in->routes[0].match.prefix, "/");
  cr_assert_eq(in->routes[0].cluster_index, 3 - 1);

  px_route_conf_t *r = &cfg->listeners[1].routes[0];
  cr_assert_str_eq(r->name, "shorten");
  cr_assert_str_eq(r->match.host, "shortener");
  cr_assert_eq(r->match.methods, (1u << HTTP_GET) | (1u << HTTP_POST));
  cr_assert_eq(r->match.nheaders, 1);
  cr_assert_str_eq(r->match.headers[0].name, "x-debug");
  cr_assert_str_eq(r->match.headers[0].value, "1");
  cr_assert_eq(r->timeout_ms, 2000);
  cr_assert(r->has_retry);
  cr_assert_eq(r->retry.attempts, 3);
  cr_assert_eq(r->retry.on, PX_RETRY_ON_CONNECT_FAILURE | PX_RETRY_ON_RESET | PX_RETRY_ON_GATEWAY_ERROR |
                                PX_RETRY_ON_RETRIABLE_STATUS | PX_RETRY_ON_TIMEOUT);
  cr_assert_eq(r->retry.nstatus, 1);
  cr_assert_eq(r->retry.status[0], 409);
  cr_assert_eq(r->retry.per_try_timeout_ms, 500);
  cr_assert_eq(r->retry.backoff_base_ms, 25);
  cr_assert_eq(r->retry.backoff_max_ms, 250);
  cr_assert_float_eq(r->retry.budget_ratio, 0.2, 1e-9);
  cr_assert_eq(r->retry.budget_min_concurrency, 3);
  cr_assert_eq(r->retry.idempotency_key, PX_IDEMPOTENCY_KEY_GENERATE);
  cr_assert_eq(r->retry.buffer_limit, 65536);
  cr_assert_null(r->cluster);
  cr_assert_eq(r->cluster_index, -1);
  cr_assert_eq(r->nsplit, 2);
  cr_assert_eq(r->split[0].cluster_index, 0);
  cr_assert_eq(r->split[0].weight, 90);
  cr_assert_eq(r->split[1].cluster_index, 1);
  cr_assert(r->split[1].canary);
  cr_assert(r->canary.enabled);
  cr_assert_str_eq(r->canary.sticky_header, "x-user-id");
  cr_assert(r->canary.has_analysis);
  cr_assert_float_eq(r->canary.max_latency_ratio, 1.5, 1e-9);
  cr_assert(r->canary.on_fail_rollback);
  cr_assert(r->has_fault);
  cr_assert_eq(r->fault.abort_status, 503);
  cr_assert_eq(r->fault.delay_ms, 200);
  cr_assert_float_eq(r->fault.drop_percent, 5.0, 1e-9);

  cr_assert_eq(cfg->nclusters, 3);
  px_cluster_conf_t *cl = &cfg->clusters[0];
  cr_assert_eq(cl->nendpoints, 2);
  cr_assert_str_eq(cl->endpoints[1].text, "127.0.0.1:8002");
  cr_assert_eq(cl->hash, PX_HASH_HEADER);
  cr_assert_str_eq(cl->hash_name, "x-user-id");
  cr_assert_eq(cl->connect_timeout_ms, 250);
  cr_assert(cl->has_breaker);
  cr_assert_eq(cl->breaker.max_open_duration_ms, 300000);
  cr_assert_float_eq(cl->breaker.rate_threshold, 0.5, 1e-9);
  cr_assert(cl->has_health_check);
  cr_assert_str_eq(cl->health.path, "/healthz");
  cr_assert(cl->has_tls);
  cr_assert_str_eq(cl->tls.server_name, "shortener.mesh.local");
}

Test(config, defaults_for_minimal_file) {
  parse(BASE);
  dump_errors();
  cr_assert_not_null(cfg);
  cr_assert_eq(cfg->workers, 0);
  cr_assert_eq(cfg->drain_timeout_ms, 10000);
  cr_assert_eq(cfg->has_admin, 0);
  cr_assert_str_eq(cfg->admin_address.text, "127.0.0.1:15000");
  cr_assert_eq(cfg->log_level, PX_LOG_INFO);
  cr_assert_null(cfg->access_log);
  cr_assert_eq(cfg->tracing.enabled, 0);
  cr_assert_str_eq(cfg->tracing.service_name, "outrigger");
  cr_assert_eq(cfg->tracing.propagation, 3);
  px_listener_conf_t *l = &cfg->listeners[0];
  cr_assert_eq(l->has_tls, 0);
  cr_assert_eq(l->limits.max_header_bytes, 64 * 1024);
  cr_assert_eq(l->limits.max_body_bytes, 8 * 1024 * 1024);
  cr_assert_eq(l->limits.header_timeout_ms, 10000);
  cr_assert_eq(l->limits.idle_timeout_ms, 60000);
  cr_assert_eq(l->idempotency.enabled, 0);
  cr_assert_eq(l->idempotency.methods, (1u << HTTP_POST) | (1u << HTTP_PATCH));
  cr_assert_eq(l->idempotency.max_response_bytes, 64 * 1024);
  px_route_conf_t *r = &l->routes[0];
  cr_assert_str_eq(r->match.prefix, "/");
  cr_assert_null(r->match.path);
  cr_assert_eq(r->match.methods, 0);
  cr_assert_eq(r->cluster_index, 0);
  cr_assert_eq(r->timeout_ms, 15000);
  cr_assert_eq(r->has_retry, 0);
  cr_assert_eq(r->retry.attempts, 2);
  cr_assert_eq(r->retry.on, PX_RETRY_ON_CONNECT_FAILURE);
  cr_assert_eq(r->retry.per_try_timeout_ms, 0);
  cr_assert_eq(r->retry.backoff_base_ms, 25);
  cr_assert_eq(r->retry.backoff_max_ms, 250);
  cr_assert(r->retry.other_endpoint);
  cr_assert_eq(r->retry.idempotency_key, PX_IDEMPOTENCY_KEY_PASSTHROUGH);
  cr_assert_eq(r->nsplit, 0);
  cr_assert_eq(r->canary.enabled, 0);
  cr_assert_str_eq(r->canary.override_header, "x-canary");
  cr_assert_eq(r->has_fault, 0);
  cr_assert_eq(r->fault.abort_status, 0);
  cr_assert_eq(r->fault.delay_ms, 0);
  px_cluster_conf_t *c = &cfg->clusters[0];
  cr_assert_eq(c->lb, PX_LB_ROUND_ROBIN);
  cr_assert_eq(c->hash, PX_HASH_NONE);
  cr_assert_eq(c->connect_timeout_ms, 1000);
  cr_assert_eq(c->pool_max_idle_per_endpoint, 64);
  cr_assert_eq(c->pool_idle_timeout_ms, 30000);
  cr_assert_eq(c->max_connections, 1024);
  cr_assert_eq(c->max_pending, 1024);
  cr_assert_eq(c->max_requests, 1024);
  cr_assert_eq(c->max_retries, 3);
  cr_assert_eq(c->has_breaker, 0);
  cr_assert_eq(c->breaker.consecutive_failures, 5);
  cr_assert_eq(c->breaker.open_duration_ms, 30000);
  cr_assert_eq(c->has_health_check, 0);
  cr_assert_str_eq(c->health.path, "/healthz");
  cr_assert_eq(c->health.interval_ms, 5000);
  cr_assert_eq(c->has_tls, 0);
}

Test(config, unknown_key_with_hint) {
  parse("listeners:\n"
        "  - name: in\n"
        "    adress: 127.0.0.1:8001\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n"
        "drain: 5s\n");
  cr_assert_null(cfg);
  expect_error(3, 5, "unknown key 'adress' in listener; did you mean 'address'?");
  expect_error(6, 1, "unknown key 'drain' in top level; did you mean 'drain_timeout'?");
  expect_error(2, 5, "missing required key 'address'");
  cr_assert_eq(errs.n, 3);
}

Test(config, unknown_key_without_hint) {
  parse(BASE "frobnicate: 1\n");
  cr_assert_null(cfg);
  expect_error(8, 1, "unknown key 'frobnicate' in top level");
  cr_assert_null(strstr(errs.items[0], "did you mean"));
}

Test(config, wrong_types) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    limits: [1, 2]\n"
        "    routes: { name: r1 }\n"
        "clusters:\n"
        "  - name: c1\n"
        "    endpoints: 127.0.0.1:9001\n"
        "    pool: { max_idle_per_endpoint: many }\n"
        "    limits: { max_connections: \"12\" }\n"
        "    circuit_breaker: { failure_rate: { threshold: high } }\n");
  cr_assert_null(cfg);
  expect_error(4, 13, "'limits': expected a mapping, got a list");
  expect_error(5, 13, "'routes': expected a list, got a mapping");
  expect_error(8, 16, "'endpoints': expected a list, got '127.0.0.1:9001'");
  expect_error(9, 36, "'max_idle_per_endpoint': expected an integer, got 'many'");
  expect_error(10, 32, "'max_connections': expected an integer");
  expect_error(11, 51, "'threshold': expected a number");
  cr_assert_eq(errs.n, 6);
}

Test(config, bad_durations) {
  parse("drain_timeout: 10\n"
        "listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    limits: { header_timeout: 10 s, idle_timeout: 1.5s }\n"
        "    routes: [{ name: r1, cluster: c1, timeout: 2d }]\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(1, 16, "'drain_timeout': bad duration '10': durations need a unit, e.g. 250ms");
  expect_error(5, 31, "'header_timeout': bad duration '10 s'");
  expect_error(5, 51, "'idle_timeout': bad duration '1.5s'");
  expect_error(6, 48, "'timeout': bad duration '2d': unknown duration unit");
  cr_assert_eq(errs.n, 4);
}

Test(config, bad_sizes) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    limits: { max_header_bytes: 64KB, max_body_bytes: lots }\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(4, 33, "'max_header_bytes': bad size '64KB': sizes use KiB, MiB or GiB");
  expect_error(4, 55, "'max_body_bytes': bad size 'lots'");
  cr_assert_eq(errs.n, 2);
}

Test(config, out_of_range) {
  parse("workers: 300\n"
        "listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    limits: { max_header_bytes: 4MiB }\n"
        "    routes:\n"
        "      - name: r1\n"
        "        cluster: c1\n"
        "        retry: { attempts: 11, budget: { ratio: 1.5 }, on: [retriable-status], status: [99, 409] }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001], connect_timeout: 0ms }]\n");
  cr_assert_null(cfg);
  expect_error(1, 10, "'workers' must be 'auto' or an integer between 1 and 256");
  expect_error(5, 33, "'max_header_bytes' must be between 1KiB and 1MiB bytes, got 4MiB");
  expect_error(9, 28, "'attempts' must be between 1 and 10, got 11");
  expect_error(9, 49, "'ratio' must be between 0 and 1, got 1.5");
  expect_error(9, 89, "'status': codes must be between 100 and 599, got 99");
  expect_error(10, 70, "'connect_timeout' must be between 1ms and 1h, got 0ms");
  cr_assert_eq(errs.n, 6);
}

Test(config, bad_enum_values) {
  parse(
      "log: { level: verbose, format: xml }\n"
      "listeners:\n"
      "  - name: in\n"
      "    address: 127.0.0.1:8001\n"
      "    routes: [{ name: r1, cluster: c1, match: { methods: [GET, get, FETCH] }, retry: { on: [5XX] } }]\n"
      "clusters: [{ name: c1, endpoints: [127.0.0.1:9001], lb: round-robin }]\n");
  cr_assert_null(cfg);
  expect_error(1, 15, "'level': unknown value 'verbose'; expected one of: debug, info, warn, error");
  expect_error(1, 32, "'format': unknown value 'xml'; expected one of: text, json");
  expect_error(5, 63, "'methods': unknown value 'get'; expected one of: DELETE, GET,");
  expect_error(5, 63, "did you mean 'GET'?");
  expect_error(5, 68, "'methods': unknown value 'FETCH'");
  expect_error(5, 92,
               "'on': unknown value '5XX'; expected one of: connect-failure, reset, timeout, gateway-error, "
               "5xx, retriable-status; did you mean '5xx'?");
  expect_error(6, 57,
               "'lb': unknown value 'round-robin'; expected one of: round_robin, least_request, random, "
               "ring_hash, maglev; did you mean 'round_robin'?");
  cr_assert_eq(errs.n, 6);
}

Test(config, duplicate_names) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8002\n"
        "    routes: [{ name: r2, cluster: c1 }]\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001] }\n"
        "  - { name: c1, endpoints: [127.0.0.1:9002] }\n");
  cr_assert_null(cfg);
  expect_error(5, 11, "duplicate listener name 'in' (first defined at line 2)");
  expect_error(10, 13, "duplicate cluster name 'c1' (first defined at line 9)");
  cr_assert_eq(errs.n, 2);
}

Test(config, duplicate_route_name_across_listeners) {
  parse("listeners:\n"
        "  - name: a\n"
        "    address: 127.0.0.1:8001\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "  - name: b\n"
        "    address: 127.0.0.1:8002\n"
        "    routes:\n"
        "      - name: r1\n"
        "        cluster: c1\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(8, 15,
               "duplicate route name 'r1' (first defined at line 4); route names are unique across all");
  cr_assert_eq(errs.n, 1);
}

Test(config, undefined_cluster_with_hint) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - { name: r1, cluster: shortener-v3 }\n"
        "      - name: r2\n"
        "        split: [{ cluster: shortner-v1, weight: 1 }, { cluster: nothing-alike, weight: 1 }]\n"
        "clusters: [{ name: shortener-v1, endpoints: [127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(5, 30, "undefined cluster 'shortener-v3'; did you mean 'shortener-v1'?");
  expect_error(7, 28, "undefined cluster 'shortner-v1'; did you mean 'shortener-v1'?");
  expect_error(7, 65, "undefined cluster 'nothing-alike'");
  cr_assert_eq(errs.n, 3);
}

Test(config, bad_addresses) {
  parse("admin: { address: 127.0.0.1:8001 }\n"
        "listeners:\n"
        "  - name: in\n"
        "    address: shortener:80\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "  - name: in2\n"
        "    address: 0.0.0.0:8001\n"
        "    routes: [{ name: r2, cluster: c1 }]\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:99999, 127.0.0.1] }]\n");
  cr_assert_null(cfg);
  expect_error(4, 14, "'address': bad address 'shortener:80'");
  expect_error(7, 14, "address '0.0.0.0:8001' collides with the admin address '127.0.0.1:8001' (line 1)");
  expect_error(9, 36, "'endpoints': bad address '127.0.0.1:99999'");
  expect_error(9, 53, "'endpoints': bad address '127.0.0.1'");
  cr_assert_eq(errs.n, 4);
}

Test(config, duplicate_listener_addresses) {
  parse("listeners:\n"
        "  - { name: a, address: 127.0.0.1:8001, routes: [{ name: r1, cluster: c1 }] }\n"
        "  - { name: b, address: 127.0.0.1:8001, routes: [{ name: r2, cluster: c1 }] }\n"
        "  - { name: c, address: 127.0.0.1:15000, routes: [{ name: r3, cluster: c1 }] }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001, 127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(3, 25, "collides with listener 'a' at '127.0.0.1:8001' (line 2)");
  expect_error(4, 25, "collides with the admin listener's default address '127.0.0.1:15000'");
  expect_error(5, 52, "endpoint '127.0.0.1:9001' is listed twice");
  cr_assert_eq(errs.n, 3);
}

Test(config, cluster_and_split_or_neither) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - name: both\n"
        "        cluster: c1\n"
        "        split: [{ cluster: c1, weight: 1 }]\n"
        "      - name: neither\n"
        "        timeout: 1s\n"
        "      - name: stray-canary\n"
        "        cluster: c1\n"
        "        canary: { override_header: x-c }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n");
  cr_assert_null(cfg);
  expect_error(7, 9, "a route takes 'cluster' or 'split', not both");
  expect_error(8, 9, "route: needs 'cluster' or 'split'");
  expect_error(12, 9, "'canary' needs 'split'");
  cr_assert_eq(errs.n, 3);
}

Test(config, canary_promote) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - name: a\n"
        "        split: [{ cluster: c1, weight: 9 }, { cluster: c2, weight: 1, canary: true }]\n"
        "        canary:\n"
        "          promote: { step: 10, every: 30s }\n"
        "      - name: b\n"
        "        split: [{ cluster: c1, weight: 9 }, { cluster: c2, weight: 1, canary: true }]\n"
        "        canary:\n"
        "          analysis: { interval: 5s }\n"
        "          promote: { step: 0, every: 100ms, until: 101 }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }, { name: c2, endpoints: [127.0.0.1:9002] }]\n");
  cr_assert_null(cfg);
  expect_error(8, 11, "'promote' needs 'analysis'");
  expect_error(13, 28, "step");
  expect_error(13, 38, "every");
  expect_error(13, 52, "until");
  cr_assert_eq(errs.n, 4);
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - name: b\n"
        "        split: [{ cluster: c1, weight: 9 }, { cluster: c2, weight: 1, canary: true }]\n"
        "        canary: { analysis: {}, promote: { step: 25, every: 2m } }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }, { name: c2, endpoints: [127.0.0.1:9002] }]\n");
  cr_assert_not_null(cfg);
  const px_canary_conf_t *cc = &cfg->listeners[0].routes[0].canary;
  cr_expect(cc->has_promote && cc->promote_step == 25 && cc->promote_every_ms == 120000 &&
            cc->promote_until == 100);
}

Test(config, split_rules) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - name: zero\n"
        "        split: [{ cluster: c1, weight: 0 }, { cluster: c2, weight: 0 }]\n"
        "      - name: two-canaries\n"
        "        split:\n"
        "          - { cluster: c1, weight: 1, canary: true }\n"
        "          - { cluster: c2, weight: 10001, canary: true }\n"
        "          - { cluster: c1, weight: 1 }\n"
        "      - name: canary-without-mark\n"
        "        split: [{ cluster: c1, weight: 1 }, { cluster: c2, weight: 1 }]\n"
        "        canary: { analysis: { interval: 1m } }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }, { name: c2, endpoints: [127.0.0.1:9002] }]\n");
  cr_assert_null(cfg);
  expect_error(6, 16, "'split' weights must not all be 0");
  expect_error(10, 36, "'weight' must be between 0 and 10000, got 10001");
  expect_error(10, 51, "only one split entry may be marked 'canary: true'");
  expect_error(11, 24, "cluster 'c1' appears twice in 'split'");
  expect_error(14, 9, "'canary' needs one split entry marked 'canary: true'");
  cr_assert_eq(errs.n, 5);
}

/* A match host never carries a port; an IPv6 literal is bracketed as in a Host
 * header. */
Test(config, match_host_forms) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - { name: v6, cluster: c1, match: { host: \"[::1]\" } }\n"
        "      - { name: v6port, cluster: c1, match: { host: \"[::1]:80\" } }\n"
        "      - { name: bare, cluster: c1, match: { host: \"::1\" } }\n"
        "      - { name: open, cluster: c1, match: { host: \"[::1\" } }\n"
        "      - { name: tail, cluster: c1, match: { host: \"[::1]x\" } }\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001] }\n");
  cr_assert_null(cfg);
  expect_error(6, 53, "'host' is matched without the port; remove ':80'");
  expect_error(7, 51, "'host' '::1' looks like an IPv6 address: write it in brackets, [::1]");
  expect_error(8, 51, "'host' '[::1': an IPv6 literal is written in brackets, e.g. [::1]");
  expect_error(9, 51, "'host' '[::1]x': nothing may follow the ']'");
  cr_assert_eq(errs.n, 4);
}

Test(config, retry_and_match_rules) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    routes:\n"
        "      - name: r1\n"
        "        cluster: c1\n"
        "        match: { prefix: /a, path: /b }\n"
        "        retry: { on: [retriable-status], backoff: { base: 1s, max: 10ms } }\n"
        "      - name: r2\n"
        "        cluster: c1\n"
        "        match: { path: nope, host: \"h:80\" }\n"
        "        retry: { status: [503] }\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001], lb: maglev }\n");
  cr_assert_null(cfg);
  expect_error(7, 30, "'prefix' and 'path' are mutually exclusive");
  expect_error(8, 22, "'retriable-status' needs 'status'");
  expect_error(8, 42, "backoff 'base' (1s) must not exceed 'max' (10ms)");
  expect_error(11, 24, "'path' must start with '/'");
  expect_error(11, 36, "'host' is matched without the port");
  expect_error(12, 18, "'status' only applies when 'on' lists 'retriable-status'");
  expect_error(14, 50, "lb 'maglev' needs 'hash'");
  cr_assert_eq(errs.n, 7);
}

Test(config, duplicate_keys_and_missing_sections) {
  parse("drain_timeout: 1s\n"
        "drain_timeout: 2s\n"
        "listeners: []\n");
  cr_assert_null(cfg);
  expect_error(2, 1, "duplicate key 'drain_timeout' (first given at line 1)");
  expect_error(3, 12, "'listeners' needs at least 1 entry");
  cr_assert_eq(errs.n, 2);
  teardown();
  parse("workers: 2\n");
  cr_assert_null(cfg);
  expect_error(1, 1, "top level: missing required key 'listeners'");
  teardown();
  parse("listeners: [{ name: a, address: 127.0.0.1:8001 }]\n");
  cr_assert_null(cfg);
  expect_error(1, 13, "listener: missing required key 'routes'");
}

Test(config, anchors_and_extension_keys) {
  parse("x-route: &route { name: r1, cluster: c1, timeout: 3s }\n"
        "x-limits: &limits { max_body_bytes: 1MiB }\n"
        "listeners:\n"
        "  - { name: in, address: 127.0.0.1:8001, limits: *limits, routes: [*route] }\n"
        "  - { name: in2, address: 127.0.0.1:8002, limits: *limits, routes: [{ name: r2, cluster: c1 }] }\n"
        "clusters: [{ name: c1, endpoints: [127.0.0.1:9001] }]\n");
  dump_errors();
  cr_assert_not_null(cfg);
  cr_assert_eq(cfg->listeners[0].routes[0].timeout_ms, 3000);
  cr_assert_eq(cfg->listeners[1].limits.max_body_bytes, 1u << 20);
  teardown();
  /* an extension key is only ignored at the top level */
  parse(BASE "log: { x-note: hi }\n");
  cr_assert_null(cfg);
  expect_error(8, 8, "unknown key 'x-note' in log");
}

Test(config, yaml_syntax_error_position) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "   routes: []\n");
  cr_assert_null(cfg);
  cr_assert_eq(errs.n, 1);
  expect_error(
      4, 4,
      "YAML syntax error: did not find expected '-' indicator (while parsing a block collection started at line 2, column 3)");
  teardown();
  parse("log: { level: info\n");
  cr_assert_null(cfg);
  cr_assert_eq(errs.n, 1);
  expect_error(2, 1, "YAML syntax error");
  teardown();
  parse("");
  cr_assert_eq(errs.n, 1);
  cr_assert_str_eq(errs.items[0], "t.yaml: the configuration is empty");
}

Test(config, many_errors_in_one_pass) {
  parse("workers: zero\n"        /* 1 */
        "drain_timeout: 5\n"     /* 2 */
        "log: { level: loud }\n" /* 3 */
        "listeners:\n"
        "  - name: in\n"
        "    address: nowhere\n"                /* 4 */
        "    limits: { max_body_bytes: 1MB }\n" /* 5 */
        "    routes:\n"
        "      - { name: r1, cluster: c2, timout: 1s }\n" /* 6, 7 */
        "      - { name: r1, cluster: c1 }\n"             /* 8 */
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001], lb: fastest }\n"); /* 9 */
  cr_assert_null(cfg);
  cr_assert_eq(errs.n, 9);
  /* sorted by position */
  cr_assert(strncmp(errs.items[0], "t.yaml:1:", 9) == 0);
  cr_assert(strncmp(errs.items[8], "t.yaml:12:", 10) == 0);
  expect_error(9, 34, "unknown key 'timout' in route; did you mean 'timeout'?");
}

Test(config, tls_rules_and_redaction) {
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    tls: { cert: c.pem, key: secret-key.pem, allowed_identities: [spiffe://x] }\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001], tls: { ca: ca.pem, cert: c.pem } }\n");
  cr_assert_null(cfg);
  expect_error(4, 46, "'allowed_identities' needs 'client_ca'");
  expect_error(7, 51, "'cert' and 'key' go together");
  cr_assert_eq(errs.n, 2);
  teardown();

  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    tls: { cert: c.pem, key: secret-key.pem }\n"
        "    routes: [{ name: r1, cluster: c1 }]\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001], tls: { cert: c.pem, key: other-secret.pem } }\n");
  cr_assert_not_null(cfg);
  px_buf_t b = {0};
  px_config_to_json(cfg, &b);
  px_buf_append(&b, "", 1);
  cr_assert_null(strstr(b.data, "secret"), "%s", b.data);
  cr_assert_not_null(strstr(b.data, "\"cert\":\"c.pem\",\"key\":\"[redacted]\""), "%s", b.data);
  px_buf_free(&b);
}

Test(config, json_shows_effective_config) {
  parse(spec_example);
  cr_assert_not_null(cfg);
  px_buf_t b = {0};
  px_config_to_json(cfg, &b);
  px_buf_append(&b, "", 1);
  const char *want[] = {
      "{\"workers\":\"auto\",\"drain_timeout\":\"10s\",\"admin\":{\"address\":\"127.0.0.1:15000\"}",
      "\"log\":{\"level\":\"info\",\"format\":\"text\",\"access_log\":\"stdout\"}",
      "\"propagation\":[\"w3c\",\"b3\"]",
      "\"limits\":{\"max_header_bytes\":\"64KiB\",\"max_body_bytes\":\"8MiB\"",
      "\"methods\":[\"GET\",\"POST\"],\"headers\":{\"x-debug\":\"1\"}",
      "\"on\":[\"connect-failure\",\"reset\",\"timeout\",\"gateway-error\",\"retriable-status\"],\"status\":[409]",
      "\"backoff\":{\"base\":\"25ms\",\"max\":\"250ms\"}",
      "\"split\":[{\"cluster\":\"shortener-v1\",\"weight\":90,\"canary\":false}",
      "\"hash\":{\"header\":\"x-user-id\"}",
      "\"circuit_breaker\":{\"consecutive_failures\":5,\"failure_rate\":{\"threshold\":0.5,\"window\":\"10s\"",
      ("\"name\":\"local\",\"endpoints\":[\"127.0.0.1:9001\"],\"discovery\":null,\"lb\":\"round_robin\","
       "\"hash\":null,"
       "\"connect_timeout\":\"1s\""),
      "\"circuit_breaker\":null,\"health_check\":null,\"tls\":null}",
      "\"key\":\"[redacted]\"",
  };
  for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
    cr_assert_not_null(strstr(b.data, want[i]), "missing %s in %s", want[i], b.data);
  cr_assert_null(strstr(b.data, "k.pem"));
  px_buf_free(&b);
}

Test(config, route_without_retry_json) {
  parse(BASE);
  cr_assert_not_null(cfg);
  px_buf_t b = {0};
  px_config_to_json(cfg, &b);
  px_buf_append(&b, "", 1);
  cr_assert_not_null(strstr(b.data, "\"retry\":{\"attempts\":2,\"on\":[\"connect-failure\"]"), "%s", b.data);
  cr_assert_not_null(strstr(b.data, "\"match\":{\"prefix\":\"/\",\"path\":null"), "%s", b.data);
  cr_assert_not_null(strstr(b.data, "\"canary\":null,\"fault\":null"), "%s", b.data);
  cr_assert_not_null(strstr(b.data, "\"tracing\":null"), "%s", b.data);
  cr_assert_not_null(strstr(b.data, "\"access_log\":\"off\""), "%s", b.data);
  px_buf_free(&b);
}

Test(config, durations) {
  uint64_t ms;
  cr_assert_eq(px_parse_duration_ms("250ms", &ms), 0);
  cr_assert_eq(ms, 250);
  cr_assert_eq(px_parse_duration_ms("2s", &ms), 0);
  cr_assert_eq(ms, 2000);
  cr_assert_eq(px_parse_duration_ms("5m", &ms), 0);
  cr_assert_eq(ms, 300000);
  cr_assert_eq(px_parse_duration_ms("24h", &ms), 0);
  cr_assert_eq(ms, 86400000);
  cr_assert_eq(px_parse_duration_ms("1m30s", &ms), 0);
  cr_assert_eq(ms, 90000);
  cr_assert_eq(px_parse_duration_ms("0s", &ms), 0);
  cr_assert_eq(ms, 0);
  const char *bad[] = {"", "10", "1.5s", "s", "-1s", "10 s", "1d", "10sec", "1m30", "99999999999999999999h"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert_eq(px_parse_duration_ms(bad[i], &ms), -1, "%s accepted", bad[i]);
}

Test(config, sizes) {
  size_t n;
  cr_assert_eq(px_parse_size("512", &n), 0);
  cr_assert_eq(n, 512);
  cr_assert_eq(px_parse_size("512B", &n), 0);
  cr_assert_eq(n, 512);
  cr_assert_eq(px_parse_size("64KiB", &n), 0);
  cr_assert_eq(n, 65536);
  cr_assert_eq(px_parse_size("8MiB", &n), 0);
  cr_assert_eq(n, 8u << 20);
  cr_assert_eq(px_parse_size("1GiB", &n), 0);
  cr_assert_eq(n, 1u << 30);
  const char *bad[] = {"",   "64KB", "64kb",   "8M",   "1.5MiB",
                       "-1", "KiB",  "64 KiB", "1TiB", "99999999999999999999"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    cr_assert_eq(px_parse_size(bad[i], &n), -1, "%s accepted", bad[i]);
}

Test(config, load_missing_file) {
  cfg = px_config_load("/nonexistent/outrigger.yaml", &errs);
  cr_assert_null(cfg);
  cr_assert_eq(errs.n, 1);
  cr_assert_str_eq(errs.items[0], "/nonexistent/outrigger.yaml: cannot read: No such file or directory");
}

/* config/example.yaml is the commented reference configuration: it must stay valid.
 * Unit tests get no PX_SOURCE_DIR, so find the repository from this file's path. */
Test(config, example_yaml_is_valid) {
  char path[4096];
  snprintf(path, sizeof(path), "%s", __FILE__);
  char *tests = strstr(path, "/tests/unit/test_config.c");
  cr_assert_not_null(tests, "unexpected __FILE__ %s", __FILE__);
  strcpy(tests, "/config/example.yaml");
  cfg = px_config_load(path, &errs);
  dump_errors();
  cr_assert_not_null(cfg);
  cr_assert_eq(errs.n, 0);
  cr_assert_geq(cfg->nlisteners, 2);
}

/* SPEC §12: registry.etcd, a listener's register, a cluster's discovery. */
Test(config, registry_register_and_discovery) {
  parse(
      "registry:\n"
      "  etcd: { endpoints: [http://127.0.0.1:2379, \"http://[::1]:22379/\"], prefix: /mesh/, timeout: 500ms }\n"
      "listeners:\n"
      "  - name: in\n"
      "    address: 127.0.0.1:8001\n"
      "    register: { service: shortener, ttl: 5s, labels: { version: v1, zone: a }, weight: 3 }\n"
      "    routes:\n"
      "      - { name: r1, cluster: v2 }\n"
      "  - name: out\n"
      "    address: 0.0.0.0:8002\n"
      "    register: { service: edge, address: 127.0.0.1:8002 }\n"
      "    routes:\n"
      "      - { name: r2, cluster: v2 }\n"
      "clusters:\n"
      "  - { name: v2, discovery: { service: shortener, labels: { version: v2 } } }\n");
  if (!cfg) dump_errors();
  cr_assert_not_null(cfg);
  cr_expect(cfg->has_registry);
  cr_expect_eq(cfg->etcd.endpoints.n, 2);
  cr_expect_str_eq(cfg->etcd.prefix, "/mesh", "the prefix is kept without its trailing slash");
  cr_expect_eq(cfg->etcd.timeout_ms, 500);
  const px_register_conf_t *r = &cfg->listeners[0].reg;
  cr_expect(cfg->listeners[0].has_register);
  cr_expect_str_eq(r->service, "shortener");
  cr_expect_null(r->address.text, "the listener's address is the default");
  cr_expect_eq(r->ttl_ms, 5000);
  cr_expect_eq(r->weight, 3);
  cr_assert_eq(r->labels.n, 2);
  cr_expect_str_eq(r->labels.items[1].key, "zone");
  cr_expect_str_eq(r->labels.items[1].value, "a");
  cr_expect_eq(cfg->listeners[1].reg.ttl_ms, 10000, "ttl defaults to 10s");
  cr_expect_eq(cfg->listeners[1].reg.weight, 1);
  cr_expect(cfg->clusters[0].has_discovery);
  cr_expect_eq(cfg->clusters[0].nendpoints, 0);
  cr_expect_str_eq(cfg->clusters[0].discovery.labels.items[0].value, "v2");
  px_buf_t j = {0};
  px_config_to_json(cfg, &j);
  px_buf_append(&j, "", 1);
  cr_expect(strstr(j.data, "\"discovery\":{\"service\":\"shortener\",\"labels\":{\"version\":\"v2\"}}"), "%s",
            j.data);
  cr_expect(strstr(j.data, "\"prefix\":\"/mesh\""), "%s", j.data);
  px_buf_free(&j);
  teardown();
  /* Without a registry block: null in GET /config, and default prefix when given. */
  parse(BASE);
  cr_assert_not_null(cfg);
  cr_expect(!cfg->has_registry);
  teardown();
  parse("registry: { etcd: { endpoints: [http://127.0.0.1:2379] } }\n" BASE);
  cr_assert_not_null(cfg);
  cr_expect_str_eq(cfg->etcd.prefix, "/outrigger");
  cr_expect_eq(cfg->etcd.timeout_ms, 2000);
}

Test(config, registry_errors) {
  parse("registry:\n"
        "  etcd: { endpoints: [https://127.0.0.1:2379, http://etcd.example:2379, http://127.0.0.1:2379,\n"
        "                      http://127.0.0.1:2379], prefix: mesh }\n"
        "listeners:\n"
        "  - name: in\n"
        "    address: 0.0.0.0:8001\n"
        "    register: { service: short/ener, ttl: 1500ms, labels: { v: [1] }, weight: 200 }\n"
        "    routes:\n"
        "      - { name: r1, cluster: c1 }\n"
        "clusters:\n"
        "  - { name: c1, endpoints: [127.0.0.1:9001], discovery: { service: s } }\n"
        "  - { name: c2 }\n"
        "  - { name: c3, discovery: { labels: { a: b } } }\n");
  cr_assert_null(cfg);
  expect_error(2, 23, "https is not supported");
  expect_error(2, 47, "'endpoints': 'http://etcd.example:2379'");
  expect_error(3, 23, "'http://127.0.0.1:2379' is listed twice");
  expect_error(3, 55, "'prefix' must start with '/'");
  expect_error(7, 26, "'service': 'short/ener' must be");
  expect_error(7, 43, "'ttl' must be whole seconds");
  expect_error(7, 64, "'labels': value of 'v' must be a string");
  expect_error(7, 79, "'weight'");
  expect_error(7, 26, "'register' needs an 'address': the listener's '0.0.0.0:8001' is a wildcard");
  expect_error(11, 46, "'discovery' and 'endpoints' exclude each other");
  expect_error(12, 5, "a cluster needs 'endpoints' or 'discovery'");
  expect_error(13, 28, "discovery: missing required key 'service'");
  teardown();
  /* register and discovery need the registry. */
  parse("listeners:\n"
        "  - name: in\n"
        "    address: 127.0.0.1:8001\n"
        "    register: { service: s }\n"
        "    routes:\n"
        "      - { name: r1, cluster: c1 }\n"
        "clusters:\n"
        "  - { name: c1, discovery: { service: s } }\n");
  cr_assert_null(cfg);
  expect_error(4, 26, "'register' needs a top-level 'registry: { etcd: { endpoints: [...] } }'");
  expect_error(8, 39, "'discovery' needs a top-level 'registry");
  teardown();
  parse("registry: { etcd: { prefix: /x } }\n" BASE);
  cr_assert_null(cfg);
  expect_error(1, 19, "etcd: missing required key 'endpoints'");
}
