#include "accesslog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* px_access_log_reopen stores into an atomic from a signal handler: only lock-free
 * atomics are async-signal-safe. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic int must be lock-free");

#define RING_MAX ((size_t)1 << 30)
#define WARN_EVERY_NS (10 * 1000000000ull)

uint64_t px_access_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- time ---------------------------------------------------------------------- */

/* The second last formatted by this thread, as "YYYY-MM-DDTHH:MM:SS": a worker logs
 * many requests a second, so the calendar arithmetic runs once a second, not once a
 * line. */
static __thread struct {
  int valid;
  uint64_t sec;
  char text[19];
} tcache;

static void two(char *p, unsigned v) {
  p[0] = (char)('0' + v / 10);
  p[1] = (char)('0' + v % 10);
}

/* Days since 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's
 * civil_from_days, for days ≥ 0): no gmtime_r, so no time-zone lock and no locale. */
static void civil_from_days(uint64_t days, unsigned *y, unsigned *m, unsigned *d) {
  uint64_t z = days + 719468;
  uint64_t era = z / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (unsigned)(yoe + era * 400) + (*m <= 2);
}

void px_access_time(uint64_t epoch_ns, char dst[PX_ACCESS_TIME_LEN]) {
  uint64_t sec = epoch_ns / 1000000000u;
  unsigned ms = (unsigned)(epoch_ns % 1000000000u / 1000000u);
  if (PX_UNLIKELY(!tcache.valid || tcache.sec != sec)) {
    unsigned y, mo, d, sod = (unsigned)(sec % 86400);
    civil_from_days(sec / 86400, &y, &mo, &d);
    char *t = tcache.text; /* uint64_t ns end in the year 2554: four digits suffice */
    two(t, y / 100);
    two(t + 2, y % 100);
    t[4] = '-';
    two(t + 5, mo);
    t[7] = '-';
    two(t + 8, d);
    t[10] = 'T';
    two(t + 11, sod / 3600);
    t[13] = ':';
    two(t + 14, sod / 60 % 60);
    t[16] = ':';
    two(t + 17, sod % 60);
    tcache.sec = sec;
    tcache.valid = 1;
  }
  memcpy(dst, tcache.text, sizeof(tcache.text));
  dst[19] = '.';
  dst[20] = (char)('0' + ms / 100);
  two(dst + 21, ms % 100);
  dst[23] = 'Z';
}

/* ---- the line -------------------------------------------------------------------- */

/* Where a line goes: up to two pieces of memory, `a` then `b` (a ring's free space
 * wraps around its end; a px_buf_t's is one piece). `len` counts every byte the line
 * takes, also past the room, so the caller knows whether it fit and, if not, how much
 * it needs. */
typedef struct {
  char *a, *b;
  size_t an, bn;
  size_t len;
} al_out_t;

static void out_slow(al_out_t *o, size_t at, const char *s, size_t n) {
  if (at < o->an) {
    size_t k = o->an - at; /* < n, or the fast path would have taken it */
    memcpy(o->a + at, s, k);
    at += k, s += k, n -= k;
  }
  size_t off = at - o->an;
  if (off < o->bn) memcpy(o->b + off, s, PX_MIN(n, o->bn - off));
}

static inline void out_put(al_out_t *o, const char *s, size_t n) {
  size_t at = o->len;
  o->len += n;
  if (PX_LIKELY(o->len <= o->an)) {
    memcpy(o->a + at, s, n);
    return;
  }
  out_slow(o, at, s, n);
}

#define OUT_LIT(o, lit) out_put((o), (lit), sizeof(lit) - 1)

