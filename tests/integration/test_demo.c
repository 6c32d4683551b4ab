/* The demo topology of SPEC §1, from the configuration files users run
 * (config/demo/, one file per process), with every port moved to a free one: three shortener
 * instances sharing one SQLite file, a sidecar in front of each, and the edge
 * splitting 90/10 between stable and canary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_collector.h"
#include "harness.h"
#include "harness_etcd.h"

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
  /* The demo's registry: one etcd member; every sidecar registers there. */
  te_cluster_t etcd = {0};
  cr_assert_eq(te_start(&etcd, 1), 0);
  th_demo_set_port(ports, 2479, etcd.client_port[0]);
  char *dir = th_tmpdir();
  char db[512], listen[64], base[64], logp[512], cfg[512];
  snprintf(db, sizeof(db), "%s/links.db", dir);
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", port_of(8080));
  pid_t pids[7];
  int np = 0;
  /* The demo's span sink: every hop exports its spans here. */
  fc_t *fc = fc_start_at(FC_OK, port_of(9411));
  cr_assert(fc, "cannot listen on the span sink's port");

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

  /* The edge finds the sidecars in etcd: two v1, one v2. */
  cr_assert_eq(
      th_wait_metric(port_of(15000), "outrigger_discovery_endpoints{cluster=\"shortener-v1\"}", 2, 5000), 0,
      "the edge never found the two v1 sidecars");
  cr_assert_eq(
      th_wait_metric(port_of(15000), "outrigger_discovery_endpoints{cluster=\"shortener-v2\"}", 1, 5000), 0,
      "the edge never found the v2 sidecar");
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

  /* One request is one trace across the hops: the edge's SERVER span (a child of the
   * client's), its CLIENT span, the sidecar's SERVER span as that try's child, and the
   * sidecar's CLIENT span to the app. */
  const char *tid = "0af7651916cd43dd8448eb211c80319c";
  cr_assert_eq(th_http(edge, "GET", path,
                       "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n", NULL, &r),
               0);
  cr_assert_eq(r.status, 302);
  th_resp_free(&r);
  int idx[4] = {-1, -1, -1, -1}; /* edge SERVER, edge CLIENT, sidecar SERVER, sidecar CLIENT */
  for (int waited = 0; waited < 5000 && (idx[0] < 0 || idx[1] < 0 || idx[2] < 0 || idx[3] < 0);
       waited += 50) {
    usleep(50000);
    int n = fc_nspans(fc);
    for (int i = 0; i < n; i++) {
      const char *t = fc_field(fc, i, "traceId"), *kind = fc_field(fc, i, "kind");
      const px_json_t *le = px_json_get(fc_span(fc, i), "localEndpoint");
      const char *svc = le ? px_json_str(px_json_get(le, "serviceName"), NULL) : NULL;
      if (!t || strcmp(t, tid) != 0 || !kind || !svc) continue;
      int edge_hop = strcmp(svc, "edge") == 0;
      idx[(edge_hop ? 0 : 2) + (strcmp(kind, "CLIENT") == 0)] = i;
    }
  }
  for (int k = 0; k < 4; k++) cr_assert_geq(idx[k], 0, "span %d of the trace never arrived", k);
  cr_expect_str_eq(fc_field(fc, idx[0], "parentId"), "b7ad6b7169203331");
  cr_expect_str_eq(fc_field(fc, idx[1], "parentId"), fc_field(fc, idx[0], "id"));
  cr_expect_str_eq(fc_field(fc, idx[2], "parentId"), fc_field(fc, idx[1], "id"),
                   "the sidecar's span is not the edge try's child");
  cr_expect_str_eq(fc_field(fc, idx[3], "parentId"), fc_field(fc, idx[2], "id"));
  cr_expect_str_eq(fc_tag(fc, idx[2], "http.status_code"), "302");

  for (int i = np - 1; i >= 0; i--)
    cr_assert_eq(th_stop(pids[i], 10000), 0, "process %d did not exit cleanly", i);
  te_stop(&etcd);
  fc_stop(fc);
  th_tmpdir_remove(dir);
}
