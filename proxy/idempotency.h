/* Inbound idempotency (SPEC §5, draft-ietf-httpapi-idempotency-key-header), the rules as
 * pure functions: reading the Idempotency-Key field, the request's fingerprint, the
 * client's scope and the store key, and the decisions the filter takes from what the
 * store holds. No I/O and no state; the store is idem_store.h, the data path the filter.
 *
 * The flow the filter follows: px_idem_admit says whether a request is under the
 * listener's idempotency at all; px_idem_key_parse reads its key; px_idem_store_key
 * joins the key to the client's scope; the store's begin reports what it holds, and
 * px_idem_decide_head (then, for a completed entry, px_idem_decide_body once the body is
 * hashed) tells whether to run the request, replay the stored answer, or refuse it;
 * px_idem_response_storable tells whether the answer, once it has run, may be kept. */
#ifndef PX_IDEMPOTENCY_H
#define PX_IDEMPOTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "core.h"

/* ---- the key ------------------------------------------------------------ */

/* The longest key accepted, in bytes once unescaped. The draft sets no limit; 255 is
 * room for any UUID or ULID with a prefix, and bounds what a client may make us store. */
#define PX_IDEM_KEY_MAX 255

typedef enum {
  PX_IDEM_KEY_OK,      /* the key is in the caller's buffer */
  PX_IDEM_KEY_INVALID, /* answer 400 idempotency_key_invalid */
} px_idem_key_rc_t;

/* Reads one Idempotency-Key field value into `out` (PX_IDEM_KEY_MAX bytes; *len set).
 * Two forms are taken, each with optional spaces and tabs around it:
 *  - what the draft asks for, an RFC 8941 sf-string: '"', then bytes 0x20-0x21,
 *    0x23-0x5B, 0x5D-0x7E or the escapes \" and \\, then '"', and nothing after it
 *    (parameters such as `"k";a=1` are refused: the draft defines none, and accepting
 *    them would make `"k"` and `"k";a=1` one key or two, a choice best not made);
 *  - a bare token, what many clients (Stripe's among them) send: one or more RFC 9110
 *    tchars plus ':' and '/', so UUIDs, ULIDs and "order:42/1" pass, while spaces,
 *    quotes, commas, semicolons and backslashes do not.
 * Both give the key's bytes, so `"abc"` and `abc` are the same key. Empty keys, keys over
 * PX_IDEM_KEY_MAX, other escapes, control and non-ASCII bytes, an unterminated string and
 * anything after the closing quote are PX_IDEM_KEY_INVALID, with a reason in *why
 * (for the problem+json detail; `why` may be NULL). */
px_idem_key_rc_t px_idem_key_parse(px_str_t value, char out[PX_IDEM_KEY_MAX], size_t *len, const char **why);

/* ---- SHA-256 ------------------------------------------------------------ */

#define PX_SHA256_LEN 32

/* An incremental SHA-256, for a body that arrives in runs: a plain value (OpenSSL's
 * SHA256_CTX inside) that never allocates. A zeroed px_sha256_t is "not started". */
typedef struct {
  _Alignas(8) unsigned char opaque[112];
  int started;
} px_sha256_t;

/* Starts a digest. */
void px_sha256_init(px_sha256_t *h);
/* Adds `n` bytes; n == 0 is allowed. */
void px_sha256_update(px_sha256_t *h, const void *p, size_t n);
/* Writes the digest of everything added. */
void px_sha256_final(px_sha256_t *h, uint8_t out[PX_SHA256_LEN]);
/* Wipes a digest abandoned midway (a request that ended before its body did); a no-op on
 * a zeroed or finished one, so an end hook may call it whatever happened. */
void px_sha256_discard(px_sha256_t *h);
/* The digest of `n` bytes in one call. */
void px_sha256(const void *p, size_t n, uint8_t out[PX_SHA256_LEN]);

/* ---- the fingerprint ---------------------------------------------------- */

/* What makes two requests with one key "the same request" (the draft's fingerprint): the
 * method, the request target (path and query, as sent: a client that retries sends the
 * same bytes, and normalising would make targets the upstream tells apart look alike)
 * and the body's bytes.
 *
 * `sha` is the fingerprint: the SHA-256 of the method, a space, the target, a NUL and the
 * body (a method name holds no space and a target no NUL, which the parser refuses, so
 * no two requests give the same bytes). One digest over all three rather than one of
 * the head and one of the body: a keyed request is hashed once, a block less.
 *
 * `head` is a 64-bit digest of the method and the target alone, known before the body
 * has arrived: it lets a repeat for another method or target meet 422 at once, and a
 * repeat of a request still running meet 409 without its body being read. It only ever
 * decides early; whether a repeat is replayed is the SHA-256's to say, so a collision
 * of heads (2^-64, and within one client's own keys) can at worst turn a 422 into a 409
 * or make a mismatch wait for its body. Unseeded, so that stores shared between
 * processes compare it too. */
typedef struct {
  uint64_t head;
  uint8_t sha[PX_SHA256_LEN];
} px_idem_fp_t;

/* The head digest of a request with `method` and `target`. */
uint64_t px_idem_fp_head(px_str_t method, px_str_t target);
/* Starts the fingerprint's SHA-256 in `h` with the method, a space, the target and a
 * NUL; the body follows with px_sha256_update, then px_sha256_final gives `sha`. */
