#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "core.h"

/* A larger pipe than the default 64 KiB takes a socket's worth of bytes in one call.
 * Unprivileged processes may ask for up to 1 MiB; past the user's pipe-pages budget
 * the kernel refuses, and the default size is used. */
#define PIPE_SIZE (256 * 1024)
/* Bytes moved in one wake-up before the loop's other connections get their turn. */
#define BURST (1024 * 1024)

static void on_ready(px_transport_t *t, int status, int events);

/* Empty pipes kept for the next splice on this thread: a pipe costs four system calls
 * to make and size, and one to close. */
#define POOL 4
static __thread int pool[POOL][2];
static __thread int npool;

static int pipe_get(int p[2]) {
  if (npool > 0) {
    npool--;
    p[0] = pool[npool][0];
    p[1] = pool[npool][1];
    return 0;
  }
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) return uv_translate_sys_error(errno);
  (void)fcntl(p[1], F_SETPIPE_SZ, PIPE_SIZE);
  return 0;
}

static void pipe_put(int p[2], int empty) {
  if (empty && npool < POOL) {
    pool[npool][0] = p[0];
    pool[npool][1] = p[1];
    npool++;
  } else {
    close(p[0]);
    close(p[1]);
  }
  p[0] = p[1] = -1;
}

/* Waits for the source to have bytes (`readable`) or the destination to take them. */
static int wait_for(px_splice_t *s, int readable) {
  int r = px_tp_raw_poll(s->from, readable ? UV_READABLE : 0, on_ready, s);
  if (r >= 0) r = px_tp_raw_poll(s->to, readable ? 0 : UV_WRITABLE, on_ready, s);
  return r < 0 ? r : 0;
}

static void release(px_splice_t *s) {
  s->active = 0;
  (void)px_tp_raw_poll(s->from, 0, on_ready, NULL);
  (void)px_tp_raw_poll(s->to, 0, on_ready, NULL);
  pipe_put(s->pipe, s->in_pipe == 0);
}

static void finish(px_splice_t *s, int status, int at_source) {
  release(s);
  s->cb(s, status, at_source);
}

static void run(px_splice_t *s) {
  size_t moved = 0;
  for (;;) {
    int progress = 0;
    if (s->left > 0) {
      ssize_t n = splice(s->from_fd, NULL, s->pipe[1], NULL, (size_t)PX_MIN(s->left, (uint64_t)PIPE_SIZE),
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        s->in_pipe += (size_t)n;
        s->left -= (uint64_t)n;
        s->taken += (uint64_t)n;
        progress = 1;
      } else if (n == 0) {
        finish(s, UV_EOF, 1);
        return;
      } else if (errno != EAGAIN && errno != EINTR) {
        /* EAGAIN: the source has nothing now, or the pipe is full (of small pieces) */
        finish(s, uv_translate_sys_error(errno), 1);
        return;
      }
    }
    if (s->in_pipe > 0) {
      ssize_t n = splice(s->pipe[0], NULL, s->to_fd, NULL, s->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        s->in_pipe -= (size_t)n;
        moved += (size_t)n;
        progress = 1;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        finish(s, uv_translate_sys_error(errno), 0);
        return;
      }
    }
    if (s->left == 0 && s->in_pipe == 0) {
      finish(s, 0, 0);
      return;
    }
    if (!progress || moved >= BURST) {
      /* Level-triggered: a side still ready wakes the splice again next turn. Bytes in
       * the pipe wait for the destination; an empty pipe for the source. */
      int r = wait_for(s, s->in_pipe == 0);
      if (r < 0) finish(s, r, 0);
      return;
    }
  }
}

static void on_ready(px_transport_t *t, int status, int events) {
  px_splice_t *s = px_tp_raw_data(t);
  (void)events;
  if (s == NULL || !s->active) return;
  if (status < 0) {
    finish(s, status, t == s->from);
    return;
  }
  run(s);
}

int px_splice_start(px_splice_t *s, px_transport_t *from, px_transport_t *to, uint64_t n, px_splice_cb cb,
                    void *data) {
  int r = px_tp_raw_poll(to, 0, on_ready, s);
  if (r < 0) return r;
  s->to_fd = r;
  r = px_tp_raw_poll(from, UV_READABLE, on_ready, s);
  if (r < 0) return r;
  s->from_fd = r;
  r = pipe_get(s->pipe);
  if (r < 0) {
    (void)px_tp_raw_poll(from, 0, on_ready, NULL);
    return r;
  }
  s->from = from;
  s->to = to;
  s->in_pipe = 0;
  s->left = n;
  s->taken = 0;
  s->cb = cb;
  s->data = data;
  s->active = 1;
  return 0;
}

void px_splice_stop(px_splice_t *s) {
  if (s->active) release(s);
}
