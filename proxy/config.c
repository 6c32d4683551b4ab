/* The configuration loader's machinery: libyaml's document API gives a node tree with
 * positions; a generic walker fills structs from the tables of the schema it is given
 * (px__schema_t: config_schema.c gives SPEC §3's, and calls this engine), collecting
 * every error (sorted by position) instead of stopping at the first one. The same
 * tables drive defaults, freeing and the JSON dump, so a key added to a table is
 * parsed, defaulted, printed and freed without further code. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "core.h"
#include "net.h"

/* Alias expansion can make a small file describe a huge tree ("billion laughs");
 * no sane configuration needs this many nodes. */
#define PX__MAX_VISITS 2000000

struct px__err_s {
  int line, col;
  size_t seq;
  char *msg;
};

struct px__fpos_s {
  const void *field;
  px_pos_t pos;
};

/* ---- error list --------------------------------------------------------- */

static void errlist_push(px_errlist_t *e, char *s) {
  if (e->n == e->cap) {
    e->cap = e->cap ? e->cap * 2 : 8;
    e->items = px_realloc(e->items, e->cap * sizeof(*e->items));
  }
  e->items[e->n++] = s;
}

__attribute__((format(printf, 2, 0))) static char *format_pos_msg(px_pos_t pos, const char *fmt, va_list ap) {
  px_buf_t b = {0};
  if (pos.line > 0)
    px_buf_printf(&b, "%s:%d:%d: ", pos.file ? pos.file : "?", pos.line, pos.col);
  else
    px_buf_printf(&b, "%s: ", pos.file ? pos.file : "?");
  px_buf_vprintf(&b, fmt, ap);
  px_buf_append(&b, "", 1);
  return b.data;
}

void px_errlist_add(px_errlist_t *e, px_pos_t pos, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  errlist_push(e, format_pos_msg(pos, fmt, ap));
  va_end(ap);
}

void px_errlist_free(px_errlist_t *e) {
  for (size_t i = 0; i < e->n; i++) free(e->items[i]);
  free(e->items);
  e->items = NULL;
  e->n = e->cap = 0;
}

void px__err(px__ctx_t *c, px_pos_t pos, const char *fmt, ...) {
  if (c->nerrs == c->caperrs) {
    c->caperrs = c->caperrs ? c->caperrs * 2 : 16;
    c->errs = px_realloc(c->errs, c->caperrs * sizeof(*c->errs));
  }
  va_list ap;
  va_start(ap, fmt);
  struct px__err_s *e = &c->errs[c->nerrs];
  e->line = pos.line;
  e->col = pos.col;
  e->seq = c->nerrs++;
  e->msg = format_pos_msg(pos, fmt, ap);
  va_end(ap);
}

static int err_cmp(const void *a, const void *b) {
  const struct px__err_s *x = a, *y = b;
  if (x->line != y->line) return x->line < y->line ? -1 : 1;
  if (x->col != y->col) return x->col < y->col ? -1 : 1;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- nodes and positions ------------------------------------------------ */

px_pos_t px__node_pos(px__ctx_t *c, const yaml_node_t *n) {
  px_pos_t p = {c->path, 0, 0};
  if (n) {
    p.line = (int)n->start_mark.line + 1;
    p.col = (int)n->start_mark.column + 1;
  }
  return p;
}

yaml_node_t *px__node(px__ctx_t *c, int index) { return yaml_document_get_node(c->doc, index); }

static void record_field(px__ctx_t *c, const void *field, px_pos_t pos) {
  if (c->nfpos == c->capfpos) {
    c->capfpos = c->capfpos ? c->capfpos * 2 : 64;
    c->fpos = px_realloc(c->fpos, c->capfpos * sizeof(*c->fpos));
  }
  c->fpos[c->nfpos++] = (struct px__fpos_s){field, pos};
  c->fpos_sorted = 0;
}

static int fpos_cmp(const void *a, const void *b) {
  const struct px__fpos_s *x = a, *y = b;
  uintptr_t p = (uintptr_t)x->field, q = (uintptr_t)y->field;
  return p < q ? -1 : p > q;
}

px_pos_t px__field_pos(px__ctx_t *c, const void *field, px_pos_t fallback) {
  if (!c->fpos_sorted) {
    if (c->nfpos) qsort(c->fpos, c->nfpos, sizeof(*c->fpos), fpos_cmp);
    c->fpos_sorted = 1;
  }
  struct px__fpos_s key = {field, {0}};
  struct px__fpos_s *hit = c->nfpos ? bsearch(&key, c->fpos, c->nfpos, sizeof(*c->fpos), fpos_cmp) : NULL;
  return hit ? hit->pos : fallback;
}

int px__is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = (const char *)n->data.scalar.value;
  return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
         strcmp(s, "NULL") == 0;
}

