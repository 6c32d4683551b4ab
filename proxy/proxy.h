/* The proxy's data path as the worker sees it: accept, drain, close. The pieces
 * behind it are the client connection (downstream.h), the request and its filters
 * (request.h, filter.h) and the upstream try (try.h); proxy/README.md draws them. */
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
