/* The inbound idempotency filter (SPEC §5, listener `idempotency`), per
 * draft-ietf-httpapi-idempotency-key-header: the first request with a key runs, and its
 * answer is kept; a repeat with the same fingerprint gets that answer again with
 * `idempotent-replayed: true`; a repeat while the first runs gets 409, the key with
 * another request 422; a malformed key (or none, under `required`) 400. The rules are
 * idempotency.c's, the entries idem_store.c's; this file adapts them to a request.
 *
 * A repeat of a request with a body is decided once its body is read and hashed here
 * (px_req_absorb_body): the answer depends on it. The first request's body is hashed
 * as it goes upstream, its answer copied as it goes to the client (body taps), and the
 * entry completed or released in the end hook, however the request ends: a client that
 * goes away never leaves its key stuck at 409.
 *
 * Keys are scoped by the listener (one store each) and by the client: the SHA-256 of
 * its Authorization header, or none (mTLS identities once TLS lands). */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "idem_store.h"
#include "idempotency.h"
#include "log.h"
#include "request.h"

/* Each store holds at most this many bytes of keys and answers; with 16 shards a shard
 * has 4 MiB, room for 64 answers of the largest max_response_bytes (64 KiB) at least. */
#define PX_IDEM_STORE_BYTES (64u << 20)
#define PX_IDEM_SHARDS 16

/* ---- one store per listener name, for the process's life --------------------------- */

typedef struct idem_reg_s {
  char *listener;
  px_idem_store_t *store;
  struct idem_reg_s *next;
} idem_reg_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static idem_reg_t *reg;

/* The store of listener `lc` (made on first use, kept across reloads; a changed
 * max_entries applies from the next start). */
static px_idem_store_t *store_of(const px_listener_conf_t *lc) {
  pthread_mutex_lock(&reg_mu);
  idem_reg_t *e = reg;
  while (e && strcmp(e->listener, lc->name) != 0) e = e->next;
  if (!e) {
    e = px_calloc(1, sizeof(*e));
    e->listener = px_strdup(lc->name);
    e->store = px_idem_store_mem_new(lc->idempotency.max_entries, PX_IDEM_STORE_BYTES, PX_IDEM_SHARDS);
    e->next = reg;
    reg = e;
  }
  pthread_mutex_unlock(&reg_mu);
  return e->store;
}

/* The stores' families, each whole before the next (the text format wants a family's
 * samples together); a series for each listener whose store exists (made by its first
 * keyed request). */
void px_idem_stores_render(px_buf_t *out) {
  static const struct {
    const char *name, *type, *help;
    size_t off; /* the figure in px_idem_store_stats_t */
  } fam[] = {
      {"outrigger_idempotency_bytes", "gauge", "Bytes of keys and kept answers an idempotency store holds.",
       offsetof(px_idem_store_stats_t, bytes)},
      {"outrigger_idempotency_stored_total", "counter", "Answers kept for their Idempotency-Key.",
       offsetof(px_idem_store_stats_t, stored)},
      {"outrigger_idempotency_evictions_total", "counter",
       "Kept answers dropped before their ttl to make room (least recently used first).",
       offsetof(px_idem_store_stats_t, evictions)},
      {"outrigger_idempotency_expired_total", "counter", "Kept answers dropped once their ttl had passed.",
       offsetof(px_idem_store_stats_t, expired)},
      {"outrigger_idempotency_full_total", "counter",
       "Keyed requests that ran unprotected: the store had no room for their entry.",
       offsetof(px_idem_store_stats_t, full)},
  };
  px_buf_t lv = {0};
  pthread_mutex_lock(&reg_mu);
  size_t n = 0;
  for (idem_reg_t *e = reg; e; e = e->next) n++;
  px_idem_store_stats_t *st = px_calloc(n ? n : 1, sizeof(*st));
  n = 0;
  for (idem_reg_t *e = reg; e; e = e->next) px_idem_store_stats(e->store, &st[n++]);

  px_metrics_family(out, "outrigger_idempotency_entries", "gauge",
                    "Inbound idempotency entries held, by listener and state (in_flight, completed).");
  n = 0;
  for (idem_reg_t *e = reg; e; e = e->next, n++) {
    const char *l = px_metrics_esc(&lv, e->listener);
    px_buf_printf(out,
                  "outrigger_idempotency_entries{listener=\"%s\",state=\"in_flight\"} %llu\n"
                  "outrigger_idempotency_entries{listener=\"%s\",state=\"completed\"} %llu\n",
                  l, (unsigned long long)st[n].in_flight, l,
                  (unsigned long long)(st[n].entries - st[n].in_flight));
  }
  for (size_t f = 0; f < PX_ARRAY_SIZE(fam); f++) {
    px_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    n = 0;
    for (idem_reg_t *e = reg; e; e = e->next, n++) {
      uint64_t v;
      memcpy(&v, (const char *)&st[n] + fam[f].off, sizeof(v));
      px_buf_printf(out, "%s{listener=\"%s\"} %llu\n", fam[f].name, px_metrics_esc(&lv, e->listener),
                    (unsigned long long)v);
    }
  }
  pthread_mutex_unlock(&reg_mu);
  free(st);
  px_buf_free(&lv);
}