const char *px__describe(const yaml_node_t *n, char *tmp, size_t tmpn) {
  if (n->type == YAML_MAPPING_NODE) return "a mapping";
  if (n->type == YAML_SEQUENCE_NODE) return "a list";
  if (px__is_null(n)) return "nothing";
  const char *s = (const char *)n->data.scalar.value;
  if (strlen(s) > 40)
    snprintf(tmp, tmpn, "'%.37s...'", s);
  else
    snprintf(tmp, tmpn, "'%s'", s);
  return tmp;
}

static void err_expected(px__ctx_t *c, const char *name, const yaml_node_t *n, const char *what) {
  char tmp[64];
  px__err(c, px__node_pos(c, n), "'%s': expected %s, got %s", name, what, px__describe(n, tmp, sizeof(tmp)));
}

const char *px__scalar(px__ctx_t *c, const char *name, const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || px__is_null(n)) {
    err_expected(c, name, n, "a string");
    return NULL;
  }
  return (const char *)n->data.scalar.value;
}

/* ---- suggestions -------------------------------------------------------- */

static unsigned levenshtein(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 63 || m > 63) return 99;
  unsigned row[64];
  for (size_t j = 0; j <= m; j++) row[j] = (unsigned)j;
  for (size_t i = 1; i <= n; i++) {
    unsigned diag = row[0];
    row[0] = (unsigned)i;
    for (size_t j = 1; j <= m; j++) {
      unsigned up = row[j];
      unsigned cost = a[i - 1] == b[j - 1] ? 0 : 1;
      unsigned best = PX_MIN(row[j] + 1, row[j - 1] + 1);
      row[j] = PX_MIN(best, diag + cost);
      diag = up;
    }
  }
  return row[m];
}

void px__hint_try(px__hint_t *h, const char *got, const char *cand) {
  unsigned score;
  size_t gn = strlen(got), cn = strlen(cand);
  if (strcasecmp(got, cand) == 0) {
    score = 0;
  } else if ((score = levenshtein(got, cand)) <= 2 && score < gn) {
    /* close enough (and not just "every letter differs" on a short word) */
  } else if ((gn >= 2 && strncmp(cand, got, gn) == 0) || (cn >= 3 && strncmp(got, cand, cn) == 0)) {
    score = 3;
  } else {
    return;
  }
  if (h->best == NULL || score < h->score) {
    h->best = cand;
    h->score = score;
  }
}

const char *px__hint_text(const px__hint_t *h, char *tmp, size_t tmpn) {
  if (h->best == NULL) return "";
  snprintf(tmp, tmpn, "; did you mean '%s'?", h->best);
  return tmp;
}

/* ---- durations and sizes ------------------------------------------------ */

