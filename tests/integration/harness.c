#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "core.h"

/* ---- processes ------------------------------------------------------------------ */

const char *th_bin(const char *name) {
  if (strcmp(name, "outrigger") == 0) return PX_BIN_DIR "/proxy/outrigger";
  if (strcmp(name, "shortener") == 0) return PX_BIN_DIR "/shortener/shortener";
  static __thread char path[1024];
  snprintf(path, sizeof(path), "%s/%s", PX_BIN_DIR, name);
  return path;
}

/* Ports are drawn at random below the kernel's ephemeral range (net.ipv4.ip_local_port_range,
 * 32768 and up on Linux by default): a port the kernel handed out by itself (bind to :0)
 * could be taken, before the test's process binds it, by any outgoing connection of a
 * test running beside it (health-check probes, pools, clients), which made a test fail
 * now and then with "address already in use". */
int th_free_port(void) {
  static __thread unsigned seed;
  /* The ports handed out lately: a port is free until the process under test binds it,
   * so two picks in a row (a listener and its admin address) must not be the same one. */
  static __thread int recent[64];
  static __thread unsigned nrecent;
  if (seed == 0) seed = (unsigned)getpid() ^ (unsigned)th_now_ms() ^ (unsigned)(uintptr_t)&seed;
  for (int tries = 0; tries < 200; tries++) {
    int port = 20000 + (int)(rand_r(&seed) % 12000), seen = 0;
    for (unsigned i = 0; i < 64 && i < nrecent; i++) seen |= recent[i] == port;
    if (seen) continue;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    if (ok) {
      recent[nrecent++ % 64] = port;
      return port;
    }
  }
  return -1;
}

char *th_tmpdir(void) {
  char tmpl[] = "/tmp/pxtest.XXXXXX";
  if (mkdtemp(tmpl) == NULL) return NULL;
  return px_strdup(tmpl);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return type == FTW_DP ? rmdir(path) : unlink(path);
}

void th_tmpdir_remove(char *dir) {
  if (dir == NULL) return;
  /* Depth first, not following links: what a test made goes, nothing it points at. */
  nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
  free(dir);
}

pid_t th_spawn(const char *const argv[], const char *log_path) {
  int logfd = -1;
  if (log_path) {
    logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    /* Whatever ends the test process (a failed assertion, a crash, Criterion's
     * timeout), the kernel then kills what it started: nothing outlives a test. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    if (logfd >= 0) {
      dup2(logfd, STDOUT_FILENO);
      dup2(logfd, STDERR_FILENO);
    }
    /* The test runner may block or ignore signals; the child starts clean. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  if (logfd >= 0) close(logfd);
  return pid;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int64_t th_now_ms(void) { return (int64_t)px_now_ms(); }

static int try_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int th_wait_port_pid(pid_t pid, int port, int timeout_ms) {
  int64_t deadline = th_now_ms() + timeout_ms;
  for (;;) {
    int fd = try_connect(port);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    if (pid > 0) {
      /* WNOWAIT leaves the child waitable, so th_stop still gets its status. */
      siginfo_t info = {0};
      if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == pid) return -1;
    }
    if (th_now_ms() >= deadline) return -1;
    sleep_ms(10);
  }
}

int th_wait_port(int port, int timeout_ms) { return th_wait_port_pid(0, port, timeout_ms); }

static int decode_status(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : -1; }

int th_wait_exit(pid_t pid, int timeout_ms) {
  int64_t deadline = th_now_ms() + timeout_ms;
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return decode_status(st);
    if (r < 0) return -1;
    if (th_now_ms() >= deadline) return -2;
    sleep_ms(5);
  }
}

int th_stop(pid_t pid, int timeout_ms) {
  if (pid <= 0) return -1;
  if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
    int st;
    return waitpid(pid, &st, 0) == pid ? decode_status(st) : -1;
  }
  int r = th_wait_exit(pid, timeout_ms);
  if (r != -2) return r;
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  return -1;
}

char *th_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  px_buf_t b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) px_buf_append(&b, tmp, n);
  fclose(f);
  px_buf_append(&b, "", 1);
  if (len) *len = b.len - 1;
  return b.data;
}

/* ---- sockets -------------------------------------------------------------------- */