void px_idem_stores_free(void) {
  pthread_mutex_lock(&reg_mu);
  while (reg) {
    idem_reg_t *e = reg;
    reg = e->next;
    px_idem_store_destroy(e->store);
    free(e->listener);
    free(e);
  }
  pthread_mutex_unlock(&reg_mu);
}

/* ---- the filter --------------------------------------------------------------------- */

/* A keyed request's part, on the heap: keyed requests are few, and this is large. The
 * key comes last, so that a block used again is cleared up to it (req_new). */
typedef struct {
  px_idem_store_t *store;
  size_t keylen;
  uint64_t token;              /* ours: the request runs and its answer may be kept */
  const px_idem_record_t *rec; /* a kept answer, to compare the body with */
  px_idem_fp_t fp;
  px_sha256_t fp_hash; /* the fingerprint's SHA-256, fed the body as it goes */
  int status, storable;
  int head_pending;   /* its header lines go into `answer` as the answer is committed */
  uint64_t announced; /* the answer's Content-Length, or 0 */
  size_t max_bytes;
  px_buf_t answer; /* its header lines, then its body, as it goes to the client */
  size_t hlen;     /* where the body starts in it */
  char key[PX_IDEM_STORE_KEY_MAX];
} idem_req_t;

typedef struct {
  idem_req_t *x;
} idem_state_t;

/* The blocks of keyed requests that ended, kept for the next ones on the same thread (a
 * worker), their answer's room with them: a keyed request then costs no calloc, malloc
 * and frees. A thread's spares go when it exits (the key's destructor). */
#define IDEM_SPARES 64
#define IDEM_ANSWER_KEEP 4096 /* bytes of answer room a spare keeps */
static __thread idem_req_t *spares[IDEM_SPARES];
static __thread int nspares, spares_owned;
static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static int spares_keyed; /* the key exists: without it, nothing is kept */

static void spares_free(void *unused) {
  (void)unused;
  while (nspares > 0) {
    idem_req_t *x = spares[--nspares];
    px_buf_free(&x->answer);
    free(x);
  }
}

static void spares_key_make(void) { spares_keyed = pthread_key_create(&spares_key, spares_free) == 0; }

static idem_req_t *req_new(void) {
  if (nspares == 0) return px_calloc(1, sizeof(idem_req_t));
  idem_req_t *x = spares[--nspares];
  px_buf_t a = x->answer;
  memset(x, 0, offsetof(idem_req_t, key));
  x->answer = (px_buf_t){a.data, 0, a.cap};
  return x;
}

