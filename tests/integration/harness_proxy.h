/* The proxy integration tests' fixture: an outrigger started on free loopback ports
 * with a configuration the test writes, stopped by PID; plus the checks they share. */
#ifndef TH_HARNESS_PROXY_H
#define TH_HARNESS_PROXY_H

#include <stddef.h>
#include <sys/types.h>

#include "fake_upstream.h"
#include "harness.h"

typedef struct {
  pid_t pid;
  int port, admin;
  int workers; /* --workers for tp_launch: 2 unless the test sets it after tp_prepare */
  char *dir;
  char cfg[512], log[512];
} tp_t;

/* Picks ports and a directory; the caller then writes the configuration with
 * tp_launch, using p->admin and p->port. */
void tp_prepare(tp_t *p);
/* Writes the configuration (printf-style) and starts outrigger with p->workers workers
 * (the command line's, which overrides the file's `workers:`);
 * the test fails, with the log, when its ports do not open. */
__attribute__((format(printf, 2, 3))) void tp_launch(tp_t *p, const char *fmt, ...);
/* Rewrites the configuration in place (for reload tests). */
__attribute__((format(printf, 2, 3))) void tp_rewrite(tp_t *p, const char *fmt, ...);
/* Stops outrigger (its log printed on an unclean exit) and removes its directory;
 * the exit status. */
int tp_stop(tp_t *p);
/* One listener with one route to one cluster; the extras are inserted as they are. */
void tp_start_simple(tp_t *p, const char *listener_extra, const char *route_extra, const char *endpoints,
                     const char *cluster_extra);
/* "127.0.0.1:PORT" of a fake upstream (one of four rotating static buffers). */
char *tp_ep(const fu_t *u);
/* Sends raw bytes to the listener on a new connection, reads one answer (5 s). */
int tp_raw(tp_t *p, const char *req, th_resp_t *r);
/* Reads one answer's head, up to its blank line, into buf (NUL-terminated): for
 * HEAD answers, which a generic reader would expect a body for. */
void tp_read_head_only(int fd, char *buf, size_t cap);
/* The value of header `name` in the request head `h` (up to its CR) as a fake upstream
 * saw it, into buf; NULL when absent. */
const char *tp_req_header(const char *h, const char *name, char *buf, size_t cap);
/* The value of the first /metrics line starting with `series` (name, labels and the
 * space after them), -1 when there is none. */
long tp_metric(tp_t *p, const char *series);
/* A problem+json answer of the sidecar's own, with this status and x-outrigger-error. */
void tp_assert_problem(th_resp_t *r, int status, const char *kind);

#endif
