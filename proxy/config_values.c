/* The configuration's values that are not a plain type (SPEC §3): workers, access_log,
 * match headers, registry labels, etcd member URLs, retry status codes and the cluster
 * hash, each parsed, written back as JSON and freed by its px__custom_t (config_int.h);
 * the labels' public helpers (config.h) too. config_schema.c's tables name them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_int.h"
#include "core.h"
#include "etcd_client.h"
#include "registry.h"

/* workers: auto | 1..256 */
static void workers_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  int *w = PX__FIELD(base, k->off, int);
  const char *s = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
  char *end;
  long v = strtol(s, &end, 10);
  if (strcmp(s, "auto") == 0) {
    *w = 0;
  } else if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && end != s &&
             *end == '\0' && v >= 1 && v <= 256) {
    *w = (int)v;
  } else {
    char tmp[64];
    px__err(c, px__node_pos(c, n), "'workers' must be 'auto' or an integer between 1 and 256, got %s",
            px__describe(n, tmp, sizeof(tmp)));
  }
}
static void workers_json(const px__key_t *k, const void *base, px_buf_t *out) {
  int w = *PX__FIELD(base, k->off, const int);
  if (w == 0)
    px_buf_append_cstr(out, "\"auto\"");
  else
    px_buf_printf(out, "%d", w);
}
const px__custom_t px__workers_type = {workers_parse, workers_json, NULL};

/* access_log: off | stdout | PATH; stored as NULL | "stdout" | PATH */
static void access_log_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  const char *s = px__scalar(c, k->name, n);
  if (!s) return;
  char **f = PX__FIELD(base, k->off, char *);
  free(*f);
  *f = NULL;
  if (*s == '\0')
    px__err(c, px__node_pos(c, n), "'access_log' must be off, stdout or a file path");
  else if (strcmp(s, "off") != 0)
    *f = px_strdup(s);
}
static void access_log_json(const px__key_t *k, const void *base, px_buf_t *out) {
  const char *s = *PX__FIELD(base, k->off, char *const);
  if (!s) s = "off";
  px_buf_json_str(out, s, strlen(s));
}
static void access_log_free(const px__key_t *k, void *base) { free(*PX__FIELD(base, k->off, char *)); }
const px__custom_t px__access_log_type = {access_log_parse, access_log_json, access_log_free};

/* match.headers: { NAME: VALUE, ... } */
static int is_token(const char *s) {
  if (!*s) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          strchr("!#$%&'*+-.^_`|~", *s)))
      return 0;
  return 1;
}
static void headers_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  px_match_conf_t *m = base;
  if (n->type != YAML_MAPPING_NODE) {
    char tmp[64];
    px__err(c, px__node_pos(c, n), "'headers': expected a mapping, got %s",
            px__describe(n, tmp, sizeof(tmp)));
    return;
  }
  size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  m->headers = px_calloc(count ? count : 1, sizeof(*m->headers));
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = px__node(c, p->key), *vn = px__node(c, p->value);
    const char *name = px__scalar(c, "headers", kn);
    if (!name) continue;
    if (!is_token(name)) {
      px__err(c, px__node_pos(c, kn), "'headers': '%s' is not a valid header name", name);
      continue;
    }
    size_t i;
    for (i = 0; i < m->nheaders; i++)
      if (strcasecmp(m->headers[i].name, name) == 0) break;
    if (i < m->nheaders) {
      px__err(c, px__node_pos(c, kn), "'headers': '%s' is given twice", name);
      continue;
    }
    if (vn->type != YAML_SCALAR_NODE || px__is_null(vn)) {
      char tmp[64];
      px__err(c, px__node_pos(c, vn), "'headers': value of '%s' must be a string, got %s", name,
              px__describe(vn, tmp, sizeof(tmp)));
      continue;
    }
    m->headers[m->nheaders].name = px_strdup(name);
    m->headers[m->nheaders++].value = px_strdup((const char *)vn->data.scalar.value);
  }
}
static void headers_json(const px__key_t *k, const void *base, px_buf_t *out) {
  const px_match_conf_t *m = base;
  px_buf_append_cstr(out, "{");
  for (size_t i = 0; i < m->nheaders; i++) {
    if (i) px_buf_append_cstr(out, ",");
    px_buf_json_str(out, m->headers[i].name, strlen(m->headers[i].name));
    px_buf_append_cstr(out, ":");
    px_buf_json_str(out, m->headers[i].value, strlen(m->headers[i].value));
  }
  px_buf_append_cstr(out, "}");
}
static void headers_free(const px__key_t *k, void *base) {
  px_match_conf_t *m = base;
  for (size_t i = 0; i < m->nheaders; i++) {
    free(m->headers[i].name);
    free(m->headers[i].value);
  }
  free(m->headers);
}
const px__custom_t px__headers_type = {headers_parse, headers_json, headers_free};

