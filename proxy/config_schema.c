/* The schema of the configuration file (SPEC §3) as tables, one row per key, and the
 * checks that relate several keys: within one mapping (the map's `check`), or across the
 * file (check_config: names, cluster references, addresses, the registry). The values
 * that are not a plain type (workers, access_log, headers, labels, etcd URLs, retry
 * status codes, cluster hash) have their handlers in config_values.c. The public loading calls are here too:
 * they hand this schema to the generic engine of config.c, which knows nothing of it. Defaults live in the
 * rows and must match the comments in config.h and config/REFERENCE.md. */
#include <errno.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "core.h"
#include "log.h"
#include "net.h"
#include "registry.h"
#include "span.h"

#define MS 1.0
#define SEC 1000.0
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define KIB 1024.0
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* One table row: name, type, struct, field, then designated initializers. */
#define K(nm, ty, st, fld, ...)                                                                              \
  { .name = (nm), .type = (ty), .off = offsetof(st, fld), __VA_ARGS__ }
/* A nested mapping whose keys fill fields of the enclosing struct (retry.backoff). */
#define INLINE(nm, map_, ...)                                                                                \
  { .name = (nm), .type = PX__T_MAP, .off = 0, .map = (map_), __VA_ARGS__ }
#define HAS(st, fld) .has_off = offsetof(st, fld) + 1
#define CNT(st, fld) .cnt_off = offsetof(st, fld)
#define MAP_OF(nm, keys_, st, ...)                                                                           \
  { .what = (nm), .keys = (keys_), .nkeys = PX_ARRAY_SIZE(keys_), .size = sizeof(st), __VA_ARGS__ }

/* ---- enumerations ------------------------------------------------------- */

static const px__enum_t log_levels[] = {{"debug", PX_LOG_DEBUG},
                                        {"info", PX_LOG_INFO},
                                        {"warn", PX_LOG_WARN},
                                        {"error", PX_LOG_ERROR},
                                        {NULL, 0}};
static const px__enum_t log_formats[] = {{"text", 0}, {"json", 1}, {NULL, 0}};
static const px__enum_t propagations[] = {{"w3c", 0}, {"b3", 1}, {"b3-single", 2}, {NULL, 0}};
/* Bit numbers are llhttp_method_t values; those >= 32 are refused by the FLAGS parser. */
static const px__enum_t methods[] = {
#define XX(num, name, string) {#string, num},
    HTTP_METHOD_MAP(XX)
#undef XX
        {NULL, 0}};
static const px__enum_t retry_ons[] = {
    {"connect-failure", 0},  {"reset", 1}, {"timeout", 2}, {"gateway-error", 3}, {"5xx", 4},
    {"retriable-status", 5}, {NULL, 0}};
static const px__enum_t idem_key_modes[] = {{"generate", PX_IDEMPOTENCY_KEY_GENERATE},
                                            {"passthrough", PX_IDEMPOTENCY_KEY_PASSTHROUGH},
                                            {"off", PX_IDEMPOTENCY_KEY_OFF},
                                            {NULL, 0}};
static const px__enum_t on_fails[] = {{"rollback", 1}, {"none", 0}, {NULL, 0}};
static const px__enum_t lbs[] = {{"round_robin", PX_LB_ROUND_ROBIN}, {"least_request", PX_LB_LEAST_REQUEST},
                                 {"random", PX_LB_RANDOM},           {"ring_hash", PX_LB_RING_HASH},
                                 {"maglev", PX_LB_MAGLEV},           {NULL, 0}};

_Static_assert(PX_RETRY_ON_CONNECT_FAILURE == 1 << 0 && PX_RETRY_ON_RETRIABLE_STATUS == 1 << 5,
               "retry_ons bit numbers follow PX_RETRY_ON_*");

/* ---- checks within one mapping ----------------------------------------- */

static px_pos_t seen_pos(px__ctx_t *c, const px__map_t *m, const px__seen_t *seen, const char *name,
                         yaml_node_t *fallback) {
  const px__seen_t *s = px__seen(m, seen, name);
  return px__node_pos(c, s ? s->key : fallback);
}

static const px__map_t listener_tls_map, match_map, retry_map, sticky_map, fault_map, route_map, cluster_map,
    breaker_map, health_map, cluster_tls_map, tracing_map;

static void listener_tls_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_tls_listener_conf_t *t = base;
  if (t->allowed_identities.n && !t->client_ca)
    px__err(c, seen_pos(c, &listener_tls_map, seen, "allowed_identities", n),
            "'allowed_identities' needs 'client_ca' (identities come from verified client certificates)");
}

/* A match host is a name or address without a port; an IPv6 literal is written
 * in brackets, as it appears in a Host header ("[::1]"). */
static void host_check(px__ctx_t *c, const char *host, px_pos_t pos) {
  if (host[0] == '[') {
    const char *end = strchr(host, ']');
    if (end == NULL || end == host + 1)
      px__err(c, pos, "'host' '%s': an IPv6 literal is written in brackets, e.g. [::1]", host);
    else if (end[1] == ':')
      px__err(c, pos, "'host' is matched without the port; remove ':%s'", end + 2);
    else if (end[1] != '\0')
      px__err(c, pos, "'host' '%s': nothing may follow the ']'", host);
    return;
  }
  const char *colon = strchr(host, ':');
  if (colon == NULL) return;
  if (strchr(colon + 1, ':'))
    px__err(c, pos, "'host' '%s' looks like an IPv6 address: write it in brackets, [%s]", host, host);
  else
    px__err(c, pos, "'host' is matched without the port; remove ':%s'", colon + 1);
}

static void match_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_match_conf_t *m = base;
  if (m->prefix && m->path)
    px__err(c, seen_pos(c, &match_map, seen, "path", n), "'prefix' and 'path' are mutually exclusive");
  if (m->prefix && m->prefix[0] != '/')
    px__err(c, px__field_pos(c, &m->prefix, px__node_pos(c, n)), "'prefix' must start with '/'");
  if (m->path && m->path[0] != '/')
    px__err(c, px__field_pos(c, &m->path, px__node_pos(c, n)), "'path' must start with '/'");
  if (m->host) host_check(c, m->host, px__field_pos(c, &m->host, px__node_pos(c, n)));
}

