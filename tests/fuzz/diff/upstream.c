/* The differential fuzzer's upstream (diff.h): one thread polling a loopback listener
 * and its connections. Every byte the sidecar sends is read by the strict oracle
 * (ref_http1.h): a complete valid request is recorded and answered from the case's
 * script; anything that is not a valid request is a violation, recorded with its bytes,
 * and the connection is closed. */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "diff.h"
#include "ref_http1.h"

#define MAX_CONNS 64

typedef struct {
  int fd, id;
  px_buf_t in;
} uconn_t;

struct df_upstream_s {
  int lfd, port;
  pthread_t thread;
  pthread_mutex_t mu;
  volatile int stopping;
  df_case_t script; /* the current case's script (no client bytes) */
  int next_answer;
  df_upreq_t *reqs;
  int nreqs, capreqs;
  const char *violation;
  px_buf_t violation_detail;
  long long last_activity;
  long long idle_poll_since; /* the start of the last poll that found nothing pending */
  int conn_ids;
  uconn_t conns[MAX_CONNS];
  int nconns;
  ref_msg_t msg;
};

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}

static void conn_close(df_upstream_t *u, int i, int reset) {
  if (reset) {
    struct linger lg = {1, 0};
    setsockopt(u->conns[i].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  close(u->conns[i].fd);
  px_buf_free(&u->conns[i].in);
  u->conns[i] = u->conns[--u->nconns];
}

/* Reads what conns[i] holds: answers each complete request, flags anything invalid.
 * Returns 0 when the connection was closed. */
static int conn_process(df_upstream_t *u, int i) {
  uconn_t *c = &u->conns[i];
  for (;;) {
    ref_result_t r = ref_parse_request(c->in.data ? c->in.data : "", c->in.len, &u->msg);
    if (r == REF_NEED_MORE) return 1;
    pthread_mutex_lock(&u->mu);
    if (r == REF_INVALID) {
      if (!u->violation) {
        u->violation = u->msg.error;
        px_buf_printf(&u->violation_detail, "upstream connection %d, at byte %zu of: \"", c->id,
                      u->msg.error_off);
        df_escape(&u->violation_detail, c->in.data, c->in.len > 4096 ? 4096 : c->in.len);
        px_buf_append_cstr(&u->violation_detail, "\"");
      }
      pthread_mutex_unlock(&u->mu);
      conn_close(u, i, 0);
      return 0;
    }
    if (u->nreqs == u->capreqs) {
      u->capreqs = u->capreqs ? u->capreqs * 2 : 8;
      u->reqs = px_realloc(u->reqs, (size_t)u->capreqs * sizeof(*u->reqs));
    }
    df_upreq_t *q = &u->reqs[u->nreqs++];
    q->conn = c->id;
    q->raw_len = u->msg.wire_len;
    q->raw = px_malloc(q->raw_len + 1);
    memcpy(q->raw, c->in.data, q->raw_len);
    q->answer = u->next_answer++;
    df_answer_t a = *df_case_answer(&u->script, q->answer);
    pthread_mutex_unlock(&u->mu);

    px_buf_t out = {0};
    df_expect_t ex;
    df_answer_bytes(&a, u->msg.method, u->msg.method_len, &out, &ex);
    ref_msg_free(&u->msg);
    if (out.len) send_all(c->fd, out.data, out.len);
    px_buf_free(&out);
    size_t used = q->raw_len;
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    if (ex.upstream_closes) {
      df_expect_free(&ex);
      conn_close(u, i, a.kind == UB_RESET && (a.seed & 1));
      return 0;
    }
    df_expect_free(&ex);
  }
}

static void *up_main(void *arg) {
  df_upstream_t *u = arg;
  struct pollfd pfd[MAX_CONNS + 1];
  while (!u->stopping) {
    pfd[0] = (struct pollfd){.fd = u->lfd, .events = POLLIN};
    for (int i = 0; i < u->nconns; i++) pfd[i + 1] = (struct pollfd){.fd = u->conns[i].fd, .events = POLLIN};
    long long started = mono_ms();
    int n = poll(pfd, (nfds_t)u->nconns + 1, 5);
    if (n == 0) {
      pthread_mutex_lock(&u->mu);
      u->idle_poll_since = started;
      pthread_mutex_unlock(&u->mu);
    }
    if (n <= 0) continue;
    int nconns = u->nconns;
    for (int i = nconns - 1; i >= 0; i--) { /* from the end: closing moves the last one into i */
      if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      uconn_t *c = &u->conns[i];
      char *dst = px_buf_reserve(&c->in, 65536);
      ssize_t got = recv(c->fd, dst, 65536, 0);
      u->last_activity = mono_ms();
      if (got <= 0) {
        conn_close(u, i, 0);
        continue;
      }
      c->in.len += (size_t)got;
      conn_process(u, i);
    }
    if ((pfd[0].revents & POLLIN) && u->nconns < MAX_CONNS) {
      int fd = accept(u->lfd, NULL, NULL);
      if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        u->conns[u->nconns++] = (uconn_t){.fd = fd, .id = ++u->conn_ids};
        u->last_activity = mono_ms();
      }
    }
  }
  while (u->nconns) conn_close(u, 0, 0);
  return NULL;
}

df_upstream_t *df_upstream_start(void) {
  df_upstream_t *u = px_calloc(1, sizeof(*u));
  u->lfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(u->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (bind(u->lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(u->lfd, 128) != 0 ||
      getsockname(u->lfd, (struct sockaddr *)&a, &len) != 0) {
    close(u->lfd);
    free(u);
    return NULL;
  }
  u->port = ntohs(a.sin_port);
  pthread_mutex_init(&u->mu, NULL);
  pthread_create(&u->thread, NULL, up_main, u);
  return u;
}

int df_upstream_port(const df_upstream_t *u) { return u->port; }

void df_upstream_begin(df_upstream_t *u, const df_case_t *c) {
  pthread_mutex_lock(&u->mu);
  for (int i = 0; i < u->nreqs; i++) free(u->reqs[i].raw);
  u->nreqs = 0;
  u->next_answer = 0;
  u->violation = NULL;
  u->violation_detail.len = 0;
  u->script = *c;
  u->script.client = NULL;
  pthread_mutex_unlock(&u->mu);
}

void df_upstream_settle(df_upstream_t *u, int quiet_ms, int max_ms) {
  long long start = mono_ms();
  while (mono_ms() - start < max_ms) {
    pthread_mutex_lock(&u->mu);
    /* Quiet since the call, and a poll begun since then found nothing: bytes the
     * sidecar sent before the call are read, however late the thread ran. */
    long long last = u->last_activity > start ? u->last_activity : start;
    int quiet = mono_ms() - last >= quiet_ms && u->idle_poll_since >= last;
    pthread_mutex_unlock(&u->mu);
    if (quiet) return;
    usleep(1000);
  }
}

df_upreq_t *df_upstream_requests(df_upstream_t *u, int *n) {
  pthread_mutex_lock(&u->mu);
  df_upreq_t *copy = px_malloc(((size_t)u->nreqs + 1) * sizeof(*copy));
  if (u->nreqs) memcpy(copy, u->reqs, (size_t)u->nreqs * sizeof(*copy));
  *n = u->nreqs;
  pthread_mutex_unlock(&u->mu);
  return copy;
}

const char *df_upstream_violation(df_upstream_t *u, px_buf_t *detail) {
  pthread_mutex_lock(&u->mu);
  const char *v = u->violation;
  if (v) px_buf_append(detail, u->violation_detail.data, u->violation_detail.len);
  pthread_mutex_unlock(&u->mu);
  return v;
}

void df_upstream_stop(df_upstream_t *u) {
  u->stopping = 1;
  pthread_join(u->thread, NULL);
  close(u->lfd);
  df_upstream_begin(u, &(df_case_t){0});
  free(u->reqs);
  px_buf_free(&u->violation_detail);
  pthread_mutex_destroy(&u->mu);
  free(u);
}
