/* Route matching (SPEC §3 `match`): pure, no I/O. Routes are tried in order and the
 * first match wins. */
#ifndef PX_ROUTER_H
#define PX_ROUTER_H

#include "config.h"
#include "http1.h"

/* The host part of a Host header value: no port, no brackets' port. */
px_str_t px_router_host(px_str_t host_header);
/* Index of the first route of `lst` matching the request, or -1. `path` excludes
 * the query string; `host` is px_router_host of the Host header (may be empty). */
int px_router_match(const px_listener_conf_t *lst, int method, px_str_t path, px_str_t host,
                    const px_head_t *head);

#endif
