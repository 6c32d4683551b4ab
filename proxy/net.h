/* Addresses and listening sockets. */
#ifndef PX_NET_H
#define PX_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Listen backlog of the data listeners: as deep as the kernel allows (it caps the value at
 * net.core.somaxconn, 4096 by default), so that a burst of connects (clients reconnecting
 * after a restart) waits in the queue instead of being dropped and retried a second later. */
#define PX_LISTEN_BACKLOG 65535

/* Parses "HOST:PORT" (IPv4 dotted, "localhost", or "[v6]:PORT") without DNS.
 * Returns 0 or a negative libuv error. */
int px_addr_parse(const char *text, struct sockaddr_storage *out);
/* An http:// URL taken apart: "http://HOST[:PORT][PATH]" (the Zipkin collector's, an etcd
 * member's). */
typedef struct {
  char host[256];      /* an IPv4 address, an IPv6 one without its brackets, or a name */
  char port[6];        /* decimal 1..65535; "" when the URL gives none */
  char authority[272]; /* host (bracketed if IPv6) and ":port" as the URL has them: a Host header */
  char path[1024];     /* from the first '/' or '?' after the authority on; "" when none */
} px_http_url_t;

/* Parses an http:// URL (https is refused until TLS lands; user information and a
 * fragment too; the path's bytes must be printable ASCII). 0, or PX_ECONFIG with the
 * reason in why (whylen bytes; may be NULL). Callers add their own rules (a default
 * port, the paths they take, whether names are resolved). */
int px_http_url_parse(const char *url, px_http_url_t *out, char *why, size_t whylen);

/* Writes "HOST:PORT" into out (at least 64 bytes). */
void px_addr_format(const struct sockaddr *sa, char *out, size_t n);
/* Creates a non-blocking listening TCP socket bound to `sa`, with SO_REUSEADDR, and
 * SO_REUSEPORT when `reuseport` is set (so each worker can own one and the kernel
 * spreads connections). Returns the fd or a negative libuv error. */
int px_listen_fd(const struct sockaddr *sa, int reuseport, int backlog);
/* Whether two parsed addresses are the same socket address (family, address, port). */
int px_addr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* Raises the soft limit on open files towards the hard one (at most 1M): a proxied
 * request holds two descriptors, and a shell's usual 1024 would cap a sidecar at
 * about 500 connections. Returns the soft limit now in force, 0 when unknown. */
uint64_t px_raise_nofile(void);

#endif