static void retry_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_retry_conf_t *r = base;
  if ((r->on & PX_RETRY_ON_RETRIABLE_STATUS) && r->nstatus == 0)
    px__err(c, px__field_pos(c, &r->on, px__node_pos(c, n)),
            "'retriable-status' needs 'status', the list of codes to retry");
  if (!(r->on & PX_RETRY_ON_RETRIABLE_STATUS) && r->nstatus > 0)
    px__err(c, seen_pos(c, &retry_map, seen, "status", n),
            "'status' only applies when 'on' lists 'retriable-status'");
  if (r->backoff_base_ms > r->backoff_max_ms) {
    char a[32], b[32];
    px__fmt_duration(r->backoff_base_ms, a, sizeof(a));
    px__fmt_duration(r->backoff_max_ms, b, sizeof(b));
    px__err(c, seen_pos(c, &retry_map, seen, "backoff", n), "backoff 'base' (%s) must not exceed 'max' (%s)",
            a, b);
  }
}

static void sticky_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_canary_conf_t *k = base;
  if (!px__seen(&sticky_map, seen, "header") == !px__seen(&sticky_map, seen, "cookie"))
    px__err(c, px__node_pos(c, n), "'sticky' takes exactly one of 'header' or 'cookie'");
  (void)k;
}

static void fault_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  if (!px__seen(&fault_map, seen, "abort") && !px__seen(&fault_map, seen, "delay") &&
      !px__seen(&fault_map, seen, "drop_response"))
    px__err(c, px__node_pos(c, n), "'fault' needs at least one of 'abort', 'delay' or 'drop_response'");
}

static void route_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_route_conf_t *r = base;
  const px__seen_t *split = px__seen(&route_map, seen, "split");
  const px__seen_t *cluster = px__seen(&route_map, seen, "cluster");
  const px__seen_t *canary = px__seen(&route_map, seen, "canary");
  if (!r->match.prefix && !r->match.path) r->match.prefix = px_strdup("/");
  if (split && cluster)
    px__err(c, px__node_pos(c, split->key), "a route takes 'cluster' or 'split', not both");
  else if (!split && !cluster)
    px__err(c, px__node_pos(c, n), "route: needs 'cluster' or 'split'");
  if (canary && !split)
    px__err(c, px__node_pos(c, canary->key), "'canary' needs 'split' (the canary is one side of a split)");
  if (!split || r->nsplit == 0) return;

  int sum = 0, ncanary = 0, weights_known = 1;
  for (size_t i = 0; i < r->nsplit; i++) {
    px_split_conf_t *s = &r->split[i];
    px_pos_t nopos = {NULL, -1, -1};
    if (px__field_pos(c, &s->weight, nopos).line < 0) weights_known = 0;
    sum += s->weight;
    if (s->canary && ++ncanary == 2)
      px__err(c, px__field_pos(c, &s->canary, s->pos), "only one split entry may be marked 'canary: true'");
    for (size_t j = 0; j < i && s->cluster; j++)
      if (r->split[j].cluster && strcmp(r->split[j].cluster, s->cluster) == 0) {
        px__err(c, px__field_pos(c, &s->cluster, s->pos), "cluster '%s' appears twice in 'split'",
                s->cluster);
        break;
      }
  }
  if (weights_known && sum == 0)
    px__err(c, px__node_pos(c, split->value), "'split' weights must not all be 0");
  if (canary && ncanary == 0)
    px__err(c, px__node_pos(c, canary->key), "'canary' needs one split entry marked 'canary: true'");
}

static void cluster_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_cluster_conf_t *cl = base;
  int hashed = cl->lb == PX_LB_RING_HASH || cl->lb == PX_LB_MAGLEV;
  if (hashed && !px__seen(&cluster_map, seen, "hash"))
    px__err(c, px__field_pos(c, &cl->lb, px__node_pos(c, n)),
            "lb '%s' needs 'hash' (path, source_ip, { header: NAME } or { cookie: NAME })",
            cl->lb == PX_LB_RING_HASH ? "ring_hash" : "maglev");
  const px__seen_t *eps = px__seen(&cluster_map, seen, "endpoints"),
                   *disc = px__seen(&cluster_map, seen, "discovery");
  if (!eps && !disc)
    px__err(c, px__node_pos(c, n), "a cluster needs 'endpoints' or 'discovery'");
  else if (eps && disc)
    px__err(c, px__node_pos(c, disc->key),
            "'discovery' and 'endpoints' exclude each other (the registry gives a discovered cluster its "
            "endpoints)");
  /* A hash with another lb is kept, not refused: SPEC's example does it, and it lets one
   * switch lb to ring_hash and back without editing two keys. */
  for (size_t i = 0; i < cl->nendpoints; i++)
    for (size_t j = 0; j < i; j++)
      if (cl->endpoints[i].sa.ss_family == cl->endpoints[j].sa.ss_family &&
          memcmp(&cl->endpoints[i].sa, &cl->endpoints[j].sa, sizeof(cl->endpoints[i].sa)) == 0) {
        px__err(c, cl->endpoints[i].pos, "endpoint '%s' is listed twice", cl->endpoints[i].text);
        break;
      }
}

/* A service name is a key segment: [A-Za-z0-9._-], 1..128 bytes. */
static void service_check(px__ctx_t *c, const char *const *field, px_pos_t fallback) {
  const char *s = *field;
  if (!s) return;
  size_t n = strlen(s);
  int ok = n > 0 && n <= 128 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
  for (size_t i = 0; ok && i < n; i++)
    ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
         s[i] == '.' || s[i] == '_' || s[i] == '-';
  if (!ok)
    px__err(c, px__field_pos(c, field, fallback),
            "'service': '%s' must be 1 to 128 of letters, digits, '.', '_' and '-' (it is a segment of the "
            "registry key)",
            s);
}

