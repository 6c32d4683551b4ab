#include "etcd_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- base64 ---- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

void px_b64_encode(px_buf_t *out, const void *p, size_t n) {
  if (n == 0) return;
  const unsigned char *s = p;
  char *o = px_buf_reserve(out, px_b64_encoded_len(n));
  size_t i = 0, j = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    o[j++] = b64_alphabet[v >> 18];
    o[j++] = b64_alphabet[(v >> 12) & 63];
    o[j++] = b64_alphabet[(v >> 6) & 63];
    o[j++] = b64_alphabet[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
    o[j++] = b64_alphabet[v >> 18];
    o[j++] = b64_alphabet[(v >> 12) & 63];
    o[j++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
    o[j++] = '=';
  }
  out->len += j;
}

/* Decodes into `o`, which has room for n / 4 * 3 bytes; *olen gets the count. */
static int b64_decode_raw(const char *s, size_t n, unsigned char *o, size_t *olen) {
  if (n % 4 != 0) return PX_EPARSE;
  size_t j = 0;
  for (size_t i = 0; i < n; i += 4) {
    int last = i + 4 == n;
    int a = b64_val((unsigned char)s[i]), b = b64_val((unsigned char)s[i + 1]);
    int c = b64_val((unsigned char)s[i + 2]), d = b64_val((unsigned char)s[i + 3]);
    if (a < 0 || b < 0) return PX_EPARSE;
    if (c < 0 || d < 0) {
      /* Padding: only in the last quad, "x y = =" or "x y z =", with the bits the
       * padding stands for at zero (one input has one encoding, as Go's strict mode). */
      if (!last || s[i + 3] != '=') return PX_EPARSE;
      if (c < 0) {
        if (s[i + 2] != '=' || (b & 15) != 0) return PX_EPARSE;
        o[j++] = (unsigned char)(a << 2 | b >> 4);
      } else {
        if ((c & 3) != 0) return PX_EPARSE;
        o[j++] = (unsigned char)(a << 2 | b >> 4);
        o[j++] = (unsigned char)((b & 15) << 4 | c >> 2);
      }
      break;
    }
    o[j++] = (unsigned char)(a << 2 | b >> 4);
    o[j++] = (unsigned char)((b & 15) << 4 | c >> 2);
    o[j++] = (unsigned char)((c & 3) << 6 | d);
  }
  *olen = j;
  return 0;
}

int px_b64_decode(px_buf_t *out, const char *s, size_t n) {
  unsigned char *o = (unsigned char *)px_buf_reserve(out, n / 4 * 3 + 1);
  size_t olen;
  int rc = b64_decode_raw(s, n, o, &olen);
  if (rc != 0) return rc;
  out->len += olen;
  return 0;
}

/* ---- request bodies ---- */

static void append_i64(px_buf_t *o, int64_t v) {
  if (v < 0) {
    px_buf_append(o, "-", 1);
    px_buf_append_u64(o, (unsigned long long)0 - (unsigned long long)v);
  } else {
    px_buf_append_u64(o, (unsigned long long)v);
  }
}

/* Members are written with a leading comma except the first; `first` tracks which. */
static void member(px_buf_t *o, int *first, const char *name) {
  if (!*first) px_buf_append(o, ",", 1);
  *first = 0;
  px_buf_json_str(o, name, strlen(name));
  px_buf_append(o, ":", 1);
}

static void member_b64(px_buf_t *o, int *first, const char *name, const void *p, size_t n) {
  member(o, first, name);
  px_buf_append(o, "\"", 1);
  px_b64_encode(o, p, n);
  px_buf_append(o, "\"", 1);
}

static void member_i64(px_buf_t *o, int *first, const char *name, int64_t v) {
  if (v == 0) return;
  member(o, first, name);
  px_buf_append(o, "\"", 1);
  append_i64(o, v);
  px_buf_append(o, "\"", 1);
}

static void key_range(px_buf_t *o, int *first, const void *key, size_t klen, const void *range_end,
                      size_t relen) {
  member_b64(o, first, "key", key, klen);
  if (range_end != NULL) member_b64(o, first, "range_end", range_end, relen);
}

void px_etcd_lease_grant_body(px_buf_t *out, int64_t ttl_s) {
  int first = 1;
  px_buf_append(out, "{", 1);
  /* Always written: a TTL of 0 would be left out as the default, and etcd would then
   * pick its minimum, which is not what 0 asks for any more than that does. */
  member(out, &first, "TTL");
  px_buf_append(out, "\"", 1);
  append_i64(out, ttl_s);
  px_buf_append(out, "\"}", 2);
}

void px_etcd_put_body(px_buf_t *out, const void *key, size_t klen, const void *value, size_t vlen,
                      int64_t lease) {
  int first = 1;
  px_buf_append(out, "{", 1);
  member_b64(out, &first, "key", key, klen);
  member_b64(out, &first, "value", value, vlen);
  member_i64(out, &first, "lease", lease);
  px_buf_append(out, "}", 1);
}

void px_etcd_range_body(px_buf_t *out, const void *key, size_t klen, const void *range_end, size_t relen,
                        int64_t revision) {
  int first = 1;
  px_buf_append(out, "{", 1);
  key_range(out, &first, key, klen, range_end, relen);
  member_i64(out, &first, "revision", revision);
  px_buf_append(out, "}", 1);
}

void px_etcd_deleterange_body(px_buf_t *out, const void *key, size_t klen, const void *range_end,
                              size_t relen) {
  int first = 1;
  px_buf_append(out, "{", 1);
  key_range(out, &first, key, klen, range_end, relen);
  px_buf_append(out, "}", 1);
}

static void id_body(px_buf_t *out, int64_t lease) {
  int first = 1;
  px_buf_append(out, "{", 1);
  member(out, &first, "ID");
  px_buf_append(out, "\"", 1);
  append_i64(out, lease);
  px_buf_append(out, "\"}", 2);
}

void px_etcd_keepalive_body(px_buf_t *out, int64_t lease) { id_body(out, lease); }
void px_etcd_revoke_body(px_buf_t *out, int64_t lease) { id_body(out, lease); }

void px_etcd_watch_create_body(px_buf_t *out, const void *key, size_t klen, const void *range_end,
                               size_t relen, int64_t start_revision) {
  int first = 1;
  px_buf_append(out, "{\"create_request\":{", 19);
  key_range(out, &first, key, klen, range_end, relen);
  member_i64(out, &first, "start_revision", start_revision);
  px_buf_append(out, "}}", 2);
}

/* ---- answers ---- */

/* proto3's int64 in JSON: a decimal string, or a number (exact only up to 2^53, so larger
 * ones are refused rather than rounded). Absent or null: 0. */
static int get_i64(const px_json_t *obj, const char *name, int64_t *out) {
  *out = 0;
  const px_json_t *v = px_json_get(obj, name);
  if (v == NULL || px_json_is_null(v)) return 0;
  if (px_json_type(v) == PX_JSON_NUMBER) {
    int64_t i;
    if (px_json_int(v, &i) != 0 || i > (INT64_C(1) << 53) || i < -(INT64_C(1) << 53)) return PX_EPARSE;
    *out = i;
    return 0;
  }
  size_t n;
  const char *s = px_json_str(v, &n);
  if (s == NULL || n == 0) return PX_EPARSE;
  size_t i = 0;
  int neg = s[0] == '-';
  if (neg) i++;
  if (i == n) return PX_EPARSE;
  uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return PX_EPARSE;
    unsigned d = (unsigned)(s[i] - '0');
    if (acc > (lim - d) / 10) return PX_EPARSE;
    acc = acc * 10 + d;
  }
  *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
  return 0;
}

