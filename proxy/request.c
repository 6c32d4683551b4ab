#include "request.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proxy.h"
#include "router.h"
#include "telemetry.h"

/* A client connection and the request it serves: one allocation. */
typedef struct {
  px_conn_t c;
  px_req_t r;
  px_queue_t link; /* in w->conns */
} px_pconn_t;

static px_req_t *req_of(px_conn_t *c) { return &((px_pconn_t *)c->data)->r; }

/* The room a request's body copy (for a resend) keeps for the connection's next one. */
#define PX_REQ_BODY_KEEP 1024

/* ---- the filter chain -------------------------------------------------------------- */

/* The canary's record first (it only has an end hook, which sees every answer). Fault
 * next: a delayed or aborted request holds no cluster limit, as in Envoy, where
 * the fault filter runs before the router. Answers pass the chain backwards, so retry
 * sees one before fault may drop it (only the answer the client would get is dropped),
 * and idempotency keeps it before it is dropped: the upstream did the work, and the
 * client's retry must get that answer, not a second run. */
static const px_filter_t *const chain[] = {&px_filter_canary, &px_filter_fault, &px_filter_idempotency,
                                           &px_filter_limits, &px_filter_retry};
#define NFILTERS (sizeof(chain) / sizeof(chain[0]))
static size_t foff[NFILTERS];
static uv_once_t chain_once = UV_ONCE_INIT;

static void chain_init(void) {
  size_t off = 0;
  for (size_t i = 0; i < NFILTERS; i++) {
    foff[i] = off;
    off += (chain[i]->state_size + 15) & ~(size_t)15;
  }
  if (off > PX_FILTER_STATE_BYTES) {
    fprintf(stderr, "outrigger: the filters need %zu bytes of request state, PX_FILTER_STATE_BYTES is %d\n",
            off, PX_FILTER_STATE_BYTES);
    abort();
  }
}

static void *fstate(px_req_t *r, size_t i) { return r->fstate + foff[i]; }

/* Which filters a route wants (px_filter_t.wanted), worked out once per route of a
 * snapshot by whichever worker asks first (they all get the same answer). */
static unsigned route_filters(const px_listener_conf_t *lc, px_route_rt_t *rt) {
  unsigned m = atomic_load_explicit(&rt->filters, memory_order_acquire);
  if (PX_LIKELY(m)) return m;
  m = 1u << 31;
  for (size_t i = 0; i < NFILTERS; i++)
    if (!chain[i]->wanted || chain[i]->wanted(lc, rt->conf)) m |= 1u << i;
  atomic_store_explicit(&rt->filters, m, memory_order_release);
  return m;
}
#define ON(r, i) (((r)->filters >> (i)) & 1u)

/* ---- small helpers ------------------------------------------------------------------- */

static const px_listener_conf_t *lconf(const px_req_t *r) { return r->ws->snap->listeners[r->lidx].conf; }
static px_listener_rt_t *lrt(const px_req_t *r) { return &r->ws->snap->listeners[r->lidx]; }

static px_conn_limits_t limits_of(const px_listener_conf_t *lc) {
  return (px_conn_limits_t){.max_header_bytes = lc->limits.max_header_bytes,
                            .max_body_bytes = lc->limits.max_body_bytes,
                            .header_timeout_ms = lc->limits.header_timeout_ms,
                            .idle_timeout_ms = lc->limits.idle_timeout_ms};
}

/* ---- circuit breakers ----------------------------------------------------------------- */

/* The try's outcome for its endpoint's breaker (SPEC §6: 5xx, connect failure, reset and
 * timeout are failures), once per try. */
static void breaker_report(px_req_t *r, int failure) {
  if (!r->bk_pending) return;
  r->bk_pending = 0;
  px_cluster_t *c = r->t.cluster;
  px_endpoint_state_t *e = c->eps[r->t.ep].st;
  px_breaker_room_t room = {c->st, (int)c->neps, c->conf->breaker.max_open_percent};
  px_breaker_transition_t tr;
  px_breaker_report(&e->breaker, uv_now(&r->w->loop), failure ? PX_BREAKER_FAILURE : PX_BREAKER_SUCCESS,
                    r->bk_probe, px_breaker_room, &room, &tr);
  px_endpoint_breaker_noted(c->st, e, c->conf->name, &tr);
}

