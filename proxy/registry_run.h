/* The service registry at run time (SPEC §12): the I/O that registry.c's decisions and
 * etcd_json.c's bodies need, on the main thread's loop, over etcd_client.h.
 *
 * Registration: each listener with `register` keeps one record under a lease of its
 * `ttl` (grant, put, a keepalive every ttl/3); the lease is revoked (the record gone at
 * once) while the listener's app fails its health checks and when the sidecar drains,
 * and granted and put again when the app recovers, when etcd says the lease is gone
 * (etcd was away longer than the ttl) and after etcd comes back.
 *
 * Discovery: each cluster with `discovery` lists its service's records, then watches
 * from the next revision; after a compaction, a cancelled watch or a lost stream it
 * lists again. Its endpoints (the records whose labels match, registry.c) change only
 * when a list or an event changes them; then `changed` runs and the main thread builds
 * a snapshot with them (px_regrun_lookup), so requests never look anything up. While
 * etcd is unreachable the last known endpoints stay (a warning, and
 * outrigger_discovery_stale). */
#ifndef PX_REGISTRY_RUN_H
#define PX_REGISTRY_RUN_H

#include <uv.h>

#include "buf.h"
#include "config.h"
#include "runtime.h"

typedef struct px_regrun_s px_regrun_t;

typedef struct {
  /* Whether listener `name`'s app passes its health checks now. */
  int (*app_healthy)(void *data, const char *listener);
  /* Some discovered cluster's endpoints changed: build a snapshot (px_regrun_lookup). */
  void (*changed)(void *data);
  void *data;
} px_regrun_hooks_t;

px_regrun_t *px_regrun_new(uv_loop_t *loop, const px_regrun_hooks_t *hooks);
/* Follows `cfg` (at start, and after each reload that applied): what stays the same
 * keeps its lease, watch and endpoints; what is new starts; what went is withdrawn.
 * A file without `registry` stops everything. */
void px_regrun_apply(px_regrun_t *rr, const px_config_t *cfg);
/* A px_disc_lookup_fn (ctx: the px_regrun_t) for px_snapshot_new. */
void px_regrun_lookup(void *rr, const px_cluster_conf_t *cc, px_disc_view_t *out);
/* The sidecar drains: every record is withdrawn now (lease revoked); none is written
 * again. Discovery goes on, for the requests still served. */
void px_regrun_drain(px_regrun_t *rr);
/* Stops everything (revokes nothing more) and frees; `done` (may be NULL) runs once the
 * loop has closed every handle. */
void px_regrun_close(px_regrun_t *rr, void (*done)(void *data), void *data);

/* GET /metrics: outrigger_registry_* and outrigger_discovery_* families. */
void px_regrun_render(px_regrun_t *rr, px_buf_t *out);
/* GET /clusters: a discovered cluster's ,"discovery":{...} (nothing for a static one). */
void px_regrun_cluster_json(px_regrun_t *rr, const char *cluster, px_buf_t *out);

#endif