/* A duration is one or more NUMBER UNIT pairs ("250ms", "1m30s"); integers only. */
static int duration_parse(const char *s, uint64_t *out, const char **why) {
  static const struct {
    const char *unit;
    uint64_t ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  uint64_t total = 0;
  const char *p = s;
  if (*p == '\0') goto bad;
  while (*p) {
    if (*p < '0' || *p > '9') goto bad;
    uint64_t v = 0;
    while (*p >= '0' && *p <= '9') {
      if (v > (UINT64_MAX - 9) / 10) goto toolarge;
      v = v * 10 + (uint64_t)(*p++ - '0');
    }
    if (*p == '\0') {
      *why = "durations need a unit, e.g. 250ms";
      return -1;
    }
    size_t i;
    for (i = 0; i < PX_ARRAY_SIZE(units); i++) {
      size_t ul = strlen(units[i].unit);
      if (strncmp(p, units[i].unit, ul) == 0 && !(ul == 1 && p[0] == 'm' && p[1] == 's')) {
        p += ul;
        break;
      }
    }
    if (i == PX_ARRAY_SIZE(units)) {
      *why = *p == '.' ? "durations are whole numbers; write 1500ms rather than 1.5s"
                       : "unknown duration unit; use ms, s, m or h";
      return -1;
    }
    if (v > (UINT64_MAX / units[i].ms) || total > UINT64_MAX - v * units[i].ms) goto toolarge;
    total += v * units[i].ms;
  }
  *out = total;
  return 0;
bad:
  *why = "expected a duration such as 250ms, 2s, 5m or 24h";
  return -1;
toolarge:
  *why = "duration too large";
  return -1;
}

int px_parse_duration_ms(const char *s, uint64_t *out) {
  const char *why;
  return duration_parse(s, out, &why);
}

/* A size is a whole number of bytes with an optional B, KiB, MiB or GiB. The 1000-based
 * KB/MB/GB (and bare K/M/G) are refused: people mean 1024 by them about as often as
 * 1000, and a limit that is 2.4% off is a bug nobody finds. */
static int size_parse(const char *s, size_t *out, const char **why) {
  static const struct {
    const char *unit;
    uint64_t mul;
  } units[] = {{"", 1}, {"B", 1}, {"KiB", 1ULL << 10}, {"MiB", 1ULL << 20}, {"GiB", 1ULL << 30}};
  const char *p = s;
  if (*p < '0' || *p > '9') {
    *why = "expected a size such as 512, 64KiB or 8MiB";
    return -1;
  }
  uint64_t v = 0;
  while (*p >= '0' && *p <= '9') {
    if (v > (UINT64_MAX - 9) / 10) goto toolarge;
    v = v * 10 + (uint64_t)(*p++ - '0');
  }
  for (size_t i = 0; i < PX_ARRAY_SIZE(units); i++) {
    if (strcmp(p, units[i].unit) == 0) {
      if (v > SIZE_MAX / units[i].mul) goto toolarge;
      *out = (size_t)(v * units[i].mul);
      return 0;
    }
  }
  *why = strchr("kKmMgG", *p) && *p ? "sizes use KiB, MiB or GiB (1024-based); KB/MB/GB are not accepted"
                                    : "expected a size such as 512, 64KiB or 8MiB";
  return -1;
toolarge:
  *why = "size too large";
  return -1;
}

int px_parse_size(const char *s, size_t *out) {
  const char *why;
  return size_parse(s, out, &why);
}

void px__fmt_duration(uint64_t ms, char *out, size_t n) {
  if (ms == 0)
    snprintf(out, n, "0s");
  else if (ms % 3600000 == 0)
    snprintf(out, n, "%lluh", (unsigned long long)(ms / 3600000));
  else if (ms % 60000 == 0)
    snprintf(out, n, "%llum", (unsigned long long)(ms / 60000));
  else if (ms % 1000 == 0)
    snprintf(out, n, "%llus", (unsigned long long)(ms / 1000));
  else
    snprintf(out, n, "%llums", (unsigned long long)ms);
}

void px__fmt_size(size_t bytes, char *out, size_t n) {
  if (bytes != 0 && bytes % (1u << 30) == 0)
    snprintf(out, n, "%zuGiB", bytes >> 30);
  else if (bytes != 0 && bytes % (1u << 20) == 0)
    snprintf(out, n, "%zuMiB", bytes >> 20);
  else if (bytes != 0 && bytes % (1u << 10) == 0)
    snprintf(out, n, "%zuKiB", bytes >> 10);
  else
    snprintf(out, n, "%zu", bytes);
}

/* ---- scalar types ------------------------------------------------------- */

static int plain_scalar(const yaml_node_t *n) {
  return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !px__is_null(n);
}

static int parse_integer(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, long long *out) {
  const char *s = plain_scalar(n) ? (const char *)n->data.scalar.value : NULL;
  char *end = NULL;
  if (s) {
    errno = 0;
    *out = strtoll(s, &end, 10);
  }
  if (!s || end == s || *end != '\0' || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) {
    err_expected(c, k->name, n, "an integer");
    return -1;
  }
  if (errno == ERANGE || (double)*out < k->min || (double)*out > k->max) {
    px__err(c, px__node_pos(c, n), "'%s' must be between %.0f and %.0f, got %s", k->name, k->min, k->max, s);
    return -1;
  }
  return 0;
}

static void parse_double(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const char *s = plain_scalar(n) ? (const char *)n->data.scalar.value : NULL;
  char *end = NULL;
  double v = 0;
  if (s && (s[0] == '-' || s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) v = strtod(s, &end);
  if (!s || end == NULL || end == s || *end != '\0' || !isfinite(v)) {
    err_expected(c, k->name, n, "a number");
    return;
  }
  if (v < k->min || v > k->max) {
    px__err(c, px__node_pos(c, n), "'%s' must be between %g and %g, got %s", k->name, k->min, k->max, s);
    return;
  }
  *PX__FIELD(base, k->off, double) = v;
}

static void parse_bool(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const char *s = plain_scalar(n) ? (const char *)n->data.scalar.value : "";
  if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
    *PX__FIELD(base, k->off, int) = 1;
  else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
    *PX__FIELD(base, k->off, int) = 0;
  else
    err_expected(c, k->name, n, "true or false");
}

static void parse_duration(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const char *s = px__scalar(c, k->name, n);
  if (!s) return;
  uint64_t ms;
  const char *why;
  if (duration_parse(s, &ms, &why) != 0) {
    px__err(c, px__node_pos(c, n), "'%s': bad duration '%s': %s", k->name, s, why);
    return;
  }
  if ((double)ms < k->min || (double)ms > k->max) {
    char lo[32], hi[32];
    px__fmt_duration((uint64_t)k->min, lo, sizeof(lo));
    px__fmt_duration((uint64_t)k->max, hi, sizeof(hi));
    px__err(c, px__node_pos(c, n), "'%s' must be between %s and %s, got %s", k->name, lo, hi, s);
    return;
  }
  *PX__FIELD(base, k->off, uint64_t) = ms;
}

static void parse_size(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const char *s = px__scalar(c, k->name, n);
  if (!s) return;
  size_t v;
  const char *why;
  if (size_parse(s, &v, &why) != 0) {
    px__err(c, px__node_pos(c, n), "'%s': bad size '%s': %s", k->name, s, why);
    return;
  }
  if ((double)v < k->min || (double)v > k->max) {
    char lo[32], hi[32];
    px__fmt_size((size_t)k->min, lo, sizeof(lo));
    px__fmt_size((size_t)k->max, hi, sizeof(hi));
    px__err(c, px__node_pos(c, n), "'%s' must be between %s and %s bytes, got %s", k->name, lo, hi, s);
    return;
  }
  *PX__FIELD(base, k->off, size_t) = v;
}

static void parse_string(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const char *s = px__scalar(c, k->name, n);
  if (!s) return;
  if (*s == '\0') {
    px__err(c, px__node_pos(c, n), "'%s' must not be empty", k->name);
    return;
  }
  char **field = PX__FIELD(base, k->off, char *);
  free(*field);
  *field = px_strdup(s);
}

static void enum_names(const px__enum_t *e, char *out, size_t n) {
  size_t len = 0;
  out[0] = '\0';
  for (; e->name && len < n; e++)
    len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "", e->name);
}

/* Looks `n` up in `enums`; reports "must be one of" with a hint when it is not there. */
static const px__enum_t *lookup_enum(px__ctx_t *c, const char *name, const px__enum_t *enums,
                                     const yaml_node_t *n) {
  const char *s = px__scalar(c, name, n);
  if (!s) return NULL;
  px__hint_t h = {0};
  for (const px__enum_t *e = enums; e->name; e++) {
    if (strcmp(e->name, s) == 0) return e;
    px__hint_try(&h, s, e->name);
  }
  char all[512], tmp[96];
  enum_names(enums, all, sizeof(all));
  px__err(c, px__node_pos(c, n), "'%s': unknown value '%s'; expected one of: %s%s", name, s, all,
          px__hint_text(&h, tmp, sizeof(tmp)));
  return NULL;
}

static void parse_enum(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, void *base) {
  const px__enum_t *e = lookup_enum(c, k->name, k->enums, n);
  if (e) *PX__FIELD(base, k->off, int) = e->value;
}

static int check_count(px__ctx_t *c, const px__key_t *k, const yaml_node_t *n, size_t count) {
  if ((double)count < k->min) {
    px__err(c, px__node_pos(c, n), "'%s' needs at least %.0f entr%s", k->name, k->min,
            k->min == 1 ? "y" : "ies");
    return -1;
  }
  if (k->max > 0 && (double)count > k->max) {
    px__err(c, px__node_pos(c, n), "'%s' takes at most %.0f entries", k->name, k->max);
    return -1;
  }
  return 0;
}

static size_t seq_len(const yaml_node_t *n) {
  return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static void parse_flags(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  if (n->type != YAML_SEQUENCE_NODE) {
    err_expected(c, k->name, n, "a list");
    return;
  }
  if (check_count(c, k, n, seq_len(n)) != 0) return;
  unsigned bits = 0;
  int ok = 1;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *item = px__node(c, *it);
    const px__enum_t *e = lookup_enum(c, k->name, k->enums, item);
    if (!e) {
      ok = 0;
    } else if (e->value >= 32) {
      px__err(c, px__node_pos(c, item), "'%s': '%s' cannot be used here", k->name, e->name);
      ok = 0;
    } else if (bits & (1u << e->value)) {
      px__err(c, px__node_pos(c, item), "'%s': '%s' is listed twice", k->name, e->name);
      ok = 0;
    } else {
      bits |= 1u << e->value;
    }
  }
  if (ok) *PX__FIELD(base, k->off, unsigned) = bits;
}

static int parse_addr_into(px__ctx_t *c, const char *name, const yaml_node_t *n, px_addr_conf_t *a) {
  const char *s = px__scalar(c, name, n);
  if (!s) return -1;
  struct sockaddr_storage ss;
  const char *colon = strrchr(s, ':');
  if (px_addr_parse(s, &ss) != 0 || (colon && strtol(colon + 1, NULL, 10) == 0)) {
    px__err(c, px__node_pos(c, n),
            "'%s': bad address '%s': expected IPV4:PORT, [IPV6]:PORT or localhost:PORT "
            "with a port in 1..65535 (names are not resolved)",
            name, s);
    return -1;
  }
  free(a->text);
  a->text = px_strdup(s);
  a->sa = ss;
  a->pos = px__node_pos(c, n);
  return 0;
}

static void parse_addrs(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  if (n->type != YAML_SEQUENCE_NODE) {
    err_expected(c, k->name, n, "a list");
    return;
  }
  size_t count = seq_len(n);
  if (check_count(c, k, n, count) != 0) return;
  px_addr_conf_t **arr = PX__FIELD(base, k->off, px_addr_conf_t *);
  size_t *cnt = PX__FIELD(base, k->cnt_off, size_t);
  px_addr_conf_t *a = px_calloc(count ? count : 1, sizeof(*a));
  size_t got = 0;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
    if (parse_addr_into(c, k->name, px__node(c, *it), &a[got]) == 0) got++;
  *arr = a;
  *cnt = got;
}

static void parse_strings(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  if (n->type != YAML_SEQUENCE_NODE) {
    err_expected(c, k->name, n, "a list");
    return;
  }
  size_t count = seq_len(n);
  if (check_count(c, k, n, count) != 0) return;
  px_strlist_t *l = PX__FIELD(base, k->off, px_strlist_t);
  l->items = px_calloc(count ? count : 1, sizeof(char *));
  l->n = 0;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *item = px__node(c, *it);
    const char *s = px__scalar(c, k->name, item);
    if (s && *s == '\0')
      px__err(c, px__node_pos(c, item), "'%s': entries must not be empty", k->name);
    else if (s)
      l->items[l->n++] = px_strdup(s);
  }
}

