/* The service registry at run time (SPEC §12); see registry_run.h. Everything here runs
 * on the main thread's loop, driven by one 100 ms tick and by the answers of the etcd
 * calls it makes (at most one call in flight per registration and per discovered
 * cluster, so no answer ever races another of the same owner). */
#include "registry_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcd_client.h"
#include "etcd_json.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "registry.h"

enum { TICK_MS = 100, RETRY_MIN_MS = 200, RETRY_MAX_MS = 2000, WARN_EVERY_MS = 10000 };

/* ---- a listener's record ------------------------------------------------------------ */

typedef struct reg_s {
  px_regrun_t *rr;
  char *listener, *service, *address;
  px_buf_t key, value; /* PREFIX/services/SERVICE/ID and the record's JSON */
  int64_t ttl_s;
  int64_t lease; /* ours, 0 when none */
  int put_done;  /* the record is written under `lease` */
  int healthy;   /* the app's health at the last tick */
  px_etcd_call_t *call;
  const char *op;   /* the call's, for logs: "grant", "put", "keepalive", "revoke" */
  uint64_t next_ms; /* no call before this (keepalive period, retry backoff) */
  unsigned backoff_ms;
  uint64_t errors;
  struct reg_s *next;
} reg_t;

/* ---- a discovered cluster ----------------------------------------------------------- */

typedef struct disc_s {
  px_regrun_t *rr;
  char *cluster, *service;
  px_labels_conf_t labels; /* the selector, copied, to compare on reload */
  px_reg_set_t *set;
  px_buf_t start, end; /* the service's key range */
  int64_t revision;    /* seen up to here: the list's header revision, then each event's */
  px_etcd_call_t *call;
  px_etcd_watch_t *watch;
  int listed;        /* a list answered since the cluster was set up */
  int need_list;     /* the next step lists (first, after a compaction or a cancelled watch) */
  int watch_up;      /* the watch has had a message: its end is its member's, not etcd's */
  int stale;         /* etcd unreachable: the endpoints are the last known */
  px_disc_ep_t *eps; /* what snapshots get */
  size_t neps;
  uint64_t next_ms;
  unsigned backoff_ms;
  uint64_t updates, skipped, relists;
  uint64_t warned_ms;
  struct disc_s *next;
} disc_t;

struct px_regrun_s {
  uv_loop_t *loop;
  px_regrun_hooks_t hooks;
  px_etcd_t *etcd;
  px_etcd_conf_t conf; /* copied: endpoints, prefix, timeout */
  reg_t *regs;
  disc_t *discs;
  uv_timer_t tick;
  int draining, closing, closed;
  uint64_t close_deadline_ms;
  void (*done)(void *data); /* px_regrun_close's */
  void *done_data;
  int up; /* the last etcd call or stream answered */
  uint64_t warned_ms;
  char hostname[256];
  char started[PX_REG_STARTED_MAX];
};

static void tick_now(px_regrun_t *rr);

/* The configuration's labels as registry.c takes them (the loader bounds their number). */
static size_t reg_labels(const px_labels_conf_t *l, px_reg_label_t out[PX_REG_MAX_LABELS]) {
  size_t n = PX_MIN(l->n, (size_t)PX_REG_MAX_LABELS);
  for (size_t i = 0; i < n; i++) out[i] = (px_reg_label_t){l->items[i].key, l->items[i].value};
  return n;
}

static void backoff(unsigned *b, uint64_t *next_ms) {
  *b = *b ? PX_MIN(*b * 2, (unsigned)RETRY_MAX_MS) : RETRY_MIN_MS;
  *next_ms = px_now_ms() + *b;
}

static void note_up(px_regrun_t *rr, int up) {
  if (up && !rr->up) px_info("registry: etcd answers again (%s)", px_etcd_member(rr->etcd));
  if (!up) {
    uint64_t now = px_now_ms();
    if (rr->up || now - rr->warned_ms >= WARN_EVERY_MS) {
      px_warn("registry: no etcd member answers; discovered clusters keep their last known endpoints");
      rr->warned_ms = now;
    }
  }
  rr->up = up;
}