static void out_u64(al_out_t *o, uint64_t v) {
  char tmp[20];
  size_t i = sizeof(tmp);
  do {
    tmp[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  out_put(o, tmp + i, sizeof(tmp) - i);
}

/* Length of the valid UTF-8 sequence at `s` (`n` bytes left, s[0] ≥ 0x80), or 0: the
 * same strict UTF-8 as px_json_parse's (no overlong forms, no surrogates, nothing past
 * U+10FFFF), so every line reads back. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t len;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return len;
}

/* Bytes copied as they are: printable ASCII but the quote and the backslash. A table,
 * since every byte of every line goes through it. */
#define P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define Z16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
static const unsigned char plain_tab[256] = {
    Z16, Z16, 1,   1,   0,   1,   1,   1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2f: '"' (0x22) is not */
    P16, P16, 1,   1,   1,   1,   1,   1,  1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50-0x5f: '\\' (0x5c) is not */
    P16, 1,   1,   1,   1,   1,   1,   1,  1, 1, 1, 1, 1, 1, 1, 1, 0,    /* 0x70-0x7f: DEL is not */
    Z16, Z16, Z16, Z16, Z16, Z16, Z16, Z16};
#undef P16
#undef Z16
static inline int plain(unsigned char c) { return plain_tab[c]; }

/* The inside of a JSON string: runs that need nothing are copied whole. Unlike
 * px_buf_json_escape, bytes ≥ 0x80 are checked, since a path holds whatever the client
 * sent. */
/* Whether none of the 8 bytes of `x` needs escaping: each is at least 0x20, below 0x7f,
 * and neither '"' nor '\\'. The usual word tests ("a byte below n", "a zero byte") may
 * mark a byte wrongly only above one marked rightly, so the answer for the word is
 * exact. */
static inline int word_plain(uint64_t x) {
  const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\'), d = x ^ (ones * 0x7f);
  uint64_t bad = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | ((d - ones) & ~d) | x;
  return (bad & highs) == 0;
}

static void out_escaped(al_out_t *o, const char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)p;
  size_t run = 0, i = 0, k;
  while (i < n) {
    uint64_t w;
    if (i + 8 <= n && (memcpy(&w, s + i, 8), word_plain(w))) { /* most bytes: eight at a time */
      i += 8;
      continue;
    }
    unsigned char c = s[i];
    if (plain(c)) {
      i++;
      continue;
    }
    if (c >= 0x80 && (k = utf8_seq(s + i, n - i)) > 0) {
      i += k;
      continue;
    }
    out_put(o, p + run, i - run);
    switch (c) {
    case '"': OUT_LIT(o, "\\\""); break;
    case '\\': OUT_LIT(o, "\\\\"); break;
    case '\n': OUT_LIT(o, "\\n"); break;
    case '\r': OUT_LIT(o, "\\r"); break;
    case '\t': OUT_LIT(o, "\\t"); break;
    default: {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      out_put(o, esc, sizeof(esc));
    }
    }
    run = ++i;
  }
  out_put(o, p + run, n - run);
}

/* `s` cut to at most `max` bytes, not inside a UTF-8 sequence (it backs off to the
 * sequence's first byte; for bytes that are not UTF-8 anyway, by at most three). */
static px_str_t cut(px_str_t s, size_t max, int *cutp) {
  *cutp = s.n > max;
  if (s.n <= max) return s;
  size_t n = max;
  for (int back = 0; back < 3 && n > 0 && ((unsigned char)s.p[n] & 0xc0) == 0x80; back++) n--;
  return (px_str_t){s.p, n};
}

static void out_str(al_out_t *o, px_str_t s) {
  if (s.n == 0) {
    OUT_LIT(o, "null");
    return;
  }
  int cutp;
  s = cut(s, PX_ACCESS_FIELD_MAX, &cutp);
  OUT_LIT(o, "\"");
  out_escaped(o, s.p, s.n);
  OUT_LIT(o, "\"");
}

static void al_format(al_out_t *o, const px_access_t *a) {
  char t[PX_ACCESS_TIME_LEN];
  px_access_time(a->time_ns, t);
  OUT_LIT(o, "{\"time\":\"");
  out_put(o, t, sizeof(t));
  OUT_LIT(o, "\",\"listener\":");
  out_str(o, a->listener);
  OUT_LIT(o, ",\"route\":");
  out_str(o, a->route);
  OUT_LIT(o, ",\"method\":");
  out_str(o, a->method);
  OUT_LIT(o, ",\"path\":");
  int path_cut = 0;
  if (a->path.n == 0) {
    OUT_LIT(o, "null");
  } else {
    px_str_t p = cut(a->path, PX_ACCESS_PATH_MAX, &path_cut);
    OUT_LIT(o, "\"");
    out_escaped(o, p.p, p.n);
    OUT_LIT(o, "\"");
  }
  if (path_cut) OUT_LIT(o, ",\"path_truncated\":true");
  OUT_LIT(o, ",\"status\":");
  out_u64(o, a->status > 0 ? (uint64_t)a->status : 0);
  /* milliseconds with three decimals, without printf or a double */
  OUT_LIT(o, ",\"duration_ms\":");
  out_u64(o, a->duration_ns / 1000000u);
  unsigned us = (unsigned)(a->duration_ns % 1000000u / 1000u);
  char frac[4] = {'.', (char)('0' + us / 100), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
  out_put(o, frac, sizeof(frac));
  OUT_LIT(o, ",\"upstream_cluster\":");
  out_str(o, a->cluster);
  OUT_LIT(o, ",\"upstream_endpoint\":");
  out_str(o, a->endpoint);
  OUT_LIT(o, ",\"attempts\":");
  out_u64(o, a->attempts > 0 ? (uint64_t)a->attempts : 0);
  OUT_LIT(o, ",\"bytes_in\":");
  out_u64(o, a->bytes_in);
  OUT_LIT(o, ",\"bytes_out\":");
  out_u64(o, a->bytes_out);
  OUT_LIT(o, ",\"trace_id\":");
  out_str(o, a->trace_id);
  OUT_LIT(o, ",\"request_id\":");
  out_str(o, a->request_id);
  OUT_LIT(o, ",\"error\":");
  out_str(o, a->error);
  OUT_LIT(o, ",\"client\":");
  out_str(o, a->client);
  OUT_LIT(o, ",\"client_identity\":");
  out_str(o, a->client_identity);
  OUT_LIT(o, "}\n");
}

void px_access_format(const px_access_t *a, px_buf_t *out) {
  /* Most lines take 300 to 500 bytes; a longer one is formatted again into the room it
   * turned out to need. */
  size_t room = 768;
  char *p = px_buf_reserve(out, room);
  al_out_t o = {p, NULL, out->cap - out->len, 0, 0};
  al_format(&o, a);
  if (o.len > o.an) {
    room = o.len;
    p = px_buf_reserve(out, room);
    o = (al_out_t){p, NULL, room, 0, 0};
    al_format(&o, a);
  }
  out->len += o.len;
}

/* ---- the writer ------------------------------------------------------------------ */

/* One producer's ring. `head` and `tail` count bytes since the start and only grow;
 * the producer owns head (and `dropped`), the writer thread owns tail, and each is on a
 * cache line of its own so neither side's stores bounce the other's line. The ring
 * only ever holds whole lines: the producer moves head past a line once it is all
 * there. */
typedef struct {
  _Alignas(64) atomic_size_t head;
  char *data;
  size_t mask; /* capacity - 1 */
  atomic_uint_least64_t dropped;
  _Alignas(64) atomic_size_t tail;
} al_ring_t;

struct px_access_log_s {
  al_ring_t *rings;
  int nrings;
  int efd;    /* producers wake the writer through it: crossing half full, reopen, close */
  char *path; /* NULL: stdout */
  int fd;
  pthread_t thread;
  atomic_int stop, reopen;
  /* the writer thread's */
  struct iovec *seg, *iov; /* per ring up to two runs (it wraps), plus a "\n" */
  size_t *take;
  int dangling; /* a failed write left part of a line in the file: end it first */
  int warned;
  uint64_t last_warn_ns, unwarned;
  atomic_uint_least64_t written, wdropped, errors, reopens;
};

static void al_poke(px_access_log_t *l) {
  uint64_t one = 1;
  ssize_t r = write(l->efd, &one, sizeof(one)); /* EAGAIN: the counter is set already */
  (void)r;
}

int px_access_log_write(px_access_log_t *l, int producer, const px_access_t *a) {
  assert(producer >= 0 && producer < l->nrings);
  al_ring_t *r = &l->rings[producer];
  size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
  size_t cap = r->mask + 1, used = head - tail, room = cap - used, at = head & r->mask;
  size_t first = PX_MIN(room, cap - at);
  al_out_t o = {r->data + at, r->data, first, room - first, 0};
  al_format(&o, a);
  if (PX_UNLIKELY(o.len > room)) {
    /* the only writer of `dropped`: a load and a store, no locked add */
    atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    return PX_EOVERFLOW;
  }
  atomic_store_explicit(&r->head, head + o.len, memory_order_release);
  /* Wake the writer early only on crossing the half mark, so a busy worker makes one
   * syscall per half ring, not one a line; below it the writer's period drains it. */
  if (used < cap / 2 && used + o.len >= cap / 2) al_poke(l);
  return 0;
}

void px_access_log_reopen(px_access_log_t *l) {
  int saved = errno; /* a signal handler must leave errno as it found it */
  atomic_store_explicit(&l->reopen, 1, memory_order_release);
  al_poke(l);
  errno = saved;
}

void px_access_log_stats(const px_access_log_t *l, px_access_log_stats_t *out) {
  px_access_log_t *m = (px_access_log_t *)l; /* atomic loads of a const object */
  uint64_t dropped = atomic_load_explicit(&m->wdropped, memory_order_acquire);
  for (int i = 0; i < l->nrings; i++)
    dropped += atomic_load_explicit(&m->rings[i].dropped, memory_order_acquire);
  out->lines_written = atomic_load_explicit(&m->written, memory_order_acquire);
  out->lines_dropped = dropped;
  out->write_errors = atomic_load_explicit(&m->errors, memory_order_acquire);
  out->reopens = atomic_load_explicit(&m->reopens, memory_order_acquire);
}

static uint64_t count_nl(const char *p, size_t n) {
  uint64_t c = 0;
  const char *end = p + n;
  while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) c++, p++;
  return c;
}

/* Writes all of `iov` (it is consumed), through short writes and EINTR; a
 * non-blocking stdout is waited for. 0, or a negative errno with *done the bytes that
 * made it. */
static int writev_all(int fd, struct iovec *iov, int n, size_t *done) {
  *done = 0;
  while (n > 0) {
    ssize_t w = writev(fd, iov, PX_MIN(n, IOV_MAX));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 100);
        continue;
      }
      return -errno;
    }
    *done += (size_t)w;
    size_t left = (size_t)w;
    while (n > 0 && left >= iov->iov_len) left -= iov->iov_len, iov++, n--;
    if (n > 0) iov->iov_base = (char *)iov->iov_base + left, iov->iov_len -= left;
  }
  return 0;
}

