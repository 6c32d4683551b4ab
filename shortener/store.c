#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core.h"

#define SHR_CREATE_ATTEMPTS 8
/* Links never change once written, so a found code can be remembered without any
 * invalidation, even with other processes writing to the same file. Misses are not
 * remembered (another process may create the code a moment later). Direct-mapped:
 * a colliding code simply replaces the slot. At most SLOTS URLs of <= 2 KiB. */
#define SHR_CACHE_SLOTS 4096

typedef struct {
  char code[SHR_CODE_LEN];
  size_t len;
  char *url; /* NULL: empty slot */
} cache_slot_t;

struct shr_store_s {
  sqlite3 *db;
  sqlite3_stmt *insert, *lookup;
  char err[256];
  cache_slot_t cache[SHR_CACHE_SLOTS];
};

static cache_slot_t *cache_slot(shr_store_t *st, const char *code) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (int i = 0; i < SHR_CODE_LEN; i++) h = (h ^ (unsigned char)code[i]) * 16777619u;
  return &st->cache[h & (SHR_CACHE_SLOTS - 1)];
}

static void cache_put(shr_store_t *st, const char *code, const char *url, size_t len) {
  if (len > SHR_URL_MAX) return;
  cache_slot_t *s = cache_slot(st, code);
  free(s->url);
  memcpy(s->code, code, SHR_CODE_LEN);
  s->url = px_strndup(url, len);
  s->len = len;
}

static int set_err(shr_store_t *st, const char *what) {
  snprintf(st->err, sizeof(st->err), "%s: %s", what, st->db ? sqlite3_errmsg(st->db) : "no database");
  return -1;
}

shr_store_t *shr_store_open(const char *path, char *err, size_t errlen) {
  shr_store_t *st = px_calloc(1, sizeof(*st));
  static const char *const setup[] = {
      /* WAL lets readers in other processes proceed during a write; NORMAL sync is
       * the usual pairing with WAL (durable against crashes of the process, may
       * lose the last commits on power loss). */
      "PRAGMA journal_mode=WAL",
      "PRAGMA synchronous=NORMAL",
      "CREATE TABLE IF NOT EXISTS links ("
      " code TEXT PRIMARY KEY,"
      " url TEXT NOT NULL,"
      " created_at INTEGER NOT NULL)",
  };
  int rc =
      sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    set_err(st, "open");
    goto fail;
  }
  sqlite3_busy_timeout(st->db, 5000);
  for (size_t i = 0; i < PX_ARRAY_SIZE(setup); i++) {
    if (sqlite3_exec(st->db, setup[i], NULL, NULL, NULL) != SQLITE_OK) {
      set_err(st, setup[i]);
      goto fail;
    }
  }
  if (sqlite3_prepare_v3(st->db, "INSERT INTO links (code, url, created_at) VALUES (?1, ?2, ?3)", -1,
                         SQLITE_PREPARE_PERSISTENT, &st->insert, NULL) != SQLITE_OK ||
      sqlite3_prepare_v3(st->db, "SELECT url FROM links WHERE code = ?1", -1, SQLITE_PREPARE_PERSISTENT,
                         &st->lookup, NULL) != SQLITE_OK) {
    set_err(st, "prepare");
    goto fail;
  }
  return st;
fail:
  snprintf(err, errlen, "%s: %s", path, st->err);
  shr_store_close(st);
  return NULL;
}

void shr_store_close(shr_store_t *st) {
  if (st == NULL) return;
  sqlite3_finalize(st->insert);
  sqlite3_finalize(st->lookup);
  sqlite3_close(st->db);
  for (size_t i = 0; i < SHR_CACHE_SLOTS; i++) free(st->cache[i].url);
  free(st);
}

const char *shr_store_error(shr_store_t *st) { return st->err; }

int shr_store_insert(shr_store_t *st, const char *code, const char *url, size_t url_len, int64_t created_at) {
  sqlite3_stmt *s = st->insert;
  sqlite3_bind_text(s, 1, code, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, url, (int)url_len, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, created_at);
  int rc = sqlite3_step(s);
  int ret = 0;
  if (rc == SQLITE_CONSTRAINT && sqlite3_extended_errcode(st->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
    ret = SHR_STORE_DUP;
  else if (rc != SQLITE_DONE)
    ret = set_err(st, "insert");
  else if (strlen(code) == SHR_CODE_LEN)
    cache_put(st, code, url, url_len);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return ret;
}

int shr_store_create(shr_store_t *st, const char *url, size_t url_len, char code_out[SHR_CODE_LEN + 1]) {
  /* 62^7 is about 3.5e12 codes, so a collision is rare until the table holds
   * billions of links; a few draws make failure practically impossible. */
  for (int i = 0; i < SHR_CREATE_ATTEMPTS; i++) {
    if (shr_code_generate(code_out) != 0) {
      snprintf(st->err, sizeof(st->err), "getrandom failed");
      return -1;
    }
    int rc = shr_store_insert(st, code_out, url, url_len, (int64_t)time(NULL));
    if (rc != SHR_STORE_DUP) return rc;
  }
  snprintf(st->err, sizeof(st->err), "no free code after %d attempts", SHR_CREATE_ATTEMPTS);
  return -1;
}

int shr_store_lookup(shr_store_t *st, const char *code, size_t code_len, px_buf_t *out) {
  int cacheable = code_len == SHR_CODE_LEN;
  if (cacheable) {
    cache_slot_t *c = cache_slot(st, code);
    if (c->url && memcmp(c->code, code, SHR_CODE_LEN) == 0) {
      px_buf_append(out, c->url, c->len);
      return 1;
    }
  }
  sqlite3_stmt *s = st->lookup;
  sqlite3_bind_text(s, 1, code, (int)code_len, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  int ret;
  if (rc == SQLITE_ROW) {
    const void *u = sqlite3_column_text(s, 0);
    px_buf_append(out, u, (size_t)sqlite3_column_bytes(s, 0));
    if (cacheable) cache_put(st, code, u, (size_t)sqlite3_column_bytes(s, 0));
    ret = 1;
  } else if (rc == SQLITE_DONE) {
    ret = 0;
  } else {
    ret = set_err(st, "lookup");
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return ret;
}
