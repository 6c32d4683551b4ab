#include "idem_store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* The in-process store, built for the case that matters on the data path: nearly every
 * keyed request is a first one, so each makes an entry and, once the store is full,
 * evicts one. An answer therefore lives in a per-shard ring of bytes, written at the
 * head and evicted from the tail, and the shard's index is an open-addressed table of
 * (tag, reference) pairs. A first request costs one probe of the table (a cache line),
 * an in-flight entry from a pool and a copy of its answer onto the ring's head, and the
 * eviction it makes reads the record at the tail, which lies just past the previous
 * one: no chain to walk, no scattered blocks to free, no malloc of an answer-sized
 * block. (A linked hash table with one allocation an answer, as this store was first
 * built, cost three to four times as much with its working set out of cache.)
 *
 * The ring's order is the LRU order: an answer that is used (replayed, or looked up) is
 * copied to the head and its old place marked dead, so the tail is always the least
 * recently used answer, and evicting from the tail is exact LRU. A record is never split
 * across the ring's end: when the head cannot fit one there, a wrap marker fills the
 * rest and the head starts again at 0.
 *
 * In-flight entries live in a per-shard pool of fixed-size entries (key, hash, head
 * digest, token), taken from and given back to a free list under the lock: no
 * allocation a request, and the pool grows by a chunk only when more requests are in
 * flight at once than ever before. They are not in the ring, so nothing evicts them. A
 * token names its entry, so complete and abort find it without the table.
 *
 * A table slot is 8 bytes, a 32-bit tag of the key's hash (which also gives its home)
 * and a 32-bit reference, so that the table of a store of 100,000 entries is 2 MiB and
 * mostly stays in cache beside the app's working set. What a request will read there
 * and in the pool is prefetched on the caller's hint (px_idem_store_prefetch), well
 * before the lock is taken: measured in the pod layout, those two lines were the store's
 * largest cost, each a miss after the millisecond a request spends upstream.
 *
 * The bounds are logical, as the interface says: entries (in flight included) and bytes
 * of keys, header lines and bodies. The ring has room for both plus each record's
 * bookkeeping and an eighth more, for wrap markers and the dead copies of used answers;
 * when that room runs out first, the tail goes a little before the bounds would ask. Of
 * that room the ring uses only what it needs (ring_reserve): a store bounded by
 * max_entries with small answers touches about 4/3 of what it holds, not max_bytes.
 *
 * Records handed out are copies, made under the lock: a replay is rare next to a first
 * request, and a copy stays intact whatever the ring does afterwards. */

#define REC_LIVE 1u
#define REC_DEAD 2u /* used and moved to the head, or dropped: only its space is left */
#define REC_WRAP 3u /* the unused end of the ring, up to its end */
#define NONE SIZE_MAX
#define RING_START ((size_t)64 << 10) /* a shard's ring in use at first, in bytes */

/* A record on the ring, 8-byte aligned; its key, header lines and body follow it. A wrap
 * marker has only its size and kind. What eviction reads comes first, in the record's
 * first cache line. */
typedef struct {
  uint32_t size; /* the whole record, this header and padding included */
  uint32_t kind;
  uint64_t hash;
  uint64_t expires_ms;
  uint32_t keylen, hlen, blen;
  int32_t status;
  px_idem_fp_t fp;
} rec_t;

/* An in-flight entry in its shard's pool. */
typedef struct {
  uint64_t token;
  uint64_t hash; /* the key's */
  uint32_t keylen;
  uint32_t next_free; /* on the free list: the next free entry's index + 1, 0 for none */
  uint64_t head;
  char key[PX_IDEM_STORE_KEY_MAX];
} infl_t;

/* The pool grows by chunks that double: chunk k holds INFL_CHUNK << k entries, from index
 * INFL_CHUNK * (2^k - 1). Its chunk table is fixed, so that a chunk, once made, stays
 * where it is and may be read without the lock (by the prefetch hint). */
#define INFL_CHUNK 64u
#define POOL_CHUNKS 18 /* 16.8 million entries in flight at once, a shard: below 2^24 */
/* A token is its shard's count of begins, the shard and the pool entry's index, so that
 * complete and abort go straight to the entry (its hash is kept there: the key is not
 * hashed again) rather than through the table; the count's 32 bits wrap after 4 billion
 * begins a shard, and a token is only taken with its own key. */
