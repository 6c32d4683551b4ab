/* A strict reading of HTTP/1.1 messages (RFC 9112, RFC 9110), written apart from the
 * sidecar's codec and from llhttp: the oracle the differential fuzzer judges the real
 * binary by. It reads a whole buffer, not a stream: given every byte seen so far on a
 * connection, it says whether they begin with a complete valid message, could still
 * become one, or cannot.
 *
 * "Invalid" here means what a recipient must refuse (or what the sidecar's contract,
 * SPEC §4, refuses). What an implementation may refuse or accept is "valid", so that a
 * stricter sidecar is never called wrong by it; a sidecar that forwards what this
 * calls invalid is. */
#ifndef REF_HTTP1_H
#define REF_HTTP1_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  REF_INVALID = -1,  /* the bytes cannot be the start of any valid message */
  REF_NEED_MORE = 0, /* a proper prefix of some valid message */
  REF_COMPLETE = 1,  /* one complete valid message starts the buffer */
} ref_result_t;

typedef enum {
  REF_BODY_NONE,    /* no body */
  REF_BODY_LENGTH,  /* Content-Length */
  REF_BODY_CHUNKED, /* Transfer-Encoding ending in chunked */
  REF_BODY_CLOSE,   /* responses only: until the connection closes */
} ref_framing_t;

/* A field line; both point into the parsed buffer. The value has its leading and
 * trailing whitespace (OWS) removed. */
typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} ref_field_t;

#define REF_MAX_FIELDS 512

typedef struct {
  /* requests */
  const char *method;
  size_t method_len;
  const char *target;
  size_t target_len;
  /* responses */
  int status;
  /* both */
  int major, minor; /* HTTP-version digits */
  ref_field_t fields[REF_MAX_FIELDS];
  size_t nfields;
  ref_field_t trailers[REF_MAX_FIELDS]; /* chunked bodies' trailer section */
  size_t ntrailers;
  ref_framing_t framing;
  uint64_t content_length; /* REF_BODY_LENGTH */
  unsigned char *body;     /* the decoded body (malloc'd), NULL when empty */
  size_t body_len;
  size_t skipped;  /* requests: empty lines (CRLF) before the request line */
  size_t head_len; /* start line, field lines and the empty line, after `skipped` */
  size_t wire_len; /* every byte of the message, `skipped` included */
  int keep_alive;  /* RFC 9112 §9.3: the connection may carry another message after this one */
  /* REF_INVALID: why (a static string) and the offset where it was seen. */
  const char *error;
  size_t error_off;
} ref_msg_t;

/* Parses the request that starts buf[0, len). On REF_COMPLETE, *m describes it and
 * m->wire_len says where the next one starts; free it with ref_msg_free. On the other
 * results nothing needs freeing (m->error is set for REF_INVALID). */
ref_result_t ref_parse_request(const char *buf, size_t len, ref_msg_t *m);

/* Parses the response that starts buf[0, len), answering a request whose method is
 * `req_method` (NUL-terminated, or NULL for none; "HEAD" means no body whatever the head
 * says, a 2xx to "CONNECT" is a tunnel, without a body). `eof`: the
 * peer closed the connection right after buf, which completes a close-delimited body
 * (without it such a body is REF_NEED_MORE). Interim (1xx) responses are returned as
 * messages of their own, with no body. */
ref_result_t ref_parse_response(const char *buf, size_t len, const char *req_method, int eof, ref_msg_t *m);

void ref_msg_free(ref_msg_t *m);

/* The first field named `name` (ASCII case-insensitive), or NULL. */
const ref_field_t *ref_field(const ref_msg_t *m, const char *name);
/* How many field lines are named `name`. */
size_t ref_field_count(const ref_msg_t *m, const char *name);
/* 1 when `token` (case-insensitive) is an element of the comma-separated lists of the
 * fields named `field` (as in Connection: keep-alive, Upgrade). */
int ref_has_token(const ref_msg_t *m, const char *field, const char *token);

#endif