static void req_put(idem_req_t *x) {
  if (nspares == IDEM_SPARES || x->answer.cap > IDEM_ANSWER_KEEP) {
    px_buf_free(&x->answer);
    free(x);
    return;
  }
  if (!spares_owned) { /* the thread's first: its exit must free them */
    pthread_once(&spares_once, spares_key_make);
    if (!spares_keyed || pthread_setspecific(spares_key, &spares_owned) != 0) {
      px_buf_free(&x->answer);
      free(x);
      return;
    }
    spares_owned = 1;
  }
  spares[nspares++] = x;
}

static const px_idempotency_conf_t *conf_of(const px_req_t *r) {
  return &r->ws->snap->listeners[r->lidx].conf->idempotency;
}

static void req_free(idem_state_t *s) {
  idem_req_t *x = s->x;
  if (!x) return;
  if (x->rec) px_idem_store_release(x->store, x->rec);
  px_sha256_discard(&x->fp_hash);
  req_put(x);
  s->x = NULL;
}

/* An outcome for the listener's outrigger_idempotency_* counters (metrics.h). */
static void count(px_req_t *r, int what) {
  int slot = r->ws->snap->listeners[r->lidx].metric_slot;
  if (slot >= 0) px_metric_inc(&r->w->metrics.idem[slot][what], 1);
}

static px_filter_rc_t refuse(px_req_t *r, idem_state_t *s, px_errkind_t kind, const char *detail) {
  if (kind == PX_ERR_IDEM_IN_FLIGHT) count(r, PX_IDEMSTAT_CONFLICT);
  if (kind == PX_ERR_IDEM_MISMATCH) count(r, PX_IDEMSTAT_MISMATCH);
  req_free(s);
  px_req_fail(r, kind, detail, NULL);
  return PX_FILTER_STOP;
}

/* The kept answer again, marked as such. */
static void replay(px_req_t *r, const px_idem_record_t *rec) {
  px_buf_t h = {0};
  px_buf_append(&h, rec->headers.p, rec->headers.n);
  px_buf_append_cstr(&h, "idempotent-replayed: true\r\n");
  count(r, PX_IDEMSTAT_REPLAYED);
  px_req_respond(r, rec->status, (px_str_t){h.data, h.len}, rec->body);
  px_buf_free(&h);
}

/* A repeat of a kept request whose body is now hashed: the same answer, or 422. */
static px_filter_rc_t decide_body(px_req_t *r, idem_state_t *s) {
  idem_req_t *x = s->x;
  px_sha256_final(&x->fp_hash, x->fp.sha);
  if (px_idem_decide_body(x->rec->fp.sha, x->fp.sha) != PX_IDEM_REPLAY)
    return refuse(r, s, PX_ERR_IDEM_MISMATCH, "the Idempotency-Key was used for a request with another body");
  replay(r, x->rec);
  req_free(s);
  return PX_FILTER_STOP;
}

static int wanted(const px_listener_conf_t *lc, const px_route_conf_t *rc) {
  (void)rc;
  return lc->idempotency.enabled;
}

