/* The process's telemetry sinks: the access log (accesslog.h) and the span exporter
 * (span.h), each one thread of its own, shared by every worker. They are made from the
 * configuration at start and at each reload, on the main thread; a snapshot carries
 * the ones its configuration asks for (runtime.h), so a request writes to the sinks of
 * the configuration it started with.
 *
 * A reload that keeps a sink's destination keeps the sink. One whose destination
 * changed gets a new sink; the old one stays open until exit, since requests of an
 * older snapshot may still write to it (a reload is rare, a sink small). */
#ifndef PX_SINKS_H
#define PX_SINKS_H

#include "accesslog.h"
#include "buf.h"
#include "config.h"
#include "span.h"

typedef struct {
  px_access_log_t *alog;     /* NULL: no access log */
  px_span_exporter_t *spans; /* NULL: no span export */
} px_sinks_t;

/* The sinks `cfg` asks for, for `nworkers` producers. Returns 0, or an error (logged,
 * with the file and what failed): then nothing changed. */
int px_sinks_apply(const px_config_t *cfg, int nworkers, px_sinks_t *out);
/* SIGUSR1: the access log files are opened again (after logrotate moved them). */
void px_sinks_reopen(void);
/* Their counters, for GET /metrics. */
void px_sinks_render(px_buf_t *out);
/* At exit, once no worker writes any more: what is queued is written and sent (the
 * export bounded by its timeout), and everything freed. */
void px_sinks_close(void);

#endif