/* A try that says nothing of its endpoint (a stale pooled connection, an abandoned
 * request): a probe's slot goes back. */
static void breaker_forget(px_req_t *r) {
  if (!r->bk_pending) return;
  r->bk_pending = 0;
  if (r->bk_probe) px_breaker_release_probe(&r->t.cluster->eps[r->t.ep].st->breaker);
}

/* ---- the end hook ---------------------------------------------------------------------- */

/* The request ended, whatever way: exactly once for a request that began. */
static void req_end(px_req_t *r) {
  if (!r->active || r->ended) return;
  r->ended = 1;
  r->end_ns = px_now_ns();
  if (r->route)
    for (size_t i = NFILTERS; i-- > 0;)
      if (ON(r, i) && chain[i]->on_end) chain[i]->on_end(r, fstate(r, i));
  px_tel_end(r);
  breaker_forget(r);
  px_try_end(&r->t, 1);
  if (r->status) /* an answer went out (one the client abandoned is not counted) */
    px_metrics_request(&r->w->metrics, lrt(r)->metric_slot, r->route ? r->route->metric_slot : -1,
                       r->route ? r->cluster->metric_slot : -1, r->status, r->end_ns - r->start_ns);
  /* A small body's copy keeps its room for the connection's next request (freed with
   * the connection): a keyed POST's resend copy is then no malloc and free a request. */
  if (r->body.cap > PX_REQ_BODY_KEEP) px_buf_free(&r->body);
  r->active = 0;
}

/* The answer is written: the end hook, then the connection goes on with the next. */
static void finish(px_req_t *r) {
  req_end(r);
  px_conn_request_done(r->c, r->w->draining);
}

/* Writes what is queued for the client; finishes when that was the whole answer. */
static void flush(px_req_t *r) {
  px_conn_t *c = r->c;
  int fr = px_conn_flush(c);
  if (fr == 0 && !px_conn_writing(c)) {
    if (r->resp_done) finish(r); /* nothing was queued: the answer was out already */
  } else if (fr == 0) {
    px_try_output_blocked(&r->t);
  }
}

/* ---- the one failure path -------------------------------------------------------------- */

void px_req_fail(px_req_t *r, px_errkind_t kind, const char *detail, const char *extra) {
  px_req_fail_status(r, kind, px_errkind_status(kind), detail, extra);
}

void px_req_fail_status(px_req_t *r, px_errkind_t kind, int status, const char *detail, const char *extra) {
  px_conn_t *c = r->c;
  px_metric_inc(&r->w->metrics.errors[kind], 1);
  r->tel_err = (int)kind + 1;
  px_try_end(&r->t, 0);
  if (r->resp_started || c->closing) {
    px_conn_close(c);
    return;
  }
  /* Without a head (r->route unset and no method known), the request's fields are
   * not its own: the connection closes anyway. */
  int headless = !c->in_request;
  if (headless || !c->body_done || !r->client_keep_alive || status == 400 || status == 408 || status == 413 ||
      status == 431 || status == 501)
    c->close_after = 1;
  if (r->w->draining) c->close_after = 1;
  px_debug("%s %s: %s", c->peer, px_errkind_name(kind), detail);
  px_out_reset(&c->out);
  char more[64 + 64];
  /* The tries made before giving up are part of the answer; an HTTP/1.0 client keeps
   * its connection only when told so. */
  snprintf(more, sizeof(more), "%s%s", !c->close_after && r->minor == 0 ? "connection: keep-alive\r\n" : "",
           extra ? extra : "");
  if (r->attempt > 0 && !headless)
    snprintf(more + strlen(more), sizeof(more) - strlen(more), "x-outrigger-attempts: %d\r\n", r->attempt);
  px_http1_problem(&c->out.side, status, px_errkind_name(kind), detail, c->close_after, more);
  if (!headless && r->is_head) { /* an answer to HEAD has the head alone (RFC 9110 §9.3.2) */
    const char *e = memmem(c->out.side.data, c->out.side.len, "\r\n\r\n", 4);
    c->out.side.len = (size_t)(e - c->out.side.data) + 4;
  }
  px_out_piece(&c->out, NULL, 0, c->out.side.len);
  r->resp_started = 1;
  r->resp_done = 1;
  r->status = status;
  px_conn_deadline(c, PX_DL_ROUTE, 0);
  flush(r);
}

