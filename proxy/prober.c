#include "prober.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health.h"
#include "log.h"

enum { PHASE_CONNECTING, PHASE_READING };
#define PX_PROBER_MAX_FDS 1024 /* probes polled at once; more wait for the next turn */
#define PX_PROBER_TICK_MS 100  /* the longest the thread sleeps without looking */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t thread;
static int running, stopping;
static px_snapshot_t *current; /* under mu */

/* The probe of endpoint `e` ended: `status` (0 when there was no answer). */
static void finish(const px_cluster_t *c, const px_endpoint_t *ep, int status) {
  px_endpoint_state_t *e = ep->st;
  if (e->probe_fd >= 0) close(e->probe_fd);
  e->probe_fd = -1;
  e->probe_next_ms = px_now_ms() + c->conf->health.interval_ms;
  e->probe_last_status = status > 0 ? status : -1;
  px_health_transition_t tr;
  px_health_report(&e->health, px_health_probe_ok(status), &tr);
  if (tr.changed) {
    if (tr.to == PX_HEALTH_UNHEALTHY)
      px_warn("health check of %s in cluster %s: unhealthy after %d failed probes (last: %s)", ep->name,
              c->conf->name, tr.probes, status > 0 ? "a non-2xx answer" : "no answer");
    else
      px_info("health check of %s in cluster %s: healthy again after %d passing probes", ep->name,
              c->conf->name, tr.probes);
  }
}

static void start(const px_cluster_t *c, const px_endpoint_t *ep, uint64_t now) {
  px_endpoint_state_t *e = ep->st;
  const struct sockaddr *sa = (const struct sockaddr *)&ep->conf->sa;
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  e->probe_got = 0;
  e->probe_phase = PHASE_CONNECTING;
  e->probe_deadline_ms = now + c->conf->health.timeout_ms;
  e->probe_fd = fd;
  if (fd < 0) {
    finish(c, ep, 0);
    return;
  }
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) finish(c, ep, 0);
}

/* The socket is ready: the connection is up (send the request) or the answer comes. */
static void step(const px_cluster_t *c, const px_endpoint_t *ep, short revents) {
  px_endpoint_state_t *e = ep->st;
  if (e->probe_phase == PHASE_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    if ((revents & (POLLERR | POLLHUP)) || getsockopt(e->probe_fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0 ||
        err) {
      finish(c, ep, 0);
      return;
    }
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: outrigger-health-check\r\n"
                     "Connection: close\r\n\r\n",
                     c->conf->health.path, ep->name);
    if (n <= 0 || (size_t)n >= sizeof(req) || send(e->probe_fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
      finish(c, ep, 0); /* a request this small goes into an empty socket buffer whole */
      return;
    }
    e->probe_phase = PHASE_READING;
    return;
  }
  ssize_t r = recv(e->probe_fd, e->probe_buf + e->probe_got, sizeof(e->probe_buf) - 1 - e->probe_got, 0);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (r > 0) e->probe_got += (size_t)r;
  e->probe_buf[e->probe_got] = 0;
  /* The status line's first 12 bytes say it all: "HTTP/1.x NNN". */
  if (e->probe_got >= 12 || r <= 0) {
    int status = 0;
    if (e->probe_got >= 12 && memcmp(e->probe_buf, "HTTP/1.", 7) == 0 && e->probe_buf[8] == ' ' &&
        e->probe_buf[9] >= '1' && e->probe_buf[9] <= '5')
      status = (e->probe_buf[9] - '0') * 100 + (e->probe_buf[10] - '0') * 10 + (e->probe_buf[11] - '0');
    finish(c, ep, status);
  }
}

/* Closes the probes under way of snapshot `s` (a reload replaced it: they start again). */
static void drop_all(px_snapshot_t *s) {
  for (size_t i = 0; i < s->cfg->nclusters; i++)
    for (size_t k = 0; k < s->clusters[i].neps; k++) {
      px_endpoint_state_t *e = s->clusters[i].eps[k].st;
      if (e->probe_fd >= 0) close(e->probe_fd);
      e->probe_fd = -1;
    }
}

static void *prober_main(void *arg) {
  (void)arg;
  px_snapshot_t *mine = NULL;
  static struct pollfd pfd[PX_PROBER_MAX_FDS];
  static const px_endpoint_t *who[PX_PROBER_MAX_FDS];
  static const px_cluster_t *whose[PX_PROBER_MAX_FDS];
  for (;;) {
    pthread_mutex_lock(&mu);
    int stop = stopping;
    if (!stop && current != mine) {
      if (mine) {
        drop_all(mine);
        px_snapshot_unref(mine);
      }
      mine = current;
      px_snapshot_ref(mine);
    }
    pthread_mutex_unlock(&mu);
    if (stop) break;
    uint64_t now = px_now_ms(), wake = now + PX_PROBER_TICK_MS;
    int n = 0;
    for (size_t i = 0; i < mine->cfg->nclusters; i++) {
      const px_cluster_t *c = &mine->clusters[i];
      if (!c->conf->has_health_check) continue;
      for (size_t k = 0; k < c->neps; k++) {
        const px_endpoint_t *ep = &c->eps[k];
        px_endpoint_state_t *e = ep->st;
        if (e->probe_fd < 0 && now >= e->probe_next_ms && n < PX_PROBER_MAX_FDS) start(c, ep, now);
        if (e->probe_fd >= 0 && now >= e->probe_deadline_ms) finish(c, ep, 0); /* timed out */
        if (e->probe_fd >= 0 && n < PX_PROBER_MAX_FDS) {
          pfd[n] = (struct pollfd){e->probe_fd, e->probe_phase == PHASE_CONNECTING ? POLLOUT : POLLIN, 0};
          who[n] = ep;
          whose[n] = c;
          n++;
          if (e->probe_deadline_ms < wake) wake = e->probe_deadline_ms;
        } else if (e->probe_fd < 0 && e->probe_next_ms < wake) {
          wake = e->probe_next_ms;
        }
      }
    }
    int ms = wake > now ? (int)(wake - now) : 0;
    if (poll(pfd, (nfds_t)n, ms) > 0)
      for (int i = 0; i < n; i++)
        if (pfd[i].revents && who[i]->st->probe_fd == pfd[i].fd) step(whose[i], who[i], pfd[i].revents);
  }
  if (mine) {
    drop_all(mine);
    px_snapshot_unref(mine);
  }
  return NULL;
}

void px_prober_start(px_snapshot_t *s) {
  pthread_mutex_lock(&mu);
  px_snapshot_ref(s);
  current = s;
  stopping = 0;
  running = pthread_create(&thread, NULL, prober_main, NULL) == 0;
  if (!running) px_warn("health checks: cannot start the prober thread");
  pthread_mutex_unlock(&mu);
}

void px_prober_set(px_snapshot_t *s) {
  pthread_mutex_lock(&mu);
  px_snapshot_ref(s);
  px_snapshot_t *old = current;
  current = s;
  pthread_mutex_unlock(&mu);
  if (old) px_snapshot_unref(old);
}

void px_prober_stop(void) {
  pthread_mutex_lock(&mu);
  stopping = 1;
  int was = running;
  running = 0;
  pthread_mutex_unlock(&mu);
  if (was) pthread_join(thread, NULL);
  pthread_mutex_lock(&mu);
  px_snapshot_t *old = current;
  current = NULL;
  pthread_mutex_unlock(&mu);
  if (old) px_snapshot_unref(old);
}
