#include "registry.h"

#include <arpa/inet.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "lb.h"

_Static_assert(PX_REG_MAX_WEIGHT == PX_LB_MAX_WEIGHT, "a record's weight must be one the balancer takes");
_Static_assert(PX_REG_MAX_RECORDS <= PX_LB_MAX_ENDPOINTS, "a set's endpoints must fit one balancer");

static int refuse(int rc, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int refuse(int rc, char *why, size_t whylen, const char *fmt, ...) {
  if (why != NULL && whylen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* ---- addresses ---- */

int px_reg_address_check(const char *a, size_t n, char *canon, char *why, size_t whylen) {
  if (n == 0) return refuse(PX_EPARSE, why, whylen, "empty");
  if (n >= PX_REG_ADDR_MAX)
    return refuse(PX_EPARSE, why, whylen, "longer than %d bytes", PX_REG_ADDR_MAX - 1);
  if (memchr(a, '\0', n) != NULL) return refuse(PX_EPARSE, why, whylen, "holds a NUL");
  const char *colon = NULL;
  for (size_t i = n; i > 0; i--) {
    if (a[i - 1] == ':') {
      colon = a + i - 1;
      break;
    }
  }
  /* "::1" alone has colons but no port; only a bracketed v6 may hold colons before it. */
  if (colon == NULL || (a[0] != '[' && memchr(a, ':', (size_t)(colon - a)) != NULL) ||
      (a[0] == '[' && colon[-1] != ']'))
    return refuse(PX_EPARSE, why, whylen, "'%.*s' is not HOST:PORT", (int)n, a);
  if (colon == a) return refuse(PX_EPARSE, why, whylen, "no host before the port");
  const char *port = colon + 1;
  size_t pn = (size_t)(a + n - port);
  unsigned pv = 0;
  if (pn == 0 || pn > 5)
    return refuse(PX_EPARSE, why, whylen, "port '%.*s' is not a number 1..65535", (int)pn, port);
  for (size_t i = 0; i < pn; i++) {
    if (port[i] < '0' || port[i] > '9')
      return refuse(PX_EPARSE, why, whylen, "port '%.*s' is not a number", (int)pn, port);
    pv = pv * 10 + (unsigned)(port[i] - '0');
  }
  if (pn > 1 && port[0] == '0')
    return refuse(PX_EPARSE, why, whylen, "port '%.*s' has a leading 0", (int)pn, port);
  if (pv == 0 || pv > 65535) return refuse(PX_EPARSE, why, whylen, "port %u is out of range 1..65535", pv);

  char host[PX_REG_ADDR_MAX], out[PX_REG_ADDR_MAX];
  size_t hn = (size_t)(colon - a);
  memcpy(host, a, hn);
  host[hn] = '\0';
  if (host[0] == '[') {
    struct in6_addr a6;
    host[hn - 1] = '\0';
    if (hn < 3 || inet_pton(AF_INET6, host + 1, &a6) != 1)
      return refuse(PX_EPARSE, why, whylen, "'%s' is not an IPv6 address", host + 1);
    char txt[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, txt, sizeof(txt));
    snprintf(out, sizeof(out), "[%s]", txt);
  } else if (strcmp(host, "localhost") == 0) {
    snprintf(out, sizeof(out), "%s", host);
  } else {
    struct in_addr a4;
    /* glibc's inet_pton takes only four decimal parts without leading zeros: the one
     * spelling, so the text is already canonical. */
    if (inet_pton(AF_INET, host, &a4) != 1) {
      int name = 0;
      for (size_t i = 0; i < hn; i++)
        name |= (host[i] >= 'a' && host[i] <= 'z') || (host[i] >= 'A' && host[i] <= 'Z');
      if (name)
        return refuse(PX_EPARSE, why, whylen, "'%s' is a name, not an IP address (names are not resolved)",
                      host);
      return refuse(PX_EPARSE, why, whylen, "'%s' is not an IPv4 address", host);
    }
    snprintf(out, sizeof(out), "%s", host);
  }
  if (canon != NULL) {
    /* Never longer than the input: a canonical v6 is at most as long as any spelling. */
    char full[PX_REG_ADDR_MAX + 8];
    int len = snprintf(full, sizeof(full), "%s:%u", out, pv);
    if (len < 0 || len >= PX_REG_ADDR_MAX)
      return refuse(PX_EPARSE, why, whylen, "longer than %d bytes", PX_REG_ADDR_MAX - 1);
    memcpy(canon, full, (size_t)len + 1);
  }
  return 0;
}

/* ---- records ---- */

void px_reg_rfc3339(int64_t unix_s, char out[PX_REG_STARTED_MAX]) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, PX_REG_STARTED_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    out[0] = '\0';
}

static int digits(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

/* RFC 3339's date-time in shape (digits where digits go, "T", a zone): enough to keep
 * what another writer meant as a time and drop what it did not. */
static int looks_rfc3339(const char *s, size_t n) {
  if (n < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2) ||
      (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2) ||
      s[16] != ':' || !digits(s + 17, 2))
    return 0;
  size_t i = 19;
  if (s[i] == '.') {
    size_t j = ++i;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    if (i == j) return 0;
  }
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) return i + 1 == n;
  return i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) && s[i + 3] == ':' &&
         digits(s + i + 4, 2);
}