static int get_bool(const px_json_t *obj, const char *name, int *out) {
  *out = 0;
  const px_json_t *v = px_json_get(obj, name);
  if (v == NULL || px_json_is_null(v)) return 0;
  return px_json_bool(v, out) == 0 ? 0 : PX_EPARSE;
}

/* An object member that may be absent (NULL) but is an object when present. */
static int get_obj(const px_json_t *obj, const char *name, const px_json_t **out) {
  *out = px_json_get(obj, name);
  if (*out == NULL || px_json_is_null(*out)) {
    *out = NULL;
    return 0;
  }
  return px_json_type(*out) == PX_JSON_OBJECT ? 0 : PX_EPARSE;
}

static void copy_msg(px_etcd_error_t *err, const char *s, size_t n) {
  n = PX_MIN(n, sizeof(err->message) - 1);
  memcpy(err->message, s, n);
  err->message[n] = '\0';
}

/* Whether `root` is one of the gateway's two error shapes; fills err when it is. A
 * lease grant answer has an "error" string member of its own that is empty on success,
 * so an empty "error" without a code is not an error. */
static int is_error(const px_json_t *root, px_etcd_error_t *err) {
  const px_json_t *e = px_json_get(root, "error");
  if (e == NULL || px_json_is_null(e)) return 0;
  px_etcd_error_t tmp;
  if (err == NULL) err = &tmp;
  memset(err, 0, sizeof(*err));
  int64_t code = 0, http = 0;
  size_t n = 0;
  const char *msg = NULL;
  if (px_json_type(e) == PX_JSON_OBJECT) {
    (void)get_i64(e, "grpc_code", &code);
    (void)get_i64(e, "http_code", &http);
    msg = px_json_str(px_json_get(e, "message"), &n);
  } else {
    const char *es = px_json_str(e, &n);
    (void)get_i64(root, "code", &code);
    if ((es == NULL || n == 0) && code == 0) return 0;
    msg = px_json_str(px_json_get(root, "message"), &n);
    if (msg == NULL || n == 0) msg = px_json_str(e, &n);
  }
  err->code = code >= 0 && code <= 1000 ? (int)code : -1;
  err->http_code = http >= 0 && http <= 999 ? (int)http : 0;
  if (msg != NULL) copy_msg(err, msg, n);
  if (err->message[0] == '\0') snprintf(err->message, sizeof(err->message), "etcd error %d", err->code);
  return 1;
}