#define TOKEN_IDX_BITS 24
#define TOKEN_IDX_MASK ((1u << TOKEN_IDX_BITS) - 1)
#define TOKEN_SHARD_SHIFT TOKEN_IDX_BITS
#define TOKEN_GEN_SHIFT 32
#define MAX_SHARDS 256u

/* A table slot: tag 0 is empty (key_hash never gives a hash whose low half is 0); `ref`
 * is a pool index shifted left by one with bit 0 set, or a ring offset (a multiple of 8)
 * shifted right by two. */
typedef struct {
  uint32_t tag;
  uint32_t ref;
} slot_t;

/* A record handed out: the record, then its header lines, body and key (the key for
 * putting it back on the ring's head). */
typedef struct {
  px_idem_record_t rec;
  uint64_t expires_ms;
  size_t keylen;
  char bytes[];
} out_t;

/* A shard: its own lock, table and ring, and its share of both bounds. The counters are
 * written under the lock and read by stats without it. */
typedef struct {
  pthread_mutex_t mu;
  slot_t *slots;
  uint32_t mask; /* slots - 1; at least twice the shard's entries, so probes stay short */
  _Atomic(infl_t *) pool[POOL_CHUNKS]; /* in-flight entries, in chunks made as needed */
  uint32_t pool_chunks, pool_free;     /* chunks made; the first free entry's index + 1 */
  char *ring;
  size_t cap, head, tail, used; /* bytes; used counts dead records and wrap markers too */
  size_t lim;                   /* the ring's end in use: it grows up to cap as needed */
  size_t n, max_n;              /* entries, in flight included */
  size_t bytes, max_bytes;
  size_t in_flight;
  uint64_t gen; /* begins so far, the high part of the tokens */
  atomic_ullong c_entries, c_in_flight, c_bytes, c_stored, c_evictions, c_expired, c_full;
  char pad[64]; /* keeps one shard's lock off its neighbour's cache line */
} shard_t;

typedef struct {
  px_idem_store_t base;
  shard_t *shards;
  unsigned nshards;
  /* Read-only once made, so that the prefetch hint finds a key's table slot and an
   * in-flight entry's place without loading its shard (a miss of its own): every shard's
   * table has the same size, one after another; and each shard's first pool chunk. */
  uint32_t mask;
  _Atomic(infl_t *) *chunk0;
  char *rings, *tables; /* every shard's ring and table, in two regions */
  size_t rings_len, tables_len;
  uint64_t seed; /* so that keys colliding on purpose cannot be worked out in advance */
} mem_t;

typedef enum { DROP_OWNER, DROP_EVICTED, DROP_EXPIRED } drop_why_t;

/* px_hash64 from a per-store seed, so that keys colliding on purpose cannot be worked out
 * in advance; its high bits pick the shard and its low bits the slot. Never 0 in its low
 * half, which marks an empty slot. */
static uint64_t key_hash(const mem_t *m, px_str_t k) {
  uint64_t h = px_hash64(k.p, k.n, m->seed);
  return (uint32_t)h ? h : h | 1;
}

/* The slot tag of a hash: its low half (the high half picks the shard). */
static uint32_t tag_of(uint64_t h) { return (uint32_t)h; }

static shard_t *shard_of(mem_t *m, uint64_t h) { return &m->shards[(uint32_t)(h >> 32) % m->nshards]; }

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }
static rec_t *rec_at(shard_t *sh, size_t off) { return (rec_t *)(void *)(sh->ring + off); }
static char *rec_key(rec_t *r) { return (char *)(r + 1); }
static int is_infl(uint32_t ref) { return ref & 1; }
static unsigned chunk_of(uint32_t idx) { return 31u - (unsigned)__builtin_clz(idx / INFL_CHUNK + 1); }
static uint32_t chunk_base(unsigned k) { return INFL_CHUNK * ((1u << k) - 1); }
static infl_t *infl_at(shard_t *sh, uint32_t idx) {
  unsigned k = chunk_of(idx);
  return atomic_load_explicit(&sh->pool[k], memory_order_relaxed) + (idx - chunk_base(k));
}
static infl_t *infl_of(shard_t *sh, uint32_t ref) { return infl_at(sh, ref >> 1); }
/* The pool entry of index idx, or NULL when no chunk holds it: for an index from a
 * caller's token, and safe without the lock (a chunk, once made, stays). */
