/* The service registry's decisions (SPEC §12), pure: what a listener's record says and
 * how it is written, where it lives in etcd, what a sidecar's instance is called, and how
 * a discovered cluster's endpoints follow the records under its service as puts and
 * deletes come in. No I/O, no clock: the I/O layer (leases, the watch, timers) calls in
 * with what etcd said and gets back what to write or which endpoints to use.
 *
 * Keys are PREFIX/services/SERVICE/ID. Every function taking a prefix takes it with or
 * without trailing slashes ("/outrigger/" and "/outrigger" are the same prefix). */
#ifndef PX_REGISTRY_H
#define PX_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"

/* Bounds a record must keep to be taken; past them it is refused (and skipped). */
#define PX_REG_MAX_LABELS 32
#define PX_REG_MAX_LABEL_LEN 128 /* bytes, for keys and values alike */
/* The balancer's bound (PX_LB_MAX_WEIGHT): a record the balancer could not be built with
 * is refused here, where the reason can be logged, rather than failing the whole table. */
#define PX_REG_MAX_WEIGHT 128
#define PX_REG_MAX_VALUE (64u << 10) /* bytes of a record's JSON: room for fields we do not know */
#define PX_REG_MAX_RECORDS 65535     /* per discovered service: PX_LB_MAX_ENDPOINTS */
#define PX_REG_ADDR_MAX 64           /* "[v6]:PORT" and its NUL fit */
#define PX_REG_STARTED_MAX 40
#define PX_REG_ID_MAX 64 /* an instance ID and its NUL fit */

/* A label; both strings NUL-terminated (a record with a NUL inside a label is refused). */
typedef struct {
  const char *key, *value;
} px_reg_label_t;

/* One instance's record: the value stored at its key, as JSON
 * {"address": "HOST:PORT", "labels": {...}, "weight": N, "started": "RFC 3339"}. */
typedef struct {
  char address[PX_REG_ADDR_MAX];    /* "10.0.0.1:8080", "[2001:db8::1]:8080", "localhost:8080" */
  int weight;                       /* 1..PX_REG_MAX_WEIGHT */
  char started[PX_REG_STARTED_MAX]; /* RFC 3339 UTC; "" when absent */
  const px_reg_label_t *labels;     /* nlabels of them, in document order */
  size_t nlabels;
  void *mem; /* what px_reg_record_parse allocated; NULL in a record the caller fills in */
} px_reg_record_t;

/* Appends the record's JSON to out ("started" left out when empty). Labels are written as
 * given: the caller's come from a configuration that already refused duplicate keys. */
void px_reg_record_encode(const px_reg_record_t *r, px_buf_t *out);
/* Parses a record (unknown fields ignored). 0; or PX_EPARSE / PX_ETOOLARGE with the
 * reason in why ("address: port 0 is out of range"), for the caller's "skipped" line. */
int px_reg_record_parse(const char *json, size_t n, px_reg_record_t *out, char *why, size_t whylen);
/* Releases what px_reg_record_parse allocated (a zeroed or caller-built record is fine). */
void px_reg_record_free(px_reg_record_t *r);
/* Whether "HOST:PORT" is an address a record may hold: a dotted IPv4, a bracketed IPv6
 * or localhost (never a name to resolve), and a port 1..65535 without sign or leading 0.
 * When canon is not NULL (PX_REG_ADDR_MAX bytes) it gets the address with the IPv6 part
 * in its canonical spelling, so that one endpoint has one name. 0 or PX_EPARSE. */
int px_reg_address_check(const char *addr, size_t n, char *canon, char *why, size_t whylen);
/* Formats a Unix time (seconds) as RFC 3339 UTC, "2026-12-01T21:00:00Z", for "started". */
void px_reg_rfc3339(int64_t unix_s, char out[PX_REG_STARTED_MAX]);

/* Whether the record's labels include every pair of the selector (an empty selector takes
 * every record). */
int px_reg_labels_match(const px_reg_record_t *r, const px_reg_label_t *sel, size_t nsel);

/* Length of the prefix without its trailing slashes (the normal form: "/outrigger/" is
 * "/outrigger", "/" is ""); NULL is "". */
size_t px_reg_prefix_len(const char *prefix);
/* Appends PREFIX/services/SERVICE/ID to out. 0, or PX_EUSAGE when the service or the id is
 * NULL, empty or holds a '/'. */
