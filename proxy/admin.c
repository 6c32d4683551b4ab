#include "admin.h"

#include "sinks.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "canary_run.h"
#include "config.h"
#include "filter.h"
#include "http1.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

static void problem(px_hres_t *res, int status, const char *detail) {
  px_buf_t b = {0};
  px_buf_printf(&b, "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d,\"detail\":",
                px_http_reason(status), status);
  px_buf_json_str(&b, detail, strlen(detail));
  px_buf_append(&b, "}\n", 2);
  res->status = status;
  px_hres_header(res, "content-type", "application/problem+json");
  px_buf_append(&res->body, b.data, b.len);
  px_buf_free(&b);
}

/* ---- GET /metrics: what the running snapshot and the shared state know ------------------
 *
 * Each family is printed whole, its HELP and TYPE first, before the next: the text format
 * wants a family's samples together. Label values are configuration names, escaped. */

/* Unix time the sidecar started serving (its admin listener opened), for
 * outrigger_start_time_seconds. */
static double started_at;

static const char *const verdict_names[] = {"insufficient", "pass", "fail"};

static void render_canary_metrics(px_snapshot_t *s, px_buf_t *out) {
  enum { WEIGHT, REQUESTS, SHARE, STATE, ANALYSES, ROLLBACKS, PROMOTIONS, NFAM };
  static const struct {
    const char *name, *type, *help;
  } fam[NFAM] = {
      {"outrigger_canary_weight", "gauge", "A split route's weight per cluster, as set now."},
      {"outrigger_split_requests_total", "counter",
       "Requests a split route sent to each of its clusters (since its split was last changed in the file)."},
      {"outrigger_canary_share_ratio", "gauge",
       "The share of a split route's new requests its canary gets by the weights now (0 to 1)."},
      {"outrigger_canary_analysis_state", "gauge",
       "A canary analysis: 0 ok, 1 failing, 2 rolled back, 3 promoting, 4 promoted."},
      {"outrigger_canary_analyses_total", "counter",
       "Canary analysis intervals judged, by verdict (pass, fail, insufficient: too few requests)."},
      {"outrigger_canary_rollbacks_total", "counter", "Canaries the analysis rolled back to weight 0."},
      {"outrigger_canary_promotions_total", "counter", "Promotion steps the analysis made."},
  };
  px_buf_t e1 = {0}, e2 = {0}, e3 = {0};
  for (int f = 0; f < NFAM; f++) {
    px_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    for (size_t l = 0; l < s->cfg->nlisteners; l++) {
      const px_listener_rt_t *lr = &s->listeners[l];
      for (size_t r = 0; r < lr->conf->nroutes; r++) {
        const px_route_rt_t *rt = &lr->routes[r];
        if (!rt->rs) continue;
        const char *ln = px_metrics_esc(&e1, lr->conf->name), *rn = px_metrics_esc(&e2, rt->conf->name);
        const px_route_state_t *rs = rt->rs;
        int w[PX_SPLIT_MAX];
        int analysed = rt->conf->canary.has_analysis && rt->canary >= 0;
        switch (f) {
        case WEIGHT:
        case REQUESTS:
          if (f == WEIGHT) px_route_weights_read(rt->rs, w);
          for (size_t k = 0; k < rs->n; k++) {
            unsigned long long v = f == WEIGHT ? (unsigned long long)w[k] : px_route_requests(rs, k);
            px_buf_printf(out, "%s{listener=\"%s\",route=\"%s\",cluster=\"%s\"} %llu\n", fam[f].name, ln, rn,
                          px_metrics_esc(&e3, rt->conf->split[k].cluster), v);
          }
          break;
        case SHARE:
          if (rt->canary < 0) break;
          px_route_weights_read(rt->rs, w);
          px_buf_printf(out, "%s{listener=\"%s\",route=\"%s\"} %g\n", fam[f].name, ln, rn,
                        px_canary_share_bp(w, rs->n, rt->canary) / 10000.0);
          break;
        case STATE:
          if (analysed)
            px_buf_printf(out, "%s{listener=\"%s\",route=\"%s\"} %d\n", fam[f].name, ln, rn,
                          rs->run_started ? (int)rs->run.state : 0);
          break;
        case ANALYSES:
          for (int k = 0; analysed && k < 3; k++)
            px_buf_printf(out, "%s{listener=\"%s\",route=\"%s\",verdict=\"%s\"} %llu\n", fam[f].name, ln, rn,
                          verdict_names[k], (unsigned long long)atomic_load(&rs->analyses[k]));
          break;
        default:
          if (analysed)
            px_buf_printf(out, "%s{listener=\"%s\",route=\"%s\"} %llu\n", fam[f].name, ln, rn,
                          (unsigned long long)atomic_load(f == ROLLBACKS ? &rs->rollbacks : &rs->promotions));
          break;
        }
      }
    }
  }
  px_buf_free(&e1);
  px_buf_free(&e2);
  px_buf_free(&e3);
}

