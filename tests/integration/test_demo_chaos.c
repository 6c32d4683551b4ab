/* The proof of SPEC §5 on the demo topology (config/demo/chaos/): each shortener
 * sidecar drops 20% of its answers after the app did the work, and the edge retries.
 * With `idempotency_key: generate` at the edge and inbound idempotency at the sidecars,
 * every POST succeeds and each creates exactly one link (rows counted in SQLite); with
 * `off` the edge may not retry a POST, and the counts show the failures and the links
 * that a blind retry would have made twice. And 20 concurrent POSTs with one client key
 * make one link. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "harness_etcd.h"

static int ports[TH_DEMO_NPORTS];

static int port_of(int demo_port) { return th_demo_port(ports, demo_port); }

static long rows(const char *db) {
  sqlite3 *h;
  cr_assert_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(h, "SELECT COUNT(*) FROM links", -1, &st, NULL), SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  long n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return n;
}

/* An edge with the chaos configuration, its idempotency_key set to `mode`. */
static pid_t start_edge(const char *dir, const char *mode) {
  char src[512], tmp[512], cfg[512], logp[512];
  snprintf(src, sizeof(src), "%s/config/demo/chaos/edge.yaml", PX_SOURCE_DIR);
  snprintf(tmp, sizeof(tmp), "%s/edge-%s.tmp", dir, mode);
  snprintf(cfg, sizeof(cfg), "%s/edge-%s.yaml", dir, mode);
  cr_assert_eq(th_remap_ports(src, tmp, th_demo_ports, ports, TH_DEMO_NPORTS), 0);
  char *text = th_read_file(tmp, NULL);
  const char *at = strstr(text, "idempotency_key: generate");
  cr_assert(at);
  FILE *f = fopen(cfg, "w");
  fprintf(f, "%.*sidempotency_key: %s%s", (int)(at - text), text, mode,
          at + strlen("idempotency_key: generate"));
  fclose(f);
  free(text);
  snprintf(logp, sizeof(logp), "%s/edge-%s.log", dir, mode);
  const char *argv[] = {th_bin("outrigger"), "-c", cfg, NULL};
  pid_t pid = th_spawn(argv, logp);
  cr_assert_eq(th_wait_port_pid(pid, port_of(8080), 5000), 0, "the edge did not start");
  /* It finds each sidecar in etcd by its instance label. */
  for (int i = 1; i <= 3; i++) {
    char series[96];
    snprintf(series, sizeof(series), "outrigger_discovery_endpoints{cluster=\"sidecar-%d\"}", i);
    cr_assert_eq(th_wait_metric(port_of(15000), series, 1, 5000), 0, "the edge never found sidecar %d", i);
  }
  return pid;
}

/* n POSTs through the edge, each a new link: how many got 201. */
static int post_links(int n, const char *tag) {
  int created = 0;
  for (int i = 0; i < n; i++) {
    char body[128];
    snprintf(body, sizeof(body), "{\"url\":\"https://example.com/%s/%d\"}", tag, i);
    th_resp_t r;
    if (th_http(port_of(8080), "POST", "/api/links", "Content-Type: application/json\r\n", body, &r) == 0) {
      if (r.status == 201) created++;
      th_resp_free(&r);
    }
  }
  return created;
}

typedef struct {
  int status;
} one_t;

static void *post_same_key(void *arg) {
  one_t *o = arg;
  th_resp_t r;
  o->status = -1;
  if (th_http(port_of(8001), "POST", "/api/links",
              "Content-Type: application/json\r\nIdempotency-Key: \"one-client-key\"\r\n",
              "{\"url\":\"https://example.com/once\"}", &r) == 0) {
    o->status = r.status;
    th_resp_free(&r);
  }
  return NULL;
}