void px_reg_record_encode(const px_reg_record_t *r, px_buf_t *out) {
  px_buf_append_cstr(out, "{\"address\":");
  px_buf_json_str(out, r->address, strlen(r->address));
  px_buf_append_cstr(out, ",\"labels\":{");
  for (size_t i = 0; i < r->nlabels; i++) {
    if (i > 0) px_buf_append(out, ",", 1);
    px_buf_json_str(out, r->labels[i].key, strlen(r->labels[i].key));
    px_buf_append(out, ":", 1);
    px_buf_json_str(out, r->labels[i].value, strlen(r->labels[i].value));
  }
  px_buf_append_cstr(out, "},\"weight\":");
  px_buf_append_u64(out, (unsigned long long)(r->weight > 0 ? r->weight : 1));
  if (r->started[0] != '\0') {
    px_buf_append_cstr(out, ",\"started\":");
    px_buf_json_str(out, r->started, strlen(r->started));
  }
  px_buf_append(out, "}", 1);
}

/* An optional member: NULL when absent or null (Go writes a nil map as null). */
static const px_json_t *optional(const px_json_t *obj, const char *name) {
  const px_json_t *v = px_json_get(obj, name);
  return v == NULL || px_json_is_null(v) ? NULL : v;
}

static int check_labels(const px_json_t *labels, size_t *room, char *why, size_t whylen) {
  if (px_json_type(labels) != PX_JSON_OBJECT)
    return refuse(PX_EPARSE, why, whylen, "labels is not an object");
  size_t nl = px_json_count(labels);
  if (nl > PX_REG_MAX_LABELS)
    return refuse(PX_ETOOLARGE, why, whylen, "%zu labels, more than %d", nl, PX_REG_MAX_LABELS);
  for (size_t i = 0; i < nl; i++) {
    size_t kn, vn;
    const char *k = px_json_key_at(labels, i, &kn);
    const char *v = px_json_str(px_json_at(labels, i), &vn);
    if (kn == 0) return refuse(PX_EPARSE, why, whylen, "a label has an empty key");
    if (kn > PX_REG_MAX_LABEL_LEN)
      return refuse(PX_ETOOLARGE, why, whylen, "label key '%.32s...' is longer than %d bytes", k,
                    PX_REG_MAX_LABEL_LEN);
    if (memchr(k, '\0', kn) != NULL) return refuse(PX_EPARSE, why, whylen, "a label key holds a NUL");
    if (v == NULL)
      return refuse(PX_EPARSE, why, whylen, "label '%s' is not a string (%s)", k,
                    px_json_type_name(px_json_type(px_json_at(labels, i))));
    if (vn > PX_REG_MAX_LABEL_LEN)
      return refuse(PX_ETOOLARGE, why, whylen, "label '%s' has a value longer than %d bytes", k,
                    PX_REG_MAX_LABEL_LEN);
    if (memchr(v, '\0', vn) != NULL) return refuse(PX_EPARSE, why, whylen, "label '%s' holds a NUL", k);
    *room += kn + vn + 2;
  }
  return 0;
}

