/* Link rules with no I/O: which URLs may be shortened, and how codes look and are
 * drawn. Kept pure so the rules are unit-tested without a server or a database. */
#ifndef SHR_LINKS_H
#define SHR_LINKS_H

#include <stddef.h>

#define SHR_CODE_LEN 7
#define SHR_URL_MAX 2048

/* Checks a URL to shorten: http or https (any case), a non-empty host, a valid port
 * when one is given, printable ASCII only (no whitespace or control characters), at
 * most SHR_URL_MAX bytes. Returns 0, or -1 with *why set to a static message. */
int shr_url_check(const char *url, size_t n, const char **why);

/* Fills out[0..SHR_CODE_LEN-1] with base62 characters from getrandom(2), without
 * modulo bias, and NUL-terminates it. Returns 0, or a negative errno. */
int shr_code_generate(char out[SHR_CODE_LEN + 1]);

/* 1 when s is exactly SHR_CODE_LEN base62 characters. */
int shr_code_valid(const char *s, size_t n);

#endif
