/* outrigger: the command line (SPEC §2), process lifetime, signals and reloads.
 * Everything else lives in the core library. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "admin.h"
#include "canary_run.h"
#include "config.h"
#include "filter.h"
#include "prober.h"
#include "log.h"
#include "net.h"
#include "registry_run.h"
#include "worker.h"

enum { EXIT_OK = 0, EXIT_CONFIG = 1, EXIT_USAGE = 2, EXIT_RUNTIME = 3 };

static const char usage_text[] =
    "Usage: outrigger -c FILE [--validate] [--workers N] [--log-level LEVEL]\n"
    "       outrigger --version | --help\n"
    "\n"
    "Outrigger is a service-mesh sidecar: an HTTP/1.1 proxy with routes, clusters,\n"
    "pooled upstream connections and an admin API, configured by one YAML file.\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE     configuration file (see config/REFERENCE.md)\n"
    "      --validate        check FILE, print 'FILE: configuration OK' or every error\n"
    "                        as FILE:LINE:COL: message, and exit 0 or 1\n"
    "  -w, --workers N       event-loop threads (overrides `workers:`; default: CPUs)\n"
    "  -l, --log-level L     debug | info | warn | error (overrides `log.level`)\n"
    "  -v, --version         print the version and exit\n"
    "  -h, --help            print this help and exit\n"
    "\n"
    "Signals: SIGTERM/SIGINT drain (registry records are withdrawn at once) and exit 0;\n"
    "SIGHUP reloads FILE (a bad file is rejected and the running configuration kept);\n"
    "SIGUSR1 reopens the access log (for logrotate).\n"
    "Exit codes: 0 ok, 1 configuration error, 2 usage error, 3 runtime failure.\n";

typedef struct {
  const char *path;
  int workers_cli, log_level_cli;
  uv_loop_t *loop;
  px_snapshot_t *current;
  unsigned generation;
  px_worker_t *workers;
  int nworkers;
  int finished_workers;
  int draining, ready;
  uint64_t reloads_ok, reloads_failed;
  px_hsrv_t *admin;
  px_admin_ctx_t admin_ctx;
  uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
  uv_timer_t drain_timer, poll_timer, canary_timer, disc_timer;
  uv_thread_t joiner;
  px_regrun_t *regrun; /* the service registry (SPEC §12) */
} px_main_t;

/* Publishes `snap` to every worker (`fds`: sockets of new listeners, per worker, or
 * NULL) and the prober, and lets the old one go. */
static void publish(px_main_t *m, px_snapshot_t *snap, int **fds) {
  for (int i = 0; i < m->nworkers; i++) {
    px_snapshot_ref(snap);
    px_worker_post_snapshot(&m->workers[i], snap, fds ? fds[i] : NULL);
  }
  free(fds);
  px_snapshot_t *old = m->current;
  m->current = snap;
  px_prober_set(snap);
  px_snapshot_unref(old);
}

/* Discovered endpoints changed: the same configuration, with the endpoints the registry
 * has now, becomes the running snapshot. Requests never look them up. */
static void on_disc_timer(uv_timer_t *t) {
  px_main_t *m = t->data;
  px_config_t *cfg = m->current->cfg;
  px_config_ref(cfg);
  px_snapshot_t *snap = px_snapshot_new(cfg, m->nworkers, m->generation, px_regrun_lookup, m->regrun);
  snap->sinks = m->current->sinks;
  snap->tel_on = m->current->tel_on;
  publish(m, snap, NULL);
}

/* Changes that come together (a list, the events of one watch message, several
 * clusters' answers in one loop turn) make one snapshot, built on the next turn. */
static void on_disc_changed(void *data) {
  px_main_t *m = data;
  if (!uv_is_active((uv_handle_t *)&m->disc_timer)) uv_timer_start(&m->disc_timer, on_disc_timer, 0, 0);
}

static int app_healthy(void *data, const char *listener) {
  px_main_t *m = data;
  return px_snapshot_listener_healthy(m->current, listener);
}

/* The canary runs' clock: each route judges its windows when its interval ends. */
static void on_canary_timer(uv_timer_t *t) {
  px_main_t *m = t->data;
  px_canary_tick(m->current, px_now_ms());
}

static void print_errors(const px_errlist_t *errs) {
  for (size_t i = 0; i < errs->n; i++) fprintf(stderr, "%s\n", errs->items[i]);
}

static px_config_t *load(px_main_t *m, int print) {
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_load(m->path, &errs);
  if (cfg == NULL) {
    if (print) {
      print_errors(&errs);
    } else {
      for (size_t i = 0; i < errs.n; i++) px_error("reload rejected: %s", errs.items[i]);
    }
  }
  px_errlist_free(&errs);
  return cfg;
}