static infl_t *infl_find(shard_t *sh, uint32_t idx) {
  unsigned k = chunk_of(idx);
  infl_t *c = k < POOL_CHUNKS ? atomic_load_explicit(&sh->pool[k], memory_order_acquire) : NULL;
  return c ? c + (idx - chunk_base(k)) : NULL;
}
static uint32_t ref_infl(uint32_t idx) { return idx << 1 | 1; }
static uint32_t ref_off(size_t off) { return (uint32_t)(off >> 2); }
static size_t off_of(uint32_t ref) { return (size_t)ref << 2; }
static size_t rec_bytes(const rec_t *r) { return (size_t)r->keylen + r->hlen + r->blen; }
static int expired(const rec_t *r, uint64_t now_ms) { return now_ms >= r->expires_ms; }

static int key_is(shard_t *sh, uint32_t ref, px_str_t key) {
  if (is_infl(ref)) {
    infl_t *f = infl_of(sh, ref);
    return f->keylen == key.n && (key.n == 0 || memcmp(f->key, key.p, key.n) == 0);
  }
  rec_t *r = rec_at(sh, off_of(ref));
  return r->keylen == key.n && (key.n == 0 || memcmp(rec_key(r), key.p, key.n) == 0);
}

/* ---- the table: linear probing, deletion by backward shift (no tombstones) ----------- */

static size_t find(shard_t *sh, uint64_t h, px_str_t key) {
  uint32_t t = tag_of(h);
  for (uint32_t i = t & sh->mask;; i = (i + 1) & sh->mask) {
    const slot_t *s = &sh->slots[i];
    if (!s->tag) return NONE;
    if (s->tag == t && key_is(sh, s->ref, key)) return i;
  }
}

/* The slot holding `ref` (which is in the table). */
static size_t find_ref(shard_t *sh, uint64_t h, uint32_t ref) {
  uint32_t t = tag_of(h), i = t & sh->mask;
  while (sh->slots[i].ref != ref || sh->slots[i].tag != t) i = (i + 1) & sh->mask;
  return i;
}

static void slot_insert(shard_t *sh, uint64_t h, uint32_t ref) {
  uint32_t t = tag_of(h), i = t & sh->mask;
  while (sh->slots[i].tag) i = (i + 1) & sh->mask;
  sh->slots[i] = (slot_t){t, ref};
}

/* Empties slot i, moving back each later slot of the run that may take its place (one
 * whose home is not cyclically within (i, j]), so that every lookup still finds its key
 * before an empty slot. */
static void slot_delete(shard_t *sh, size_t i) {
  for (size_t j = i;;) {
    j = (j + 1) & sh->mask;
    if (!sh->slots[j].tag) break;
    size_t home = sh->slots[j].tag & sh->mask;
    if (((j - home) & sh->mask) >= ((j - i) & sh->mask)) {
      sh->slots[i] = sh->slots[j];
      i = j;
    }
  }
  sh->slots[i].tag = 0;
}

/* ---- the in-flight pool ------------------------------------------------------------- */

/* A free pool entry's index, or -1 when a new chunk cannot be had. Under the lock. A new
 * first chunk is published in *chunk0 too. */
static int64_t pool_take(shard_t *sh, _Atomic(infl_t *) *chunk0) {
  if (!sh->pool_free) {
    unsigned k = sh->pool_chunks;
    if (k == POOL_CHUNKS) return -1;
    uint32_t n = INFL_CHUNK << k, base = chunk_base(k);
    infl_t *c = px_malloc(n * sizeof(*c));
    for (uint32_t i = 0; i < n; i++) {
      c[i].token = 0;
      c[i].next_free = i + 1 < n ? base + i + 2 : 0;
    }
    atomic_store_explicit(&sh->pool[k], c, memory_order_release);
    if (k == 0) atomic_store_explicit(chunk0, c, memory_order_release);
    sh->pool_chunks = k + 1;
    sh->pool_free = base + 1;
  }
  uint32_t idx = sh->pool_free - 1;
  sh->pool_free = infl_at(sh, idx)->next_free;
  return idx;
}

