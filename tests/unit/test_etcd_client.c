/* The etcd client's member URLs (proxy/etcd_client.h): what the configuration takes as
 * an etcd endpoint, and why it refuses the rest. The I/O is tested against a real etcd
 * in tests/integration/test_etcd_client.c. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <string.h>

#include "core.h"
#include "etcd_client.h"

static void good4(const char *url, const char *addr, int port) {
  struct sockaddr_storage ss;
  char why[256] = "";
  cr_assert_eq(px_etcd_url_parse(url, &ss, why, sizeof(why)), 0, "%s: %s", url, why);
  cr_assert_eq(ss.ss_family, AF_INET, "%s", url);
  const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
  char got[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a->sin_addr, got, sizeof(got));
  cr_expect_str_eq(got, addr, "%s", url);
  cr_expect_eq(ntohs(a->sin_port), port, "%s", url);
}

static void bad(const char *url, const char *reason) {
  char why[256] = "";
  cr_assert_eq(px_etcd_url_parse(url, NULL, why, sizeof(why)), PX_ECONFIG, "%s was taken", url);
  cr_expect(strstr(why, reason), "%s: \"%s\" does not say \"%s\"", url, why, reason);
}

Test(etcd_url, takes_ipv4_ipv6_and_localhost_with_a_port) {
  good4("http://127.0.0.1:2379", "127.0.0.1", 2379);
  good4("http://127.0.0.1:2379/", "127.0.0.1", 2379);
  good4("HTTP://10.1.2.3:1", "10.1.2.3", 1);
  good4("http://localhost:65535", "127.0.0.1", 65535);
  good4("http://LocalHost:2379/", "127.0.0.1", 2379);

  struct sockaddr_storage ss;
  cr_assert_eq(px_etcd_url_parse("http://[::1]:2379", &ss, NULL, 0), 0);
  cr_assert_eq(ss.ss_family, AF_INET6);
  const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&ss;
  cr_expect_eq(ntohs(a6->sin6_port), 2379);
  cr_expect(IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr));
  cr_assert_eq(px_etcd_url_parse("http://[2001:db8::1]:12379/", &ss, NULL, 0), 0);
}

Test(etcd_url, refuses_with_a_reason) {
  bad("https://127.0.0.1:2379", "https is not supported");
  bad("HTTPS://127.0.0.1:2379", "https is not supported");
  bad("127.0.0.1:2379", "not an http:// URL");
  bad("unix:///run/etcd.sock", "not an http:// URL");
  bad("", "empty");
  bad("http://127.0.0.1", "port is required");
  bad("http://127.0.0.1/", "port is required");
  bad("http://127.0.0.1:", "bad port");
  bad("http://127.0.0.1:0", "out of range");
  bad("http://127.0.0.1:65536", "out of range");
  bad("http://127.0.0.1:123456", "bad port");
  bad("http://127.0.0.1:23a9", "bad port");
  bad("http://127.0.0.1:-1", "bad port");
  bad("http://127.0.0.1:2379/v3", "path is not allowed");
  bad("http://127.0.0.1:2379//", "path is not allowed");
  bad("http://127.0.0.1:2379?x=1", "query");
  bad("http://127.0.0.1:2379#f", "fragment");
  bad("http://etcd-0.internal:2379", "not an IPv4 address");
  bad("http://example.com:2379", "names are not resolved");
  bad("http://127.1:2379", "not an IPv4 address");
  bad("http://256.0.0.1:2379", "not an IPv4 address");
  bad("http://user@127.0.0.1:2379", "user information");
  bad("http://:2379", "no host");
  bad("http://[::1:2379", "unterminated");
  bad("http://[::g]:2379", "bad IPv6 address");
  bad("http://[::1]", "port is required");
  bad("http://[::1]x:2379", "port is required");

  char longurl[300];
  memset(longurl, 'a', sizeof(longurl) - 1);
  longurl[sizeof(longurl) - 1] = '\0';
  memcpy(longurl, "http://", 7);
  bad(longurl, "too long");
  cr_expect_eq(px_etcd_url_parse(NULL, NULL, NULL, 0), PX_ECONFIG);
}

Test(etcd_client, new_refuses_what_the_configuration_would) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *ok[] = {"http://127.0.0.1:2379", "http://[::1]:2379"};
  const char *bad_urls[] = {"http://127.0.0.1:2379", "https://127.0.0.1:2379"};
  cr_expect_null(px_etcd_new(&loop, ok, 0, 1000));
  cr_expect_null(px_etcd_new(&loop, bad_urls, 2, 1000));
  px_etcd_t *e = px_etcd_new(&loop, ok, 2, 1000);
  cr_assert_not_null(e);
  cr_expect_str_eq(px_etcd_member(e), "");
  px_etcd_free(e, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_expect_eq(uv_loop_close(&loop), 0, "a handle leaked");
}
