#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

static const char *log_program = "outrigger";
static px_log_level_t log_level = PX_LOG_INFO;
static int log_json;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void px_log_setup(const char *program, px_log_level_t level, int json) {
  log_program = program;
  log_level = level;
  log_json = json;
}

int px_log_level_parse(const char *s) {
  for (size_t i = 0; i < PX_ARRAY_SIZE(level_names); i++)
    if (strcmp(s, level_names[i]) == 0) return (int)i;
  return -1;
}

const char *px_log_level_name(px_log_level_t level) { return level_names[level]; }

int px_log_enabled(px_log_level_t level) { return level >= log_level; }

void px_log(px_log_level_t level, const char *fmt, ...) {
  if (level < log_level) return;
  px_buf_t b = {0}, msg = {0};

  va_list ap;
  va_start(ap, fmt);
  px_buf_vprintf(&msg, fmt, ap);
  va_end(ap);

  struct timeval tv;
  gettimeofday(&tv, NULL);
  struct tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  /* Sized for any int fields, so the compiler can prove nothing is cut. */
  char ts[96];
  snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

  if (log_json) {
    px_buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"program\":\"%s\",\"msg\":", ts, level_names[level],
                  log_program);
    px_buf_json_str(&b, msg.data ? msg.data : "", msg.len);
    px_buf_append(&b, "}\n", 2);
  } else {
    px_buf_printf(&b, "%s %s %s: ", ts, level_names[level], log_program);
    px_buf_append(&b, msg.data, msg.len);
    px_buf_append(&b, "\n", 1);
  }
  ssize_t r = write(STDERR_FILENO, b.data, b.len);
  (void)r;
  px_buf_free(&b);
  px_buf_free(&msg);
}