/* register.labels, discovery.labels: { KEY: VALUE, ... } (SPEC §12), strings both. */
static void labels_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  px_labels_conf_t *l = PX__FIELD(base, k->off, px_labels_conf_t);
  char tmp[64];
  if (n->type != YAML_MAPPING_NODE) {
    px__err(c, px__node_pos(c, n), "'labels': expected a mapping, got %s", px__describe(n, tmp, sizeof(tmp)));
    return;
  }
  size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  if (count > PX_REG_MAX_LABELS) {
    px__err(c, px__node_pos(c, n), "'labels': at most %d labels, got %zu", PX_REG_MAX_LABELS, count);
    return;
  }
  l->items = px_calloc(count ? count : 1, sizeof(*l->items));
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = px__node(c, p->key), *vn = px__node(c, p->value);
    const char *key = px__scalar(c, "labels", kn);
    if (!key) continue;
    if (vn->type != YAML_SCALAR_NODE || px__is_null(vn)) {
      px__err(c, px__node_pos(c, vn), "'labels': value of '%s' must be a string, got %s", key,
              px__describe(vn, tmp, sizeof(tmp)));
      continue;
    }
    const char *value = (const char *)vn->data.scalar.value;
    size_t kl = strlen(key), vl = strlen(value);
    if (kl == 0 || kl > PX_REG_MAX_LABEL_LEN || kl != kn->data.scalar.length) {
      px__err(c, px__node_pos(c, kn), "'labels': a key must be 1 to %d bytes without NUL",
              PX_REG_MAX_LABEL_LEN);
      continue;
    }
    if (vl == 0 || vl > PX_REG_MAX_LABEL_LEN || vl != vn->data.scalar.length) {
      px__err(c, px__node_pos(c, vn), "'labels': the value of '%s' must be 1 to %d bytes without NUL", key,
              PX_REG_MAX_LABEL_LEN);
      continue;
    }
    size_t i;
    for (i = 0; i < l->n && strcmp(l->items[i].key, key) != 0; i++) {
    }
    if (i < l->n) {
      px__err(c, px__node_pos(c, kn), "'labels': '%s' is given twice", key);
      continue;
    }
    l->items[l->n].key = px_strdup(key);
    l->items[l->n++].value = px_strdup(value);
  }
}
void px_labels_copy(px_labels_conf_t *to, const px_labels_conf_t *from) {
  to->n = from->n;
  to->items = px_calloc(from->n ? from->n : 1, sizeof(*to->items));
  for (size_t i = 0; i < from->n; i++)
    to->items[i] = (px_label_conf_t){px_strdup(from->items[i].key), px_strdup(from->items[i].value)};
}
void px_labels_free(px_labels_conf_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->items[i].key);
    free(l->items[i].value);
  }
  free(l->items);
  l->items = NULL;
  l->n = 0;
}
int px_labels_equal(const px_labels_conf_t *a, const px_labels_conf_t *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->items[i].key, b->items[i].key) != 0 || strcmp(a->items[i].value, b->items[i].value) != 0)
      return 0;
  return 1;
}
void px_labels_json(const px_labels_conf_t *l, px_buf_t *out) {
  px_buf_append_cstr(out, "{");
  for (size_t i = 0; i < l->n; i++) {
    if (i) px_buf_append_cstr(out, ",");
    px_buf_json_str(out, l->items[i].key, strlen(l->items[i].key));
    px_buf_append_cstr(out, ":");
    px_buf_json_str(out, l->items[i].value, strlen(l->items[i].value));
  }
  px_buf_append_cstr(out, "}");
}
static void labels_json(const px__key_t *k, const void *base, px_buf_t *out) {
  px_labels_json(PX__FIELD(base, k->off, const px_labels_conf_t), out);
}
static void labels_free(const px__key_t *k, void *base) {
  px_labels_free(PX__FIELD(base, k->off, px_labels_conf_t));
}
const px__custom_t px__labels_type = {labels_parse, labels_json, labels_free};

