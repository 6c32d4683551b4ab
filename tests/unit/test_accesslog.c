/* The access log (proxy/accesslog.h): the line byte for byte, its escaping, its
 * bounds and its time, then the writer thread with real files, a FIFO nobody reads
 * (a stalled destination), /dev/full (a failing one), rotation by SIGUSR1 and close.
 * Criterion runs each test in its own process; the files live in a fresh directory
 * under /tmp that the fixture removes. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "json.h"

#define S(lit) PX_STR(lit)
#define NS 1000000000ull
/* 2026-12-01T20:59:33Z */
#define T0 1796158773ull

/* ---- helpers ------------------------------------------------------------------ */

static char dir[64];
static px_buf_t out;

static void setup(void) {
  strcpy(dir, "/tmp/px_accesslog_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  out = (px_buf_t){0};
}

static void teardown(void) {
  px_buf_free(&out);
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

TestSuite(accesslog, .init = setup, .fini = teardown, .timeout = 60);

static const char *path_in_dir(const char *name) {
  static char p[4][256];
  static int i;
  char *r = p[i++ % 4];
  snprintf(r, sizeof(p[0]), "%s/%s", dir, name);
  return r;
}

static px_access_t full_record(void) {
  return (px_access_t){
      .time_ns = T0 * NS + 123456789,
      .duration_ns = 1234567,
      .listener = S("inbound"),
      .route = S("api"),
      .method = S("GET"),
      .path = S("/v1/items?id=7"),
      .status = 504,
      .cluster = S("backend"),
      .endpoint = S("127.0.0.1:8080"),
      .attempts = 2,
      .bytes_in = 312,
      .bytes_out = 4096,
      .trace_id = S("4bf92f3577b34da6a3ce929d0e0e4736"),
      .request_id = S("req-1"),
      .error = S("upstream_timeout"),
      .client = S("127.0.0.1:5555"),
      .client_identity = S("spiffe://cluster.local/ns/default/sa/web"),
  };
}

/* The line for `a`, NUL-terminated (in `out`). */
static const char *fmt(const px_access_t *a) {
  out.len = 0;
  px_access_format(a, &out);
  px_buf_reserve(&out, 1)[0] = '\0';
  return out.data;
}

/* Parses one line (without its "\n"); fails the test when it is not JSON. */
static px_json_t *parse(const char *s, size_t n) {
  char err[128] = "";
  px_json_t *v = px_json_parse(s, n, err, sizeof(err));
  cr_assert_not_null(v, "not JSON (%s): %.*s", err, (int)n, s);
  cr_assert_eq(px_json_type(v), PX_JSON_OBJECT);
  return v;
}

static px_json_t *parse_line(const char *line) {
  size_t n = strlen(line);
  cr_assert(n > 0 && line[n - 1] == '\n', "no newline at the end");
  cr_assert_null(memchr(line, '\n', n - 1), "a newline inside the line");
  return parse(line, n - 1);
}

static const char *get_str(const px_json_t *v, const char *key, size_t *len) {
  const px_json_t *m = px_json_get(v, key);
  cr_assert_not_null(m, "no key %s", key);
  return px_json_str(m, len);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s", path);
  px_buf_t b = {0};
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) px_buf_append(&b, tmp, n);
  fclose(f);
  px_buf_reserve(&b, 1)[0] = '\0';
  *len = b.len;
  return b.data;
}

/* Calls `fn` with every line of `data` (each with its "\n"); returns how many. */
static size_t each_line(char *data, size_t len, void (*fn)(const char *line, void *arg), void *arg) {
  size_t count = 0;
  char *p = data, *end = data + len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    cr_assert_not_null(nl, "a line without its newline at the end");
    char keep = nl[1];
    nl[1] = '\0';
    fn(p, arg);
    nl[1] = keep;
    count++;
    p = nl + 1;
  }
  return count;
}

