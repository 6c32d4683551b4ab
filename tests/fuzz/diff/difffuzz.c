/* difffuzz: the differential fuzzer of the real binary (diff.h, tests/fuzz/README.md).
 *
 *   difffuzz --outrigger PATH [--seed N] [--from K] [--seconds S] [--cases N]
 *            [--replay FILE|DIR]... [--save DIR] [--keep-going] [--quiet]
 *
 * Starts `outrigger` (one worker) in front of the strict fake upstream, replays the saved
 * cases, then runs generated ones from --seed (numbered from --from, so that one case, or
 * the run up to it, can be made again) until --seconds or --cases is reached. Each
 * case is one client connection: its bytes sent (in pieces, maybe half-closed), the
 * answers read until the connection ends, or every request is answered and nothing more
 * comes, or 3 s pass. A failing case is printed and saved under --save (default
 * ./difffuzz-failures) as a file --replay takes; the sidecar is then restarted. Exit 0
 * when every case passed, 1 when one failed, 2 on a usage or start-up error. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diff.h"
#include "ref_http1.h"

/* Test processes leave what they hold at exit; the binary under test is checked. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "detect_leaks=0"; }

/* SIGINT / SIGTERM: finish the case at hand, then stop as at the end of a run. */
static volatile sig_atomic_t stop_asked;
static void on_stop_signal(int sig) { stop_asked = sig; }

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
  const char *bin;
  char dir[256], cfg[320], log[320];
  int port, admin, upstream_port;
  pid_t pid;
} sidecar_t;

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {
      .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

static void print_log_tail(const sidecar_t *s) {
  FILE *f = fopen(s->log, "r");
  if (!f) return;
  static char buf[8192];
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, n > (long)sizeof(buf) - 1 ? n - (long)sizeof(buf) + 1 : 0, SEEK_SET);
  size_t got = fread(buf, 1, sizeof(buf) - 1, f);
  buf[got] = '\0';
  fclose(f);
  fprintf(stderr, "--- the sidecar's log (end) ---\n%s\n---\n", buf);
}

/* Sanitizer reports in the sidecar's log are failures whatever the answers were. */
static int log_has_report(const sidecar_t *s) {
  FILE *f = fopen(s->log, "r");
  if (!f) return 0;
  char line[1024];
  int found = 0;
  while (!found && fgets(line, sizeof(line), f))
    found =
        strstr(line, "AddressSanitizer") || strstr(line, "runtime error:") || strstr(line, "LeakSanitizer");
  fclose(f);
  return found;
}

static int sidecar_start(sidecar_t *s) {
  s->port = free_port();
  s->admin = free_port();
  FILE *f = fopen(s->cfg, "w");
  if (!f) return -1;
  fprintf(f,
          "workers: 1\nadmin: { address: 127.0.0.1:%d }\nlog: { level: error }\n"
          "listeners:\n  - name: edge\n    address: 127.0.0.1:%d\n"
          "    limits: { header_timeout: 5s, idle_timeout: 10s }\n"
          "    routes:\n      - { name: r, match: { prefix: / }, cluster: c, timeout: 5s }\n"
          "clusters:\n  - { name: c, endpoints: [127.0.0.1:%d] }\n",
          s->admin, s->port, s->upstream_port);
  fclose(f);
  s->pid = fork();
  if (s->pid < 0) return -1;
  if (s->pid == 0) {
    /* Whatever ends the driver (a ctest timeout, ^C) ends the sidecar too. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(127);
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(s->bin, s->bin, "-c", s->cfg, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 500; i++) { /* 5 s */
    int fd = connect_to(s->port);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    if (waitpid(s->pid, NULL, WNOHANG) == s->pid) break;
    usleep(10000);
  }
  fprintf(stderr, "difffuzz: %s did not start\n", s->bin);
  print_log_tail(s);
  return -1;
}

static void sidecar_stop(sidecar_t *s) {
  if (s->pid <= 0) return;
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 200 && waitpid(s->pid, NULL, WNOHANG) == 0; i++) usleep(10000);
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
}

static int sidecar_alive(sidecar_t *s) { return s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0; }