/* ---- tries --------------------------------------------------------------------------- */

static void on_try_head(px_try_t *t) {
  px_req_t *r = t->data;
  px_conn_t *c = r->c;
  px_tel_try_outcome(r, px_try_head(t)->status, 0);
  if (PX_UNLIKELY(r->bk_pending)) breaker_report(r, px_try_head(t)->status >= 500);
  r->keep_head = NULL;
  for (size_t i = NFILTERS; i-- > 0;)
    if (ON(r, i) && chain[i]->on_response_head &&
        chain[i]->on_response_head(r, fstate(r, i)) == PX_FILTER_STOP)
      return;
  /* The client connection closes after this answer when the client asked for it, when
   * the sidecar drains, or when the request body is not fully read (an upstream may
   * answer early): the connection then cannot be resynchronised. */
  if (!r->client_keep_alive || r->w->draining || !c->body_done) c->close_after = 1;
  px_resp_rewrite_t rw = {.client_minor = r->minor,
                          .request_is_head = r->is_head,
                          .close = c->close_after,
                          .attempts = r->attempt,
                          .cluster = r->cluster->conf->name,
                          .keep = r->keep_head};
  r->keep_head = NULL;
  r->resp_started = 1;
  r->status = px_try_head(t)->status;
  px_conn_deadline(c, PX_DL_TRY, 0); /* answered: only the route's timeout applies now */
  px_try_commit(t, &rw);             /* may finish the request: nothing of r is touched after it */
}

static void on_try_fail(px_try_t *t, px_errkind_t kind, const char *detail, int stale) {
  px_req_t *r = t->data;
  px_tel_try_outcome(r, 0, kind);
  px_conn_deadline(r->c, PX_DL_TRY, 0);
  if (stale)
    breaker_forget(r);
  else
    breaker_report(r, 1);
  px_metric_inc(&r->w->metrics.upstream_fail[r->cluster->metric_slot], 1);
  px_debug("%s: try %d to %s: %s", r->c->peer, r->attempt, r->cluster->eps[t->ep].name, detail);
  for (size_t i = 0; i < NFILTERS; i++)
    if (ON(r, i) && chain[i]->on_try_failed &&
        chain[i]->on_try_failed(r, fstate(r, i), kind, stale) == PX_FILTER_STOP)
      return;
  px_req_fail(r, kind, detail, NULL);
}

/* The filters' taps on the request body. */
static void tap_body(px_req_t *r, px_str_t d) {
  for (size_t i = 0; i < NFILTERS; i++)
    if (ON(r, i) && chain[i]->on_request_body) chain[i]->on_request_body(r, fstate(r, i), d);
}

static void on_try_resp_body_run(px_try_t *t, px_str_t d) {
  px_req_t *r = t->data;
  for (size_t i = NFILTERS; i-- > 0;)
    if (ON(r, i) && chain[i]->on_response_body) chain[i]->on_response_body(r, fstate(r, i), d);
}

static void on_try_body_run(px_try_t *t, px_str_t d) {
  px_req_t *r = t->data;
  if (PX_UNLIKELY(r->tap_body)) tap_body(r, d);
  r->body_sent += d.n;
  if (r->resendable) {
    if (r->body.len + d.n <= r->route->conf->retry.buffer_limit)
      px_buf_append(&r->body, d.p, d.n);
    else
      r->resendable = 0;
  }
}

static int on_try_body_unseen(px_try_t *t) {
  const px_req_t *r = t->data;
  return !r->resendable && !r->tap_body;
}

static void on_try_body_passed(px_try_t *t, uint64_t n) {
  px_req_t *r = t->data;
  r->body_sent += n;
}

static void on_try_done(px_try_t *t) {
  px_req_t *r = t->data;
  if (r->dropping) { /* the upstream has finished; the client gets a reset, not an answer */
    req_end(r);
    px_conn_abort(r->c);
    return;
  }
  for (size_t i = NFILTERS; i-- > 0;)
    if (ON(r, i) && chain[i]->on_response_done) chain[i]->on_response_done(r, fstate(r, i));
  r->resp_done = 1;
  flush(r);
}