static void register_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_register_conf_t *r = base;
  (void)seen;
  service_check(c, (const char *const *)&r->service, px__node_pos(c, n));
  if (r->ttl_ms % 1000)
    px__err(c, px__field_pos(c, &r->ttl_ms, px__node_pos(c, n)),
            "'ttl' must be whole seconds (an etcd lease's TTL is)");
  char why[160];
  if (r->address.text &&
      px_reg_address_check(r->address.text, strlen(r->address.text), NULL, why, sizeof(why)) != 0)
    px__err(c, r->address.pos, "'address': %s", why);
}

static void discovery_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_discovery_conf_t *d = base;
  (void)seen;
  service_check(c, (const char *const *)&d->service, px__node_pos(c, n));
}

static void etcd_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_etcd_conf_t *e = base;
  (void)seen;
  if (e->prefix && e->prefix[0] != '/')
    px__err(c, px__field_pos(c, &e->prefix, px__node_pos(c, n)), "'prefix' must start with '/'");
  /* Kept in its normal form: "/outrigger/" is "/outrigger" (SPEC: no trailing slash). */
  if (e->prefix) e->prefix[px_reg_prefix_len(e->prefix)] = '\0';
}

static void breaker_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_breaker_conf_t *b = base;
  if (b->open_duration_ms > b->max_open_duration_ms)
    px__err(c,
            px__field_pos(c, &b->max_open_duration_ms,
                          px__field_pos(c, &b->open_duration_ms, px__node_pos(c, n))),
            "'max_open_duration' must not be shorter than 'open_duration'");
}

static void health_check_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_health_conf_t *h = base;
  if (h->path && h->path[0] != '/')
    px__err(c, px__field_pos(c, &h->path, px__node_pos(c, n)), "'path' must start with '/'");
  if (h->timeout_ms > h->interval_ms)
    px__err(c, px__field_pos(c, &h->timeout_ms, px__field_pos(c, &h->interval_ms, px__node_pos(c, n))),
            "health check 'timeout' must not exceed 'interval'");
}

static void cluster_tls_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_tls_cluster_conf_t *t = base;
  if (!t->cert != !t->key)
    px__err(c, px__node_pos(c, n),
            "cluster 'tls': 'cert' and 'key' go together (client certificate for mTLS)");
}

static void tracing_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  px_tracing_conf_t *t = base;
  (void)seen;
  px_span_url_t url;
  char why[256];
  if (t->zipkin && px_span_url_parse(t->zipkin, &url, why, sizeof(why)) != 0)
    px__err(c, px__field_pos(c, &t->zipkin, px__node_pos(c, n)), "'zipkin': %s", why);
}

/* ---- tables ------------------------------------------------------------- */

static const px__key_t admin_keys[] = {
    K("address", PX__T_ADDR, px_config_t, admin_address, .defs = "127.0.0.1:15000"),
};
static const px__map_t admin_map = MAP_OF("admin", admin_keys, px_config_t);

static const px__key_t log_keys[] = {
    K("level", PX__T_ENUM, px_config_t, log_level, .enums = log_levels, .def = PX_LOG_INFO),
    K("format", PX__T_ENUM, px_config_t, log_json, .enums = log_formats, .def = 0),
    K("access_log", PX__T_CUSTOM, px_config_t, access_log, .custom = &px__access_log_type),
};
static const px__map_t log_map = MAP_OF("log", log_keys, px_config_t);

static const px__key_t tracing_keys[] = {
    K("service_name", PX__T_STRING, px_tracing_conf_t, service_name, .defs = "outrigger"),
    K("propagation", PX__T_FLAGS, px_tracing_conf_t, propagation, .enums = propagations, .def = 3),
    K("sample_rate", PX__T_DOUBLE, px_tracing_conf_t, sample_rate, .min = 0, .max = 1, .def = 1.0),
    K("zipkin", PX__T_STRING, px_tracing_conf_t, zipkin),
    K("queue_size", PX__T_INT, px_tracing_conf_t, queue_size, .min = 2, .max = 65536, .def = 1024),
    K("flush_interval", PX__T_DURATION, px_tracing_conf_t, flush_interval_ms, .min = 10 * MS, .max = HOUR,
      .def = SEC),
    K("export_timeout", PX__T_DURATION, px_tracing_conf_t, export_timeout_ms, .min = 10 * MS, .max = HOUR,
      .def = 2 * SEC),
};
static const px__map_t tracing_map =
    MAP_OF("tracing", tracing_keys, px_tracing_conf_t, .check = tracing_check);

static const px__key_t listener_tls_keys[] = {
    K("cert", PX__T_STRING, px_tls_listener_conf_t, cert, .flags = PX__K_REQUIRED),
    K("key", PX__T_STRING, px_tls_listener_conf_t, key, .flags = PX__K_REQUIRED | PX__K_SECRET),
    K("client_ca", PX__T_STRING, px_tls_listener_conf_t, client_ca),
    K("allowed_identities", PX__T_STRINGS, px_tls_listener_conf_t, allowed_identities),
};
static const px__map_t listener_tls_map =
    MAP_OF("listener tls", listener_tls_keys, px_tls_listener_conf_t, .check = listener_tls_check);

static const px__key_t listener_limits_keys[] = {
    K("max_header_bytes", PX__T_SIZE, px_listener_limits_t, max_header_bytes, .min = KIB, .max = MIB,
      .def = 64 * KIB),
    K("max_body_bytes", PX__T_SIZE, px_listener_limits_t, max_body_bytes, .min = 0, .max = 1024 * GIB,
      .def = 8 * MIB),
    K("header_timeout", PX__T_DURATION, px_listener_limits_t, header_timeout_ms, .min = MS, .max = HOUR,
      .def = 10 * SEC),
    K("idle_timeout", PX__T_DURATION, px_listener_limits_t, idle_timeout_ms, .min = MS, .max = 24 * HOUR,
      .def = 60 * SEC),
};
static const px__map_t listener_limits_map =
    MAP_OF("listener limits", listener_limits_keys, px_listener_limits_t);