static int open_listeners(px_main_t *m, const px_config_t *cfg, const px_config_t *old, int ***fds_out);

static void reload(px_main_t *m) {
  if (m->draining) return;
  px_info("SIGHUP: reloading %s", m->path);
  px_config_t *cfg = load(m, 0);
  if (cfg == NULL) {
    m->reloads_failed++;
    return;
  }
  const px_config_t *running = m->current->cfg;
  if (!px_addr_same(&running->admin_address.sa, &cfg->admin_address.sa)) {
    px_error("reload rejected: %s: the admin address changed (%s to %s); that needs a restart", m->path,
             running->admin_address.text, cfg->admin_address.text);
    px_config_free(cfg);
    m->reloads_failed++;
    return;
  }
  px_sinks_t sinks;
  if (px_sinks_apply(cfg, m->nworkers, &sinks) != 0) {
    px_error("reload rejected: %s: its access log or span export cannot start", m->path);
    px_config_free(cfg);
    m->reloads_failed++;
    return;
  }
  /* Listeners whose address stays keep their sockets (and connections); new
   * addresses are bound here, so a port in use rejects the reload. */
  int **fds = NULL;
  if (open_listeners(m, cfg, running, &fds) != 0) {
    px_error("reload rejected: %s: a new listener cannot listen", m->path);
    px_config_free(cfg);
    m->reloads_failed++;
    return;
  }
  /* The registry follows the file first, so the snapshot gets the endpoints of the
   * discovered clusters it keeps (new ones start empty and fill as etcd answers). */
  px_regrun_apply(m->regrun, cfg);
  px_snapshot_t *snap = px_snapshot_new(cfg, m->nworkers, ++m->generation, px_regrun_lookup, m->regrun);
  snap->sinks = sinks;
  snap->tel_on = cfg->tracing.enabled || sinks.alog;
  publish(m, snap, fds);
  m->reloads_ok++;
  px_log_setup("outrigger", m->log_level_cli >= 0 ? m->log_level_cli : cfg->log_level, cfg->log_json);
  px_info("configuration generation %u is live", m->generation);
}

static void on_admin_closed(void *data) { (void)data; }

static void close_main_handles(px_main_t *m) {
  uv_close((uv_handle_t *)&m->sig_term, NULL);
  uv_close((uv_handle_t *)&m->sig_int, NULL);
  uv_close((uv_handle_t *)&m->sig_hup, NULL);
  uv_close((uv_handle_t *)&m->sig_usr1, NULL);
  uv_close((uv_handle_t *)&m->drain_timer, NULL);
  uv_close((uv_handle_t *)&m->poll_timer, NULL);
  uv_close((uv_handle_t *)&m->canary_timer, NULL);
  uv_close((uv_handle_t *)&m->disc_timer, NULL);
  if (m->regrun) px_regrun_close(m->regrun, NULL, NULL); /* once a drain's revokes are answered */
  m->regrun = NULL;
  if (m->admin) px_hsrv_close(m->admin, on_admin_closed, NULL);
  m->admin = NULL;
}

/* Workers exit their loops once drained; the main thread watches for that (a
 * joined thread is done) without blocking its own loop. */
static void on_poll(uv_timer_t *t) {
  px_main_t *m = t->data;
  size_t conns = 0;
  for (int i = 0; i < m->nworkers; i++) conns += px_worker_conns(&m->workers[i]);
  if (conns == 0 && __atomic_load_n(&m->finished_workers, __ATOMIC_ACQUIRE) == m->nworkers)
    close_main_handles(m);
}

static void on_drain_timeout(uv_timer_t *t) {
  px_main_t *m = t->data;
  px_warn("drain_timeout reached: closing the connections still open");
  for (int i = 0; i < m->nworkers; i++) px_worker_post_stop(&m->workers[i]);
}

static void start_drain(void *data) {
  px_main_t *m = data;
  if (m->draining) return;
  m->draining = 1;
  px_info("draining: not accepting new connections, finishing requests in flight");
  if (m->regrun) px_regrun_drain(m->regrun); /* callers stop choosing this instance */
  for (int i = 0; i < m->nworkers; i++) px_worker_post_drain(&m->workers[i]);
  uv_timer_start(&m->drain_timer, on_drain_timeout, m->current->cfg->drain_timeout_ms, 0);
  uv_timer_start(&m->poll_timer, on_poll, 20, 20);
}

static void on_signal(uv_signal_t *s, int signum) {
  px_main_t *m = s->data;
  if (signum == SIGHUP)
    reload(m);
  else if (signum == SIGUSR1)
    px_sinks_reopen(); /* logrotate's postrotate: the access log opens its path again */
  else
    start_drain(m);
}