static void parse_list(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  if (n->type != YAML_SEQUENCE_NODE) {
    err_expected(c, k->name, n, "a list");
    return;
  }
  size_t count = seq_len(n);
  if (check_count(c, k, n, count) != 0) return;
  char *arr = px_calloc(count ? count : 1, k->map->size);
  size_t i = 0;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
    px__defaults(k->map, arr + i * k->map->size);
    px__parse_map(c, k->map, px__node(c, *it), arr + i * k->map->size);
  }
  *PX__FIELD(base, k->off, void *) = arr;
  *PX__FIELD(base, k->cnt_off, size_t) = count;
}

static void parse_value(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  long long v;
  if (k->type != PX__T_MAP) record_field(c, PX__FIELD(base, k->off, char), px__node_pos(c, n));
  switch (k->type) {
  case PX__T_INT:
    if (parse_integer(c, k, n, &v) == 0) *PX__FIELD(base, k->off, int) = (int)v;
    break;
  case PX__T_COUNT:
    if (parse_integer(c, k, n, &v) == 0) *PX__FIELD(base, k->off, size_t) = (size_t)v;
    break;
  case PX__T_DOUBLE: parse_double(c, k, n, base); break;
  case PX__T_BOOL: parse_bool(c, k, n, base); break;
  case PX__T_DURATION: parse_duration(c, k, n, base); break;
  case PX__T_SIZE: parse_size(c, k, n, base); break;
  case PX__T_STRING: parse_string(c, k, n, base); break;
  case PX__T_ENUM: parse_enum(c, k, n, base); break;
  case PX__T_FLAGS: parse_flags(c, k, n, base); break;
  case PX__T_ADDR: parse_addr_into(c, k->name, n, PX__FIELD(base, k->off, px_addr_conf_t)); break;
  case PX__T_ADDRS: parse_addrs(c, k, n, base); break;
  case PX__T_STRINGS: parse_strings(c, k, n, base); break;
  case PX__T_LIST: parse_list(c, k, n, base); break;
  case PX__T_CUSTOM: k->custom->parse(c, k, n, base); break;
  case PX__T_MAP:
    if (n->type != YAML_MAPPING_NODE) {
      err_expected(c, k->name, n, "a mapping");
      break;
    }
    if (k->has_off) *PX__FIELD(base, k->has_off - 1, int) = 1;
    px__parse_map(c, k->map, n, PX__FIELD(base, k->off, char));
    break;
  }
}

