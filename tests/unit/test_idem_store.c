/* The in-process idempotency store (proxy/idem_store.h). What a user relies on: the first
 * request with a key is the only one that runs, however many arrive at once; its answer
 * is replayed until its ttl; an owner that lost its entry (ended, expired, replaced)
 * cannot overwrite another's; the store stays within max_entries and max_bytes by
 * dropping the least recently used answers, never a request in flight; and an answer
 * being replayed stays intact while the store drops it. Time is passed in, never slept;
 * the build's ASan and LeakSanitizer check that nothing is freed early or leaked. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idem_store.h"

TestSuite(idem_store, .timeout = 60);

/* LeakSanitizer's check on demand, there in the Sanitize build (weak: absent elsewhere).
 * Criterion's test processes end without the check LeakSanitizer makes at exit, so each
 * test asks for it once its store is destroyed. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

static void expect_no_leaks(void) {
  if (__lsan_do_recoverable_leak_check)
    cr_expect_eq(__lsan_do_recoverable_leak_check(), 0, "leaks (see above)");
}

static px_str_t S(const char *s) { return (px_str_t){s, strlen(s)}; }

static px_idem_fp_t fp_of(const char *method, const char *target, const char *body) {
  px_idem_fp_t fp;
  px_sha256_t h;
  fp.head = px_idem_fp_head(S(method), S(target));
  px_idem_fp_start(&h, S(method), S(target));
  px_sha256_update(&h, body, strlen(body));
  px_sha256_final(&h, fp.sha);
  return fp;
}

/* Runs one request with `key` to the end: begin, then complete with `body`. */
static void store_answer(px_idem_store_t *st, const char *key, const char *body, uint64_t ttl_ms,
                         uint64_t now_ms) {
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t b;
  cr_assert_eq(px_idem_store_begin(st, S(key), fp.head, now_ms, &b), PX_IDEM_STORE_BEGUN, "begin %s", key);
  cr_assert_eq(px_idem_store_complete(st, S(key), b.token, &fp, 201, S(""), S(body), ttl_ms, now_ms), 0,
               "complete %s", key);
}

/* What the store holds for `key` at `now_ms`, a record released at once. */
static px_idem_store_rc_t holds(px_idem_store_t *st, const char *key, uint64_t now_ms) {
  px_idem_begin_t b;
  px_idem_store_rc_t rc = px_idem_store_lookup(st, S(key), now_ms, &b);
  if (rc == PX_IDEM_STORE_COMPLETED) px_idem_store_release(st, b.rec);
  return rc;
}

static px_idem_store_stats_t stats(px_idem_store_t *st) {
  px_idem_store_stats_t s;
  px_idem_store_stats(st, &s);
  return s;
}