/* Per cluster gauges of the shared state, and per endpoint ones of breakers and health. */
static void render_cluster_metrics(px_snapshot_t *s, px_buf_t *out) {
  px_buf_t e1 = {0}, e2 = {0};
  px_metrics_family(out, "outrigger_upstream_connections_active", "gauge",
                    "Open upstream connections, all workers.");
  for (size_t i = 0; i < s->cfg->nclusters; i++)
    px_buf_printf(out, "outrigger_upstream_connections_active{cluster=\"%s\"} %d\n",
                  px_metrics_esc(&e1, s->clusters[i].conf->name),
                  atomic_load(&s->clusters[i].st->connections));
  px_metrics_family(out, "outrigger_upstream_requests_active", "gauge", "Requests in flight to a cluster.");
  for (size_t i = 0; i < s->cfg->nclusters; i++)
    px_buf_printf(out, "outrigger_upstream_requests_active{cluster=\"%s\"} %d\n",
                  px_metrics_esc(&e1, s->clusters[i].conf->name),
                  atomic_load(&s->clusters[i].st->active_requests));

  enum { STATE, TRANSITIONS, SUPPRESSED, HEALTHY, NFAM };
  static const struct {
    const char *name, *type, *help;
  } fam[NFAM] = {
      {"outrigger_circuit_breaker_state", "gauge",
       "Circuit breaker per endpoint of a cluster with circuit_breaker: 0 closed, 1 open, 2 half-open."},
      {"outrigger_circuit_breaker_transitions_total", "counter",
       "Breaker transitions, by cause (consecutive_failures and failure_rate open it, open_elapsed makes it "
       "half-open, probe_failed opens it again, probe_succeeded and disabled close it)."},
      {"outrigger_circuit_breaker_suppressed_opens_total", "counter",
       "Times a breaker would have opened but the cluster's max_open_percent kept it closed."},
      {"outrigger_endpoint_healthy", "gauge", "1 while an endpoint passes its cluster's health check."},
  };
  for (int f = 0; f < NFAM; f++) {
    px_metrics_family(out, fam[f].name, fam[f].type, fam[f].help);
    for (size_t i = 0; i < s->cfg->nclusters; i++) {
      const px_cluster_t *c = &s->clusters[i];
      if (f == HEALTHY ? !c->conf->has_health_check : !c->conf->has_breaker) continue;
      const char *cn = px_metrics_esc(&e1, c->conf->name);
      for (size_t e = 0; e < c->neps; e++) {
        px_endpoint_state_t *st = c->eps[e].st;
        const char *en = px_metrics_esc(&e2, c->eps[e].name);
        switch (f) {
        case STATE:
          px_buf_printf(out, "%s{cluster=\"%s\",endpoint=\"%s\"} %d\n", fam[f].name, cn, en,
                        (int)px_breaker_state(&st->breaker));
          break;
        case TRANSITIONS:
          for (int k = 1; k < PX_BREAKER_CAUSE__N; k++)
            px_buf_printf(out, "%s{cluster=\"%s\",endpoint=\"%s\",cause=\"%s\"} %llu\n", fam[f].name, cn, en,
                          px_breaker_cause_name((px_breaker_cause_t)k),
                          (unsigned long long)atomic_load(&st->transitions[k]));
          break;
        case SUPPRESSED:
          px_buf_printf(out, "%s{cluster=\"%s\",endpoint=\"%s\"} %llu\n", fam[f].name, cn, en,
                        (unsigned long long)atomic_load(&st->suppressed_opens));
          break;
        default:
          px_buf_printf(out, "%s{cluster=\"%s\",endpoint=\"%s\"} %d\n", fam[f].name, cn, en,
                        px_health_state(&st->health) == PX_HEALTH_HEALTHY);
          break;
        }
      }
    }
  }
  px_buf_free(&e1);
  px_buf_free(&e2);
}

