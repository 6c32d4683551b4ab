#include "idem_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* An entry, in flight or completed. A completed one is one allocation: the entry, then
 * the key, the header lines and the body, so a record handed out is a single block whose
 * last reference frees it. An in-flight one holds only its key: complete makes the
 * completed block (outside the lock) and swaps it in, which is safe because in-flight
 * entries are never handed out, only their tokens. */
typedef struct ment_s {
  px_idem_record_t rec;         /* first: a record handed out is its entry */
  struct ment_s *hnext;         /* hash chain; after removal, the list of entries to put */
  struct ment_s *lprev, *lnext; /* the LRU list, which holds completed entries only */
  atomic_uint refs;             /* the table's (while linked), and one per record handed out */
  int completed;
  uint64_t hash, token, expires_ms;
  size_t bytes;                /* what it counts against max_bytes: key (+ headers + body) */
  uint8_t head[PX_SHA256_LEN]; /* in flight: the head fingerprint */
  size_t keylen;
  char key[];
} ment_t;

/* A shard: its own lock, table and LRU list, and its share of both bounds. The counters
 * are written under the lock and read by stats without it. */
typedef struct {
  pthread_mutex_t mu;
  ment_t **buckets;
  size_t mask;
  ment_t *lru_head, *lru_tail; /* most recently used first */
  size_t n, max_n;             /* entries, in flight included */
  size_t bytes, max_bytes;
  size_t in_flight;
  uint64_t gen; /* the last token given; tokens are unique per shard, so per key */
  atomic_ullong c_entries, c_in_flight, c_bytes, c_stored, c_evictions, c_expired, c_full;
  char pad[64]; /* keeps one shard's lock off its neighbour's cache line */
} shard_t;

typedef struct {
  px_idem_store_t base;
  shard_t *shards;
  unsigned nshards;
  uint64_t seed; /* so that keys colliding on purpose cannot be worked out in advance */
} mem_t;

typedef enum { DROP_OWNER, DROP_EVICTED, DROP_EXPIRED } drop_why_t;

/* FNV-1a from a per-store basis, then a 64-bit finaliser (murmur3's fmix64) so that the
 * high bits (the shard) and the low bits (the bucket) both depend on every byte. */