Test(idem_store, begin_complete_replay) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 1 << 20, 4);
  px_idem_fp_t fp = fp_of("POST", "/pay", "{\"amount\":10}");
  px_idem_begin_t b;
  cr_assert_eq(px_idem_store_begin(st, S("k1"), fp.head, 1000, &b), PX_IDEM_STORE_BEGUN);
  cr_expect_neq(b.token, 0);
  px_idem_begin_t l;
  cr_expect_eq(px_idem_store_lookup(st, S("k1"), 1000, &l), PX_IDEM_STORE_IN_FLIGHT);
  cr_expect_eq(l.head, fp.head);
  cr_expect_eq(stats(st).in_flight, 1);
  const char *hdrs = "content-type: application/json\r\nx-id: 7\r\n", *body = "{\"id\":7}";
  cr_assert_eq(px_idem_store_complete(st, S("k1"), b.token, &fp, 201, S(hdrs), S(body), 60000, 1000), 0);
  px_idem_begin_t r;
  cr_assert_eq(px_idem_store_begin(st, S("k1"), fp.head, 2000, &r), PX_IDEM_STORE_COMPLETED);
  cr_assert_not_null(r.rec);
  cr_expect_eq(r.rec->status, 201);
  cr_expect(px_str_eq(r.rec->headers, S(hdrs)));
  cr_expect(px_str_eq(r.rec->body, S(body)));
  cr_expect_eq(memcmp(&r.rec->fp, &fp, sizeof(fp)), 0);
  px_idem_store_release(st, r.rec);
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.entries, 1);
  cr_expect_eq(s.in_flight, 0);
  cr_expect_eq(s.stored, 1);
  cr_expect_eq(s.bytes, 2 + strlen(hdrs) + strlen(body));
  cr_expect_eq(holds(st, "k2", 2000), PX_IDEM_STORE_ABSENT);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, empty_answer_and_empty_key) {
  px_idem_store_t *st = px_idem_store_mem_new(10, 1000, 1);
  px_idem_fp_t fp = fp_of("POST", "/x", "");
  px_idem_begin_t b;
  cr_assert_eq(px_idem_store_begin(st, S(""), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_complete(st, S(""), b.token, &fp, 204, S(""), S(""), 100, 0), 0);
  cr_assert_eq(px_idem_store_begin(st, S(""), fp.head, 1, &b), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(b.rec->status, 204);
  cr_expect_eq(b.rec->headers.n, 0);
  cr_expect_eq(b.rec->body.n, 0);
  px_idem_store_release(st, b.rec);
  cr_expect_eq(stats(st).bytes, 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, a_second_begin_meets_the_one_in_flight) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 1 << 20, 4);
  px_idem_fp_t a = fp_of("POST", "/pay", ""), other = fp_of("POST", "/refund", "");
  px_idem_begin_t b1, b2;
  cr_assert_eq(px_idem_store_begin(st, S("k"), a.head, 0, &b1), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(px_idem_store_begin(st, S("k"), a.head, 1, &b2), PX_IDEM_STORE_IN_FLIGHT);
  cr_expect_eq(b2.head, a.head);
  cr_expect_eq(px_idem_store_begin(st, S("k"), other.head, 2, &b2), PX_IDEM_STORE_IN_FLIGHT);
  cr_expect_eq(b2.head, a.head, "the head of the one that runs");
  cr_expect_eq(px_idem_store_abort(st, S("k"), b1.token), 0);
  cr_expect_eq(holds(st, "k", 3), PX_IDEM_STORE_ABSENT);
  cr_assert_eq(px_idem_store_begin(st, S("k"), other.head, 3, &b2), PX_IDEM_STORE_BEGUN,
               "aborted: free again");
  cr_expect_neq(b2.token, b1.token);
  cr_expect_eq(stats(st).entries, 1);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, stale_tokens_after_abort_and_re_begin) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 1 << 20, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "x");
  px_idem_begin_t b1, b2;
  cr_assert_eq(px_idem_store_begin(st, S("k"), fp.head, 0, &b1), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_abort(st, S("k"), b1.token), 0);
  cr_assert_eq(px_idem_store_begin(st, S("k"), fp.head, 0, &b2), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(px_idem_store_complete(st, S("k"), b1.token, &fp, 200, S(""), S("old"), 1000, 0),
               PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S("k"), b1.token), PX_ENOTFOUND);
  cr_expect_eq(holds(st, "k", 0), PX_IDEM_STORE_IN_FLIGHT, "the new owner's entry is untouched");
  cr_expect_eq(px_idem_store_complete(st, S("k"), b2.token, &fp, 200, S(""), S("new"), 1000, 0), 0);
  px_idem_begin_t r;
  cr_assert_eq(px_idem_store_lookup(st, S("k"), 0, &r), PX_IDEM_STORE_COMPLETED);
  cr_expect(px_str_eq(r.rec->body, S("new")));
  px_idem_store_release(st, r.rec);
  /* an owner ends once: after complete, neither a second complete nor an abort applies */
  cr_expect_eq(px_idem_store_complete(st, S("k"), b2.token, &fp, 200, S(""), S("again"), 1000, 0),
               PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S("k"), b2.token), PX_ENOTFOUND);
  cr_assert_eq(px_idem_store_lookup(st, S("k"), 0, &r), PX_IDEM_STORE_COMPLETED);
  cr_expect(px_str_eq(r.rec->body, S("new")));
  px_idem_store_release(st, r.rec);
  /* tokens that never were, and keys that are not there */
  cr_expect_eq(px_idem_store_complete(st, S("k"), 0, &fp, 200, S(""), S(""), 1000, 0), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S("k"), 0), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S("nope"), b2.token), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_complete(st, S("nope"), b2.token, &fp, 200, S(""), S(""), 1000, 0),
               PX_ENOTFOUND);
  cr_expect_eq(stats(st).entries, 1);
  cr_expect_eq(stats(st).stored, 1);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, stale_tokens_after_eviction_and_re_begin) {
  px_idem_store_t *st = px_idem_store_mem_new(2, 1 << 20, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "x");
  px_idem_begin_t a1, a2, c;
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &a1), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_complete(st, S("a"), a1.token, &fp, 200, S(""), S("first"), 1000, 0), 0);
  store_answer(st, "b", "b", 1000, 0);
  cr_assert_eq(px_idem_store_begin(st, S("c"), fp.head, 0, &c), PX_IDEM_STORE_BEGUN); /* evicts a */
  cr_expect_eq(holds(st, "a", 0), PX_IDEM_STORE_ABSENT);
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &a2), PX_IDEM_STORE_BEGUN); /* evicts b */
  cr_expect_eq(px_idem_store_complete(st, S("a"), a1.token, &fp, 200, S(""), S("late"), 1000, 0),
               PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S("a"), a1.token), PX_ENOTFOUND);
  cr_expect_eq(holds(st, "a", 0), PX_IDEM_STORE_IN_FLIGHT);
  cr_expect_eq(px_idem_store_abort(st, S("a"), a2.token), 0);
  cr_expect_eq(px_idem_store_abort(st, S("c"), c.token), 0);
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.evictions, 2);
  cr_expect_eq(s.entries, 0);
  cr_expect_eq(s.bytes, 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, ttl_expiry) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 1 << 20, 1);
  store_answer(st, "k", "v", 500, 1000);
  cr_expect_eq(holds(st, "k", 1000), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "k", 1499), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "k", 1500), PX_IDEM_STORE_ABSENT, "expired at now + ttl");
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.expired, 1);
  cr_expect_eq(s.entries, 0);
  cr_expect_eq(s.bytes, 0);
  cr_expect_eq(s.evictions, 0);
  /* begin replaces an expired answer */
  store_answer(st, "k", "v", 500, 2000);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t b;
  cr_expect_eq(px_idem_store_begin(st, S("k"), fp.head, 2499, &b), PX_IDEM_STORE_COMPLETED);
  px_idem_store_release(st, b.rec);
  cr_expect_eq(px_idem_store_begin(st, S("k"), fp.head, 2500, &b), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(stats(st).expired, 2);
  cr_expect_eq(px_idem_store_complete(st, S("k"), b.token, &fp, 200, S(""), S("w"), 500, 2500), 0);
  /* a ttl past the end of time saturates */
  store_answer(st, "forever", "v", UINT64_MAX, 5000);
  cr_expect_eq(holds(st, "forever", UINT64_MAX - 1), PX_IDEM_STORE_COMPLETED);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, expired_answers_are_reclaimed_without_pressure) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 1 << 20, 1);
  store_answer(st, "a", "v", 10, 0);
  store_answer(st, "b", "v", 10, 0);
  store_answer(st, "c", "v", 1000, 0);
  cr_expect_eq(stats(st).entries, 3);
  store_answer(st, "d", "v", 1000, 100); /* a begin of another key meets a and b at the tail */
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.expired, 2);
  cr_expect_eq(s.evictions, 0);
  cr_expect_eq(s.entries, 2);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, lru_eviction_by_entries) {
  px_idem_store_t *st = px_idem_store_mem_new(3, 1 << 20, 1);
  store_answer(st, "a", "1", 1000, 0);
  store_answer(st, "b", "2", 1000, 0);
  store_answer(st, "c", "3", 1000, 0);
  cr_expect_eq(holds(st, "a", 1), PX_IDEM_STORE_COMPLETED); /* a is now the most recent: b, c, a */
  store_answer(st, "d", "4", 1000, 2);                      /* evicts b: c, a, d */
  cr_expect_eq(holds(st, "b", 3), PX_IDEM_STORE_ABSENT);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t r;
  cr_assert_eq(px_idem_store_begin(st, S("c"), fp.head, 3, &r), PX_IDEM_STORE_COMPLETED); /* a, d, c */
  px_idem_store_release(st, r.rec);
  store_answer(st, "e", "5", 1000, 4); /* evicts a: d, c, e */
  cr_expect_eq(holds(st, "a", 5), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, "d", 5), PX_IDEM_STORE_COMPLETED); /* c, e, d */
  store_answer(st, "f", "6", 1000, 6);                      /* evicts c: e, d, f */
  cr_expect_eq(holds(st, "c", 7), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, "e", 7), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "d", 7), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "f", 7), PX_IDEM_STORE_COMPLETED);
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.evictions, 3);
  cr_expect_eq(s.entries, 3);
  cr_expect_eq(s.stored, 6);
  cr_expect_eq(s.expired, 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, lru_eviction_by_bytes) {
  /* 2-byte keys and 30-byte bodies: 32 bytes an answer, three fit in 100 */
  px_idem_store_t *st = px_idem_store_mem_new(100, 100, 1);
  char body[31];
  memset(body, 'b', 30);
  body[30] = '\0';
  store_answer(st, "k1", body, 1000, 0);
  store_answer(st, "k2", body, 1000, 0);
  store_answer(st, "k3", body, 1000, 0);
  cr_expect_eq(stats(st).bytes, 96);
  store_answer(st, "k4", body, 1000, 1); /* its key fits (98), its answer does not: k1 goes */
  cr_expect_eq(holds(st, "k1", 2), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(stats(st).bytes, 96);
  cr_expect_eq(holds(st, "k2", 2), PX_IDEM_STORE_COMPLETED); /* k3, k4, k2 */
  store_answer(st, "k5", body, 1000, 3);                     /* k3 goes */
  cr_expect_eq(holds(st, "k3", 4), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, "k4", 4), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "k2", 4), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "k5", 4), PX_IDEM_STORE_COMPLETED);
  /* one answer of 62 bytes pushes out two */
  char big[61];
  memset(big, 'B', 60);
  big[60] = '\0';
  store_answer(st, "k6", big, 1000, 5); /* LRU order k4, k2, k5: k4 and k2 go */
  cr_expect_eq(holds(st, "k4", 6), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, "k2", 6), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, "k5", 6), PX_IDEM_STORE_COMPLETED);
  cr_expect_eq(holds(st, "k6", 6), PX_IDEM_STORE_COMPLETED);
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.bytes, 94);
  cr_expect_eq(s.entries, 2);
  cr_expect_eq(s.evictions, 4);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, an_answer_too_large_is_not_kept) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 100, 1);
  store_answer(st, "small", "s", 1000, 0);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  char body[200];
  memset(body, 'x', sizeof(body) - 1);
  body[sizeof(body) - 1] = '\0';
  px_idem_begin_t b;
  cr_assert_eq(px_idem_store_begin(st, S("k"), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(px_idem_store_complete(st, S("k"), b.token, &fp, 200, S(""), S(body), 1000, 0), PX_ETOOLARGE);
  cr_expect_eq(holds(st, "k", 0), PX_IDEM_STORE_ABSENT, "the in-flight entry is gone too");
  cr_expect_eq(holds(st, "small", 0), PX_IDEM_STORE_COMPLETED, "and nothing was evicted for it");
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.entries, 1);
  cr_expect_eq(s.bytes, 6);
  cr_expect_eq(s.in_flight, 0);
  cr_expect_eq(s.evictions, 0);
  cr_expect_eq(px_idem_store_abort(st, S("k"), b.token), PX_ENOTFOUND,
               "an end hook's abort after it is harmless");
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, no_room_left_by_requests_in_flight) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 40, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t a, b;
  char longkey[31];
  memset(longkey, 'L', 30);
  longkey[30] = '\0';
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &a), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_begin(st, S(longkey), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(stats(st).bytes, 31);
  /* 1 + 20 bytes would fit alone, but the other key in flight holds 30 of the 40 */
  cr_expect_eq(
      px_idem_store_complete(st, S("a"), a.token, &fp, 200, S(""), S("01234567890123456789"), 1000, 0),
      PX_EOVERFLOW);
  cr_expect_eq(holds(st, "a", 0), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(holds(st, longkey, 0), PX_IDEM_STORE_IN_FLIGHT, "never evicted");
  cr_expect_eq(stats(st).bytes, 30);
  cr_expect_eq(px_idem_store_abort(st, S(longkey), b.token), 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, full_when_every_slot_is_in_flight) {
  px_idem_store_t *st = px_idem_store_mem_new(2, 1 << 20, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t a, b, c;
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &a), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_begin(st, S("b"), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(px_idem_store_begin(st, S("c"), fp.head, 0, &c), PX_IDEM_STORE_FULL);
  cr_expect_eq(px_idem_store_begin(st, S("c"), fp.head, 0, &c), PX_IDEM_STORE_FULL);
  cr_expect_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &c), PX_IDEM_STORE_IN_FLIGHT,
               "a known key is not FULL");
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.full, 2);
  cr_expect_eq(s.entries, 2);
  cr_expect_eq(s.in_flight, 2);
  cr_expect_eq(s.evictions, 0);
  /* once one is completed, it may be evicted for a newcomer */
  cr_assert_eq(px_idem_store_complete(st, S("a"), a.token, &fp, 200, S(""), S("v"), 1000, 0), 0);
  cr_expect_eq(px_idem_store_begin(st, S("c"), fp.head, 0, &c), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(holds(st, "a", 0), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(stats(st).evictions, 1);
  cr_expect_eq(px_idem_store_abort(st, S("b"), b.token), 0);
  cr_expect_eq(px_idem_store_abort(st, S("c"), c.token), 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

/* Requests in flight at once, many more than the store first makes room for: each keeps
 * its own entry (its token, its head), however they end; and a key longer than any the
 * filter makes (px_idem_store_key) is refused as FULL rather than cut. */
Test(idem_store, many_requests_in_flight_at_once) {
  enum { N = 300 };
  px_idem_store_t *st = px_idem_store_mem_new(1000, 1 << 20, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req"), other = fp_of("PUT", "/pay", "req");
  px_idem_begin_t b[N], again;
  char key[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(key[i], sizeof(key[i]), "k%d", i);
    cr_assert_eq(px_idem_store_begin(st, S(key[i]), i % 2 ? other.head : fp.head, 0, &b[i]),
                 PX_IDEM_STORE_BEGUN);
  }
  cr_expect_eq(stats(st).in_flight, N);
  /* tokens no begin gave are nobody's: another entry's index, one past the pool, all ones */
  cr_expect_eq(px_idem_store_abort(st, S(key[0]), b[1].token), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S(key[0]), b[0].token + 1000), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_abort(st, S(key[0]), UINT64_MAX), PX_ENOTFOUND);
  cr_expect_eq(px_idem_store_complete(st, S(key[0]), UINT64_MAX, &fp, 200, S(""), S("x"), 1000, 0),
               PX_ENOTFOUND);
  px_idem_store_prefetch(st, S(key[0]), UINT64_MAX); /* a hint only: never a bad read */
  px_idem_store_prefetch(st, S(key[0]), b[N - 1].token);
  for (int i = 0; i < N; i++) {
    cr_expect_eq(px_idem_store_begin(st, S(key[i]), fp.head, 0, &again), PX_IDEM_STORE_IN_FLIGHT);
    cr_expect_eq(again.head, i % 2 ? other.head : fp.head, "the head of %s", key[i]);
  }
  for (int i = 0; i < N; i++) { /* ended in turn: a third aborted, the rest completed */
    if (i % 3 == 0)
      cr_expect_eq(px_idem_store_abort(st, S(key[i]), b[i].token), 0);
    else
      cr_expect_eq(px_idem_store_complete(st, S(key[i]), b[i].token, &fp, 200, S(""), S(key[i]), 1000, 0), 0);
    cr_expect_eq(px_idem_store_abort(st, S(key[i]), b[i].token), PX_ENOTFOUND, "ended once");
  }
  for (int i = 0; i < N; i++) {
    px_idem_begin_t l;
    px_idem_store_rc_t rc = px_idem_store_lookup(st, S(key[i]), 0, &l);
    cr_expect_eq(rc, i % 3 == 0 ? PX_IDEM_STORE_ABSENT : PX_IDEM_STORE_COMPLETED, "%s", key[i]);
    if (rc == PX_IDEM_STORE_COMPLETED) {
      cr_expect_eq(l.rec->body.n, strlen(key[i]));
      cr_expect_eq(memcmp(l.rec->body.p, key[i], l.rec->body.n), 0);
      px_idem_store_release(st, l.rec);
    }
  }
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.in_flight, 0);
  cr_expect_eq(s.entries, N - (N + 2) / 3);
  /* the entries given back are taken again */
  for (int i = 0; i < N; i += 3)
    cr_expect_eq(px_idem_store_begin(st, S(key[i]), fp.head, 0, &b[i]), PX_IDEM_STORE_BEGUN);
  char longkey[PX_IDEM_STORE_KEY_MAX + 2];
  memset(longkey, 'L', sizeof(longkey) - 1);
  longkey[sizeof(longkey) - 1] = '\0';
  cr_expect_eq(px_idem_store_begin(st, S(longkey), fp.head, 0, &again), PX_IDEM_STORE_FULL);
  longkey[PX_IDEM_STORE_KEY_MAX] = '\0';
  cr_expect_eq(px_idem_store_begin(st, S(longkey), fp.head, 0, &again), PX_IDEM_STORE_BEGUN,
               "the longest key");
  px_idem_store_destroy(st); /* with entries in flight: they are freed too */
  expect_no_leaks();
}

Test(idem_store, full_by_bytes) {
  px_idem_store_t *st = px_idem_store_mem_new(100, 10, 1);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t b;
  cr_expect_eq(px_idem_store_begin(st, S("0123456789a"), fp.head, 0, &b), PX_IDEM_STORE_FULL,
               "a key over the bound");
  cr_assert_eq(px_idem_store_begin(st, S("01234"), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  px_idem_begin_t c;
  cr_expect_eq(px_idem_store_begin(st, S("abcdef"), fp.head, 0, &c), PX_IDEM_STORE_FULL, "5 + 6 > 10");
  cr_expect_eq(stats(st).full, 2);
  cr_expect_eq(px_idem_store_abort(st, S("01234"), b.token), 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

static void fill_pattern(char *p, size_t n, unsigned seed) {
  for (size_t i = 0; i < n; i++) p[i] = (char)(seed * 31 + i * 7);
}

Test(idem_store, a_record_outlives_eviction_expiry_and_replacement) {
  px_idem_store_t *st = px_idem_store_mem_new(1, 1 << 20, 1);
  size_t n = 8192;
  char *body = malloc(n), *want = malloc(n);
  fill_pattern(body, n, 1);
  memcpy(want, body, n);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t b, r1, r2;
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(
      px_idem_store_complete(st, S("a"), b.token, &fp, 200, S("x: y\r\n"), (px_str_t){body, n}, 100, 0), 0);
  memset(body, 0, n); /* the store holds its own copy */
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 1, &r1), PX_IDEM_STORE_COMPLETED);
  cr_assert_eq(px_idem_store_lookup(st, S("a"), 1, &r2), PX_IDEM_STORE_COMPLETED);
  cr_expect_neq(r1.rec, r2.rec, "each caller gets a copy of its own");
  /* evicted while two replays hold it */
  px_idem_begin_t o;
  cr_assert_eq(px_idem_store_begin(st, S("other"), fp.head, 2, &o), PX_IDEM_STORE_BEGUN);
  cr_expect_eq(stats(st).evictions, 1);
  cr_expect_eq(holds(st, "a", 2), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(r1.rec->body.n, n);
  cr_expect_eq(memcmp(r1.rec->body.p, want, n), 0);
  px_idem_store_release(st, r1.rec);
  cr_expect_eq(memcmp(r2.rec->body.p, want, n), 0, "one release leaves the other's bytes");
  cr_expect(px_str_eq(r2.rec->headers, S("x: y\r\n")));
  px_idem_store_release(st, r2.rec); /* freed here: ASan reports a use after this */
  cr_expect_eq(px_idem_store_abort(st, S("other"), o.token), 0);
  /* expired and replaced while a replay holds it */
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 10, &b), PX_IDEM_STORE_BEGUN);
  fill_pattern(body, n, 2);
  fill_pattern(want, n, 2);
  cr_assert_eq(px_idem_store_complete(st, S("a"), b.token, &fp, 200, S(""), (px_str_t){body, n}, 100, 10), 0);
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 20, &r1), PX_IDEM_STORE_COMPLETED);
  cr_assert_eq(px_idem_store_begin(st, S("a"), fp.head, 110, &b), PX_IDEM_STORE_BEGUN, "expired: replaced");
  cr_expect_eq(stats(st).expired, 1);
  cr_assert_eq(px_idem_store_complete(st, S("a"), b.token, &fp, 200, S(""), S("new"), 100, 110), 0);
  cr_expect_eq(memcmp(r1.rec->body.p, want, n), 0);
  px_idem_store_release(st, r1.rec);
  free(body);
  free(want);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, counters) {
  px_idem_store_t *st = px_idem_store_mem_new(2, 1 << 20, 1);
  px_idem_store_stats_t s = stats(st);
  cr_expect(s.entries == 0 && s.in_flight == 0 && s.bytes == 0 && s.stored == 0 && s.evictions == 0 &&
            s.expired == 0 && s.full == 0);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  px_idem_begin_t a, b, c;
  cr_assert_eq(px_idem_store_begin(st, S("aa"), fp.head, 0, &a), PX_IDEM_STORE_BEGUN);
  s = stats(st);
  cr_expect(s.entries == 1 && s.in_flight == 1 && s.bytes == 2);
  cr_assert_eq(px_idem_store_complete(st, S("aa"), a.token, &fp, 200, S("h: v\r\n"), S("body"), 10, 0), 0);
  s = stats(st);
  cr_expect(s.entries == 1 && s.in_flight == 0 && s.bytes == 2 + 6 + 4 && s.stored == 1);
  cr_assert_eq(px_idem_store_begin(st, S("bb"), fp.head, 0, &b), PX_IDEM_STORE_BEGUN);
  cr_assert_eq(px_idem_store_begin(st, S("cc"), fp.head, 0, &c), PX_IDEM_STORE_BEGUN); /* evicts aa */
  cr_expect_eq(px_idem_store_begin(st, S("dd"), fp.head, 0, &a), PX_IDEM_STORE_FULL);
  s = stats(st);
  cr_expect(s.entries == 2 && s.in_flight == 2 && s.bytes == 4 && s.evictions == 1 && s.full == 1);
  cr_assert_eq(px_idem_store_complete(st, S("bb"), b.token, &fp, 200, S(""), S("x"), 10, 0), 0);
  cr_expect_eq(holds(st, "bb", 10), PX_IDEM_STORE_ABSENT);
  cr_expect_eq(px_idem_store_abort(st, S("cc"), c.token), 0);
  s = stats(st);
  cr_expect(s.entries == 0 && s.in_flight == 0 && s.bytes == 0 && s.stored == 2 && s.evictions == 1 &&
                s.expired == 1 && s.full == 1,
            "entries %llu in_flight %llu bytes %llu stored %llu evictions %llu expired %llu full %llu",
            (unsigned long long)s.entries, (unsigned long long)s.in_flight, (unsigned long long)s.bytes,
            (unsigned long long)s.stored, (unsigned long long)s.evictions, (unsigned long long)s.expired,
            (unsigned long long)s.full);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, shards_share_the_bounds) {
  /* fewer entries than shards: one entry a shard, four in all */
  px_idem_store_t *st = px_idem_store_mem_new(4, 1 << 20, 16);
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  int begun = 0, full = 0;
  char key[16];
  for (int i = 0; i < 200; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    px_idem_begin_t b;
    px_idem_store_rc_t rc = px_idem_store_begin(st, S(key), fp.head, 0, &b);
    begun += rc == PX_IDEM_STORE_BEGUN;
    full += rc == PX_IDEM_STORE_FULL;
  }
  cr_expect_eq(begun, 4);
  cr_expect_eq(full, 196);
  cr_expect_eq(stats(st).entries, 4);
  px_idem_store_destroy(st); /* with entries in flight: freed all the same */
  /* many answers over 16 shards: every shard fills its share, none goes past it */
  st = px_idem_store_mem_new(1000, 1 << 20, 16);
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    store_answer(st, key, "v", 1000, 0);
  }
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.entries, 1000);
  cr_expect_eq(s.evictions, 4000);
  cr_expect_eq(s.stored, 5000);
  int kept = 0;
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    kept += holds(st, key, 0) == PX_IDEM_STORE_COMPLETED;
  }
  cr_expect_eq(kept, 1000);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

