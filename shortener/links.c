#include "links.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int is_base62(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int shr_code_valid(const char *s, size_t n) {
  if (n != SHR_CODE_LEN) return 0;
  for (size_t i = 0; i < n; i++)
    if (!is_base62(s[i])) return 0;
  return 1;
}

int shr_code_generate(char out[SHR_CODE_LEN + 1]) {
  /* A byte is used only when it is below 248 = 4 * 62, so every character of the
   * alphabet comes from exactly four byte values; the rest are drawn again. About 3%
   * of bytes are rejected, so one 32-byte draw nearly always suffices. */
  unsigned char rnd[32];
  size_t have = 0, used = 0, o = 0;
  while (o < SHR_CODE_LEN) {
    if (used == have) {
      ssize_t r = getrandom(rnd, sizeof(rnd), 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        return -errno;
      }
      have = (size_t)r;
      used = 0;
      continue;
    }
    unsigned char b = rnd[used++];
    if (b < 248) out[o++] = alphabet[b % 62];
  }
  out[SHR_CODE_LEN] = '\0';
  return 0;
}

int shr_url_check(const char *url, size_t n, const char **why) {
  if (n == 0) {
    *why = "url must not be empty";
    return -1;
  }
  if (n > SHR_URL_MAX) {
    *why = "url is longer than 2048 bytes";
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)url[i];
    if (c <= 0x20 || c == 0x7f) {
      *why = "url must not contain whitespace or control characters";
      return -1;
    }
    if (c >= 0x80) {
      *why = "url must be ASCII (percent-encode other characters)";
      return -1;
    }
  }
  size_t skip;
  if (n >= 7 && strncasecmp(url, "http://", 7) == 0) {
    skip = 7;
  } else if (n >= 8 && strncasecmp(url, "https://", 8) == 0) {
    skip = 8;
  } else {
    *why = "url must start with http:// or https://";
    return -1;
  }
  /* authority = [userinfo@]host[:port], ending at the first '/', '?' or '#' */
  const char *a = url + skip, *end = url + n;
  const char *ae = a;
  while (ae < end && *ae != '/' && *ae != '?' && *ae != '#') ae++;
  const char *host = a;
  for (const char *p = a; p < ae; p++)
    if (*p == '@') host = p + 1;
  const char *hend = ae, *port = NULL;
  if (host < ae && *host == '[') {
    const char *rb = memchr(host, ']', (size_t)(ae - host));
    if (rb == NULL || rb == host + 1) {
      *why = "url has a malformed IPv6 host";
      return -1;
    }
    if (rb + 1 < ae) {
      if (rb[1] != ':') {
        *why = "url has a malformed IPv6 host";
        return -1;
      }
      port = rb + 2;
    }
    hend = rb + 1;
  } else {
    const char *colon = memchr(host, ':', (size_t)(ae - host));
    if (colon) {
      hend = colon;
      port = colon + 1;
    }
  }
  if (hend == host) {
    *why = "url has no host";
    return -1;
  }
  if (port) {
    /* An empty port is allowed by RFC 3986 ("http://h:/"), a non-numeric one is not. */
    unsigned long v = 0;
    for (const char *p = port; p < ae; p++) {
      if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned long)(*p - '0')) > 65535) {
        *why = "url has an invalid port";
        return -1;
      }
    }
  }
  return 0;
}