static int parse_fields(const px_json_t *root, px_reg_record_t *out, char *why, size_t whylen) {
  if (px_json_type(root) != PX_JSON_OBJECT) return refuse(PX_EPARSE, why, whylen, "not a JSON object");

  const px_json_t *addr = optional(root, "address");
  size_t an;
  const char *as = px_json_str(addr, &an);
  if (addr == NULL) return refuse(PX_EPARSE, why, whylen, "no address");
  if (as == NULL) return refuse(PX_EPARSE, why, whylen, "address is not a string");
  char reason[160];
  if (px_reg_address_check(as, an, out->address, reason, sizeof(reason)) != 0)
    return refuse(PX_EPARSE, why, whylen, "address: %s", reason);

  out->weight = 1;
  const px_json_t *w = optional(root, "weight");
  int64_t wv;
  if (w != NULL) {
    if (px_json_int(w, &wv) != 0) return refuse(PX_EPARSE, why, whylen, "weight is not an integer");
    if (wv < 1) return refuse(PX_EPARSE, why, whylen, "weight %lld is below 1", (long long)wv);
    if (wv > PX_REG_MAX_WEIGHT)
      return refuse(PX_EPARSE, why, whylen, "weight %lld is above %d (the balancer's limit)", (long long)wv,
                    PX_REG_MAX_WEIGHT);
    out->weight = (int)wv;
  }

  /* "started" is for people reading the registry; one we cannot read costs the record
   * nothing (SPEC: a record parses on its address, labels and weight). */
  size_t sn;
  const char *ss = px_json_str(optional(root, "started"), &sn);
  if (ss != NULL && sn < PX_REG_STARTED_MAX && looks_rfc3339(ss, sn)) memcpy(out->started, ss, sn + 1);

  const px_json_t *labels = optional(root, "labels");
  if (labels == NULL) return 0;
  size_t room = 0;
  int rc = check_labels(labels, &room, why, whylen);
  if (rc != 0) return rc;
  size_t nl = px_json_count(labels);
  if (nl == 0) return 0;
  px_reg_label_t *lv = px_malloc(nl * sizeof(*lv) + room);
  char *p = (char *)(lv + nl);
  for (size_t i = 0; i < nl; i++) {
    size_t kn, vn;
    const char *k = px_json_key_at(labels, i, &kn);
    const char *v = px_json_str(px_json_at(labels, i), &vn);
    lv[i].key = memcpy(p, k, kn + 1);
    p += kn + 1;
    lv[i].value = memcpy(p, v, vn + 1);
    p += vn + 1;
  }
  out->labels = lv;
  out->nlabels = nl;
  out->mem = lv;
  return 0;
}

int px_reg_record_parse(const char *json, size_t n, px_reg_record_t *out, char *why, size_t whylen) {
  memset(out, 0, sizeof(*out));
  if (n == 0) return refuse(PX_EPARSE, why, whylen, "empty value");
  if (n > PX_REG_MAX_VALUE)
    return refuse(PX_ETOOLARGE, why, whylen, "value of %zu bytes, more than %u", n, PX_REG_MAX_VALUE);
  char err[96];
  px_json_t *root = px_json_parse(json, n, err, sizeof(err));
  if (root == NULL) return refuse(PX_EPARSE, why, whylen, "not JSON (%s)", err);
  int rc = parse_fields(root, out, why, whylen);
  px_json_free(root);
  if (rc != 0) px_reg_record_free(out);
  return rc;
}

void px_reg_record_free(px_reg_record_t *r) {
  free(r->mem);
  memset(r, 0, sizeof(*r));
}

int px_reg_labels_match(const px_reg_record_t *r, const px_reg_label_t *sel, size_t nsel) {
  for (size_t i = 0; i < nsel; i++) {
    size_t j = 0;
    while (j < r->nlabels && strcmp(r->labels[j].key, sel[i].key) != 0) j++;
    if (j == r->nlabels || strcmp(r->labels[j].value, sel[i].value) != 0) return 0;
  }
  return 1;
}

/* ---- keys ---- */

