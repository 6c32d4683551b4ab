/* etcd's v3 JSON gateway (SPEC §12), pure: the request bodies the registry sends to
 * /v3/lease/grant, /v3/kv/put, /v3/kv/range, /v3/kv/deleterange, /v3/lease/keepalive,
 * /v3/lease/revoke and /v3/watch, the answers parsed back, and the splitter that cuts
 * the watch stream into messages. No sockets: the I/O layer posts the bodies and feeds
 * the answers in.
 *
 * The gateway is grpc-gateway over etcd's protobuf messages, so its JSON follows the
 * proto3 mapping as etcd 3.4 configures it: bytes (keys, values) are standard base64
 * with padding; int64 fields (revisions, lease IDs, TTLs) are decimal strings ("12");
 * fields at their zero value are left out (no "value" for an empty value, no "type" for
 * a PUT event, no "TTL" in the keepalive answer for a lease that is gone). We send int64s
 * as strings too; the gateway also takes JSON numbers (checked against etcd 3.4.23).
 *
 * An error comes back as {"error": "...", "message": "...", "code": N} (a gRPC status
 * code) on a unary call, and as {"error": {"grpc_code": N, "http_code": N, "message":
 * "...", "http_status": "..."}} inside a stream (watch, keepalive); every parser here
 * recognises both and returns PX_EUPSTREAM with the code and message. */
#ifndef PX_ETCD_JSON_H
#define PX_ETCD_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "core.h"

/* Standard base64 (RFC 4648 §4, with padding), as Go's encoding/json writes []byte. */

/* Length of the encoding of n bytes. */
static inline size_t px_b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }
/* Appends the base64 of p[0..n) to out. */
void px_b64_encode(px_buf_t *out, const void *p, size_t n);
/* Appends the bytes that `s` encodes to out. PX_EPARSE (out unchanged) for anything but
 * canonical padded standard base64: a length not a multiple of 4, a byte outside the
 * alphabet, padding other than at the end, or non-zero bits after the last byte. */
int px_b64_decode(px_buf_t *out, const char *s, size_t n);

/* gRPC status codes the caller acts on. */
#define PX_ETCD_CODE_INVALID_ARGUMENT 3
#define PX_ETCD_CODE_NOT_FOUND 5     /* "requested lease not found": grant a new lease */
#define PX_ETCD_CODE_OUT_OF_RANGE 11 /* revision compacted (or in the future): list again */
#define PX_ETCD_CODE_UNAVAILABLE 14  /* "transport is closing", no leader: try another member */

/* What an error answer said. */
typedef struct {
  int code;          /* gRPC status code; 0 when the answer gave none */
  int http_code;     /* streams give one (503); 0 otherwise */
  char message[256]; /* NUL-terminated, cut to fit */
} px_etcd_error_t;

/* Request bodies. Each appends one JSON object to out; an int64 that is 0 (the proto
 * default) is left out, so revision 0 means "now" and lease 0 means "no lease". */

/* /v3/lease/grant: {"TTL":"10"}. etcd raises a TTL below its minimum (1.5 election
 * timeouts, rounded up to whole seconds: 2 s by default) and answers with the TTL it chose. */
void px_etcd_lease_grant_body(px_buf_t *out, int64_t ttl_s);
/* /v3/kv/put: {"key":B64,"value":B64,"lease":"ID"}. */
void px_etcd_put_body(px_buf_t *out, const void *key, size_t klen, const void *value, size_t vlen,
                      int64_t lease);
/* /v3/kv/range: {"key":B64,"range_end":B64,"revision":"N"}; range_end NULL: the one key. */
void px_etcd_range_body(px_buf_t *out, const void *key, size_t klen, const void *range_end, size_t relen,
                        int64_t revision);
/* /v3/kv/deleterange: {"key":B64,"range_end":B64}; range_end NULL: the one key. */
void px_etcd_deleterange_body(px_buf_t *out, const void *key, size_t klen, const void *range_end,
                              size_t relen);
/* /v3/lease/keepalive: {"ID":"N"}. */
void px_etcd_keepalive_body(px_buf_t *out, int64_t lease);
/* /v3/lease/revoke: {"ID":"N"}. */
void px_etcd_revoke_body(px_buf_t *out, int64_t lease);
/* /v3/watch: {"create_request":{"key":B64,"range_end":B64,"start_revision":"N"}};
 * start_revision 0 watches from now, else from that revision on (a range's
 * header.revision + 1 continues exactly where the range left off). */
void px_etcd_watch_create_body(px_buf_t *out, const void *key, size_t klen, const void *range_end,
                               size_t relen, int64_t start_revision);

/* Answers. Each returns 0; PX_EUPSTREAM when etcd answered an error (in *err when err is
 * not NULL); or PX_EPARSE when the text is not such an answer (not JSON, a field of the
 * wrong type, bad base64). */

/* Any answer whose only use is its header (put, deleterange, revoke, compaction):
 * header.revision into *revision (NULL: not wanted; 0 when absent). A revoke answered
 * NOT_FOUND means the lease is already gone, which is what the caller wanted. */
