/* span-sink: a stand-in for a Zipkin collector, for the demo (scripts/demo.sh) and for
 * looking at traces without one. It listens on a loopback address, takes Zipkin v2
 * span batches (POST /api/v2/spans, a JSON array), answers 202, and appends each span
 * to a file as one JSON object per line, so `grep TRACE_ID FILE` shows a trace.
 *
 *   span-sink --listen 127.0.0.1:9411 --out spans.jsonl
 *
 * Point `tracing.zipkin` at a real Zipkin or Jaeger (its Zipkin port, 9411) instead to
 * see traces drawn. Each sidecar keeps its connection: one thread per connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <llhttp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  char *body;
  size_t len, cap;
  int done;
  int bad; /* not a POST of spans */
} req_t;

static int on_url(llhttp_t *p, const char *at, size_t n) {
  req_t *r = p->data;
  if (n < 13 || memcmp(at, "/api/v2/spans", 13) != 0) r->bad = 1;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  req_t *r = p->data;
  if (r->len + n > r->cap) {
    r->cap = (r->len + n) * 2;
    r->body = realloc(r->body, r->cap);
    if (!r->body) abort();
  }
  memcpy(r->body + r->len, at, n);
  r->len += n;
  return 0;
}

static int on_done(llhttp_t *p) {
  req_t *r = p->data;
  if (p->method != HTTP_POST) r->bad = 1;
  r->done = 1;
  return HPE_PAUSED;
}

/* Writes each top-level object of the JSON array in `s` as a line: a scan that keeps
 * track of strings and nesting, no parse (the sidecar wrote it). */
static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;

static size_t write_spans(const char *s, size_t n) {
  size_t spans = 0, start = 0;
  pthread_mutex_lock(&out_mu);
  int depth = 0, in_str = 0, esc = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (in_str) {
      if (esc)
        esc = 0;
      else if (c == '\\')
        esc = 1;
      else if (c == '"')
        in_str = 0;
      continue;
    }
    if (c == '"') {
      in_str = 1;
    } else if (c == '{') {
      if (depth++ == 1) start = i;
    } else if (c == '}') {
      if (--depth == 1) {
        fwrite(s + start, 1, i + 1 - start, out);
        fputc('\n', out);
        spans++;
      }
    } else if (c == '[') {
      depth++;
    } else if (c == ']') {
      depth--;
    }
  }
  fflush(out);
  pthread_mutex_unlock(&out_mu);
  return spans;
}

static void *serve(void *arg) {
  int fd = (int)(intptr_t)arg;
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_url = on_url;
  st.on_body = on_body;
  st.on_message_complete = on_done;
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &st);
  req_t r = {0};
  p.data = &r;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    size_t off = 0;
    while (off < (size_t)n) {
      llhttp_errno_t e = llhttp_execute(&p, buf + off, (size_t)n - off);
      off = e == HPE_OK ? (size_t)n : (size_t)(llhttp_get_error_pos(&p) - buf);
      if (e != HPE_OK && e != HPE_PAUSED) goto out;
      if (e == HPE_PAUSED) llhttp_resume(&p);
      if (r.done) {
        const char *ans = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        if (r.bad)
          ans = "HTTP/1.1 404 Not Found\r\nContent-Length: 24\r\n\r\nPOST /api/v2/spans only\n";
        else
          write_spans(r.body ? r.body : "", r.len);
        if (send(fd, ans, strlen(ans), MSG_NOSIGNAL) < 0) goto out;
        r.len = 0;
        r.done = r.bad = 0;
      }
    }
  }
out:
  free(r.body);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  const char *listen_at = "127.0.0.1:9411", *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
      listen_at = argv[++i];
    else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
      path = argv[++i];
    else {
      fprintf(stderr, "usage: span-sink [--listen 127.0.0.1:PORT] --out FILE\n");
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "span-sink: --out FILE is required\n");
    return 2;
  }
  char host[64];
  const char *colon = strrchr(listen_at, ':');
  struct sockaddr_in a = {.sin_family = AF_INET};
  if (!colon || (size_t)(colon - listen_at) >= sizeof(host)) {
    fprintf(stderr, "span-sink: --listen wants HOST:PORT\n");
    return 2;
  }
  memcpy(host, listen_at, (size_t)(colon - listen_at));
  host[colon - listen_at] = '\0';
  a.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "span-sink: %s is not an IPv4 address\n", host);
    return 2;
  }
  out = fopen(path, "a");
  if (!out) {
    fprintf(stderr, "span-sink: %s: %s\n", path, strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 64) != 0) {
    fprintf(stderr, "span-sink: cannot listen on %s: %s\n", listen_at, strerror(errno));
    return 1;
  }
  fprintf(stderr, "span-sink: spans posted to http://%s/api/v2/spans go to %s, one per line\n", listen_at,
          path);
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) continue;
    pthread_t t;
    if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
      close(fd);
      continue;
    }
    pthread_detach(t);
  }
}
