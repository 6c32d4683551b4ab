#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include "core.h"

int px_addr_parse(const char *text, struct sockaddr_storage *out) {
  memset(out, 0, sizeof(*out));
  const char *colon = strrchr(text, ':');
  if (colon == NULL || colon == text || colon[1] == '\0') return UV_EINVAL;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535) return UV_EINVAL;
  char host[64];
  size_t hn = (size_t)(colon - text);
  if (hn >= sizeof(host)) return UV_EINVAL;
  memcpy(host, text, hn);
  host[hn] = '\0';
  if (host[0] == '[') {
    if (hn < 3 || host[hn - 1] != ']') return UV_EINVAL;
    host[hn - 1] = '\0';
    return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)out);
  }
  if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out);
}

static int url_fail(char *why, size_t whylen, const char *msg) {
  if (why && whylen) snprintf(why, whylen, "%s", msg);
  return PX_ECONFIG;
}

static int host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_';
}

int px_http_url_parse(const char *url, px_http_url_t *out, char *why, size_t whylen) {
  memset(out, 0, sizeof(*out));
  if (url == NULL || url[0] == '\0') return url_fail(why, whylen, "empty URL");
  if (strncasecmp(url, "https://", 8) == 0)
    return url_fail(why, whylen, "https is not supported (only http://)");
  if (strncasecmp(url, "http://", 7) != 0) return url_fail(why, whylen, "not an http:// URL");
  const char *auth = url + 7, *auth_end = auth + strcspn(auth, "/?#");
  size_t auth_len = (size_t)(auth_end - auth);
  if (memchr(auth, '@', auth_len)) return url_fail(why, whylen, "user information is not allowed");
  if (auth_len >= sizeof(out->authority)) return url_fail(why, whylen, "host too long");

  const char *host, *host_end, *p;
  if (auth[0] == '[') {
    host = auth + 1;
    host_end = memchr(host, ']', (size_t)(auth_end - host));
    if (host_end == NULL) return url_fail(why, whylen, "unterminated [IPv6] address");
    p = host_end + 1;
    char tmp[INET6_ADDRSTRLEN + 1];
    struct in6_addr a6;
    size_t n = (size_t)(host_end - host);
    if (n >= sizeof(tmp)) return url_fail(why, whylen, "bad IPv6 address");
    memcpy(tmp, host, n);
    tmp[n] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1) return url_fail(why, whylen, "bad IPv6 address");
  } else {
    host = auth;
    for (host_end = host; host_end < auth_end && *host_end != ':'; host_end++)
      if (!host_char(*host_end)) return url_fail(why, whylen, "bad character in the host");
    if (host_end == host) return url_fail(why, whylen, "no host");
    p = host_end;
  }
  if ((size_t)(host_end - host) >= sizeof(out->host)) return url_fail(why, whylen, "host too long");
  if (p < auth_end) {
    if (*p != ':')
      return url_fail(why, whylen, "after the host, a port is required as \":PORT\", or nothing");
    size_t digits = (size_t)(auth_end - ++p);
    unsigned port = 0;
    if (digits == 0 || digits > 5) return url_fail(why, whylen, "bad port");
    for (const char *d = p; d < auth_end; d++) {
      if (*d < '0' || *d > '9') return url_fail(why, whylen, "bad port");
      port = port * 10 + (unsigned)(*d - '0');
    }
    if (port == 0 || port > 65535) return url_fail(why, whylen, "port out of range (1..65535)");
    snprintf(out->port, sizeof(out->port), "%u", port);
  }
  size_t path_len = strlen(auth_end);
  if (path_len >= sizeof(out->path)) return url_fail(why, whylen, "path too long");
  for (size_t i = 0; i < path_len; i++) {
    unsigned char c = (unsigned char)auth_end[i];
    if (c <= 0x20 || c >= 0x7f) return url_fail(why, whylen, "bad character in the path");
    if (c == '#') return url_fail(why, whylen, "a fragment (#) is not allowed");
  }
  memcpy(out->host, host, (size_t)(host_end - host));
  memcpy(out->authority, auth, auth_len);
  memcpy(out->path, auth_end, path_len);
  return 0;
}

void px_addr_format(const struct sockaddr *sa, char *out, size_t n) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    port = ntohs(in->sin_port);
    snprintf(out, n, "%s:%d", ip, port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    port = ntohs(in6->sin6_port);
    snprintf(out, n, "[%s]:%d", ip, port);
  } else {
    snprintf(out, n, "?");
  }
}

int px_listen_fd(const struct sockaddr *sa, int reuseport, int backlog) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) goto fail;
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, sa, len) != 0) goto fail;
  if (listen(fd, backlog) != 0) goto fail;
  return fd;
fail:;
  int err = uv_translate_sys_error(errno);
  close(fd);
  return err;
}

int px_addr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b) {
  if (a->ss_family != b->ss_family) return 0;
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
  }
  return 0;
}

uint64_t px_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  /* The kernel refuses more than fs.nr_open (1M by default), and "unlimited" with it. */
  rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
  if (rl.rlim_cur < want) {
    struct rlimit up = {want, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = want;
  }
  return (uint64_t)rl.rlim_cur;
}