int th_connect(int port) {
  int fd = try_connect(port);
  if (fd < 0) return -1;
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

int th_send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Bytes read past the end of a response, per connection. A connection is known by
 * its fd and both ports, so a reused fd number does not inherit stale bytes. */
typedef struct {
  int fd;
  int lport, rport;
  px_buf_t buf;
} pending_t;

static pending_t pendings[64];
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;

static void conn_ports(int fd, int *lport, int *rport) {
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  *lport = getsockname(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
  len = sizeof(a);
  *rport = getpeername(fd, (struct sockaddr *)&a, &len) == 0 ? ntohs(a.sin_port) : -1;
}

/* Moves the saved bytes of fd's connection into out. */
static void pending_take(int fd, px_buf_t *out) {
  int lp, rp;
  conn_ports(fd, &lp, &rp);
  pthread_mutex_lock(&pending_lock);
  for (size_t i = 0; i < PX_ARRAY_SIZE(pendings); i++) {
    pending_t *p = &pendings[i];
    if (p->buf.len == 0 || p->fd != fd) continue;
    if (p->lport == lp && p->rport == rp) px_buf_append(out, p->buf.data, p->buf.len);
    p->buf.len = 0;
  }
  pthread_mutex_unlock(&pending_lock);
}

static void pending_put(int fd, const char *p, size_t n) {
  if (n == 0) return;
  int lp, rp;
  conn_ports(fd, &lp, &rp);
  pthread_mutex_lock(&pending_lock);
  for (size_t i = 0; i < PX_ARRAY_SIZE(pendings); i++) {
    pending_t *e = &pendings[i];
    if (e->buf.len != 0) continue;
    e->fd = fd;
    e->lport = lp;
    e->rport = rp;
    px_buf_append(&e->buf, p, n);
    break;
  }
  pthread_mutex_unlock(&pending_lock);
}

void th_close(int fd) {
  px_buf_t drop = {0};
  pending_take(fd, &drop);
  px_buf_free(&drop);
  close(fd);
}

/* ---- reading responses ---------------------------------------------------------- */

typedef struct {
  px_buf_t body;
  int complete;
} rctx_t;

static int on_body(llhttp_t *p, const char *at, size_t n) {
  px_buf_append(&((rctx_t *)p->data)->body, at, n);
  return 0;
}

static int on_complete(llhttp_t *p) {
  ((rctx_t *)p->data)->complete = 1;
  return HPE_PAUSED;
}

/* 1xx, 204 and 304 answers have no body whatever their Content-Length says (RFC 9112
 * §6.3); llhttp would wait for one. */
static int on_headers_complete(llhttp_t *p) {
  int s = p->status_code;
  return (s >= 100 && s < 200) || s == 204 || s == 304 ? 1 : 0;
}

/* Where the head ends in b (after the empty line), or 0 when not yet there. */
static size_t head_end(const char *b, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (b[i] != '\n') continue;
    if (b[i + 1] == '\n') return i + 2;
    if (i + 2 < n && b[i + 1] == '\r' && b[i + 2] == '\n') return i + 3;
  }
  return 0;
}

/* Waits for readability up to the deadline; then recv. >0 bytes, 0 EOF, -1 error/timeout. */
static ssize_t recv_until(int fd, char *p, size_t n, int64_t deadline) {
  for (;;) {
    int64_t left = deadline - th_now_ms();
    if (left <= 0) return -1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, (int)left);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    ssize_t got = recv(fd, p, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == ECONNRESET)) return 0;
    return got;
  }
}

int th_read_response(int fd, th_resp_t *out, int timeout_ms) {
  memset(out, 0, sizeof(*out));
  int64_t deadline = th_now_ms() + timeout_ms;
  px_buf_t in = {0};
  pending_take(fd, &in);
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_headers_complete = on_headers_complete;
  st.on_body = on_body;
  st.on_message_complete = on_complete;

  for (;;) { /* one iteration per response; 1xx are skipped */
    llhttp_t parser;
    rctx_t ctx = {{0}, 0};
    llhttp_init(&parser, HTTP_RESPONSE, &st);
    parser.data = &ctx;
    size_t fed = 0;
    int eof = 0;
    for (;;) {
      if (fed < in.len) {
        llhttp_errno_t e = llhttp_execute(&parser, in.data + fed, in.len - fed);
        if (e == HPE_PAUSED) {
          fed = (size_t)(llhttp_get_error_pos(&parser) - in.data);
          break;
        }
        if (e != HPE_OK) goto fail_ctx;
        fed = in.len;
      }
      if (eof) {
        if (llhttp_finish(&parser) == HPE_OK && ctx.complete) break;
        if (ctx.complete) break;
        goto fail_ctx;
      }
      char *dst = px_buf_reserve(&in, 16384);
      ssize_t got = recv_until(fd, dst, 16384, deadline);
      if (got < 0) goto fail_ctx;
      if (got == 0)
        eof = 1;
      else
        in.len += (size_t)got;
    }
    int status = parser.status_code;
    size_t hl = head_end(in.data, fed);
    if (status >= 100 && status < 200 && status != 101) {
      px_buf_free(&ctx.body);
      memmove(in.data, in.data + fed, in.len - fed);
      in.len -= fed;
      continue;
    }
    out->status = status;
    /* head, NUL, then a second copy whose lines th_header cuts into values */
    out->head = px_malloc(2 * hl + 2);
    memcpy(out->head, in.data, hl);
    out->head[hl] = '\0';
    memcpy(out->head + hl + 1, in.data, hl);
    out->head[2 * hl + 1] = '\0';
    out->head_len = hl;
    px_buf_append(&ctx.body, "", 1);
    out->body = ctx.body.data;
    out->body_len = ctx.body.len - 1;
    out->closed = eof || !llhttp_should_keep_alive(&parser);
    if (!eof) pending_put(fd, in.data + fed, in.len - fed);
    px_buf_free(&in);
    /* cut the second copy: every line end becomes NUL */
    for (char *p = out->head + hl + 1; *p; p++)
      if (*p == '\r' || *p == '\n') *p = '\0';
    return 0;
  fail_ctx:
    px_buf_free(&ctx.body);
    px_buf_free(&in);
    return -1;
  }
}