int px_etcd_parse_header(const char *json, size_t n, int64_t *revision, px_etcd_error_t *err);
/* /v3/lease/grant: the lease ID (PX_EPARSE when missing) and the TTL etcd granted. */
int px_etcd_parse_lease_grant(const char *json, size_t n, int64_t *id, int64_t *ttl, px_etcd_error_t *err);
/* /v3/lease/keepalive (a stream of one message here: {"result":{...}}; the bare object is
 * taken too): the TTL the lease has again. 0 means the lease is gone (expired or revoked:
 * etcd then leaves TTL out), and the caller must grant a new one and put again. */
int px_etcd_parse_keepalive(const char *json, size_t n, int64_t *ttl, px_etcd_error_t *err);

/* One key-value, decoded; the bytes belong to the answer it came in. */
typedef struct {
  px_str_t key, value; /* value empty for a DELETE event */
  int64_t create_revision, mod_revision, version, lease;
} px_etcd_kv_t;

/* /v3/kv/range. */
typedef struct {
  int64_t revision; /* header.revision: the store's revision the answer reflects */
  int64_t count;    /* keys in the range (more than nkvs when a limit cut the answer) */
  int more;         /* a limit cut the answer */
  px_etcd_kv_t *kvs;
  size_t nkvs;
  void *mem; /* owns kvs and their bytes */
} px_etcd_range_t;

/* Parses a range answer into out (release it with px_etcd_range_free, even on failure). */
int px_etcd_parse_range(const char *json, size_t n, px_etcd_range_t *out, px_etcd_error_t *err);
/* Releases what px_etcd_parse_range allocated; the kvs' bytes go with it. */
void px_etcd_range_free(px_etcd_range_t *r);

typedef enum { PX_ETCD_PUT, PX_ETCD_DELETE } px_etcd_event_type_t;

typedef struct {
  px_etcd_event_type_t type;
  px_etcd_kv_t kv; /* a DELETE carries only key and mod_revision (the deletion's) */
} px_etcd_event_t;

/* One message of the /v3/watch stream. */
typedef struct {
  int64_t revision; /* header.revision; 0 when absent (a cancel after compaction has none) */
  int64_t watch_id;
  int created;  /* the watch is set up: events follow */
  int canceled; /* the watch is over; etcd keeps the stream open, so close it */
  /* Set with canceled when start_revision was compacted away: the events in between are
   * lost, so list again and watch from the new revision. */
  int64_t compact_revision;
  char cancel_reason[128];
  px_etcd_event_t *events;
  size_t nevents;
  void *mem; /* owns events and their bytes */
} px_etcd_watch_msg_t;

/* Parses one watch message ({"result":{...}} or {"error":{...}}) into out (release it
 * with px_etcd_watch_msg_free, even on failure). */
int px_etcd_parse_watch(const char *json, size_t n, px_etcd_watch_msg_t *out, px_etcd_error_t *err);
/* Releases what px_etcd_parse_watch allocated; the events' bytes go with it. */
void px_etcd_watch_msg_free(px_etcd_watch_msg_t *m);

/* The watch stream splitter. The gateway writes each message as one JSON object (mostly
 * followed by "\n", but not always: a stream error comes bare) into a chunked body, and
 * neither chunks nor reads need line up with messages. The splitter finds where each
 * top-level object ends by tracking strings, escapes and nesting, without parsing;
 * px_etcd_parse_watch does the parsing. Between objects only whitespace may come. */

#define PX_ETCD_STREAM_MAX (4u << 20)

typedef struct {
  px_buf_t buf;    /* the start of a message that the input so far cut short */
  size_t max;      /* longest message taken */
  size_t size;     /* bytes of the current message so far */
  int depth;       /* nesting inside the current message; 0 between messages */
  int in_str, esc; /* inside a string; after a backslash in one */
  int held;        /* the last message given out was in buf: drop it on the next call */
  int failed;      /* the error every later call returns */
} px_etcd_stream_t;

/* Starts a splitter for one watch body taking messages up to max bytes (0:
 * PX_ETCD_STREAM_MAX); a new body (a new watch) wants a new splitter. */
void px_etcd_stream_init(px_etcd_stream_t *s, size_t max);
/* Releases the partial message held, if any. */
void px_etcd_stream_free(px_etcd_stream_t *s);
/* Consumes input from *in (*inlen bytes), advancing both, up to the end of the next
 * complete message: returns 1 with the message in *msg (pointing into the input or into
 * s, valid until the next call), 0 when the input is used up (a partial message is kept),
 * PX_ETOOLARGE for a message longer than max, PX_EPARSE for bytes that cannot start a
 * message. Errors stick: the stream is unusable after one. Call it until it returns 0. */
int px_etcd_stream_next(px_etcd_stream_t *s, const char **in, size_t *inlen, px_str_t *msg);
/* Whether the stream is between messages (at the end of the body: it was not cut short). */
static inline int px_etcd_stream_idle(const px_etcd_stream_t *s) { return s->depth == 0 && !s->failed; }

#endif