static uint64_t key_hash(const mem_t *m, px_str_t k) {
  uint64_t h = 0xcbf29ce484222325ull ^ m->seed;
  for (size_t i = 0; i < k.n; i++) h = (h ^ (unsigned char)k.p[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 33);
}

static shard_t *shard_of(mem_t *m, uint64_t h) { return &m->shards[(uint32_t)(h >> 32) % m->nshards]; }

static ment_t *ment_new(px_str_t key, uint64_t h, size_t extra) {
  ment_t *e = px_malloc(sizeof(*e) + key.n + extra);
  memset(e, 0, sizeof(*e));
  atomic_init(&e->refs, 1);
  e->hash = h;
  e->keylen = key.n;
  if (key.n) memcpy(e->key, key.p, key.n);
  e->bytes = key.n;
  return e;
}

static void ment_put(ment_t *e) {
  if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

/* Puts the table's reference of every entry removed under the lock, once it is let go:
 * freeing a 64 KiB body is no work for a lock to wait on. */
static void bury(ment_t *grave) {
  while (grave) {
    ment_t *next = grave->hnext;
    ment_put(grave);
    grave = next;
  }
}

static ment_t *find(shard_t *sh, uint64_t h, px_str_t key) {
  ment_t *e = sh->buckets[h & sh->mask];
  while (e && !(e->hash == h && e->keylen == key.n && (key.n == 0 || memcmp(e->key, key.p, key.n) == 0)))
    e = e->hnext;
  return e;
}

static ment_t **slot_of(shard_t *sh, const ment_t *e) {
  ment_t **p = &sh->buckets[e->hash & sh->mask];
  while (*p != e) p = &(*p)->hnext;
  return p;
}

static void lru_unlink(shard_t *sh, ment_t *e) {
  *(e->lprev ? &e->lprev->lnext : &sh->lru_head) = e->lnext;
  *(e->lnext ? &e->lnext->lprev : &sh->lru_tail) = e->lprev;
  e->lprev = e->lnext = NULL;
}

static void lru_push_front(shard_t *sh, ment_t *e) {
  e->lprev = NULL;
  e->lnext = sh->lru_head;
  *(sh->lru_head ? &sh->lru_head->lprev : &sh->lru_tail) = e;
  sh->lru_head = e;
}

static void lru_touch(shard_t *sh, ment_t *e) {
  if (sh->lru_head == e) return;
  lru_unlink(sh, e);
  lru_push_front(sh, e);
}

/* Takes `e` out of the table (and the LRU list) onto *grave, for bury after unlock. */
static void drop(shard_t *sh, ment_t *e, drop_why_t why, ment_t **grave) {
  *slot_of(sh, e) = e->hnext;
  if (e->completed) {
    lru_unlink(sh, e);
  } else {
    sh->in_flight--;
  }
  sh->n--;
  sh->bytes -= e->bytes;
  if (why == DROP_EVICTED) atomic_fetch_add_explicit(&sh->c_evictions, 1, memory_order_relaxed);
  if (why == DROP_EXPIRED) atomic_fetch_add_explicit(&sh->c_expired, 1, memory_order_relaxed);
  e->hnext = *grave;
  *grave = e;
}

static int expired(const ment_t *e, uint64_t now_ms) { return now_ms >= e->expires_ms; }

/* Frees the shard's share for `need_n` more entries and `need_bytes` more bytes by
 * dropping completed entries from the LRU tail; -1 when in-flight entries leave too
 * little. Nothing is dropped for a need that could never be met. */
static int make_room(shard_t *sh, size_t need_n, size_t need_bytes, uint64_t now_ms, ment_t **grave) {
  if (need_n > sh->max_n || need_bytes > sh->max_bytes) return -1;
  while (sh->n + need_n > sh->max_n || sh->bytes + need_bytes > sh->max_bytes) {
    ment_t *e = sh->lru_tail;
    if (!e) return -1;
    drop(sh, e, expired(e, now_ms) ? DROP_EXPIRED : DROP_EVICTED, grave);
  }
  return 0;
}

/* Expired entries are reclaimed as they are met: on lookup, and a few at the LRU tail on
 * each begin, so memory comes back even without pressure and no sweep is needed. The
 * tail is nearly the oldest when listeners share one ttl; a longer-lived entry there only
 * stops this pass early. */
static void reap(shard_t *sh, uint64_t now_ms, ment_t **grave) {
  for (int i = 0; i < 2 && sh->lru_tail && expired(sh->lru_tail, now_ms); i++)
    drop(sh, sh->lru_tail, DROP_EXPIRED, grave);
}

static void publish(shard_t *sh) {
  atomic_store_explicit(&sh->c_entries, sh->n, memory_order_relaxed);
  atomic_store_explicit(&sh->c_in_flight, sh->in_flight, memory_order_relaxed);
  atomic_store_explicit(&sh->c_bytes, sh->bytes, memory_order_relaxed);
}

/* What is there for `key`, an expired completed entry dropped as if absent. */
static px_idem_store_rc_t existing(shard_t *sh, ment_t *e, uint64_t now_ms, px_idem_begin_t *out,
                                   ment_t **grave) {
  if (!e) return PX_IDEM_STORE_ABSENT;
  if (!e->completed) {
    memcpy(out->head, e->head, PX_SHA256_LEN);
    return PX_IDEM_STORE_IN_FLIGHT;
  }
  if (expired(e, now_ms)) {
    drop(sh, e, DROP_EXPIRED, grave);
    return PX_IDEM_STORE_ABSENT;
  }
  lru_touch(sh, e);
  atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
  out->rec = &e->rec;
  return PX_IDEM_STORE_COMPLETED;
}

static px_idem_store_rc_t mem_begin(px_idem_store_t *s, px_str_t key, const uint8_t head[PX_SHA256_LEN],
                                    uint64_t now_ms, px_idem_begin_t *out) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  ment_t *fresh = ment_new(key, h, 0), *grave = NULL; /* made before the lock: BEGUN is the usual answer */
  memcpy(fresh->head, head, PX_SHA256_LEN);
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&sh->mu);
  reap(sh, now_ms, &grave);
  px_idem_store_rc_t rc = existing(sh, find(sh, h, key), now_ms, out, &grave);
  if (rc == PX_IDEM_STORE_ABSENT) {
    if (make_room(sh, 1, key.n, now_ms, &grave) != 0) {
      atomic_fetch_add_explicit(&sh->c_full, 1, memory_order_relaxed);
      rc = PX_IDEM_STORE_FULL;
    } else {
      ment_t **b = &sh->buckets[h & sh->mask];
      fresh->hnext = *b;
      *b = fresh;
      fresh->token = out->token = ++sh->gen;
      sh->n++;
      sh->in_flight++;
      sh->bytes += fresh->bytes;
      fresh = NULL;
      rc = PX_IDEM_STORE_BEGUN;
    }
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  bury(grave);
  free(fresh);
  return rc;
}

static int mem_complete(px_idem_store_t *s, px_str_t key, uint64_t token, const px_idem_fp_t *fp, int status,
                        px_str_t headers, px_str_t body, uint64_t ttl_ms, uint64_t now_ms) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  size_t total = key.n + headers.n + body.n;
  ment_t *fresh = NULL, *grave = NULL;
  if (token == 0) return PX_ENOTFOUND;
  if (total <= sh->max_bytes) { /* the copy is made before the lock, as in begin */
    fresh = ment_new(key, h, headers.n + body.n);
    fresh->completed = 1;
    fresh->bytes = total;
    fresh->rec.fp = *fp;
    fresh->rec.status = status;
    fresh->rec.headers = (px_str_t){fresh->key + key.n, headers.n};
    fresh->rec.body = (px_str_t){fresh->key + key.n + headers.n, body.n};
    if (headers.n) memcpy(fresh->key + key.n, headers.p, headers.n);
    if (body.n) memcpy(fresh->key + key.n + headers.n, body.p, body.n);
    fresh->expires_ms = ttl_ms > UINT64_MAX - now_ms ? UINT64_MAX : now_ms + ttl_ms;
  }
  int rc = 0;
  pthread_mutex_lock(&sh->mu);
  ment_t *e = find(sh, h, key);
  if (!e || e->completed || e->token != token) {
    rc = PX_ENOTFOUND;
  } else if (!fresh) {
    drop(sh, e, DROP_OWNER, &grave);
    rc = PX_ETOOLARGE;
  } else if (make_room(sh, 0, total - e->bytes, now_ms, &grave) != 0) {
    drop(sh, e, DROP_OWNER, &grave);
    rc = PX_EOVERFLOW;
  } else {
    ment_t **p = slot_of(sh, e); /* found again: making room may have changed the chain */
    fresh->hnext = e->hnext;
    *p = fresh;
    fresh->token = e->token;
    lru_push_front(sh, fresh);
    sh->in_flight--;
    sh->bytes += total - e->bytes;
    atomic_fetch_add_explicit(&sh->c_stored, 1, memory_order_relaxed);
    e->hnext = grave;
    grave = e;
    fresh = NULL;
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  bury(grave);
  free(fresh);
  return rc;
}

static int mem_abort(px_idem_store_t *s, px_str_t key, uint64_t token) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  ment_t *grave = NULL;
  int rc = PX_ENOTFOUND;
  pthread_mutex_lock(&sh->mu);
  ment_t *e = find(sh, h, key);
  if (e && !e->completed && token != 0 && e->token == token) {
    drop(sh, e, DROP_OWNER, &grave);
    rc = 0;
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  bury(grave);
  return rc;
}

static px_idem_store_rc_t mem_lookup(px_idem_store_t *s, px_str_t key, uint64_t now_ms,
                                     px_idem_begin_t *out) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  ment_t *grave = NULL;
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&sh->mu);
  px_idem_store_rc_t rc = existing(sh, find(sh, h, key), now_ms, out, &grave);
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  bury(grave);
  return rc;
}