/* ---- registration ------------------------------------------------------------------- */

static void reg_failed(reg_t *g, int rc, const char *what) {
  g->errors++;
  px_debug("registry: %s of %s for listener %s: %s", g->op, g->key.data, g->listener,
           what ? what : px_strerror(rc));
  backoff(&g->backoff_ms, &g->next_ms);
}

/* A lease etcd no longer has (expired while it was away, or revoked): start over. */
static void reg_lease_lost(reg_t *g) {
  if (g->lease && g->put_done)
    px_warn("registry: the lease of %s (listener %s) was gone; registering again", g->key.data, g->listener);
  g->lease = 0;
  g->put_done = 0;
  g->next_ms = 0;
}

static void on_reg_answer(void *data, int rc, int http_status, const char *body, size_t n) {
  reg_t *g = data;
  px_regrun_t *rr = g->rr;
  const char *op = g->op;
  g->call = NULL;
  note_up(rr, rc == 0);
  if (rc < 0) {
    reg_failed(g, rc, NULL);
    return;
  }
  (void)http_status;
  px_etcd_error_t err = {0};
  int64_t id = 0, ttl = 0;
  if (strcmp(op, "grant") == 0) {
    if (px_etcd_parse_lease_grant(body, n, &id, &ttl, &err) != 0) {
      reg_failed(g, PX_EUPSTREAM, err.message[0] ? err.message : "a lease grant answer that does not parse");
      return;
    }
    g->lease = id;
    g->put_done = 0;
    g->next_ms = 0;
  } else if (strcmp(op, "put") == 0) {
    if (px_etcd_parse_header(body, n, NULL, &err) != 0) {
      if (err.code == PX_ETCD_CODE_NOT_FOUND) {
        reg_lease_lost(g);
      } else {
        reg_failed(g, PX_EUPSTREAM, err.message[0] ? err.message : "a put answer that does not parse");
      }
      return;
    }
    g->put_done = 1;
    g->backoff_ms = 0;
    g->next_ms = px_now_ms() + (uint64_t)g->ttl_s * 1000 / 3;
    px_info("registry: %s registered as %s (listener %s, ttl %llds)", g->address, g->key.data, g->listener,
            (long long)g->ttl_s);
  } else if (strcmp(op, "keepalive") == 0) {
    if (px_etcd_parse_keepalive(body, n, &ttl, &err) != 0 && err.code != PX_ETCD_CODE_NOT_FOUND) {
      reg_failed(g, PX_EUPSTREAM, err.message[0] ? err.message : "a keepalive answer that does not parse");
      return;
    }
    if (ttl <= 0) {
      reg_lease_lost(g);
    } else {
      g->backoff_ms = 0;
      g->next_ms = px_now_ms() + (uint64_t)g->ttl_s * 1000 / 3;
    }
  } else { /* revoke: NOT_FOUND is as good (the lease is gone either way) */
    if (px_etcd_parse_header(body, n, NULL, &err) != 0 && err.code != PX_ETCD_CODE_NOT_FOUND) {
      reg_failed(g, PX_EUPSTREAM, err.message[0] ? err.message : "a revoke answer that does not parse");
      return;
    }
    px_info("registry: %s withdrawn (listener %s)", g->key.data, g->listener);
    g->lease = 0;
    g->put_done = 0;
    g->next_ms = 0;
  }
  tick_now(rr); /* the next step at once */
}

static void reg_call(reg_t *g, const char *op, const char *path, px_buf_t *body) {
  g->op = op;
  g->call = px_etcd_post(g->rr->etcd, path, body->data, body->len, on_reg_answer, g);
  px_buf_free(body);
}