static void worker_watch(void *arg) {
  px_main_t *m = arg;
  for (int i = 0; i < m->nworkers; i++) {
    px_worker_join(&m->workers[i]);
    __atomic_add_fetch(&m->finished_workers, 1, __ATOMIC_RELEASE);
  }
}

static void close_fds(int **fds, int nworkers, size_t nlisteners) {
  for (int w = 0; w < nworkers; w++) {
    for (size_t l = 0; l < nlisteners; l++)
      if (fds[w][l] >= 0) close(fds[w][l]);
    free(fds[w]);
  }
  free(fds);
}

/* Every worker gets its own SO_REUSEPORT socket per listener: -1 where `old` (the
 * running configuration, NULL at start-up) has that address already. They are all
 * bound by the main thread, before any worker thread starts or sees a reload, so a
 * port in use is a clean exit 3 at start-up and a rejected reload later. */
static int open_listeners(px_main_t *m, const px_config_t *cfg, const px_config_t *old, int ***fds_out) {
  int **fds = px_calloc((size_t)m->nworkers, sizeof(int *));
  for (int w = 0; w < m->nworkers; w++) {
    fds[w] = px_calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(int));
    for (size_t l = 0; l < cfg->nlisteners; l++) fds[w][l] = -1;
  }
  for (int w = 0; w < m->nworkers; w++) {
    for (size_t l = 0; l < cfg->nlisteners; l++) {
      if (px_config_listener_at(old, &cfg->listeners[l].address.sa) >= 0) continue;
      int fd = px_listen_fd((const struct sockaddr *)&cfg->listeners[l].address.sa, 1, PX_LISTEN_BACKLOG);
      if (fd < 0) {
        px_error("listener %s: cannot listen on %s: %s", cfg->listeners[l].name,
                 cfg->listeners[l].address.text, uv_strerror(fd));
        close_fds(fds, m->nworkers, cfg->nlisteners);
        return -1;
      }
      fds[w][l] = fd;
    }
  }
  *fds_out = fds;
  return 0;
}