/* The store keeps answers on a ring that wraps (idem_store.c): answers of every size,
 * replays that move an answer to the head and aborts that leave gaps must never mix up
 * one answer's bytes with another's, nor lose one that a lookup should still find while
 * the bounds leave room for it. A model tracks what each key last stored. */
static void ring_model(size_t max_entries, size_t max_bytes, int KEYS, int OPS) {
  px_idem_store_t *st = px_idem_store_mem_new(max_entries, max_bytes, 1);
  int *version = calloc((size_t)KEYS, sizeof(int)); /* a key's kept answer's version, 0: none */
  int next_version = 1, replays = 0, stored = 0;
  unsigned rnd = 12345;
  char body[700], want[700], key[16];
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  for (int op = 0; op < OPS; op++) {
    rnd = rnd * 1103515245u + 12345u;
    int k = (int)((rnd >> 8) % KEYS), what = (int)((rnd >> 20) % 4);
    snprintf(key, sizeof(key), "key-%d", k);
    px_idem_begin_t b;
    px_idem_store_rc_t rc = px_idem_store_begin(st, S(key), fp.head, 0, &b);
    if (rc == PX_IDEM_STORE_COMPLETED) {
      cr_assert_neq(version[k], 0, "op %d: %s came back after it was gone", op, key);
      size_t n = (size_t)(version[k] * 37 % 600);
      fill_pattern(want, n, (unsigned)version[k]);
      cr_assert_eq(b.rec->status, 200 + version[k] % 100, "op %d", op);
      cr_assert_eq(b.rec->body.n, n, "op %d: %s", op, key);
      cr_assert_eq(memcmp(b.rec->body.p, want, n), 0, "op %d: %s holds another answer's bytes", op, key);
      px_idem_store_release(st, b.rec);
      replays++;
      continue;
    }
    cr_assert_eq(rc, PX_IDEM_STORE_BEGUN, "op %d: %d", op, rc);
    version[k] = 0; /* absent: evicted, or never stored */
    if (what == 0) {
      cr_assert_eq(px_idem_store_abort(st, S(key), b.token), 0);
      continue;
    }
    int v = next_version++;
    size_t n = (size_t)(v * 37 % 600);
    fill_pattern(body, n, (unsigned)v);
    cr_assert_eq(px_idem_store_complete(st, S(key), b.token, &fp, 200 + v % 100, S("h: v\r\n"),
                                        (px_str_t){body, n}, 1000, 0),
                 0, "op %d", op);
    version[k] = v;
    stored++;
    px_idem_store_stats_t s = stats(st);
    cr_assert_leq(s.entries, max_entries);
    cr_assert_leq(s.bytes, max_bytes);
    cr_assert_eq(holds(st, key, 0), PX_IDEM_STORE_COMPLETED, "op %d: the newest answer is kept", op);
  }
  /* what the model still holds, the store holds unless it was pushed out since */
  int held = 0;
  for (int k = 0; k < KEYS; k++) {
    snprintf(key, sizeof(key), "key-%d", k);
    held += version[k] && holds(st, key, 0) == PX_IDEM_STORE_COMPLETED;
  }
  cr_expect_eq((uint64_t)held, stats(st).entries, "every entry is one the model expects");
  cr_expect_gt(replays, OPS / 20);
  cr_expect_gt(stored, OPS / 4);
  free(version);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

Test(idem_store, answers_stay_intact_as_the_ring_wraps) { ring_model(64, 8192, 200, 20000); }

/* A ring whose capacity (for 1 MiB of answers) is far more than it first uses: it grows
 * as 2,000 entries of up to 600 bytes fill it, then wraps within what it uses. */
Test(idem_store, answers_stay_intact_as_the_ring_grows) { ring_model(2000, 1 << 20, 5000, 60000); }

/* ---- threads ------------------------------------------------------------ */

#define RACERS 8

typedef struct {
  px_idem_store_t *st;
  pthread_barrier_t *go;
  int round;
  px_idem_store_rc_t rc;
  uint64_t token;
} racer_t;

static void *race(void *arg) {
  racer_t *r = arg;
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  char key[32];
  snprintf(key, sizeof(key), "same-%d", r->round);
  px_idem_begin_t b;
  pthread_barrier_wait(r->go);
  r->rc = px_idem_store_begin(r->st, S(key), fp.head, 0, &b);
  r->token = b.token;
  return NULL;
}

Test(idem_store, eight_threads_one_key_one_runs) {
  px_idem_store_t *st = px_idem_store_mem_new(1000, 1 << 20, 16);
  for (int round = 0; round < 50; round++) {
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, RACERS);
    racer_t r[RACERS];
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++) {
      r[i] = (racer_t){.st = st, .go = &go, .round = round};
      cr_assert_eq(pthread_create(&t[i], NULL, race, &r[i]), 0);
    }
    int begun = 0, in_flight = 0;
    uint64_t token = 0;
    for (int i = 0; i < RACERS; i++) {
      pthread_join(t[i], NULL);
      if (r[i].rc == PX_IDEM_STORE_BEGUN) {
        begun++;
        token = r[i].token;
      }
      if (r[i].rc == PX_IDEM_STORE_IN_FLIGHT) in_flight++;
    }
    pthread_barrier_destroy(&go);
    cr_assert_eq(begun, 1, "round %d", round);
    cr_assert_eq(in_flight, RACERS - 1, "round %d", round);
    char key[32];
    snprintf(key, sizeof(key), "same-%d", round);
    cr_assert_eq(px_idem_store_abort(st, S(key), token), 0);
  }
  cr_expect_eq(stats(st).entries, 0);
  px_idem_store_destroy(st);
  expect_no_leaks();
}