size_t px_reg_prefix_len(const char *prefix) {
  size_t n = prefix != NULL ? strlen(prefix) : 0;
  while (n > 0 && prefix[n - 1] == '/') n--;
  return n;
}

static int segment_ok(const char *s) { return s != NULL && s[0] != '\0' && strchr(s, '/') == NULL; }

static void append_service_dir(px_buf_t *out, const char *prefix, const char *service) {
  px_buf_append(out, prefix, px_reg_prefix_len(prefix));
  px_buf_append_cstr(out, "/services/");
  px_buf_append_cstr(out, service);
  px_buf_append(out, "/", 1);
}

int px_reg_key(px_buf_t *out, const char *prefix, const char *service, const char *id) {
  if (!segment_ok(service) || !segment_ok(id)) return PX_EUSAGE;
  append_service_dir(out, prefix, service);
  px_buf_append_cstr(out, id);
  return 0;
}

void px_reg_prefix_end(px_buf_t *out, const void *p, size_t n) {
  const unsigned char *s = p;
  while (n > 0 && s[n - 1] == 0xff) n--;
  if (n == 0) {
    px_buf_append(out, "", 1);
    return;
  }
  size_t at = out->len;
  px_buf_append(out, s, n);
  out->data[at + n - 1] = (char)(s[n - 1] + 1);
}

int px_reg_service_range(px_buf_t *start, px_buf_t *end, const char *prefix, const char *service) {
  if (!segment_ok(service)) return PX_EUSAGE;
  size_t at = start->len;
  append_service_dir(start, prefix, service);
  px_reg_prefix_end(end, start->data + at, start->len - at);
  return 0;
}

int px_reg_key_parse(const char *key, size_t klen, const char *prefix, px_str_t *service, px_str_t *id) {
  static const char mid[] = "/services/";
  size_t pl = px_reg_prefix_len(prefix), ml = sizeof(mid) - 1;
  if (klen < pl + ml || (pl > 0 && memcmp(key, prefix, pl) != 0) || memcmp(key + pl, mid, ml) != 0)
    return PX_EPARSE;
  const char *s = key + pl + ml, *end = key + klen;
  const char *slash = memchr(s, '/', (size_t)(end - s));
  if (slash == NULL || slash == s) return PX_EPARSE;
  const char *i = slash + 1;
  if (i == end || memchr(i, '/', (size_t)(end - i)) != NULL) return PX_EPARSE;
  if (memchr(s, '\0', (size_t)(end - s)) != NULL) return PX_EPARSE;
  *service = (px_str_t){s, (size_t)(slash - s)};
  *id = (px_str_t){i, (size_t)(end - i)};
  return 0;
}

/* ---- instance IDs ---- */

void px_reg_instance_id(const char *hostname, const char *address, const char *service,
                        char out[PX_REG_ID_MAX]) {
  enum { HOST_MAX = 40, HEX = 12 };
  size_t o = 0;
  int dash = 0; /* a '-' is owed before the next character kept */
  for (const char *h = hostname; *h != '\0' && o < HOST_MAX; h++) {
    char c = *h;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      if (dash && o > 0) {
        if (o + 2 > HOST_MAX) break;
        out[o++] = '-';
      }
      dash = 0;
      out[o++] = c;
    } else {
      dash = 1; /* runs of anything else (".", "_", "-") become one '-', none at the ends */
    }
  }
  if (o == 0) o = (size_t)snprintf(out, PX_REG_ID_MAX, "host");

  px_buf_t in;
  px_buf_init(&in, 128);
  px_buf_append_cstr(&in, hostname);
  px_buf_append(&in, "|", 1);
  px_buf_append_cstr(&in, address);
  px_buf_append(&in, "|", 1);
  px_buf_append_cstr(&in, service);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)in.data, in.len, md);
  px_buf_free(&in);

  static const char hex[] = "0123456789abcdef";
  out[o++] = '-';
  for (int i = 0; i < HEX / 2; i++) {
    out[o++] = hex[md[i] >> 4];
    out[o++] = hex[md[i] & 15];
  }
  out[o] = '\0';
}

/* ---- the discovered set ---- */

