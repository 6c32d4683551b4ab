/* Spans and their export to Zipkin (span.h).
 *
 * The rings. Each worker owns one single-producer/single-consumer ring of span slots:
 * head and tail are 64-bit counters that only grow (a slot is counter & mask), the
 * producer's line (tail, its cached copy of head, its drop count) and the consumer's
 * (head) 64 bytes apart so that neither writes where the other reads on every span.
 * The producer reads the consumer's head only when its cached copy says the ring is
 * full or half full, so a submit is a memcpy and a release store.
 *
 * Waking the exporter. It sleeps in poll(2) on an eventfd for at most flush_interval_ms.
 * A producer whose ring reaches half full sets the exporter's `kicked` flag and, only
 * when it was clear, writes the eventfd; the exporter clears the flag before it drains.
 * So all producers together make at most one system call per exporter cycle, however
 * fast they submit, and none at all while the exporter is busy or backing off.
 *
 * The exporter's cycle drains every ring in batches of batch_size, each batch encoded
 * straight from the ring slots (which are released before the POST, so a slow POST
 * does not hold ring space) and POSTed; after a failed batch it stops and waits a full
 * flush interval (kicks ignored) before trying again, so a collector that is down is
 * asked once per interval rather than once per batch, and spans meanwhile wait in the
 * rings or are dropped there when they fill.
 *
 * The HTTP client is the smallest that reuses connections properly: HTTP/1.1 with
 * keep-alive, the answer framed by llhttp (Content-Length, chunked, or read to the
 * close), the connection kept only when the collector allows it and the answer ended
 * exactly where the bytes did. A kept connection that the collector closed while idle
 * is noticed before use (poll says readable) or, if the close races the request,
 * because the answer fails before its first byte: then the batch is sent once more on
 * a new connection. Every step (resolve aside, see px_span_url_t) waits in poll(2)
 * against one deadline, timeout_ms after the POST began. */
#include "span.h"

#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

_Static_assert(sizeof(px_span_t) <= 1024, "a span is one memcpy of at most 1 KiB");

/* ---- the record ------------------------------------------------------------------ */

static inline int is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

size_t px_span_set_str(char *dst, size_t cap, px_str_t s) {
  if (cap == 0) return 0;
  size_t n = s.n;
  if (n > cap - 1) {
    n = cap - 1;
    /* s.p[n] is the first byte cut off: when it continues a sequence, drop the
     * sequence's first bytes too (at most 3 back; invalid input is cut where it is). */
    size_t m = n;
    for (int k = 0; k < 3 && m > 0 && is_cont((unsigned char)s.p[m]); k++) m--;
    if (!is_cont((unsigned char)s.p[m])) n = m;
  }
  if (n) memcpy(dst, s.p, n);
  dst[n] = '\0';
  return n;
}

void px_span_set_addr(px_span_endpoint_t *ep, const struct sockaddr *sa) {
  memset(ep->addr, 0, sizeof(ep->addr));
  ep->port = 0;
  ep->family = 0;
  if (sa == NULL) return;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memcpy(ep->addr, &in->sin_addr, 4);
    ep->port = ntohs(in->sin_port);
    ep->family = 4;
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      memcpy(ep->addr, in6->sin6_addr.s6_addr + 12, 4);
      ep->family = 4;
    } else {
      memcpy(ep->addr, in6->sin6_addr.s6_addr, 16);
      ep->family = 6;
    }
    ep->port = ntohs(in6->sin6_port);
  }
}

uint64_t px_span_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the encoding ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (n > 0 bytes there), or 0 (RFC 3629: no
 * overlong forms, no surrogates, nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xc2) return 0;
  if (c < 0xe0) return n >= 2 && is_cont(p[1]) ? 2 : 0;
  if (c < 0xf0) {
    if (n < 3 || !is_cont(p[1]) || !is_cont(p[2])) return 0;
    if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)) return 0;
    return 3;
  }
  if (c < 0xf5) {
    if (n < 4 || !is_cont(p[1]) || !is_cont(p[2]) || !is_cont(p[3])) return 0;
    if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)) return 0;
    return 4;
  }
  return 0;
}