/* registry.etcd.endpoints: [URL, ...], each an etcd member's http:// client URL. */
static void etcd_urls_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  px_strlist_t *l = PX__FIELD(base, k->off, px_strlist_t);
  char tmp[64];
  if (n->type != YAML_SEQUENCE_NODE) {
    px__err(c, px__node_pos(c, n), "'endpoints': expected a list of etcd client URLs, got %s",
            px__describe(n, tmp, sizeof(tmp)));
    return;
  }
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (count == 0 || count > 16) {
    px__err(c, px__node_pos(c, n), "'endpoints': expected 1 to 16 etcd client URLs, got %zu", count);
    return;
  }
  l->items = px_calloc(count, sizeof(char *));
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *in = px__node(c, *it);
    const char *url = px__scalar(c, "endpoints", in);
    if (!url) continue;
    struct sockaddr_storage sa;
    char why[160];
    if (px_etcd_url_parse(url, &sa, why, sizeof(why)) != 0) {
      px__err(c, px__node_pos(c, in), "'endpoints': '%s': %s", url, why);
      continue;
    }
    size_t i;
    for (i = 0; i < l->n && strcmp(l->items[i], url) != 0; i++) {
    }
    if (i < l->n)
      px__err(c, px__node_pos(c, in), "'endpoints': '%s' is listed twice", url);
    else
      l->items[l->n++] = px_strdup(url);
  }
}
static void etcd_urls_json(const px__key_t *k, const void *base, px_buf_t *out) {
  const px_strlist_t *l = PX__FIELD(base, k->off, const px_strlist_t);
  px_buf_append_cstr(out, "[");
  for (size_t i = 0; i < l->n; i++) {
    if (i) px_buf_append_cstr(out, ",");
    px_buf_json_str(out, l->items[i], strlen(l->items[i]));
  }
  px_buf_append_cstr(out, "]");
}
static void etcd_urls_free(const px__key_t *k, void *base) {
  px_strlist_t *l = PX__FIELD(base, k->off, px_strlist_t);
  for (size_t i = 0; i < l->n; i++) free(l->items[i]);
  free(l->items);
}
const px__custom_t px__etcd_urls_type = {etcd_urls_parse, etcd_urls_json, etcd_urls_free};