int th_wait_closed(int fd, int timeout_ms) {
  px_buf_t in = {0};
  pending_take(fd, &in);
  size_t had = in.len;
  px_buf_free(&in);
  if (had) return 0;
  char tmp[512];
  ssize_t got = recv_until(fd, tmp, sizeof(tmp), th_now_ms() + timeout_ms);
  if (got == 0) return 1;
  if (got > 0) {
    pending_put(fd, tmp, (size_t)got);
    return 0;
  }
  return -1;
}

const char *th_header(const th_resp_t *r, const char *name) {
  if (r->head == NULL) return NULL;
  size_t nl = strlen(name);
  const char *p = r->head + r->head_len + 1, *end = p + r->head_len;
  p += strlen(p) + 1; /* skip the status line */
  while (p < end) {
    size_t ll = strlen(p);
    if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
      char *v = (char *)p + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      char *e = v + strlen(v);
      while (e > v && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
      return v;
    }
    p += ll + 1;
  }
  return NULL;
}

void th_resp_free(th_resp_t *r) {
  free(r->head);
  free(r->body);
  memset(r, 0, sizeof(*r));
}

int th_request(int port, const char *raw, size_t len, th_resp_t *out, int timeout_ms) {
  memset(out, 0, sizeof(*out));
  int fd = th_connect(port);
  if (fd < 0) return -1;
  int rc = th_send_all(fd, raw, len);
  /* Even when the send failed (the server may answer early and reset), an answer
   * may be waiting. */
  rc = th_read_response(fd, out, timeout_ms) == 0 ? 0 : -1;
  th_close(fd);
  return rc;
}

int th_http(int port, const char *method, const char *path, const char *headers, const char *body,
            th_resp_t *out) {
  px_buf_t b = {0};
  px_buf_printf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", method, path);
  if (headers) px_buf_append_cstr(&b, headers);
  if (body) px_buf_printf(&b, "Content-Length: %zu\r\n", strlen(body));
  px_buf_append_cstr(&b, "Connection: close\r\n\r\n");
  if (body) px_buf_append_cstr(&b, body);
  int rc = th_request(port, b.data, b.len, out, 10000);
  px_buf_free(&b);
  return rc;
}

int th_remap_ports(const char *src, const char *dst, const int *from, const int *to, size_t n) {
  char *text = th_read_file(src, NULL);
  if (!text) return -1;
  FILE *f = fopen(dst, "w");
  if (!f) {
    free(text);
    return -1;
  }
  for (const char *p = text; *p;) {
    int port, k = -1;
    if (strncmp(p, "127.0.0.1:", 10) == 0 && sscanf(p + 10, "%d", &port) == 1)
      for (size_t i = 0; i < n && k < 0; i++)
        if (from[i] == port) k = (int)i;
    if (k >= 0) {
      fprintf(f, "127.0.0.1:%d", to[k]);
      p += 10;
      while (*p >= '0' && *p <= '9') p++;
    } else {
      fputc(*p++, f);
    }
  }
  fclose(f);
  free(text);
  return 0;
}

const int th_demo_ports[TH_DEMO_NPORTS] = {8080,  8001,  8002,  8003,  9001, 9002, 9003,
                                           15000, 15001, 15002, 15003, 9411, 2479};

void th_demo_set_port(int *ports, int demo_port, int port) {
  for (size_t i = 0; i < TH_DEMO_NPORTS; i++)
    if (th_demo_ports[i] == demo_port) ports[i] = port;
}

int th_wait_metric(int admin_port, const char *series, long want, int timeout_ms) {
  char pat[256];
  snprintf(pat, sizeof(pat), "\n%s %ld\n", series, want);
  for (int64_t t0 = th_now_ms(); th_now_ms() - t0 < timeout_ms; usleep(20000)) {
    th_resp_t r;
    if (th_http(admin_port, "GET", "/metrics", NULL, NULL, &r) != 0) continue;
    int found = r.body && strstr(r.body, pat) != NULL;
    th_resp_free(&r);
    if (found) return 0;
  }
  return -1;
}

int th_demo_port(const int *ports, int demo_port) {
  for (size_t i = 0; i < TH_DEMO_NPORTS; i++)
    if (th_demo_ports[i] == demo_port) return ports[i];
  return -1;
}

int th_listen(int port, int backlog, int *bound) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, backlog) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    close(fd);
    return -1;
  }
  *bound = ntohs(a.sin_port);
  return fd;
}