static void on_try_broken(px_try_t *t, px_errkind_t kind, const char *detail) {
  px_req_t *r = t->data;
  px_tel_try_outcome(r, 0, kind);
  px_metric_inc(&r->w->metrics.upstream_fail[r->cluster->metric_slot], 1);
  if (r->dropping) {
    req_end(r);
    px_conn_abort(r->c);
    return;
  }
  px_req_fail(r, kind, detail, NULL);
}

void px_req_drop(px_req_t *r) {
  r->dropping = 1;
  /* No head is written for the client: a filter that keeps the answer gets its lines here. */
  if (r->keep_head) px_http1_end_to_end_headers(px_try_head(&r->t), r->keep_head);
  r->keep_head = NULL;
  px_conn_deadline(r->c, PX_DL_TRY, 0);
  px_try_drain(&r->t, r->is_head); /* may end the request: nothing of r is touched after it */
}

static void on_try_output(px_try_t *t) { flush(t->data); }

static const px_try_cb_t try_cb = {on_try_head,        on_try_fail,        on_try_body_run,
                                   on_try_body_unseen, on_try_body_passed, on_try_resp_body_run,
                                   on_try_done,        on_try_broken,      on_try_output};

void px_req_retry(px_req_t *r, int other) {
  px_conn_t *c = r->c;
  r->attempt++;
  int probe;
  int pick =
      px_cluster_pick(r->cluster, r->w->id, other && r->route->conf->retry.other_endpoint ? r->tried : 0,
                      r->lb_hash, r->lb_keyed, uv_now(&r->w->loop), &probe);
  if (pick == -2) {
    px_req_fail(r, PX_ERR_NO_ENDPOINT, "no endpoint of the cluster passes its health check", NULL);
    return;
  }
  if (pick < 0) {
    px_req_fail(r, PX_ERR_CIRCUIT_OPEN, "every endpoint of the cluster has its circuit breaker open", NULL);
    return;
  }
  size_t ep = (size_t)pick;
  r->bk_pending = r->cluster->conf->has_breaker;
  r->bk_probe = probe;
  if (ep < 64) r->tried |= 1ull << ep;
  r->uhead.len = r->uhead_base;
  px_tel_try_start(r, ep); /* its trace headers */
  px_http1_finish_request(&r->uhead, r->uhead.len, r->attempt);
  /* A resend: the body went out on an earlier try and is all in r->body (else it is not
   * resent); an empty chunked body goes again as its last chunk. */
  const px_buf_t *replay =
      r->attempt > 1 && (r->body_sent > 0 || (r->chunked_in && c->body_done)) ? &r->body : NULL;
  r->t.tap = r->tap_response;
  int rc = px_try_start(&r->t, r->ws, r->cluster, ep, &r->uhead, replay, r->chunked_in);
  if (rc == 0 && r->route->conf->retry.per_try_timeout_ms)
    px_conn_deadline(c, PX_DL_TRY, r->route->conf->retry.per_try_timeout_ms);
  if (rc == PX_EOVERFLOW) {
    px_metric_inc(&r->w->metrics.overflow[r->cluster->metric_slot][1], 1);
    px_req_fail(r, PX_ERR_OVERLOADED, "the cluster's max_connections and max_pending are reached",
                "x-outrigger-overloaded: true\r\n");
  } else if (rc < 0) {
    on_try_fail(&r->t, PX_ERR_CONNECT_FAILURE, "the upstream refused the connection", 0);
  }
}

int px_req_retry_after(px_req_t *r, uint64_t ms, int other) {
  px_conn_t *c = r->c;
  uint64_t route_at = c->dl[PX_DL_ROUTE], now = uv_now(c->timer.loop);
  if (route_at && now + ms >= route_at) return -1;
  if (r->t.active) { /* a held answer, which goes no further: its connection is kept when in step */
    px_conn_deadline(c, PX_DL_TRY, 0);
    px_try_discard(&r->t, r->is_head);
  }
  if (ms == 0) {
    px_req_retry(r, other);
    return 0;
  }
  r->retry_other = other;
  px_conn_deadline(c, PX_DL_BACKOFF, ms);
  return 0;
}

int px_req_add_header(px_req_t *r, px_str_t line) {
  if (r->xhdr_len + line.n + 2 > sizeof(r->xhdr)) return -1;
  memcpy(r->xhdr + r->xhdr_len, line.p, line.n);
  memcpy(r->xhdr + r->xhdr_len + line.n, "\r\n", 2);
  r->xhdr_len += line.n + 2;
  return 0;
}

