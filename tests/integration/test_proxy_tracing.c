/* Tracing and the access log through the real binary (SPEC §8): the trace context a
 * client sends is continued upstream, each try with a span id of its own; spans reach a
 * fake Zipkin collector with the right parents; a collector that hangs costs the
 * traffic nothing; the access log has every field and follows a rotation. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_collector.h"
#include "harness_proxy.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define R503 "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
#define R200 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

/* An outrigger with tracing (`tracing` is the inside of its flow mapping) and
 * `route_extra` on its one route. */
static void start(tp_t *p, const char *tracing, const char *log_extra, const char *route_extra,
                  const char *ep) {
  tp_prepare(p);
  tp_launch(p,
            "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn%s }\n%s%s%s"
            "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
            "    routes:\n      - { name: r, match: { prefix: / }, cluster: c%s }\n"
            "clusters:\n  - { name: c, endpoints: [%s] }\n",
            p->admin, log_extra ? log_extra : "", tracing ? "tracing: { " : "", tracing ? tracing : "",
            tracing ? " }\n" : "", p->port, route_extra ? route_extra : "", ep);
}

static char *zipkin(const fc_t *fc) {
  static char buf[256];
  snprintf(buf, sizeof(buf),
           "service_name: edge, propagation: [w3c, b3], zipkin: \"http://127.0.0.1:%d/api/v2/spans\", "
           "flush_interval: 50ms",
           fc_port(fc));
  return buf;
}