static const char *al_dest(const px_access_log_t *l) { return l->path ? l->path : "stdout"; }

static void al_write_failed(px_access_log_t *l, int err, uint64_t lost) {
  atomic_fetch_add_explicit(&l->errors, 1, memory_order_relaxed);
  l->unwarned++;
  /* A full disk fails every batch; one warning each ten seconds says as much. */
  uint64_t now = px_now_ns();
  if (l->warned && now - l->last_warn_ns < WARN_EVERY_NS) return;
  px_warn("access log: writing to %s failed: %s (%llu lines lost; %llu failed writes since the last warning)",
          al_dest(l), px_strerror(err), (unsigned long long)lost, (unsigned long long)l->unwarned);
  l->warned = 1;
  l->last_warn_ns = now;
  l->unwarned = 0;
}

/* One batch: what every ring holds now, in one writev. Returns the bytes taken off the
 * rings (written or, after a failed write, dropped); *busy: a ring was half full. */
static size_t al_drain(px_access_log_t *l, int *busy) {
  int nseg = 0;
  size_t total = 0;
  for (int i = 0; i < l->nrings; i++) {
    al_ring_t *r = &l->rings[i];
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t used = head - tail, cap = r->mask + 1, at = tail & r->mask, first = PX_MIN(used, cap - at);
    l->take[i] = used;
    total += used;
    if (used >= cap / 2) *busy = 1;
    if (first) l->seg[nseg++] = (struct iovec){r->data + at, first};
    if (used > first) l->seg[nseg++] = (struct iovec){r->data, used - first};
  }
  if (total == 0) return 0;

  static char nl[] = "\n";
  int niov = 0, prefix = l->dangling;
  if (prefix) l->iov[niov++] = (struct iovec){nl, 1};
  memcpy(l->iov + niov, l->seg, (size_t)nseg * sizeof(*l->seg));
  niov += nseg;
  size_t done;
  int rc = writev_all(l->fd, l->iov, niov, &done);

  if (prefix && done > 0) done--, l->dangling = 0;
  uint64_t ok = 0, lost = 0;
  char last = '\n';
  for (int i = 0; i < nseg; i++) {
    size_t k = PX_MIN(done, l->seg[i].iov_len);
    const char *p = l->seg[i].iov_base;
    ok += count_nl(p, k);
    if (rc < 0) lost += count_nl(p + k, l->seg[i].iov_len - k);
    if (k) last = p[k - 1];
    done -= k;
  }
  /* The room goes back to the producers before the counters move, so whoever sees a
   * line counted finds its room free. */
  for (int i = 0; i < l->nrings; i++) {
    al_ring_t *r = &l->rings[i];
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    atomic_store_explicit(&r->tail, tail + l->take[i], memory_order_release);
  }
  atomic_fetch_add_explicit(&l->written, ok, memory_order_release);
  if (rc < 0) {
    if (last != '\n') l->dangling = 1;
    atomic_fetch_add_explicit(&l->wdropped, lost, memory_order_release);
    al_write_failed(l, rc, lost);
  }
  return total;
}

