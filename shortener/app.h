/* The shortener's HTTP handlers (SPEC §10), independent of sockets: a request in,
 * a response out, with the store behind it. */
#ifndef SHR_APP_H
#define SHR_APP_H

#include "httpserver.h"
#include "store.h"

typedef struct {
  shr_store_t *store;
  const char *base_url; /* without trailing '/': short_url = base_url "/" code */
} shr_app_t;

/* px_hsrv_handler_cb for the shortener; data is a shr_app_t. */
void shr_app_handle(void *data, const px_hreq_t *req, px_hres_t *res);

/* Body size limit for POST /api/links: a 2048-byte URL escaped as JSON fits easily. */
#define SHR_MAX_BODY (16 * 1024)

#endif