/* How many answers the client's bytes call for at most, and their methods, by the
 * oracle; `valid` of them are for complete valid requests. */
static int expected_answers(const df_case_t *c, char methods[][16], int max, int *valid) {
  ref_msg_t *m = px_malloc(sizeof(*m));
  size_t off = 0;
  int n = 0;
  for (;;) {
    ref_result_t r = ref_parse_request((const char *)c->client + off, c->client_len - off, m);
    if (r != REF_COMPLETE) {
      *valid = n;
      if (r == REF_INVALID && n < max) snprintf(methods[n++], 16, "GET"); /* the tail's refusal */
      break;
    }
    if (n < max)
      snprintf(methods[n++], 16, "%.*s", (int)(m->method_len < 15 ? m->method_len : 15), m->method);
    off += m->wire_len;
    ref_msg_free(m);
  }
  free(m);
  return n;
}

/* Complete answers in buf, read in order for `methods`. */
static int count_answers(const px_buf_t *b, char methods[][16], int n, ref_msg_t *m) {
  size_t off = 0;
  int k = 0;
  while (k < n) {
    ref_result_t r = ref_parse_response(b->data ? b->data + off : "", b->len - off, methods[k], 0, m);
    if (r != REF_COMPLETE) break;
    off += m->wire_len;
    if (m->status >= 200) k++;
    ref_msg_free(m);
  }
  return off == b->len ? k : -1; /* -1: a partial answer is in */
}

typedef struct {
  long cases, failures, requests, answered, refused_valid, resends, mutated, tails[3];
  char refusals[16][128];
  long refusal_count[16];
  int nrefusals;
} totals_t;

static void count_refusal(totals_t *t, const char *detail) {
  char key[128] = {0};
  memcpy(key, detail, PX_MIN(strlen(detail), sizeof(key) - 1));
  for (int i = 0; i < t->nrefusals; i++)
    if (strcmp(t->refusals[i], key) == 0) {
      t->refusal_count[i]++;
      return;
    }
  if (t->nrefusals < 16) {
    snprintf(t->refusals[t->nrefusals], sizeof(t->refusals[0]), "%s", key);
    t->refusal_count[t->nrefusals++] = 1;
  }
}