static const px__key_t idempotency_keys[] = {
    K("enabled", PX__T_BOOL, px_idempotency_conf_t, enabled, .def = 0),
    K("methods", PX__T_FLAGS, px_idempotency_conf_t, methods, .enums = methods,
      .def = (1u << HTTP_POST) | (1u << HTTP_PATCH)),
    K("required", PX__T_BOOL, px_idempotency_conf_t, required, .def = 0),
    K("ttl", PX__T_DURATION, px_idempotency_conf_t, ttl_ms, .min = SEC, .max = 30 * 24 * HOUR,
      .def = 24 * HOUR),
    K("max_entries", PX__T_COUNT, px_idempotency_conf_t, max_entries, .min = 1, .max = 100000000,
      .def = 100000),
    K("max_response_bytes", PX__T_SIZE, px_idempotency_conf_t, max_response_bytes, .min = 0, .max = 64 * MIB,
      .def = 64 * KIB),
};
static const px__map_t idempotency_map = MAP_OF("idempotency", idempotency_keys, px_idempotency_conf_t);

static const px__key_t match_keys[] = {
    K("prefix", PX__T_STRING, px_match_conf_t, prefix),
    K("path", PX__T_STRING, px_match_conf_t, path),
    K("host", PX__T_STRING, px_match_conf_t, host),
    K("methods", PX__T_FLAGS, px_match_conf_t, methods, .enums = methods, .def = 0),
    K("headers", PX__T_CUSTOM, px_match_conf_t, headers, .custom = &px__headers_type),
};
static const px__map_t match_map = MAP_OF("match", match_keys, px_match_conf_t, .check = match_check);

static const px__key_t backoff_keys[] = {
    K("base", PX__T_DURATION, px_retry_conf_t, backoff_base_ms, .min = MS, .max = HOUR, .def = 25 * MS),
    K("max", PX__T_DURATION, px_retry_conf_t, backoff_max_ms, .min = MS, .max = HOUR, .def = 250 * MS),
};
static const px__map_t backoff_map = MAP_OF("backoff", backoff_keys, px_retry_conf_t);

static const px__key_t budget_keys[] = {
    K("ratio", PX__T_DOUBLE, px_retry_conf_t, budget_ratio, .min = 0, .max = 1, .def = 0.2),
    K("min_concurrency", PX__T_INT, px_retry_conf_t, budget_min_concurrency, .min = 0, .max = 1000000,
      .def = 3),
};
static const px__map_t budget_map = MAP_OF("budget", budget_keys, px_retry_conf_t);

static const px__key_t retry_keys[] = {
    K("attempts", PX__T_INT, px_retry_conf_t, attempts, .min = 1, .max = 10, .def = 2),
    K("on", PX__T_FLAGS, px_retry_conf_t, on, .enums = retry_ons, .min = 1,
      .def = PX_RETRY_ON_CONNECT_FAILURE),
    K("status", PX__T_CUSTOM, px_retry_conf_t, status, .custom = &px__status_type),
    K("per_try_timeout", PX__T_DURATION, px_retry_conf_t, per_try_timeout_ms, .min = 0, .max = 24 * HOUR,
      .def = 0),
    INLINE("backoff", &backoff_map),
    INLINE("budget", &budget_map),
    K("other_endpoint", PX__T_BOOL, px_retry_conf_t, other_endpoint, .def = 1),
    K("idempotency_key", PX__T_ENUM, px_retry_conf_t, idempotency_key, .enums = idem_key_modes,
      .def = PX_IDEMPOTENCY_KEY_PASSTHROUGH),
    K("buffer_limit", PX__T_SIZE, px_retry_conf_t, buffer_limit, .min = 0, .max = 64 * MIB, .def = 64 * KIB),
};
static const px__map_t retry_map = MAP_OF("retry", retry_keys, px_retry_conf_t, .check = retry_check);

static const px__key_t split_keys[] = {
    K("cluster", PX__T_STRING, px_split_conf_t, cluster, .flags = PX__K_REQUIRED),
    K("weight", PX__T_INT, px_split_conf_t, weight, .flags = PX__K_REQUIRED, .min = 0, .max = 10000),
    K("canary", PX__T_BOOL, px_split_conf_t, canary, .def = 0),
};
static const px__map_t split_map =
    MAP_OF("split entry", split_keys, px_split_conf_t, .pos_off = offsetof(px_split_conf_t, pos) + 1);

static const px__key_t sticky_keys[] = {
    K("header", PX__T_STRING, px_canary_conf_t, sticky_header),
    K("cookie", PX__T_STRING, px_canary_conf_t, sticky_cookie),
};
static const px__map_t sticky_map = MAP_OF("sticky", sticky_keys, px_canary_conf_t, .check = sticky_check);

static const px__key_t analysis_keys[] = {
    K("interval", PX__T_DURATION, px_canary_conf_t, interval_ms, .min = SEC, .max = 24 * HOUR,
      .def = 10 * SEC),
    K("min_requests", PX__T_INT, px_canary_conf_t, min_requests, .min = 1, .max = 1000000000, .def = 50),
    K("max_error_rate", PX__T_DOUBLE, px_canary_conf_t, max_error_rate, .min = 0, .max = 1, .def = 0.05),
    K("max_error_rate_delta", PX__T_DOUBLE, px_canary_conf_t, max_error_rate_delta, .min = 0, .max = 1,
      .def = 0.02),
    K("max_latency_ratio", PX__T_DOUBLE, px_canary_conf_t, max_latency_ratio, .min = 1, .max = 100,
      .def = 1.5),
    K("on_fail", PX__T_ENUM, px_canary_conf_t, on_fail_rollback, .enums = on_fails, .def = 1),
};
static const px__map_t analysis_map = MAP_OF("analysis", analysis_keys, px_canary_conf_t);

static const px__key_t promote_keys[] = {
    K("step", PX__T_INT, px_canary_conf_t, promote_step, .flags = PX__K_REQUIRED, .min = 1, .max = 100),
    K("every", PX__T_DURATION, px_canary_conf_t, promote_every_ms, .flags = PX__K_REQUIRED, .min = SEC,
      .max = 24 * HOUR),
    K("until", PX__T_INT, px_canary_conf_t, promote_until, .min = 1, .max = 100, .def = 100),
};
static const px__map_t promote_map = MAP_OF("promote", promote_keys, px_canary_conf_t);