#define WORKERS 8
#define OPS 20000
#define KEYS 500
#define MAX_ENTRIES 64
#define MAX_BYTES (64 * 256)

typedef struct {
  px_idem_store_t *st;
  atomic_ullong *ticks;
  unsigned seed;
  int bad_bytes, over_bounds, replays, begun, full;
} worker_t;

/* Each key's answer is derived from the key, so a replay can tell torn or foreign bytes. */
static void *work(void *arg) {
  worker_t *w = arg;
  px_idem_fp_t fp = fp_of("POST", "/pay", "req");
  char key[16], body[400];
  for (int op = 0; op < OPS; op++) {
    unsigned id = (unsigned)rand_r(&w->seed) % KEYS;
    snprintf(key, sizeof(key), "key-%u", id);
    uint64_t now = atomic_fetch_add(w->ticks, 1) / 16; /* a few ms of ttl span many ops */
    px_idem_begin_t b;
    px_idem_store_rc_t rc = px_idem_store_begin(w->st, S(key), fp.head, now, &b);
    if (rc == PX_IDEM_STORE_BEGUN) {
      w->begun++;
      size_t n = 1 + id % sizeof(body);
      fill_pattern(body, n, id);
      int r = rand_r(&w->seed) % 4;
      if (r == 0) {
        if (px_idem_store_abort(w->st, S(key), b.token) != 0) w->bad_bytes++;
      } else {
        int c = px_idem_store_complete(w->st, S(key), b.token, &fp, 200 + (int)(id % 300), S(""),
                                       (px_str_t){body, n}, 1 + (uint64_t)r * 20, now);
        if (c != 0 && c != PX_ETOOLARGE && c != PX_EOVERFLOW) w->bad_bytes++;
      }
    } else if (rc == PX_IDEM_STORE_COMPLETED) {
      w->replays++;
      size_t n = 1 + id % sizeof(body);
      fill_pattern(body, n, id);
      if (b.rec->status != 200 + (int)(id % 300) || b.rec->body.n != n || memcmp(b.rec->body.p, body, n) != 0)
        w->bad_bytes++;
      px_idem_store_release(w->st, b.rec);
    } else if (rc == PX_IDEM_STORE_FULL) {
      w->full++;
    }
    px_idem_store_stats_t s;
    px_idem_store_stats(w->st, &s);
    if (s.entries > MAX_ENTRIES || s.bytes > MAX_BYTES) w->over_bounds++;
  }
  return NULL;
}

