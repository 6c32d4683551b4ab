#include "sinks.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"

/* Bytes of access-log ring per worker: about 2,000 lines of 400 bytes, some 200 ms of a
 * busy worker's lines while the writer thread is away. */
#define ALOG_RING (1u << 20)
#define MAX_SINKS 64 /* kept open until exit: the current one and those reloads replaced */

typedef struct {
  char *dest;
  px_access_log_t *log;
} alog_entry_t;

typedef struct {
  char *url;
  int queue, interval_ms, timeout_ms;
  px_span_exporter_t *exp;
} exp_entry_t;

/* The main thread changes these (apply, close); the admin thread reads the counters. */
static uv_mutex_t mu;
static uv_once_t once = UV_ONCE_INIT;
static alog_entry_t alogs[MAX_SINKS];
static exp_entry_t exps[MAX_SINKS];
static int nalogs, nexps;

static void init(void) { uv_mutex_init(&mu); }

static uint32_t pow2_at_least(uint32_t v) {
  uint32_t p = 2;
  while (p < v) p <<= 1;
  return p;
}

static int find_alog(const char *dest) {
  for (int i = nalogs; i-- > 0;)
    if (strcmp(alogs[i].dest, dest) == 0) return i;
  return -1;
}

static int find_exp(const px_tracing_conf_t *t) {
  for (int i = nexps; i-- > 0;)
    if (strcmp(exps[i].url, t->zipkin) == 0 && exps[i].queue == t->queue_size &&
        exps[i].interval_ms == (int)t->flush_interval_ms && exps[i].timeout_ms == (int)t->export_timeout_ms)
      return i;
  return -1;
}

int px_sinks_apply(const px_config_t *cfg, int nworkers, px_sinks_t *out) {
  uv_once(&once, init);
  px_sinks_t s = {NULL, NULL};
  int r = 0;
  uv_mutex_lock(&mu);
  if (cfg->access_log) {
    int i = find_alog(cfg->access_log);
    if (i >= 0) {
      s.alog = alogs[i].log;
    } else if (nalogs == MAX_SINKS) {
      px_error("access_log %s: too many access-log destinations since start (%d): restart to change it again",
               cfg->access_log, MAX_SINKS);
      r = PX_EOVERFLOW;
    } else if ((r = px_access_log_open(&s.alog, cfg->access_log, nworkers, ALOG_RING)) != 0) {
      px_error("access_log %s: cannot open it: %s", cfg->access_log, px_strerror(r));
    } else {
      alogs[nalogs++] = (alog_entry_t){px_strdup(cfg->access_log), s.alog};
    }
  }
  const px_tracing_conf_t *t = &cfg->tracing;
  if (r == 0 && t->enabled && t->zipkin) {
    int i = find_exp(t);
    if (i >= 0) {
      s.spans = exps[i].exp;
    } else if (nexps == MAX_SINKS) {
      px_error("tracing.zipkin %s: too many span exporters since start (%d): restart to change it again",
               t->zipkin, MAX_SINKS);
      r = PX_EOVERFLOW;
    } else {
      char err[256];
      px_span_exporter_conf_t ec = {.url = t->zipkin,
                                    .producers = (unsigned)nworkers,
                                    .queue_capacity = pow2_at_least((uint32_t)t->queue_size),
                                    .batch_size =
                                        1024, /* fewer round trips when the collector shares the core */
                                    .flush_interval_ms = (uint32_t)t->flush_interval_ms,
                                    .timeout_ms = (uint32_t)t->export_timeout_ms};
      if ((r = px_span_exporter_start(&ec, &s.spans, err, sizeof(err))) != 0)
        px_error("tracing.zipkin %s: %s", t->zipkin, err);
      else
        exps[nexps++] = (exp_entry_t){px_strdup(t->zipkin), t->queue_size, (int)t->flush_interval_ms,
                                      (int)t->export_timeout_ms, s.spans};
    }
  }
  uv_mutex_unlock(&mu);
  /* A log just opened for this configuration and now unused stays in the table: it
   * is closed at exit like the others. */
  if (r == 0) *out = s;
  return r;
}