static void pool_give(shard_t *sh, uint32_t idx) {
  infl_at(sh, idx)->token = 0;
  infl_at(sh, idx)->next_free = sh->pool_free;
  sh->pool_free = idx + 1;
}

/* ---- entries -------------------------------------------------------------------------- */

/* Adds one to a counter. Only the shard's lock holder writes it, so a plain load and
 * store do (an atomic read-modify-write would be a full barrier, waiting out every store
 * of the record just written). */
static void bump(atomic_ullong *c) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static void count_drop(shard_t *sh, drop_why_t why) {
  if (why == DROP_EVICTED) bump(&sh->c_evictions);
  if (why == DROP_EXPIRED) bump(&sh->c_expired);
}

/* Takes the entry of slot i out. A completed record's place on the ring turns dead; an
 * in-flight entry goes back to the pool. */
static void drop(shard_t *sh, size_t i, drop_why_t why) {
  uint32_t ref = sh->slots[i].ref;
  slot_delete(sh, i);
  sh->n--;
  if (is_infl(ref)) {
    sh->in_flight--;
    sh->bytes -= infl_of(sh, ref)->keylen;
    pool_give(sh, ref >> 1);
  } else {
    rec_t *r = rec_at(sh, off_of(ref));
    r->kind = REC_DEAD;
    sh->bytes -= rec_bytes(r);
  }
  count_drop(sh, why);
}

/* Gives back the space of the record at the ring's tail, dropping it from the table when
 * it is live (evicted, or expired once its time has passed). Returns 1 when a live record
 * went, 0 for a dead one or a wrap marker, -1 when the ring is empty. */
static int pop_tail(shard_t *sh, uint64_t now_ms) {
  if (!sh->used) return -1;
  rec_t *r = rec_at(sh, sh->tail);
  int live = r->kind == REC_LIVE;
  if (live)
    drop(sh, find_ref(sh, r->hash, ref_off(sh->tail)), expired(r, now_ms) ? DROP_EXPIRED : DROP_EVICTED);
  sh->used -= r->size;
  sh->tail += r->size;
  if (sh->tail == sh->lim) sh->tail = 0;
  if (!sh->used) sh->head = sh->tail = 0;
  /* The next eviction reads the next record and then its table slot: the ring is far
   * larger than a cache, and with the shards taking turns no prefetcher follows one
   * tail by itself. The record was fetched by the eviction before this one, so its slot
   * can be now, and the record after it. */
  if (sh->used) {
    const rec_t *nx = rec_at(sh, sh->tail);
    if (nx->kind == REC_LIVE) __builtin_prefetch(&sh->slots[tag_of(nx->hash) & sh->mask], 1);
    size_t after = sh->tail + nx->size;
    if (after < sh->lim) __builtin_prefetch(sh->ring + after, 1);
  }
  return live;
}

/* Frees the shard's share for `need_n` more entries and `need_bytes` more bytes by
 * evicting from the tail; -1 when in-flight entries leave too little. Nothing is evicted
 * for a need that could never be met. */
static int make_room(shard_t *sh, size_t need_n, size_t need_bytes, uint64_t now_ms) {
  if (need_n > sh->max_n || need_bytes > sh->max_bytes) return -1;
  while (sh->n + need_n > sh->max_n || sh->bytes + need_bytes > sh->max_bytes)
    if (pop_tail(sh, now_ms) < 0) return -1;
  return 0;
}

/* Moves the ring's end in use to at least `end`, by an eighth more, up to its capacity. */
static void ring_grow(shard_t *sh, size_t end) {
  size_t l = sh->lim + sh->lim / 8;
  if (l < end) l = end;
  sh->lim = l < sh->cap ? align8(l) : sh->cap;
}

/* Where `size` contiguous bytes (at most the ring's capacity) can be written: at the
 * head, or at 0 after a wrap marker, once the tail has gone far enough. The ring's end
 * in use (lim) grows, rather than the head wrapping, while the start has no room or the
 * ring is more than three quarters used: so the memory the ring touches follows what it
 * holds (a store bounded by max_entries with small answers never touches most of the
 * room max_bytes reserves), and a wrapped ring keeps a quarter free for the head to
 * catch the tail up. The end grows only while the ring has not wrapped. */
