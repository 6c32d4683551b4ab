/* The proxy's data path: a client connection, the request on it, and the exchange
 * with the upstream that carries it (SPEC §4). One request at a time per client
 * connection; pipelined requests wait in the read buffer and are answered in order.
 *
 * Bytes are forwarded from the buffer they were read into: a read is parsed into
 * pieces (head, body spans, chunk framing), the pieces go out in one uv_write, and
 * that side is not read again until the write completes. That is the back-pressure:
 * a slow reader pauses the other side instead of making either buffer grow. */
#ifndef PX_PROXY_H
#define PX_PROXY_H

#include "transport.h"
#include "wctx.h"

/* Accepts a connection on `l`, listener `listener_index` of w's current snapshot. */
void px_proxy_accept(px_wctx_t *w, px_tp_listener_t *l, size_t listener_index);
/* Draining: close idle client connections, mark the others to close after their
 * current response. */
void px_proxy_drain(px_wctx_t *w);
/* Stop now: close every client connection. */
void px_proxy_close_all(px_wctx_t *w);

#endif
