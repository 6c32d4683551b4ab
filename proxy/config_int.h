/* Internals of the configuration loader, shared by config.c (the generic, table-driven
 * machinery: YAML document walking, value types, errors, defaults, JSON, freeing) and
 * config_schema.c (the tables that describe SPEC §3 and the checks that span keys).
 * Not part of the public API.
 *
 * A mapping kind is a px__map_t: a table of px__key_t, one per key, giving the key's
 * name, its value type, the offset of the field it fills (relative to the struct the
 * mapping fills), its bounds and default. Adding a key is adding one table row. */
#ifndef PX_CONFIG_INT_H
#define PX_CONFIG_INT_H

#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config.h"

typedef enum {
  PX__T_INT,      /* int; plain YAML integer within [min, max] */
  PX__T_COUNT,    /* size_t; plain YAML integer within [min, max] */
  PX__T_DOUBLE,   /* double within [min, max] */
  PX__T_BOOL,     /* int 0/1; true | false */
  PX__T_DURATION, /* uint64_t milliseconds; "250ms", "2s", ... within [min, max] */
  PX__T_SIZE,     /* size_t bytes; 512, "64KiB", ... within [min, max] */
  PX__T_STRING,   /* char *, non-empty */
  PX__T_ENUM,     /* int; one name of `enums` */
  PX__T_FLAGS,    /* unsigned; list of names of `enums`, each a bit number */
  PX__T_ADDR,     /* px_addr_conf_t */
  PX__T_ADDRS,    /* px_addr_conf_t * at off, size_t count at cnt_off */
  PX__T_STRINGS,  /* px_strlist_t */
  PX__T_MAP,      /* nested mapping `map`, filling the struct at base + off */
  PX__T_LIST,     /* list of mappings `map`: array pointer at off, size_t count at cnt_off */
  PX__T_CUSTOM,   /* parsed, printed and freed by `custom` */
} px__type_t;

enum {
  PX__K_REQUIRED = 1 << 0,
  PX__K_SECRET = 1 << 1,         /* shown as "[redacted]" by px_config_to_json */
  PX__K_NULL_IF_ABSENT = 1 << 2, /* MAP with has_off: JSON null when the block was not given */
};

typedef struct {
  const char *name;
  int value;  /* enum value, or bit number for FLAGS */
} px__enum_t; /* tables end with {NULL, 0} */

typedef struct px__ctx_s px__ctx_t;
typedef struct px__key_s px__key_t;
typedef struct px__map_s px__map_t;

typedef struct {
  void (*parse)(px__ctx_t *c, const px__key_t *k, yaml_node_t *value, void *base);
  void (*to_json)(const px__key_t *k, const void *base, px_buf_t *out);
  void (*free)(const px__key_t *k, void *base);
} px__custom_t;

struct px__key_s {
  const char *name;
  px__type_t type;
  unsigned flags;             /* PX__K_* */
  size_t off;                 /* field offset from the mapping's struct */
  size_t cnt_off;             /* ADDRS, LIST: offset of the size_t count */
  size_t has_off;             /* MAP: offset + 1 of an int set to 1 when given; 0 = none */
  double min, max;            /* numbers, durations, sizes; lists: number of items (max 0 = any) */
  double def;                 /* default of numeric, bool, enum and flags fields */
  const char *defs;           /* default of STRING and ADDR fields */
  const px__enum_t *enums;    /* ENUM, FLAGS */
  const px__map_t *map;       /* MAP, LIST */
  const px__custom_t *custom; /* CUSTOM */
};

/* Which keys of a mapping were given: key and value nodes, indexed like map->keys. */
typedef struct {
  yaml_node_t *key, *value;
} px__seen_t;

struct px__map_s {
  const char *what; /* "listener", "route": for messages */
  const px__key_t *keys;
  size_t nkeys;
  size_t size;    /* struct size, for LIST items */
  size_t pos_off; /* offset + 1 of a px_pos_t set to the mapping's position; 0 = none */
  int extensions; /* keys starting with "x-" are ignored (a home for YAML anchors) */
  /* Checks between keys of one mapping, run after its keys were parsed. */
  void (*check)(px__ctx_t *c, void *base, yaml_node_t *node, const px__seen_t *seen);
};

#define PX__FIELD(base, off, type) ((type *)(void *)((char *)(base) + (off)))

/* ---- provided by config.c ----------------------------------------------- */

struct px__ctx_s {
  const char *path; /* the file name errors carry */
  void *root;       /* the struct the schema's root mapping fills */
  yaml_document_t *doc;
  struct px__err_s *errs; /* collected, sorted by position at the end */
  size_t nerrs, caperrs;
  struct px__fpos_s *fpos; /* where each field's value was written */
  size_t nfpos, capfpos;
  int fpos_sorted;
  size_t visits; /* nodes walked: bounds alias expansion */
  int too_large;
};

void px__err(px__ctx_t *c, px_pos_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
px_pos_t px__node_pos(px__ctx_t *c, const yaml_node_t *n);
/* Position of the value written into `field`, or `fallback` when it was defaulted. */
px_pos_t px__field_pos(px__ctx_t *c, const void *field, px_pos_t fallback);
yaml_node_t *px__node(px__ctx_t *c, int index);
/* "a mapping", "a list", "null" or "'text'" for messages. */
const char *px__describe(const yaml_node_t *n, char *tmp, size_t tmpn);
/* The scalar's text, or NULL after reporting "expected a string" for `name`. */
const char *px__scalar(px__ctx_t *c, const char *name, const yaml_node_t *n);
int px__is_null(const yaml_node_t *n);
void px__parse_map(px__ctx_t *c, const px__map_t *map, yaml_node_t *node, void *base);
const px__seen_t *px__seen(const px__map_t *map, const px__seen_t *seen, const char *name);
void px__defaults(const px__map_t *map, void *base);
void px__free_map(const px__map_t *map, void *base);
void px__json_map(const px__map_t *map, const void *base, px_buf_t *out);

/* Near-miss suggestions: feed candidates, read `best` (NULL when nothing is close). */
typedef struct {
  const char *best;
  unsigned score;
} px__hint_t;
void px__hint_try(px__hint_t *h, const char *got, const char *cand);
/* "; did you mean 'X'?" or "" */
const char *px__hint_text(const px__hint_t *h, char *tmp, size_t tmpn);

void px__fmt_duration(uint64_t ms, char *out, size_t n);
void px__fmt_size(size_t bytes, char *out, size_t n);

/* What a configuration file holds, given to the engine: its top-level mapping, the
 * size of the struct that mapping fills, and the checks that span the whole file
 * (names, references, addresses), run once everything parsed. config_schema.c gives
 * SPEC §3's; the engine knows nothing of it. */
typedef struct {
  const px__map_t *root;
  size_t size;
  void (*check)(px__ctx_t *c);
} px__schema_t;

/* Parses YAML `text` (from file `name`) against `schema` into a new struct, or returns
 * NULL with every error in `errs`, sorted by position. */
void *px__parse(const px__schema_t *schema, const char *name, const char *text, size_t len,
                px_errlist_t *errs);
/* Frees what px__parse made. */
void px__free(const px__schema_t *schema, void *base);

/* ---- provided by config_values.c: the values that are not a plain type ---- */

extern const px__custom_t px__workers_type;
extern const px__custom_t px__access_log_type;
extern const px__custom_t px__headers_type;
extern const px__custom_t px__labels_type;
extern const px__custom_t px__etcd_urls_type;
extern const px__custom_t px__status_type;
extern const px__custom_t px__hash_type;

#endif