/* What routing has of each discovered cluster: the running snapshot's endpoints. */
static void render_discovered(px_snapshot_t *s, px_buf_t *out) {
  px_buf_t e = {0};
  int head = 0;
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    if (!s->clusters[i].conf->has_discovery) continue;
    if (!head++)
      px_metrics_family(out, "outrigger_discovery_endpoints", "gauge",
                        "Endpoints a discovered cluster routes to now (the running snapshot's).");
    px_buf_printf(out, "outrigger_discovery_endpoints{cluster=\"%s\"} %zu\n",
                  px_metrics_esc(&e, s->clusters[i].conf->name), s->clusters[i].neps);
  }
  px_buf_free(&e);
}

static void render_metrics(px_admin_ctx_t *ctx, px_buf_t *out) {
  px_metrics_t *ws[256];
  int n = PX_MIN(ctx->nworkers, 256);
  for (int i = 0; i < n; i++) ws[i] = &ctx->workers[i].x.metrics;
  px_metrics_render(ws, n, out);
  px_idem_stores_render(out);
  px_sinks_render(out);
  if (ctx->regrun) px_regrun_render(*ctx->regrun, out);
  render_discovered(*ctx->current, out);

  px_snapshot_t *s = *ctx->current;
  render_canary_metrics(s, out);
  render_cluster_metrics(s, out);
  px_buf_printf(out,
                "# HELP outrigger_config_reloads_total Configuration reloads (SIGHUP), by result: ok, or "
                "rejected (the old configuration kept serving).\n"
                "# TYPE outrigger_config_reloads_total counter\n"
                "outrigger_config_reloads_total{result=\"ok\"} %llu\n"
                "outrigger_config_reloads_total{result=\"rejected\"} %llu\n"
                "# HELP outrigger_config_generation Generation of the running configuration (1 at start).\n"
                "# TYPE outrigger_config_generation gauge\n"
                "outrigger_config_generation %u\n"
                "# HELP outrigger_workers Worker threads.\n"
                "# TYPE outrigger_workers gauge\n"
                "outrigger_workers %d\n"
                "# HELP outrigger_draining 1 while the sidecar drains.\n"
                "# TYPE outrigger_draining gauge\n"
                "outrigger_draining %d\n"
                "# HELP outrigger_build_info The running build, as labels; always 1.\n"
                "# TYPE outrigger_build_info gauge\n"
                "outrigger_build_info{version=\"" PX_VERSION "\"} 1\n"
                "# HELP outrigger_start_time_seconds When the sidecar started serving, in Unix time.\n"
                "# TYPE outrigger_start_time_seconds gauge\n"
                "outrigger_start_time_seconds %.3f\n",
                (unsigned long long)*ctx->reloads_ok, (unsigned long long)*ctx->reloads_failed, s->generation,
                ctx->nworkers, *ctx->draining, started_at);
}

static const char *const lb_names[] = {"round_robin", "least_request", "random", "ring_hash", "maglev"};

static void render_clusters(px_admin_ctx_t *ctx, px_buf_t *out) {
  px_snapshot_t *s = *ctx->current;
  px_buf_append_cstr(out, "{\"clusters\":[");
  for (size_t i = 0; i < s->cfg->nclusters; i++) {
    px_cluster_t *c = &s->clusters[i];
    if (i) px_buf_append(out, ",", 1);
    px_buf_append_cstr(out, "{\"name\":");
    px_buf_json_str(out, c->conf->name, strlen(c->conf->name));
    px_buf_printf(out, ",\"lb\":\"%s\",\"active_requests\":%d,\"connections\":%d,\"endpoints\":[",
                  lb_names[c->conf->lb], atomic_load(&c->st->active_requests),
                  atomic_load(&c->st->connections));
    for (size_t e = 0; e < c->neps; e++) {
      px_endpoint_t *ep = &c->eps[e];
      px_buf_printf(
          out,
          "%s{\"address\":\"%s\",\"health\":\"%s\",\"last_probe\":%d,\"breaker\":\"%s\",\"active_requests\":%d,"
          "\"connections\":%d,\"requests_total\":%llu,\"connect_failures_total\":%llu,\"breaker_transitions\":{",
          e ? "," : "", ep->name, px_health_state_name(px_health_state(&ep->st->health)),
          ep->st->probe_last_status, px_breaker_state_name(px_breaker_state(&ep->st->breaker)),
          atomic_load(&ep->st->active_requests), atomic_load(&ep->st->connections),
          (unsigned long long)atomic_load(&ep->st->requests_total),
          (unsigned long long)atomic_load(&ep->st->failures_total));
      for (int k = 1; k < PX_BREAKER_CAUSE__N; k++)
        px_buf_printf(out, "%s\"%s\":%llu", k > 1 ? "," : "", px_breaker_cause_name((px_breaker_cause_t)k),
                      (unsigned long long)atomic_load(&ep->st->transitions[k]));
      px_buf_printf(out, "},\"source\":\"%s\",\"revision\":%lld,\"weight\":%d}",
                    ep->discovered ? "etcd" : "static", (long long)ep->revision, ep->weight);
    }
    px_buf_append_cstr(out, "]");
    if (c->conf->has_discovery && ctx->regrun) px_regrun_cluster_json(*ctx->regrun, c->conf->name, out);
    px_buf_append_cstr(out, "}");
  }
  px_buf_append_cstr(out, "]}\n");
}