static void reg_step(reg_t *g, uint64_t now) {
  px_regrun_t *rr = g->rr;
  if (g->call) return;
  if (g->healthy != rr->hooks.app_healthy(rr->hooks.data, g->listener)) {
    g->healthy = !g->healthy;
    px_info("registry: the app of listener %s is %s: %s", g->listener, g->healthy ? "healthy" : "unhealthy",
            g->healthy ? "registering again" : "withdrawing its record");
    g->next_ms = 0;
    g->backoff_ms = 0;
  }
  int want = !rr->draining && g->healthy;
  px_buf_t b = {0};
  if (!want) {
    if (g->lease && now >= g->next_ms) { /* withdraw: the record goes with its lease */
      px_etcd_revoke_body(&b, g->lease);
      reg_call(g, "revoke", "/v3/lease/revoke", &b);
    }
    return;
  }
  if (now < g->next_ms) return;
  if (!g->lease) {
    px_etcd_lease_grant_body(&b, g->ttl_s);
    reg_call(g, "grant", "/v3/lease/grant", &b);
  } else if (!g->put_done) {
    px_etcd_put_body(&b, g->key.data, g->key.len, g->value.data, g->value.len, g->lease);
    reg_call(g, "put", "/v3/kv/put", &b);
  } else {
    px_etcd_keepalive_body(&b, g->lease);
    reg_call(g, "keepalive", "/v3/lease/keepalive", &b);
  }
}

static reg_t *reg_new(px_regrun_t *rr, const px_listener_conf_t *l) {
  const px_register_conf_t *rc = &l->reg;
  reg_t *g = px_calloc(1, sizeof(*g));
  g->rr = rr;
  g->listener = px_strdup(l->name);
  g->service = px_strdup(rc->service);
  g->address = px_strdup(rc->address.text ? rc->address.text : l->address.text);
  g->ttl_s = (int64_t)(rc->ttl_ms / 1000);
  g->healthy = 1;
  char id[PX_REG_ID_MAX];
  px_reg_instance_id(rr->hostname, g->address, g->service, id);
  px_reg_key(&g->key, rr->conf.prefix, g->service, id);
  px_buf_append(&g->key, "", 1); /* NUL-terminated for logs; len stays the key's */
  g->key.len--;
  px_reg_label_t labels[PX_REG_MAX_LABELS];
  px_reg_record_t rec = {.weight = rc->weight, .labels = labels, .nlabels = reg_labels(&rc->labels, labels)};
  snprintf(rec.address, sizeof(rec.address), "%s", g->address);
  snprintf(rec.started, sizeof(rec.started), "%s", rr->started);
  px_reg_record_encode(&rec, &g->value);
  return g;
}

static void reg_free(reg_t *g) {
  if (g->call) px_etcd_cancel(g->call);
  free(g->listener);
  free(g->service);
  free(g->address);
  px_buf_free(&g->key);
  px_buf_free(&g->value);
  free(g);
}

/* The answer to a revoke nobody waits for (a registration a reload dropped). */
static void on_forgotten(void *data, int rc, int http_status, const char *body, size_t n) {
  (void)data, (void)rc, (void)http_status, (void)body, (void)n;
}

/* Whether a reload's listener keeps this record as it is. */
static int reg_same(const reg_t *g, const px_regrun_t *rr, const px_listener_conf_t *l) {
  if (!l->has_register || strcmp(l->name, g->listener) != 0) return 0;
  reg_t *n = reg_new((px_regrun_t *)rr, l);
  int same =
      n->ttl_s == g->ttl_s && n->key.len == g->key.len && memcmp(n->key.data, g->key.data, n->key.len) == 0;
  /* "started" is the process's, so the values compare whole. */
  same = same && n->value.len == g->value.len && memcmp(n->value.data, g->value.data, n->value.len) == 0;
  reg_free(n);
  return same;
}

/* ---- discovery ---------------------------------------------------------------------- */

static void disc_list(disc_t *d);