/* ---- mappings ----------------------------------------------------------- */

const px__seen_t *px__seen(const px__map_t *map, const px__seen_t *seen, const char *name) {
  for (size_t i = 0; i < map->nkeys; i++)
    if (strcmp(map->keys[i].name, name) == 0) return seen[i].key ? &seen[i] : NULL;
  return NULL;
}

void px__parse_map(px__ctx_t *c, const px__map_t *map, yaml_node_t *node, void *base) {
  if (c->too_large) return;
  if (++c->visits > PX__MAX_VISITS) {
    c->too_large = 1;
    px__err(c, px__node_pos(c, node), "configuration too large (more than %d mappings; runaway aliases?)",
            PX__MAX_VISITS);
    return;
  }
  if (node->type != YAML_MAPPING_NODE) {
    char tmp[64];
    px__err(c, px__node_pos(c, node), "%s: expected a mapping, got %s", map->what,
            px__describe(node, tmp, sizeof(tmp)));
    return;
  }
  if (map->pos_off) *PX__FIELD(base, map->pos_off - 1, px_pos_t) = px__node_pos(c, node);
  px__seen_t seen[32] = {{0}};
  if (map->nkeys > PX_ARRAY_SIZE(seen)) {
    fprintf(stderr, "outrigger: config table '%s' has too many keys\n", map->what);
    abort();
  }
  for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = px__node(c, p->key), *vn = px__node(c, p->value);
    if (kn->type != YAML_SCALAR_NODE) {
      px__err(c, px__node_pos(c, kn), "keys must be plain strings");
      continue;
    }
    const char *name = (const char *)kn->data.scalar.value;
    if (map->extensions && strncmp(name, "x-", 2) == 0) continue;
    size_t i;
    px__hint_t h = {0};
    for (i = 0; i < map->nkeys; i++) {
      if (strcmp(map->keys[i].name, name) == 0) break;
      px__hint_try(&h, name, map->keys[i].name);
    }
    if (i == map->nkeys) {
      char tmp[96];
      px__err(c, px__node_pos(c, kn), "unknown key '%s' in %s%s", name, map->what,
              px__hint_text(&h, tmp, sizeof(tmp)));
      continue;
    }
    if (seen[i].key) {
      px__err(c, px__node_pos(c, kn), "duplicate key '%s' (first given at line %d)", name,
              (int)seen[i].key->start_mark.line + 1);
      continue;
    }
    seen[i].key = kn;
    seen[i].value = vn;
    parse_value(c, &map->keys[i], vn, base);
  }
  for (size_t i = 0; i < map->nkeys; i++)
    if ((map->keys[i].flags & PX__K_REQUIRED) && !seen[i].key)
      px__err(c, px__node_pos(c, node), "%s: missing required key '%s'", map->what, map->keys[i].name);
  if (map->check) map->check(c, base, node, seen);
}

