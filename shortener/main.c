/* shortener: a minimal URL shortener (SPEC §10), the application the sidecar
 * fronts. This file is the command line, signals and the event loop. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "app.h"
#include "core.h"
#include "httpserver.h"
#include "log.h"
#include "net.h"
#include "store.h"

#define EXIT_USAGE 2
#define EXIT_RUNTIME 3
#define DRAIN_TIMEOUT_MS 10000

static const char usage[] =
    "usage: shortener --listen ADDR:PORT --db PATH [--base-url URL] [--label NAME]\n"
    "                 [--version] [--help]\n"
    "\n"
    "  --listen ADDR:PORT  address to serve HTTP on, e.g. 127.0.0.1:9001\n"
    "  --db PATH           SQLite database file (created when missing; may be shared)\n"
    "  --base-url URL      prefix of short_url (default http://ADDR:PORT)\n"
    "  --label NAME        adds 'x-shortener-version: NAME' to every response\n"
    "  --version           print the version and exit\n"
    "  --help              print this help and exit\n"
    "\n"
    "Exit codes: 0 success, 2 usage error, 3 runtime failure (bind, database).\n";

typedef struct {
  uv_loop_t loop;
  uv_signal_t sigterm, sigint;
  uv_timer_t drain_timer;
  px_hsrv_t *srv;
  uint64_t drain_started;
  int draining;
} shr_main_t;

static void close_cb(uv_handle_t *h) { (void)h; }

static void on_server_closed(void *data) {
  shr_main_t *m = data;
  m->srv = NULL;
  uv_close((uv_handle_t *)&m->sigterm, close_cb);
  uv_close((uv_handle_t *)&m->sigint, close_cb);
  uv_close((uv_handle_t *)&m->drain_timer, close_cb);
}

/* Polls until in-flight requests are answered or the drain timeout passes. */
static void on_drain_tick(uv_timer_t *t) {
  shr_main_t *m = t->data;
  if (m->srv == NULL) return;
  int timed_out = uv_now(&m->loop) - m->drain_started >= DRAIN_TIMEOUT_MS;
  if (px_hsrv_busy(m->srv) > 0 && !timed_out) return;
  if (timed_out) px_warn("drain timeout: closing %zu busy connection(s)", px_hsrv_busy(m->srv));
  uv_timer_stop(t);
  px_hsrv_t *srv = m->srv;
  px_hsrv_close(srv, on_server_closed, m);
}

static void on_signal(uv_signal_t *s, int signum) {
  shr_main_t *m = s->data;
  if (m->draining) return;
  m->draining = 1;
  px_info("received %s, draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
  px_hsrv_drain(m->srv);
  m->drain_started = uv_now(&m->loop);
  uv_timer_start(&m->drain_timer, on_drain_tick, 0, 20);
}

static int valid_label(const char *s) {
  if (*s == '\0' || strlen(s) > 64) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f) return 0;
  return 1;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"db", required_argument, NULL, 'd'},
      {"base-url", required_argument, NULL, 'b'},
      {"label", required_argument, NULL, 'L'},
      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  const char *listen = NULL, *db = NULL, *base = NULL, *label = NULL;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (c) {
    case 'l': listen = optarg; break;
    case 'd': db = optarg; break;
    case 'b': base = optarg; break;
    case 'L': label = optarg; break;
    case 'V': printf("shortener %s\n", PX_VERSION); return 0;
    case 'h': fputs(usage, stdout); return 0;
    case ':': fprintf(stderr, "shortener: %s needs a value\n%s", argv[optind - 1], usage); return EXIT_USAGE;
    default: fprintf(stderr, "shortener: unknown option %s\n%s", argv[optind - 1], usage); return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "shortener: unexpected argument %s\n%s", argv[optind], usage);
    return EXIT_USAGE;
  }
  if (listen == NULL || db == NULL) {
    fprintf(stderr, "shortener: --listen and --db are required\n%s", usage);
    return EXIT_USAGE;
  }
  struct sockaddr_storage addr;
  if (px_addr_parse(listen, &addr) != 0) {
    fprintf(stderr, "shortener: --listen %s: expected ADDR:PORT\n", listen);
    return EXIT_USAGE;
  }
  if (base && (strncasecmp(base, "http://", 7) != 0 && strncasecmp(base, "https://", 8) != 0)) {
    fprintf(stderr, "shortener: --base-url %s: must start with http:// or https://\n", base);
    return EXIT_USAGE;
  }
  if (base && strpbrk(base, "\"\\ \t\r\n")) {
    fprintf(stderr, "shortener: --base-url %s: contains characters not allowed in a URL\n", base);
    return EXIT_USAGE;
  }
  if (label && !valid_label(label)) {
    fprintf(stderr, "shortener: --label must be 1-64 visible ASCII characters\n");
    return EXIT_USAGE;
  }

  px_log_setup("shortener", PX_LOG_INFO, 0);
  signal(SIGPIPE, SIG_IGN);
  px_raise_nofile(); /* one descriptor per client connection: take what the hard limit allows */

  char err[512];
  shr_store_t *store = shr_store_open(db, err, sizeof(err));
  if (store == NULL) {
    px_error("cannot open database %s", err);
    return EXIT_RUNTIME;
  }

  shr_main_t m = {0};
  uv_loop_init(&m.loop);
  char *extra = NULL;
  if (label) {
    px_buf_t b = {0};
    px_buf_printf(&b, "x-shortener-version: %s\r\n", label);
    px_buf_append(&b, "", 1);
    extra = b.data;
  }
  shr_app_t app = {.store = store};
  px_hsrv_opts_t hopts = {
      .max_header_bytes = 32 * 1024,
      .max_body_bytes = SHR_MAX_BODY,
      .handler = shr_app_handle,
      .data = &app,
      .extra_headers = extra,
  };
  int rc = px_hsrv_start(&m.loop, (struct sockaddr *)&addr, &hopts, &m.srv);
  if (rc != 0) {
    px_error("cannot listen on %s: %s", listen, uv_strerror(rc));
    uv_run(&m.loop, UV_RUN_DEFAULT); /* lets a half-made server finish closing */
    uv_loop_close(&m.loop);
    shr_store_close(store);
    free(extra);
    return EXIT_RUNTIME;
  }

  /* short_url prefix: --base-url without its trailing '/', else the listen address
   * (with the real port when port 0 was asked for). */
  char *base_url;
  if (base) {
    base_url = px_strdup(base);
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/') base_url[--n] = '\0';
  } else {
    const char *colon = strrchr(listen, ':');
    px_buf_t b = {0};
    if (strcmp(colon + 1, "0") == 0)
      px_buf_printf(&b, "http://%.*s:%d", (int)(colon - listen), listen, px_hsrv_port(m.srv));
    else
      px_buf_printf(&b, "http://%s", listen);
    base_url = b.data;
  }
  app.base_url = base_url;

  uv_signal_init(&m.loop, &m.sigterm);
  uv_signal_init(&m.loop, &m.sigint);
  uv_timer_init(&m.loop, &m.drain_timer);
  m.sigterm.data = m.sigint.data = m.drain_timer.data = &m;
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_signal_start(&m.sigint, on_signal, SIGINT);

  px_info("listening on %.*s:%d (db %s%s%s)", (int)(strrchr(listen, ':') - listen), listen,
          px_hsrv_port(m.srv), db, label ? ", label " : "", label ? label : "");
  uv_run(&m.loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(&m.loop);
  if (closed != 0) px_warn("event loop closed with handles open: %s", uv_strerror(closed));
  shr_store_close(store);
  free(base_url);
  free(extra);
  px_info("stopped");
  return 0;
}