static double since(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Waits (up to 10 s) for `cond` about the log's counters. */
#define WAIT_FOR(log, st, cond)                                                                              \
  do {                                                                                                       \
    struct timespec w0_;                                                                                     \
    clock_gettime(CLOCK_MONOTONIC, &w0_);                                                                    \
    for (;;) {                                                                                               \
      px_access_log_stats((log), &(st));                                                                     \
      if (cond) break;                                                                                       \
      cr_assert(since(&w0_) < 10, "timed out waiting for " #cond);                                           \
      usleep(1000);                                                                                          \
    }                                                                                                        \
  } while (0)

/* A record with request id "<tag>-<seq>". */
static px_access_t tagged(char *idbuf, size_t cap, const char *tag, int seq) {
  px_access_t a = full_record();
  int n = snprintf(idbuf, cap, "%s-%d", tag, seq);
  a.request_id = (px_str_t){idbuf, (size_t)n};
  return a;
}

/* ---- the line ----------------------------------------------------------------- */

Test(accesslog, full_record_exact) {
  px_access_t a = full_record();
  cr_assert_str_eq(fmt(&a),
                   "{\"time\":\"2026-12-01T20:59:33.123Z\",\"listener\":\"inbound\",\"route\":\"api\","
                   "\"method\":\"GET\",\"path\":\"/v1/items?id=7\",\"status\":504,\"duration_ms\":1.234,"
                   "\"upstream_cluster\":\"backend\",\"upstream_endpoint\":\"127.0.0.1:8080\","
                   "\"attempts\":2,\"bytes_in\":312,\"bytes_out\":4096,"
                   "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"request_id\":\"req-1\","
                   "\"error\":\"upstream_timeout\",\"client\":\"127.0.0.1:5555\","
                   "\"client_identity\":\"spiffe://cluster.local/ns/default/sa/web\"}\n");
  px_json_t *v = parse_line(out.data);
  size_t n;
  cr_expect_str_eq(get_str(v, "path", &n), "/v1/items?id=7");
  int64_t i;
  cr_expect_eq(px_json_int(px_json_get(v, "status"), &i), 0);
  cr_expect_eq(i, 504);
  double d;
  cr_expect_eq(px_json_num(px_json_get(v, "duration_ms"), &d), 0);
  cr_expect_float_eq(d, 1.234, 1e-9);
  cr_expect_null(px_json_get(v, "path_truncated"));
  cr_expect_eq(px_json_count(v), 17);
  px_json_free(v);
}

Test(accesslog, minimal_record_exact) {
  /* no route matched, the client went away before any answer */
  px_access_t a = {.listener = S("in"), .method = S("POST"), .path = S("/"), .client = S("[::1]:40000")};
  cr_assert_str_eq(fmt(&a), "{\"time\":\"1970-01-01T00:00:00.000Z\",\"listener\":\"in\",\"route\":null,"
                            "\"method\":\"POST\",\"path\":\"/\",\"status\":0,\"duration_ms\":0.000,"
                            "\"upstream_cluster\":null,\"upstream_endpoint\":null,\"attempts\":0,"
                            "\"bytes_in\":0,\"bytes_out\":0,\"trace_id\":null,\"request_id\":null,"
                            "\"error\":null,\"client\":\"[::1]:40000\",\"client_identity\":null}\n");
  px_json_t *v = parse_line(out.data);
  cr_expect(px_json_is_null(px_json_get(v, "route")));
  cr_expect(px_json_is_null(px_json_get(v, "client_identity")));
  cr_expect_eq(px_json_count(v), 17, "every key, empty ones as null");
  px_json_free(v);

  /* all empty, even the path */
  px_access_t z = {0};
  v = parse_line(fmt(&z));
  cr_expect(px_json_is_null(px_json_get(v, "path")));
  px_json_free(v);
}

Test(accesslog, numbers) {
  px_access_t a = full_record();
  a.duration_ns = 5000000000ull + 7000; /* 5 s and 7 µs */
  a.status = -1;                        /* nonsense in: 0 out */
  a.attempts = -3;
  a.bytes_in = UINT64_MAX;
  a.bytes_out = 0;
  fmt(&a);
  cr_expect(strstr(out.data, "\"duration_ms\":5000.007,"));
  cr_expect(strstr(out.data, "\"status\":0,"));
  cr_expect(strstr(out.data, "\"attempts\":0,"));
  cr_expect(strstr(out.data, "\"bytes_in\":18446744073709551615,\"bytes_out\":0,"));
  a.duration_ns = 999; /* under a microsecond */
  fmt(&a);
  cr_expect(strstr(out.data, "\"duration_ms\":0.000,"));
  a.duration_ns = 1999999;
  fmt(&a);
  cr_expect(strstr(out.data, "\"duration_ms\":1.999,"), "truncated, not rounded");
}

Test(accesslog, appends_to_what_is_there) {
  px_access_t a = full_record();
  px_buf_append_cstr(&out, "before|");
  px_access_format(&a, &out);
  px_access_format(&a, &out);
  cr_assert(out.len > 7 && memcmp(out.data, "before|", 7) == 0);
  px_buf_t one = {0};
  px_access_format(&a, &one);
  cr_expect_eq(out.len, 7 + 2 * one.len);
  cr_expect(memcmp(out.data + 7, one.data, one.len) == 0);
  cr_expect(memcmp(out.data + 7 + one.len, one.data, one.len) == 0);
  px_buf_free(&one);
}

Test(accesslog, escaping) {
  /* quotes, backslash, controls, DEL; valid UTF-8 (2 and 4 bytes) kept as it is; not
   * UTF-8: a lone 0xff, a lone continuation byte, an overlong '/', a surrogate, and a
   * sequence cut at the end */
  static const char path[] =
      "/a\"b\\c\x01\n\t\r\x1f\x7f|\xc3\xa9|\xf0\x9f\x98\x80|\xff|\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82";
  px_access_t a = full_record();
  a.path = (px_str_t){path, sizeof(path) - 1};
  a.listener = S("q\"l");
  a.request_id = S("back\\slash");
  fmt(&a);
  const char *want =
      "\"path\":\"/a\\\"b\\\\c\\u0001\\n\\t\\r\\u001f\\u007f|\xc3\xa9|\xf0\x9f\x98\x80|\\u00ff|"
      "\\u0080|\\u00c0\\u00af|\\u00ed\\u00a0\\u0080|\\u00e2\\u0082\",";
  cr_expect(strstr(out.data, want), "got %s", out.data);
  cr_expect(strstr(out.data, "\"listener\":\"q\\\"l\","));
  cr_expect(strstr(out.data, "\"request_id\":\"back\\\\slash\","));

  px_json_t *v = parse_line(out.data);
  size_t n;
  const char *p = get_str(v, "path", &n);
  /* what the escapes decode to: the bytes that were not UTF-8 as U+00XX */
  static const char back[] =
      "/a\"b\\c\x01\n\t\r\x1f\x7f|\xc3\xa9|\xf0\x9f\x98\x80|\xc3\xbf|\xc2\x80|\xc3\x80\xc2\xaf|"
      "\xc3\xad\xc2\xa0\xc2\x80|\xc3\xa2\xc2\x82";
  cr_expect_eq(n, sizeof(back) - 1);
  cr_expect(memcmp(p, back, n) == 0);
  cr_expect_str_eq(get_str(v, "listener", &n), "q\"l");
  px_json_free(v);

  /* a NUL byte in the middle */
  a.path = (px_str_t){"/x\0y", 4};
  fmt(&a);
  cr_expect(strstr(out.data, "\"path\":\"/x\\u0000y\","));
}

Test(accesslog, any_bytes_make_valid_json) {
  srand(7);
  char path[3000];
  px_access_t a = full_record();
  for (int iter = 0; iter < 3000; iter++) {
    size_t n = (size_t)rand() % sizeof(path);
    int ascii = iter % 3 == 0; /* some mostly-printable ones, some anything */
    for (size_t i = 0; i < n; i++) path[i] = (char)(ascii ? 0x20 + rand() % 0x60 : rand() % 256);
    a.path = (px_str_t){path, n};
    a.request_id = (px_str_t){path, PX_MIN(n, 300)};
    fmt(&a);
    px_json_t *v = parse_line(out.data);
    size_t m;
    const char *p = px_json_str(px_json_get(v, "path"), &m);
    if (n == 0) cr_expect(px_json_is_null(px_json_get(v, "path")));
    /* printable ASCII comes back as it was, up to the bound */
    if (ascii && n) cr_expect(m == PX_MIN(n, PX_ACCESS_PATH_MAX) && memcmp(p, path, m) == 0);
    cr_expect_eq(px_json_get(v, "path_truncated") != NULL, n > PX_ACCESS_PATH_MAX);
    px_json_free(v);
  }
}

Test(accesslog, valid_utf8_comes_back_unchanged) {
  /* every kind of sequence: 1 to 4 bytes, at the edges of the ranges */
  static const char s[] = "a\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80"
                          "\xf4\x8f\xbf\xbf~";
  px_access_t a = full_record();
  a.path = (px_str_t){s, sizeof(s) - 1};
  fmt(&a);
  cr_expect(strstr(out.data, s), "passed through, not escaped");
  px_json_t *v = parse_line(out.data);
  size_t n;
  const char *p = get_str(v, "path", &n);
  cr_expect(n == sizeof(s) - 1 && memcmp(p, s, n) == 0);
  px_json_free(v);
  /* just past the ranges: U+110000, and an overlong 3-byte form */
  a.path = S("\xf4\x90\x80\x80\xe0\x9f\xbf");
  fmt(&a);
  cr_expect(strstr(out.data, "\"path\":\"\\u00f4\\u0090\\u0080\\u0080\\u00e0\\u009f\\u00bf\""));
}

static size_t json_path_len(const char *line) {
  px_json_t *v = parse_line(line);
  size_t n;
  get_str(v, "path", &n);
  px_json_free(v);
  return n;
}

Test(accesslog, path_truncation) {
  static char p[4000];
  memset(p, 'a', sizeof(p));
  px_access_t a = full_record();

  a.path = (px_str_t){p, PX_ACCESS_PATH_MAX};
  fmt(&a);
  cr_expect_null(strstr(out.data, "path_truncated"), "exactly the bound is kept whole");
  cr_expect_eq(json_path_len(out.data), PX_ACCESS_PATH_MAX);

  a.path = (px_str_t){p, sizeof(p)};
  fmt(&a);
  cr_expect(strstr(out.data, "\",\"path_truncated\":true,\"status\":504,"));
  cr_expect_eq(json_path_len(out.data), PX_ACCESS_PATH_MAX);

  /* a 2-byte character across the bound is left out whole, not cut in two */
  p[PX_ACCESS_PATH_MAX - 1] = '\xc3';
  p[PX_ACCESS_PATH_MAX] = '\xa9';
  fmt(&a);
  cr_expect_null(strstr(out.data, "\\u00c3"));
  cr_expect_eq(json_path_len(out.data), PX_ACCESS_PATH_MAX - 1);
  /* and a 4-byte one with one byte past it */
  memcpy(p + PX_ACCESS_PATH_MAX - 3, "\xf0\x9f\x98\x80", 4);
  fmt(&a);
  cr_expect_null(strstr(out.data, "\\u00f0"));
  cr_expect_eq(json_path_len(out.data), PX_ACCESS_PATH_MAX - 3);

  /* escapes make the line longer than the path, never the path longer than the bound */
  memset(p, '"', sizeof(p));
  a.path = (px_str_t){p, sizeof(p)};
  fmt(&a);
  cr_expect_eq(json_path_len(out.data), PX_ACCESS_PATH_MAX);
  cr_expect_gt(out.len, 2 * PX_ACCESS_PATH_MAX);
}

Test(accesslog, other_fields_bounded) {
  static char id[1000];
  memset(id, 'r', sizeof(id));
  px_access_t a = full_record();
  a.request_id = (px_str_t){id, sizeof(id)};
  a.client_identity = (px_str_t){id, sizeof(id)};
  px_json_t *v = parse_line(fmt(&a));
  size_t n;
  get_str(v, "request_id", &n);
  cr_expect_eq(n, PX_ACCESS_FIELD_MAX);
  get_str(v, "client_identity", &n);
  cr_expect_eq(n, PX_ACCESS_FIELD_MAX);
  px_json_free(v);
}

/* ---- time --------------------------------------------------------------------- */

static const char *tstr(uint64_t ns) {
  static char s[PX_ACCESS_TIME_LEN + 1];
  px_access_time(ns, s);
  s[PX_ACCESS_TIME_LEN] = '\0';
  return s;
}

Test(accesslog, time_known_values) {
  cr_expect_str_eq(tstr(T0 * NS + 123456789), "2026-12-01T20:59:33.123Z");
  cr_expect_str_eq(tstr(0), "1970-01-01T00:00:00.000Z");
  cr_expect_str_eq(tstr(951782400ull * NS), "2000-02-29T00:00:00.000Z");
  cr_expect_str_eq(tstr(1835481599ull * NS + 999999999), "2028-02-29T23:59:59.999Z");
  cr_expect_str_eq(tstr(4102444800ull * NS - 1), "2099-12-31T23:59:59.999Z");
  cr_expect_str_eq(tstr(UINT64_MAX), "2554-07-21T23:34:33.709Z");
}

Test(accesslog, time_cache_across_seconds) {
  /* same second, then the next, then back: the cached second must follow */
  cr_expect_str_eq(tstr(T0 * NS + 1000000), "2026-12-01T20:59:33.001Z");
  cr_expect_str_eq(tstr(T0 * NS + 999999999), "2026-12-01T20:59:33.999Z");
  cr_expect_str_eq(tstr((T0 + 1) * NS), "2026-12-01T20:59:34.000Z");
  cr_expect_str_eq(tstr((T0 + 1) * NS + 500000000), "2026-12-01T20:59:34.500Z");
  cr_expect_str_eq(tstr(T0 * NS + 500000000), "2026-12-01T20:59:33.500Z");
  /* across a minute, an hour, a day and a year */
  uint64_t ny = 1798761600ull; /* 2027-01-01T00:00:00Z */
  cr_expect_str_eq(tstr(ny * NS - 1), "2026-12-31T23:59:59.999Z");
  cr_expect_str_eq(tstr(ny * NS), "2027-01-01T00:00:00.000Z");
  cr_expect_str_eq(tstr(ny * NS - 1), "2026-12-31T23:59:59.999Z");
}

Test(accesslog, time_matches_gmtime) {
  srand(11);
  uint64_t ns = T0 * NS;
  for (int i = 0; i < 50000; i++) {
    /* runs of close times (the cache), and jumps anywhere up to 2106 */
    if (i % 50 == 0)
      ns = ((uint64_t)rand() * 4u % 4294967296ull) * NS + (uint64_t)rand() % NS;
    else
      ns += (uint64_t)(rand() % 400) * 1000000u;
    time_t sec = (time_t)(ns / NS);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char want[96];
    snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ns % NS / 1000000));
    cr_assert_str_eq(tstr(ns), want, "at %llu ns", (unsigned long long)ns);
  }
}