Test(demo_chaos, retries_with_idempotency_keys_make_each_link_once, .timeout = 120) {
  for (size_t i = 0; i < TH_DEMO_NPORTS; i++) ports[i] = th_free_port();
  /* The demo's registry: one etcd member; every sidecar registers there. */
  te_cluster_t etcd = {0};
  cr_assert_eq(te_start(&etcd, 1), 0);
  th_demo_set_port(ports, 2479, etcd.client_port[0]);
  char *dir = th_tmpdir();
  char db[512], listen[64], base[64], logp[512], src[512], cfg[512];
  snprintf(db, sizeof(db), "%s/links.db", dir);
  snprintf(base, sizeof(base), "http://127.0.0.1:%d", port_of(8080));
  pid_t pids[8];
  int np = 0;
  for (int i = 1; i <= 3; i++) {
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port_of(9000 + i));
    snprintf(logp, sizeof(logp), "%s/shortener-%d.log", dir, i);
    const char *argv[] = {th_bin("shortener"), "--listen", listen, "--db", db, "--base-url", base, NULL};
    pids[np++] = th_spawn(argv, logp);
    cr_assert_eq(th_wait_port_pid(pids[np - 1], port_of(9000 + i), 5000), 0);
  }
  for (int i = 1; i <= 3; i++) {
    snprintf(src, sizeof(src), "%s/config/demo/chaos/sidecar-%d.yaml", PX_SOURCE_DIR, i);
    snprintf(cfg, sizeof(cfg), "%s/sidecar-%d.yaml", dir, i);
    cr_assert_eq(th_remap_ports(src, cfg, th_demo_ports, ports, TH_DEMO_NPORTS), 0);
    snprintf(logp, sizeof(logp), "%s/sidecar-%d.log", dir, i);
    const char *argv[] = {th_bin("outrigger"), "-c", cfg, NULL};
    pids[np++] = th_spawn(argv, logp);
    cr_assert_eq(th_wait_port_pid(pids[np - 1], port_of(8000 + i), 5000), 0);
  }

  /* generate: every POST succeeds, and each made one link. */
  pid_t edge = start_edge(dir, "generate");
  long before = rows(db);
  int created = post_links(500, "generate");
  long made = rows(db) - before;
  cr_log_info("idempotency_key: generate: %d of 500 POSTs got 201, %ld links made", created, made);
  cr_expect_eq(created, 500);
  cr_expect_eq(made, 500, "%ld links for 500 POSTs", made);
  cr_assert_eq(th_stop(edge, 10000), 0);

  /* off: a dropped answer reaches the client as 502; its link was made all the same,
   * and a blind retry would have made it twice. */
  edge = start_edge(dir, "off");
  before = rows(db);
  created = post_links(500, "off");
  made = rows(db) - before;
  cr_log_info("idempotency_key: off: %d of 500 POSTs got 201, %d failed; %ld links made, %ld of them for a "
              "POST that failed (a retry would have made each twice)",
              created, 500 - created, made, made - created);
  cr_expect_lt(created, 500, "20%% of answers dropped, and no POST failed?");
  cr_expect_eq(made, 500, "the app did every request's work once");
  cr_assert_eq(th_stop(edge, 10000), 0);

  /* One client key, 20 POSTs at once to one sidecar: one link; the others are told the
   * first is still running (409) or get its answer. */
  before = rows(db);
  pthread_t th[20];
  one_t o[20];
  for (int i = 0; i < 20; i++) pthread_create(&th[i], NULL, post_same_key, &o[i]);
  int ok = 0, busy = 0;
  for (int i = 0; i < 20; i++) {
    pthread_join(th[i], NULL);
    if (o[i].status == 201) ok++;
    if (o[i].status == 409) busy++;
  }
  cr_log_info("20 concurrent POSTs with one key: %d got 201, %d got 409, %d other (dropped by the fault)", ok,
              busy, 20 - ok - busy);
  cr_expect_eq(rows(db) - before, 1, "one key made %ld links", rows(db) - before);

  for (int i = np - 1; i >= 0; i--)
    cr_assert_eq(th_stop(pids[i], 10000), 0, "process %d did not exit cleanly", i);
  te_stop(&etcd);
  th_tmpdir_remove(dir);
}
