/* Spans for Zipkin (SPEC §8): each request through the sidecar yields a SERVER span and
 * each upstream try a CLIENT span, exported in batches of Zipkin v2 JSON without blocking
 * traffic.
 *
 * Three parts. The record, px_span_t: fixed size, plain data, its strings inline and cut
 * to bounded lengths, so a worker fills one on its stack and hands it over with one
 * memcpy. The encoding, px_span_zipkin_json: pure, a batch of records to a Zipkin v2
 * JSON array. The exporter: one single-producer/single-consumer ring per worker and a
 * thread of its own that drains the rings and POSTs batches to the collector. A
 * worker's px_span_submit takes no lock, allocates nothing and makes no system call
 * (but once per half ring, to wake the exporter); when its ring is full the span is
 * dropped and counted, so a slow or hung collector costs traffic nothing. */
#ifndef PX_SPAN_H
#define PX_SPAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "net.h"
#include "core.h"

/* Capacities of the inline strings, the terminating NUL included: a longer string is
 * cut to CAP - 1 bytes, backed off to the start of a UTF-8 sequence so that the cut
 * leaves no half character (px_span_set_str). Names and paths beyond these lengths are
 * rare, and a trace only needs enough of them to be recognised. */
#define PX_SPAN_NAME_CAP 96     /* "GET /r/{route}" */
#define PX_SPAN_SERVICE_CAP 48  /* endpoint service names */
#define PX_SPAN_METHOD_CAP 16   /* http.method */
#define PX_SPAN_PATH_CAP 256    /* http.path (query included, as the caller gives it) */
#define PX_SPAN_ERROR_CAP 96    /* error: a short reason */
#define PX_SPAN_ROUTE_CAP 64    /* outrigger.route */
#define PX_SPAN_CLUSTER_CAP 64  /* outrigger.cluster */
#define PX_SPAN_ENDPOINT_CAP 64 /* outrigger.endpoint: "10.0.0.7:8080", "[::1]:80", a host name */
#define PX_SPAN_DECISION_CAP 64 /* outrigger.decision: "retry: 5xx", "breaker: open" */

typedef enum {
  PX_SPAN_KIND_NONE = 0, /* "kind" omitted (a local span) */
  PX_SPAN_SERVER = 1,
  PX_SPAN_CLIENT = 2,
} px_span_kind_t;

/* A Zipkin endpoint. Each part is omitted from the JSON when unknown (family 0, port
 * 0, an empty service), and the whole endpoint when all three are. */
typedef struct {
  uint8_t addr[16]; /* family 4: the IPv4 address in addr[0..3]; 6: the IPv6 one; network order */
  uint16_t port;    /* host order */
  uint8_t family;   /* 0 (none), 4 or 6 */
  char service[PX_SPAN_SERVICE_CAP];
} px_span_endpoint_t;

/* One span. Zero it first (px_span_init, or `= {0}`): every field left zero is
 * omitted from the JSON. Strings are NUL-terminated; set them with PX_SPAN_SET. */
typedef struct {
  /* 128-bit trace id, big endian. A 64-bit one (trace_id_64, written as 16 hex
   * digits) sits in trace_id[8..15] with trace_id[0..7] zero, as B3 pads it. */
  uint8_t trace_id[16];
  uint8_t id[8];         /* never zero: a span without one is not encoded */
  uint8_t parent_id[8];  /* all zero: a root span, "parentId" omitted */
  uint64_t timestamp_us; /* start, microseconds since the epoch (px_span_now_us); 0 = omitted */
  uint64_t duration_us;  /* written as at least 1, as Zipkin wants */
  uint8_t kind;          /* px_span_kind_t */
  uint8_t debug;         /* "debug": true, when set */
  uint8_t trace_id_64;
  uint16_t status_code; /* tag http.status_code; 0 = none */
  uint16_t attempt;     /* tag outrigger.attempt (1 = the first try); 0 = none */
  px_span_endpoint_t local, remote;
  char name[PX_SPAN_NAME_CAP];
  /* Tags, each omitted when empty. */
  char method[PX_SPAN_METHOD_CAP];     /* http.method */
  char path[PX_SPAN_PATH_CAP];         /* http.path */
  char error[PX_SPAN_ERROR_CAP];       /* error: Zipkin shows the span as failed */
  char route[PX_SPAN_ROUTE_CAP];       /* outrigger.route */
  char cluster[PX_SPAN_CLUSTER_CAP];   /* outrigger.cluster */
  char endpoint[PX_SPAN_ENDPOINT_CAP]; /* outrigger.endpoint */
  char decision[PX_SPAN_DECISION_CAP]; /* outrigger.decision */
} px_span_t;

static inline void px_span_init(px_span_t *s) { memset(s, 0, sizeof(*s)); }

/* Copies `s` into dst (cap bytes, NUL-terminated), cut as the capacities above say;
 * returns the number of bytes kept. Bytes after a NUL inside `s` are lost (the record
 * holds C strings); bytes that are not UTF-8 are replaced when encoded. */