int px_reg_key(px_buf_t *out, const char *prefix, const char *service, const char *id);
/* The etcd range of every key under PREFIX/services/SERVICE/: *start gets that path,
 * *end etcd's range_end for it. 0, or PX_EUSAGE for a service px_reg_key would refuse. */
int px_reg_service_range(px_buf_t *start, px_buf_t *end, const char *prefix, const char *service);
/* Appends etcd's range_end for "every key beginning with p[0..n)": p with trailing 0xff
 * bytes dropped and the last one left incremented; "\0" (to the end of the keyspace)
 * when nothing is left. */
void px_reg_prefix_end(px_buf_t *out, const void *p, size_t n);
/* Splits a key into its service and id, pointing into key. 0, or PX_EPARSE for a key
 * not under PREFIX/services/, an empty service or id, more segments after the id, or a
 * NUL anywhere after the prefix. */
int px_reg_key_parse(const char *key, size_t klen, const char *prefix, px_str_t *service, px_str_t *id);

/* The ID of this process's instance of `service` on `address`, for its key: the
 * hostname in [a-z0-9-] (at most 40 bytes of it), a '-', and the first 12 hex digits of
 * SHA-256(hostname "|" address "|" service). The same on every restart of the same
 * configuration, so a restart replaces its record instead of adding one; different on
 * every host, even when hostnames clean up alike. */
void px_reg_instance_id(const char *hostname, const char *address, const char *service,
                        char out[PX_REG_ID_MAX]);

/* A discovered cluster's view of its service: the records under PREFIX/services/SERVICE/
 * by key, and the endpoints of those that match the selector. */
typedef struct px_reg_set_s px_reg_set_t;

/* One change under the service's prefix, from a range answer (each kv is a put) or a
 * watch event. Bytes are borrowed for the call. */
typedef struct {
  int is_delete;
  const char *key;
  size_t klen;
  const char *value; /* a put's; ignored for a delete */
  size_t vlen;
  int64_t mod_revision; /* 0: unknown (the event is then never taken for a stale one) */
} px_reg_event_t;

/* What px_reg_set_apply did with an event. */
typedef enum {
  PX_REG_ADDED,   /* a new key with a record that parses */
  PX_REG_UPDATED, /* a key already held, with a newer record that parses */
  PX_REG_REMOVED, /* a deleted key that was held */
  PX_REG_IGNORED, /* nothing to do: a delete of a key not held, or an event older than the
                     record held (a replay) */
  PX_REG_SKIPPED, /* not taken (why says why): a key not of this service or of the wrong
                     shape, or a value that does not parse. A put that does not parse
                     also drops what its key held: that record is gone from etcd. */
} px_reg_outcome_t;

/* An endpoint of a discovered cluster. */
typedef struct {
  const char *address;
  int weight;
  int64_t mod_revision; /* of the record it comes from (0: unknown) */
} px_reg_endpoint_t;

/* A set for `service` under `prefix` whose endpoints are the records matching the
 * selector's pairs (copied). 0, or PX_EUSAGE for a service px_reg_key would refuse or a
 * selector past the label bounds. */
int px_reg_set_new(px_reg_set_t **out, const char *prefix, const char *service, const px_reg_label_t *sel,
                   size_t nsel);
/* Frees the set and every record it holds; NULL is a no-op. */
void px_reg_set_free(px_reg_set_t *s);
/* Applies one put or delete; why (may be NULL) gets the reason for SKIPPED. */
px_reg_outcome_t px_reg_set_apply(px_reg_set_t *s, const px_reg_event_t *ev, char *why, size_t whylen);
/* Forgets every record, before applying a fresh range (after the watch was compacted away
 * or etcd came back): what the range no longer has must not linger. Endpoints stay what
 * they were for px_reg_set_changed, so a re-list that finds the same ones is no change. */
void px_reg_set_clear(px_reg_set_t *s);
/* Records held, matching the selector or not. */
size_t px_reg_set_count(const px_reg_set_t *s);
/* The matching endpoints, sorted by address (bytewise, as strcmp), one per address (records that share an
 * address count once, with the highest weight): the same set gives the same list in the
 * same order whatever the order of events. Valid until the set next changes. */
const px_reg_endpoint_t *px_reg_set_endpoints(px_reg_set_t *s, size_t *n);
/* Whether the matching endpoints (addresses and weights) differ from what they were at
 * the previous call (the first call: 1), so the caller rebuilds its balancer only then. */
int px_reg_set_changed(px_reg_set_t *s);

#endif