/* A quoted JSON string of s[0..n): runs of valid UTF-8 escaped by px_buf_json_escape,
 * each byte outside one written as U+FFFD, so one odd byte cannot make the collector
 * refuse the batch. */
static void json_text(px_buf_t *b, const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t run = 0, i = 0;
  px_buf_append(b, "\"", 1);
  while (i < n) {
    size_t k = utf8_seq(u + i, n - i);
    if (k) {
      i += k;
      continue;
    }
    px_buf_json_escape(b, s + run, i - run);
    px_buf_append(b, "\\ufffd", 6);
    run = ++i;
  }
  px_buf_json_escape(b, s + run, n - run);
  px_buf_append(b, "\"", 1);
}

/* Zipkin lower-cases span and service names when it reads them; writing them so makes
 * what is sent what is shown. ASCII only: the rest is left as it is. */
static void json_lower(px_buf_t *b, const char *s, size_t cap) {
  char tmp[PX_MAX(PX_SPAN_NAME_CAP, PX_SPAN_SERVICE_CAP)];
  size_t n = strnlen(s, PX_MIN(cap, sizeof(tmp)));
  for (size_t i = 0; i < n; i++) tmp[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] | 0x20) : s[i];
  json_text(b, tmp, n);
}

static void json_hex(px_buf_t *b, const uint8_t *id, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *d = px_buf_reserve(b, 2 * n + 2);
  *d++ = '"';
  for (size_t i = 0; i < n; i++) {
    *d++ = digits[id[i] >> 4];
    *d++ = digits[id[i] & 15];
  }
  *d = '"';
  b->len += 2 * n + 2;
}

static int all_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

/* ,"key":{...} with the object's members added by the caller through member(); when
 * none is added, the whole thing is taken back (Zipkin wants absent, not empty). */
typedef struct {
  px_buf_t *b;
  size_t start;
  int members;
} json_obj_t;

static json_obj_t obj_open(px_buf_t *b, const char *key) {
  json_obj_t o = {b, b->len, 0};
  px_buf_append_cstr(b, key);
  px_buf_append(b, "{", 1);
  return o;
}
static void obj_member(json_obj_t *o, const char *key) {
  if (o->members++) px_buf_append(o->b, ",", 1);
  px_buf_append_cstr(o->b, key);
}
static void obj_close(json_obj_t *o) {
  if (o->members)
    px_buf_append(o->b, "}", 1);
  else
    o->b->len = o->start;
}

static void json_endpoint(px_buf_t *b, const char *key, const px_span_endpoint_t *ep) {
  json_obj_t o = obj_open(b, key);
  if (ep->service[0]) {
    obj_member(&o, "\"serviceName\":");
    json_lower(b, ep->service, sizeof(ep->service));
  }
  if (ep->family == 4 || ep->family == 6) {
    char text[INET6_ADDRSTRLEN];
    int af = ep->family == 4 ? AF_INET : AF_INET6;
    if (inet_ntop(af, ep->addr, text, sizeof(text))) {
      obj_member(&o, ep->family == 4 ? "\"ipv4\":" : "\"ipv6\":");
      px_buf_json_str(b, text, strlen(text));
    }
  }
  if (ep->port) {
    obj_member(&o, "\"port\":");
    px_buf_append_u64(b, ep->port);
  }
  obj_close(&o);
}

static void tag_str(json_obj_t *o, const char *key, const char *field, size_t cap) {
  if (field[0] == '\0') return;
  obj_member(o, key);
  json_text(o->b, field, strnlen(field, cap));
}

static void tag_num(json_obj_t *o, const char *key, unsigned v) {
  if (v == 0) return;
  obj_member(o, key);
  px_buf_append(o->b, "\"", 1);
  px_buf_append_u64(o->b, v);
  px_buf_append(o->b, "\"", 1);
}

#define TAG_STR(o, key, s, field) tag_str((o), (key), (s)->field, sizeof((s)->field))

