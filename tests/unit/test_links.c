#include <criterion/criterion.h>
#include <string.h>

#include "links.h"

static int ok(const char *u) {
  const char *why = NULL;
  return shr_url_check(u, strlen(u), &why) == 0;
}

Test(links, accepts_http_and_https) {
  const char *good[] = {"http://example.com",
                        "https://example.com/",
                        "HTTPS://EXAMPLE.COM/a?b=c#d",
                        "http://user:pw@host:8080/x",
                        "https://[::1]:8443/",
                        "http://h:/",
                        "https://xn--bcher-kva.example/%C3%A9",
                        "http://127.0.0.1"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) cr_expect(ok(good[i]), "%s", good[i]);
}

Test(links, rejects_bad_urls) {
  const char *bad[] = {"",
                       "ftp://example.com/",
                       "javascript:alert(1)",
                       "mailto:a@b",
                       "http:/x",
                       "https:example.com",
                       "http://",
                       "https:///path",
                       "http://user@/x",
                       "http://h:99999/",
                       "http://h:8a/",
                       "http://[]/",
                       "http://[::1/",
                       "http://h/a b",
                       "http://h/\t",
                       "http://h/\x7f",
                       "http://h/\xc3\xa9",
                       " http://h/",
                       "data:text/html,x",
                       "//example.com"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *why = NULL;
    cr_expect_neq(shr_url_check(bad[i], strlen(bad[i]), &why), 0, "accepted %s", bad[i]);
    cr_expect(why && *why, "no reason for %s", bad[i]);
  }
  const char nul[] = "http://h/\0x";
  const char *why;
  cr_expect_neq(shr_url_check(nul, sizeof(nul) - 1, &why), 0);
}

Test(links, length_limit) {
  char u[SHR_URL_MAX + 2];
  memcpy(u, "https://h/", 10);
  memset(u + 10, 'a', sizeof(u) - 10);
  const char *why;
  cr_expect_eq(shr_url_check(u, SHR_URL_MAX, &why), 0);
  cr_expect_neq(shr_url_check(u, SHR_URL_MAX + 1, &why), 0);
  cr_expect(strstr(why, "2048") != NULL);
}

static int b62(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

Test(links, codes_are_base62_unique_and_spread) {
  enum { N = 20000 };
  static char codes[N][SHR_CODE_LEN + 1];
  int counts[128] = {0};
  for (int i = 0; i < N; i++) {
    cr_assert_eq(shr_code_generate(codes[i]), 0);
    cr_assert_eq(strlen(codes[i]), SHR_CODE_LEN);
    cr_assert(shr_code_valid(codes[i], SHR_CODE_LEN));
    for (int j = 0; j < SHR_CODE_LEN; j++) {
      cr_assert(b62(codes[i][j]), "bad char in %s", codes[i]);
      counts[(int)codes[i][j]]++;
    }
  }
  qsort(codes, N, sizeof(codes[0]), (int (*)(const void *, const void *))strcmp);
  for (int i = 1; i < N; i++) cr_assert_str_neq(codes[i - 1], codes[i], "duplicate code");
  /* 140000 characters over 62 symbols: about 2258 each; every symbol appears and
   * none is wildly off (a loose check, it only catches gross bias). */
  int symbols = 0;
  for (int c = 0; c < 128; c++) {
    if (!counts[c]) continue;
    symbols++;
    cr_expect(counts[c] > 1900 && counts[c] < 2650, "symbol %c appears %d times", c, counts[c]);
  }
  cr_expect_eq(symbols, 62);
}

Test(links, code_valid) {
  cr_expect(shr_code_valid("abcDEF1", 7));
  cr_expect(!shr_code_valid("abcDEF", 6));
  cr_expect(!shr_code_valid("abcDEF12", 8));
  cr_expect(!shr_code_valid("abc-EF1", 7));
  cr_expect(!shr_code_valid("abc/EF1", 7));
}
