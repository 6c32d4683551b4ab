/* The access log (SPEC §8, `log.access_log: off | stdout | PATH`): one JSON object per
 * request, one line each, written by a thread of its own so a worker never waits on the
 * disk, and reopened on request (SIGUSR1) for log rotation.
 *
 * Two halves. px_access_format is pure formatting: a record in, a line out, unit-tested
 * byte for byte. px_access_log_t is the writer: each worker formats its lines straight
 * into a byte ring of its own (single producer, single consumer, no lock, no
 * allocation), and the writer thread drains every ring with one writev(2) per wake-up.
 * A line that does not fit in its worker's ring is dropped and counted, never waited
 * for: a slow disk costs log lines, not latency.
 *
 * The line's keys, always in this order:
 *
 *   key                type     from px_access_t     notes
 *   time               string   time_ns              RFC 3339 UTC, milliseconds:
 *                                                    "2026-12-01T20:59:33.123Z"
 *   listener           string   listener
 *   route              string   route                null: no route matched
 *   method             string   method
 *   path               string   path                 the target as received, at most
 *                                                    PX_ACCESS_PATH_MAX bytes of it
 *   path_truncated     true     -                    only on lines whose path was cut
 *   status             number   status               0: no answer (the client left)
 *   duration_ms        number   duration_ns          milliseconds, 3 decimals (µs)
 *   upstream_cluster   string   cluster              null: no cluster (none chosen)
 *   upstream_endpoint  string   endpoint             "127.0.0.1:8080"; null: none tried
 *   attempts           number   attempts             upstream tries made
 *   bytes_in           number   bytes_in             request bytes received, head included
 *   bytes_out          number   bytes_out            response bytes sent, head included
 *   trace_id           string   trace_id             32 hex digits
 *   request_id         string   request_id           the x-request-id
 *   error              string   error                the x-outrigger-error kind when the
 *                                                    sidecar answered itself
 *   client             string   client               "127.0.0.1:5555"
 *   client_identity    string   client_identity      the client's TLS identity
 *
 * Empty strings are written as null, not left out, so every line has the same keys
 * (path_truncated aside). Every string is JSON-escaped, and the line is valid UTF-8
 * whatever the bytes were: valid UTF-8 passes through as it is, control characters,
 * DEL, `"` and `\` are escaped, and a byte that is not part of a valid UTF-8 sequence
 * is written as \u00XX (so it reads back as U+00XX: distinguishable in the raw line,
 * where the escape shows, but not after decoding). Strings other than the path are cut
 * at PX_ACCESS_FIELD_MAX bytes, which no configured name, endpoint, id or identity the
 * request path produces reaches (request ids are at most 200 bytes). */
#ifndef PX_ACCESSLOG_H
#define PX_ACCESSLOG_H

#include <stdint.h>

#include "buf.h"
#include "core.h"

#define PX_ACCESS_PATH_MAX 2048 /* bytes of the path kept (cut on a UTF-8 boundary) */
#define PX_ACCESS_FIELD_MAX 256 /* bytes kept of every other string */
#define PX_ACCESS_TIME_LEN 24   /* "2026-12-01T20:59:33.123Z" */
#define PX_ACCESS_RING_MIN 4096 /* smallest ring; sizes are rounded up to a power of two */
#define PX_ACCESS_FLUSH_MS 50   /* the writer's wake-up period when no ring is half full */

/* One request's record, filled by the request path when the request ends. The slices
 * point into the request's memory and need only live for the call. */
typedef struct {
  uint64_t time_ns;     /* wall clock (px_access_now_ns), epoch ns, at the request's start */
  uint64_t duration_ns; /* from the start to the end of the answer (or of the request) */
  px_str_t listener, route, method, path;
  int status; /* 0: no answer was sent */
  px_str_t cluster, endpoint;
  int attempts;
  uint64_t bytes_in, bytes_out;
  px_str_t trace_id, request_id, error;
  px_str_t client, client_identity;
} px_access_t;

/* The wall clock in epoch nanoseconds (CLOCK_REALTIME: px_now_ns is monotonic and
 * means nothing outside the process). */
uint64_t px_access_now_ns(void);

/* Appends `a` to `out` as one JSON line ending in "\n". */
void px_access_format(const px_access_t *a, px_buf_t *out);

/* Writes `epoch_ns` as RFC 3339 UTC with milliseconds into `dst` (PX_ACCESS_TIME_LEN
 * bytes, no NUL). The date and time of the second are cached per thread, so within a
 * second only the milliseconds are redone. */
void px_access_time(uint64_t epoch_ns, char dst[PX_ACCESS_TIME_LEN]);

typedef struct px_access_log_s px_access_log_t;

typedef struct {
  uint64_t lines_written; /* lines the destination took */
  uint64_t lines_dropped; /* lines lost: a full ring, or a write that failed */
  uint64_t write_errors;  /* failed writes, and failed reopens */
  uint64_t reopens;       /* files reopened (px_access_log_reopen) */
} px_access_log_stats_t;

/* Opens `dest` ("stdout" or a file path, opened O_APPEND|O_CREAT, mode 0644) with a
 * ring of `ring_bytes` (rounded up to a power of two, at least PX_ACCESS_RING_MIN) for
 * each of `producers` producers, and starts the writer thread. Returns 0 and sets *out,
 * or a negative error code: a file that cannot be opened gives its errno, negated (as
 * libuv's codes are); no destination or no producer, PX_EUSAGE; a ring over 1 GiB,
 * PX_ETOOLARGE. */
int px_access_log_open(px_access_log_t **out, const char *dest, int producers, size_t ring_bytes);

/* Formats `a` into producer `producer`'s ring. Never blocks and never allocates:
 * returns 0, or PX_EOVERFLOW when the line did not fit and was dropped (counted). One
 * thread at a time per producer (a worker writes only to its own); lines of one
 * producer reach the destination in order, whole lines of different producers may
 * interleave. */
int px_access_log_write(px_access_log_t *log, int producer, const px_access_t *a);

/* Asks the writer thread to close and reopen the file (after logrotate renamed it).
 * Lines written before the call go to the old file; lines written after it go to the
 * old or the new one until `reopens` counts it. Safe from any thread, and
 * async-signal-safe (an atomic store and a write(2) to an eventfd), so it may be called
 * from a signal handler. With "stdout" it does nothing. */
void px_access_log_reopen(px_access_log_t *log);

/* The counters, read from any thread (each exact, the four not one snapshot). Once a
 * line is counted as written or dropped, its room in the ring is free again. */
void px_access_log_stats(const px_access_log_t *log, px_access_log_stats_t *out);

/* Writes out every line already in the rings, stops and joins the writer thread, closes
 * the file and frees the log. Only once no producer writes any more; it waits for the
 * destination to take the lines. */
void px_access_log_close(px_access_log_t *log);

#endif