size_t px_span_set_str(char *dst, size_t cap, px_str_t s);
/* The same for one of px_span_t's char arrays (a pointer given instead does not compile,
 * since its size would be taken for the capacity). */
#define PX_SPAN_SET(span_field, str)                                                                         \
  px_span_set_str((span_field), sizeof(span_field) + PX__SPAN_IS_ARRAY(span_field), (str))
#define PX__SPAN_IS_ARRAY(a)                                                                                 \
  (sizeof(char[1 - 2 * __builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0]))]) - 1)

/* Sets an endpoint's address and port from an AF_INET or AF_INET6 socket address
 * (an IPv4-mapped IPv6 address becomes IPv4); any other family clears them. */
void px_span_set_addr(px_span_endpoint_t *ep, const struct sockaddr *sa);

/* Wall-clock time in microseconds since the epoch, for timestamp_us (clock_gettime
 * through the vDSO: no system call). */
uint64_t px_span_now_us(void);

/* Appends spans[0..n) to `out` as one Zipkin v2 JSON array (zipkin2-api.yaml, POST
 * /api/v2/spans); returns how many were written. A span whose trace id or id is zero
 * is left out, since the collector would refuse the whole batch for it. Span names
 * and service names are written in lower case, as Zipkin stores them; strings are
 * escaped, and bytes that are not UTF-8 become U+FFFD. */
size_t px_span_zipkin_json(const px_span_t *spans, size_t n, px_buf_t *out);

/* ---- the exporter ---------------------------------------------------------------- */

/* A collector URL, "http://HOST[:PORT][/PATH]" (net.h's px_http_url_t): HOST is an IPv4
 * address, "[IPv6]" or a host name (resolved by the exporter thread at each connect); PORT
 * defaults to 80, PATH to /api/v2/spans. */
typedef px_http_url_t px_span_url_t;

/* Parses a collector URL. Returns 0, or PX_ECONFIG with a message in err (errlen
 * bytes, NUL-terminated) when it is not an http URL this exporter can use (https
 * included, for now). */
int px_span_url_parse(const char *url, px_span_url_t *out, char *err, size_t errlen);

typedef struct {
  const char *url;            /* collector, see px_span_url_t */
  unsigned producers;         /* rings, one per worker thread: 1..1024 */
  uint32_t queue_capacity;    /* spans per ring, a power of two 2..65536; 0 = 1024 */
  uint32_t batch_size;        /* most spans per POST; 0 = 256 */
  uint32_t flush_interval_ms; /* the exporter's wake-up period; 0 = 1000 */
  uint32_t timeout_ms;        /* one POST: connect, send and the whole answer; 0 = 5000 */
} px_span_exporter_conf_t;

/* Totals since start; any thread may read them at any time until stop, which hands
 * over the final ones, where submitted == exported + dropped_export_failed. */
typedef struct {
  uint64_t submitted;          /* spans taken into a ring */
  uint64_t exported;           /* spans in a batch the collector answered 2xx */
  uint64_t dropped_queue_full; /* spans refused by px_span_submit */
  /* In a failed batch (status, timeout, connection), still queued when stop gave up,
   * or without ids (never sendable). */
  uint64_t dropped_export_failed;
  uint64_t batches_sent;   /* batches answered 2xx */
  uint64_t batches_failed; /* the others */
} px_span_stats_t;

typedef struct px_span_exporter_s px_span_exporter_t;

/* Allocates the rings and starts the exporter thread. Returns 0 and *out; PX_ECONFIG
 * with a message in err for a bad URL or setting; a negative errno (message in err)
 * when the system refuses an eventfd or a thread. On error nothing is left running. */
int px_span_exporter_start(const px_span_exporter_conf_t *conf, px_span_exporter_t **out, char *err,
                           size_t errlen);

/* Queues a copy of *span on producer `worker`'s ring. Only that worker's thread may
 * use that ring. Returns 0, or -1 when the ring is full (the span is dropped and
 * counted) or worker is out of range. Never blocks. */
int px_span_submit(px_span_exporter_t *e, unsigned worker, const px_span_t *span);
/* The same without the copy: the slot the next span of producer `worker` goes into
 * (NULL when the ring is full, or worker out of range: the span is dropped and
 * counted), filled in place by that worker and published by px_span_commit, before
 * any other call on that ring. Every field must be set (px_span_init first). */
px_span_t *px_span_reserve(px_span_exporter_t *e, unsigned worker);
void px_span_commit(px_span_exporter_t *e, unsigned worker);

/* The totals now (relaxed loads: each exact, the set not a single snapshot). */
void px_span_exporter_stats(const px_span_exporter_t *e, px_span_stats_t *out);

/* Flushes what is queued, within one timeout_ms from now (a POST under way when it is
 * called finishes within its own timeout, which ends sooner), counts what could not be
 * sent as failed, joins the thread and frees everything; the final totals go to *final
 * when it is not NULL. Call it once no producer submits any more. */
void px_span_exporter_stop(px_span_exporter_t *e, px_span_stats_t *final);

#endif
