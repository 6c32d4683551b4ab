#include "fake_upstream.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

struct fu_s {
  fu_opts_t o;
  int lfd, port;
  pthread_t thread;
  int requests, connections, complete;
  char *heads[FU_MAX_HEADS];
  int health; /* FU_HEALTH's status for /healthz */
  volatile int stopping;
};

typedef struct {
  fu_t *u;
  int fd;
  char head[65536];
  size_t head_len;
  int head_done, msg_done, is_head;
  int answered; /* requests answered on this connection */
  int seq;      /* the request's number over every connection */
  uint64_t body_len, body_sum;
} fu_conn_t;

/* Test processes abort on a failed assertion without freeing what they hold, so
 * leak checking is off for them; the binaries under test keep theirs. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

uint64_t fu_fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

static int on_headers_complete(llhttp_t *p) {
  fu_conn_t *c = p->data;
  c->head_done = 1;
  c->is_head = p->method == HTTP_HEAD;
  c->seq = __atomic_fetch_add(&c->u->requests, 1, __ATOMIC_SEQ_CST);
  return 0;
}
static int on_body(llhttp_t *p, const char *at, size_t n) {
  fu_conn_t *c = p->data;
  c->body_len += n;
  c->body_sum = fu_fnv1a(c->body_sum, at, n);
  return 0;
}
static int on_message_complete(llhttp_t *p) {
  fu_conn_t *c = p->data;
  c->msg_done = 1;
  __atomic_add_fetch(&c->u->complete, 1, __ATOMIC_SEQ_CST);
  return HPE_PAUSED;
}

static void send_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    b += w;
    n -= (size_t)w;
  }
}

static void answer(fu_conn_t *c) {
  fu_t *u = c->u;
  char hdr[512];
  if (u->o.mode == FU_SHORT) {
    char part[100];
    memset(part, 's', sizeof(part));
    if (u->o.chunked) {
      static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n";
      send_all(c->fd, head, sizeof(head) - 1);
    } else {
      static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
      send_all(c->fd, head, sizeof(head) - 1);
    }
    send_all(c->fd, part, sizeof(part));
    return;
  }
  if (u->o.mode == FU_SLOW) usleep((useconds_t)u->o.delay_ms * 1000);
  if (u->o.mode == FU_BIG) {
    char buf[16384];
    if (u->o.chunked) {
      static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
      send_all(c->fd, head, sizeof(head) - 1);
    } else {
      int n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", u->o.big_len);
      send_all(c->fd, hdr, (size_t)n);
    }
    for (size_t off = 0; off < u->o.big_len;) {
      size_t k = u->o.big_len - off < sizeof(buf) ? u->o.big_len - off : sizeof(buf);
      for (size_t i = 0; i < k; i++) buf[i] = (char)fu_pattern(off + i);
      if (u->o.chunked) {
        int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", k);
        send_all(c->fd, hdr, (size_t)n);
      }
      send_all(c->fd, buf, k);
      if (u->o.chunked) send_all(c->fd, "\r\n", 2);
      off += k;
    }
    if (u->o.chunked) send_all(c->fd, "0\r\n\r\n", 5);
    return;
  }
  int n = snprintf(hdr, sizeof(hdr),
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                   "x-body-len: %llu\r\nx-body-sum: %016llx\r\nConnection: keep-alive\r\n"
                   "Keep-Alive: timeout=5\r\nX-End-To-End: passes\r\n"
                   "x-outrigger-attempts: 7\r\nX-Outrigger-Upstream: inner\r\n\r\n",
                   c->head_len, (unsigned long long)c->body_len, (unsigned long long)c->body_sum);
  char lie[4096];
  if (c->is_head && u->o.mode == FU_HEAD_BODY && (size_t)n + c->head_len <= sizeof(lie)) {
    memcpy(lie, hdr, (size_t)n);
    memcpy(lie + n, c->head, c->head_len);
    send_all(c->fd, lie, (size_t)n + c->head_len);
    return;
  }
  send_all(c->fd, hdr, (size_t)n);
  /* An answer to HEAD has the Content-Length of the GET answer and no body. */
  if (!c->is_head) send_all(c->fd, c->head, c->head_len);
}