static px_filter_rc_t on_request(px_req_t *r, void *state) {
  idem_state_t *s = state;
  if (s->x && s->x->rec) return decide_body(r, s); /* again, after px_req_absorb_body */
  const px_idempotency_conf_t *ic = conf_of(r);
  /* A method the listener does not cover (GETs, by default) passes, key or not: the head
   * is not searched. */
  if (px_idem_admit(ic, r->method, 1) == PX_IDEM_ADMIT_PASS) return PX_FILTER_GO;
  const px_head_t *h = &px_conn_head(r->c)->h;
  int k = -1, a = -1, dup = 0; /* one pass for both names, their lengths compared first */
  for (size_t i = 0; i < h->nh; i++) {
    uint32_t n = h->h[i].name_len;
    if (n == 15 && px_str_ieq(px_head_name(h, i), PX_STR("idempotency-key"))) {
      if (k >= 0)
        dup = 1;
      else
        k = (int)i;
    } else if (n == 13 && a < 0 && px_str_ieq(px_head_name(h, i), PX_STR("authorization"))) {
      a = (int)i;
    }
  }
  switch (px_idem_admit(ic, r->method, k >= 0)) {
  case PX_IDEM_ADMIT_PASS: return PX_FILTER_GO;
  case PX_IDEM_ADMIT_MISSING:
    return refuse(r, s, PX_ERR_IDEM_KEY_MISSING, "this listener requires an Idempotency-Key for this method");
  case PX_IDEM_ADMIT_KEYED: break;
  }
  if (dup) return refuse(r, s, PX_ERR_IDEM_KEY_INVALID, "more than one Idempotency-Key");
  idem_req_t *x = req_new();
  s->x = x;
  char *key = x->key + PX_SHA256_LEN; /* parsed into its place in the store key */
  size_t klen;
  const char *why = NULL;
  if (px_idem_key_parse(px_head_value(h, (size_t)k), key, &klen, &why) != PX_IDEM_KEY_OK)
    return refuse(r, s, PX_ERR_IDEM_KEY_INVALID, why ? why : "the Idempotency-Key is malformed");

  px_idem_scope_t scope;
  if (a >= 0)
    px_idem_scope_authorization(px_head_value(h, (size_t)a), &scope);
  else
    px_idem_scope_none(&scope);
  px_listener_rt_t *lrt = &r->ws->snap->listeners[r->lidx];
  x->store = atomic_load_explicit(&lrt->idem_store, memory_order_acquire);
  if (PX_UNLIKELY(!x->store)) { /* the registry's lock once per listener of a snapshot */
    x->store = store_of(lrt->conf);
    atomic_store_explicit(&lrt->idem_store, x->store, memory_order_release);
  }
  x->keylen = px_idem_store_key(&scope, key, klen, x->key);
  x->max_bytes = ic->max_response_bytes;
  const char *mn = llhttp_method_name((llhttp_method_t)r->method);
  px_str_t method = {mn, strlen(mn)}, target = {h->base + h->url_off, h->url_len};
  x->fp.head = px_idem_fp_head(method, target);

  px_idem_begin_t out;
  px_str_t skey = {x->key, x->keylen};
  switch (px_idem_store_begin(x->store, skey, x->fp.head, uv_now(&r->w->loop), &out)) {
  case PX_IDEM_STORE_BEGUN:
    x->token = out.token;
    px_idem_fp_start(&x->fp_hash, method, target);
    r->tap_body = 1;
    return PX_FILTER_GO;
  case PX_IDEM_STORE_IN_FLIGHT:
    if (px_idem_decide_head(PX_IDEM_FOUND_IN_FLIGHT, out.head, x->fp.head) == PX_IDEM_MISMATCH)
      return refuse(r, s, PX_ERR_IDEM_MISMATCH, "the Idempotency-Key is in use by another request");
    return refuse(r, s, PX_ERR_IDEM_IN_FLIGHT, "a request with this Idempotency-Key is still running");
  case PX_IDEM_STORE_COMPLETED:
    x->rec = out.rec;
    if (px_idem_decide_head(PX_IDEM_FOUND_COMPLETED, out.rec->fp.head, x->fp.head) == PX_IDEM_MISMATCH)
      return refuse(r, s, PX_ERR_IDEM_MISMATCH, "the Idempotency-Key was used for another request");
    px_idem_fp_start(&x->fp_hash, method, target);
    r->tap_body = 1;
    px_req_absorb_body(r); /* then on_request again, which decides */
    return PX_FILTER_STOP;
  case PX_IDEM_STORE_FULL:
  default:
    /* No room: the request runs unprotected rather than failing (counted). */
    px_warn("inbound idempotency store of listener %s is full: a keyed request runs without protection",
            r->ws->snap->listeners[r->lidx].conf->name);
    req_free(s);
    return PX_FILTER_GO;
  }
}

static void on_request_body(px_req_t *r, void *state, px_str_t run) {
  (void)r;
  idem_state_t *s = state;
  if (s->x) px_sha256_update(&s->x->fp_hash, run.p, run.n);
}