/* retry.status: [409, 503, ...], each 100..599 */
static void status_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  px_retry_conf_t *r = base;
  if (n->type != YAML_SEQUENCE_NODE) {
    char tmp[64];
    px__err(c, px__node_pos(c, n), "'status': expected a list, got %s", px__describe(n, tmp, sizeof(tmp)));
    return;
  }
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  r->status = px_calloc(count ? count : 1, sizeof(int));
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *in = px__node(c, *it);
    const char *s = in->type == YAML_SCALAR_NODE && in->data.scalar.style == YAML_PLAIN_SCALAR_STYLE
                        ? (const char *)in->data.scalar.value
                        : "";
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0') {
      char tmp[64];
      px__err(c, px__node_pos(c, in), "'status': expected an integer, got %s",
              px__describe(in, tmp, sizeof(tmp)));
      continue;
    }
    if (v < 100 || v > 599) {
      px__err(c, px__node_pos(c, in), "'status': codes must be between 100 and 599, got %ld", v);
      continue;
    }
    size_t i;
    for (i = 0; i < r->nstatus && r->status[i] != v; i++) {
    }
    if (i < r->nstatus)
      px__err(c, px__node_pos(c, in), "'status': %ld is listed twice", v);
    else
      r->status[r->nstatus++] = (int)v;
  }
}
static void status_json(const px__key_t *k, const void *base, px_buf_t *out) {
  const px_retry_conf_t *r = base;
  px_buf_append_cstr(out, "[");
  for (size_t i = 0; i < r->nstatus; i++) px_buf_printf(out, "%s%d", i ? "," : "", r->status[i]);
  px_buf_append_cstr(out, "]");
}
static void status_free(const px__key_t *k, void *base) { free(((px_retry_conf_t *)base)->status); }
const px__custom_t px__status_type = {status_parse, status_json, status_free};

/* cluster.hash: path | source_ip | { header: NAME } | { cookie: NAME } */
static void hash_parse(px__ctx_t *c, const px__key_t *k, yaml_node_t *n, void *base) {
  px_cluster_conf_t *cl = base;
  const char *s = n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
  if (s && strcmp(s, "path") == 0) {
    cl->hash = PX_HASH_PATH;
    return;
  }
  if (s && strcmp(s, "source_ip") == 0) {
    cl->hash = PX_HASH_SOURCE_IP;
    return;
  }
  if (n->type == YAML_MAPPING_NODE && n->data.mapping.pairs.top - n->data.mapping.pairs.start == 1) {
    yaml_node_t *kn = px__node(c, n->data.mapping.pairs.start->key);
    yaml_node_t *vn = px__node(c, n->data.mapping.pairs.start->value);
    const char *kind = kn->type == YAML_SCALAR_NODE ? (const char *)kn->data.scalar.value : "";
    px_hash_kind_t hk = strcmp(kind, "header") == 0   ? PX_HASH_HEADER
                        : strcmp(kind, "cookie") == 0 ? PX_HASH_COOKIE
                                                      : PX_HASH_NONE;
    if (hk != PX_HASH_NONE) {
      const char *name = px__scalar(c, kind, vn);
      if (name && is_token(name)) {
        cl->hash = hk;
        free(cl->hash_name);
        cl->hash_name = px_strdup(name);
      } else if (name) {
        px__err(c, px__node_pos(c, vn), "'hash': '%s' is not a valid %s name", name, kind);
      }
      return;
    }
  }
  char tmp[64];
  px__err(c, px__node_pos(c, n),
          "'hash' must be path, source_ip, { header: NAME } or { cookie: NAME }, got %s",
          px__describe(n, tmp, sizeof(tmp)));
}
static void hash_json(const px__key_t *k, const void *base, px_buf_t *out) {
  const px_cluster_conf_t *cl = base;
  switch (cl->hash) {
  case PX_HASH_NONE: px_buf_append_cstr(out, "null"); break;
  case PX_HASH_PATH: px_buf_append_cstr(out, "\"path\""); break;
  case PX_HASH_SOURCE_IP: px_buf_append_cstr(out, "\"source_ip\""); break;
  case PX_HASH_HEADER:
  case PX_HASH_COOKIE:
    px_buf_printf(out, "{\"%s\":", cl->hash == PX_HASH_HEADER ? "header" : "cookie");
    px_buf_json_str(out, cl->hash_name, strlen(cl->hash_name));
    px_buf_append_cstr(out, "}");
    break;
  }
}
static void hash_free(const px__key_t *k, void *base) { free(((px_cluster_conf_t *)base)->hash_name); }
const px__custom_t px__hash_type = {hash_parse, hash_json, hash_free};