Test(accesslog, now_is_wall_clock) {
  uint64_t t = px_access_now_ns();
  cr_expect_gt(t, T0 * NS - 365ull * 86400 * 5 * NS, "epoch time, not monotonic");
}

/* ---- the writer ----------------------------------------------------------------- */

typedef struct {
  px_access_log_t *log;
  int id, n;
  uint64_t retries;
} producer_t;

static void *produce(void *arg) {
  producer_t *p = arg;
  char tag[8], idbuf[64];
  snprintf(tag, sizeof(tag), "p%d", p->id);
  for (int i = 0; i < p->n; i++) {
    px_access_t a = tagged(idbuf, sizeof(idbuf), tag, i);
    while (px_access_log_write(p->log, p->id, &a) != 0) { /* full: the test waits, the proxy would not */
      p->retries++;
      usleep(100);
    }
  }
  return NULL;
}

typedef struct {
  int next[4];
  const char *tag; /* NULL: "p<producer>" ids, checked per producer */
  int bad;
} order_t;

/* Every line is JSON, and per producer the sequence numbers come 0, 1, 2, ... */
static void check_order(const char *line, void *arg) {
  order_t *o = arg;
  px_json_t *v = parse_line(line);
  size_t n;
  const char *id = get_str(v, "request_id", &n);
  cr_assert_not_null(id);
  int who = 0, seq = -1;
  if (o->tag) {
    size_t tl = strlen(o->tag);
    cr_assert(strncmp(id, o->tag, tl) == 0 && id[tl] == '-', "unexpected id %s", id);
    seq = atoi(id + tl + 1);
  } else {
    cr_assert_eq(sscanf(id, "p%d-%d", &who, &seq), 2, "unexpected id %s", id);
    cr_assert(who >= 0 && who < 4);
  }
  if (seq != o->next[who]) o->bad++;
  cr_assert_eq(seq, o->next[who], "producer %d: line %d where %d was due", who, seq, o->next[who]);
  o->next[who]++;
  px_json_free(v);
}