static px_filter_rc_t on_response_head(px_req_t *r, void *state) {
  idem_state_t *s = state;
  idem_req_t *x = s->x;
  if (!x || !x->token) return PX_FILTER_GO;
  const px_head_t *h = px_try_head(&r->t);
  px_idem_store_prefetch(x->store, (px_str_t){x->key, x->keylen}, x->token); /* for complete */
  x->status = h->status;
  x->answer.len = x->hlen = 0;
  x->announced = h->content_length > 0 ? (uint64_t)h->content_length : 0;
  x->storable = px_idem_response_storable(x->status, 0, x->announced, x->max_bytes);
  x->head_pending = x->storable;
  if (x->storable) {
    /* The replay frames itself: what is kept are the end-to-end header lines, which the
     * answer's head for the client writes here too (px_resp_rewrite_t.keep). */
    px_buf_reserve(&x->answer, 512);
    r->keep_head = &x->answer;
    r->tap_response = r->t.tap = 1;
  }
  return PX_FILTER_GO;
}

/* Once the answer is committed, its kept header lines are whole: the body starts there. */
static void head_in(idem_req_t *x) {
  if (!x->head_pending) return;
  x->head_pending = 0;
  x->hlen = x->answer.len;
  if (!px_idem_response_storable(x->status, x->hlen, x->announced, x->max_bytes)) x->storable = 0;
}

static void on_response_body(px_req_t *r, void *state, px_str_t run) {
  (void)r;
  idem_req_t *x = ((idem_state_t *)state)->x;
  if (!x || !x->storable) return;
  head_in(x);
  if (!x->storable) return;
  if (!px_idem_response_storable(x->status, x->hlen, x->answer.len - x->hlen + run.n, x->max_bytes)) {
    x->storable = 0; /* too large to keep after all */
    return;
  }
  px_buf_append(&x->answer, run.p, run.n);
}

/* Keeps the answer under its key: only the upstream's whole answer, for the whole
 * request body. */
static void complete(px_req_t *r, idem_req_t *x) {
  px_str_t skey = {x->key, x->keylen};
  px_sha256_final(&x->fp_hash, x->fp.sha);
  int rc = px_idem_store_complete(
      x->store, skey, x->token, &x->fp, x->status, (px_str_t){x->answer.data, x->hlen},
      (px_str_t){x->answer.data + x->hlen, x->answer.len - x->hlen}, conf_of(r)->ttl_ms, uv_now(&r->w->loop));
  if (rc < 0) px_debug("idempotency: the answer for a key was not kept: %s", px_strerror(rc));
  x->token = 0;
}

/* Ends the request's in-flight entry: its answer is kept when the upstream's answer is
 * whole (`resp_done`), storable, and for the whole request body; otherwise the key is
 * freed. */
static void finish(px_req_t *r, idem_req_t *x, int resp_done) {
  if (!x->token) return;
  head_in(x);
  if (x->storable && resp_done && r->c->body_done) {
    complete(r, x);
  } else {
    px_idem_store_abort(x->store, (px_str_t){x->key, x->keylen}, x->token);
    x->token = 0;
  }
}

/* The answer is whole and its last bytes are about to go: the entry ends first, kept or
 * freed, so a client that repeats the request the moment it has the answer is replayed
 * it or runs again (never a 409 for a request that already ended). */
static void on_response_done(px_req_t *r, void *state) {
  idem_req_t *x = ((idem_state_t *)state)->x;
  if (x) finish(r, x, 1);
}

/* However the request ended: a whole answer dropped on purpose by a fault is kept too;
 * anything else that ends a request before its answer is whole frees the key. */
static void on_end(px_req_t *r, void *state) {
  idem_state_t *s = state;
  if (!s->x) return;
  finish(r, s->x, r->t.resp_done);
  req_free(s);
}

const px_filter_t px_filter_idempotency = {.name = "idempotency",
                                           .state_size = sizeof(idem_state_t),
                                           .wanted = wanted,
                                           .on_request = on_request,
                                           .on_response_head = on_response_head,
                                           .on_response_done = on_response_done,
                                           .on_end = on_end,
                                           .on_request_body = on_request_body,
                                           .on_response_body = on_response_body};
