/* A small buffered HTTP/1.1 server for the admin API and the shortener: a whole
 * request (bounded by limits) is read, handed to a synchronous handler, and the
 * handler's response is written. It runs on the proxy's client connection
 * (downstream.h): the same head checks, deadlines, back-pressure, pipelining (answered
 * in order) and lingering close; only the buffering is its own. */
#ifndef PX_HTTPSERVER_H
#define PX_HTTPSERVER_H

#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "buf.h"
#include "core.h"
#include "transport.h"

typedef struct {
  px_str_t name, value;
} px_header_t;

typedef struct {
  int method;           /* llhttp_method_t */
  px_str_t method_name; /* "GET" */
  px_str_t target;      /* as sent: "/api/links?x=1" */
  px_str_t path;        /* target up to '?' */
  px_str_t query;       /* after '?', empty when none */
  px_header_t *headers;
  size_t nheaders;
  px_str_t body;
  int http_major, http_minor;
  const struct sockaddr *peer;
} px_hreq_t;

/* Case-insensitive header lookup; NULL when absent. */
const px_str_t *px_hreq_header(const px_hreq_t *req, const char *name);

typedef struct {
  int status;       /* default 200 */
  px_buf_t headers; /* extra header lines, "Name: value\r\n" each */
  px_buf_t body;
  int close; /* set to close the connection after this response */
} px_hres_t;

/* Adds a response header. Content-Length, Date and Connection are added by the server. */
void px_hres_header(px_hres_t *res, const char *name, const char *value);
/* Sets status, content-type application/json and the body in one call. */
void px_hres_json(px_hres_t *res, int status, const char *json, size_t n);

typedef void (*px_hsrv_handler_cb)(void *data, const px_hreq_t *req, px_hres_t *res);

typedef struct {
  size_t max_header_bytes;    /* 0 = 64 KiB; more -> 431 */
  size_t max_body_bytes;      /* 0 = 1 MiB; more -> 413 */
  uint64_t header_timeout_ms; /* 0 = 10 s; slower -> 408 */
  uint64_t idle_timeout_ms;   /* 0 = 60 s */
  px_hsrv_handler_cb handler;
  void *data;
  /* Raw header lines ("Name: value\r\n" each) added to every response, the
   * server's own errors included; NULL for none. Must outlive the server. */
  const char *extra_headers;
} px_hsrv_opts_t;

typedef struct px_hsrv_s px_hsrv_t;

/* Binds and listens on `addr`; returns 0 or a negative libuv error (then no server
 * exists and nothing needs closing). */
int px_hsrv_start(uv_loop_t *loop, const struct sockaddr *addr, const px_hsrv_opts_t *opts, px_hsrv_t **out);
/* The bound port (useful after binding port 0); -1 once the listener is closed. */
int px_hsrv_port(const px_hsrv_t *srv);
/* Stops accepting; requests in progress finish, idle keep-alive connections close,
 * and later responses carry Connection: close. */
void px_hsrv_drain(px_hsrv_t *srv);
/* Connections with a request read but not yet fully answered. */
size_t px_hsrv_busy(const px_hsrv_t *srv);
/* Closes the listener and every connection; `cb` runs once all handles are closed
 * and the server is freed (always from the loop, never inside this call). */
void px_hsrv_close(px_hsrv_t *srv, void (*cb)(void *data), void *data);

#endif