static void al_reopen(px_access_log_t *l) {
  if (l->path == NULL) return;
  int fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    atomic_fetch_add_explicit(&l->errors, 1, memory_order_relaxed);
    px_warn("access log: cannot reopen %s: %s; writing on to the file already open", l->path,
            px_strerror(-errno));
    return;
  }
  close(l->fd);
  l->fd = fd;
  l->dangling = 0;
  atomic_fetch_add_explicit(&l->reopens, 1, memory_order_relaxed);
}

static void *al_thread(void *arg) {
  px_access_log_t *l = arg;
  for (;;) {
    int stop = atomic_load_explicit(&l->stop, memory_order_acquire);
    int busy = 0;
    if (atomic_exchange_explicit(&l->reopen, 0, memory_order_acq_rel)) {
      /* what was written before the request belongs in the old file */
      al_drain(l, &busy);
      al_reopen(l);
    }
    size_t n = al_drain(l, &busy);
    if (stop) {
      if (n == 0) break; /* every line written before close() is out */
      continue;
    }
    if (busy) continue;
    struct pollfd p = {.fd = l->efd, .events = POLLIN};
    if (poll(&p, 1, PX_ACCESS_FLUSH_MS) > 0) {
      uint64_t v;
      ssize_t r = read(l->efd, &v, sizeof(v));
      (void)r;
    }
  }
  if (l->path) close(l->fd);
  return NULL;
}