static void mem_release(px_idem_store_t *s, const px_idem_record_t *rec) {
  if (rec) ment_put(PX_CONTAINER_OF(rec, ment_t, rec));
}

static void mem_stats(px_idem_store_t *s, px_idem_store_stats_t *out) {
  mem_t *m = (mem_t *)s;
  memset(out, 0, sizeof(*out));
  for (unsigned i = 0; i < m->nshards; i++) {
    shard_t *sh = &m->shards[i];
    out->entries += atomic_load_explicit(&sh->c_entries, memory_order_relaxed);
    out->in_flight += atomic_load_explicit(&sh->c_in_flight, memory_order_relaxed);
    out->bytes += atomic_load_explicit(&sh->c_bytes, memory_order_relaxed);
    out->stored += atomic_load_explicit(&sh->c_stored, memory_order_relaxed);
    out->evictions += atomic_load_explicit(&sh->c_evictions, memory_order_relaxed);
    out->expired += atomic_load_explicit(&sh->c_expired, memory_order_relaxed);
    out->full += atomic_load_explicit(&sh->c_full, memory_order_relaxed);
  }
}

static void mem_destroy(px_idem_store_t *s) {
  mem_t *m = (mem_t *)s;
  for (unsigned i = 0; i < m->nshards; i++) {
    shard_t *sh = &m->shards[i];
    for (size_t b = 0; b <= sh->mask; b++) {
      ment_t *e = sh->buckets[b];
      while (e) {
        ment_t *next = e->hnext;
        ment_put(e);
        e = next;
      }
    }
    free(sh->buckets);
    pthread_mutex_destroy(&sh->mu);
  }
  free(m->shards);
  free(m);
}