/* One span as a JSON object, preceded by "," unless first; 0 when it has no valid ids. */
static int span_json(const px_span_t *s, px_buf_t *b, int first) {
  const uint8_t *tid = s->trace_id_64 ? s->trace_id + 8 : s->trace_id;
  size_t tn = s->trace_id_64 ? 8 : 16;
  if (all_zero(tid, tn) || all_zero(s->id, 8)) return 0;

  px_buf_append_cstr(b, first ? "{\"traceId\":" : ",{\"traceId\":");
  json_hex(b, tid, tn);
  px_buf_append_cstr(b, ",\"id\":");
  json_hex(b, s->id, 8);
  if (!all_zero(s->parent_id, 8)) {
    px_buf_append_cstr(b, ",\"parentId\":");
    json_hex(b, s->parent_id, 8);
  }
  if (s->kind == PX_SPAN_SERVER) px_buf_append_cstr(b, ",\"kind\":\"SERVER\"");
  if (s->kind == PX_SPAN_CLIENT) px_buf_append_cstr(b, ",\"kind\":\"CLIENT\"");
  if (s->name[0]) {
    px_buf_append_cstr(b, ",\"name\":");
    json_lower(b, s->name, sizeof(s->name));
  }
  if (s->timestamp_us) {
    px_buf_append_cstr(b, ",\"timestamp\":");
    px_buf_append_u64(b, s->timestamp_us);
  }
  px_buf_append_cstr(b, ",\"duration\":");
  px_buf_append_u64(b, s->duration_us ? s->duration_us : 1);
  json_endpoint(b, ",\"localEndpoint\":", &s->local);
  json_endpoint(b, ",\"remoteEndpoint\":", &s->remote);

  json_obj_t t = obj_open(b, ",\"tags\":");
  TAG_STR(&t, "\"http.method\":", s, method);
  TAG_STR(&t, "\"http.path\":", s, path);
  tag_num(&t, "\"http.status_code\":", s->status_code);
  TAG_STR(&t, "\"error\":", s, error);
  TAG_STR(&t, "\"outrigger.route\":", s, route);
  TAG_STR(&t, "\"outrigger.cluster\":", s, cluster);
  TAG_STR(&t, "\"outrigger.endpoint\":", s, endpoint);
  tag_num(&t, "\"outrigger.attempt\":", s->attempt);
  TAG_STR(&t, "\"outrigger.decision\":", s, decision);
  obj_close(&t);

  if (s->debug) px_buf_append_cstr(b, ",\"debug\":true");
  px_buf_append(b, "}", 1);
  return 1;
}

size_t px_span_zipkin_json(const px_span_t *spans, size_t n, px_buf_t *out) {
  size_t written = 0;
  px_buf_append(out, "[", 1);
  for (size_t i = 0; i < n; i++) written += (size_t)span_json(&spans[i], out, written == 0);
  px_buf_append(out, "]", 1);
  return written;
}

/* ---- the collector URL ----------------------------------------------------------- */

#define PX_SPAN_DEFAULT_PATH "/api/v2/spans"

int px_span_url_parse(const char *url, px_span_url_t *out, char *err, size_t errlen) {
  char why[160];
  int rc = px_http_url_parse(url, out, why, sizeof(why));
  if (rc == 0 && out->path[0] && out->path[0] != '/') {
    snprintf(why, sizeof(why), "the path must start with '/'");
    rc = PX_ECONFIG;
  }
  if (rc != 0) {
    if (err && errlen) snprintf(err, errlen, "collector URL \"%.200s\": %s", url ? url : "", why);
    return rc;
  }
  if (!out->port[0]) snprintf(out->port, sizeof(out->port), "80");
  if (!out->path[0]) snprintf(out->path, sizeof(out->path), "%s", PX_SPAN_DEFAULT_PATH);
  return 0;
}

/* ---- the exporter: rings and submit ---------------------------------------------- */

typedef struct {
  /* Read-only once started. */
  px_span_t *slots;
  uint64_t mask, half;
  /* The producer's. */
  alignas(64) _Atomic uint64_t tail;
  uint64_t cached_head;
  _Atomic uint64_t dropped; /* written by the producer only, read by anyone */
  /* The consumer's (the exporter thread). */
  alignas(64) _Atomic uint64_t head;
} span_ring_t;

struct px_span_exporter_s {
  span_ring_t *rings;
  unsigned nrings;
  uint32_t batch, interval_ms, timeout_ms;
  px_span_url_t url;
  int efd;
  pthread_t thread;

