/* The admin listener (SPEC §9): health, readiness, metrics, clusters, the effective
 * configuration, and drain. It runs on the main thread's loop, beside signal
 * handling and reloads, never on a worker. */
#ifndef PX_ADMIN_H
#define PX_ADMIN_H

#include "httpserver.h"
#include "registry_run.h"
#include "worker.h"

typedef struct {
  px_snapshot_t **current; /* the main thread's reference to the running snapshot */
  px_worker_t *workers;
  int nworkers;
  const int *draining;
  const int *ready;
  const uint64_t *reloads_ok;
  const uint64_t *reloads_failed;
  px_regrun_t **regrun;      /* the service registry's state (SPEC §12); *regrun NULL without */
  void (*drain)(void *data); /* POST /drain */
  void *data;
} px_admin_ctx_t;

/* Starts the admin server; returns 0 or a negative libuv error (e.g. bind). */
int px_admin_start(uv_loop_t *loop, const struct sockaddr *addr, px_admin_ctx_t *ctx, px_hsrv_t **out);

#endif
