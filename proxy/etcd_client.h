/* The HTTP/1.1 client that carries etcd_json.h's bodies to etcd's v3 JSON gateway
 * (SPEC §12), with failover between the members of one cluster.
 *
 * It runs on one uv loop (the main thread's) and never blocks. Bytes go through the
 * transport seam (transport.h); answers are framed by llhttp (Content-Length, chunked,
 * or read to the close). Two kinds of exchange:
 *
 *  - a unary call: POST PATH with a JSON body, the whole answer back. Each try of a call
 *    (connect, request and whole answer) is bounded by the client's timeout; a member
 *    that fails the try (see px_etcd_post) is left for the next one, each member at most
 *    once per call, starting with the member that last answered, so a healthy member
 *    sticks. One idle connection per member is kept for the next call (etcd keeps
 *    HTTP/1.1 connections open); a kept connection that etcd closed meanwhile costs
 *    one more try on a fresh connection to the same member, not a failover;
 *  - a watch: POST /v3/watch, whose answer is a chunked stream of JSON messages that
 *    lasts as long as the watch. Its connect and answer head are bounded and failed
 *    over like a call's; once the head is in, the stream stays on its member with no
 *    idle timeout (a watch is silent as long as nothing changes), and TCP keepalive
 *    (probes after 5 s idle, every 2 s, 3 unanswered: about 11 s) notices a member
 *    whose host went away without closing the connection.
 *
 * What etcd 3.4 does that the caller must know, all on one member:
 *  - a member without a leader (its quorum gone) holds every linearizable request for
 *    about 6 s (5 s + 2 election timeouts) before answering 503 {"code":14, "etcdserver:
 *    request timed out"} (range), 503 stream-style {"grpc_code":14, "etcdserver: no
 *    leader"} (keepalive) or 500 {"code":2, "context deadline exceeded"} (put, grant,
 *    revoke, deleterange); with a timeout below 6 s the try times out first. All of
 *    these fail over;
 *  - right after the leader dies, a write sent to a member while the others elect a
 *    new leader was seen held for over 5 s (raft drops the proposal rather than refuse
 *    it), though the election takes well under a second: the try's timeout ends it and
 *    the next member (or the next call) goes through;
 *  - a watch on a member that loses its quorum is NOT ended: it stays open and silent,
 *    and carries on once the quorum is back. A member that is killed ends its streams
 *    (EOF, or a reset); one stopped gracefully (SIGTERM) first writes an error message,
 *    {"error":{"grpc_code":14,"message":"transport is closing",...}} or, as often,
 *    {"error":{"grpc_code":1,"http_code":408,"message":"grpc: the client connection is
 *    closing",...}}, and then ends the body. Either way: watch again, on another member;
 *  - a watch whose start revision is compacted gets one message with canceled and
 *    compact_revision, and the stream stays open: the caller closes it.
 *
 * Callbacks may call back into the client: start calls and watches, cancel, close, even
 * px_etcd_free. No callback ever runs from inside a function of this API: a call or watch
 * that fails at once reports it from the loop. */
#ifndef PX_ETCD_CLIENT_H
#define PX_ETCD_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define PX_ETCD_MAX_MEMBERS 16
#define PX_ETCD_MAX_HEAD (16u << 10) /* a longer answer head fails the member */
#define PX_ETCD_MAX_BODY (4u << 20)  /* a longer unary answer fails the member */
#define PX_ETCD_URL_MAX 128

typedef struct px_etcd_s px_etcd_t;
typedef struct px_etcd_call_s px_etcd_call_t;
typedef struct px_etcd_watch_s px_etcd_watch_t;

/* Parses a member's client URL: "http://" then a dotted IPv4 address, a [bracketed] IPv6
 * address or localhost (taken as 127.0.0.1; never a name to resolve), then ":PORT"
 * (required, 1..65535), then nothing or "/". 0 with the address in *sa (may be NULL),
 * or PX_ECONFIG with the reason in why ("https is not supported (only http://)"). */
int px_etcd_url_parse(const char *url, struct sockaddr_storage *sa, char *why, size_t whylen);