  alignas(64) atomic_int kicked; /* written by producers (rarely) */
  alignas(64) atomic_int stopping;
  _Atomic uint64_t stop_deadline_ns;
  _Atomic uint64_t exported, dropped_failed, batches_sent, batches_failed;

  /* The exporter thread's alone. */
  alignas(64) int fd; /* the kept connection, -1 when none */
  unsigned next_ring;
  px_buf_t head, body;
  char why[320];
  char rbuf[4096];
  uint64_t warn_ns, warn_spans, warn_batches;
  int warned, recovery_due;
  uint64_t qfull_seen, qfull_warn_ns;
};

static void kick(px_span_exporter_t *e) {
  /* Always a read-modify-write (once per half ring: rare), never a plain load first:
   * the exporter clears the flag with one too, so either its clear comes after this
   * (it then acquires this release, and sees the ring's new tail) or before (this reads
   * 0 and writes the eventfd). A plain load could read a 1 from before the clear while
   * the exporter misses the tail: a wake-up lost until the next interval. */
  if (atomic_exchange_explicit(&e->kicked, 1, memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t r = write(e->efd, &one, sizeof(one));
  (void)r; /* EAGAIN only when the counter is saturated: the exporter is awake then */
}

px_span_t *px_span_reserve(px_span_exporter_t *e, unsigned worker) {
  if (PX_UNLIKELY(worker >= e->nrings)) return NULL;
  span_ring_t *r = &e->rings[worker];
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  if (PX_UNLIKELY(t - r->cached_head > r->mask)) {
    r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t - r->cached_head > r->mask) {
      atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + 1,
                            memory_order_relaxed);
      return NULL;
    }
  }
  return &r->slots[t & r->mask];
}

void px_span_commit(px_span_exporter_t *e, unsigned worker) {
  span_ring_t *r = &e->rings[worker];
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  atomic_store_explicit(&r->tail, t + 1, memory_order_release);
  /* The count by the cached head never runs behind the true one and grows by one per
   * submit, so the true count cannot pass the half mark without the cached one landing
   * on it exactly: then look at the real head, once per half ring at most. */
  if (PX_UNLIKELY(t + 1 - r->cached_head == r->half)) {
    r->cached_head = atomic_load_explicit(&r->head, memory_order_acquire);
    if (t + 1 - r->cached_head >= r->half) kick(e);
  }
}

int px_span_submit(px_span_exporter_t *e, unsigned worker, const px_span_t *span) {
  px_span_t *slot = px_span_reserve(e, worker);
  if (slot == NULL) return -1;
  memcpy(slot, span, sizeof(*span));
  px_span_commit(e, worker);
  return 0;
}

void px_span_exporter_stats(const px_span_exporter_t *e, px_span_stats_t *out) {
  memset(out, 0, sizeof(*out));
  for (unsigned i = 0; i < e->nrings; i++) {
    out->submitted += atomic_load_explicit(&e->rings[i].tail, memory_order_relaxed);
    out->dropped_queue_full += atomic_load_explicit(&e->rings[i].dropped, memory_order_relaxed);
  }
  out->exported = atomic_load_explicit(&e->exported, memory_order_relaxed);
  out->dropped_export_failed = atomic_load_explicit(&e->dropped_failed, memory_order_relaxed);
  out->batches_sent = atomic_load_explicit(&e->batches_sent, memory_order_relaxed);
  out->batches_failed = atomic_load_explicit(&e->batches_failed, memory_order_relaxed);
}

/* ---- the exporter: HTTP ---------------------------------------------------------- */

static void count(_Atomic uint64_t *c, uint64_t n) { atomic_fetch_add_explicit(c, n, memory_order_relaxed); }

static int set_why(px_span_exporter_t *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_why(px_span_exporter_t *e, int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->why, sizeof(e->why), fmt, ap);
  va_end(ap);
  return rc;
}

static void conn_close(px_span_exporter_t *e) {
  if (e->fd >= 0) close(e->fd);
  e->fd = -1;
}