static size_t check_file(const char *path, const char *tag, int *per_producer) {
  size_t len;
  char *data = slurp(path, &len);
  order_t o = {.tag = tag};
  size_t lines = each_line(data, len, check_order, &o);
  free(data);
  if (per_producer)
    for (int i = 0; i < 4; i++) per_producer[i] = o.next[i];
  return lines;
}

Test(accesslog, two_producers_every_line_in_order) {
  const char *file = path_in_dir("access.log");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 2, 64 * 1024), 0);
  producer_t p[2] = {{log, 0, 10000, 0}, {log, 1, 10000, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&th[i], NULL, produce, &p[i]), 0);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);

  /* written without close(): the writer drains by itself */
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.lines_written == 20000);
  cr_expect_eq(st.lines_dropped, p[0].retries + p[1].retries, "every refused write is counted");
  cr_expect_eq(st.write_errors, 0);
  px_access_log_close(log);

  int per[4];
  cr_expect_eq(check_file(file, NULL, per), 20000);
  cr_expect_eq(per[0], 10000);
  cr_expect_eq(per[1], 10000);
  struct stat sb;
  cr_assert_eq(stat(file, &sb), 0);
  mode_t um = umask(0);
  umask(um);
  cr_expect_eq(sb.st_mode & 0777, 0644 & ~um, "mode 0644 (less the umask)");
}