static size_t ring_reserve(shard_t *sh, size_t size, uint64_t now_ms) {
  for (;;) {
    if (!sh->used) {
      if (sh->lim < size) ring_grow(sh, size);
      return 0;
    }
    if (sh->head > sh->tail) { /* data in [tail, head): room at the end, then at the start */
      if (sh->lim - sh->head >= size) return sh->head;
      if (sh->lim < sh->cap && (sh->tail < size || sh->used + size > sh->lim - sh->lim / 4)) {
        ring_grow(sh, sh->head + size);
        if (sh->lim - sh->head >= size) return sh->head;
      }
      if (sh->tail >= size) {
        if (sh->lim > sh->head) {
          rec_t *w = rec_at(sh, sh->head);
          w->size = (uint32_t)(sh->lim - sh->head);
          w->kind = REC_WRAP;
          sh->used += w->size;
        }
        sh->head = 0;
        return 0;
      }
    } else if (sh->head < sh->tail && sh->tail - sh->head >= size) { /* wrapped: room between */
      return sh->head;
    }
    pop_tail(sh, now_ms); /* head == tail with data: full */
  }
}

/* Writes a live record onto the ring's head and returns its offset. */
static size_t put_rec(shard_t *sh, uint64_t h, px_str_t key, const px_idem_fp_t *fp, int status,
                      px_str_t headers, px_str_t body, uint64_t expires_ms, uint64_t now_ms) {
  size_t size = align8(sizeof(rec_t) + key.n + headers.n + body.n);
  size_t off = ring_reserve(sh, size, now_ms);
  rec_t *r = rec_at(sh, off);
  *r = (rec_t){.size = (uint32_t)size,
               .kind = REC_LIVE,
               .hash = h,
               .expires_ms = expires_ms,
               .keylen = (uint32_t)key.n,
               .hlen = (uint32_t)headers.n,
               .blen = (uint32_t)body.n,
               .status = status,
               .fp = *fp};
  char *p = rec_key(r);
  if (key.n) memcpy(p, key.p, key.n);
  if (headers.n) memcpy(p + key.n, headers.p, headers.n);
  if (body.n) memcpy(p + key.n + headers.n, body.p, body.n);
  sh->head = off + size; /* lim at most: ring_reserve wraps or grows from there */
  sh->used += size;
  /* The next record goes there: have its lines on their way by the time this shard's
   * turn comes again. */
  for (size_t l = 0; l < 512 && sh->head + l < sh->lim; l += 64)
    __builtin_prefetch(sh->ring + sh->head + l, 1);
  return off;
}

/* A copy of record r for a caller. */
static out_t *copy_out(rec_t *r) {
  out_t *o = px_malloc(sizeof(*o) + rec_bytes(r));
  const char *k = rec_key(r);
  memcpy(o->bytes, k + r->keylen, (size_t)r->hlen + r->blen);
  memcpy(o->bytes + r->hlen + r->blen, k, r->keylen);
  o->rec = (px_idem_record_t){.fp = r->fp,
                              .status = r->status,
                              .headers = {o->bytes, r->hlen},
                              .body = {o->bytes + r->hlen, r->blen}};
  o->expires_ms = r->expires_ms;
  o->keylen = r->keylen;
  return o;
}

/* Makes the completed entry of slot i the most recently used: its record, copied in `o`,
 * goes back onto the head (unless it is the last record there already). */
static void touch(shard_t *sh, size_t i, const out_t *o, uint64_t now_ms) {
  size_t off = off_of(sh->slots[i].ref);
  uint64_t h = rec_at(sh, off)->hash;
  size_t end = off + rec_at(sh, off)->size;
  if (end == sh->head || (end == sh->lim && sh->head == 0)) return;
  drop(sh, i, DROP_OWNER); /* its place turns dead; n and bytes come back below */
  px_str_t key = {o->bytes + o->rec.headers.n + o->rec.body.n, o->keylen};
  size_t at =
      put_rec(sh, h, key, &o->rec.fp, o->rec.status, o->rec.headers, o->rec.body, o->expires_ms, now_ms);
  slot_insert(sh, h, ref_off(at));
  sh->n++;
  sh->bytes += rec_bytes(rec_at(sh, at));
}

