/* Integration test harness: start the real binaries, talk raw HTTP/1.1 to them over
 * loopback, stop them. Blocking sockets and plain processes keep tests readable. */
#ifndef TH_HARNESS_H
#define TH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Absolute path of a built binary ("outrigger", "shortener"); other names resolve
 * under the build directory. */
const char *th_bin(const char *name);
/* A TCP port that was free on 127.0.0.1 a moment ago (bind to :0, read, close). */
int th_free_port(void);
/* A fresh directory under /tmp; th_tmpdir_remove deletes it and frees the string. */
char *th_tmpdir(void);
/* Deletes dir and everything in it, then frees the string; NULL is a no-op. */
void th_tmpdir_remove(char *dir);
/* Starts argv[0] with argv; stdout and stderr go to log_path (appended) or are
 * inherited when NULL. Returns the pid or -1. */
pid_t th_spawn(const char *const argv[], const char *log_path);
/* Waits until 127.0.0.1:port accepts connections: 0, or -1 after timeout_ms. */
int th_wait_port(int port, int timeout_ms);
/* Like th_wait_port, but gives up at once (-1) if process pid has exited. */
int th_wait_port_pid(pid_t pid, int port, int timeout_ms);
/* SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit status, or -1 when
 * it had to be killed or died by a signal. */
int th_stop(pid_t pid, int timeout_ms);
/* Waits up to timeout_ms for pid to exit by itself; exit status, or -1 on signal,
 * or -2 when still running (then it is left running). */
int th_wait_exit(pid_t pid, int timeout_ms);

/* Blocking connect to 127.0.0.1:port with 5 s send/receive timeouts; fd or -1. */
/* Monotonic milliseconds, for bounding waits and timing what a test asserts on. */
int64_t th_now_ms(void);
int th_connect(int port);
/* A listening socket on 127.0.0.1:`port` (0: any free one), for the fake servers; the
 * port it got in *bound. The descriptor, or -1. */
int th_listen(int port, int backlog, int *bound);
int th_send_all(int fd, const void *p, size_t n);
/* Closes fd and forgets bytes buffered for it by th_read_response. */
void th_close(int fd);

typedef struct {
  int status;
  char *head; /* raw head, status line to the empty line, NUL-terminated */
  size_t head_len;
  char *body; /* decoded body (chunked framing removed), NUL-terminated */
  size_t body_len;
  int closed; /* the connection ends after this response (Connection: close,
                 HTTP/1.0 without keep-alive, body delimited by close, or EOF seen) */
} th_resp_t;

/* Reads exactly one response from fd (Content-Length, chunked or until close);
 * bytes after it are kept for the next call on the same connection. Interim 1xx
 * responses are skipped. Returns 0, or -1 on timeout, error or EOF before a
 * complete response. */
int th_read_response(int fd, th_resp_t *out, int timeout_ms);
/* 1 when the peer closed (EOF or reset) within timeout_ms with no further bytes,
 * 0 when bytes arrived instead, -1 on timeout. */
int th_wait_closed(int fd, int timeout_ms);
/* Connects, sends len raw bytes, reads one response, closes. 0 or -1. */
int th_request(int port, const char *raw, size_t len, th_resp_t *out, int timeout_ms);
/* Value of a response header (case-insensitive name, first occurrence), valid until
 * th_resp_free; NULL when absent. */
const char *th_header(const th_resp_t *r, const char *name);
void th_resp_free(th_resp_t *r);
/* "METHOD PATH HTTP/1.1", Host: 127.0.0.1, `headers` (CRLF-terminated lines or NULL),
 * Content-Length when body is not NULL, Connection: close; 10 s timeout. 0 or -1. */
int th_http(int port, const char *method, const char *path, const char *headers, const char *body,
            th_resp_t *out);

/* Whole file as a NUL-terminated string (NULL when unreadable); caller frees. */
char *th_read_file(const char *path, size_t *len);
/* Copies the text file `src` to `dst` with every "127.0.0.1:P" whose P is from[i]
 * rewritten to "127.0.0.1:to[i]" (the demo configurations on free ports); 0 or -1. */
int th_remap_ports(const char *src, const char *dst, const int *from, const int *to, size_t n);
/* The demo topology's fixed ports (config/demo/), in the order a test remaps them. */
#define TH_DEMO_NPORTS 13 /* the demo's listeners, apps, admin ports, span sink and etcd */
extern const int th_demo_ports[TH_DEMO_NPORTS];
/* Makes `port` stand for `demo_port` in `ports` (a server the test started on a port
 * of its own choosing: the demo's etcd). */
void th_demo_set_port(int *ports, int demo_port, int port);
/* Waits until GET /metrics on admin_port has the sample `series` (name and labels, as
 * they are written) with the value `want`: 0, or -1 after timeout_ms. */
int th_wait_metric(int admin_port, const char *series, long want, int timeout_ms);
/* The port that stands for `demo_port` in `ports` (parallel to th_demo_ports), or -1. */
int th_demo_port(const int *ports, int demo_port);

#endif