/* Runs one case against the sidecar; 0 when it passed. */
static int run_case(sidecar_t *s, df_upstream_t *up, const df_case_t *c, totals_t *t, const char *save_dir,
                    int quiet) {
  df_upstream_begin(up, c);
  int fd = connect_to(s->port);
  if (fd < 0) {
    fprintf(stderr, "difffuzz: cannot connect to the sidecar\n");
    return -1;
  }
  size_t sent = 0;
  for (int k = 0; k <= c->nsplits; k++) {
    size_t upto = k < c->nsplits ? c->splits[k] : c->client_len;
    if (upto < sent) continue;
    while (sent < upto) {
      ssize_t w = send(fd, c->client + sent, upto - sent, MSG_NOSIGNAL);
      if (w <= 0) break;
      sent += (size_t)w;
    }
    if (sent < upto) break; /* the sidecar closed: it may have answered already */
    if (k < c->nsplits) usleep(1000 + (unsigned)(c->id % 3) * 1000);
  }
  if (c->half_close) shutdown(fd, SHUT_WR);

  char methods[16][16];
  int valid;
  int want = expected_answers(c, methods, 16, &valid);
  ref_msg_t *m = px_malloc(sizeof(*m));
  px_buf_t got = {0};
  int eof = 0;
  long long deadline = mono_ms() + 3000, quiet_since = 0;
  for (;;) {
    long long now = mono_ms();
    if (now >= deadline) break;
    int wait = (int)(deadline - now);
    int have = count_answers(&got, methods, want, m);
    if (have >= valid && deadline > now + 250) deadline = now + 250; /* the tail's answer is optional */
    if (have >= want) { /* all in: a short wait for anything more */
      if (quiet_since == 0) quiet_since = now;
      if (now - quiet_since >= 25) break;
      wait = 25 - (int)(now - quiet_since);
    } else {
      quiet_since = 0;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, wait) <= 0) continue;
    char *dst = px_buf_reserve(&got, 65536);
    ssize_t n = recv(fd, dst, 65536, 0);
    if (n <= 0) {
      eof = 1; /* EOF, or a reset: either way the connection ended */
      break;
    }
    got.len += (size_t)n;
    quiet_since = 0;
  }
  close(fd);
  free(m);
  df_upstream_settle(up, 10, 1000);

  int nup;
  df_upreq_t *ups = df_upstream_requests(up, &nup);
  px_buf_t detail = {0};
  df_stats_t st;
  const char *verdict = df_judge(c, (const unsigned char *)got.data, got.len, eof, ups, nup, &st, &detail);
  const char *violation = df_upstream_violation(up, &detail);
  if (!verdict && violation) verdict = "a malformed request reached the upstream";
  int died = !sidecar_alive(s);
  if (!verdict && died) verdict = "the sidecar died";
  if (!verdict && log_has_report(s)) verdict = "the sidecar's log has a sanitizer report";
  t->cases++;
  t->requests += st.requests;
  t->answered += st.answered;
  t->refused_valid += st.refused_valid;
  t->resends += st.resends;
  t->mutated += c->mutated;
  t->tails[st.tail]++;
  if (st.refused_valid) count_refusal(t, st.refusal_detail);
  if (verdict) {
    t->failures++;
    px_buf_t desc = {0};
    df_case_describe(c, &desc);
    fprintf(stderr, "\nFAIL %s\n%.*s", verdict, (int)desc.len, desc.data);
    if (violation) fprintf(stderr, "  upstream violation: %s\n", violation);
    fprintf(stderr, "  detail: %.*s\n  the client got (%zu bytes%s): \"", (int)detail.len,
            detail.data ? detail.data : "", got.len,
            eof ? ", then the connection ended" : ", the connection still open");
    px_buf_t e = {0};
    df_escape(&e, got.data, got.len > 4096 ? 4096 : got.len);
    fprintf(stderr, "%.*s\"\n  the upstream got %d request(s)\n", (int)e.len, e.data ? e.data : "", nup);
    px_buf_free(&e);
    px_buf_free(&desc);
    if (died || log_has_report(s)) print_log_tail(s);
    mkdir(save_dir, 0755);
    char path[512];
    snprintf(path, sizeof(path), "%s/case-%llu.case", save_dir, (unsigned long long)c->id);
    if (df_case_save(c, path) == 0) fprintf(stderr, "  saved as %s\n", path);
  } else if (!quiet && t->cases % 500 == 0) {
    fprintf(stderr, "difffuzz: %ld cases, %ld failures\n", t->cases, t->failures);
  }
  free(ups);
  px_buf_free(&detail);
  px_buf_free(&got);
  return verdict ? 1 : 0;
}

static int replay_path(sidecar_t *s, df_upstream_t *up, const char *path, totals_t *t, const char *save_dir,
                       int keep_going, int quiet) {
  struct stat stt;
  if (stat(path, &stt) != 0) {
    fprintf(stderr, "difffuzz: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (S_ISDIR(stt.st_mode)) {
    DIR *d = opendir(path);
    struct dirent *e;
    int rc = 0;
    char names[512][256];
    int n = 0;
    while (d && (e = readdir(d)) && n < 512)
      if (e->d_name[0] != '.' && strstr(e->d_name, ".case"))
        snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
      px_buf_t full = {0};
      px_buf_printf(&full, "%s/%s", path, names[i]);
      int r = replay_path(s, up, full.data, t, save_dir, keep_going, quiet);
      px_buf_free(&full);
      if (r < 0) return r;
      rc |= r;
      if (rc && !keep_going) break;
    }
    return rc;
  }
  df_case_t c;
  if (df_case_load(&c, path) != 0) {
    fprintf(stderr, "difffuzz: %s: not a case file\n", path);
    return -1;
  }
  int r = run_case(s, up, &c, t, save_dir, quiet);
  df_case_free(&c);
  if (r > 0 && !sidecar_alive(s)) {
    sidecar_stop(s);
    if (sidecar_start(s) != 0) return -1;
  }
  return r;
}