Test(idem_store, many_threads_random_keys_stay_bounded) {
  px_idem_store_t *st = px_idem_store_mem_new(MAX_ENTRIES, MAX_BYTES, 4);
  atomic_ullong ticks;
  atomic_init(&ticks, 0);
  worker_t w[WORKERS];
  pthread_t t[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    w[i] = (worker_t){.st = st, .ticks = &ticks, .seed = 1234u + (unsigned)i};
    cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
  }
  int replays = 0, begun = 0;
  for (int i = 0; i < WORKERS; i++) {
    pthread_join(t[i], NULL);
    cr_expect_eq(w[i].bad_bytes, 0, "worker %d", i);
    cr_expect_eq(w[i].over_bounds, 0, "worker %d", i);
    replays += w[i].replays;
    begun += w[i].begun;
  }
  cr_expect_gt(replays, 0);
  cr_expect_gt(begun, 0);
  px_idem_store_stats_t s = stats(st);
  cr_expect_eq(s.in_flight, 0, "every owner ended its entry");
  cr_expect_leq(s.entries, MAX_ENTRIES);
  cr_expect_leq(s.bytes, MAX_BYTES);
  cr_expect_gt(s.evictions + s.expired, 0);
  px_idem_store_destroy(st); /* LeakSanitizer checks that this frees what is left */
  expect_no_leaks();
}