/* Expired answers are reclaimed as they are met: on lookup, and a few at the tail on each
 * begin, so memory comes back even without pressure and no sweep is needed. */
static void reap(shard_t *sh, uint64_t now_ms) {
  for (int i = 0; i < 4 && sh->used; i++) {
    rec_t *r = rec_at(sh, sh->tail);
    if (r->kind == REC_LIVE && !expired(r, now_ms)) break;
    pop_tail(sh, now_ms);
  }
}

static void publish(shard_t *sh) {
  atomic_store_explicit(&sh->c_entries, sh->n, memory_order_relaxed);
  atomic_store_explicit(&sh->c_in_flight, sh->in_flight, memory_order_relaxed);
  atomic_store_explicit(&sh->c_bytes, sh->bytes, memory_order_relaxed);
}

/* What slot i (NONE: nothing) holds for a caller: an expired answer is dropped as if
 * absent, a live one copied out and made the most recently used. */
static px_idem_store_rc_t existing(shard_t *sh, size_t i, uint64_t now_ms, px_idem_begin_t *out) {
  if (i == NONE) return PX_IDEM_STORE_ABSENT;
  uint32_t ref = sh->slots[i].ref;
  if (is_infl(ref)) {
    out->head = infl_of(sh, ref)->head;
    return PX_IDEM_STORE_IN_FLIGHT;
  }
  rec_t *r = rec_at(sh, off_of(ref));
  if (expired(r, now_ms)) {
    drop(sh, i, DROP_EXPIRED);
    return PX_IDEM_STORE_ABSENT;
  }
  out_t *o = copy_out(r);
  touch(sh, i, o, now_ms);
  out->rec = &o->rec;
  return PX_IDEM_STORE_COMPLETED;
}

static px_idem_store_rc_t mem_begin(px_idem_store_t *s, px_str_t key, uint64_t head, uint64_t now_ms,
                                    px_idem_begin_t *out) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  __builtin_prefetch(&sh->slots[tag_of(h) & sh->mask]); /* the table may be out of cache */
  memset(out, 0, sizeof(*out));
  if (key.n > PX_IDEM_STORE_KEY_MAX) { /* no pool entry holds it */
    bump(&sh->c_full);
    return PX_IDEM_STORE_FULL;
  }
  pthread_mutex_lock(&sh->mu);
  reap(sh, now_ms);
  px_idem_store_rc_t rc = existing(sh, find(sh, h, key), now_ms, out);
  int64_t idx = -1;
  if (rc == PX_IDEM_STORE_ABSENT) {
    if (make_room(sh, 1, key.n, now_ms) != 0 || (idx = pool_take(sh, &m->chunk0[sh - m->shards])) < 0) {
      bump(&sh->c_full);
      rc = PX_IDEM_STORE_FULL;
    } else {
      infl_t *f = infl_at(sh, (uint32_t)idx);
      f->token = out->token = (uint64_t)(uint32_t)++sh->gen << TOKEN_GEN_SHIFT |
                              (uint64_t)(sh - m->shards) << TOKEN_SHARD_SHIFT | (uint64_t)idx;
      f->hash = h;
      f->keylen = (uint32_t)key.n;
      if (key.n) memcpy(f->key, key.p, key.n);
      f->head = head;
      slot_insert(sh, h, ref_infl((uint32_t)idx));
      sh->n++;
      sh->in_flight++;
      sh->bytes += key.n;
      rc = PX_IDEM_STORE_BEGUN;
    }
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  return rc;
}

/* The shard a token names, or NULL. */
static shard_t *token_shard(mem_t *m, uint64_t token) {
  unsigned i = (unsigned)(token >> TOKEN_SHARD_SHIFT) & (MAX_SHARDS - 1);
  return token && i < m->nshards ? &m->shards[i] : NULL;
}

/* The reference of the in-flight entry `token` names, if it is still that token's and
 * holds `key`; else 0. */
static uint32_t owned(shard_t *sh, px_str_t key, uint64_t token) {
  uint32_t idx = (uint32_t)(token & TOKEN_IDX_MASK);
  const infl_t *f = token ? infl_find(sh, idx) : NULL;
  if (!f || f->token != token || f->keylen != key.n || (key.n && memcmp(f->key, key.p, key.n) != 0)) return 0;
  return ref_infl(idx);
}