void px__defaults(const px__map_t *map, void *base) {
  for (size_t i = 0; i < map->nkeys; i++) {
    const px__key_t *k = &map->keys[i];
    switch (k->type) {
    case PX__T_INT:
    case PX__T_BOOL:
    case PX__T_ENUM: *PX__FIELD(base, k->off, int) = (int)k->def; break;
    case PX__T_COUNT:
    case PX__T_SIZE: *PX__FIELD(base, k->off, size_t) = (size_t)k->def; break;
    case PX__T_DOUBLE: *PX__FIELD(base, k->off, double) = k->def; break;
    case PX__T_DURATION: *PX__FIELD(base, k->off, uint64_t) = (uint64_t)k->def; break;
    case PX__T_FLAGS: *PX__FIELD(base, k->off, unsigned) = (unsigned)k->def; break;
    case PX__T_STRING:
      if (k->defs) *PX__FIELD(base, k->off, char *) = px_strdup(k->defs);
      break;
    case PX__T_ADDR:
      if (k->defs) {
        px_addr_conf_t *a = PX__FIELD(base, k->off, px_addr_conf_t);
        a->text = px_strdup(k->defs);
        px_addr_parse(k->defs, &a->sa);
      }
      break;
    case PX__T_MAP: px__defaults(k->map, PX__FIELD(base, k->off, char)); break;
    case PX__T_ADDRS:
    case PX__T_STRINGS:
    case PX__T_LIST:
    case PX__T_CUSTOM: break;
    }
  }
}

