#include "fake_collector.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define FC_MAX_BATCHES 4096

struct fc_s {
  int lfd, port;
  pthread_t thread;
  pthread_mutex_t mu;
  volatile int mode, stopping;
  int posts;
  px_json_t *batches[FC_MAX_BATCHES];
  int nbatches;
  const px_json_t **spans;
  int nspans, capspans;
};

typedef struct {
  fc_t *fc;
  int fd;
  char *body;
  size_t blen, bcap;
  int done;
} fc_conn_t;

static int on_body(llhttp_t *p, const char *at, size_t n) {
  fc_conn_t *c = p->data;
  if (c->blen + n + 1 > c->bcap) {
    c->bcap = (c->blen + n + 1) * 2;
    c->body = realloc(c->body, c->bcap);
  }
  memcpy(c->body + c->blen, at, n);
  c->blen += n;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  fc_conn_t *c = p->data;
  c->done = 1;
  return HPE_PAUSED;
}

static void keep(fc_t *fc, const char *body, size_t n) {
  char err[128];
  px_json_t *j = px_json_parse(body, n, err, sizeof(err));
  pthread_mutex_lock(&fc->mu);
  fc->posts++;
  if (j && px_json_type(j) == PX_JSON_ARRAY && fc->nbatches < FC_MAX_BATCHES) {
    fc->batches[fc->nbatches++] = j;
    for (size_t i = 0; i < px_json_count(j); i++) {
      if (fc->nspans == fc->capspans) {
        fc->capspans = fc->capspans ? fc->capspans * 2 : 64;
        fc->spans = realloc(fc->spans, (size_t)fc->capspans * sizeof(*fc->spans));
      }
      fc->spans[fc->nspans++] = px_json_at(j, i);
    }
  } else {
    if (!j) fprintf(stderr, "fake collector: a batch that is not JSON (%s): %.*s\n", err, (int)n, body);
    px_json_free(j);
  }
  pthread_mutex_unlock(&fc->mu);
}

static void *conn_main(void *arg) {
  fc_conn_t *c = arg;
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_body = on_body;
  s.on_message_complete = on_message_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_REQUEST, &s);
  p.data = c;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    size_t off = 0;
    while (off < (size_t)n) {
      llhttp_errno_t e = llhttp_execute(&p, buf + off, (size_t)n - off);
      size_t used = e == HPE_OK ? (size_t)n - off : (size_t)(llhttp_get_error_pos(&p) - (buf + off));
      off += used;
      if (e == HPE_PAUSED) {
        llhttp_resume(&p);
      } else if (e != HPE_OK) {
        goto out;
      }
      if (c->done) {
        c->done = 0;
        int mode = c->fc->mode;
        if (mode == FC_HANG) {
          while (!c->fc->stopping && c->fc->mode == FC_HANG) usleep(10000);
          goto out;
        }
        const char *ans = mode == FC_OK
                              ? "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
                              : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail";
        if (mode == FC_OK) keep(c->fc, c->body ? c->body : "", c->blen);
        c->blen = 0;
        if (send(c->fd, ans, strlen(ans), MSG_NOSIGNAL) < 0) goto out;
      }
    }
  }
out:
  close(c->fd);
  free(c->body);
  free(c);
  return NULL;
}

static void *accept_main(void *arg) {
  fc_t *fc = arg;
  for (;;) {
    int fd = accept(fc->lfd, NULL, NULL);
    if (fd < 0) {
      if (fc->stopping) return NULL;
      continue;
    }
    fc_conn_t *c = calloc(1, sizeof(*c));
    c->fc = fc;
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

fc_t *fc_start(fc_mode_t mode) { return fc_start_at(mode, 0); }

fc_t *fc_start_at(fc_mode_t mode, int port) {
  fc_t *fc = calloc(1, sizeof(*fc));
  fc->mode = (int)mode;
  pthread_mutex_init(&fc->mu, NULL);
  fc->lfd = th_listen(port, 64, &fc->port);
  if (fc->lfd < 0) {
    free(fc);
    return NULL;
  }
  pthread_create(&fc->thread, NULL, accept_main, fc);
  return fc;
}

int fc_port(const fc_t *c) { return c->port; }
void fc_set_mode(fc_t *c, fc_mode_t mode) { c->mode = (int)mode; }

int fc_posts(fc_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->posts;
  pthread_mutex_unlock(&c->mu);
  return n;
}

int fc_nspans(fc_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nspans;
  pthread_mutex_unlock(&c->mu);
  return n;
}

int fc_wait_spans(fc_t *c, int n, int timeout_ms) {
  for (int waited = 0;; waited += 10) {
    int k = fc_nspans(c);
    if (k >= n || waited >= timeout_ms) return k;
    usleep(10000);
  }
}

const px_json_t *fc_span(fc_t *c, int i) {
  pthread_mutex_lock(&c->mu);
  const px_json_t *s = i >= 0 && i < c->nspans ? c->spans[i] : NULL;
  pthread_mutex_unlock(&c->mu);
  return s;
}

const char *fc_field(fc_t *c, int i, const char *name) {
  const px_json_t *v = fc_span(c, i) ? px_json_get(fc_span(c, i), name) : NULL;
  return v ? px_json_str(v, NULL) : NULL;
}

const char *fc_tag(fc_t *c, int i, const char *tag) {
  const px_json_t *tags = fc_span(c, i) ? px_json_get(fc_span(c, i), "tags") : NULL;
  const px_json_t *v = tags ? px_json_get(tags, tag) : NULL;
  return v ? px_json_str(v, NULL) : NULL;
}

void fc_stop(fc_t *c) {
  c->stopping = 1;
  shutdown(c->lfd, SHUT_RDWR);
  close(c->lfd);
  pthread_join(c->thread, NULL);
  for (int i = 0; i < c->nbatches; i++) px_json_free(c->batches[i]);
  free(c->spans);
  free(c); /* connection threads end with the test process */
}