/* The set's matching endpoints into what snapshots get; `changed` when they differ. */
static void disc_publish(disc_t *d) {
  if (!px_reg_set_changed(d->set)) return;
  size_t n;
  const px_reg_endpoint_t *eps = px_reg_set_endpoints(d->set, &n);
  px_disc_ep_t *v = px_calloc(n ? n : 1, sizeof(*v));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (px_addr_parse(eps[i].address, &v[k].sa) != 0) continue; /* px_reg_address_check took it: never */
    px_addr_format((const struct sockaddr *)&v[k].sa, v[k].name, sizeof(v[k].name));
    v[k].weight = eps[i].weight;
    v[k].revision = eps[i].mod_revision;
    k++;
  }
  free(d->eps);
  d->eps = v;
  d->neps = k;
  d->updates++;
  px_info("registry: cluster %s has %zu endpoint%s of service %s (revision %lld)", d->cluster, k,
          k == 1 ? "" : "s", d->service, (long long)d->revision);
  d->rr->hooks.changed(d->rr->hooks.data);
}

static void disc_apply(disc_t *d, const px_reg_event_t *ev) {
  char why[160];
  if (px_reg_set_apply(d->set, ev, why, sizeof(why)) == PX_REG_SKIPPED) {
    d->skipped++;
    px_warn("registry: cluster %s: skipped the record at %.*s: %s", d->cluster, (int)PX_MIN(ev->klen, 200),
            ev->key, why);
  }
}

static void disc_unreachable(disc_t *d, const char *what) {
  if (!d->stale) {
    px_warn("registry: cluster %s: %s; keeping its %zu last known endpoint%s", d->cluster, what, d->neps,
            d->neps == 1 ? "" : "s");
  }
  d->stale = 1;
  backoff(&d->backoff_ms, &d->next_ms);
}

static void disc_watch(disc_t *d);

static void watch_over(disc_t *d, int relist) {
  px_etcd_watch_close(d->watch);
  d->watch = NULL;
  d->watch_up = 0;
  d->need_list |= relist;
  d->relists += relist;
  d->next_ms = 0;
  tick_now(d->rr);
}

static void on_watch_msg(void *data, const char *msg, size_t n) {
  disc_t *d = data;
  px_etcd_watch_msg_t m;
  px_etcd_error_t err = {0};
  int rc = px_etcd_parse_watch(msg, n, &m, &err);
  if (rc == PX_EUPSTREAM) { /* the member ends the stream ("transport is closing"): watch elsewhere */
    px_debug("registry: cluster %s: the watch's member says: %s", d->cluster, err.message);
    px_etcd_watch_msg_free(&m);
    watch_over(d, 0);
    return;
  }
  if (rc != 0 || m.canceled) {
    if (rc == 0 && m.compact_revision)
      px_info("registry: cluster %s: revision %lld was compacted (etcd keeps from %lld on); listing again",
              d->cluster, (long long)d->revision + 1, (long long)m.compact_revision);
    else
      px_info("registry: cluster %s: the watch ended (%s); listing again", d->cluster,
              rc ? "a message that does not parse" : (m.cancel_reason[0] ? m.cancel_reason : "cancelled"));
    px_etcd_watch_msg_free(&m);
    watch_over(d, 1);
    return;
  }
  d->watch_up = 1;
  note_up(d->rr, 1);
  if (d->stale) px_info("registry: cluster %s follows etcd again", d->cluster);
  d->stale = 0;
  d->backoff_ms = 0;
  for (size_t i = 0; i < m.nevents; i++) {
    const px_etcd_event_t *e = &m.events[i];
    px_reg_event_t ev = {.is_delete = e->type == PX_ETCD_DELETE,
                         .key = e->kv.key.p,
                         .klen = e->kv.key.n,
                         .value = e->kv.value.p,
                         .vlen = e->kv.value.n,
                         .mod_revision = e->kv.mod_revision};
    disc_apply(d, &ev);
    if (e->kv.mod_revision > d->revision) d->revision = e->kv.mod_revision;
  }
  /* Where a new watch resumes: the last event's revision, never the message header's
   * (a watcher still catching up sends older events under the store's current
   * revision; resuming after that would skip them). */
  px_etcd_watch_msg_free(&m);
  disc_publish(d);
}

/* The stream is over: its member went away (watch again, from where it left off, on
 * whichever member answers), or no member took it (etcd is unreachable). */
