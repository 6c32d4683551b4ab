/* A fake upstream for proxy tests: a thread that accepts on a free loopback port
 * and answers every request the way `mode` says, including on purpose the ways a
 * real upstream fails (stall, reset, garbage). It reports what it saw, so tests can
 * check what the proxy forwarded. */
#ifndef FAKE_UPSTREAM_H
#define FAKE_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  FU_ECHO,      /* 200; body = the request head as received; x-body-len/x-body-sum of the body */
  FU_BIG,       /* 200 with `big_len` bytes of a fixed pattern (chunked when `chunked`) */
  FU_STALL,     /* reads the request, never answers */
  FU_RESET,     /* reads the request head, then resets the connection */
  FU_GARBAGE,   /* answers bytes that are not HTTP */
  FU_SLOW,      /* like FU_ECHO after `delay_ms` */
  FU_ONE_SHOT,  /* like FU_ECHO, then closes although it promised keep-alive */
  FU_HEAD_BODY, /* like FU_ECHO, but lies to HEAD: its answer carries the echo body too, in the same send */
  FU_SHORT,     /* promises 1000 body bytes (Content-Length, or chunked when `chunked`), sends 100, closes */
  FU_EARLY_413, /* answers 413 as soon as a head is in, without reading the body (body "too
                  large", or `big_len` bytes of 'x'), then half-closes and discards what still
                  comes (as a careful server does) */
  FU_TE_GZIP,   /* answers with Transfer-Encoding: gzip, chunked (a coding a proxy cannot pass on) */
  FU_DROP_SECOND, /* like FU_ECHO for a connection's first request; reads the second whole, then closes
                    without an answer (did the work, then died) */
  FU_RAW,         /* answers every request with the bytes `raw`, then closes when `close_after` */
  FU_SCRIPT,      /* request number i (counted over all connections, from 0) gets script[i], the
                    last entry once the script runs out: "RESET" resets the connection once the
                    request is in, "STALL" never answers, "!BYTES" sends BYTES and closes, any
                    other entry is sent as it is on a connection kept open */
  FU_HEALTH,      /* GET /healthz gets an empty answer with the status fu_set_health set (200 at
                    first); every other request gets the bytes `raw` */
} fu_mode_t;

typedef struct fu_s fu_t;

typedef struct {
  fu_mode_t mode;
  size_t big_len;
  int chunked;
  int delay_ms;
  const char *raw;           /* FU_RAW: the answer, sent as it is (NUL-terminated) */
  int close_after;           /* FU_RAW: close the connection after answering */
  const char *const *script; /* FU_SCRIPT */
  int nscript;
} fu_opts_t;

fu_t *fu_start(const fu_opts_t *opts);
int fu_port(const fu_t *u);
/* Requests whose head was fully received; connections accepted; complete bodies. */
int fu_requests(const fu_t *u);
int fu_connections(const fu_t *u);
int fu_complete_requests(const fu_t *u);
/* The head of request number i as received (the first FU_MAX_HEADS), or NULL. */
#define FU_MAX_HEADS 64
const char *fu_head(const fu_t *u, int i);
/* FU_HEALTH: the status /healthz answers from now on. */
void fu_set_health(fu_t *u, int status);
void fu_stop(fu_t *u);

/* FNV-1a 64 over bytes, the checksum both sides use. */
uint64_t fu_fnv1a(uint64_t h, const void *p, size_t n);
#define FU_FNV_INIT 0xcbf29ce484222325ull
/* The byte at offset i of the FU_BIG pattern. */
static inline unsigned char fu_pattern(size_t i) { return (unsigned char)((i * 7 + (i >> 10)) & 0xff); }

#endif
