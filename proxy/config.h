/* The configuration file (SPEC §3), parsed and validated into plain structs.
 *
 * A px_config_t is immutable once loaded: the runtime builds its routing tables and
 * cluster state from it and keeps a reference while any request uses it, so a reload
 * loads a whole new px_config_t and throws it away on any error (as nginx does).
 * Every field has its default filled in; strings are owned by the config (one
 * px_config_free releases them). Durations are in milliseconds, sizes in bytes. */
#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"

/* Where a value came from, for error messages: FILE:LINE:COL, 1-based. */
typedef struct {
  const char *file; /* points at px_config_t.path */
  int line, col;
} px_pos_t;

/* Accumulates "FILE:LINE:COL: message" lines so that every error in a file is
 * reported in one pass. */
typedef struct {
  char **items;
  size_t n, cap;
} px_errlist_t;

void px_errlist_add(px_errlist_t *e, px_pos_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void px_errlist_free(px_errlist_t *e);

typedef struct {
  char *text; /* "127.0.0.1:8001" as written */
  struct sockaddr_storage sa;
  px_pos_t pos;
} px_addr_conf_t;

typedef struct {
  char **items;
  size_t n;
} px_strlist_t;

/* Labels of a registered instance, or a discovered cluster's selector: {K: V}, keys
 * unique, both non-empty strings of at most 128 bytes (SPEC §12). */
typedef struct {
  char *key, *value;
} px_label_conf_t;
typedef struct {
  px_label_conf_t *items;
  size_t n;
} px_labels_conf_t;
/* A deep copy of `from` into `to` (for state that outlives its configuration). */
void px_labels_copy(px_labels_conf_t *to, const px_labels_conf_t *from);
/* Frees what a copy or the loader allocated; the set is empty after. */
void px_labels_free(px_labels_conf_t *l);
/* Whether both hold the same pairs in the same order. */
int px_labels_equal(const px_labels_conf_t *a, const px_labels_conf_t *b);
/* Appends the labels as one JSON object, {"version":"v1"}. */
void px_labels_json(const px_labels_conf_t *l, px_buf_t *out);

/* ---- listeners ---------------------------------------------------------- */

typedef struct {
  char *cert, *key, *client_ca; /* NULL when absent; client_ca => mTLS */
  px_strlist_t allowed_identities;
} px_tls_listener_conf_t;

typedef struct {
  size_t max_header_bytes;    /* default 64 KiB */
  size_t max_body_bytes;      /* default 8 MiB */
  uint64_t header_timeout_ms; /* default 10s: whole request head must arrive in it */
  uint64_t idle_timeout_ms;   /* default 60s: keep-alive connection with no request */
} px_listener_limits_t;

typedef struct {
  int enabled;               /* default false */
  unsigned methods;          /* bit (1 << llhttp_method_t); default POST|PATCH */
  int required;              /* default false */
  uint64_t ttl_ms;           /* default 24h */
  size_t max_entries;        /* default 100000 */
  size_t max_response_bytes; /* default 64 KiB */
} px_idempotency_conf_t;

typedef struct {
  char *name, *value; /* value compared exactly; name case-insensitively */
} px_header_match_t;

typedef struct {
  char *prefix;     /* NULL when absent; default "/" when neither prefix nor path */
  char *path;       /* exact path match (query string excluded) */
  char *host;       /* Host header without port, case-insensitive; NULL = any */
  unsigned methods; /* bit (1 << llhttp_method_t); 0 = any */
  px_header_match_t *headers;
  size_t nheaders;
} px_match_conf_t;

enum {
  PX_RETRY_ON_CONNECT_FAILURE = 1 << 0,
  PX_RETRY_ON_RESET = 1 << 1,
  PX_RETRY_ON_TIMEOUT = 1 << 2,
  PX_RETRY_ON_GATEWAY_ERROR = 1 << 3,
  PX_RETRY_ON_5XX = 1 << 4,
  PX_RETRY_ON_RETRIABLE_STATUS = 1 << 5,
};

typedef enum {
  PX_IDEMPOTENCY_KEY_GENERATE,
  PX_IDEMPOTENCY_KEY_PASSTHROUGH,
  PX_IDEMPOTENCY_KEY_OFF
} px_idem_key_mode_t;

typedef struct {
  int attempts; /* total tries, first included; default 2 */
  unsigned on;  /* PX_RETRY_ON_*; default connect-failure */
  int *status;  /* for retriable-status */
  size_t nstatus;
  uint64_t per_try_timeout_ms;        /* 0 = only the route timeout applies (default) */
  uint64_t backoff_base_ms;           /* default 25ms */
  uint64_t backoff_max_ms;            /* default 250ms */
  double budget_ratio;                /* default 0.2 */
  int budget_min_concurrency;         /* default 3 */
  int other_endpoint;                 /* default true */
  px_idem_key_mode_t idempotency_key; /* default passthrough */
  size_t buffer_limit;                /* default 64 KiB */
} px_retry_conf_t;

typedef struct {
  char *cluster;
  int cluster_index; /* resolved into px_config_t.clusters */
  int weight;        /* 0..10000 */
  int canary;
  px_pos_t pos;
} px_split_conf_t;

typedef struct {
  int enabled;           /* a `canary:` block was given */
  char *override_header; /* default "x-canary" */
  char *sticky_header;   /* NULL when not sticky by header */
  char *sticky_cookie;   /* NULL when not sticky by cookie */
  int has_analysis;
  uint64_t interval_ms;        /* default 10s */
  int min_requests;            /* default 50 */
  double max_error_rate;       /* default 0.05 */
  double max_error_rate_delta; /* default 0.02 */
  double max_latency_ratio;    /* default 1.5 */
  int on_fail_rollback;        /* on_fail: rollback (default) | none */
  int has_promote;             /* promote: raise the canary while analysis passes */
  int promote_step;            /* percent of the traffic a step adds, 1..100 */
  uint64_t promote_every_ms;   /* at most one step per this */
  int promote_until;           /* percent to stop at, 1..100 (default 100) */
} px_canary_conf_t;

typedef struct {
  int abort_status; /* 0 = no abort */
  double abort_percent;
  uint64_t delay_ms; /* 0 = no delay */
  double delay_percent;
  double drop_percent; /* 0 = no drop */
} px_fault_conf_t;

typedef struct {
  char *name;
  px_match_conf_t match;
  char *cluster;         /* NULL when `split` is used */
  int cluster_index;     /* resolved; -1 with split */
  uint64_t timeout_ms;   /* whole upstream exchange; default 15s; 0 = none */
  px_retry_conf_t retry; /* defaults when `retry` is absent (see SPEC §3) */
  int has_retry;
  px_split_conf_t *split;
  size_t nsplit;
  px_canary_conf_t canary;
  px_fault_conf_t fault;
  int has_fault;
  px_pos_t pos;
} px_route_conf_t;

/* A listener's `register` (SPEC §12): its record in the registry. */
typedef struct {
  char *service;
  px_addr_conf_t address; /* what callers connect to; defaults to the listener's */
  uint64_t ttl_ms;        /* the lease's; whole seconds, default 10s */
  px_labels_conf_t labels;
  int weight; /* 1..128, default 1 */
} px_register_conf_t;

typedef struct {
  char *name;
  px_addr_conf_t address;
  int has_register;
  px_register_conf_t reg;
  int has_tls;
  px_tls_listener_conf_t tls;
  px_listener_limits_t limits;
  px_idempotency_conf_t idempotency;
  px_route_conf_t *routes;
  size_t nroutes;
  px_pos_t pos;
} px_listener_conf_t;

/* ---- clusters ----------------------------------------------------------- */

typedef enum {
  PX_LB_ROUND_ROBIN,
  PX_LB_LEAST_REQUEST,
  PX_LB_RANDOM,
  PX_LB_RING_HASH,
  PX_LB_MAGLEV
} px_lb_kind_t;
typedef enum { PX_HASH_NONE, PX_HASH_HEADER, PX_HASH_COOKIE, PX_HASH_PATH, PX_HASH_SOURCE_IP } px_hash_kind_t;

typedef struct {
  int consecutive_failures;      /* default 5 */
  double rate_threshold;         /* default 0.5 */
  uint64_t rate_window_ms;       /* default 10s */
  int rate_min_requests;         /* default 20 */
  uint64_t open_duration_ms;     /* default 30s */
  uint64_t max_open_duration_ms; /* default 5m */
  int half_open_requests;        /* default 1 */
  int max_open_percent;          /* default 50 */
} px_breaker_conf_t;

typedef struct {
  char *path;              /* default "/healthz" */
  uint64_t interval_ms;    /* default 5s */
  uint64_t timeout_ms;     /* default 1s */
  int unhealthy_threshold; /* default 3 */
  int healthy_threshold;   /* default 2 */
} px_health_conf_t;

typedef struct {
  char *ca, *cert, *key, *server_name;
} px_tls_cluster_conf_t;

/* A cluster's `discovery` (SPEC §12): its endpoints are the records of `service`
 * whose labels include all of `labels`. */
typedef struct {
  char *service;
  px_labels_conf_t labels;
} px_discovery_conf_t;

typedef struct {
  char *name;
  px_addr_conf_t *endpoints; /* none with discovery: the registry gives them */
  size_t nendpoints;
  int has_discovery;
  px_discovery_conf_t discovery;
  px_lb_kind_t lb;                /* default round_robin */
  px_hash_kind_t hash;            /* default none (ring_hash/maglev need one) */
  char *hash_name;                /* header or cookie name */
  uint64_t connect_timeout_ms;    /* default 1s */
  int pool_max_idle_per_endpoint; /* default 64 */
  uint64_t pool_idle_timeout_ms;  /* default 30s */
  int max_connections;            /* default 1024 */
  int max_pending;                /* default 1024 */
  int max_requests;               /* default 1024 */
  int max_retries;                /* default 3 */
  int has_breaker;
  px_breaker_conf_t breaker;
  int has_health_check;
  px_health_conf_t health;
  int has_tls;
  px_tls_cluster_conf_t tls;
  px_pos_t pos;
} px_cluster_conf_t;

/* ---- the whole file ----------------------------------------------------- */

typedef struct {
  char *service_name;   /* default "outrigger" */
  unsigned propagation; /* trace.h's PX_PROP_*: bit 0 w3c, bit 1 b3, bit 2 b3-single; default w3c, b3 */
  double sample_rate;   /* default 1.0 */
  char *zipkin;         /* NULL = no export */
  int queue_size;       /* spans queued per worker for export; default 1024 */
  uint64_t flush_interval_ms, export_timeout_ms; /* default 1s, 2s */
  int enabled;                                   /* a `tracing:` block was given */
} px_tracing_conf_t;

/* `registry.etcd` (SPEC §12). */
typedef struct {
  px_strlist_t endpoints; /* members' client URLs, "http://127.0.0.1:2379" */
  char *prefix;           /* default "/outrigger", kept without trailing slashes */
  uint64_t timeout_ms;    /* per etcd request; default 2s */
} px_etcd_conf_t;

typedef struct px_config_s {
  char *path;                   /* file name as given, used in error positions */
  int workers;                  /* 0 = auto (default) */
  uint64_t drain_timeout_ms;    /* default 10s */
  px_addr_conf_t admin_address; /* default 127.0.0.1:15000 */
  int has_admin;                /* an `admin:` block was given */
  int log_level;                /* px_log_level_t; default info */
  int log_json;                 /* format: json */
  char *access_log;             /* NULL = off (default), "stdout", or a path */
  px_tracing_conf_t tracing;
  int has_registry; /* a `registry:` block was given */
  px_etcd_conf_t etcd;
  px_listener_conf_t *listeners;
  size_t nlisteners;
  px_cluster_conf_t *clusters;
  size_t nclusters;
  atomic_int refs; /* 1 when loaded; px_config_ref adds one, px_config_free drops one */
} px_config_t;

/* Loads and validates a file. On failure returns NULL and appends every error
 * found to `errs` as "FILE:LINE:COL: message". */
px_config_t *px_config_load(const char *path, px_errlist_t *errs);
/* Same from memory; `name` stands for the file name in positions. */
px_config_t *px_config_parse(const char *name, const char *text, size_t len, px_errlist_t *errs);
/* Another holder of cfg (a snapshot that swaps only discovered endpoints shares its
 * file's configuration); each reference is dropped by px_config_free. */
void px_config_ref(px_config_t *cfg);
/* Drops a reference; the last one frees. NULL is a no-op. */
void px_config_free(px_config_t *cfg);
/* The index of the listener bound to `sa`, or -1 (NULL cfg: -1). Reloads identify
 * listeners by address. */
int px_config_listener_at(const px_config_t *cfg, const struct sockaddr_storage *sa);
/* The effective configuration as JSON for GET /config, with TLS key paths redacted. */
void px_config_to_json(const px_config_t *cfg, px_buf_t *out);

/* Value parsers shared with the command line and tests. Return 0 or -1. */
int px_parse_duration_ms(const char *s, uint64_t *out); /* "250ms" "2s" "5m" "24h" */
int px_parse_size(const char *s, size_t *out);          /* "512", "64KiB", "8MiB", "1GiB" */

#endif