static const px__map_t canary_map;

static void canary_check(px__ctx_t *c, void *base, yaml_node_t *n, const px__seen_t *seen) {
  const px__seen_t *promote = px__seen(&canary_map, seen, "promote");
  (void)base;
  (void)n;
  if (promote && !px__seen(&canary_map, seen, "analysis"))
    px__err(c, px__node_pos(c, promote->key),
            "'promote' needs 'analysis' (each step waits for an interval whose analysis passed)");
}

static const px__key_t canary_keys[] = {
    K("override_header", PX__T_STRING, px_canary_conf_t, override_header, .defs = "x-canary"),
    INLINE("sticky", &sticky_map),
    INLINE("analysis", &analysis_map, HAS(px_canary_conf_t, has_analysis), .flags = PX__K_NULL_IF_ABSENT),
    INLINE("promote", &promote_map, HAS(px_canary_conf_t, has_promote), .flags = PX__K_NULL_IF_ABSENT),
};
static const px__map_t canary_map = MAP_OF("canary", canary_keys, px_canary_conf_t, .check = canary_check);

static const px__key_t abort_keys[] = {
    K("status", PX__T_INT, px_fault_conf_t, abort_status, .flags = PX__K_REQUIRED, .min = 200, .max = 599),
    K("percent", PX__T_DOUBLE, px_fault_conf_t, abort_percent, .flags = PX__K_REQUIRED, .min = 0, .max = 100),
};
static const px__map_t abort_map = MAP_OF("abort", abort_keys, px_fault_conf_t);
static const px__key_t delay_keys[] = {
    K("duration", PX__T_DURATION, px_fault_conf_t, delay_ms, .flags = PX__K_REQUIRED, .min = MS, .max = HOUR),
    K("percent", PX__T_DOUBLE, px_fault_conf_t, delay_percent, .flags = PX__K_REQUIRED, .min = 0, .max = 100),
};
static const px__map_t delay_map = MAP_OF("delay", delay_keys, px_fault_conf_t);
static const px__key_t drop_keys[] = {
    K("percent", PX__T_DOUBLE, px_fault_conf_t, drop_percent, .flags = PX__K_REQUIRED, .min = 0, .max = 100),
};
static const px__map_t drop_map = MAP_OF("drop_response", drop_keys, px_fault_conf_t);
static const px__key_t fault_keys[] = {
    INLINE("abort", &abort_map),
    INLINE("delay", &delay_map),
    INLINE("drop_response", &drop_map),
};
static const px__map_t fault_map = MAP_OF("fault", fault_keys, px_fault_conf_t, .check = fault_check);

static const px__key_t route_keys[] = {
    K("name", PX__T_STRING, px_route_conf_t, name, .flags = PX__K_REQUIRED),
    K("match", PX__T_MAP, px_route_conf_t, match, .map = &match_map),
    K("cluster", PX__T_STRING, px_route_conf_t, cluster),
    K("timeout", PX__T_DURATION, px_route_conf_t, timeout_ms, .min = 0, .max = 24 * HOUR, .def = 15 * SEC),
    K("retry", PX__T_MAP, px_route_conf_t, retry, .map = &retry_map, HAS(px_route_conf_t, has_retry)),
    K("split", PX__T_LIST, px_route_conf_t, split, .map = &split_map, CNT(px_route_conf_t, nsplit), .min = 1,
      .max = 64),
    K("canary", PX__T_MAP, px_route_conf_t, canary, .map = &canary_map, HAS(px_route_conf_t, canary.enabled),
      .flags = PX__K_NULL_IF_ABSENT),
    K("fault", PX__T_MAP, px_route_conf_t, fault, .map = &fault_map, HAS(px_route_conf_t, has_fault),
      .flags = PX__K_NULL_IF_ABSENT),
};
static const px__map_t route_map =
    MAP_OF("route", route_keys, px_route_conf_t, .pos_off = offsetof(px_route_conf_t, pos) + 1,
           .check = route_check);

static const px__key_t register_keys[] = {
    K("service", PX__T_STRING, px_register_conf_t, service, .flags = PX__K_REQUIRED),
    K("address", PX__T_ADDR, px_register_conf_t, address),
    K("ttl", PX__T_DURATION, px_register_conf_t, ttl_ms, .min = SEC, .max = HOUR, .def = 10 * SEC),
    K("labels", PX__T_CUSTOM, px_register_conf_t, labels, .custom = &px__labels_type),
    K("weight", PX__T_INT, px_register_conf_t, weight, .min = 1, .max = PX_REG_MAX_WEIGHT, .def = 1),
};
static const px__map_t register_map =
    MAP_OF("register", register_keys, px_register_conf_t, .check = register_check);

static const px__key_t listener_keys[] = {
    K("name", PX__T_STRING, px_listener_conf_t, name, .flags = PX__K_REQUIRED),
    K("address", PX__T_ADDR, px_listener_conf_t, address, .flags = PX__K_REQUIRED),
    K("register", PX__T_MAP, px_listener_conf_t, reg, .map = &register_map,
      HAS(px_listener_conf_t, has_register), .flags = PX__K_NULL_IF_ABSENT),
    K("tls", PX__T_MAP, px_listener_conf_t, tls, .map = &listener_tls_map, HAS(px_listener_conf_t, has_tls),
      .flags = PX__K_NULL_IF_ABSENT),
    K("limits", PX__T_MAP, px_listener_conf_t, limits, .map = &listener_limits_map),
    K("idempotency", PX__T_MAP, px_listener_conf_t, idempotency, .map = &idempotency_map),
    K("routes", PX__T_LIST, px_listener_conf_t, routes, .map = &route_map, CNT(px_listener_conf_t, nroutes),
      .flags = PX__K_REQUIRED, .min = 1),
};
static const px__map_t listener_map =
    MAP_OF("listener", listener_keys, px_listener_conf_t, .pos_off = offsetof(px_listener_conf_t, pos) + 1);