static void usage(void) {
  fprintf(stderr, "usage: difffuzz --outrigger PATH [--seed N] [--from K] [--seconds S] [--cases N]\n"
                  "                [--replay FILE|DIR]... [--save DIR] [--keep-going] [--quiet]\n");
}

int main(int argc, char **argv) {
  sidecar_t s = {0};
  unsigned long long seed = 1;
  long seconds = 0, max_cases = -1, from = 0;
  const char *save_dir = "difffuzz-failures";
  const char *replays[64];
  int nreplays = 0, keep_going = 0, quiet = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--outrigger") && v)
      s.bin = argv[++i];
    else if (!strcmp(a, "--seed") && v)
      seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--seconds") && v)
      seconds = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--cases") && v)
      max_cases = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--from") && v)
      from = strtol(argv[++i], NULL, 10);
    else if (!strcmp(a, "--replay") && v && nreplays < 64)
      replays[nreplays++] = argv[++i];
    else if (!strcmp(a, "--save") && v)
      save_dir = argv[++i];
    else if (!strcmp(a, "--keep-going"))
      keep_going = 1;
    else if (!strcmp(a, "--quiet"))
      quiet = 1;
    else {
      usage();
      return 2;
    }
  }
  if (!s.bin) {
    usage();
    return 2;
  }
  if (seconds == 0 && max_cases < 0) max_cases = 0;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
  snprintf(s.dir, sizeof(s.dir), "/tmp/difffuzz.XXXXXX");
  if (!mkdtemp(s.dir)) {
    perror("difffuzz: mkdtemp");
    return 2;
  }
  snprintf(s.cfg, sizeof(s.cfg), "%s/outrigger.yaml", s.dir);
  snprintf(s.log, sizeof(s.log), "%s/outrigger.log", s.dir);
  df_upstream_t *up = df_upstream_start();
  if (!up) {
    fprintf(stderr, "difffuzz: cannot start the upstream\n");
    return 2;
  }
  s.upstream_port = df_upstream_port(up);
  if (sidecar_start(&s) != 0) return 2;

  totals_t t = {0};
  long long start = mono_ms();
  int rc = 0;
  for (int i = 0; i < nreplays && (rc == 0 || keep_going); i++) {
    int r = replay_path(&s, up, replays[i], &t, save_dir, keep_going, quiet);
    if (r < 0) {
      rc = 2;
      break;
    }
    rc |= r;
  }
  long replayed = t.cases;
  for (unsigned long long n = (unsigned long long)from; rc != 2 && (rc == 0 || keep_going); n++) {
    if (max_cases >= 0 && (long)n - from >= max_cases) break;
    if (seconds > 0 && mono_ms() - start >= seconds * 1000) break;
    if (stop_asked) break;
    df_case_t c;
    df_case_generate(&c, seed * 1000003ull + n);
    int r = run_case(&s, up, &c, &t, save_dir, quiet);
    df_case_free(&c);
    if (r < 0) {
      rc = 2;
      break;
    }
    if (r > 0) {
      rc = 1;
      sidecar_stop(&s); /* a clean sidecar for what follows */
      if (sidecar_start(&s) != 0) {
        rc = 2;
        break;
      }
    }
  }
  double secs = (double)(mono_ms() - start) / 1000.0;
  fprintf(
      stderr,
      "difffuzz: seed %llu: %ld cases (%ld replayed) in %.0f s, %.0f/s: %ld failures\n"
      "  %ld requests valid by the oracle, %ld answered by the upstream, %ld refused by the sidecar, %ld resent;\n"
      "  %ld cases mutated; tails: %ld none, %ld incomplete, %ld invalid\n",
      seed, t.cases, replayed, secs, secs > 0 ? (double)t.cases / secs : 0.0, t.failures, t.requests,
      t.answered, t.refused_valid, t.resends, t.mutated, t.tails[0], t.tails[1], t.tails[2]);
  for (int i = 0; i < t.nrefusals; i++)
    fprintf(stderr, "  refused although valid: %ld x %s\n", t.refusal_count[i], t.refusals[i]);
  sidecar_stop(&s);
  df_upstream_stop(up);
  unlink(s.cfg);
  unlink(s.log);
  rmdir(s.dir);
  return rc;
}