static void *conn_main(void *arg) {
  fu_conn_t *c = arg;
  fu_t *u = c->u;
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_headers_complete = on_headers_complete;
  st.on_body = on_body;
  st.on_message_complete = on_message_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &st);
  p.data = c;
  char buf[65536], hdr413[160];
  size_t have = 0;
  for (;;) {
    c->head_len = 0;
    c->head_done = c->msg_done = 0;
    c->body_len = 0;
    c->body_sum = FU_FNV_INIT;
    while (!c->msg_done) {
      if (have == 0) {
        ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
        if (r <= 0) goto done;
        have = (size_t)r;
      }
      size_t before_head = c->head_done;
      llhttp_errno_t e = llhttp_execute(&p, buf, have);
      size_t used = e == HPE_OK ? have : (size_t)(llhttp_get_error_pos(&p) - buf);
      if (e != HPE_OK && e != HPE_PAUSED) goto done;
      if (!before_head) { /* keep the head bytes (approximately: the whole first read) */
        size_t k = used < sizeof(c->head) - c->head_len ? used : sizeof(c->head) - c->head_len;
        memcpy(c->head + c->head_len, buf, k);
        c->head_len += k;
        char *end = memmem(c->head, c->head_len, "\r\n\r\n", 4);
        if (end) c->head_len = (size_t)(end - c->head) + 4;
      }
      memmove(buf, buf + used, have - used);
      have -= used;
      if (c->head_done && u->o.mode == FU_EARLY_413) {
        size_t n = u->o.big_len ? u->o.big_len : 9;
        int k =
            snprintf(hdr413, sizeof(hdr413),
                     "HTTP/1.1 413 Content Too Large\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", n);
        send_all(c->fd, hdr413, (size_t)k);
        if (u->o.big_len == 0) {
          send_all(c->fd, "too large", 9);
        } else {
          char *body = malloc(n);
          memset(body, 'x', n);
          send_all(c->fd, body, n);
          free(body);
        }
        shutdown(c->fd, SHUT_WR);
        if (u->o.delay_ms > 0) { /* reads nothing more for a while: the sender backs up */
          usleep((useconds_t)u->o.delay_ms * 1000);
          goto done;
        }
        struct timeval tv = {2, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        while (recv(c->fd, buf, sizeof(buf), 0) > 0) {
        }
        goto done;
      }
      if (c->head_done && u->o.mode == FU_RESET) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        goto done;
      }
    }
    llhttp_resume(&p);
    if (c->seq < FU_MAX_HEADS) {
      char *h = malloc(c->head_len + 1);
      memcpy(h, c->head, c->head_len);
      h[c->head_len] = 0;
      __atomic_store_n(&u->heads[c->seq], h, __ATOMIC_SEQ_CST);
    }
    if (u->o.mode == FU_HEALTH) {
      if (strncmp(c->head, "GET /healthz ", 13) == 0) {
        char h[128];
        int hs = __atomic_load_n(&u->health, __ATOMIC_SEQ_CST);
        int n = snprintf(h, sizeof(h), "HTTP/1.1 %d Health\r\nContent-Length: 0\r\n\r\n", hs ? hs : 200);
        send_all(c->fd, h, (size_t)n);
      } else {
        send_all(c->fd, u->o.raw, strlen(u->o.raw));
      }
      continue;
    }
    if (u->o.mode == FU_SCRIPT) {
      const char *e = u->o.script[c->seq < u->o.nscript ? c->seq : u->o.nscript - 1];
      if (strcmp(e, "RESET") == 0) {
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        goto done;
      }
      if (strcmp(e, "STALL") == 0) {
        while (!u->stopping && recv(c->fd, buf, sizeof(buf), 0) > 0) {
        }
        goto done;
      }
      send_all(c->fd, e + (e[0] == '!'), strlen(e + (e[0] == '!')));
      if (e[0] == '!') goto done;
      continue;
    }
    if (u->o.mode == FU_STALL) {
      while (!u->stopping && recv(c->fd, buf, sizeof(buf), 0) > 0) {
      }
      goto done;
    }
    if (u->o.mode == FU_DROP_SECOND && c->answered == 1) goto done;
    if (u->o.mode == FU_TE_GZIP) {
      static const char te[] =
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
      send_all(c->fd, te, sizeof(te) - 1);
      continue;
    }
    if (u->o.mode == FU_RAW) {
      send_all(c->fd, u->o.raw, strlen(u->o.raw));
      if (u->o.close_after) goto done;
      continue;
    }
    if (u->o.mode == FU_GARBAGE) {
      static const char junk[] = "SSH-2.0-nope\r\n\x01\x02\x03 not http\r\n\r\n";
      send_all(c->fd, junk, sizeof(junk) - 1);
      goto done;
    }
    answer(c);
    c->answered++;
    if (u->o.mode == FU_ONE_SHOT || u->o.mode == FU_SHORT) goto done;
  }
done:
  close(c->fd);
  free(c);
  return NULL;
}

static void *accept_main(void *arg) {
  fu_t *u = arg;
  for (;;) {
    int fd = accept(u->lfd, NULL, NULL);
    if (fd < 0) {
      if (u->stopping) return NULL;
      continue;
    }
    __atomic_add_fetch(&u->connections, 1, __ATOMIC_SEQ_CST);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* Head and body go out in separate sends; like real servers, do not let Nagle
     * hold the second one back for the peer's delayed ACK (40 ms a request). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fu_conn_t *c = calloc(1, sizeof(*c));
    c->u = u;
    c->fd = fd;
    pthread_t t;
    if (pthread_create(&t, NULL, conn_main, c) != 0) {
      close(fd);
      free(c);
      continue;
    }
    pthread_detach(t);
  }
}

fu_t *fu_start(const fu_opts_t *opts) {
  fu_t *u = calloc(1, sizeof(*u));
  u->o = *opts;
  u->lfd = th_listen(0, 128, &u->port);
  if (u->lfd < 0) {
    free(u);
    return NULL;
  }
  pthread_create(&u->thread, NULL, accept_main, u);
  return u;
}

int fu_port(const fu_t *u) { return u->port; }
int fu_requests(const fu_t *u) { return __atomic_load_n(&u->requests, __ATOMIC_SEQ_CST); }
int fu_connections(const fu_t *u) { return __atomic_load_n(&u->connections, __ATOMIC_SEQ_CST); }
int fu_complete_requests(const fu_t *u) { return __atomic_load_n(&u->complete, __ATOMIC_SEQ_CST); }
void fu_set_health(fu_t *u, int status) { __atomic_store_n(&u->health, status, __ATOMIC_SEQ_CST); }
const char *fu_head(const fu_t *u, int i) {
  return i >= 0 && i < FU_MAX_HEADS ? __atomic_load_n(&u->heads[i], __ATOMIC_SEQ_CST) : NULL;
}

void fu_stop(fu_t *u) {
  u->stopping = 1;
  shutdown(u->lfd, SHUT_RDWR);
  close(u->lfd);
  pthread_join(u->thread, NULL);
  free(u); /* connection threads end with the test process */
}