static const px__key_t pool_keys[] = {
    K("max_idle_per_endpoint", PX__T_INT, px_cluster_conf_t, pool_max_idle_per_endpoint, .min = 0,
      .max = 100000, .def = 64),
    K("idle_timeout", PX__T_DURATION, px_cluster_conf_t, pool_idle_timeout_ms, .min = MS, .max = 24 * HOUR,
      .def = 30 * SEC),
};
static const px__map_t pool_map = MAP_OF("pool", pool_keys, px_cluster_conf_t);

static const px__key_t cluster_limits_keys[] = {
    K("max_connections", PX__T_INT, px_cluster_conf_t, max_connections, .min = 1, .max = 1000000,
      .def = 1024),
    K("max_pending", PX__T_INT, px_cluster_conf_t, max_pending, .min = 0, .max = 1000000, .def = 1024),
    K("max_requests", PX__T_INT, px_cluster_conf_t, max_requests, .min = 1, .max = 1000000, .def = 1024),
    K("max_retries", PX__T_INT, px_cluster_conf_t, max_retries, .min = 0, .max = 1000000, .def = 3),
};
static const px__map_t cluster_limits_map = MAP_OF("cluster limits", cluster_limits_keys, px_cluster_conf_t);

static const px__key_t failure_rate_keys[] = {
    K("threshold", PX__T_DOUBLE, px_breaker_conf_t, rate_threshold, .min = 0, .max = 1, .def = 0.5),
    K("window", PX__T_DURATION, px_breaker_conf_t, rate_window_ms, .min = SEC, .max = HOUR, .def = 10 * SEC),
    K("min_requests", PX__T_INT, px_breaker_conf_t, rate_min_requests, .min = 1, .max = 1000000, .def = 20),
};
static const px__map_t failure_rate_map = MAP_OF("failure_rate", failure_rate_keys, px_breaker_conf_t);

static const px__key_t breaker_keys[] = {
    K("consecutive_failures", PX__T_INT, px_breaker_conf_t, consecutive_failures, .min = 0, .max = 1000000,
      .def = 5),
    INLINE("failure_rate", &failure_rate_map),
    K("open_duration", PX__T_DURATION, px_breaker_conf_t, open_duration_ms, .min = MS, .max = 24 * HOUR,
      .def = 30 * SEC),
    K("max_open_duration", PX__T_DURATION, px_breaker_conf_t, max_open_duration_ms, .min = MS,
      .max = 24 * HOUR, .def = 5 * MIN),
    K("half_open_requests", PX__T_INT, px_breaker_conf_t, half_open_requests, .min = 1, .max = 1000,
      .def = 1),
    K("max_open_percent", PX__T_INT, px_breaker_conf_t, max_open_percent, .min = 0, .max = 100, .def = 50),
};
static const px__map_t breaker_map =
    MAP_OF("circuit_breaker", breaker_keys, px_breaker_conf_t, .check = breaker_check);

static const px__key_t health_keys[] = {
    K("path", PX__T_STRING, px_health_conf_t, path, .defs = "/healthz"),
    K("interval", PX__T_DURATION, px_health_conf_t, interval_ms, .min = MS, .max = 24 * HOUR, .def = 5 * SEC),
    K("timeout", PX__T_DURATION, px_health_conf_t, timeout_ms, .min = MS, .max = HOUR, .def = SEC),
    K("unhealthy_threshold", PX__T_INT, px_health_conf_t, unhealthy_threshold, .min = 1, .max = 1000,
      .def = 3),
    K("healthy_threshold", PX__T_INT, px_health_conf_t, healthy_threshold, .min = 1, .max = 1000, .def = 2),
};
static const px__map_t health_map =
    MAP_OF("health_check", health_keys, px_health_conf_t, .check = health_check_check);

static const px__key_t cluster_tls_keys[] = {
    K("ca", PX__T_STRING, px_tls_cluster_conf_t, ca),
    K("cert", PX__T_STRING, px_tls_cluster_conf_t, cert),
    K("key", PX__T_STRING, px_tls_cluster_conf_t, key, .flags = PX__K_SECRET),
    K("server_name", PX__T_STRING, px_tls_cluster_conf_t, server_name),
};
static const px__map_t cluster_tls_map =
    MAP_OF("cluster tls", cluster_tls_keys, px_tls_cluster_conf_t, .check = cluster_tls_check);

static const px__key_t discovery_keys[] = {
    K("service", PX__T_STRING, px_discovery_conf_t, service, .flags = PX__K_REQUIRED),
    K("labels", PX__T_CUSTOM, px_discovery_conf_t, labels, .custom = &px__labels_type),
};
static const px__map_t discovery_map =
    MAP_OF("discovery", discovery_keys, px_discovery_conf_t, .check = discovery_check);

static const px__key_t cluster_keys[] = {
    K("name", PX__T_STRING, px_cluster_conf_t, name, .flags = PX__K_REQUIRED),
    K("endpoints", PX__T_ADDRS, px_cluster_conf_t, endpoints, CNT(px_cluster_conf_t, nendpoints), .min = 1),
    K("discovery", PX__T_MAP, px_cluster_conf_t, discovery, .map = &discovery_map,
      HAS(px_cluster_conf_t, has_discovery), .flags = PX__K_NULL_IF_ABSENT),
    K("lb", PX__T_ENUM, px_cluster_conf_t, lb, .enums = lbs, .def = PX_LB_ROUND_ROBIN),
    K("hash", PX__T_CUSTOM, px_cluster_conf_t, hash, .custom = &px__hash_type),
    K("connect_timeout", PX__T_DURATION, px_cluster_conf_t, connect_timeout_ms, .min = MS, .max = HOUR,
      .def = SEC),
    INLINE("pool", &pool_map),
    INLINE("limits", &cluster_limits_map),
    K("circuit_breaker", PX__T_MAP, px_cluster_conf_t, breaker, .map = &breaker_map,
      HAS(px_cluster_conf_t, has_breaker), .flags = PX__K_NULL_IF_ABSENT),
    K("health_check", PX__T_MAP, px_cluster_conf_t, health, .map = &health_map,
      HAS(px_cluster_conf_t, has_health_check), .flags = PX__K_NULL_IF_ABSENT),
    K("tls", PX__T_MAP, px_cluster_conf_t, tls, .map = &cluster_tls_map, HAS(px_cluster_conf_t, has_tls),
      .flags = PX__K_NULL_IF_ABSENT),
};
static const px__map_t cluster_map =
    MAP_OF("cluster", cluster_keys, px_cluster_conf_t, .pos_off = offsetof(px_cluster_conf_t, pos) + 1,
           .check = cluster_check);