/* Waits for `events` on fd until deadline_ns: 0, PX_ETIMEOUT or a negative errno. */
static int wait_fd(int fd, short events, uint64_t deadline_ns) {
  for (;;) {
    uint64_t now = px_now_ns();
    if (now >= deadline_ns) return PX_ETIMEOUT;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, (int)PX_MIN(ms, 60000));
    if (r > 0) return 0;
    if (r < 0 && errno != EINTR) return -errno;
  }
}

static int conn_open(px_span_exporter_t *e, uint64_t deadline_ns) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int gai = getaddrinfo(e->url.host, e->url.port, &hints, &res);
  if (gai != 0) return set_why(e, PX_EUPSTREAM, "resolving %s: %s", e->url.host, gai_strerror(gai));
  int rc = PX_EUPSTREAM;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      rc = -errno;
      continue;
    }
    rc = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : -errno;
    if (rc == -EINPROGRESS) {
      rc = wait_fd(fd, POLLOUT, deadline_ns);
      if (rc == 0) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ? -errno : -soerr;
      }
    }
    if (rc == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      e->fd = fd;
      break;
    }
    close(fd);
    if (rc == PX_ETIMEOUT) break;
  }
  freeaddrinfo(res);
  if (rc == PX_ETIMEOUT) return set_why(e, rc, "connecting to %s: timed out", e->url.authority);
  if (rc != 0) return set_why(e, rc, "connecting to %s: %s", e->url.authority, px_strerror(rc));
  return 0;
}

static int send_request(px_span_exporter_t *e, uint64_t deadline_ns) {
  struct iovec iov[2] = {{e->head.data, e->head.len}, {e->body.data, e->body.len}};
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
  while (msg.msg_iovlen > 0) {
    ssize_t n = sendmsg(e->fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      int rc = errno == EAGAIN || errno == EWOULDBLOCK ? wait_fd(e->fd, POLLOUT, deadline_ns) : -errno;
      if (rc == PX_ETIMEOUT) return set_why(e, rc, "sending to %s: timed out", e->url.authority);
      if (rc != 0) return set_why(e, rc, "sending to %s: %s", e->url.authority, px_strerror(rc));
      continue;
    }
    size_t left = (size_t)n;
    while (msg.msg_iovlen > 0 && left >= msg.msg_iov->iov_len) {
      left -= msg.msg_iov->iov_len;
      msg.msg_iov++;
      msg.msg_iovlen--;
    }
    if (msg.msg_iovlen > 0) {
      msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + left;
      msg.msg_iov->iov_len -= left;
    }
  }
  return 0;
}

typedef struct {
  int status, keep_alive, done;
} answer_t;

static int on_headers_complete(llhttp_t *p) {
  ((answer_t *)p->data)->keep_alive = llhttp_should_keep_alive(p);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  answer_t *a = p->data;
  /* An interim answer (100 Continue, though none is asked for) is skipped: llhttp goes
   * on with the next message on the same bytes. 101 ends the exchange (as a failure). */
  if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) return 0;
  a->status = p->status_code;
  a->done = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t answer_settings = {.on_headers_complete = on_headers_complete,
                                                  .on_message_complete = on_message_complete};

/* Reads the answer to its end. 0 with *a filled, or an error; *got_bytes says whether
 * any byte of it came (a kept connection that fails before one was closed while idle). */
static int read_answer(px_span_exporter_t *e, uint64_t deadline_ns, answer_t *a, int *got_bytes) {
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &answer_settings);
  parser.data = a;
  memset(a, 0, sizeof(*a));
  *got_bytes = 0;
  for (;;) {
    ssize_t n = recv(e->fd, e->rbuf, sizeof(e->rbuf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int rc = errno == EAGAIN || errno == EWOULDBLOCK ? wait_fd(e->fd, POLLIN, deadline_ns) : -errno;
      if (rc == PX_ETIMEOUT)
        return set_why(e, rc, "waiting for the answer of %s: timed out after %u ms", e->url.authority,
                       e->timeout_ms);
      if (rc != 0) return set_why(e, rc, "reading from %s: %s", e->url.authority, px_strerror(rc));
      continue;
    }
    if (n == 0) {
      llhttp_finish(&parser); /* a close-delimited answer ends here (on_message_complete) */
      if (a->done) {
        a->keep_alive = 0;
        return 0;
      }
      return set_why(e, PX_EUPSTREAM, "%s closed the connection before the answer ended", e->url.authority);
    }
    *got_bytes = 1;
    llhttp_errno_t err = llhttp_execute(&parser, e->rbuf, (size_t)n);
    if (err == HPE_PAUSED) {
      /* Bytes after the answer would be the start of nothing we asked for. */
      if (llhttp_get_error_pos(&parser) != e->rbuf + n) a->keep_alive = 0;
      return 0;
    }
    if (err != HPE_OK)
      return set_why(e, PX_EPARSE, "malformed answer from %s: %s", e->url.authority,
                     llhttp_get_error_reason(&parser));
  }
}