typedef struct {
  char *key;
  size_t klen;
  int64_t mod_revision;
  px_reg_record_t rec;
} entry_t;

struct px_reg_set_s {
  char *prefix;
  char *service;
  px_reg_label_t *sel;
  size_t nsel;
  entry_t **v; /* sorted by key bytes: a range comes sorted, so loading one only appends */
  size_t n, cap;
  px_reg_endpoint_t *eps;
  size_t neps;
  int eps_valid;
  px_buf_t last; /* the endpoints at the last px_reg_set_changed, flattened */
  int have_last;
};

int px_reg_set_new(px_reg_set_t **out, const char *prefix, const char *service, const px_reg_label_t *sel,
                   size_t nsel) {
  *out = NULL;
  if (!segment_ok(service) || nsel > PX_REG_MAX_LABELS) return PX_EUSAGE;
  size_t room = 0;
  for (size_t i = 0; i < nsel; i++) {
    size_t kn = strlen(sel[i].key), vn = strlen(sel[i].value);
    if (kn == 0 || kn > PX_REG_MAX_LABEL_LEN || vn > PX_REG_MAX_LABEL_LEN) return PX_EUSAGE;
    room += kn + vn + 2;
  }
  px_reg_set_t *s = px_calloc(1, sizeof(*s));
  s->prefix = px_strndup(prefix != NULL ? prefix : "", px_reg_prefix_len(prefix));
  s->service = px_strdup(service);
  if (nsel > 0) {
    s->sel = px_malloc(nsel * sizeof(*s->sel) + room);
    char *p = (char *)(s->sel + nsel);
    for (size_t i = 0; i < nsel; i++) {
      size_t kn = strlen(sel[i].key), vn = strlen(sel[i].value);
      s->sel[i].key = memcpy(p, sel[i].key, kn + 1);
      p += kn + 1;
      s->sel[i].value = memcpy(p, sel[i].value, vn + 1);
      p += vn + 1;
    }
    s->nsel = nsel;
  }
  px_buf_init(&s->last, 0);
  *out = s;
  return 0;
}

static void entry_free(entry_t *e) {
  px_reg_record_free(&e->rec);
  free(e->key);
  free(e);
}

void px_reg_set_clear(px_reg_set_t *s) {
  for (size_t i = 0; i < s->n; i++) entry_free(s->v[i]);
  s->n = 0;
  s->eps_valid = 0;
}

void px_reg_set_free(px_reg_set_t *s) {
  if (s == NULL) return;
  px_reg_set_clear(s);
  free(s->v);
  free(s->eps);
  free(s->sel);
  free(s->prefix);
  free(s->service);
  px_buf_free(&s->last);
  free(s);
}

size_t px_reg_set_count(const px_reg_set_t *s) { return s->n; }

static int key_cmp(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, PX_MIN(an, bn));
  return c != 0 ? c : (an > bn) - (an < bn);
}

/* Index of the key, or where it would go; *found says which. */
static size_t find(const px_reg_set_t *s, const char *key, size_t klen, int *found) {
  size_t lo = 0, hi = s->n;
  /* Appending is the common case (a range's keys come in order): check the end first. */
  if (hi > 0 && key_cmp(s->v[hi - 1]->key, s->v[hi - 1]->klen, key, klen) < 0) lo = hi;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = key_cmp(s->v[mid]->key, s->v[mid]->klen, key, klen);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

static void remove_at(px_reg_set_t *s, size_t i) {
  entry_free(s->v[i]);
  memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(s->v[0]));
  s->n--;
  s->eps_valid = 0;
}

