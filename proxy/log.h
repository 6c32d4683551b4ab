/* Logging to stderr, one line per event, as text or JSON (SPEC §2). Thread-safe:
 * each line is formatted into a local buffer and written with one write(2). */
#ifndef PX_LOG_H
#define PX_LOG_H

typedef enum { PX_LOG_DEBUG, PX_LOG_INFO, PX_LOG_WARN, PX_LOG_ERROR } px_log_level_t;

void px_log_setup(const char *program, px_log_level_t level, int json);
/* Parses "debug|info|warn|error"; returns -1 when it is none of them. */
int px_log_level_parse(const char *s);
const char *px_log_level_name(px_log_level_t level);
int px_log_enabled(px_log_level_t level);
void px_log(px_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define px_debug(...)                                                                                        \
  do {                                                                                                       \
    if (px_log_enabled(PX_LOG_DEBUG)) px_log(PX_LOG_DEBUG, __VA_ARGS__);                                     \
  } while (0)
#define px_info(...) px_log(PX_LOG_INFO, __VA_ARGS__)
#define px_warn(...) px_log(PX_LOG_WARN, __VA_ARGS__)
#define px_error(...) px_log(PX_LOG_ERROR, __VA_ARGS__)

#endif