Test(accesslog, one_line_reaches_the_file_without_close) {
  const char *file = path_in_dir("a.log");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 1 << 20), 0);
  px_access_t a = full_record();
  cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.lines_written == 1); /* the writer's period, not a half-full ring */
  size_t len;
  char *data = slurp(file, &len);
  cr_expect_str_eq(data, fmt(&a));
  free(data);
  px_access_log_close(log);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

Test(accesslog, half_full_ring_wakes_the_writer_early) {
  /* Just after a periodic drain the writer sleeps for PX_ACCESS_FLUSH_MS; a ring that
   * crosses half full must wake it long before. The median of five tries keeps a slow
   * scheduler from failing the test. */
  const char *file = path_in_dir("a.log");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 64 * 1024), 0);
  px_access_t a = full_record();
  size_t line = strlen(fmt(&a)), burst = 32 * 1024 / line + 1;
  px_access_log_stats_t st;
  uint64_t expect = 0;
  double dt[5];
  for (int k = 0; k < 5; k++) {
    cr_assert_eq(px_access_log_write(log, 0, &a), 0); /* below the mark: the period drains it */
    expect++;
    WAIT_FOR(log, st, st.lines_written == expect);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < burst; i++) cr_assert_eq(px_access_log_write(log, 0, &a), 0);
    expect += burst;
    WAIT_FOR(log, st, st.lines_written == expect);
    dt[k] = since(&t0);
  }
  px_access_log_close(log);
  qsort(dt, 5, sizeof(dt[0]), cmp_double);
  cr_expect_lt(dt[2], PX_ACCESS_FLUSH_MS / 2 / 1000.0, "median %.1f ms", dt[2] * 1000);
}