static void on_watch_end(void *data, int rc) {
  disc_t *d = data;
  d->watch = NULL;
  if (d->watch_up) {
    px_debug("registry: cluster %s: the watch's stream ended (%s); watching again", d->cluster,
             px_strerror(rc));
    d->watch_up = 0;
    d->next_ms = 0;
    tick_now(d->rr);
    return;
  }
  note_up(d->rr, 0);
  char what[128];
  snprintf(what, sizeof(what), "no etcd member takes the watch (%s)", px_strerror(rc));
  disc_unreachable(d, what);
}

/* Every change after revision d->revision. */
static void disc_watch(disc_t *d) {
  px_buf_t b = {0};
  px_etcd_watch_create_body(&b, d->start.data, d->start.len, d->end.data, d->end.len, d->revision + 1);
  d->watch = px_etcd_watch(d->rr->etcd, b.data, b.len, on_watch_msg, on_watch_end, d);
  px_buf_free(&b);
}

static void on_list_answer(void *data, int rc, int http_status, const char *body, size_t n) {
  disc_t *d = data;
  d->call = NULL;
  (void)http_status;
  note_up(d->rr, rc == 0);
  if (rc < 0) {
    disc_unreachable(d, "no etcd member answers");
    return;
  }
  px_etcd_range_t r;
  px_etcd_error_t err = {0};
  if (px_etcd_parse_range(body, n, &r, &err) != 0) {
    px_etcd_range_free(&r);
    px_warn("registry: cluster %s: listing service %s failed: %s", d->cluster, d->service,
            err.message[0] ? err.message : "an answer that does not parse");
    backoff(&d->backoff_ms, &d->next_ms);
    return;
  }
  px_reg_set_clear(d->set);
  for (size_t i = 0; i < r.nkvs; i++) {
    px_reg_event_t ev = {.key = r.kvs[i].key.p,
                         .klen = r.kvs[i].key.n,
                         .value = r.kvs[i].value.p,
                         .vlen = r.kvs[i].value.n,
                         .mod_revision = r.kvs[i].mod_revision};
    disc_apply(d, &ev);
  }
  d->revision = r.revision;
  px_etcd_range_free(&r);
  if (d->stale) px_info("registry: cluster %s follows etcd again", d->cluster);
  d->stale = 0;
  d->listed = 1;
  d->need_list = 0;
  d->backoff_ms = 0;
  disc_publish(d);
  disc_watch(d); /* then every change after what the list saw */
}

static void disc_list(disc_t *d) {
  px_buf_t b = {0};
  px_etcd_range_body(&b, d->start.data, d->start.len, d->end.data, d->end.len, 0);
  d->call = px_etcd_post(d->rr->etcd, "/v3/kv/range", b.data, b.len, on_list_answer, d);
  px_buf_free(&b);
}

static void disc_step(disc_t *d, uint64_t now) {
  if (d->call || d->watch || now < d->next_ms) return;
  if (d->need_list)
    disc_list(d);
  else
    disc_watch(d);
}

static disc_t *disc_new(px_regrun_t *rr, const px_cluster_conf_t *cc) {
  disc_t *d = px_calloc(1, sizeof(*d));
  d->rr = rr;
  d->cluster = px_strdup(cc->name);
  d->service = px_strdup(cc->discovery.service);
  d->need_list = 1;
  px_labels_copy(&d->labels, &cc->discovery.labels);
  px_reg_label_t sel[PX_REG_MAX_LABELS];
  px_reg_set_new(&d->set, rr->conf.prefix, d->service, sel, reg_labels(&d->labels, sel));
  px_reg_service_range(&d->start, &d->end, rr->conf.prefix, d->service);
  return d;
}

static void disc_free(disc_t *d) {
  if (d->call) px_etcd_cancel(d->call);
  if (d->watch) px_etcd_watch_close(d->watch);
  px_reg_set_free(d->set);
  px_buf_free(&d->start);
  px_buf_free(&d->end);
  px_labels_free(&d->labels);
  free(d->eps);
  free(d->cluster);
  free(d->service);
  free(d);
}