static const px__key_t etcd_keys[] = {
    K("endpoints", PX__T_CUSTOM, px_etcd_conf_t, endpoints, .flags = PX__K_REQUIRED,
      .custom = &px__etcd_urls_type),
    K("prefix", PX__T_STRING, px_etcd_conf_t, prefix, .defs = "/outrigger"),
    K("timeout", PX__T_DURATION, px_etcd_conf_t, timeout_ms, .min = 10 * MS, .max = MIN, .def = 2 * SEC),
};
static const px__map_t etcd_map = MAP_OF("etcd", etcd_keys, px_etcd_conf_t, .check = etcd_check);
static const px__key_t registry_keys[] = {
    K("etcd", PX__T_MAP, px_config_t, etcd, .map = &etcd_map, .flags = PX__K_REQUIRED),
};
static const px__map_t registry_map = MAP_OF("registry", registry_keys, px_config_t);

static const px__key_t root_keys[] = {
    K("workers", PX__T_CUSTOM, px_config_t, workers, .custom = &px__workers_type),
    K("drain_timeout", PX__T_DURATION, px_config_t, drain_timeout_ms, .min = 0, .max = 24 * HOUR,
      .def = 10 * SEC),
    INLINE("admin", &admin_map, HAS(px_config_t, has_admin)),
    INLINE("log", &log_map),
    K("tracing", PX__T_MAP, px_config_t, tracing, .map = &tracing_map, HAS(px_config_t, tracing.enabled),
      .flags = PX__K_NULL_IF_ABSENT),
    INLINE("registry", &registry_map, HAS(px_config_t, has_registry), .flags = PX__K_NULL_IF_ABSENT),
    K("listeners", PX__T_LIST, px_config_t, listeners, .map = &listener_map, CNT(px_config_t, nlisteners),
      .flags = PX__K_REQUIRED, .min = 1),
    K("clusters", PX__T_LIST, px_config_t, clusters, .map = &cluster_map, CNT(px_config_t, nclusters)),
};
static const px__map_t root_map = MAP_OF("top level", root_keys, px_config_t, .extensions = 1);

/* ---- checks across the file -------------------------------------------- */

typedef struct {
  const char *name;
  px_pos_t pos;
} named_t;

static int named_cmp(const void *a, const void *b) {
  const named_t *x = a, *y = b;
  int r = strcmp(x->name, y->name);
  if (r) return r;
  if (x->pos.line != y->pos.line) return x->pos.line < y->pos.line ? -1 : 1;
  return x->pos.col < y->pos.col ? -1 : x->pos.col > y->pos.col;
}

/* Reports every name after the first of its spelling, pointing back at the first. */
static void check_unique(px__ctx_t *c, named_t *v, size_t n, const char *what, const char *why) {
  if (n > 1) qsort(v, n, sizeof(*v), named_cmp);
  for (size_t i = 1, first = 0; i < n; i++) {
    if (strcmp(v[i].name, v[first].name) != 0) {
      first = i;
      continue;
    }
    px__err(c, v[i].pos, "duplicate %s name '%s' (first defined at line %d)%s", what, v[i].name,
            v[first].pos.line, why);
  }
}

static int find_cluster(px__ctx_t *c, const char *name, px_pos_t pos) {
  const px_config_t *cfg = ((px_config_t *)c->root);
  px__hint_t h = {0};
  for (size_t i = 0; i < cfg->nclusters; i++) {
    if (!cfg->clusters[i].name) continue;
    if (strcmp(cfg->clusters[i].name, name) == 0) return (int)i;
    px__hint_try(&h, name, cfg->clusters[i].name);
  }
  char tmp[96];
  px__err(c, pos, "undefined cluster '%s'%s", name, px__hint_text(&h, tmp, sizeof(tmp)));
  return -1;
}

static int addr_port(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
  if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
  return -1;
}

static int addr_wildcard(const struct sockaddr_storage *ss) {
  if (ss->ss_family == AF_INET) return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (ss->ss_family == AF_INET6)
    return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0;
  return 0;
}

/* Two listening sockets collide when they share a port and either the same address or
 * a wildcard (a v6 wildcard also takes IPv4 on Linux by default). With SO_REUSEPORT
 * the second bind would even succeed and silently share the first one's traffic. */
static int addrs_collide(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (addr_port(a) != addr_port(b)) return 0;
  int wa = addr_wildcard(a), wb = addr_wildcard(b);
  if (a->ss_family != b->ss_family)
    return (wa && a->ss_family == AF_INET6) || (wb && b->ss_family == AF_INET6);
  if (wa || wb) return 1;
  if (a->ss_family == AF_INET)
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)b)->sin_addr.s_addr;
  return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
                sizeof(struct in6_addr)) == 0;
}

static void check_addresses(px__ctx_t *c) {
  px_config_t *cfg = ((px_config_t *)c->root);
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    px_listener_conf_t *l = &cfg->listeners[i];
    if (!l->address.text) continue;
    if (cfg->admin_address.text && addrs_collide(&l->address.sa, &cfg->admin_address.sa)) {
      if (cfg->admin_address.pos.line > 0)
        px__err(c, l->address.pos, "address '%s' collides with the admin address '%s' (line %d)",
                l->address.text, cfg->admin_address.text, cfg->admin_address.pos.line);
      else
        px__err(c, l->address.pos,
                "address '%s' collides with the admin listener's default address '%s'; "
                "set admin.address",
                l->address.text, cfg->admin_address.text);
    }
    for (size_t j = 0; j < i; j++) {
      px_listener_conf_t *o = &cfg->listeners[j];
      if (o->address.text && addrs_collide(&l->address.sa, &o->address.sa)) {
        px__err(c, l->address.pos, "address '%s' collides with listener '%s' at '%s' (line %d)",
                l->address.text, o->name ? o->name : "?", o->address.text, o->address.pos.line);
        break;
      }
    }
  }
}