Test(accesslog, close_drains) {
  const char *file = path_in_dir("a.log");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 3, 1 << 20), 0);
  char idbuf[64];
  for (int i = 0; i < 1000; i++) {
    px_access_t a = tagged(idbuf, sizeof(idbuf), "p2", i);
    cr_assert_eq(px_access_log_write(log, 2, &a), 0);
  }
  px_access_log_close(log); /* at once: most lines are still in the ring */
  int per[4];
  cr_expect_eq(check_file(file, NULL, per), 1000);
  cr_expect_eq(per[2], 1000);
}

Test(accesslog, appends_to_an_existing_file) {
  const char *file = path_in_dir("a.log");
  FILE *f = fopen(file, "w");
  fputs("{\"old\":1}\n", f);
  fclose(f);
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 0), 0);
  px_access_t a = full_record();
  px_access_log_write(log, 0, &a);
  px_access_log_close(log);
  size_t len;
  char *data = slurp(file, &len);
  cr_expect(strncmp(data, "{\"old\":1}\n{\"time\"", 17) == 0);
  free(data);
}

static void is_json(const char *line, void *arg) {
  (void)arg;
  px_json_free(parse_line(line));
}

static px_access_log_t *sig_log;
static void on_usr1(int sig) {
  (void)sig;
  px_access_log_reopen(sig_log);
}

Test(accesslog, reopen_on_sigusr1_after_rename) {
  const char *file = path_in_dir("access.log"), *old = path_in_dir("access.log.1");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 2, 1 << 20), 0);
  sig_log = log;
  struct sigaction sa = {.sa_handler = on_usr1};
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);

  char idbuf[64];
  for (int i = 0; i < 500; i++) {
    px_access_t a = tagged(idbuf, sizeof(idbuf), "old", i);
    cr_assert_eq(px_access_log_write(log, i % 2, &a), 0);
  }
  /* logrotate: rename, then postrotate's kill -USR1; the lines still in the rings
   * belong in the old file */
  cr_assert_eq(rename(file, old), 0);
  errno = 1234;
  cr_assert_eq(kill(getpid(), SIGUSR1), 0);
  cr_expect_eq(errno, 1234, "the handler keeps errno");
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.reopens == 1);
  for (int i = 0; i < 300; i++) {
    px_access_t a = tagged(idbuf, sizeof(idbuf), "new", i);
    cr_assert_eq(px_access_log_write(log, i % 2, &a), 0);
  }
  px_access_log_close(log);
  signal(SIGUSR1, SIG_DFL);

  /* one producer's lines are in order; two producers' may interleave, so the check
   * here is the set of lines, not their order */
  size_t len;
  char *data = slurp(old, &len);
  size_t n_old = 0, n_new = 0;
  for (char *p = data; (p = strstr(p, "\"request_id\":\"old-")) != NULL; p++) n_old++;
  cr_expect_null(strstr(data, "\"new-"));
  cr_expect_eq(each_line(data, len, is_json, NULL), 500);
  free(data);
  data = slurp(file, &len);
  for (char *p = data; (p = strstr(p, "\"request_id\":\"new-")) != NULL; p++) n_new++;
  cr_expect_null(strstr(data, "\"old-"));
  free(data);
  cr_expect_eq(n_old, 500);
  cr_expect_eq(n_new, 300);
}

Test(accesslog, reopen_keeps_one_producers_order) {
  const char *file = path_in_dir("access.log"), *old = path_in_dir("access.log.1");
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 1 << 20), 0);
  char idbuf[64];
  for (int i = 0; i < 2000; i++) {
    if (i == 1000) {
      cr_assert_eq(rename(file, old), 0);
      px_access_log_reopen(log);
      px_access_log_stats_t st;
      WAIT_FOR(log, st, st.reopens == 1);
    }
    px_access_t a = tagged(idbuf, sizeof(idbuf), "p0", i);
    cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  }
  px_access_log_close(log);
  int per[4];
  cr_expect_eq(check_file(old, NULL, per), 1000);
  cr_expect_eq(per[0], 1000);
  /* the new file goes on from 1000 */
  size_t len;
  char *data = slurp(file, &len);
  cr_expect(strstr(data, "\"request_id\":\"p0-1000\"") == strstr(data, "\"request_id\""));
  cr_expect(strstr(data, "\"request_id\":\"p0-1999\""));
  cr_expect_null(strstr(data, "\"request_id\":\"p0-999\""));
  free(data);
}