/* Parses and checks the shape every answer shares: a JSON object, or an error. */
static int parse_root(const char *json, size_t n, px_json_t **root, px_etcd_error_t *err) {
  *root = px_json_parse(json, n, NULL, 0);
  if (*root == NULL) return PX_EPARSE;
  if (px_json_type(*root) != PX_JSON_OBJECT) return PX_EPARSE;
  if (is_error(*root, err)) return PX_EUPSTREAM;
  return 0;
}

/* Streamed answers come as {"result": {...}}; take the bare object too. */
static int unwrap_result(const px_json_t *root, const px_json_t **body) {
  const px_json_t *r;
  if (get_obj(root, "result", &r) != 0) return PX_EPARSE;
  *body = r != NULL ? r : root;
  return 0;
}

static int header_revision(const px_json_t *body, int64_t *revision) {
  const px_json_t *h;
  *revision = 0;
  if (get_obj(body, "header", &h) != 0) return PX_EPARSE;
  return h != NULL ? get_i64(h, "revision", revision) : 0;
}

int px_etcd_parse_header(const char *json, size_t n, int64_t *revision, px_etcd_error_t *err) {
  px_json_t *root;
  int64_t rev = 0;
  int rc = parse_root(json, n, &root, err);
  if (rc == 0) rc = header_revision(root, &rev);
  if (rc == 0 && revision != NULL) *revision = rev;
  px_json_free(root);
  return rc;
}

int px_etcd_parse_lease_grant(const char *json, size_t n, int64_t *id, int64_t *ttl, px_etcd_error_t *err) {
  px_json_t *root;
  int rc = parse_root(json, n, &root, err);
  if (rc == 0 && (get_i64(root, "ID", id) != 0 || *id == 0)) rc = PX_EPARSE;
  if (rc == 0 && get_i64(root, "TTL", ttl) != 0) rc = PX_EPARSE;
  px_json_free(root);
  return rc;
}

int px_etcd_parse_keepalive(const char *json, size_t n, int64_t *ttl, px_etcd_error_t *err) {
  px_json_t *root;
  const px_json_t *body = NULL;
  int rc = parse_root(json, n, &root, err);
  if (rc == 0) rc = unwrap_result(root, &body);
  if (rc == 0 && body != root && is_error(body, err)) rc = PX_EUPSTREAM;
  if (rc == 0 && get_i64(body, "TTL", ttl) != 0) rc = PX_EPARSE;
  if (rc == 0 && *ttl < 0) *ttl = 0;
  px_json_free(root);
  return rc;
}

/* Room the decoded bytes of a kv need: each base64 string decodes to at most 3/4 of
 * its length, plus a NUL so that keys and values can be used as C strings. */
static size_t kv_room(const px_json_t *kv) {
  size_t room = 0, n;
  if (px_json_str(px_json_get(kv, "key"), &n) != NULL) room += n / 4 * 3 + 1;
  if (px_json_str(px_json_get(kv, "value"), &n) != NULL) room += n / 4 * 3 + 1;
  return room + 2;
}

/* A bump allocator over one block sized in advance, so an answer is one malloc. */
typedef struct {
  char *p, *end;
} arena_t;