/* ---- GET /canary, POST /canary/ROUTE (SPEC §7, §9) --------------------------------- */

static void render_side(px_buf_t *out, const char *name, uint64_t req, uint64_t err, double rate,
                        double p99) {
  px_buf_printf(out, "\"%s\":{\"requests\":%llu,\"errors\":%llu,\"error_rate\":%.4f,\"p99_ms\":%.3f}", name,
                (unsigned long long)req, (unsigned long long)err, rate, p99);
}

/* "analysis": the run's state and reason, and the last interval's figures. */
static void render_analysis(const px_route_rt_t *rt, px_buf_t *out) {
  const px_canary_conf_t *cc = &rt->conf->canary;
  const px_route_state_t *rs = rt->rs;
  px_buf_append_cstr(out, ",\"analysis\":{\"state\":");
  if (!cc->has_analysis || rt->canary < 0) {
    px_buf_append_cstr(out, "\"off\",\"reason\":\"the route has no canary.analysis\"}");
    return;
  }
  const char *state = rs->run_started ? px_canary_state_name(rs->run.state) : "ok";
  px_buf_json_str(out, state, strlen(state));
  px_buf_append_cstr(out, ",\"reason\":");
  px_buf_json_str(out, rs->run.reason, rs->run_started ? strlen(rs->run.reason) : 0);
  px_buf_printf(
      out, ",\"share_pct\":%d,\"interval_ms\":%llu,\"rollbacks\":%llu,\"promotions\":%llu,\"last\":",
      px_canary_share_now(rt), (unsigned long long)cc->interval_ms,
      (unsigned long long)atomic_load(&rs->rollbacks), (unsigned long long)atomic_load(&rs->promotions));
  if (!rs->have_last) {
    px_buf_append_cstr(out, "null}");
    return;
  }
  const px_canary_verdict_t *v = &rs->last;
  static const char *const kinds[] = {"insufficient", "pass", "fail"};
  px_buf_printf(out, "{\"verdict\":\"%s\",", kinds[v->kind]);
  render_side(out, "stable", v->stable_requests, v->stable_errors, v->stable_error_rate, v->stable_p99_ms);
  px_buf_append_cstr(out, ",");
  render_side(out, "canary", v->canary_requests, v->canary_errors, v->canary_error_rate, v->canary_p99_ms);
  px_buf_append_cstr(out, ",\"reason\":");
  px_buf_json_str(out, v->reason, strlen(v->reason));
  px_buf_append_cstr(out, "}}");
}