void px_sinks_reopen(void) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  for (int i = 0; i < nalogs; i++) px_access_log_reopen(alogs[i].log);
  uv_mutex_unlock(&mu);
}

void px_sinks_render(px_buf_t *out) {
  uv_once(&once, init);
  px_access_log_stats_t al = {0};
  px_span_stats_t sp = {0};
  uv_mutex_lock(&mu);
  for (int i = 0; i < nalogs; i++) {
    px_access_log_stats_t one;
    px_access_log_stats(alogs[i].log, &one);
    al.lines_written += one.lines_written;
    al.lines_dropped += one.lines_dropped;
    al.write_errors += one.write_errors;
    al.reopens += one.reopens;
  }
  for (int i = 0; i < nexps; i++) {
    px_span_stats_t one;
    px_span_exporter_stats(exps[i].exp, &one);
    sp.submitted += one.submitted;
    sp.exported += one.exported;
    sp.dropped_queue_full += one.dropped_queue_full;
    sp.dropped_export_failed += one.dropped_export_failed;
    sp.batches_sent += one.batches_sent;
    sp.batches_failed += one.batches_failed;
  }
  uv_mutex_unlock(&mu);
  px_buf_printf(out,
                "# HELP outrigger_access_log_lines_total Access-log lines written.\n"
                "# TYPE outrigger_access_log_lines_total counter\n"
                "outrigger_access_log_lines_total %llu\n"
                "# HELP outrigger_access_log_dropped_total Access-log lines lost: the writer was behind "
                "(its ring full) or a write failed.\n"
                "# TYPE outrigger_access_log_dropped_total counter\n"
                "outrigger_access_log_dropped_total %llu\n"
                "# HELP outrigger_access_log_write_errors_total Failed writes or reopens of the access log.\n"
                "# TYPE outrigger_access_log_write_errors_total counter\n"
                "outrigger_access_log_write_errors_total %llu\n"
                "# HELP outrigger_access_log_reopens_total Access-log files opened again (SIGUSR1).\n"
                "# TYPE outrigger_access_log_reopens_total counter\n"
                "outrigger_access_log_reopens_total %llu\n",
                (unsigned long long)al.lines_written, (unsigned long long)al.lines_dropped,
                (unsigned long long)al.write_errors, (unsigned long long)al.reopens);
  px_buf_printf(out,
                "# HELP outrigger_spans_exported_total Spans the Zipkin collector accepted.\n"
                "# TYPE outrigger_spans_exported_total counter\n"
                "outrigger_spans_exported_total %llu\n"
                "# HELP outrigger_spans_dropped_total Spans lost, by reason: the export queue was full, or "
                "the collector refused, timed out or could not be reached.\n"
                "# TYPE outrigger_spans_dropped_total counter\n"
                "outrigger_spans_dropped_total{reason=\"queue_full\"} %llu\n"
                "outrigger_spans_dropped_total{reason=\"export_failed\"} %llu\n"
                "# HELP outrigger_span_batches_total Span batches posted to the collector, by outcome.\n"
                "# TYPE outrigger_span_batches_total counter\n"
                "outrigger_span_batches_total{result=\"ok\"} %llu\n"
                "outrigger_span_batches_total{result=\"failed\"} %llu\n",
                (unsigned long long)sp.exported, (unsigned long long)sp.dropped_queue_full,
                (unsigned long long)sp.dropped_export_failed, (unsigned long long)sp.batches_sent,
                (unsigned long long)sp.batches_failed);
}

void px_sinks_close(void) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  for (int i = 0; i < nexps; i++) {
    px_span_exporter_stop(exps[i].exp, NULL);
    free(exps[i].url);
  }
  for (int i = 0; i < nalogs; i++) {
    px_access_log_close(alogs[i].log);
    free(alogs[i].dest);
  }
  nexps = nalogs = 0;
  uv_mutex_unlock(&mu);
}