static const px_idem_store_vt_t mem_vt = {
    .begin = mem_begin,
    .complete = mem_complete,
    .abort = mem_abort,
    .lookup = mem_lookup,
    .release = mem_release,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

px_idem_store_t *px_idem_store_mem_new(size_t max_entries, size_t max_bytes, unsigned nshards) {
  if (max_entries == 0) max_entries = 1;
  if (nshards == 0) nshards = 1;
  if (nshards > max_entries) nshards = (unsigned)max_entries;
  mem_t *m = px_calloc(1, sizeof(*m));
  m->base.vt = &mem_vt;
  m->nshards = nshards;
  m->seed = px_rand64();
  m->shards = px_calloc(nshards, sizeof(shard_t));
  for (unsigned i = 0; i < nshards; i++) {
    shard_t *sh = &m->shards[i];
    sh->max_n = max_entries / nshards + (i < max_entries % nshards);
    sh->max_bytes = max_bytes / nshards + (i < max_bytes % nshards);
    /* A table as large as the shard's share of entries, so chains stay about one long;
     * it never grows, since the share bounds it. */
    size_t nb = 8;
    while (nb < sh->max_n && nb < ((size_t)1 << 20)) nb <<= 1;
    sh->buckets = px_calloc(nb, sizeof(*sh->buckets));
    sh->mask = nb - 1;
    pthread_mutex_init(&sh->mu, NULL);
    atomic_init(&sh->c_entries, 0);
    atomic_init(&sh->c_in_flight, 0);
    atomic_init(&sh->c_bytes, 0);
    atomic_init(&sh->c_stored, 0);
    atomic_init(&sh->c_evictions, 0);
    atomic_init(&sh->c_expired, 0);
    atomic_init(&sh->c_full, 0);
  }
  return &m->base;
}