static int decode_member(const px_json_t *kv, const char *name, int required, arena_t *a, px_str_t *out) {
  *out = (px_str_t){a->p, 0};
  const px_json_t *v = px_json_get(kv, name);
  if (v == NULL || px_json_is_null(v)) {
    *a->p++ = '\0';
    return required ? PX_EPARSE : 0;
  }
  size_t n, olen;
  const char *s = px_json_str(v, &n);
  if (s == NULL || (size_t)(a->end - a->p) < n / 4 * 3 + 1) return PX_EPARSE;
  if (b64_decode_raw(s, n, (unsigned char *)a->p, &olen) != 0) return PX_EPARSE;
  out->n = olen;
  a->p += olen;
  *a->p++ = '\0';
  return 0;
}

static int parse_kv(const px_json_t *kv, arena_t *a, px_etcd_kv_t *out) {
  if (px_json_type(kv) != PX_JSON_OBJECT) return PX_EPARSE;
  if (decode_member(kv, "key", 1, a, &out->key) != 0 || out->key.n == 0) return PX_EPARSE;
  if (decode_member(kv, "value", 0, a, &out->value) != 0) return PX_EPARSE;
  if (get_i64(kv, "create_revision", &out->create_revision) != 0) return PX_EPARSE;
  if (get_i64(kv, "mod_revision", &out->mod_revision) != 0) return PX_EPARSE;
  if (get_i64(kv, "version", &out->version) != 0) return PX_EPARSE;
  if (get_i64(kv, "lease", &out->lease) != 0) return PX_EPARSE;
  return 0;
}

/* An array member that may be absent (0 items). */
static int get_array(const px_json_t *obj, const char *name, const px_json_t **out, size_t *n) {
  *out = px_json_get(obj, name);
  *n = 0;
  if (*out == NULL || px_json_is_null(*out)) return 0;
  if (px_json_type(*out) != PX_JSON_ARRAY) return PX_EPARSE;
  *n = px_json_count(*out);
  return 0;
}

int px_etcd_parse_range(const char *json, size_t n, px_etcd_range_t *out, px_etcd_error_t *err) {
  memset(out, 0, sizeof(*out));
  px_json_t *root;
  const px_json_t *kvs = NULL;
  size_t nkvs = 0;
  int rc = parse_root(json, n, &root, err);
  if (rc == 0) rc = header_revision(root, &out->revision);
  if (rc == 0 && (get_i64(root, "count", &out->count) != 0 || get_bool(root, "more", &out->more) != 0))
    rc = PX_EPARSE;
  if (rc == 0) rc = get_array(root, "kvs", &kvs, &nkvs);
  if (rc == 0 && nkvs > 0) {
    size_t room = nkvs * sizeof(px_etcd_kv_t);
    for (size_t i = 0; i < nkvs; i++) room += kv_room(px_json_at(kvs, i));
    out->mem = px_malloc(room);
    out->kvs = out->mem;
    arena_t a = {(char *)out->mem + nkvs * sizeof(px_etcd_kv_t), (char *)out->mem + room};
    for (size_t i = 0; i < nkvs && rc == 0; i++) {
      memset(&out->kvs[i], 0, sizeof(out->kvs[i]));
      rc = parse_kv(px_json_at(kvs, i), &a, &out->kvs[i]);
      if (rc == 0) out->nkvs++;
    }
  }
  px_json_free(root);
  return rc;
}

void px_etcd_range_free(px_etcd_range_t *r) {
  free(r->mem);
  memset(r, 0, sizeof(*r));
}

static int parse_event(const px_json_t *ev, arena_t *a, px_etcd_event_t *out) {
  if (px_json_type(ev) != PX_JSON_OBJECT) return PX_EPARSE;
  const px_json_t *t = px_json_get(ev, "type"), *kv;
  out->type = PX_ETCD_PUT; /* the zero value, so the gateway leaves it out */
  if (t != NULL && !px_json_is_null(t)) {
    size_t n;
    const char *s = px_json_str(t, &n);
    int64_t i;
    if (s != NULL && strcmp(s, "PUT") == 0)
      out->type = PX_ETCD_PUT;
    else if (s != NULL && strcmp(s, "DELETE") == 0)
      out->type = PX_ETCD_DELETE;
    else if (s == NULL && px_json_int(t, &i) == 0 && (i == 0 || i == 1))
      out->type = i == 0 ? PX_ETCD_PUT : PX_ETCD_DELETE;
    else
      return PX_EPARSE;
  }
  if (get_obj(ev, "kv", &kv) != 0 || kv == NULL) return PX_EPARSE;
  return parse_kv(kv, a, &out->kv);
}

