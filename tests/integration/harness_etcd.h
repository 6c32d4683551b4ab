/* A real etcd cluster for the registry tests: Debian's etcd-server (3.4) started on free
 * loopback ports with data under one temporary directory, stopped by PID.
 *
 * Members run with --heartbeat-interval 50 --election-timeout 500 so that a cluster is
 * healthy within a second and elects a new leader within about one after a member dies.
 * That also lowers the shortest lease etcd grants: it is 1.5 election timeouts rounded up
 * to whole seconds, so 1 s here (2 s with etcd's defaults); a grant of TTL 1 gets 1.
 * etcd expires leases on a 500 ms tick, so a lease of TTL t goes within t + 0.5 s of
 * its last keepalive.
 *
 * Every wait is bounded; a cluster that does not come up fails the test with the tail of
 * the members' logs. Every member's log goes to DIR/mI.log (etcd's zap logger), whatever
 * it prints before that to DIR/mI.out; te_log_tail shows them. */
#ifndef TE_HARNESS_ETCD_H
#define TE_HARNESS_ETCD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

#define TE_MAX_MEMBERS 5

typedef struct {
  int n;
  pid_t pid[TE_MAX_MEMBERS]; /* 0: not running */
  int client_port[TE_MAX_MEMBERS], peer_port[TE_MAX_MEMBERS];
  char *dir; /* temporary data root: DIR/mI (data), DIR/mI.log, DIR/mI.out */
  char token[64];
  char initial[1024]; /* --initial-cluster */
} te_cluster_t;

/* Starts a cluster of `members` (1..TE_MAX_MEMBERS) and waits (at most ~10 s) until
 * every member says {"health":"true"}: 0, or the test fails with the logs' tails. */
int te_start(te_cluster_t *c, int members);
/* Member i's client URL, "http://127.0.0.1:PORT". */
void te_url(const te_cluster_t *c, int i, char *out, size_t n);
/* Every member's client URL as a YAML flow list, "[http://127.0.0.1:P1, ...]". */
void te_urls_yaml(const te_cluster_t *c, char *out, size_t n);
/* Sends sig to member i and waits (at most 5 s, then SIGKILL) for it to exit: 0, or -1
 * when it was not running. */
int te_kill(te_cluster_t *c, int i, int sig);
/* Starts member i again (same ports and data) and waits (at most ~10 s) for its health:
 * 0, or -1 (with the log's tail printed). */
int te_restart(te_cluster_t *c, int i);
/* Starts members 0..n-1 again at once (after every member was stopped: each needs the
 * others for a quorum) and waits (at most ~10 s) for their health: 0 or -1. */
int te_restart_first(te_cluster_t *c, int n);
/* Waits (at most ~10 s) until every running member says {"health":"true"} (after a
 * kill: a new leader is elected): 0 or -1. */
int te_wait_healthy(const te_cluster_t *c);
/* POSTs a JSON body to the gateway of the first running member that answers: 0 with
 * the answer in *out (th_resp_free it), or -1. */
int te_post(const te_cluster_t *c, const char *path, const char *body, th_resp_t *out);
/* Puts key = value (no lease), for tests writing foreign or malformed records: 0 or -1. */
int te_put(const te_cluster_t *c, const char *key, const char *value);
/* Compacts the store up to revision (physical: done when this returns): 0 or -1. */
int te_compact(const te_cluster_t *c, int64_t revision);
/* The store's current revision (from a range's header), or -1. */
int64_t te_revision(const te_cluster_t *c);
/* Prints the last `bytes` of every member's logs to stderr. */
void te_log_tail(const te_cluster_t *c, size_t bytes);
/* Kills every member (SIGKILL: see harness_etcd.c for why not SIGTERM first), waits for
 * them and removes the directory. Safe to call twice, and on a zeroed cluster that never started. */
void te_stop(te_cluster_t *c);

#endif