void px_req_pause(px_req_t *r, uint64_t ms) { px_conn_deadline(r->c, PX_DL_BACKOFF, ms); }

static void run_request_filters(px_req_t *r);

/* Reads what has come of a body being absorbed; the chain goes on at its end. */
static void absorb(px_req_t *r) {
  px_conn_t *c = r->c;
  px_str_t d;
  px_br_result_t br;
  while ((br = px_conn_body_next(c, &d)) == PX_BR_DATA) {
    tap_body(r, d);
    px_conn_body_consumed(c);
  }
  if (br != PX_BR_END) return; /* more to come (on_body), or the connection told the request */
  r->absorbing = 0;
  run_request_filters(r);
}

void px_req_absorb_body(px_req_t *r) {
  r->absorbing = 1;
  /* The body must come within the route's timeout, as it must for a request that goes
   * upstream; forward() sets the deadline again for the upstream part. */
  px_conn_deadline(r->c, PX_DL_ROUTE, r->route->conf->timeout_ms);
  px_conn_continue(r->c); /* a client that waits for 100 Continue sends it now */
  absorb(r);
}

void px_req_respond(px_req_t *r, int status, px_str_t headers, px_str_t body) {
  px_conn_t *c = r->c;
  if (!r->client_keep_alive || !c->body_done || r->w->draining) c->close_after = 1;
  px_out_reset(&c->out);
  px_buf_t *o = &c->out.side;
  o->len = 0;
  px_buf_printf(o, "HTTP/1.1 %d %s\r\n", status, px_http_reason(status));
  px_buf_append(o, headers.p, headers.n);
  px_buf_printf(o, "content-length: %zu\r\n", body.n);
  if (c->close_after)
    px_buf_append_cstr(o, "connection: close\r\n");
  else if (r->minor == 0)
    px_buf_append_cstr(o, "connection: keep-alive\r\n");
  px_buf_append_cstr(o, "\r\n");
  if (!r->is_head) px_buf_append(o, body.p, body.n);
  px_out_piece(&c->out, NULL, 0, o->len);
  r->resp_started = r->resp_done = 1;
  r->status = status;
  px_conn_deadline(c, PX_DL_ROUTE, 0);
  flush(r);
}

/* The filters' on_request from r->fnext on (a paused one again), then upstream. */
static void forward(px_req_t *r);
static void run_request_filters(px_req_t *r) {
  for (; r->fnext < NFILTERS; r->fnext++) {
    size_t i = r->fnext;
    if (ON(r, i) && chain[i]->on_request && chain[i]->on_request(r, fstate(r, i)) == PX_FILTER_STOP) return;
  }
  forward(r);
}

/* The value of cookie `name` in the request's Cookie headers (RFC 6265 §5.4), or 0. */
static int cookie_value(const px_head_t *h, px_str_t name, px_str_t *out) {
  for (size_t i = 0; i < h->nh; i++) {
    if (!px_str_ieq(px_head_name(h, i), PX_STR("cookie"))) continue;
    px_str_t v = px_head_value(h, i);
    const char *p = v.p, *end = v.p + v.n;
    while (p < end) {
      while (p < end && (*p == ' ' || *p == ';')) p++;
      const char *eq = memchr(p, '=', (size_t)(end - p));
      const char *semi = memchr(p, ';', (size_t)(end - p));
      if (!semi) semi = end;
      if (eq && eq < semi && (size_t)(eq - p) == name.n && memcmp(p, name.p, name.n) == 0) {
        *out = (px_str_t){eq + 1, (size_t)(semi - eq - 1)};
        return 1;
      }
      p = semi;
    }
  }
  return 0;
}

/* The cluster of a split route (SPEC §7): the override header's side, else the sticky
 * key's (header or cookie), else a weighted draw. Made once a request: its retries stay
 * on the side it was given. */