/* What the upstream saw of one GET with `headers`: its head (FU_ECHO's body). */
static char *upstream_head(tp_t *p, const char *headers) {
  th_resp_t r;
  cr_assert_eq(th_http(p->port, "GET", "/p?q=1", headers, NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  char *h = strndup(r.body, r.body_len);
  th_resp_free(&r);
  return h;
}

/* The span of `kind` among the first n, or -1. */
static int find_span(fc_t *fc, int n, const char *kind, int attempt) {
  for (int i = 0; i < n; i++) {
    const char *k = fc_field(fc, i, "kind");
    const char *a = fc_tag(fc, i, "outrigger.attempt");
    if (k && strcmp(k, kind) == 0 && (attempt == 0 || (a && atoi(a) == attempt))) return i;
  }
  return -1;
}

Test(tracing, a_valid_context_is_continued_with_a_span_per_hop, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  fc_t *fc = fc_start(FC_OK);
  tp_t p;
  start(&p, zipkin(fc), NULL, NULL, tp_ep(u));
  char *h =
      upstream_head(&p, "traceparent: " TP "\r\ntracestate: rojo=00f067aa0ba902b7, congo=t61rcWkgMzE\r\n");
  char v[256];
  cr_assert(tp_req_header(h, "traceparent", v, sizeof(v)), "%s", h);
  cr_expect_eq(strncmp(v, "00-" TID "-", 36), 0, "trace id not kept: %s", v);
  cr_expect_str_eq(v + 52, "-01", "sampled flag not kept: %s", v);
  char client_span[17];
  snprintf(client_span, sizeof(client_span), "%.16s", v + 36);
  cr_expect_str_neq(client_span, "00f067aa0ba902b7", "the next hop's parent must be a new span");
  cr_expect_str_eq(tp_req_header(h, "tracestate", v, sizeof(v)), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  cr_expect_str_eq(tp_req_header(h, "x-b3-traceid", v, sizeof(v)), TID);
  cr_expect_str_eq(tp_req_header(h, "x-b3-spanid", v, sizeof(v)), client_span);
  cr_expect_str_eq(tp_req_header(h, "x-b3-sampled", v, sizeof(v)), "1");
  cr_expect(strstr(h, "\r\nx-request-id: "), "every request gets an x-request-id");

  cr_assert_geq(fc_wait_spans(fc, 2, 5000), 2, "spans not exported");
  int s = find_span(fc, 2, "SERVER", 0), c = find_span(fc, 2, "CLIENT", 0);
  cr_assert(s >= 0 && c >= 0);
  cr_expect_str_eq(fc_field(fc, s, "traceId"), TID);
  cr_expect_str_eq(fc_field(fc, s, "parentId"), "00f067aa0ba902b7");
  cr_expect_str_eq(fc_field(fc, c, "parentId"), fc_field(fc, s, "id"));
  cr_expect_str_eq(fc_field(fc, c, "id"), client_span);
  cr_expect_str_eq(tp_req_header(h, "x-b3-parentspanid", v, sizeof(v)), fc_field(fc, s, "id"));
  cr_expect_str_eq(fc_tag(fc, s, "http.method"), "GET");
  cr_expect_str_eq(fc_tag(fc, s, "http.path"), "/p");
  cr_expect_str_eq(fc_tag(fc, s, "http.status_code"), "200");
  cr_expect_str_eq(fc_tag(fc, s, "outrigger.route"), "r");
  cr_expect_str_eq(fc_tag(fc, c, "outrigger.cluster"), "c");
  cr_expect_str_eq(fc_tag(fc, c, "outrigger.attempt"), "1");
  const px_json_t *le = px_json_get(fc_span(fc, s), "localEndpoint");
  cr_assert(le);
  cr_expect_str_eq(px_json_str(px_json_get(le, "serviceName"), NULL), "edge");
  free(h);
  cr_assert_eq(tp_stop(&p), 0);
  fc_stop(fc);
  fu_stop(u);
}

Test(tracing, an_invalid_or_missing_context_starts_a_new_trace, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  start(&p, "propagation: [w3c]", NULL, NULL, tp_ep(u));
  char v[256], first[256] = "";
  /* Uppercase hex is not a traceparent; its tracestate goes with it. */
  char *h = upstream_head(&p, "traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01\r\n"
                              "tracestate: a=1\r\n");
  cr_assert(tp_req_header(h, "traceparent", v, sizeof(v)));
  cr_expect_eq(strlen(v), 55);
  cr_expect_neq(strncmp(v + 3, "4bf92f3577b34da6", 16), 0);
  cr_expect_null(tp_req_header(h, "tracestate", v, sizeof(v)), "an invalid context's tracestate was kept");
  cr_expect_null(tp_req_header(h, "x-b3-traceid", v, sizeof(v)), "b3 is not in propagation");
  free(h);
  for (int i = 0; i < 2; i++) { /* no context at all: a new trace each time */
    h = upstream_head(&p, NULL);
    cr_assert(tp_req_header(h, "traceparent", v, sizeof(v)));
    cr_expect_str_eq(v + 52, "-01", "sample_rate 1 samples new traces");
    cr_expect_str_neq(v, first);
    snprintf(first, sizeof(first), "%s", v);
    free(h);
  }
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

Test(tracing, b3_in_either_form_is_continued_in_every_format, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  fc_t *fc = fc_start(FC_OK);
  tp_t p;
  start(&p, zipkin(fc), NULL, NULL, tp_ep(u));
  char v[256];
  char *h = upstream_head(&p, "b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90\r\n");
  cr_expect_eq(
      strncmp(tp_req_header(h, "traceparent", v, sizeof(v)), "00-80f198ee56343ba864fe8b2a57d3eff7-", 36), 0,
      "%s", v);
  cr_expect_str_eq(tp_req_header(h, "x-b3-traceid", v, sizeof(v)), "80f198ee56343ba864fe8b2a57d3eff7");
  cr_expect_null(tp_req_header(h, "b3", v, sizeof(v)), "b3 single is not in propagation");
  free(h);
  h = upstream_head(&p,
                    "X-B3-TraceId: 463ac35c9f6413ad\r\nX-B3-SpanId: a2fb4a1d1a96d312\r\nX-B3-Sampled: 0\r\n");
  cr_expect_str_eq(tp_req_header(h, "x-b3-traceid", v, sizeof(v)), "463ac35c9f6413ad",
                   "a 64-bit id stays 64-bit");
  cr_expect_str_eq(tp_req_header(h, "x-b3-sampled", v, sizeof(v)), "0");
  cr_expect_eq(
      strncmp(tp_req_header(h, "traceparent", v, sizeof(v)), "00-0000000000000000463ac35c9f6413ad-", 36), 0,
      "%s", v);
  cr_expect_str_eq(v + 52, "-00");
  free(h);
  /* The first request's two spans arrive; the unsampled one's never do. */
  cr_expect_eq(fc_wait_spans(fc, 3, 1500), 2);
  cr_expect_str_eq(fc_field(fc, 0, "traceId"), "80f198ee56343ba864fe8b2a57d3eff7");
  int s = find_span(fc, 2, "SERVER", 0);
  cr_expect_str_eq(fc_field(fc, s, "parentId"), "e457b5a2e4d86bd1");
  cr_assert_eq(tp_stop(&p), 0);
  fc_stop(fc);
  fu_stop(u);
}

Test(tracing, retries_are_sibling_client_spans, .timeout = 30) {
  fu_t *u = fu_start(
      &(fu_opts_t){.mode = FU_SCRIPT, .script = (const char *const[]){R503, R503, R200}, .nscript = 3});
  fc_t *fc = fc_start(FC_OK);
  tp_t p;
  start(&p, zipkin(fc), NULL, ", retry: { attempts: 3, on: [5xx], backoff: { base: 5ms, max: 10ms } }",
        tp_ep(u));
  th_resp_t r;
  cr_assert_eq(th_http(p.port, "GET", "/x", "traceparent: " TP "\r\n", NULL, &r), 0);
  cr_assert_eq(r.status, 200);
  th_resp_free(&r);
  cr_assert_eq(fc_wait_spans(fc, 4, 5000), 4);
  int s = find_span(fc, 4, "SERVER", 0);
  cr_assert_geq(s, 0);
  cr_expect_str_eq(fc_tag(fc, s, "outrigger.attempt"), "3");
  const char *ids[3];
  for (int a = 1; a <= 3; a++) {
    int c = find_span(fc, 4, "CLIENT", a);
    cr_assert_geq(c, 0, "no span for try %d", a);
    cr_expect_str_eq(fc_field(fc, c, "parentId"), fc_field(fc, s, "id"),
                     "try %d is not a child of the request", a);
    cr_expect_str_eq(fc_field(fc, c, "traceId"), TID);
    ids[a - 1] = fc_field(fc, c, "id");
    /* The upstream saw this try's span as its parent. */
    char v[256];
    cr_assert(tp_req_header(fu_head(u, a - 1), "traceparent", v, sizeof(v)));
    cr_expect_eq(strncmp(v + 36, ids[a - 1], 16), 0, "try %d went with parent %s, its span is %s", a, v,
                 ids[a - 1]);
    cr_expect_str_eq(fc_tag(fc, c, "http.status_code"), a < 3 ? "503" : "200");
    if (a < 3)
      cr_expect_str_eq(fc_tag(fc, c, "outrigger.decision"), "retried");
    else
      cr_expect_null(fc_tag(fc, c, "outrigger.decision"));
  }
  cr_expect_str_neq(ids[0], ids[1]);
  cr_expect_str_neq(ids[1], ids[2]);
  cr_assert_eq(tp_stop(&p), 0);
  fc_stop(fc);
  fu_stop(u);
}

Test(tracing, sample_rate_decides_only_new_traces, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  fc_t *fc = fc_start(FC_OK);
  tp_t p;
  char t[400];
  snprintf(t, sizeof(t), "%s, sample_rate: 0", zipkin(fc));
  start(&p, t, NULL, NULL, tp_ep(u));
  char v[256];
  for (int i = 0; i < 5; i++) {
    char *h = upstream_head(&p, NULL);
    cr_expect_str_eq(tp_req_header(h, "traceparent", v, sizeof(v)) + 52, "-00");
    free(h);
  }
  char *h = upstream_head(&p, "traceparent: " TP "\r\n"); /* a sampled parent is followed */
  cr_expect_str_eq(tp_req_header(h, "traceparent", v, sizeof(v)) + 52, "-01");
  free(h);
  cr_expect_eq(fc_wait_spans(fc, 3, 1500), 2);
  cr_expect_str_eq(fc_field(fc, 0, "traceId"), TID);
  cr_assert_eq(tp_stop(&p), 0);
  fc_stop(fc);
  fu_stop(u);
}

/* A collector that takes the batch and never answers: the export times out off the
 * request path, the queue fills and drops (counted), every request is served. */
Test(tracing, a_hung_collector_costs_the_traffic_nothing, .timeout = 60) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  fc_t *fc = fc_start(FC_HANG);
  tp_t p;
  char t[400];
  snprintf(t, sizeof(t), "%s, queue_size: 16, export_timeout: 300ms", zipkin(fc));
  start(&p, t, NULL, NULL, tp_ep(u));
  int fd = th_connect(p.port);
  int64_t t0 = th_now_ms();
  for (int i = 0; i < 400; i++) {
    const char *req = "GET /x HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(th_send_all(fd, req, strlen(req)), 0);
    th_resp_t r;
    cr_assert_eq(th_read_response(fd, &r, 5000), 0, "request %d", i);
    cr_assert_eq(r.status, 200);
    th_resp_free(&r);
  }
  int64_t took = th_now_ms() - t0;
  th_close(fd);
  cr_expect_lt(took, 20000, "400 requests took %lld ms", (long long)took);
  cr_expect_gt(tp_metric(&p, "outrigger_spans_dropped_total{reason=\"queue_full\"} "), 0);
  cr_expect_eq(tp_metric(&p, "outrigger_spans_exported_total "), 0);
  fc_set_mode(fc, FC_OK); /* it recovers: later spans go through */
  th_resp_t r;
  cr_assert_eq(th_http(p.port, "GET", "/y", NULL, NULL, &r), 0);
  th_resp_free(&r);
  cr_expect_geq(fc_wait_spans(fc, 2, 5000), 2);
  cr_assert_eq(tp_stop(&p), 0);
  fc_stop(fc);
  fu_stop(u);
}

Test(tracing, without_tracing_the_context_passes_as_it_came, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  tp_t p;
  tp_start_simple(&p, NULL, NULL, tp_ep(u), NULL);
  char v[256];
  char *h = upstream_head(&p, "traceparent: " TP "\r\nb3: 0\r\n");
  cr_expect_str_eq(tp_req_header(h, "traceparent", v, sizeof(v)), TP);
  cr_expect_str_eq(tp_req_header(h, "b3", v, sizeof(v)), "0");
  free(h);
  cr_assert_eq(tp_stop(&p), 0);
  fu_stop(u);
}

/* Lines of the access log at `path`, parsed; the caller frees them. */
static int read_lines(const char *path, px_json_t **out, int max) {
  char *text = th_read_file(path, NULL);
  if (!text) return 0;
  int n = 0;
  for (char *line = text, *nl; n < max && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
    char err[128];
    out[n] = px_json_parse(line, (size_t)(nl - line), err, sizeof(err));
    cr_assert(out[n], "not JSON (%s): %.*s", err, (int)(nl - line), line);
    n++;
  }
  free(text);
  return n;
}

static int wait_lines(const char *path, int n) {
  px_json_t *l[64];
  for (int waited = 0;; waited += 20) {
    int k = read_lines(path, l, 64);
    for (int i = 0; i < k; i++) px_json_free(l[i]);
    if (k >= n || waited > 5000) return k;
    usleep(20000);
  }
}

static const char *str(const px_json_t *o, const char *k) {
  const px_json_t *v = px_json_get(o, k);
  return v && px_json_type(v) == PX_JSON_STRING ? px_json_str(v, NULL) : NULL;
}

static long num(const px_json_t *o, const char *k) {
  int64_t v = -1;
  const px_json_t *j = px_json_get(o, k);
  if (j) px_json_int(j, &v);
  return (long)v;
}

Test(access_log, a_line_per_request_and_a_new_file_after_sigusr1, .timeout = 30) {
  fu_t *u = fu_start(&(fu_opts_t){.mode = FU_ECHO});
  char *dir = th_tmpdir();
  char path[512], moved[512], log_extra[600];
  snprintf(path, sizeof(path), "%s/access.log", dir);
  snprintf(moved, sizeof(moved), "%s/access.log.1", dir);
  snprintf(log_extra, sizeof(log_extra), ", access_log: \"%s\"", path);
  tp_t p;
  start(&p, "propagation: [w3c]", log_extra, NULL, tp_ep(u));
  th_resp_t r;
  cr_assert_eq(
      th_http(p.port, "POST", "/a?x=\"1\"", "x-request-id: rid-1\r\ntraceparent: " TP "\r\n", "hello", &r),
      0);
  cr_assert_eq(r.status, 200);
  size_t out_len = r.body_len;
  th_resp_free(&r);
  cr_assert_eq(wait_lines(path, 1), 1);
  px_json_t *l[8];
  cr_assert_eq(read_lines(path, l, 8), 1);
  cr_expect_str_eq(str(l[0], "listener"), "edge");
  cr_expect_str_eq(str(l[0], "route"), "r");
  cr_expect_str_eq(str(l[0], "method"), "POST");
  cr_expect_str_eq(str(l[0], "path"), "/a?x=\"1\"");
  cr_expect_eq(num(l[0], "status"), 200);
  cr_expect_str_eq(str(l[0], "upstream_cluster"), "c");
  cr_expect_str_eq(str(l[0], "upstream_endpoint"), tp_ep(u));
  cr_expect_eq(num(l[0], "attempts"), 1);
  cr_expect_gt(num(l[0], "bytes_in"), 5);
  cr_expect_gt(num(l[0], "bytes_out"), (long)out_len);
  cr_expect_str_eq(str(l[0], "trace_id"), TID);
  cr_expect_str_eq(str(l[0], "request_id"), "rid-1");
  cr_expect_str_eq(str(l[0], "client"), "127.0.0.1");
  const char *time = str(l[0], "time");
  cr_expect(time && strlen(time) == 24 && time[10] == 'T' && time[23] == 'Z', "time %s", time);
  cr_expect(px_json_get(l[0], "duration_ms"));
  px_json_free(l[0]);

  /* logrotate: the file is moved, the sidecar told; the next line is in a new file. */
  cr_assert_eq(rename(path, moved), 0);
  kill(p.pid, SIGUSR1);
  usleep(200000);
  /* A request the sidecar answers itself: its error kind, no upstream. */
  cr_assert_eq(tp_raw(&p, "GET /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", &r), 0);
  cr_assert_eq(r.status, 400);
  th_resp_free(&r);
  cr_assert_eq(wait_lines(path, 1), 1, "no line in the new file");
  cr_assert_eq(read_lines(path, l, 8), 1);
  cr_expect_eq(num(l[0], "status"), 400);
  cr_expect_str_eq(str(l[0], "error"), "bad_request");
  cr_expect_null(str(l[0], "upstream_endpoint"));
  cr_expect_eq(num(l[0], "attempts"), 0);
  px_json_free(l[0]);
  cr_expect_eq(read_lines(moved, l, 8), 1, "the moved file changed");
  px_json_free(l[0]);
  cr_expect_eq(tp_metric(&p, "outrigger_access_log_reopens_total "), 1);
  cr_expect_eq(tp_metric(&p, "outrigger_access_log_lines_total "), 2);
  cr_assert_eq(tp_stop(&p), 0);
  th_tmpdir_remove(dir);
  fu_stop(u);
}