Test(accesslog, reopen_that_fails_keeps_the_old_file) {
  char sub[300];
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  cr_assert_eq(mkdir(sub, 0700), 0);
  char file[400];
  snprintf(file, sizeof(file), "%s/a.log", sub);
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 0), 0);
  /* the directory goes away: the file cannot be made again */
  const char *moved = path_in_dir("a.log.1");
  cr_assert_eq(rename(file, moved), 0);
  cr_assert_eq(rmdir(sub), 0);
  cr_redirect_stderr();
  px_access_log_reopen(log);
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.write_errors == 1);
  px_access_t a = full_record();
  cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  WAIT_FOR(log, st, st.lines_written == 1);
  cr_expect_eq(st.reopens, 0);
  px_access_log_close(log);
  size_t len;
  char *data = slurp(moved, &len);
  cr_expect_str_eq(data, fmt(&a), "the line went to the file still open");
  free(data);
}

typedef struct {
  px_access_log_t *log;
} closer_t;

static void *close_it(void *arg) {
  px_access_log_close(((closer_t *)arg)->log);
  return NULL;
}

Test(accesslog, full_ring_drops_and_never_blocks) {
  /* A FIFO nobody reads: the writer thread blocks in write(2) once the pipe is full,
   * the ring fills behind it, and the producer must drop rather than wait. */
  const char *fifo = path_in_dir("fifo");
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  int rfd = open(fifo, O_RDONLY | O_NONBLOCK);
  cr_assert_geq(rfd, 0);
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, fifo, 1, 1), 0, "a tiny ring (rounded up to the minimum)");

  enum { N = 5000 };
  char idbuf[64];
  int dropped = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < N; i++) {
    px_access_t a = tagged(idbuf, sizeof(idbuf), "p0", i);
    int rc = px_access_log_write(log, 0, &a);
    cr_assert(rc == 0 || rc == PX_EOVERFLOW);
    dropped += rc != 0;
  }
  double took = since(&t0);
  cr_expect_lt(took, 2.0, "5000 writes took %.3f s", took);
  /* 1.6 MB of lines against a 64 KiB pipe and a 4 KiB ring */
  cr_expect_gt(dropped, N / 2);
  px_access_log_stats_t st;
  px_access_log_stats(log, &st);
  cr_expect_eq(st.lines_dropped, (uint64_t)dropped);
  cr_expect_eq(st.write_errors, 0);

  /* now read: close drains what the ring holds, then the FIFO sees its end */
  closer_t c = {log};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, close_it, &c), 0);
  px_buf_t got = {0};
  char tmp[65536];
  for (;;) {
    struct pollfd pfd = {.fd = rfd, .events = POLLIN};
    cr_assert_gt(poll(&pfd, 1, 10000), 0, "the FIFO went quiet without its end");
    ssize_t r = read(rfd, tmp, sizeof(tmp));
    if (r == 0) break;
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    cr_assert_gt(r, 0);
    px_buf_append(&got, tmp, (size_t)r);
  }
  pthread_join(th, NULL);
  close(rfd);

  /* what went through: whole lines, in order, each one JSON; the gaps are the drops */
  int last = -1;
  size_t lines = 0;
  for (char *p = got.data, *end = got.data + got.len; p < end; lines++) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    cr_assert_not_null(nl);
    px_json_t *v = parse(p, (size_t)(nl - p));
    size_t n;
    int seq = atoi(get_str(v, "request_id", &n) + 3);
    cr_assert_gt(seq, last);
    last = seq;
    px_json_free(v);
    p = nl + 1;
  }
  cr_expect_eq(lines, (size_t)(N - dropped));
  px_buf_free(&got);
}