/* POSTs e->body. 0 when the collector answered 2xx, else an error with e->why set. */
static int post_batch(px_span_exporter_t *e, uint64_t deadline_ns) {
  e->head.len = 0;
  px_buf_printf(&e->head,
                "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: outrigger/" PX_VERSION
                "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: keep-alive\r\n\r\n",
                e->url.path, e->url.authority, e->body.len);
  for (int attempt = 0;; attempt++) {
    int reused = e->fd >= 0;
    if (reused) {
      /* An idle kept connection has nothing to say; readable means closed (or junk). */
      struct pollfd p = {.fd = e->fd, .events = POLLIN};
      if (poll(&p, 1, 0) != 0) {
        conn_close(e);
        reused = 0;
      }
    }
    int rc = e->fd >= 0 ? 0 : conn_open(e, deadline_ns);
    if (rc != 0) return rc;
    answer_t a;
    int got_bytes = 0;
    rc = send_request(e, deadline_ns);
    if (rc == 0) rc = read_answer(e, deadline_ns, &a, &got_bytes);
    if (rc == 0) {
      if (!a.keep_alive) conn_close(e);
      if (a.status >= 200 && a.status < 300) return 0;
      return set_why(e, PX_EUPSTREAM, "%s answered %d", e->url.authority, a.status);
    }
    conn_close(e);
    if (!reused || got_bytes || rc == PX_ETIMEOUT || attempt > 0) return rc;
  }
}

/* ---- the exporter: the thread ---------------------------------------------------- */

#define WARN_EVERY_NS (10 * 1000000000ull)

static void note_failure(px_span_exporter_t *e, uint64_t spans) {
  count(&e->dropped_failed, spans);
  count(&e->batches_failed, 1);
  e->warn_spans += spans;
  e->warn_batches++;
  uint64_t now = px_now_ns();
  if (e->warned && now - e->warn_ns < WARN_EVERY_NS) return;
  px_warn("zipkin: span export to http://%s%s failed: %s (%llu spans in %llu batches dropped since the last "
          "such warning; at most one every 10 s)",
          e->url.authority, e->url.path, e->why, (unsigned long long)e->warn_spans,
          (unsigned long long)e->warn_batches);
  e->warned = e->recovery_due = 1;
  e->warn_ns = now;
  e->warn_spans = e->warn_batches = 0;
}

static void note_success(px_span_exporter_t *e, uint64_t spans) {
  count(&e->exported, spans);
  count(&e->batches_sent, 1);
  /* At most one such line per warning, so a flapping collector is no louder. */
  if (e->recovery_due) px_info("zipkin: span export to http://%s works again", e->url.authority);
  e->recovery_due = 0;
}

static void warn_queue_full(px_span_exporter_t *e) {
  uint64_t dropped = 0;
  for (unsigned i = 0; i < e->nrings; i++)
    dropped += atomic_load_explicit(&e->rings[i].dropped, memory_order_relaxed);
  if (dropped == e->qfull_seen) return;
  uint64_t now = px_now_ns();
  if (e->qfull_warn_ns && now - e->qfull_warn_ns < WARN_EVERY_NS) return;
  px_warn("zipkin: span queues full, %llu spans dropped since the last such warning (%u per worker; at most "
          "one warning every 10 s)",
          (unsigned long long)(dropped - e->qfull_seen), (unsigned)(e->rings[0].mask + 1));
  e->qfull_seen = dropped;
  e->qfull_warn_ns = now;
}

