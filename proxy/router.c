#include "router.h"

px_str_t px_router_host(px_str_t h) {
  if (h.n && h.p[0] == '[') { /* [v6]:port */
    const char *end = memchr(h.p, ']', h.n);
    return end ? (px_str_t){h.p, (size_t)(end - h.p) + 1} : h;
  }
  const char *colon = memchr(h.p, ':', h.n);
  return colon ? (px_str_t){h.p, (size_t)(colon - h.p)} : h;
}

static int headers_match(const px_match_conf_t *m, const px_head_t *head) {
  for (size_t i = 0; i < m->nheaders; i++) {
    int idx = px_head_find(head, m->headers[i].name);
    if (idx < 0) return 0;
    px_str_t v = px_head_value(head, (size_t)idx);
    if (!px_str_eq(v, (px_str_t){m->headers[i].value, strlen(m->headers[i].value)})) return 0;
  }
  return 1;
}

static int route_matches(const px_match_conf_t *m, int method, px_str_t path, px_str_t host,
                         const px_head_t *head) {
  /* llhttp also parses methods 32 and up (UNLINK, SOURCE), which a 32-bit mask cannot
   * name: shifting by them is undefined and on x86 aliased them onto DELETE and GET. */
  if (m->methods && ((unsigned)method >= 32 || !(m->methods & (1u << method)))) return 0;
  if (m->path) {
    if (!px_str_eq(path, (px_str_t){m->path, strlen(m->path)})) return 0;
  } else if (m->prefix) {
    size_t n = strlen(m->prefix);
    if (path.n < n || memcmp(path.p, m->prefix, n) != 0) return 0;
  }
  if (m->host && !px_str_ieq_cstr(host, m->host)) return 0;
  return m->nheaders == 0 || headers_match(m, head);
}

int px_router_match(const px_listener_conf_t *lst, int method, px_str_t path, px_str_t host,
                    const px_head_t *head) {
  for (size_t i = 0; i < lst->nroutes; i++)
    if (route_matches(&lst->routes[i].match, method, path, host, head)) return (int)i;
  return -1;
}