static px_cluster_t *pick_split(px_req_t *r, const px_head_t *h) {
  const px_canary_conf_t *cc = &r->route->conf->canary;
  px_canary_force_t force = PX_CANARY_FORCE_NONE;
  int has_key = 0;
  px_str_t key = {NULL, 0};
  if (cc->enabled) {
    int i = px_head_find(h, cc->override_header);
    if (i >= 0) force = px_canary_override(px_head_value(h, (size_t)i));
    if (cc->sticky_header) {
      i = px_head_find(h, cc->sticky_header);
      if (i >= 0) {
        key = px_head_value(h, (size_t)i);
        has_key = 1;
      }
    } else if (cc->sticky_cookie) {
      has_key = cookie_value(h, (px_str_t){cc->sticky_cookie, strlen(cc->sticky_cookie)}, &key);
    }
  }
  return px_route_pick(r->ws->snap, r->w->id, r->route, force, has_key, has_key ? px_canary_key_hash(key) : 0,
                       has_key ? 0 : px_rand01());
}

/* The request's key for a consistent-hash cluster (cluster `hash`): header, cookie,
 * path or the client's address; a request without one is placed at random. */
static void lb_key(px_req_t *r, const px_head_t *h, px_str_t path) {
  const px_cluster_conf_t *cc = r->cluster->conf;
  r->lb_keyed = 0;
  if (cc->lb != PX_LB_RING_HASH && cc->lb != PX_LB_MAGLEV) return;
  px_str_t k = {NULL, 0};
  int found = 0;
  switch (cc->hash) {
  case PX_HASH_HEADER: {
    int i = px_head_find(h, cc->hash_name);
    if (i >= 0) {
      k = px_head_value(h, (size_t)i);
      found = 1;
    }
    break;
  }
  case PX_HASH_COOKIE: found = cookie_value(h, (px_str_t){cc->hash_name, strlen(cc->hash_name)}, &k); break;
  case PX_HASH_PATH:
    k = path;
    found = 1;
    break;
  case PX_HASH_SOURCE_IP:
    k = (px_str_t){r->c->peer, strlen(r->c->peer)};
    found = 1;
    break;
  case PX_HASH_NONE: break;
  }
  if (!found) return;
  r->lb_hash = px_lb_hash(k.p, k.n);
  r->lb_keyed = 1;
}

/* ---- a request begins ----------------------------------------------------------------- */

static void req_reset(px_req_t *r) {
  r->route = NULL;
  r->cluster = NULL;
  r->start_ns = px_now_ns();
  r->method = HTTP_GET;
  r->minor = 1;
  r->is_head = 0;
  r->client_keep_alive = 0;
  r->chunked_in = 0;
  r->resendable = 0;
  r->body.len = 0;
  r->body_sent = 0;
  r->attempt = 0;
  r->tried = 0;
  r->retry_other = 0;
  r->key_added = 0;
  r->xhdr_len = 0;
  r->fnext = 0;
  r->dropping = 0;
  r->tap_body = r->tap_response = r->absorbing = 0;
  r->bk_pending = r->bk_probe = 0;
  r->filters = 0;
  r->active = 1;
  r->ended = 0;
  r->resp_started = r->resp_done = 0;
  r->status = 0;
  r->rid[0] = '\0';
  memset(r->fstate, 0, sizeof(r->fstate));
}

/* A keep-alive connection picks up a reloaded configuration at its next request,
 * unless the reload removed its listener: then this request is served by the
 * configuration the connection started with, and the connection closes after it. */
static void pick_snapshot(px_req_t *r) {
  if (r->ws == r->w->cur) return;
  int k = px_config_listener_at(r->w->cur->snap->cfg, &lconf(r)->address.sa);
  if (k < 0) {
    r->c->close_after = 1;
    return;
  }
  px_wsnap_t *old = r->ws;
  r->ws = px__wsnap_use(r->w);
  r->lidx = (size_t)k;
  px__wsnap_release(r->w, old);
  r->c->lim = limits_of(lconf(r));
}