static void render_canary(px_admin_ctx_t *ctx, px_buf_t *out) {
  px_snapshot_t *s = *ctx->current;
  int first = 1;
  px_buf_append_cstr(out, "{\"routes\":[");
  for (size_t l = 0; l < s->cfg->nlisteners; l++) {
    const px_listener_rt_t *lr = &s->listeners[l];
    for (size_t r = 0; r < lr->conf->nroutes; r++) {
      const px_route_rt_t *rt = &lr->routes[r];
      if (!rt->rs) continue;
      const px_route_conf_t *rc = rt->conf;
      int w[PX_SPLIT_MAX];
      px_route_weights_read(rt->rs, w);
      px_buf_append_cstr(out, first ? "{\"route\":" : ",{\"route\":");
      first = 0;
      px_buf_json_str(out, rc->name, strlen(rc->name));
      px_buf_append_cstr(out, ",\"listener\":");
      px_buf_json_str(out, lr->conf->name, strlen(lr->conf->name));
      for (int pass = 0; pass < 2; pass++) {
        px_buf_append_cstr(out, pass ? ",\"requests\":{" : ",\"weights\":{");
        for (size_t k = 0; k < rt->rs->n; k++) {
          if (k) px_buf_append_cstr(out, ",");
          px_buf_json_str(out, rc->split[k].cluster, strlen(rc->split[k].cluster));
          if (pass)
            px_buf_printf(out, ":%llu", (unsigned long long)px_route_requests(rt->rs, k));
          else
            px_buf_printf(out, ":%d", w[k]);
        }
        px_buf_append_cstr(out, "}");
      }
      px_buf_append_cstr(out, ",\"canary\":");
      if (rt->canary >= 0)
        px_buf_json_str(out, rc->split[rt->canary].cluster, strlen(rc->split[rt->canary].cluster));
      else
        px_buf_append_cstr(out, "null");
      px_buf_printf(out, ",\"weights_source\":\"%s\"",
                    atomic_load(&rt->rs->set_at_run_time) ? "run_time" : "file");
      render_analysis(rt, out);
      px_buf_append_cstr(out, "}");
    }
  }
  px_buf_append_cstr(out, "]}\n");
}

/* POST /canary/ROUTE {"weights": {"CLUSTER": N, ...}}: the named clusters get their new
 * weights (the others keep theirs), as one set, for the requests that start from now.
 * Route names are unique across listeners (the configuration says so). */
static void post_canary(px_admin_ctx_t *ctx, const px_hreq_t *req, px_hres_t *res) {
  px_snapshot_t *s = *ctx->current;
  px_str_t name = {req->path.p + strlen("/canary/"), req->path.n - strlen("/canary/")};
  px_route_rt_t *rt = NULL;
  const char *lname = NULL;
  char msg[320];
  for (size_t l = 0; l < s->cfg->nlisteners && !rt; l++)
    for (size_t r = 0; r < s->listeners[l].conf->nroutes && !rt; r++)
      if (px_str_eq(name, (px_str_t){s->listeners[l].routes[r].conf->name,
                                     strlen(s->listeners[l].routes[r].conf->name)})) {
        rt = &s->listeners[l].routes[r];
        lname = s->listeners[l].conf->name;
      }
  if (!rt) {
    snprintf(msg, sizeof(msg), "no route named '%.*s'; GET /canary lists the split routes",
             (int)PX_MIN(name.n, (size_t)100), name.p);
    problem(res, 404, msg);
    return;
  }
  if (!rt->rs) {
    snprintf(msg, sizeof(msg), "route '%.*s' has no split: its weights cannot be set",
             (int)PX_MIN(name.n, (size_t)100), name.p);
    problem(res, 409, msg);
    return;
  }
  char err[128];
  px_json_t *root = px_json_parse(req->body.p, req->body.n, err, sizeof(err));
  const px_json_t *ws = root ? px_json_get(root, "weights") : NULL;
  if (!root || px_json_type(root) != PX_JSON_OBJECT || !ws || px_json_type(ws) != PX_JSON_OBJECT) {
    if (root) snprintf(err, sizeof(err), "the body must be an object with a \"weights\" object");
    problem(res, 400, err);
    px_json_free(root);
    return;
  }
  const px_route_conf_t *rc = rt->conf;
  int w[PX_SPLIT_MAX];
  px_route_weights_read(rt->rs, w);
  for (size_t i = 0; i < px_json_count(ws); i++) {
    size_t kn;
    const char *key = px_json_key_at(ws, i, &kn);
    size_t k = 0;
    while (k < rt->rs->n &&
           !px_str_eq((px_str_t){key, kn}, (px_str_t){rc->split[k].cluster, strlen(rc->split[k].cluster)}))
      k++;
    int64_t v;
    if (k == rt->rs->n) {
      snprintf(msg, sizeof(msg), "cluster '%.*s' is not in route %s's split", (int)PX_MIN(kn, (size_t)100),
               key, rc->name);
    } else if (px_json_int(px_json_at(ws, i), &v) != 0 || v < 0 || v > 10000) {
      snprintf(msg, sizeof(msg), "the weight of '%s' must be an integer from 0 to 10000",
               rc->split[k].cluster);
    } else {
      w[k] = (int)v;
      continue;
    }
    problem(res, 422, msg);
    px_json_free(root);
    return;
  }
  px_json_free(root);
  long sum = 0;
  for (size_t k = 0; k < rt->rs->n; k++) sum += w[k];
  if (sum == 0) {
    problem(res, 422, "the weights must not all be 0: the route would have nowhere to send requests");
    return;
  }
  px_route_weights_write(rt->rs, w, 1);
  px_canary_restart(rt, px_now_ms()); /* the analysis judges the new share from now on */
  px_buf_t line = {0};
  for (size_t k = 0; k < rt->rs->n; k++)
    px_buf_printf(&line, "%s%s=%d", k ? " " : "", rc->split[k].cluster, w[k]);
  px_info("canary: route %s of listener %s: weights set by the admin API: %.*s", rc->name, lname,
          (int)line.len, line.data);
  px_buf_free(&line);
  render_canary(ctx, &res->body);
  px_hres_header(res, "content-type", "application/json");
}

