#include "telemetry.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "accesslog.h"
#include "span.h"
#include "trace.h"

static const px_config_t *cfg_of(const px_req_t *r) { return r->ws->snap->cfg; }
static const px_listener_conf_t *lconf(const px_req_t *r) { return r->ws->snap->listeners[r->lidx].conf; }
static px_str_t cstr(const char *s) { return s ? (px_str_t){s, strlen(s)} : (px_str_t){"", 0}; }

/* Spans are recorded only for a sampled trace that has somewhere to go. */
static int recording(const px_req_t *r) {
  return r->traced && r->ws->snap->sinks.spans && (r->trace->sampled == PX_SAMPLE_YES || r->trace->debug);
}

void px__tel_begin(px_req_t *r) {
  const px_config_t *cfg = cfg_of(r);
  r->wall_us = px_span_now_us();
  r->out_base = r->c->bytes_out;
  if (!cfg->tracing.enabled || !r->tel_head) return;
  if (r->trace == NULL) r->trace = px_malloc(sizeof(*r->trace)); /* freed with the connection */
  px_trace_in_t in;
  px_http1_trace_in(&px_conn_head(r->c)->h, &in);
  px_trace_extract(&in, cfg->tracing.propagation, r->trace);
  px_trace_begin(r->trace, cfg->tracing.sample_rate, px_rand01());
  r->traced = 1;
}

/* The name Zipkin shows, low in cardinality: the method and the route (or cluster). */
static void span_name(px_span_t *s, const char *method, const char *what) {
  snprintf(s->name, sizeof(s->name), "%s %s", method, what);
}

/* The target as received, while its head is still in the read buffer (it is not once
 * the connection closed under the request). */
static px_str_t target(const px_req_t *r) {
  const px_head_t *h = &px_conn_head(r->c)->h;
  if (!r->tel_head || r->c->rbuf == NULL || h->base == NULL) return (px_str_t){"", 0};
  return (px_str_t){h->base + h->url_off, h->url_len};
}

static void span_common(const px_req_t *r, px_span_t *s) {
  px_span_init(s);
  memcpy(s->trace_id, r->trace->trace_id, 16);
  s->trace_id_64 = r->trace->trace_id_64;
  s->debug = r->trace->debug;
  PX_SPAN_SET(s->local.service, cstr(cfg_of(r)->tracing.service_name));
  px_span_set_addr(&s->local, (const struct sockaddr *)&lconf(r)->address.sa);
  const char *m = llhttp_method_name((llhttp_method_t)r->method);
  PX_SPAN_SET(s->method, cstr(m));
  px_str_t url = target(r);
  const char *q = memchr(url.p, '?', url.n);
  if (q) url.n = (size_t)(q - url.p);
  PX_SPAN_SET(s->path, url);
  if (r->route) PX_SPAN_SET(s->route, cstr(r->route->conf->name));
  if (r->cluster) PX_SPAN_SET(s->cluster, cstr(r->cluster->conf->name));
}

/* The span of the try that just ended: `retried` when another try follows it. */
static void try_span(px_req_t *r, int retried, uint64_t end_us) {
  if (!r->try_open) return;
  r->try_open = 0;
  if (!recording(r)) return;
  px_span_t *s = px_span_reserve(r->ws->snap->sinks.spans, (unsigned)r->w->id);
  if (s == NULL) return; /* the queue is full: dropped, counted */
  span_common(r, s);
  s->kind = PX_SPAN_CLIENT;
  memcpy(s->id, r->try_span, 8);
  memcpy(s->parent_id, r->trace->span_id, 8);
  s->timestamp_us = r->try_start_us;
  s->duration_us = end_us > r->try_start_us ? end_us - r->try_start_us : 1;
  s->attempt = (uint16_t)r->try_attempt;
  s->status_code = (uint16_t)r->try_status;
  const px_endpoint_t *ep = &r->cluster->eps[r->try_ep];
  PX_SPAN_SET(s->endpoint, cstr(ep->name));
  px_span_set_addr(&s->remote, (const struct sockaddr *)&ep->conf->sa);
  PX_SPAN_SET(s->remote.service, cstr(r->cluster->conf->name));
  span_name(s, llhttp_method_name((llhttp_method_t)r->method), r->cluster->conf->name);
  if (r->try_err)
    PX_SPAN_SET(s->error, cstr(px_errkind_name((px_errkind_t)(r->try_err - 1))));
  else if (r->try_status >= 500)
    snprintf(s->error, sizeof(s->error), "%d", r->try_status);
  if (retried) PX_SPAN_SET(s->decision, PX_STR("retried"));
  px_span_commit(r->ws->snap->sinks.spans, (unsigned)r->w->id);
}