static void on_head(px_conn_t *c) {
  px_req_t *r = req_of(c);
  req_reset(r);
  pick_snapshot(r);
  px_tel_begin(r, 1);
  const px_listener_conf_t *lc = lconf(r);
  const px_conn_head_t *hd = px_conn_head(c);
  const px_head_t *h = &hd->h;
  r->method = h->method;
  r->minor = h->http_minor;
  r->is_head = h->method == HTTP_HEAD;
  r->client_keep_alive = hd->keep_alive;
  r->chunked_in = hd->body_mode == PX_BODY_CHUNKED;

  int host_idx = px_head_find(h, "host");
  const char *refused = px_http1_refuse(h, hd->http_major, hd->upgrade, host_idx);
  if (refused) {
    px_req_fail(r, PX_ERR_BAD_REQUEST, refused, NULL);
    return;
  }
  if (hd->body_mode < 0) {
    px_req_fail(r, hd->body_mode == -501 ? PX_ERR_NOT_IMPLEMENTED : PX_ERR_BAD_REQUEST, hd->refused, NULL);
    return;
  }
  if (hd->body_mode == PX_BODY_LENGTH && hd->content_length > lc->limits.max_body_bytes) {
    px_req_fail(r, PX_ERR_BODY_TOO_LARGE, "the request body is larger than max_body_bytes", NULL);
    return;
  }
  px_str_t url = {h->base + h->url_off, h->url_len};
  px_str_t authority = {NULL, 0}, origin = {NULL, 0};
  int absolute = px_http1_absolute_target(url, &authority, &origin);
  if (absolute < 0) {
    px_req_fail(r, PX_ERR_BAD_REQUEST, "an absolute-form target needs an authority that is host[:port]",
                NULL);
    return;
  }
  if (absolute) url = origin;
  const char *q = memchr(url.p, '?', url.n);
  px_str_t path = {url.p, q ? (size_t)(q - url.p) : url.n};
  if (path.n == 0) path = PX_STR("/"); /* "http://host" and "http://host?q" mean the root */
  px_str_t host = absolute        ? px_router_host(authority)
                  : host_idx >= 0 ? px_router_host(px_head_value(h, (size_t)host_idx))
                                  : (px_str_t){"", 0};
  int ri = px_router_match(lc, r->method, path, host, h);
  if (ri < 0) {
    px_req_fail(r, PX_ERR_NO_ROUTE, "no route of this listener matches the request", NULL);
    return;
  }
  r->route = &lrt(r)->routes[ri];
  r->filters = route_filters(lc, r->route);
  const px_route_conf_t *rc = r->route->conf;
  r->cluster = rc->nsplit ? pick_split(r, h)
                          : px_route_pick(r->ws->snap, r->w->id, r->route, PX_CANARY_FORCE_NONE, 0, 0, 0);
  if (r->cluster == NULL || r->cluster->neps == 0) {
    r->route = NULL; /* no filter has seen it: none is told it ended */
    px_req_fail(r, PX_ERR_NO_ENDPOINT, "the route has no cluster with a usable endpoint", NULL);
    return;
  }
  lb_key(r, h, path);
  r->authority = authority;
  r->origin = origin;
  run_request_filters(r);
}

/* The filters have let the request through: its head for the upstream, its first try. */
static void forward(px_req_t *r) {
  px_conn_t *c = r->c;
  const px_head_t *h = &px_conn_head(c)->h;
  const px_route_conf_t *rc = r->route->conf;
  /* A body that may never be resent, or is declared larger than the limit, is not
   * kept: it costs nothing to stream. */
  r->resendable =
      (r->key_added || px_http1_resend_safe(h, rc->retry.idempotency_key != PX_IDEMPOTENCY_KEY_OFF)) &&
      (h->content_length < 0 || (uint64_t)h->content_length <= rc->retry.buffer_limit);
  /* Room for a small body at once; a large one grows only as its bytes really arrive. */
  if (r->resendable && h->content_length > 0)
    px_buf_reserve(&r->body, (size_t)PX_MIN(h->content_length, 65536));
  px_req_rewrite_t rw = {.client_ip = c->peer,
                         .proto = "http",
                         .host_fallback = r->cluster->eps[0].name,
                         .chunked_body = r->chunked_in,
                         .authority = r->authority,
                         .origin = r->origin,
                         .drop_trace = r->traced};
  r->uhead.len = 0;
  px_http1_build_request(h, &rw, &r->uhead, r->rid);
  if (r->xhdr_len) px_buf_append(&r->uhead, r->xhdr, r->xhdr_len);
  r->uhead_base = r->uhead.len;
  px_conn_deadline(c, PX_DL_ROUTE, rc->timeout_ms);
  px_req_retry(r, 1);
}

/* ---- what the client connection tells --------------------------------------------------- */

static void on_body(px_conn_t *c) {
  px_req_t *r = req_of(c);
  if (!r->active) return;
  if (r->absorbing)
    absorb(r);
  else
    px_try_body_ready(&r->t);
}