static int path_is(const px_hreq_t *req, const char *p) {
  return px_str_eq(req->path, (px_str_t){p, strlen(p)});
}

static void on_request(void *data, const px_hreq_t *req, px_hres_t *res) {
  px_admin_ctx_t *ctx = data;
  int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
  const char *json_ok = NULL;

  if (path_is(req, "/healthz")) {
    if (!get) goto method;
    json_ok = "{\"status\":\"alive\"}\n";
  } else if (path_is(req, "/ready")) {
    if (!get) goto method;
    if (*ctx->draining || !*ctx->ready) {
      px_hres_json(res, 503, *ctx->draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"starting\"}\n",
                   strlen(*ctx->draining ? "{\"status\":\"draining\"}\n" : "{\"status\":\"starting\"}\n"));
      return;
    }
    json_ok = "{\"status\":\"ready\"}\n";
  } else if (path_is(req, "/metrics")) {
    if (!get) goto method;
    render_metrics(ctx, &res->body);
    px_hres_header(res, "content-type", "text/plain; version=0.0.4; charset=utf-8");
    return;
  } else if (path_is(req, "/clusters")) {
    if (!get) goto method;
    render_clusters(ctx, &res->body);
    px_hres_header(res, "content-type", "application/json");
    return;
  } else if (path_is(req, "/config")) {
    if (!get) goto method;
    px_config_to_json((*ctx->current)->cfg, &res->body);
    px_hres_header(res, "content-type", "application/json");
    return;
  } else if (path_is(req, "/canary")) {
    if (!get) goto method;
    render_canary(ctx, &res->body);
    px_hres_header(res, "content-type", "application/json");
    return;
  } else if (req->path.n > strlen("/canary/") && memcmp(req->path.p, "/canary/", 8) == 0) {
    if (req->method != HTTP_POST) {
      px_hres_header(res, "allow", "POST");
      problem(res, 405, "POST /canary/ROUTE with {\"weights\": {...}} sets a split's weights");
      return;
    }
    post_canary(ctx, req, res);
    return;
  } else if (path_is(req, "/drain")) {
    if (req->method != HTTP_POST) goto method;
    ctx->drain(ctx->data);
    px_hres_json(res, 202, "{\"status\":\"draining\"}\n", 22);
    return;
  } else {
    problem(res, 404,
            "no such admin endpoint; see GET /healthz, /ready, /metrics, /clusters, /config, /canary, POST "
            "/canary/ROUTE, /drain");
    return;
  }
  px_hres_json(res, 200, json_ok, strlen(json_ok));
  return;
method:
  px_hres_header(res, "allow", path_is(req, "/drain") ? "POST" : "GET, HEAD");
  problem(res, 405, "method not allowed on this admin endpoint");
}

int px_admin_start(uv_loop_t *loop, const struct sockaddr *addr, px_admin_ctx_t *ctx, px_hsrv_t **out) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  started_at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
  px_hsrv_opts_t opts = {.max_header_bytes = 16 * 1024,
                         .max_body_bytes = 64 * 1024,
                         .header_timeout_ms = 10000,
                         .idle_timeout_ms = 60000,
                         .handler = on_request,
                         .data = ctx};
  return px_hsrv_start(loop, addr, &opts, out);
}