/* A client for the members at `urls` (n of them, 1..PX_ETCD_MAX_MEMBERS; copied), each
 * try of a unary call and each watch's connect and head bounded by timeout_ms. NULL when
 * n is out of range or a URL does not parse (the configuration refused those already). */
px_etcd_t *px_etcd_new(uv_loop_t *loop, const char *const *urls, size_t n, uint64_t timeout_ms);
/* Ends every call and watch without their callbacks and closes every connection; once
 * libuv has closed the handles the client is freed and done (may be NULL) runs. Safe
 * from inside any callback of this client. */
void px_etcd_free(px_etcd_t *e, void (*done)(void *data), void *data);

/* The end of a unary call. rc 0: a member answered, with HTTP `status` and the whole
 * body (borrowed for the callback, NUL-terminated past n): a 2xx, or a 4xx/5xx whose
 * body is an etcd error that etcd_json.h parses (a bad request, a lease not found); the
 * caller parses it. rc < 0: every member failed this call, PX_ETIMEOUT when the last one
 * tried timed out, PX_EUPSTREAM otherwise (status 0, no body). */
typedef void (*px_etcd_call_cb)(void *data, int rc, int status, const char *body, size_t n);

/* POSTs the JSON body (n bytes, copied) to path ("/v3/kv/put") on a member. A member
 * fails the try, and the next is tried, when: the connection is refused, fails, is
 * reset or ends before the whole answer; the timeout passes; the answer is malformed,
 * its head is over PX_ETCD_MAX_HEAD or its body over PX_ETCD_MAX_BODY; the status is
 * 502, 503 or 504 or a 4xx/5xx body is not an etcd error; or the body is an etcd error
 * saying the member cannot serve (gRPC code 14 UNAVAILABLE or 1 CANCELED, "etcdserver:
 * request timed out", "etcdserver: no leader", "context deadline exceeded", "... is
 * closing"). cb runs exactly once, from the loop, unless the call is cancelled first.
 * The call is gone once cb returns. NULL once px_etcd_free has begun (a callback that
 * frees the client and posts again). */
px_etcd_call_t *px_etcd_post(px_etcd_t *e, const char *path, const char *body, size_t n, px_etcd_call_cb cb,
                             void *data);
/* Ends a call before its callback: cb never runs. Safe from inside any callback of the
 * client (from inside the call's own, it does nothing). */
void px_etcd_cancel(px_etcd_call_t *c);

/* One message of a watch stream (a JSON object: px_etcd_parse_watch reads it), borrowed
 * for the callback. */
typedef void (*px_etcd_msg_cb)(void *data, const char *msg, size_t n);
/* The stream is over. rc: PX_EUPSTREAM when the member ended the answer (a graceful stop
 * writes an error message first) or answered with an etcd error (given to on_msg first,
 * as a message) or every member failed before the answer's head; PX_ETIMEOUT when the
 * last member tried did not answer within the timeout; UV_EOF or another libuv error
 * when the connection ended or broke; PX_EPARSE for a body that is not a stream of
 * JSON objects; PX_ETOOLARGE for a message over PX_ETCD_STREAM_MAX. */
typedef void (*px_etcd_end_cb)(void *data, int rc);

/* POSTs the create body (n bytes, copied; px_etcd_watch_create_body) to /v3/watch and
 * hands each message of the answer to on_msg, the first being etcd's "created" (or its
 * cancel). on_end runs once when the stream is over for any reason but
 * px_etcd_watch_close; the watch is gone once it returns. NULL once px_etcd_free has
 * begun. */
px_etcd_watch_t *px_etcd_watch(px_etcd_t *e, const char *body, size_t n, px_etcd_msg_cb on_msg,
                               px_etcd_end_cb on_end, void *data);
/* Ends a watch (its connection is closed): no callback of it runs after this. Safe from
 * inside any callback of the client (from inside the watch's own on_end, it does
 * nothing). */
void px_etcd_watch_close(px_etcd_watch_t *w);
/* Whether the watch's answer head is in (the stream is up on a member). */
int px_etcd_watch_up(const px_etcd_watch_t *w);

/* The URL of the member that last answered a call or a watch, for logs and GET
 * /clusters; "" before any. */
const char *px_etcd_member(const px_etcd_t *e);

#endif