int px_etcd_parse_watch(const char *json, size_t n, px_etcd_watch_msg_t *out, px_etcd_error_t *err) {
  memset(out, 0, sizeof(*out));
  px_json_t *root;
  const px_json_t *body = NULL, *evs = NULL;
  size_t nevs = 0;
  int rc = parse_root(json, n, &root, err);
  if (rc == 0) rc = unwrap_result(root, &body);
  if (rc == 0 && body != root && is_error(body, err)) rc = PX_EUPSTREAM;
  if (rc == 0) rc = header_revision(body, &out->revision);
  if (rc == 0 &&
      (get_i64(body, "watch_id", &out->watch_id) != 0 || get_bool(body, "created", &out->created) != 0 ||
       get_bool(body, "canceled", &out->canceled) != 0 ||
       get_i64(body, "compact_revision", &out->compact_revision) != 0))
    rc = PX_EPARSE;
  if (rc == 0) {
    const px_json_t *cr = px_json_get(body, "cancel_reason");
    size_t crn;
    const char *crs = px_json_str(cr, &crn);
    if (cr != NULL && crs == NULL && !px_json_is_null(cr)) rc = PX_EPARSE;
    if (crs != NULL) {
      crn = PX_MIN(crn, sizeof(out->cancel_reason) - 1);
      memcpy(out->cancel_reason, crs, crn);
      out->cancel_reason[crn] = '\0';
    }
  }
  if (rc == 0) rc = get_array(body, "events", &evs, &nevs);
  if (rc == 0 && nevs > 0) {
    size_t room = nevs * sizeof(px_etcd_event_t);
    for (size_t i = 0; i < nevs; i++) {
      const px_json_t *kv = px_json_get(px_json_at(evs, i), "kv");
      room += kv != NULL ? kv_room(kv) : 0;
    }
    out->mem = px_malloc(room);
    out->events = out->mem;
    arena_t a = {(char *)out->mem + nevs * sizeof(px_etcd_event_t), (char *)out->mem + room};
    for (size_t i = 0; i < nevs && rc == 0; i++) {
      memset(&out->events[i], 0, sizeof(out->events[i]));
      rc = parse_event(px_json_at(evs, i), &a, &out->events[i]);
      if (rc == 0) out->nevents++;
    }
  }
  px_json_free(root);
  return rc;
}

void px_etcd_watch_msg_free(px_etcd_watch_msg_t *m) {
  free(m->mem);
  memset(m, 0, sizeof(*m));
}

/* ---- the watch stream splitter ---- */

void px_etcd_stream_init(px_etcd_stream_t *s, size_t max) {
  memset(s, 0, sizeof(*s));
  px_buf_init(&s->buf, 0);
  s->max = max != 0 ? max : PX_ETCD_STREAM_MAX;
}

void px_etcd_stream_free(px_etcd_stream_t *s) {
  px_buf_free(&s->buf);
  memset(s, 0, sizeof(*s));
}

static int stream_fail(px_etcd_stream_t *s, int err) {
  s->failed = err;
  s->buf.len = 0;
  return err;
}

int px_etcd_stream_next(px_etcd_stream_t *s, const char **in, size_t *inlen, px_str_t *msg) {
  if (s->failed) return s->failed;
  if (s->held) {
    s->buf.len = 0;
    s->held = 0;
  }
  const char *p = *in, *end = p + *inlen;
  /* Where the current message starts in this input; NULL while it began in an earlier
   * one (its start is then in buf). */
  const char *start = NULL;
  for (; p < end; p++) {
    char c = *p;
    if (s->depth == 0) {
      if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
      if (c != '{') return stream_fail(s, PX_EPARSE);
      start = p;
      s->depth = 1;
      s->size = 1;
      continue;
    }
    if (++s->size > s->max) return stream_fail(s, PX_ETOOLARGE);
    if (s->in_str) {
      if (s->esc)
        s->esc = 0;
      else if (c == '\\')
        s->esc = 1;
      else if (c == '"')
        s->in_str = 0;
      continue;
    }
    if (c == '"')
      s->in_str = 1;
    else if (c == '{' || c == '[')
      s->depth++;
    else if ((c == '}' || c == ']') && --s->depth == 0) {
      p++;
      if (start != NULL) {
        *msg = (px_str_t){start, (size_t)(p - start)};
      } else {
        px_buf_append(&s->buf, *in, (size_t)(p - *in));
        *msg = (px_str_t){s->buf.data, s->buf.len};
        s->held = 1;
      }
      *inlen -= (size_t)(p - *in);
      *in = p;
      return 1;
    }
  }
  if (s->depth > 0) {
    const char *from = start != NULL ? start : *in;
    px_buf_append(&s->buf, from, (size_t)(end - from));
  }
  *in = end;
  *inlen = 0;
  return 0;
}
