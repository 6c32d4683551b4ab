/* Where inbound idempotency keeps its entries (SPEC §5): one store for the process,
 * shared by every worker thread, behind a small vtable so that a store shared between
 * sidecars (Redis) can take the in-memory one's place without the filter changing, as
 * h2o's pluggable parts and Redis's transports are built.
 *
 * An entry is keyed by the bytes of a scoped key (px_idem_store_key) and is in one of two
 * states. IN_FLIGHT: made by begin for the request that runs, holding its head
 * fingerprint and a token that only its owner knows; it is never evicted, and only its
 * owner ends it, with complete (the answer is kept) or abort (it is not), from the
 * request's end hook whatever way the request ends. COMPLETED: the whole fingerprint,
 * the status, the header lines and the body, until now + ttl. A completed entry handed
 * to a caller is the caller's until it releases it (the in-memory store hands out a
 * copy), so a replay's bytes stay valid while they are written even if the entry is
 * evicted, expires or is replaced meanwhile.
 *
 * The interface is synchronous: the in-memory store holds a shard's mutex for a table
 * update and the copy of one answer (idem_store.c). A Redis store cannot answer
 * so, and the interface would then become asynchronous the libuv way: each call takes
 * a callback and its data and returns 0, or an error with the callback never run; the
 * answer (what px_idem_begin_t holds now) arrives in the callback on the caller's loop;
 * the in-memory store would call back at once. A store shared between processes would
 * also need in-flight entries to lapse (a lease), since a sidecar that dies never
 * aborts its own; this one lives and dies with its requests, so it has none. */
#ifndef PX_IDEM_STORE_H
#define PX_IDEM_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "idempotency.h"

typedef struct px_idem_store_s px_idem_store_t;

/* A stored answer, read-only to the caller, valid until released. */
typedef struct {
  px_idem_fp_t fp;  /* of the request that made it */
  int status;       /* as given to complete (px_idem_response_storable: 200..499) */
  px_str_t headers; /* header lines as given to complete: "name: value\r\n"... */
  px_str_t body;
} px_idem_record_t;

/* What begin (and lookup) found. */
typedef enum {
  PX_IDEM_STORE_ABSENT,    /* lookup only: nothing, or only an expired entry */
  PX_IDEM_STORE_BEGUN,     /* begin only: an in-flight entry is the caller's (out->token) */
  PX_IDEM_STORE_IN_FLIGHT, /* another request runs with the key (out->head: its head fingerprint) */
  PX_IDEM_STORE_COMPLETED, /* out->rec, which the caller must release */
  PX_IDEM_STORE_FULL,      /* begin only: no room (the shard is full of in-flight entries) */
} px_idem_store_rc_t;

typedef struct {
  uint64_t token;              /* BEGUN: for complete or abort; never 0 */
  uint64_t head;               /* IN_FLIGHT: the running request's head digest (px_idem_fp_t) */
  const px_idem_record_t *rec; /* COMPLETED */
} px_idem_begin_t;

/* Counters for metrics; entries, in_flight and bytes are current values, the rest
 * totals since the store was made. */
typedef struct {
  uint64_t entries; /* in flight and completed */
  uint64_t in_flight;
  uint64_t bytes;     /* keys, header lines and bodies held */
  uint64_t stored;    /* completes that kept an answer */
  uint64_t evictions; /* completed entries dropped for room before their ttl */
  uint64_t expired;   /* completed entries dropped after their ttl */
  uint64_t full;      /* begins answered FULL */
} px_idem_store_stats_t;