px_reg_outcome_t px_reg_set_apply(px_reg_set_t *s, const px_reg_event_t *ev, char *why, size_t whylen) {
  px_str_t svc, id;
  if (ev->key == NULL || px_reg_key_parse(ev->key, ev->klen, s->prefix, &svc, &id) != 0) {
    refuse(0, why, whylen, "key is not %s/services/SERVICE/ID", s->prefix);
    return PX_REG_SKIPPED;
  }
  if (svc.n != strlen(s->service) || memcmp(svc.p, s->service, svc.n) != 0) {
    refuse(0, why, whylen, "key is of service '%.*s', not '%s'", (int)PX_MIN(svc.n, 128), svc.p, s->service);
    return PX_REG_SKIPPED;
  }
  int found;
  size_t i = find(s, ev->key, ev->klen, &found);
  entry_t *e = found ? s->v[i] : NULL;
  /* Revisions only grow, so an event older than the record held is a replay (a watch
   * that started before a range it overlaps); taking it would bring back the past. */
  if (e != NULL && ev->mod_revision != 0 && e->mod_revision != 0 &&
      (ev->is_delete ? ev->mod_revision < e->mod_revision : ev->mod_revision <= e->mod_revision))
    return PX_REG_IGNORED;
  if (ev->is_delete) {
    if (e == NULL) return PX_REG_IGNORED;
    remove_at(s, i);
    return PX_REG_REMOVED;
  }
  px_reg_record_t rec;
  if (px_reg_record_parse(ev->value, ev->value != NULL ? ev->vlen : 0, &rec, why, whylen) != 0) {
    if (e != NULL) remove_at(s, i);
    return PX_REG_SKIPPED;
  }
  if (e != NULL) {
    px_reg_record_free(&e->rec);
    e->rec = rec;
    e->mod_revision = ev->mod_revision;
    s->eps_valid = 0;
    return PX_REG_UPDATED;
  }
  if (s->n >= PX_REG_MAX_RECORDS) {
    px_reg_record_free(&rec);
    refuse(0, why, whylen, "the service has %d records already", PX_REG_MAX_RECORDS);
    return PX_REG_SKIPPED;
  }
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->v = px_realloc(s->v, s->cap * sizeof(s->v[0]));
  }
  e = px_malloc(sizeof(*e));
  e->key = px_malloc(ev->klen + 1);
  memcpy(e->key, ev->key, ev->klen);
  e->key[ev->klen] = '\0';
  e->klen = ev->klen;
  e->mod_revision = ev->mod_revision;
  e->rec = rec;
  memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof(s->v[0]));
  s->v[i] = e;
  s->n++;
  s->eps_valid = 0;
  return PX_REG_ADDED;
}

static int ep_cmp(const void *a, const void *b) {
  const px_reg_endpoint_t *x = a, *y = b;
  int c = strcmp(x->address, y->address);
  return c != 0 ? c : (x->weight < y->weight) - (x->weight > y->weight); /* heaviest first */
}

const px_reg_endpoint_t *px_reg_set_endpoints(px_reg_set_t *s, size_t *n) {
  if (!s->eps_valid) {
    s->eps = px_realloc(s->eps, (s->n ? s->n : 1) * sizeof(s->eps[0]));
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
      if (px_reg_labels_match(&s->v[i]->rec, s->sel, s->nsel))
        s->eps[k++] = (px_reg_endpoint_t){s->v[i]->rec.address, s->v[i]->rec.weight, s->v[i]->mod_revision};
    }
    qsort(s->eps, k, sizeof(s->eps[0]), ep_cmp);
    size_t u = 0;
    for (size_t i = 0; i < k; i++) {
      if (u > 0 && strcmp(s->eps[u - 1].address, s->eps[i].address) == 0) continue;
      s->eps[u++] = s->eps[i];
    }
    s->neps = u;
    s->eps_valid = 1;
  }
  *n = s->neps;
  return s->eps;
}

int px_reg_set_changed(px_reg_set_t *s) {
  size_t n;
  const px_reg_endpoint_t *eps = px_reg_set_endpoints(s, &n);
  px_buf_t now;
  px_buf_init(&now, 64 * n + 16);
  for (size_t i = 0; i < n; i++) {
    px_buf_append(&now, eps[i].address, strlen(eps[i].address) + 1);
    px_buf_append_u64(&now, (unsigned long long)eps[i].weight);
    px_buf_append(&now, "\n", 1);
  }
  int changed = !s->have_last || now.len != s->last.len ||
                (now.len > 0 && memcmp(now.data, s->last.data, now.len) != 0);
  px_buf_t old = s->last;
  s->last = now;
  px_buf_free(&old);
  s->have_last = 1;
  return changed;
}