static int mem_complete(px_idem_store_t *s, px_str_t key, uint64_t token, const px_idem_fp_t *fp, int status,
                        px_str_t headers, px_str_t body, uint64_t ttl_ms, uint64_t now_ms) {
  shard_t *sh = token_shard((mem_t *)s, token);
  size_t total = key.n + headers.n + body.n;
  uint64_t expires_ms = ttl_ms > UINT64_MAX - now_ms ? UINT64_MAX : now_ms + ttl_ms;
  int rc = 0;
  if (!sh) return PX_ENOTFOUND;
  pthread_mutex_lock(&sh->mu);
  uint32_t ref = owned(sh, key, token);
  uint64_t h = ref ? infl_of(sh, ref)->hash : 0;
  if (!ref) {
    rc = PX_ENOTFOUND;
  } else if (total > sh->max_bytes) {
    drop(sh, find_ref(sh, h, ref), DROP_OWNER);
    rc = PX_ETOOLARGE;
  } else if (make_room(sh, 0, total - key.n, now_ms) != 0) {
    drop(sh, find_ref(sh, h, ref), DROP_OWNER); /* making room moves slots */
    rc = PX_EOVERFLOW;
  } else {
    size_t at = put_rec(sh, h, key, fp, status, headers, body, expires_ms, now_ms);
    sh->slots[find_ref(sh, h, ref)].ref = ref_off(at);
    pool_give(sh, ref >> 1);
    sh->in_flight--;
    sh->bytes += total - key.n;
    bump(&sh->c_stored);
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  return rc;
}

static int mem_abort(px_idem_store_t *s, px_str_t key, uint64_t token) {
  shard_t *sh = token_shard((mem_t *)s, token);
  int rc = PX_ENOTFOUND;
  if (!sh) return rc;
  pthread_mutex_lock(&sh->mu);
  uint32_t ref = owned(sh, key, token);
  if (ref) {
    drop(sh, find_ref(sh, infl_of(sh, ref)->hash, ref), DROP_OWNER);
    rc = 0;
  }
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  return rc;
}

static px_idem_store_rc_t mem_lookup(px_idem_store_t *s, px_str_t key, uint64_t now_ms,
                                     px_idem_begin_t *out) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  shard_t *sh = shard_of(m, h);
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&sh->mu);
  px_idem_store_rc_t rc = existing(sh, find(sh, h, key), now_ms, out);
  publish(sh);
  pthread_mutex_unlock(&sh->mu);
  return rc;
}

static void mem_prefetch(px_idem_store_t *s, px_str_t key, uint64_t token) {
  mem_t *m = (mem_t *)s;
  uint64_t h = key_hash(m, key);
  unsigned i = (uint32_t)(h >> 32) % m->nshards;
  __builtin_prefetch(&m->shards[i], 1);
  __builtin_prefetch((slot_t *)(void *)m->tables + ((size_t)i * (m->mask + 1) + (tag_of(h) & m->mask)), 1);
  uint32_t idx = (uint32_t)(token & TOKEN_IDX_MASK);
  if (token && idx < INFL_CHUNK) {
    const infl_t *c = atomic_load_explicit(&m->chunk0[i], memory_order_relaxed);
    if (c) __builtin_prefetch(c + idx, 1);
  }
}