/* The store interface. Every call may come from any thread at once. */
typedef struct {
  /* Atomically either makes an in-flight entry for `key` (BEGUN, with its token) or
   * reports what is there: IN_FLIGHT, COMPLETED (a reference in out->rec), or FULL
   * when there is no room for another entry (or the key is longer than
   * PX_IDEM_STORE_KEY_MAX, which px_idem_store_key never makes). An expired completed
   * entry counts as absent and is replaced. */
  px_idem_store_rc_t (*begin)(px_idem_store_t *s, px_str_t key, uint64_t head, uint64_t now_ms,
                              px_idem_begin_t *out);
  /* Turns the caller's in-flight entry into a completed one holding copies of the
   * bytes, expiring at now_ms + ttl_ms, if `token` is still its token. Returns 0;
   * PX_ENOTFOUND when the entry is not the caller's in-flight one (never begun, already
   * ended, or replaced), which is then left alone; PX_ETOOLARGE when the answer cannot
   * fit the store's bytes bound, PX_EOVERFLOW when in-flight entries leave it no room.
   * Whatever it returns, the caller's in-flight entry is gone afterwards. */
  int (*complete)(px_idem_store_t *s, px_str_t key, uint64_t token, const px_idem_fp_t *fp, int status,
                  px_str_t headers, px_str_t body, uint64_t ttl_ms, uint64_t now_ms);
  /* Removes the caller's in-flight entry if `token` is still its token: 0, else
   * PX_ENOTFOUND (an entry made or completed since is left alone). */
  int (*abort)(px_idem_store_t *s, px_str_t key, uint64_t token);
  /* What begin would find, without making anything: ABSENT, IN_FLIGHT or COMPLETED (a
   * reference to release). For the admin endpoint and tests; the data path uses begin. */
  px_idem_store_rc_t (*lookup)(px_idem_store_t *s, px_str_t key, uint64_t now_ms, px_idem_begin_t *out);
  /* A hint that begin (token 0) or complete or abort with `key` and `token` follows
   * soon, so that a store may start fetching what they will read (the in-memory store:
   * the key's table slot and the token's entry, cache misses in a large store) while the
   * caller does other work. May be NULL. */
  void (*prefetch)(px_idem_store_t *s, px_str_t key, uint64_t token);
  /* Gives back a record from begin or lookup. */
  void (*release)(px_idem_store_t *s, const px_idem_record_t *rec);
  /* Reads the counters, each on its own: for metrics, not for decisions. */
  void (*stats)(px_idem_store_t *s, px_idem_store_stats_t *out);
  /* Frees the store and its entries; every record must have been released. */
  void (*destroy)(px_idem_store_t *s);
} px_idem_store_vt_t;

/* What every store starts with; its implementation's state follows. */
struct px_idem_store_s {
  const px_idem_store_vt_t *vt;
};

/* The in-process store: `nshards` shards (each its own mutex, table and ring of answers
 * in LRU order; a key's shard comes from its hash), at most `max_entries` entries and
 * `max_bytes` of keys, header lines and bodies in all, each shard holding an equal share
 * of both (fewer shards are made when max_entries is smaller than nshards). Over either
 * bound a shard evicts its least recently used completed entries; a shard whose share is
 * all in flight answers FULL. A record bigger than one shard's share of max_bytes is
 * never kept, so max_bytes / nshards should exceed max_response_bytes plus a key. At most
 * 256 shards. The rings are reserved up front (about 1.2 × max_bytes plus 100 bytes an
 * entry, as address space) and touched as they fill, about 4/3 of what they hold. */
px_idem_store_t *px_idem_store_mem_new(size_t max_entries, size_t max_bytes, unsigned nshards);

/* The calls through the vtable, so callers read as plain functions. */
static inline px_idem_store_rc_t px_idem_store_begin(px_idem_store_t *s, px_str_t key, uint64_t head,
                                                     uint64_t now_ms, px_idem_begin_t *out) {
  return s->vt->begin(s, key, head, now_ms, out);
}
static inline int px_idem_store_complete(px_idem_store_t *s, px_str_t key, uint64_t token,
                                         const px_idem_fp_t *fp, int status, px_str_t headers, px_str_t body,
                                         uint64_t ttl_ms, uint64_t now_ms) {
  return s->vt->complete(s, key, token, fp, status, headers, body, ttl_ms, now_ms);
}
static inline int px_idem_store_abort(px_idem_store_t *s, px_str_t key, uint64_t token) {
  return s->vt->abort(s, key, token);
}
static inline px_idem_store_rc_t px_idem_store_lookup(px_idem_store_t *s, px_str_t key, uint64_t now_ms,
                                                      px_idem_begin_t *out) {
  return s->vt->lookup(s, key, now_ms, out);
}
static inline void px_idem_store_prefetch(px_idem_store_t *s, px_str_t key, uint64_t token) {
  if (s->vt->prefetch) s->vt->prefetch(s, key, token);
}
static inline void px_idem_store_release(px_idem_store_t *s, const px_idem_record_t *rec) {
  s->vt->release(s, rec);
}
static inline void px_idem_store_stats(px_idem_store_t *s, px_idem_store_stats_t *out) {
  s->vt->stats(s, out);
}
static inline void px_idem_store_destroy(px_idem_store_t *s) { s->vt->destroy(s); }

#endif
