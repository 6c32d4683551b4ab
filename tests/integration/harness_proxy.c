/* Starting a real outrigger for a test, and what the proxy tests share: see
 * harness_proxy.h. */
#include "harness_proxy.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Picks ports and a directory; the caller then writes the configuration with
 * tp_launch, using p->admin and p->port. */
void tp_prepare(tp_t *p) {
  memset(p, 0, sizeof(*p));
  p->port = th_free_port();
  p->admin = th_free_port();
  p->dir = th_tmpdir();
  p->workers = 2;
  snprintf(p->cfg, sizeof(p->cfg), "%s/outrigger.yaml", p->dir);
  snprintf(p->log, sizeof(p->log), "%s/outrigger.log", p->dir);
}

__attribute__((format(printf, 2, 0))) static void tp_write(tp_t *p, const char *fmt, va_list ap) {
  FILE *f = fopen(p->cfg, "w");
  cr_assert(f);
  vfprintf(f, fmt, ap);
  fclose(f);
}

__attribute__((format(printf, 2, 3))) void tp_launch(tp_t *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tp_write(p, fmt, ap);
  va_end(ap);
  char workers[16];
  snprintf(workers, sizeof(workers), "%d", p->workers);
  const char *argv[] = {th_bin("outrigger"), "-c", p->cfg, "--workers", workers, NULL};
  p->pid = th_spawn(argv, p->log);
  cr_assert(p->pid > 0);
  if (th_wait_port_pid(p->pid, p->port, 5000) != 0) {
    char *log = th_read_file(p->log, NULL);
    cr_assert_fail("outrigger did not start:\n%s", log ? log : "(no log)");
  }
  cr_assert_eq(th_wait_port(p->admin, 5000), 0);
}

/* Rewrites the configuration in place (for reload tests). */
__attribute__((format(printf, 2, 3))) void tp_rewrite(tp_t *p, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  tp_write(p, fmt, ap);
  va_end(ap);
}

/* Stops outrigger; on an unclean exit its log (sanitizer reports included) is
 * printed so the failure explains itself. */
int tp_stop(tp_t *p) {
  int rc = th_stop(p->pid, 10000);
  if (rc != 0) {
    char *log = th_read_file(p->log, NULL);
    fprintf(stderr, "outrigger exited with %d; its log:\n%s\n", rc, log ? log : "(none)");
    free(log);
  }
  th_tmpdir_remove(p->dir);
  p->dir = NULL;
  return rc;
}

/* One listener with one route to one cluster. */
void tp_start_simple(tp_t *p, const char *listener_extra, const char *route_extra, const char *endpoints,
                     const char *cluster_extra) {
  tp_prepare(p);
  tp_launch(p,
            "workers: 2\nadmin: { address: 127.0.0.1:%d }\nlog: { level: warn }\n"
            "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n%s"
            "    routes:\n      - { name: r, match: { prefix: / }, cluster: c%s }\n"
            "clusters:\n  - { name: c, endpoints: [%s]%s }\n",
            p->admin, p->port, listener_extra ? listener_extra : "", route_extra ? route_extra : "",
            endpoints, cluster_extra ? cluster_extra : "");
}

char *tp_ep(const fu_t *u) {
  static char buf[4][64];
  static int i;
  i = (i + 1) % 4;
  snprintf(buf[i], sizeof(buf[i]), "127.0.0.1:%d", fu_port(u));
  return buf[i];
}

int tp_raw(tp_t *p, const char *req, th_resp_t *r) { return th_request(p->port, req, strlen(req), r, 5000); }

/* Reads one answer's head, byte by byte up to its blank line, into buf (NUL
 * terminated): for HEAD answers, which a generic reader would expect a body for. */
void tp_read_head_only(int fd, char *buf, size_t cap) {
  size_t got = 0;
  while (got < cap - 1) {
    ssize_t n = recv(fd, buf + got, 1, 0);
    cr_assert_gt(n, 0);
    got++;
    if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0) break;
  }
  buf[got] = '\0';
}

void tp_assert_problem(th_resp_t *r, int status, const char *kind) {
  cr_assert_eq(r->status, status, "status %d, want %d (%s)", r->status, status, r->head);
  cr_assert_str_eq(th_header(r, "content-type"), "application/problem+json");
  cr_assert_str_eq(th_header(r, "x-outrigger-error"), kind);
  char want[32];
  snprintf(want, sizeof(want), "\"status\":%d", status);
  cr_assert(strstr(r->body, want), "%s", r->body);
  cr_assert(strstr(r->body, "\"title\":") && strstr(r->body, "\"detail\":") && strstr(r->body, "\"type\":"));
}

long tp_metric(tp_t *p, const char *series) {
  th_resp_t r;
  cr_assert_eq(th_http(p->admin, "GET", "/metrics", NULL, NULL, &r), 0);
  const char *m = r.body;
  while ((m = strstr(m, series)) != NULL && m != r.body && m[-1] != '\n') m++; /* not in a HELP line */
  long v = m ? atol(m + strlen(series)) : -1;
  th_resp_free(&r);
  return v;
}

const char *tp_req_header(const char *h, const char *name, char *buf, size_t cap) {
  char pat[64];
  snprintf(pat, sizeof(pat), "\r\n%s: ", name);
  const char *v = h ? strcasestr(h, pat) : NULL;
  if (!v) return NULL;
  v += strlen(pat);
  size_t n = strcspn(v, "\r");
  if (n >= cap) n = cap - 1;
  memcpy(buf, v, n);
  buf[n] = 0;
  return buf;
}