static void mem_release(px_idem_store_t *s, const px_idem_record_t *rec) {
  (void)s;
  if (rec) free(PX_CONTAINER_OF(rec, out_t, rec));
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

/* The rings and tables as anonymous memory on 2 MiB boundaries. A table is marked for
 * transparent huge pages (`huge`): every first request probes it at a random place, and
 * with 4 KiB pages each probe was a TLB miss and a page walk besides the cache miss. A
 * ring is not: it is written at its head and read at its tail, a few pages at a time that
 * the TLB holds, and in 2 MiB pages each shard's ring in use was rounded up to whole huge
 * pages (a store of 100,000 small answers took 73 MiB of RSS for some 30 MiB of records;
 * in 4 KiB pages, 43 MiB, measured no slower). Zeroed, like calloc; pages come as they are
 * touched. *len is the mapping's length, or 0 for plain malloc: under AddressSanitizer,
 * so that it sees every byte past a ring or a table, and should mmap fail. */
#define HUGE_PAGE ((size_t)2 << 20)

static char *region_new(size_t n, size_t *len, int huge) {
  *len = 0;
#if !defined(__SANITIZE_ADDRESS__)
  size_t want = (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
  char *p = mmap(NULL, want + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) {
    char *a = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > p) munmap(p, (size_t)(a - p));
    if (p + want + HUGE_PAGE > a + want) munmap(a + want, (size_t)(p + want + HUGE_PAGE - (a + want)));
    (void)madvise(a, want, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE); /* hints */
    *len = want;
    return a;
  }
#endif
  return px_calloc(1, n);
}

static void region_free(char *p, size_t len) {
  if (len)
    munmap(p, len);
  else
    free(p);
}

static void mem_destroy(px_idem_store_t *s) {
  mem_t *m = (mem_t *)s;
  for (unsigned i = 0; i < m->nshards; i++) {
    shard_t *sh = &m->shards[i];
    for (unsigned c = 0; c < sh->pool_chunks; c++)
      free(atomic_load_explicit(&sh->pool[c], memory_order_relaxed));
    pthread_mutex_destroy(&sh->mu);
  }
  region_free(m->rings, m->rings_len);
  region_free(m->tables, m->tables_len);
  free(m->chunk0);
  free(m->shards);
  free(m);
}

static const px_idem_store_vt_t mem_vt = {
    .begin = mem_begin,
    .complete = mem_complete,
    .abort = mem_abort,
    .lookup = mem_lookup,
    .prefetch = mem_prefetch,
    .release = mem_release,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

px_idem_store_t *px_idem_store_mem_new(size_t max_entries, size_t max_bytes, unsigned nshards) {
  if (max_entries == 0) max_entries = 1;
  if (nshards == 0) nshards = 1;
  if (nshards > max_entries) nshards = (unsigned)max_entries;
  if (nshards > MAX_SHARDS) nshards = MAX_SHARDS; /* what a token can name */
  mem_t *m = px_calloc(1, sizeof(*m));
  m->base.vt = &mem_vt;
  m->nshards = nshards;
  m->seed = px_rand64();
  m->shards = px_calloc(nshards, sizeof(shard_t));
  m->chunk0 = px_calloc(nshards, sizeof(*m->chunk0));
  for (unsigned i = 0; i < nshards; i++) atomic_init(&m->chunk0[i], NULL);
  /* One table size for all, twice the largest shard's entries (a power of two). */
  size_t ns = 16;
  while (ns < 2 * (max_entries / nshards + (max_entries % nshards != 0))) ns <<= 1;
  m->mask = (uint32_t)(ns - 1);
  size_t rings = 0, tables = 0;
  for (unsigned i = 0; i < nshards; i++) {
    shard_t *sh = &m->shards[i];
    sh->max_n = max_entries / nshards + (i < max_entries % nshards);
    sh->max_bytes = max_bytes / nshards + (i < max_bytes % nshards);
    /* Room for the bounds' worth of records, their bookkeeping and an eighth more. A
     * record's size is a uint32_t, which max_bytes per shard must fit. */
    size_t rec_max = sizeof(rec_t) + 8;
    sh->cap =
        align8(sh->max_bytes + sh->max_n * rec_max + (sh->max_bytes + sh->max_n * rec_max) / 8 + rec_max);
    if (sh->cap > (size_t)1 << 34) sh->cap = (size_t)1 << 34; /* what a 32-bit reference reaches */
    sh->lim = sh->cap < RING_START ? sh->cap : RING_START;
    sh->mask = m->mask;
    rings += sh->cap;
    tables += ns * sizeof(slot_t);
  }
  m->rings = region_new(rings, &m->rings_len, 0);
  m->tables = region_new(tables, &m->tables_len, 1);
  rings = tables = 0;
  for (unsigned i = 0; i < nshards; i++) {
    shard_t *sh = &m->shards[i];
    sh->ring = m->rings + rings;
    sh->slots = (slot_t *)(void *)(m->tables + tables);
    rings += sh->cap;
    tables += (sh->mask + 1) * sizeof(slot_t);
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
