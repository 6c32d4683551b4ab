#include "harness_etcd.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "etcd_json.h"

#define TE_ETCD "/usr/bin/etcd"
#define TE_HEALTH_MS 10000
#define TE_TRIES 2 /* a start whose ports were taken meanwhile is tried once more */

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int spawn_member(te_cluster_t *c, int i) {
  char name[16], data[512], client[64], peer[64], log[512], out[512];
  snprintf(name, sizeof(name), "m%d", i);
  snprintf(data, sizeof(data), "%s/m%d", c->dir, i);
  snprintf(client, sizeof(client), "http://127.0.0.1:%d", c->client_port[i]);
  snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", c->peer_port[i]);
  snprintf(log, sizeof(log), "%s/m%d.log", c->dir, i);
  snprintf(out, sizeof(out), "%s/m%d.out", c->dir, i);
  /* With a data directory that holds a member already (a restart), etcd ignores the
   * --initial-* flags and rejoins as that member. */
  const char *const flags[][2] = {
      {"--name", name},
      {"--data-dir", data},
      {"--listen-client-urls", client},
      {"--advertise-client-urls", client},
      {"--listen-peer-urls", peer},
      {"--initial-advertise-peer-urls", peer},
      {"--initial-cluster", c->initial},
      {"--initial-cluster-state", "new"},
      {"--initial-cluster-token", c->token},
      {"--heartbeat-interval", "50"},
      {"--election-timeout", "500"},
      {"--logger", "zap"},
      {"--log-outputs", log},
  };
  const char *argv[2 * PX_ARRAY_SIZE(flags) + 2];
  size_t k = 0;
  argv[k++] = TE_ETCD;
  for (size_t j = 0; j < PX_ARRAY_SIZE(flags); j++) {
    argv[k++] = flags[j][0];
    argv[k++] = flags[j][1];
  }
  argv[k] = NULL;
  c->pid[i] = th_spawn(argv, out);
  return c->pid[i] > 0 ? 0 : -1;
}

static int exited(pid_t pid) {
  siginfo_t info = {0};
  return pid <= 0 || waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == pid;
}

/* Whether member i answers GET /health with "health":"true" within timeout_ms. */
static int healthy(const te_cluster_t *c, int i, int timeout_ms) {
  static const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  th_resp_t r;
  if (th_request(c->client_port[i], req, sizeof(req) - 1, &r, timeout_ms) != 0) return 0;
  int ok = r.status == 200 && strstr(r.body, "\"health\":\"true\"") != NULL;
  th_resp_free(&r);
  return ok;
}

/* Waits until every member in [from, to) is healthy: 0, or -1 after TE_HEALTH_MS or as
 * soon as one has exited. */
static int wait_healthy(const te_cluster_t *c, int from, int to) {
  int64_t deadline = th_now_ms() + TE_HEALTH_MS;
  for (int i = from; i < to; i++) {
    while (!healthy(c, i, 1000)) {
      if (exited(c->pid[i]) || th_now_ms() >= deadline) return -1;
      sleep_ms(20);
    }
  }
  return 0;
}

int te_wait_healthy(const te_cluster_t *c) {
  int64_t deadline = th_now_ms() + TE_HEALTH_MS;
  for (int i = 0; i < c->n; i++) {
    while (c->pid[i] > 0 && !healthy(c, i, 1000)) {
      if (th_now_ms() >= deadline) return -1;
      sleep_ms(20);
    }
  }
  return 0;
}

void te_log_tail(const te_cluster_t *c, size_t bytes) {
  if (c->dir == NULL) return;
  for (int i = 0; i < c->n; i++) {
    static const char *const ext[] = {"out", "log"};
    for (size_t k = 0; k < 2; k++) {
      char path[512];
      snprintf(path, sizeof(path), "%s/m%d.%s", c->dir, i, ext[k]);
      size_t len;
      char *text = th_read_file(path, &len);
      if (text == NULL) continue;
      const char *from = len > bytes ? text + len - bytes : text;
      fprintf(stderr, "---- etcd member %d (%s), last %zu bytes:\n%s\n", i, path, bytes, from);
      free(text);
    }
  }
}

static int start_once(te_cluster_t *c, int members) {
  memset(c, 0, sizeof(*c));
  c->n = members;
  c->dir = th_tmpdir();
  cr_assert(c->dir, "no temporary directory");
  snprintf(c->token, sizeof(c->token), "te-%d-%lld", (int)getpid(), (long long)th_now_ms());
  px_buf_t ic = {0};
  for (int i = 0; i < members; i++) {
    c->client_port[i] = th_free_port();
    c->peer_port[i] = th_free_port();
    cr_assert(c->client_port[i] > 0 && c->peer_port[i] > 0, "no free port");
    px_buf_printf(&ic, "%sm%d=http://127.0.0.1:%d", i ? "," : "", i, c->peer_port[i]);
  }
  cr_assert(ic.len < sizeof(c->initial));
  memcpy(c->initial, ic.data, ic.len);
  c->initial[ic.len] = '\0';
  px_buf_free(&ic);
  for (int i = 0; i < members; i++)
    if (spawn_member(c, i) != 0) return -1;
  return wait_healthy(c, 0, members);
}