/* register and discovery need the registry; a record's address is one callers can
 * reach (the listener's, unless register.address says otherwise). */
static void check_registry(px__ctx_t *c) {
  px_config_t *cfg = ((px_config_t *)c->root);
  const char *need = "needs a top-level 'registry: { etcd: { endpoints: [...] } }'";
  for (size_t i = 0; i < cfg->nlisteners; i++) {
    px_listener_conf_t *l = &cfg->listeners[i];
    if (!l->has_register) continue;
    px_pos_t pos = px__field_pos(c, &l->reg.service, l->pos);
    if (!cfg->has_registry) px__err(c, pos, "'register' %s", need);
    if (l->reg.address.text || !l->address.text) continue;
    char why[160];
    if (addr_wildcard(&l->address.sa))
      px__err(c, pos,
              "'register' needs an 'address': the listener's '%s' is a wildcard, which callers cannot "
              "connect to",
              l->address.text);
    else if (px_reg_address_check(l->address.text, strlen(l->address.text), NULL, why, sizeof(why)) != 0)
      px__err(c, pos, "'register' needs an 'address': the listener's: %s", why);
  }
  for (size_t i = 0; i < cfg->nclusters; i++) {
    px_cluster_conf_t *cl = &cfg->clusters[i];
    if (cl->has_discovery && !cfg->has_registry)
      px__err(c, px__field_pos(c, &cl->discovery.service, cl->pos), "'discovery' %s", need);
  }
}

static void check_config(px__ctx_t *c) {
  px_config_t *cfg = ((px_config_t *)c->root);
  size_t nroutes = 0;
  for (size_t i = 0; i < cfg->nlisteners; i++) nroutes += cfg->listeners[i].nroutes;
  size_t cap = PX_MAX(PX_MAX(cfg->nlisteners, cfg->nclusters), nroutes) + 1;
  named_t *v = px_calloc(cap, sizeof(*v));
  size_t n = 0;

  for (size_t i = 0; i < cfg->nlisteners; i++) {
    px_listener_conf_t *l = &cfg->listeners[i];
    if (l->name) v[n++] = (named_t){l->name, px__field_pos(c, &l->name, l->pos)};
  }
  check_unique(c, v, n, "listener", "");
  n = 0;
  for (size_t i = 0; i < cfg->nclusters; i++) {
    px_cluster_conf_t *cl = &cfg->clusters[i];
    if (cl->name) v[n++] = (named_t){cl->name, px__field_pos(c, &cl->name, cl->pos)};
  }
  check_unique(c, v, n, "cluster", "");
  n = 0;
  for (size_t i = 0; i < cfg->nlisteners; i++)
    for (size_t j = 0; j < cfg->listeners[i].nroutes; j++) {
      px_route_conf_t *r = &cfg->listeners[i].routes[j];
      if (r->name) v[n++] = (named_t){r->name, px__field_pos(c, &r->name, r->pos)};
    }
  check_unique(c, v, n, "route", "; route names are unique across all listeners");
  free(v);

  for (size_t i = 0; i < cfg->nlisteners; i++)
    for (size_t j = 0; j < cfg->listeners[i].nroutes; j++) {
      px_route_conf_t *r = &cfg->listeners[i].routes[j];
      r->cluster_index = r->cluster ? find_cluster(c, r->cluster, px__field_pos(c, &r->cluster, r->pos)) : -1;
      for (size_t k = 0; k < r->nsplit; k++) {
        px_split_conf_t *s = &r->split[k];
        s->cluster_index =
            s->cluster ? find_cluster(c, s->cluster, px__field_pos(c, &s->cluster, s->pos)) : -1;
      }
    }
  check_addresses(c);
  check_registry(c);
}

/* ---- the public calls: this schema, handed to the engine ------------------------- */

static const px__schema_t schema = {&root_map, sizeof(px_config_t), check_config};

px_config_t *px_config_parse(const char *name, const char *text, size_t len, px_errlist_t *errs) {
  px_config_t *cfg = px__parse(&schema, name, text, len, errs);
  if (cfg) {
    cfg->path = px_strdup(name);
    atomic_init(&cfg->refs, 1);
  }
  return cfg;
}

void px_config_ref(px_config_t *cfg) { atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed); }

void px_config_free(px_config_t *cfg) {
  if (!cfg || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1) return;
  free(cfg->path);
  px__free(&schema, cfg);
}

void px_config_to_json(const px_config_t *cfg, px_buf_t *out) { px__json_map(&root_map, cfg, out); }

int px_config_listener_at(const px_config_t *cfg, const struct sockaddr_storage *sa) {
  for (size_t i = 0; cfg && i < cfg->nlisteners; i++)
    if (px_addr_same(&cfg->listeners[i].address.sa, sa)) return (int)i;
  return -1;
}

px_config_t *px_config_load(const char *path, px_errlist_t *errs) {
  px_pos_t pos = {path, 0, 0};
  FILE *f = fopen(path, "rb");
  if (!f) {
    px_errlist_add(errs, pos, "cannot read: %s", strerror(errno));
    return NULL;
  }
  px_buf_t b = {0};
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) px_buf_append(&b, chunk, n);
  int failed = ferror(f), err = errno;
  fclose(f);
  if (failed) {
    px_errlist_add(errs, pos, "cannot read: %s", strerror(err));
    px_buf_free(&b);
    return NULL;
  }
  px_config_t *cfg = px_config_parse(path, b.data ? b.data : "", b.len, errs);
  px_buf_free(&b);
  return cfg;
}
