/* A request body passed from the client's socket to the upstream's without entering
 * the sidecar's memory: splice(2) into a pipe and out of it, so the kernel hands the
 * pages on instead of copying them in and out again (a 1 MiB upload spent 95% of the
 * sidecar's time in the kernel, most of it in those two copies: bench/PROFILE.md).
 *
 * Only for bytes nobody looks at: a body under Content-Length, not kept for a resend
 * and not tapped by a filter, between two transports that lend their descriptors
 * (plain TCP). The owner stops reading the source and has no write pending on the
 * destination while a splice runs; the splice watches both through px_tp_raw_poll. */
#ifndef PX_SPLICE_H
#define PX_SPLICE_H

#include <stdint.h>

#include "transport.h"

/* Bodies shorter than this are copied: a pipe and its setup cost more than they save. */
#define PX_SPLICE_MIN (64 * 1024)

typedef struct px_splice_s px_splice_t;
/* The splice ended by itself: status 0 when all n bytes reached the destination, else
 * UV_EOF or an error, at the source (`at_source`) or the destination. */
typedef void (*px_splice_cb)(px_splice_t *s, int status, int at_source);

struct px_splice_s {
  px_transport_t *from, *to;
  int from_fd, to_fd;
  int pipe[2];
  size_t in_pipe;
  uint64_t left;  /* still to take from the source */
  uint64_t taken; /* taken from the source so far (some may still be in the pipe) */
  px_splice_cb cb;
  void *data;
  int active;
};

/* Moves the next `n` bytes of `from` to `to`. Returns 0 (cb runs later, never before
 * this returns) or a negative error when the transports cannot be spliced; then
 * nothing changed and the owner copies the bytes itself. */
int px_splice_start(px_splice_t *s, px_transport_t *from, px_transport_t *to, uint64_t n, px_splice_cb cb,
                    void *data);
/* Stops a splice that has not ended (what is in the pipe is lost): cb will not run. */
void px_splice_stop(px_splice_t *s);

#endif