int te_start(te_cluster_t *c, int members) {
  cr_assert(members >= 1 && members <= TE_MAX_MEMBERS);
  cr_assert(access(TE_ETCD, X_OK) == 0, TE_ETCD " not found: scripts/setup.sh installs Debian's etcd-server");
  for (int attempt = 1;; attempt++) {
    if (start_once(c, members) == 0) return 0;
    int died = 0;
    for (int i = 0; i < members; i++) died |= exited(c->pid[i]);
    /* A member that exited at once most likely lost its port to someone else between
     * th_free_port and its bind: new ports, once more. */
    if (!died || attempt == TE_TRIES) break;
    te_stop(c);
  }
  te_log_tail(c, 3000);
  te_stop(c);
  cr_assert_fail("the etcd cluster of %d did not become healthy within %d ms (logs above)", members,
                 TE_HEALTH_MS);
  return -1;
}

void te_url(const te_cluster_t *c, int i, char *out, size_t n) {
  snprintf(out, n, "http://127.0.0.1:%d", c->client_port[i]);
}

void te_urls_yaml(const te_cluster_t *c, char *out, size_t n) {
  px_buf_t b = {0};
  px_buf_append_cstr(&b, "[");
  for (int i = 0; i < c->n; i++) px_buf_printf(&b, "%shttp://127.0.0.1:%d", i ? ", " : "", c->client_port[i]);
  px_buf_append(&b, "]", 2);
  snprintf(out, n, "%s", b.data);
  px_buf_free(&b);
}

int te_kill(te_cluster_t *c, int i, int sig) {
  pid_t pid = c->pid[i];
  if (pid <= 0) return -1;
  kill(pid, sig);
  if (th_wait_exit(pid, 5000) == -2) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  c->pid[i] = 0;
  return 0;
}

int te_restart(te_cluster_t *c, int i) {
  if (c->pid[i] > 0) te_kill(c, i, SIGTERM);
  if (spawn_member(c, i) != 0) return -1;
  if (wait_healthy(c, i, i + 1) == 0) return 0;
  te_log_tail(c, 2000);
  return -1;
}

int te_restart_first(te_cluster_t *c, int n) {
  for (int i = 0; i < n; i++) {
    if (c->pid[i] > 0) te_kill(c, i, SIGTERM);
    if (spawn_member(c, i) != 0) return -1;
  }
  if (wait_healthy(c, 0, n) == 0) return 0;
  te_log_tail(c, 2000);
  return -1;
}

int te_post(const te_cluster_t *c, const char *path, const char *body, th_resp_t *out) {
  px_buf_t req = {0};
  for (int i = 0; i < c->n; i++) {
    if (c->pid[i] <= 0) continue;
    req.len = 0;
    px_buf_printf(&req,
                  "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                  path, c->client_port[i], strlen(body), body);
    if (th_request(c->client_port[i], req.data, req.len, out, 5000) != 0) continue;
    if (out->status == 200) {
      px_buf_free(&req);
      return 0;
    }
    th_resp_free(out);
  }
  px_buf_free(&req);
  return -1;
}

/* POSTs and takes the answer's header.revision: 0 with *revision (may be NULL), or -1. */
static int post_rev(const te_cluster_t *c, const char *path, const char *body, int64_t *revision) {
  th_resp_t r;
  if (te_post(c, path, body, &r) != 0) return -1;
  int64_t rev;
  int rc = px_etcd_parse_header(r.body, r.body_len, &rev, NULL);
  th_resp_free(&r);
  if (rc != 0) return -1;
  if (revision) *revision = rev;
  return 0;
}

int te_put(const te_cluster_t *c, const char *key, const char *value) {
  px_buf_t b = {0};
  px_etcd_put_body(&b, key, strlen(key), value, strlen(value), 0);
  px_buf_append(&b, "", 1);
  int rc = post_rev(c, "/v3/kv/put", b.data, NULL);
  px_buf_free(&b);
  return rc;
}

int te_compact(const te_cluster_t *c, int64_t revision) {
  char body[96];
  snprintf(body, sizeof(body), "{\"revision\":\"%lld\",\"physical\":true}", (long long)revision);
  return post_rev(c, "/v3/kv/compaction", body, NULL);
}

int64_t te_revision(const te_cluster_t *c) {
  int64_t rev;
  /* A range of one key that need not exist: the header has the store's revision. */
  return post_rev(c, "/v3/kv/range", "{\"key\":\"AA==\",\"count_only\":true}", &rev) == 0 ? rev : -1;
}

void te_stop(te_cluster_t *c) {
  /* SIGKILL at once: the data goes with the directory, so a graceful stop saves nothing,
   * and it is slow: members stopped together wait for each other (leader transfer, the
   * peers' streams), 6 s for three, which would be 2 s (the SIGTERM grace before a
   * SIGKILL) in every test. te_kill(c, i, SIGTERM) is there for a test that wants one. */
  for (int i = 0; i < c->n && i < TE_MAX_MEMBERS; i++)
    if (c->pid[i] > 0) kill(c->pid[i], SIGKILL);
  for (int i = 0; i < c->n && i < TE_MAX_MEMBERS; i++)
    if (c->pid[i] > 0) {
      waitpid(c->pid[i], NULL, 0); /* SIGKILL cannot be caught: this returns */
      c->pid[i] = 0;
    }
  th_tmpdir_remove(c->dir);
  c->dir = NULL;
}
