/* HTTP/1.1 message bodies as they arrive: sized by Content-Length, chunked, or ended
 * by the connection's close (RFC 9112 §6, §7.1). A pure incremental reader: bytes go
 * in as they were read, runs of body data come out as spans of those same bytes (no
 * copy), and it stops exactly where the body ends, so the next message on the
 * connection starts there.
 *
 * llhttp parses heads only; bodies are read here because llhttp 8.1 lets through
 * chunk framing RFC 9112 forbids (an extension with no name or no value, a bare LF
 * ending the trailer section, obs-folded trailer lines), and a proxy that reads a
 * body's end where a strict server does not forwards a smuggled request. This reader
 * refuses everything outside the grammar:
 *
 *   chunk      = 1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] ) CRLF
 *                chunk-data CRLF
 *   last-chunk = 1*"0" [ the same extensions ] CRLF, trailer field lines, CRLF
 *
 * Trailer fields are checked (token name, a colon, field-value bytes, CRLF, no folding)
 * and dropped: the sidecar re-frames bodies and does not forward trailers. */
#ifndef PX_BODY_H
#define PX_BODY_H

#include <stdint.h>

#include "core.h"
#include "http1.h"

/* A chunk line (size and extensions) longer than this is refused. */
#define PX_BODY_CHUNK_LINE_MAX 4096
/* A trailer section longer than this is refused. */
#define PX_BODY_TRAILERS_MAX (16 * 1024)

typedef struct {
  uint8_t mode;  /* px_body_mode_t */
  uint8_t state; /* chunked: where in the framing */
  uint8_t done;  /* the body has ended */
  uint32_t line; /* bytes of the current chunk line, or of the trailer section */
  uint64_t left; /* bytes of the body (sized) or of the current chunk still due */
  const char *err;
} px_body_reader_t;

typedef enum {
  PX_BR_ERROR = -1, /* malformed framing: r->err says why */
  PX_BR_MORE = 0,   /* every byte was taken; the body goes on */
  PX_BR_DATA = 1,   /* *data is the next run of body bytes */
  PX_BR_END = 2,    /* the body ended; *p is just past it */
} px_br_result_t;

/* Starts reading a body framed as `mode`: PX_BODY_NONE (ends at once), PX_BODY_LENGTH
 * with `length` bytes, PX_BODY_CHUNKED, or PX_BODY_CLOSE (ends at px_body_eof). */
static inline void px_body_reader_init(px_body_reader_t *r, px_body_mode_t mode, uint64_t length) {
  r->mode = (uint8_t)mode;
  r->state = 0; /* the first byte of a chunk size */
  r->line = 0;
  r->left = mode == PX_BODY_LENGTH ? length : 0;
  r->err = NULL;
  r->done = mode == PX_BODY_NONE || (mode == PX_BODY_LENGTH && length == 0);
}

/* Reads from *p up to end, advancing *p past what it consumed. Call it until it
 * returns something other than PX_BR_DATA. An error is final. */
px_br_result_t px_body_read(px_body_reader_t *r, const char **p, const char *end, px_str_t *data);

/* The peer closed the connection: PX_BR_END when that ends the body (close-delimited,
 * or already complete), else PX_BR_ERROR (the body was cut short). */
px_br_result_t px_body_eof(px_body_reader_t *r);

#endif