void px__free_map(const px__map_t *map, void *base) {
  for (size_t i = 0; i < map->nkeys; i++) {
    const px__key_t *k = &map->keys[i];
    switch (k->type) {
    case PX__T_STRING: free(*PX__FIELD(base, k->off, char *)); break;
    case PX__T_ADDR: free(PX__FIELD(base, k->off, px_addr_conf_t)->text); break;
    case PX__T_ADDRS: {
      px_addr_conf_t *a = *PX__FIELD(base, k->off, px_addr_conf_t *);
      size_t n = *PX__FIELD(base, k->cnt_off, size_t);
      for (size_t j = 0; j < n; j++) free(a[j].text);
      free(a);
      break;
    }
    case PX__T_STRINGS: {
      px_strlist_t *l = PX__FIELD(base, k->off, px_strlist_t);
      for (size_t j = 0; j < l->n; j++) free(l->items[j]);
      free(l->items);
      break;
    }
    case PX__T_LIST: {
      char *arr = *PX__FIELD(base, k->off, char *);
      size_t n = *PX__FIELD(base, k->cnt_off, size_t);
      for (size_t j = 0; j < n; j++) px__free_map(k->map, arr + j * k->map->size);
      free(arr);
      break;
    }
    case PX__T_MAP: px__free_map(k->map, PX__FIELD(base, k->off, char)); break;
    case PX__T_CUSTOM:
      if (k->custom->free) k->custom->free(k, base);
      break;
    default: break;
    }
  }
}

/* ---- JSON --------------------------------------------------------------- */

static void json_str_or_null(px_buf_t *out, const char *s) {
  if (s)
    px_buf_json_str(out, s, strlen(s));
  else
    px_buf_append_cstr(out, "null");
}

static const char *enum_name(const px__enum_t *e, int v) {
  for (; e->name; e++)
    if (e->value == v) return e->name;
  return NULL;
}

static void json_value(const px__key_t *k, const void *base, px_buf_t *out) {
  char tmp[64];
  const void *f = PX__FIELD(base, k->off, const char);
  if ((k->flags & PX__K_SECRET) && k->type == PX__T_STRING) {
    json_str_or_null(out, *(char *const *)f ? "[redacted]" : NULL);
    return;
  }
  switch (k->type) {
  case PX__T_INT:
  case PX__T_BOOL:
    if (k->type == PX__T_BOOL)
      px_buf_append_cstr(out, *(const int *)f ? "true" : "false");
    else
      px_buf_printf(out, "%d", *(const int *)f);
    break;
  case PX__T_COUNT: px_buf_append_u64(out, *(const size_t *)f); break;
  case PX__T_DOUBLE: px_buf_printf(out, "%.10g", *(const double *)f); break;
  case PX__T_DURATION:
    px__fmt_duration(*(const uint64_t *)f, tmp, sizeof(tmp));
    json_str_or_null(out, tmp);
    break;
  case PX__T_SIZE:
    px__fmt_size(*(const size_t *)f, tmp, sizeof(tmp));
    json_str_or_null(out, tmp);
    break;
  case PX__T_STRING: json_str_or_null(out, *(char *const *)f); break;
  case PX__T_ENUM: json_str_or_null(out, enum_name(k->enums, *(const int *)f)); break;
  case PX__T_FLAGS: {
    unsigned bits = *(const unsigned *)f;
    int first = 1;
    px_buf_append_cstr(out, "[");
    for (const px__enum_t *e = k->enums; e->name; e++) {
      if (e->value >= 32 || !(bits & (1u << e->value))) continue;
      if (!first) px_buf_append_cstr(out, ",");
      json_str_or_null(out, e->name);
      first = 0;
    }
    px_buf_append_cstr(out, "]");
    break;
  }
  case PX__T_ADDR: json_str_or_null(out, ((const px_addr_conf_t *)f)->text); break;
  case PX__T_ADDRS: {
    const px_addr_conf_t *a = *(px_addr_conf_t *const *)f;
    size_t n = *PX__FIELD(base, k->cnt_off, const size_t);
    px_buf_append_cstr(out, "[");
    for (size_t j = 0; j < n; j++) {
      if (j) px_buf_append_cstr(out, ",");
      json_str_or_null(out, a[j].text);
    }
    px_buf_append_cstr(out, "]");
    break;
  }
  case PX__T_STRINGS: {
    const px_strlist_t *l = f;
    px_buf_append_cstr(out, "[");
    for (size_t j = 0; j < l->n; j++) {
      if (j) px_buf_append_cstr(out, ",");
      json_str_or_null(out, l->items[j]);
    }
    px_buf_append_cstr(out, "]");
    break;
  }
  case PX__T_LIST: {
    const char *arr = *(char *const *)f;
    size_t n = *PX__FIELD(base, k->cnt_off, const size_t);
    px_buf_append_cstr(out, "[");
    for (size_t j = 0; j < n; j++) {
      if (j) px_buf_append_cstr(out, ",");
      px__json_map(k->map, arr + j * k->map->size, out);
    }
    px_buf_append_cstr(out, "]");
    break;
  }
  case PX__T_MAP:
    if ((k->flags & PX__K_NULL_IF_ABSENT) && k->has_off && !*PX__FIELD(base, k->has_off - 1, const int))
      px_buf_append_cstr(out, "null");
    else
      px__json_map(k->map, f, out);
    break;
  case PX__T_CUSTOM: k->custom->to_json(k, base, out); break;
  }
}