void px__tel_try_start(px_req_t *r, size_t ep) {
  uint64_t now = px_span_now_us();
  if (r->try_open) try_span(r, 1, r->try_end_us ? r->try_end_us : now);
  px_trace_new_span_id(r->try_span);
  r->try_start_us = now;
  r->try_end_us = 0;
  r->try_ep = ep;
  r->try_attempt = r->attempt;
  r->try_status = r->try_err = 0;
  r->try_open = 1;
  px_trace_write_headers(r->trace, r->try_span, cfg_of(r)->tracing.propagation, &r->uhead);
}

void px__tel_try_outcome(px_req_t *r, int status, px_errkind_t kind) {
  r->try_end_us = px_span_now_us();
  r->try_status = status;
  r->try_err = status ? 0 : (int)kind + 1;
}

static void server_span(px_req_t *r, uint64_t now_us) {
  px_span_t *s = px_span_reserve(r->ws->snap->sinks.spans, (unsigned)r->w->id);
  if (s == NULL) return; /* the queue is full: dropped, counted */
  span_common(r, s);
  s->kind = PX_SPAN_SERVER;
  memcpy(s->id, r->trace->span_id, 8);
  memcpy(s->parent_id, r->trace->parent_id, 8);
  s->timestamp_us = r->wall_us;
  s->duration_us = now_us > r->wall_us ? now_us - r->wall_us : 1;
  s->status_code = (uint16_t)r->status;
  s->attempt = (uint16_t)r->attempt;
  /* The client's address as the connection keeps it (text, no port): no system call. */
  struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
  struct sockaddr_in a4 = {.sin_family = AF_INET};
  if (inet_pton(AF_INET, r->c->peer, &a4.sin_addr) == 1)
    px_span_set_addr(&s->remote, (const struct sockaddr *)&a4);
  else if (inet_pton(AF_INET6, r->c->peer, &a6.sin6_addr) == 1)
    px_span_set_addr(&s->remote, (const struct sockaddr *)&a6);
  span_name(s, llhttp_method_name((llhttp_method_t)r->method),
            r->route ? r->route->conf->name : lconf(r)->name);
  if (r->attempt > 0) PX_SPAN_SET(s->endpoint, cstr(r->cluster->eps[r->try_ep].name));
  if (r->tel_err)
    PX_SPAN_SET(s->error, cstr(px_errkind_name((px_errkind_t)(r->tel_err - 1))));
  else if (r->status >= 500)
    snprintf(s->error, sizeof(s->error), "%d", r->status);
  else if (r->status == 0)
    PX_SPAN_SET(s->error, PX_STR("the client went away before the answer"));
  px_span_commit(r->ws->snap->sinks.spans, (unsigned)r->w->id);
}

static void access_line(px_req_t *r, uint64_t now_us) {
  px_conn_t *c = r->c;
  char tid[33] = "";
  if (r->traced) px_trace_hex(r->trace->trace_id, 16, tid);
  px_access_t a = {
      .time_ns = r->wall_us * 1000,
      .duration_ns = (now_us > r->wall_us ? now_us - r->wall_us : 0) * 1000,
      .listener = cstr(lconf(r)->name),
      .route = r->route ? cstr(r->route->conf->name) : (px_str_t){"", 0},
      .method = r->tel_head ? cstr(llhttp_method_name((llhttp_method_t)r->method)) : (px_str_t){"", 0},
      .path = target(r),
      .status = r->status,
      .cluster = r->cluster ? cstr(r->cluster->conf->name) : (px_str_t){"", 0},
      .endpoint = r->attempt > 0 && r->cluster ? cstr(r->cluster->eps[r->try_ep].name) : (px_str_t){"", 0},
      .attempts = r->attempt,
      .bytes_in = r->tel_head ? px_conn_head(c)->head_bytes + c->body_in : 0,
      .bytes_out = c->bytes_out - r->out_base,
      .trace_id = cstr(tid),
      .request_id = cstr(r->rid),
      .error = r->tel_err ? cstr(px_errkind_name((px_errkind_t)(r->tel_err - 1))) : (px_str_t){"", 0},
      .client = cstr(c->peer),
  };
  (void)px_access_log_write(r->ws->snap->sinks.alog, r->w->id, &a); /* a full ring counts it */
}

void px__tel_end(px_req_t *r) {
  px_access_log_t *alog = r->ws->snap->sinks.alog;
  uint64_t now = px_span_now_us();
  if (recording(r)) {
    try_span(r, 0,
             r->try_status && !r->try_err && r->resp_started ? now : (r->try_end_us ? r->try_end_us : now));
    server_span(r, now);
  }
  r->try_open = 0;
  if (alog) access_line(r, now);
}