/* Takes up to `batch` spans from the rings, starting one ring further each time so that
 * a busy worker cannot starve the others, encoding them into e->body and releasing
 * their slots. Returns the spans taken; *encoded gets those written. */
static size_t collect(px_span_exporter_t *e, size_t *encoded) {
  size_t taken = 0, written = 0;
  e->body.len = 0;
  px_buf_append(&e->body, "[", 1);
  for (unsigned k = 0; k < e->nrings && taken < e->batch; k++) {
    span_ring_t *r = &e->rings[(e->next_ring + k) % e->nrings];
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t h0 = h;
    for (; h != t && taken < e->batch; h++, taken++)
      written += (size_t)span_json(&r->slots[h & r->mask], &e->body, written == 0);
    if (h != h0) atomic_store_explicit(&r->head, h, memory_order_release);
  }
  e->next_ring = (e->next_ring + 1) % e->nrings;
  px_buf_append(&e->body, "]", 1);
  *encoded = written;
  return taken;
}

/* Sends what the rings hold, a batch at a time. Returns 0 when they were emptied (as
 * they were when it started, at least), -1 after a failed batch or when stopping ran
 * out of time. */
static int export_queued(px_span_exporter_t *e) {
  for (;;) {
    uint64_t deadline = px_now_ns() + (uint64_t)e->timeout_ms * 1000000;
    if (atomic_load_explicit(&e->stopping, memory_order_acquire)) {
      uint64_t stop = atomic_load_explicit(&e->stop_deadline_ns, memory_order_relaxed);
      if (stop < deadline) deadline = stop;
      if (px_now_ns() >= deadline) return -1;
    }
    size_t encoded;
    size_t taken = collect(e, &encoded);
    if (taken == 0) return 0;
    if (taken > encoded) { /* no trace id or span id: the caller's bug, never sendable */
      count(&e->dropped_failed, taken - encoded);
    }
    if (encoded > 0) {
      if (post_batch(e, deadline) != 0) {
        note_failure(e, encoded);
        return -1;
      }
      note_success(e, encoded);
    }
    if (taken < e->batch) return 0;
  }
}

/* Sleeps until `until_ns`, a stop, or (unless ignore_kicks) a kick. */
static void wait_for_work(px_span_exporter_t *e, uint64_t until_ns, int ignore_kicks) {
  for (;;) {
    if (atomic_load_explicit(&e->stopping, memory_order_acquire)) return;
    uint64_t now = px_now_ns();
    if (now >= until_ns) return;
    uint64_t ms = (until_ns - now + 999999) / 1000000;
    struct pollfd p = {.fd = e->efd, .events = POLLIN};
    if (poll(&p, 1, (int)PX_MIN(ms, 60000)) > 0) {
      uint64_t v;
      ssize_t r = read(e->efd, &v, sizeof(v));
      (void)r;
      if (!ignore_kicks) return;
    }
  }
}

static void *exporter_main(void *arg) {
  px_span_exporter_t *e = arg;
  uint64_t interval_ns = (uint64_t)e->interval_ms * 1000000;
  uint64_t next = px_now_ns() + interval_ns;
  int backing_off = 0;
  for (;;) {
    wait_for_work(e, next, backing_off);
    int stopping = atomic_load_explicit(&e->stopping, memory_order_acquire);
    /* Cleared before draining: a producer that crosses its half mark from now on
     * kicks again, and its spans are taken by this drain or the next (see kick). */
    atomic_exchange_explicit(&e->kicked, 0, memory_order_acq_rel);
    backing_off = export_queued(e) != 0;
    warn_queue_full(e);
    if (stopping) break;
    next = px_now_ns() + interval_ns;
  }
  /* What is still queued will not be sent. */
  for (unsigned i = 0; i < e->nrings; i++) {
    span_ring_t *r = &e->rings[i];
    uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (t != h) count(&e->dropped_failed, t - h);
    atomic_store_explicit(&r->head, t, memory_order_release);
  }
  conn_close(e);
  return NULL;
}

/* ---- the exporter: start and stop ------------------------------------------------ */

