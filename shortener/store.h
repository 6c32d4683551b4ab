/* The shortener's SQLite store: one table of links. WAL mode and a busy timeout let
 * several shortener processes share one database file. Statements are prepared
 * once per handle and reused, and found links are cached per handle (links never
 * change, so the cache needs no invalidation). A handle is used by one thread. */
#ifndef SHR_STORE_H
#define SHR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "links.h"

typedef struct shr_store_s shr_store_t;

#define SHR_STORE_DUP 1 /* shr_store_insert: the code is taken */

/* Opens (creating when needed) the database at path. Returns the handle, or NULL
 * with a message in err. */
shr_store_t *shr_store_open(const char *path, char *err, size_t errlen);
void shr_store_close(shr_store_t *st);

/* Inserts a link under `code`. Returns 0, SHR_STORE_DUP, or -1 (see shr_store_error). */
int shr_store_insert(shr_store_t *st, const char *code, const char *url, size_t url_len, int64_t created_at);
/* Stores url under a fresh random code (written to code_out), drawing again on a
 * collision a bounded number of times. Returns 0 or -1. */
int shr_store_create(shr_store_t *st, const char *url, size_t url_len, char code_out[SHR_CODE_LEN + 1]);
/* Looks a code up; on 1 the URL is appended to out (not NUL-terminated). Returns 1
 * found, 0 not found, -1 error. */
int shr_store_lookup(shr_store_t *st, const char *code, size_t code_len, px_buf_t *out);
/* The last error message of this handle. */
const char *shr_store_error(shr_store_t *st);

#endif