void px__json_map(const px__map_t *map, const void *base, px_buf_t *out) {
  px_buf_append_cstr(out, "{");
  for (size_t i = 0; i < map->nkeys; i++) {
    if (i) px_buf_append_cstr(out, ",");
    px_buf_json_str(out, map->keys[i].name, strlen(map->keys[i].name));
    px_buf_append_cstr(out, ":");
    json_value(&map->keys[i], base, out);
  }
  px_buf_append_cstr(out, "}");
}

/* ---- loading ------------------------------------------------------------ */

void px__free(const px__schema_t *schema, void *base) {
  if (!base) return;
  px__free_map(schema->root, base);
  free(base);
}

static void syntax_error(px__ctx_t *c, yaml_parser_t *parser) {
  px_pos_t pos = {c->path, 0, 0};
  const char *problem = parser->problem ? parser->problem : "unknown error";
  if (parser->error == YAML_READER_ERROR) {
    px__err(c, pos, "cannot read YAML at byte %zu: %s", parser->problem_offset, problem);
    return;
  }
  if (parser->error == YAML_MEMORY_ERROR) {
    px__err(c, pos, "out of memory while reading YAML");
    return;
  }
  pos.line = (int)parser->problem_mark.line + 1;
  pos.col = (int)parser->problem_mark.column + 1;
  if (parser->context)
    px__err(c, pos, "YAML syntax error: %s (%s started at line %d, column %d)", problem, parser->context,
            (int)parser->context_mark.line + 1, (int)parser->context_mark.column + 1);
  else
    px__err(c, pos, "YAML syntax error: %s", problem);
}

void *px__parse(const px__schema_t *schema, const char *name, const char *text, size_t len,
                px_errlist_t *errs) {
  void *cfg = px_calloc(1, schema->size);
  px__defaults(schema->root, cfg);
  px__ctx_t c = {.path = name, .root = cfg};

  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    fprintf(stderr, "outrigger: out of memory (yaml parser)\n");
    abort();
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    syntax_error(&c, &parser);
  } else {
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
      px__err(&c, (px_pos_t){name, 0, 0}, "the configuration is empty");
    } else {
      px__parse_map(&c, schema->root, root, cfg);
      yaml_document_t next;
      if (!yaml_parser_load(&parser, &next)) {
        syntax_error(&c, &parser);
      } else {
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        if (extra) px__err(&c, px__node_pos(&c, extra), "only one YAML document is allowed");
        yaml_document_delete(&next);
      }
      if (!c.too_large && schema->check) schema->check(&c);
    }
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&parser);

  if (c.nerrs) qsort(c.errs, c.nerrs, sizeof(*c.errs), err_cmp);
  for (size_t i = 0; i < c.nerrs; i++) errlist_push(errs, c.errs[i].msg);
  free(c.errs);
  free(c.fpos);
  if (c.nerrs) {
    px__free(schema, cfg);
    return NULL;
  }
  return cfg;
}