static int disc_same(const disc_t *d, const px_cluster_conf_t *cc) {
  return cc->has_discovery && strcmp(cc->name, d->cluster) == 0 &&
         strcmp(cc->discovery.service, d->service) == 0 && px_labels_equal(&cc->discovery.labels, &d->labels);
}

/* ---- the whole ---------------------------------------------------------------------- */

static void close_step(px_regrun_t *rr, uint64_t now);

static void on_tick(uv_timer_t *t) {
  px_regrun_t *rr = t->data;
  uint64_t now = px_now_ms();
  if (rr->closing) {
    close_step(rr, now);
    return;
  }
  for (reg_t *g = rr->regs; g; g = g->next) reg_step(g, now);
  for (disc_t *d = rr->discs; d; d = d->next) disc_step(d, now);
}

/* Runs the next step from the loop's next turn (never from inside a callback of the
 * client, which may still be unwinding). */
static void tick_now(px_regrun_t *rr) {
  if (!rr->closed) uv_timer_start(&rr->tick, on_tick, 0, TICK_MS);
}

px_regrun_t *px_regrun_new(uv_loop_t *loop, const px_regrun_hooks_t *hooks) {
  px_regrun_t *rr = px_calloc(1, sizeof(*rr));
  rr->loop = loop;
  rr->hooks = *hooks;
  rr->up = 1;
  if (gethostname(rr->hostname, sizeof(rr->hostname) - 1) != 0)
    snprintf(rr->hostname, sizeof(rr->hostname), "host");
  px_reg_rfc3339((int64_t)time(NULL), rr->started);
  uv_timer_init(loop, &rr->tick);
  rr->tick.data = rr;
  return rr;
}

static void conf_free(px_etcd_conf_t *c) {
  for (size_t i = 0; i < c->endpoints.n; i++) free(c->endpoints.items[i]);
  free(c->endpoints.items);
  free(c->prefix);
  memset(c, 0, sizeof(*c));
}

static int conf_same(const px_etcd_conf_t *a, const px_etcd_conf_t *b) {
  if (a->endpoints.n != b->endpoints.n || a->timeout_ms != b->timeout_ms || !a->prefix || !b->prefix ||
      strcmp(a->prefix, b->prefix) != 0)
    return 0;
  for (size_t i = 0; i < a->endpoints.n; i++)
    if (strcmp(a->endpoints.items[i], b->endpoints.items[i]) != 0) return 0;
  return 1;
}

/* Drops every registration (revoking nothing: its lease lapses within its ttl, or the
 * record is overwritten by the next put of the same key) and every discovery. */
static void drop_all(px_regrun_t *rr) {
  while (rr->regs) {
    reg_t *g = rr->regs;
    rr->regs = g->next;
    reg_free(g);
  }
  while (rr->discs) {
    disc_t *d = rr->discs;
    rr->discs = d->next;
    disc_free(d);
  }
  if (rr->etcd) px_etcd_free(rr->etcd, NULL, NULL);
  rr->etcd = NULL;
  conf_free(&rr->conf);
}