void px_idem_fp_start(px_sha256_t *h, px_str_t method, px_str_t target);

/* ---- the scope and the store key ---------------------------------------- */

/* Whose key it is: one client's keys must never meet another's answers. 32 bytes, all
 * zero for a client we cannot tell apart from others (every such client shares it). */
typedef struct {
  uint8_t b[PX_SHA256_LEN];
} px_idem_scope_t;

/* No identity: the shared, all-zero scope. */
void px_idem_scope_none(px_idem_scope_t *s);
/* The scope of a client known by its Authorization value: the SHA-256 of the value as
 * sent (an empty value is still a value, distinct from none). A digest rather than the
 * value, so credentials are neither kept nor sent to a shared store. */
void px_idem_scope_authorization(px_str_t value, px_idem_scope_t *s);
/* The scope of an mTLS client, by its verified identity (SPIFFE ID or DNS SAN): the
 * SHA-256 of a NUL, "identity", a NUL and the identity. Header values never hold a NUL
 * (SPEC §4 refuses them), so no Authorization value can land in an identity's scope. */
void px_idem_scope_identity(px_str_t identity, px_idem_scope_t *s);

/* The longest store key: the scope's 32 bytes and the key. */
#define PX_IDEM_STORE_KEY_MAX (PX_SHA256_LEN + PX_IDEM_KEY_MAX)

/* Writes the store key: the scope's 32 bytes as they are, then the key's bytes (a parsed
 * key, so keylen <= PX_IDEM_KEY_MAX; more is cut; a key parsed into its place, at
 * out + PX_SHA256_LEN, stays where it is); returns its length. The scope's fixed
 * width makes the split unambiguous whatever the key holds. Binary rather than hex, as
 * it was first: every keyed request hashes, copies and compares the store key several
 * times and keeps it with its answer, and 32 bytes less of it was measurable; a store
 * that needs printable keys (none does: Redis keys are binary-safe) encodes them. */
size_t px_idem_store_key(const px_idem_scope_t *s, const char *key, size_t keylen,
                         char out[PX_IDEM_STORE_KEY_MAX]);

/* ---- the decisions ------------------------------------------------------ */

/* Whether a request is under the listener's idempotency. */
typedef enum {
  PX_IDEM_ADMIT_PASS,    /* not concerned: forward it untouched, key or not */
  PX_IDEM_ADMIT_KEYED,   /* has a key: parse it and consult the store */
  PX_IDEM_ADMIT_MISSING, /* no key while `required`: answer 400 idempotency_key_missing */
} px_idem_admit_t;

/* From the listener's configuration, the request's method (llhttp_method_t; bit
 * 1 << method of c->methods, methods from 32 on are never in it) and whether it has an
 * Idempotency-Key field: a disabled listener or another method passes; a keyless request
 * passes unless `required`. */
px_idem_admit_t px_idem_admit(const px_idempotency_conf_t *c, int method, int has_key);

/* What the store holds for the key, as px_idem_decide_head sees it. */
typedef enum {
  PX_IDEM_FOUND_NOTHING,   /* no entry (or an expired one) */
  PX_IDEM_FOUND_IN_FLIGHT, /* a request with this key is running */
  PX_IDEM_FOUND_COMPLETED, /* a stored answer */
} px_idem_found_t;

typedef enum {
  PX_IDEM_RUN,       /* run the request (and store its answer) */
  PX_IDEM_CONFLICT,  /* 409 idempotency_in_flight: the first is still running */
  PX_IDEM_MISMATCH,  /* 422 idempotency_key_mismatch: the key was used for another request */
  PX_IDEM_NEED_BODY, /* same method and target as the stored one: hash the body, then decide */
  PX_IDEM_REPLAY,    /* send the stored answer with idempotent-replayed: true */
} px_idem_decision_t;

/* The decision on the head: the stored head digest (of the entry in flight or completed;
 * unused for NOTHING) against the request's. A different head is MISMATCH even while the
 * first request runs: retrying cannot cure that, so 422 beats a 409 that invites a retry
 * only to meet 422 later. The same head in flight is CONFLICT; completed, NEED_BODY. */
px_idem_decision_t px_idem_decide_head(px_idem_found_t found, uint64_t stored_head, uint64_t req_head);
/* The decision once the request's body is hashed: REPLAY when its fingerprint (`sha`) is
 * the stored one, else MISMATCH. */
px_idem_decision_t px_idem_decide_body(const uint8_t stored_sha[PX_SHA256_LEN],
                                       const uint8_t req_sha[PX_SHA256_LEN]);

/* 1 when an answer may be stored for replay. `status` must be final (200-499): 1xx are
 * interim, 5xx say the server failed, so a retry should run again (the draft and SPEC
 * §5); 408, 425 and 429 are also not kept, as they too say the request was not done
 * and invite a retry that a stored copy would refuse for the whole ttl. `header_bytes`
 * (the stored header lines) plus `body_bytes` must not exceed max_response_bytes: both
 * are held in memory, and a bound on the body alone would let a large head through. May
 * be called on the head (with the announced Content-Length, or 0) and again as the body
 * grows. */
int px_idem_response_storable(int status, size_t header_bytes, uint64_t body_bytes,
                              size_t max_response_bytes);

#endif