static int conf_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int conf_fail(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return PX_ECONFIG;
}

static void exporter_free(px_span_exporter_t *e) {
  for (unsigned i = 0; i < e->nrings; i++) free(e->rings[i].slots);
  free(e->rings);
  px_buf_free(&e->head);
  px_buf_free(&e->body);
  free(e);
}

static void *aligned_or_die(size_t align, size_t n) {
  void *p = aligned_alloc(align, (n + align - 1) / align * align);
  if (p == NULL) {
    fprintf(stderr, "outrigger: out of memory allocating %zu bytes\n", n);
    abort();
  }
  return p;
}

int px_span_exporter_start(const px_span_exporter_conf_t *conf, px_span_exporter_t **out, char *err,
                           size_t errlen) {
  *out = NULL;
  px_span_url_t url;
  int rc = px_span_url_parse(conf->url, &url, err, errlen);
  if (rc != 0) return rc;
  uint32_t cap = conf->queue_capacity ? conf->queue_capacity : 1024;
  if (conf->producers < 1 || conf->producers > 1024)
    return conf_fail(err, errlen, "span exporter: producers must be 1..1024, not %u", conf->producers);
  if (cap < 2 || cap > 65536 || (cap & (cap - 1)) != 0)
    return conf_fail(err, errlen, "span exporter: queue capacity must be a power of two in 2..65536, not %u",
                     cap);
  uint32_t batch = conf->batch_size ? conf->batch_size : 256;
  if (batch > 65536)
    return conf_fail(err, errlen, "span exporter: batch size must be 1..65536, not %u", batch);

  px_span_exporter_t *e = aligned_or_die(64, sizeof(*e));
  memset(e, 0, sizeof(*e));
  e->url = url;
  e->batch = batch;
  e->interval_ms = conf->flush_interval_ms ? conf->flush_interval_ms : 1000;
  e->timeout_ms = conf->timeout_ms ? conf->timeout_ms : 5000;
  e->fd = -1;
  atomic_init(&e->kicked, 0);
  atomic_init(&e->stopping, 0);
  atomic_init(&e->stop_deadline_ns, 0);
  atomic_init(&e->exported, 0);
  atomic_init(&e->dropped_failed, 0);
  atomic_init(&e->batches_sent, 0);
  atomic_init(&e->batches_failed, 0);
  px_buf_init(&e->head, 256);
  px_buf_init(&e->body, 4096);
  e->nrings = conf->producers;
  e->rings = aligned_or_die(64, (size_t)e->nrings * sizeof(span_ring_t));
  for (unsigned i = 0; i < e->nrings; i++) {
    span_ring_t *r = &e->rings[i];
    memset(r, 0, sizeof(*r));
    r->slots = px_calloc(cap, sizeof(px_span_t));
    r->mask = cap - 1;
    r->half = cap / 2;
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    atomic_init(&r->head, 0);
  }

  e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (e->efd < 0) {
    rc = -errno;
    conf_fail(err, errlen, "span exporter: eventfd: %s", strerror(-rc));
    exporter_free(e);
    return rc;
  }
  /* Every signal blocked in the thread, so that they go to the threads that wait for them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  rc = pthread_create(&e->thread, NULL, exporter_main, e);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    conf_fail(err, errlen, "span exporter: thread: %s", strerror(rc));
    close(e->efd);
    exporter_free(e);
    return -rc;
  }
  pthread_setname_np(e->thread, "px-spans");
  *out = e;
  return 0;
}

void px_span_exporter_stop(px_span_exporter_t *e, px_span_stats_t *final) {
  if (final) memset(final, 0, sizeof(*final));
  if (e == NULL) return;
  atomic_store_explicit(&e->stop_deadline_ns, px_now_ns() + (uint64_t)e->timeout_ms * 1000000,
                        memory_order_relaxed);
  atomic_store_explicit(&e->stopping, 1, memory_order_release);
  uint64_t one = 1;
  ssize_t r = write(e->efd, &one, sizeof(one));
  (void)r;
  pthread_join(e->thread, NULL);
  if (final) px_span_exporter_stats(e, final);
  close(e->efd);
  exporter_free(e);
}