int main(int argc, char **argv) {
  px_main_t m = {.workers_cli = -1, .log_level_cli = -1};
  int validate = 0;
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"validate", no_argument, NULL, 'V'},
                                       {"workers", required_argument, NULL, 'w'},
                                       {"log-level", required_argument, NULL, 'l'},
                                       {"version", no_argument, NULL, 'v'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "c:w:l:vh", opts, NULL)) != -1) {
    switch (ch) {
    case 'c': m.path = optarg; break;
    case 'V': validate = 1; break;
    case 'w': {
      char *end;
      long n = strtol(optarg, &end, 10);
      if (*end || n < 1 || n > 256) {
        fprintf(stderr, "outrigger: --workers takes a number from 1 to 256, not '%s'\n", optarg);
        return EXIT_USAGE;
      }
      m.workers_cli = (int)n;
      break;
    }
    case 'l':
      m.log_level_cli = px_log_level_parse(optarg);
      if (m.log_level_cli < 0) {
        fprintf(stderr, "outrigger: --log-level takes debug, info, warn or error, not '%s'\n", optarg);
        return EXIT_USAGE;
      }
      break;
    case 'v': printf("outrigger %s\n", PX_VERSION); return EXIT_OK;
    case 'h': fputs(usage_text, stdout); return EXIT_OK;
    default: fputs(usage_text, stderr); return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "outrigger: unexpected argument '%s'\n%s", argv[optind], usage_text);
    return EXIT_USAGE;
  }
  if (m.path == NULL) {
    fprintf(stderr, "outrigger: -c FILE is required\n%s", usage_text);
    return EXIT_USAGE;
  }

  px_config_t *cfg = load(&m, 1);
  if (cfg == NULL) return EXIT_CONFIG;
  if (validate) {
    printf("%s: configuration OK\n", m.path);
    px_config_free(cfg);
    return EXIT_OK;
  }
  px_log_setup("outrigger", m.log_level_cli >= 0 ? m.log_level_cli : cfg->log_level, cfg->log_json);
  signal(SIGPIPE, SIG_IGN);
  uint64_t nofile = px_raise_nofile();
  if (nofile > 0 && nofile < 4096)
    px_warn("the open file limit is %llu even after raising it to the hard limit: about %llu connections "
            "can be proxied at once (raise it with ulimit -Hn or systemd's LimitNOFILE=)",
            (unsigned long long)nofile, (unsigned long long)nofile / 2);

  m.nworkers = m.workers_cli > 0  ? m.workers_cli
               : cfg->workers > 0 ? cfg->workers
                                  : (int)uv_available_parallelism();
  m.generation = 1;
  px_sinks_t sinks;
  if (px_sinks_apply(cfg, m.nworkers, &sinks) != 0) {
    px_config_free(cfg);
    return EXIT_RUNTIME;
  }
  m.current = px_snapshot_new(cfg, m.nworkers, m.generation, NULL, NULL); /* nothing discovered yet */
  m.current->sinks = sinks;
  m.current->tel_on = cfg->tracing.enabled || sinks.alog;
  m.loop = uv_default_loop();

  /* Signals are caught before any port opens: a client may connect (and a
   * supervisor send SIGTERM) as soon as the port accepts, and the handlers only
   * run from the loop, once everything below is in place. */
  uv_signal_init(m.loop, &m.sig_term);
  uv_signal_init(m.loop, &m.sig_int);
  uv_signal_init(m.loop, &m.sig_hup);
  uv_signal_init(m.loop, &m.sig_usr1);
  m.sig_term.data = m.sig_int.data = m.sig_hup.data = m.sig_usr1.data = &m;
  uv_signal_start(&m.sig_term, on_signal, SIGTERM);
  uv_signal_start(&m.sig_int, on_signal, SIGINT);
  uv_signal_start(&m.sig_hup, on_signal, SIGHUP);
  uv_signal_start(&m.sig_usr1, on_signal, SIGUSR1);
  uv_timer_init(m.loop, &m.drain_timer);
  uv_timer_init(m.loop, &m.poll_timer);
  uv_timer_init(m.loop, &m.canary_timer);
  uv_timer_init(m.loop, &m.disc_timer);
  m.drain_timer.data = m.poll_timer.data = m.canary_timer.data = m.disc_timer.data = &m;

  int **fds = NULL;
  if (open_listeners(&m, cfg, NULL, &fds) != 0) {
    px_snapshot_unref(m.current);
    return EXIT_RUNTIME;
  }

  m.admin_ctx = (px_admin_ctx_t){.current = &m.current,
                                 .nworkers = m.nworkers,
                                 .draining = &m.draining,
                                 .ready = &m.ready,
                                 .reloads_ok = &m.reloads_ok,
                                 .reloads_failed = &m.reloads_failed,
                                 .regrun = &m.regrun,
                                 .drain = start_drain,
                                 .data = &m};
  m.workers = px_calloc((size_t)m.nworkers, sizeof(px_worker_t));
  m.admin_ctx.workers = m.workers;
  int r = px_admin_start(m.loop, (const struct sockaddr *)&cfg->admin_address.sa, &m.admin_ctx, &m.admin);
  if (r != 0) {
    px_error("admin: cannot listen on %s: %s", cfg->admin_address.text, uv_strerror(r));
    close_fds(fds, m.nworkers, cfg->nlisteners);
    free(m.workers);
    px_snapshot_unref(m.current);
    return EXIT_RUNTIME;
  }

  for (int i = 0; i < m.nworkers; i++) {
    px_snapshot_ref(m.current);
    px_worker_init(&m.workers[i], i, m.workers, m.nworkers, m.current, fds[i], cfg->nlisteners);
    free(fds[i]);
  }
  free(fds);
  for (int i = 0; i < m.nworkers; i++) {
    if (px_worker_start(&m.workers[i]) != 0) {
      px_error("cannot start worker thread %d", i);
      return EXIT_RUNTIME;
    }
  }
  uv_thread_create(&m.joiner, worker_watch, &m);
  px_prober_start(m.current);
  uv_timer_start(&m.canary_timer, on_canary_timer, 200, 200); /* intervals are whole seconds */
  /* The listeners accept: records can be written, and discovered clusters listed. */
  m.regrun = px_regrun_new(m.loop, &(px_regrun_hooks_t){app_healthy, on_disc_changed, &m});
  px_regrun_apply(m.regrun, cfg);

  for (size_t l = 0; l < cfg->nlisteners; l++)
    px_info("listener %s on %s (%zu routes)", cfg->listeners[l].name, cfg->listeners[l].address.text,
            cfg->listeners[l].nroutes);
  px_info("admin on %s; %d workers; outrigger %s ready", cfg->admin_address.text, m.nworkers, PX_VERSION);
  m.ready = 1;

  uv_run(m.loop, UV_RUN_DEFAULT);
  uv_thread_join(&m.joiner);
  px_prober_stop();
  for (int i = 0; i < m.nworkers; i++) px_worker_free(&m.workers[i]);
  uv_loop_close(m.loop);
  px_snapshot_unref(m.current);
  free(m.workers);
  px_idem_stores_free();
  px_sinks_close();
  px_info("drained; exiting");
  return EXIT_OK;
}