static void on_written(px_conn_t *c) {
  px_req_t *r = req_of(c);
  if (!r->active) return;
  if (r->resp_done)
    finish(r);
  else
    px_try_output_written(&r->t);
}

static void on_error(px_conn_t *c, px_errkind_t kind, const char *detail) {
  px_req_t *r = req_of(c);
  if (!c->in_request) { /* a head that never came whole, or was refused: answered as the connection's */
    req_reset(r);
    px_tel_begin(r, 0);
  } else if (!r->active) {
    px_conn_close(c);
    return;
  }
  px_req_fail(r, kind, detail, NULL);
}

static void on_deadline(px_conn_t *c, px_dl_kind_t kind) {
  px_req_t *r = req_of(c);
  if (!r->active) return;
  if (kind == PX_DL_BACKOFF) { /* a filter's pause ended, or a retry waited out its backoff */
    if (r->t.active || r->resp_started) return;
    if (r->attempt == 0)
      run_request_filters(r);
    else
      px_req_retry(r, r->retry_other);
    return;
  }
  if (kind == PX_DL_TRY) { /* retry.per_try_timeout: this try failed; the filters decide what next */
    if (!r->t.active || r->t.committed) return;
    px_try_end(&r->t, 0);
    on_try_fail(&r->t, PX_ERR_UPSTREAM_TIMEOUT,
                "the upstream did not answer within the route's per_try_timeout", 0);
    return;
  }
  if (kind != PX_DL_ROUTE) return;
  if (r->t.active && !r->t.committed) breaker_report(r, 1); /* no answer within the route's timeout */
  if (r->absorbing) {
    px_req_fail(r, PX_ERR_REQUEST_TIMEOUT, "the request body did not arrive within the route timeout", NULL);
    return;
  }
  if (r->t.active) px_metric_inc(&r->w->metrics.upstream_fail[r->cluster->metric_slot], 1);
  px_req_fail(r, PX_ERR_UPSTREAM_TIMEOUT, "the upstream did not answer within the route timeout", NULL);
}

static void on_close(px_conn_t *c) {
  px_pconn_t *pc = c->data;
  px_req_t *r = &pc->r;
  if (r->active) req_end(r); /* its client went away, or the connection failed */
  px_queue_remove(&pc->link);
  r->w->nconns--;
  px_metric_inc(&r->w->metrics.conns_closed, 1);
}

static void on_free(px_conn_t *c) {
  px_pconn_t *pc = c->data;
  px_wctx_t *w = pc->r.w;
  px_buf_free(&pc->r.uhead);
  px_buf_free(&pc->r.body);
  free(pc->r.trace);
  px_try_free(&pc->r.t);
  px__wsnap_release(w, pc->r.ws);
  free(pc);
  w->conn_closed(w);
}

static const px_conn_handler_t handler = {on_head,     on_body,  on_written, on_error,
                                          on_deadline, on_close, on_free};

/* ---- entry points ------------------------------------------------------------------------ */

void px_proxy_accept(px_wctx_t *w, px_tp_listener_t *l, size_t listener_index) {
  uv_once(&chain_once, chain_init);
  px_pconn_t *pc = px_calloc(1, sizeof(*pc));
  px_req_t *r = &pc->r;
  r->c = &pc->c;
  r->w = w;
  r->ws = px__wsnap_use(w);
  r->lidx = listener_index;
  px_try_init(&r->t, w, &pc->c, &try_cb, r);
  px_queue_insert_tail(&w->conns, &pc->link);
  w->nconns++;
  px_metric_inc(&w->metrics.conns_accepted, 1);
  px_conn_limits_t lim = limits_of(lconf(r));
  px_conn_accept(&pc->c, l, &w->loop, &w->bufs, &handler, pc, &lim);
}

void px_proxy_drain(px_wctx_t *w) {
  px_queue_t *q = w->conns.next;
  while (q != &w->conns) {
    px_pconn_t *pc = PX_CONTAINER_OF(q, px_pconn_t, link);
    q = q->next;
    px_conn_drain(&pc->c);
  }
}

void px_proxy_close_all(px_wctx_t *w) {
  while (!px_queue_empty(&w->conns)) px_conn_close(&PX_CONTAINER_OF(w->conns.next, px_pconn_t, link)->c);
}