void px_regrun_apply(px_regrun_t *rr, const px_config_t *cfg) {
  if (!cfg->has_registry || !rr->etcd || !conf_same(&rr->conf, &cfg->etcd)) {
    int had = rr->etcd != NULL;
    drop_all(rr);
    if (had) rr->hooks.changed(rr->hooks.data); /* discovered clusters lose what they had */
    if (!cfg->has_registry) {
      uv_timer_stop(&rr->tick);
      return;
    }
    rr->conf.endpoints.n = cfg->etcd.endpoints.n;
    rr->conf.endpoints.items = px_calloc(cfg->etcd.endpoints.n, sizeof(char *));
    for (size_t i = 0; i < cfg->etcd.endpoints.n; i++)
      rr->conf.endpoints.items[i] = px_strdup(cfg->etcd.endpoints.items[i]);
    rr->conf.prefix = px_strdup(cfg->etcd.prefix ? cfg->etcd.prefix : "");
    rr->conf.timeout_ms = cfg->etcd.timeout_ms;
    rr->etcd = px_etcd_new(rr->loop, (const char *const *)rr->conf.endpoints.items, rr->conf.endpoints.n,
                           rr->conf.timeout_ms);
  }
  /* Registrations: kept when the listener registers the same record; else replaced. */
  reg_t *keep = NULL, **tail = &keep;
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    const px_listener_conf_t *l = &cfg->listeners[i];
    if (!l->has_register) continue;
    reg_t **p = &rr->regs;
    while (*p && !reg_same(*p, rr, l)) p = &(*p)->next;
    reg_t *g = *p;
    if (g) {
      *p = g->next;
    } else {
      g = reg_new(rr, l);
    }
    g->next = NULL;
    *tail = g;
    tail = &g->next;
  }
  /* What is left is no longer in the file: withdrawn (revoked), then freed. A record
   * whose lease revoke cannot be sent lapses with its ttl. */
  while (rr->regs) {
    reg_t *g = rr->regs;
    rr->regs = g->next;
    if (g->lease && !g->call) {
      px_buf_t b = {0};
      px_etcd_revoke_body(&b, g->lease);
      px_etcd_post(rr->etcd, "/v3/lease/revoke", b.data, b.len, on_forgotten, NULL);
      px_buf_free(&b);
      px_info("registry: %s withdrawn (listener %s is no longer registered)", g->key.data, g->listener);
    }
    reg_free(g);
  }
  rr->regs = keep;
  /* Discoveries: kept when the cluster asks for the same service and labels. */
  disc_t *dkeep = NULL, **dtail = &dkeep;
  int changed = 0;
  for (size_t i = 0; i < cfg->nclusters; i++) {
    const px_cluster_conf_t *cc = &cfg->clusters[i];
    if (!cc->has_discovery) continue;
    disc_t **p = &rr->discs;
    while (*p && !disc_same(*p, cc)) p = &(*p)->next;
    disc_t *d = *p;
    if (d) {
      *p = d->next;
    } else {
      d = disc_new(rr, cc);
    }
    d->next = NULL;
    *dtail = d;
    dtail = &d->next;
  }
  while (rr->discs) {
    disc_t *d = rr->discs;
    rr->discs = d->next;
    disc_free(d);
    changed = 1;
  }
  rr->discs = dkeep;
  if (changed) rr->hooks.changed(rr->hooks.data);
  tick_now(rr);
}

void px_regrun_lookup(void *ctx, const px_cluster_conf_t *cc, px_disc_view_t *out) {
  px_regrun_t *rr = ctx;
  memset(out, 0, sizeof(*out));
  for (disc_t *d = rr ? rr->discs : NULL; d; d = d->next)
    if (strcmp(d->cluster, cc->name) == 0) {
      out->eps = d->eps;
      out->n = d->neps;
      out->revision = d->revision;
      out->stale = d->stale;
      return;
    }
}

void px_regrun_drain(px_regrun_t *rr) {
  rr->draining = 1;
  for (reg_t *g = rr->regs; g; g = g->next) g->next_ms = 0;
  on_tick(&rr->tick); /* the revokes go now */
}

static void on_tick_closed(uv_handle_t *h) {
  px_regrun_t *rr = h->data;
  void (*done)(void *) = rr->done;
  void *data = rr->done_data;
  free(rr);
  if (done) done(data);
}

/* Closing waits for the revokes a drain sent (bounded by the etcd timeout), so a
 * sidecar that exits right after draining has withdrawn its records. */
static void close_step(px_regrun_t *rr, uint64_t now) {
  int revoking = 0;
  for (reg_t *g = rr->regs; g; g = g->next) revoking |= g->call && strcmp(g->op, "revoke") == 0;
  if (revoking && now < rr->close_deadline_ms) return;
  drop_all(rr);
  rr->closed = 1;
  uv_close((uv_handle_t *)&rr->tick, on_tick_closed);
}