Test(accesslog, write_errors_counted_and_warned_once) {
  /* /dev/full fails every write with ENOSPC */
  px_access_log_t *log;
  int rc = px_access_log_open(&log, "/dev/full", 2, 0);
  if (rc != 0) cr_skip_test("no /dev/full here");
  cr_redirect_stderr();
  px_access_t a = full_record();
  px_access_log_stats_t st;
  for (int batch = 0; batch < 5; batch++) {
    for (int i = 0; i < 10; i++) cr_assert_eq(px_access_log_write(log, i % 2, &a), 0);
    WAIT_FOR(log, st, st.lines_dropped == (uint64_t)(batch + 1) * 10);
  }
  cr_expect_eq(st.lines_written, 0);
  cr_expect_geq(st.write_errors, 5, "each batch is a failed write");
  px_access_log_close(log);
  fflush(stderr);
  FILE *f = cr_get_redirected_stderr();
  char line[512];
  int warnings = 0;
  while (fgets(line, sizeof(line), f))
    if (strstr(line, "access log: writing to /dev/full failed")) warnings++;
  cr_expect_eq(warnings, 1, "rate-limited: one warning, not one per batch");
}

Test(accesslog, a_line_cut_by_a_failed_write_is_ended) {
  /* A file size limit makes the kernel take part of a batch (a short write, cut inside
   * a line), then refuse the rest (EFBIG). The fragment gets its newline before the
   * next line, so the lines after it are whole. */
  signal(SIGXFSZ, SIG_IGN);
  const char *file = path_in_dir("a.log");
  char idbuf[64];
  px_access_t a = tagged(idbuf, sizeof(idbuf), "t", 100); /* ids t-100..t-199: one length */
  size_t line = strlen(fmt(&a)), limit = 10 * line + line / 2;
  struct rlimit rl, was;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
  rl = was;
  rl.rlim_cur = limit;
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);

  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, file, 1, 1 << 20), 0);
  cr_redirect_stderr();
  for (int i = 0; i < 20; i++) {
    a = tagged(idbuf, sizeof(idbuf), "t", 100 + i);
    cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  }
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.lines_written + st.lines_dropped == 20);
  cr_expect_eq(st.lines_written, 10);
  cr_expect_eq(st.lines_dropped, 10, "the cut line is lost, and counted");
  cr_expect_geq(st.write_errors, 1);

  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
  for (int i = 20; i < 25; i++) {
    a = tagged(idbuf, sizeof(idbuf), "t", 100 + i);
    cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  }
  px_access_log_close(log);

  size_t len;
  char *data = slurp(file, &len);
  cr_expect_eq(len, limit + 1 + 5 * line);
  char *frag = data + 10 * line, *after = data + limit + 1;
  cr_expect_eq(frag[line / 2], '\n', "the fragment ended");
  cr_expect(strncmp(frag, "{\"time\"", 7) == 0);
  cr_expect(strstr(after, "\"request_id\":\"t-120\"") != NULL);
  size_t whole = each_line(after, len - (size_t)(after - data), is_json, NULL);
  cr_expect_eq(whole, 5);
  frag[line / 2 + 1] = '\0';
  cr_expect_eq(each_line(data, 10 * line, is_json, NULL), 10);
  free(data);
}

Test(accesslog, to_stdout) {
  cr_redirect_stdout();
  px_access_log_t *log;
  cr_assert_eq(px_access_log_open(&log, "stdout", 1, 0), 0);
  px_access_t a = full_record();
  cr_assert_eq(px_access_log_write(log, 0, &a), 0);
  px_access_log_reopen(log); /* nothing to reopen */
  px_access_t b = full_record();
  b.status = 200;
  cr_assert_eq(px_access_log_write(log, 0, &b), 0);
  px_access_log_stats_t st;
  WAIT_FOR(log, st, st.lines_written == 2);
  cr_expect_eq(st.reopens, 0);
  px_access_log_close(log);
  px_buf_t want = {0};
  px_access_format(&a, &want);
  px_access_format(&b, &want);
  px_buf_reserve(&want, 1)[0] = '\0';
  fflush(stdout);
  cr_expect_stdout_eq_str(want.data);
  px_buf_free(&want);
  cr_expect_neq(fcntl(STDOUT_FILENO, F_GETFD), -1, "stdout is not closed");
}

Test(accesslog, open_errors) {
  px_access_log_t *log = (px_access_log_t *)&log;
  cr_expect_eq(px_access_log_open(&log, "/nonexistent-dir/x/access.log", 1, 0), -ENOENT);
  cr_expect_null(log);
  cr_expect_eq(px_access_log_open(&log, NULL, 1, 0), PX_EUSAGE);
  cr_expect_eq(px_access_log_open(&log, "", 1, 0), PX_EUSAGE);
  cr_expect_eq(px_access_log_open(&log, path_in_dir("a.log"), 0, 0), PX_EUSAGE);
  cr_expect_eq(px_access_log_open(&log, path_in_dir("a.log"), 1, (size_t)1 << 40), PX_ETOOLARGE);
  cr_expect_eq(px_access_log_open(&log, dir, 1, 0), -EISDIR);
  px_access_log_close(NULL);
}
