/* The demo topology of SPEC §1, from the configuration files users run
 * (config/demo/, one file per process), with every port moved to a free one: three shortener
 * instances sharing one SQLite file, a sidecar in front of each, and the edge
 * splitting 90/10 between stable and canary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int ports[TH_DEMO_NPORTS];

static int port_of(int demo_port) { return th_demo_port(ports, demo_port); }

/* Copies a demo config to dir with "127.0.0.1:PORT" rewritten to the free ports. */
static void remap(const char *name, const char *dir, char *out, size_t n) {
  char src[512];
  snprintf(src, sizeof(src), "%s/config/demo/%s", PX_SOURCE_DIR, name);
  snprintf(out, n, "%s/%s", dir, name);
  cr_assert_eq(th_remap_ports(src, out, th_demo_ports, ports, TH_DEMO_NPORTS), 0, "cannot copy %s", src);
}

Test(demo, topology_shortens_redirects_and_splits, .timeout = 60) {
  for (size_t i = 0; i < TH_DEMO_NPORTS; i++) ports[i] = th_free_port();
  char *dir = th_tmpdir();
  char db[512], listen[64], base[64], logp[512], cfg[512];
  snprintf(db, sizeof(db), "%s/links.db", dir);
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", port_of(8080));
  pid_t pids[7];
  int np = 0;

  for (int i = 1; i <= 3; i++) {
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port_of(9000 + i));
    snprintf(logp, sizeof(logp), "%s/shortener-%d.log", dir, i);
    const char *argv[] = {th_bin("shortener"), "--listen",           listen, "--db", db, "--base-url", base,
                          "--label",           i == 3 ? "v2" : "v1", NULL};
    pids[np++] = th_spawn(argv, logp);
    cr_assert_eq(th_wait_port_pid(pids[np - 1], port_of(9000 + i), 5000), 0);
  }
  const char *files[] = {"sidecar-1.yaml", "sidecar-2.yaml", "sidecar-3.yaml", "edge.yaml"};
  const int listen_ports[] = {8001, 8002, 8003, 8080};
  for (int i = 0; i < 4; i++) {
    remap(files[i], dir, cfg, sizeof(cfg));
    snprintf(logp, sizeof(logp), "%s/%s.log", dir, files[i]);
    const char *argv[] = {th_bin("outrigger"), "-c", cfg, NULL};
    pids[np++] = th_spawn(argv, logp);
    cr_assert_eq(th_wait_port_pid(pids[np - 1], port_of(listen_ports[i]), 5000), 0, "%s did not start",
                 files[i]);
  }

  int edge = port_of(8080);
  th_resp_t r;
  cr_assert_eq(th_http(edge, "POST", "/api/links", "Content-Type: application/json\r\n",
                       "{\"url\":\"https://example.com/demo\"}", &r),
               0);
  cr_assert_eq(r.status, 201, "%s", r.body);
  char code[16] = {0};
  const char *c = strstr(r.body, "\"code\"");
  cr_assert(c);
  c = strchr(c + 6, '"');
  cr_assert(c);
  memcpy(code, c + 1, 7);
  char want_short[128];
  snprintf(want_short, sizeof(want_short), "%s/%s", base, code);
  cr_assert(strstr(r.body, want_short), "short_url should point at the edge: %s", r.body);
  th_resp_free(&r);

  /* Every instance resolves the code (one shared store), whichever the split picks. */
  char path[32];
  snprintf(path, sizeof(path), "/%s", code);
  int v1 = 0, v2 = 0;
  for (int i = 0; i < 200; i++) {
    cr_assert_eq(th_http(edge, "GET", path, NULL, NULL, &r), 0);
    cr_assert_eq(r.status, 302);
    cr_assert_str_eq(th_header(&r, "location"), "https://example.com/demo");
    const char *ver = th_header(&r, "x-shortener-version");
    cr_assert(ver);
    if (strcmp(ver, "v2") == 0)
      v2++;
    else
      v1++;
    th_resp_free(&r);
  }
  /* 90/10 over 200 requests: v2 between 2 and 45 is a very loose but certain band. */
  cr_assert(v2 >= 2 && v2 <= 45, "split 90/10 gave v1=%d v2=%d", v1, v2);

  for (int i = np - 1; i >= 0; i--)
    cr_assert_eq(th_stop(pids[i], 10000), 0, "process %d did not exit cleanly", i);
  th_tmpdir_remove(dir);
}