void px_regrun_close(px_regrun_t *rr, void (*done)(void *data), void *data) {
  rr->closing = 1;
  rr->done = done;
  rr->done_data = data;
  rr->close_deadline_ms = px_now_ms() + PX_MAX(rr->conf.timeout_ms, 100);
  close_step(rr, px_now_ms());
}

/* ---- what the admin API shows -------------------------------------------------------- */

void px_regrun_render(px_regrun_t *rr, px_buf_t *out) {
  if (!rr || !rr->etcd) return;
  px_buf_t e1 = {0}, e2 = {0};
  px_metrics_family(out, "outrigger_registry_up", "gauge",
                    "Whether the last etcd request or watch message got an answer (0: no member answers).");
  px_buf_printf(out, "outrigger_registry_up %d\n", rr->up);
  if (rr->regs)
    px_metrics_family(out, "outrigger_registry_registered", "gauge",
                      "Whether a listener's record is written in the registry under a live lease.");
  for (reg_t *g = rr->regs; g; g = g->next)
    px_buf_printf(out, "outrigger_registry_registered{listener=\"%s\",service=\"%s\"} %d\n",
                  px_metrics_esc(&e1, g->listener), px_metrics_esc(&e2, g->service), g->lease && g->put_done);
  if (rr->regs)
    px_metrics_family(out, "outrigger_registry_errors_total", "counter",
                      "etcd requests of a listener's registration that failed (each is retried).");
  for (reg_t *g = rr->regs; g; g = g->next)
    px_buf_printf(out, "outrigger_registry_errors_total{listener=\"%s\"} %llu\n",
                  px_metrics_esc(&e1, g->listener), (unsigned long long)g->errors);
  static const struct {
    const char *name, *type, *help;
  } fam[] = {
      {"outrigger_discovery_stale", "gauge",
       "1 while etcd is unreachable and a discovered cluster keeps its last known endpoints."},
      {"outrigger_discovery_revision", "gauge",
       "How far a discovered cluster has followed etcd (the last list's revision, then each event's)."},
      {"outrigger_discovery_updates_total", "counter", "Changes of a discovered cluster's endpoints."},
      {"outrigger_discovery_records_skipped_total", "counter",
       "Records under a discovered cluster's service that were skipped (malformed or foreign)."},
      {"outrigger_discovery_relists_total", "counter",
       "Times a discovered cluster listed its service again (a compacted, cancelled or broken watch)."},
  };
  for (size_t f = 0; f < PX_ARRAY_SIZE(fam) && rr->discs; f++) {
    px_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    for (disc_t *d = rr->discs; d; d = d->next) {
      unsigned long long v = f == 0   ? (unsigned long long)d->stale
                             : f == 1 ? (unsigned long long)d->revision
                             : f == 2 ? d->updates
                             : f == 3 ? d->skipped
                                      : d->relists;
      px_buf_printf(out, "%s{cluster=\"%s\"} %llu\n", fam[f].name, px_metrics_esc(&e1, d->cluster), v);
    }
  }
  px_buf_free(&e1);
  px_buf_free(&e2);
}

void px_regrun_cluster_json(px_regrun_t *rr, const char *cluster, px_buf_t *out) {
  for (disc_t *d = rr ? rr->discs : NULL; d; d = d->next) {
    if (strcmp(d->cluster, cluster) != 0) continue;
    px_buf_append_cstr(out, ",\"discovery\":{\"service\":");
    px_buf_json_str(out, d->service, strlen(d->service));
    px_buf_append_cstr(out, ",\"labels\":");
    px_labels_json(&d->labels, out);
    px_buf_printf(out, ",\"revision\":%lld,\"listed\":%s,\"stale\":%s,\"records\":%zu,\"etcd\":",
                  (long long)d->revision, d->listed ? "true" : "false", d->stale ? "true" : "false",
                  px_reg_set_count(d->set));
    const char *m = px_etcd_member(rr->etcd);
    px_buf_json_str(out, m, strlen(m));
    px_buf_append_cstr(out, "}");
    return;
  }
}