static void *aligned_or_die(size_t align, size_t n) {
  void *p = aligned_alloc(align, n);
  if (PX_UNLIKELY(p == NULL)) {
    fprintf(stderr, "outrigger: out of memory allocating %zu bytes\n", n);
    abort();
  }
  return p;
}

static void al_free(px_access_log_t *l) {
  for (int i = 0; i < l->nrings; i++) free(l->rings[i].data);
  free(l->rings);
  free(l->seg);
  free(l->iov);
  free(l->take);
  free(l->path);
  free(l);
}

int px_access_log_open(px_access_log_t **out, const char *dest, int producers, size_t ring_bytes) {
  *out = NULL;
  if (dest == NULL || *dest == '\0' || producers < 1) return PX_EUSAGE;
  if (ring_bytes > RING_MAX) return PX_ETOOLARGE;
  size_t cap = PX_ACCESS_RING_MIN;
  while (cap < ring_bytes) cap *= 2;

  px_access_log_t *l = px_calloc(1, sizeof(*l));
  if (strcmp(dest, "stdout") == 0) {
    l->fd = STDOUT_FILENO;
  } else {
    l->fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
      int err = -errno;
      free(l);
      return err;
    }
    l->path = px_strdup(dest);
  }
  l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (l->efd < 0) {
    int err = -errno;
    if (l->path) close(l->fd);
    al_free(l);
    return err;
  }

  l->nrings = producers;
  l->rings = aligned_or_die(64, (size_t)producers * sizeof(al_ring_t));
  for (int i = 0; i < producers; i++) {
    al_ring_t *r = &l->rings[i];
    memset(r, 0, sizeof(*r));
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    r->data = px_malloc(cap);
    r->mask = cap - 1;
  }
  l->seg = px_calloc((size_t)producers * 2, sizeof(*l->seg));
  l->iov = px_calloc((size_t)producers * 2 + 1, sizeof(*l->iov));
  l->take = px_calloc((size_t)producers, sizeof(*l->take));

  /* The thread starts with every signal blocked, so SIGUSR1 and the others are always
   * handled by the threads that expect them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&l->thread, NULL, al_thread, l);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    close(l->efd);
    if (l->path) close(l->fd);
    al_free(l);
    return -rc;
  }
  pthread_setname_np(l->thread, "px-accesslog");
  *out = l;
  return 0;
}

void px_access_log_close(px_access_log_t *l) {
  if (l == NULL) return;
  atomic_store_explicit(&l->stop, 1, memory_order_release);
  al_poke(l);
  pthread_join(l->thread, NULL);
  close(l->efd);
  al_free(l);
}
