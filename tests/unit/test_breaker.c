/* The circuit breaker (proxy/breaker.h). What a user relies on: an endpoint opens after
 * exactly consecutive_failures failures in a row, or when its failure rate over the window
 * exceeds the threshold with at least min_requests there, and old failures stop counting
 * once the window has passed; it stays open for open_duration × opens in a row, capped,
 * then lets exactly half_open_requests probes through, across all threads, closing on
 * their success and re-opening on a failure; a probe given back lets another go;
 * max_open_percent holds back an open (one endpoint may always open), and every transition
 * says what caused it. Time is passed in: nothing here sleeps. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "breaker.h"

#define SEC 1000u

static px_breaker_conf_t conf(void) {
  return (px_breaker_conf_t){.consecutive_failures = 5,
                             .rate_threshold = 0.5,
                             .rate_window_ms = 10 * SEC,
                             .rate_min_requests = 20,
                             .open_duration_ms = 30 * SEC,
                             .max_open_duration_ms = 300 * SEC,
                             .half_open_requests = 1,
                             .max_open_percent = 50};
}

/* A breaker judged by the failure rate alone. */
static px_breaker_conf_t rate_only(void) {
  px_breaker_conf_t c = conf();
  c.consecutive_failures = 0;
  return c;
}

static void init(px_breaker_t *b, px_breaker_conf_t c) { cr_assert_eq(px_breaker_init(b, &c), 0); }

static int report(px_breaker_t *b, uint64_t now, px_breaker_outcome_t o, int probe,
                  px_breaker_transition_t *tr) {
  return px_breaker_report(b, now, o, probe, NULL, NULL, tr);
}

/* `n` ordinary failures (or successes) at `now`; the transition of the last one. */
static px_breaker_transition_t fails(px_breaker_t *b, uint64_t now, int n) {
  px_breaker_transition_t tr = {0};
  for (int i = 0; i < n; i++) report(b, now, PX_BREAKER_FAILURE, 0, &tr);
  return tr;
}

static void oks(px_breaker_t *b, uint64_t now, int n) {
  for (int i = 0; i < n; i++) report(b, now, PX_BREAKER_SUCCESS, 0, NULL);
}

static void expect_tr(px_breaker_transition_t tr, px_breaker_state_t from, px_breaker_state_t to,
                      px_breaker_cause_t cause) {
  cr_expect(tr.changed);
  cr_expect_eq(tr.from, from, "from %s", px_breaker_state_name(tr.from));
  cr_expect_eq(tr.to, to, "to %s", px_breaker_state_name(tr.to));
  cr_expect_eq(tr.cause, cause, "cause %s", px_breaker_cause_name(tr.cause));
}

/* Opens `b` at `now` by consecutive failures and returns the transition. */
static px_breaker_transition_t open_it(px_breaker_t *b, uint64_t now) {
  px_breaker_transition_t tr = fails(b, now, b->conf.consecutive_failures);
  cr_assert_eq(px_breaker_state(b), PX_BREAKER_OPEN);
  return tr;
}

/* Takes an open breaker to half-open (at its reopen time) and takes one probe slot. */
static uint64_t half_open(px_breaker_t *b) {
  px_breaker_snapshot_t s;
  px_breaker_snapshot(b, 0, &s);
  cr_assert_eq(s.state, PX_BREAKER_OPEN);
  px_breaker_transition_t tr;
  cr_assert_eq(px_breaker_admit(b, s.reopen_at_ms, &tr), PX_BREAKER_ALLOW_PROBE);
  expect_tr(tr, PX_BREAKER_OPEN, PX_BREAKER_HALF_OPEN, PX_BREAKER_CAUSE_OPEN_ELAPSED);
  return s.reopen_at_ms;
}

/* ---- closed → open ------------------------------------------------------------------- */

Test(breaker, starts_closed_and_admits) {
  px_breaker_t b;
  init(&b, conf());
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_transition_t tr = {.changed = 7};
  cr_expect_eq(px_breaker_admit(&b, 1000, &tr), PX_BREAKER_ALLOW);
  cr_expect_eq(tr.changed, 0, "the out-parameter is cleared");
  cr_expect_eq(px_breaker_admit(&b, 1000, NULL), PX_BREAKER_ALLOW, "tr may be NULL");
  px_breaker_destroy(&b);
}

Test(breaker, consecutive_failures_open_at_exactly_the_threshold) {
  px_breaker_t b;
  init(&b, conf());
  px_breaker_transition_t tr = fails(&b, 1000, 4);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED, "one below the threshold stays closed");
  cr_expect_eq(px_breaker_admit(&b, 1000, NULL), PX_BREAKER_ALLOW);
  cr_expect_eq(report(&b, 1000, PX_BREAKER_FAILURE, 0, &tr), 1);
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  cr_expect_eq(tr.open_ms, 30 * SEC);
  cr_expect_eq(tr.opens, 1);
  cr_expect_eq(px_breaker_admit(&b, 1001, NULL), PX_BREAKER_REJECT);
  px_breaker_destroy(&b);
}

Test(breaker, a_success_breaks_the_run) {
  px_breaker_t b;
  init(&b, conf());
  fails(&b, 1000, 4);
  oks(&b, 1000, 1);
  fails(&b, 1000, 4);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 1000, &s);
  cr_expect_eq(s.consecutive_failures, 4);
  cr_expect_eq(s.window_requests, 9);
  cr_expect_eq(s.window_failures, 8);
  fails(&b, 1000, 1);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN);
  px_breaker_destroy(&b);
}

Test(breaker, consecutive_failures_zero_turns_that_trigger_off) {
  px_breaker_t b;
  px_breaker_conf_t c = rate_only();
  c.rate_min_requests = 1000000;
  init(&b, c);
  fails(&b, 1000, 1000);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_destroy(&b);
}

Test(breaker, failure_rate_needs_min_requests) {
  px_breaker_t b;
  init(&b, rate_only());
  px_breaker_transition_t tr = fails(&b, 1000, 19); /* 100% failures, but 19 < 20 requests */
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  tr = fails(&b, 1000, 1);
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_FAILURE_RATE);
  px_breaker_destroy(&b);
}

Test(breaker, failure_rate_must_exceed_the_threshold) {
  px_breaker_t b;
  init(&b, rate_only());
  for (int i = 0; i < 10; i++) { /* 10 of 20: exactly 0.5, not above it */
    fails(&b, 1000, 1);
    oks(&b, 1000, 1);
  }
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_transition_t tr = fails(&b, 1000, 1); /* 11 of 21 */
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_FAILURE_RATE);
  px_breaker_destroy(&b);

  /* 0.57 × 100 is 56.99999999999999 in binary: 57 of 100 must still not open. */
  px_breaker_conf_t c = rate_only();
  c.rate_threshold = 0.57;
  c.rate_min_requests = 100;
  init(&b, c);
  fails(&b, 1000, 57);
  oks(&b, 1000, 43);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED, "57 of 100 is 0.57, not above it");
  fails(&b, 1000, 1);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN, "58 of 101");
  px_breaker_destroy(&b);
}

Test(breaker, a_success_can_complete_min_requests) {
  /* 19 failures are too few to judge; the 20th request, a success, makes 19 of 20. */
  px_breaker_t b;
  init(&b, rate_only());
  fails(&b, 1000, 19);
  px_breaker_transition_t tr;
  report(&b, 1000, PX_BREAKER_SUCCESS, 0, &tr);
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_FAILURE_RATE);
  px_breaker_destroy(&b);
}

Test(breaker, old_failures_leave_the_window) {
  px_breaker_t b;
  init(&b, rate_only());
  fails(&b, 0, 19);
  fails(&b, 10 * SEC - 1, 1); /* the first 19 are still inside: 20 of 20 */
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN);
  px_breaker_destroy(&b);

  init(&b, rate_only());
  fails(&b, 0, 19);
  fails(&b, 10 * SEC, 1); /* a window later they are gone: 1 of 1 */
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 10 * SEC, &s);
  cr_expect_eq(s.window_requests, 1);
  cr_expect_eq(s.window_failures, 1);
  px_breaker_destroy(&b);
}

Test(breaker, the_window_slides_bucket_by_bucket) {
  px_breaker_t b;
  init(&b, rate_only());
  fails(&b, 500, 5);         /* bucket 0: leaves at 10s */
  fails(&b, 5 * SEC, 6);     /* bucket 5: leaves at 15s */
  oks(&b, 9 * SEC + 999, 4); /* bucket 9: leaves at 20s */
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 9 * SEC + 999, &s);
  cr_expect_eq(s.window_requests, 15);
  cr_expect_eq(s.window_failures, 11);
  px_breaker_snapshot(&b, 10 * SEC, &s);
  cr_expect_eq(s.window_requests, 10);
  cr_expect_eq(s.window_failures, 6);
  px_breaker_snapshot(&b, 15 * SEC, &s);
  cr_expect_eq(s.window_requests, 4);
  cr_expect_eq(s.window_failures, 0);
  px_breaker_snapshot(&b, 100 * SEC, &s); /* long idle: all gone */
  cr_expect_eq(s.window_requests, 0);
  /* The consecutive run is not a matter of time: it lasts until a success. */
  fails(&b, 200 * SEC, 4);
  fails(&b, 900 * SEC, 1);
  px_breaker_snapshot(&b, 900 * SEC, &s);
  cr_expect_eq(s.consecutive_failures, 5);
  px_breaker_destroy(&b);
}

Test(breaker, a_clock_a_little_behind_counts_in_the_newest_bucket) {
  /* Workers read the clock before taking the lock: a report may carry an earlier time. */
  px_breaker_t b;
  init(&b, rate_only());
  fails(&b, 5 * SEC, 1);
  fails(&b, 4 * SEC, 1);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 5 * SEC, &s);
  cr_expect_eq(s.window_failures, 2);
  px_breaker_snapshot(&b, 15 * SEC, &s); /* and both leave with the newest bucket */
  cr_expect_eq(s.window_failures, 0);
  px_breaker_destroy(&b);
}

/* ---- open, half-open ----------------------------------------------------------------- */

Test(breaker, open_turns_half_open_on_the_first_admit_after_open_duration) {
  px_breaker_t b;
  init(&b, conf());
  oks(&b, 1000, 2);
  open_it(&b, 1000);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 1000, &s);
  cr_expect_eq(s.reopen_at_ms, 31 * SEC);
  cr_expect_eq(s.opens, 1);
  /* What opened it stays in view while it is open, whatever the time. */
  px_breaker_snapshot(&b, 25 * SEC, &s);
  cr_expect_eq(s.consecutive_failures, 5);
  cr_expect_eq(s.window_requests, 7);
  cr_expect_eq(s.window_failures, 5);
  px_breaker_transition_t tr;
  cr_expect_eq(px_breaker_admit(&b, 31 * SEC - 1, &tr), PX_BREAKER_REJECT);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN, "the state moves only on admit");
  cr_expect_eq(px_breaker_admit(&b, 31 * SEC, &tr), PX_BREAKER_ALLOW_PROBE);
  expect_tr(tr, PX_BREAKER_OPEN, PX_BREAKER_HALF_OPEN, PX_BREAKER_CAUSE_OPEN_ELAPSED);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_HALF_OPEN);
  px_breaker_destroy(&b);
}

Test(breaker, half_open_admits_exactly_half_open_requests_probes) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.half_open_requests = 3;
  init(&b, c);
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_ALLOW_PROBE);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_ALLOW_PROBE);
  for (int i = 0; i < 10; i++) cr_expect_eq(px_breaker_admit(&b, t + i, NULL), PX_BREAKER_REJECT);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, t, &s);
  cr_expect_eq(s.probes_in_flight, 3);
  /* A success frees its slot but counts toward closing: still no fourth probe. */
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, NULL), 0);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_REJECT);
  px_breaker_destroy(&b);
}

Test(breaker, probe_success_closes) {
  px_breaker_t b;
  init(&b, conf());
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  px_breaker_transition_t tr;
  cr_expect_eq(report(&b, t + 5, PX_BREAKER_SUCCESS, 1, &tr), 1);
  expect_tr(tr, PX_BREAKER_HALF_OPEN, PX_BREAKER_CLOSED, PX_BREAKER_CAUSE_PROBE_SUCCEEDED);
  cr_expect_eq(px_breaker_admit(&b, t + 6, NULL), PX_BREAKER_ALLOW);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, t + 6, &s);
  cr_expect_eq(s.window_requests, 0, "a closed period starts with an empty window");
  cr_expect_eq(s.consecutive_failures, 0);
  cr_expect_eq(s.probes_in_flight, 0);
  cr_expect_eq(s.reopen_at_ms, 0);
  fails(&b, t + 7, 4);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED, "the failures before opening are forgotten");
  px_breaker_destroy(&b);
}

Test(breaker, closing_forgets_the_window_that_opened_it) {
  /* Open for 1s of a 10s window: the failures that opened it would still be inside. */
  px_breaker_t b;
  px_breaker_conf_t c = rate_only();
  c.open_duration_ms = SEC;
  init(&b, c);
  px_breaker_transition_t tr = fails(&b, 0, 20);
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_FAILURE_RATE);
  uint64_t t = half_open(&b);
  cr_assert_eq(t, SEC);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL);
  fails(&b, t + 1, 1);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED, "1 of 1 is below min_requests");
  px_breaker_destroy(&b);
}

Test(breaker, half_open_closes_after_all_its_probes_succeed) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.half_open_requests = 3;
  init(&b, c);
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  px_breaker_admit(&b, t, NULL);
  px_breaker_admit(&b, t, NULL);
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, NULL), 0);
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, NULL), 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_HALF_OPEN);
  px_breaker_transition_t tr;
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, &tr), 1);
  expect_tr(tr, PX_BREAKER_HALF_OPEN, PX_BREAKER_CLOSED, PX_BREAKER_CAUSE_PROBE_SUCCEEDED);
  px_breaker_destroy(&b);
}

Test(breaker, probe_failure_reopens_for_longer) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.half_open_requests = 2;
  init(&b, c);
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_ALLOW_PROBE);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL); /* one good probe does not outweigh a bad one */
  px_breaker_transition_t tr;
  cr_expect_eq(report(&b, t + 10, PX_BREAKER_FAILURE, 1, &tr), 1);
  expect_tr(tr, PX_BREAKER_HALF_OPEN, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_PROBE_FAILED);
  cr_expect_eq(tr.opens, 2);
  cr_expect_eq(tr.open_ms, 60 * SEC);
  cr_expect_eq(px_breaker_admit(&b, t + 10 + 60 * SEC - 1, NULL), PX_BREAKER_REJECT);
  cr_expect_eq(px_breaker_admit(&b, t + 10 + 60 * SEC, NULL), PX_BREAKER_ALLOW_PROBE);
  cr_expect_eq(px_breaker_admit(&b, t + 10 + 60 * SEC, NULL), PX_BREAKER_ALLOW_PROBE,
               "a new half-open period starts with its successes at zero");
  px_breaker_destroy(&b);
}

Test(breaker, open_duration_grows_with_each_reopen_up_to_the_cap) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.max_open_duration_ms = 100 * SEC;
  init(&b, c);
  px_breaker_transition_t tr = open_it(&b, 0);
  cr_expect_eq(tr.open_ms, 30 * SEC);
  uint64_t want[] = {60 * SEC, 90 * SEC, 100 * SEC, 100 * SEC, 100 * SEC};
  for (size_t i = 0; i < PX_ARRAY_SIZE(want); i++) {
    uint64_t t = half_open(&b);
    report(&b, t, PX_BREAKER_FAILURE, 1, &tr);
    cr_expect_eq(tr.opens, (int)i + 2);
    cr_expect_eq(tr.open_ms, want[i], "open number %zu: %llu ms", i + 2, (unsigned long long)tr.open_ms);
    px_breaker_snapshot_t s;
    px_breaker_snapshot(&b, t, &s);
    cr_expect_eq(s.reopen_at_ms, t + want[i]);
  }
  px_breaker_destroy(&b);
}

Test(breaker, open_duration_saturates_instead_of_overflowing) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.open_duration_ms = 24ull * 3600 * SEC;
  c.max_open_duration_ms = 24ull * 3600 * SEC;
  init(&b, c);
  for (int i = 0; i < 50; i++) {
    px_breaker_transition_t tr;
    if (i == 0) {
      tr = open_it(&b, 0);
    } else {
      uint64_t t = half_open(&b);
      report(&b, t, PX_BREAKER_FAILURE, 1, &tr);
    }
    cr_assert_eq(tr.open_ms, c.max_open_duration_ms);
  }
  px_breaker_destroy(&b);
}

Test(breaker, closing_keeps_opens_in_a_row_until_closed_for_max_open_duration) {
  /* Flapping: open, probe passes, fails again soon: the second open is longer. */
  px_breaker_t b;
  init(&b, conf());
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL);
  px_breaker_transition_t tr = fails(&b, t + 300 * SEC - 1, 5);
  cr_expect_eq(tr.opens, 2);
  cr_expect_eq(tr.open_ms, 60 * SEC);
  px_breaker_destroy(&b);

  /* Closed for max_open_duration: the past no longer counts. */
  init(&b, conf());
  open_it(&b, 0);
  t = half_open(&b);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, t + 300 * SEC - 1, &s);
  cr_expect_eq(s.opens, 1);
  px_breaker_snapshot(&b, t + 300 * SEC, &s);
  cr_expect_eq(s.opens, 0, "the snapshot applies the rule too");
  tr = fails(&b, t + 300 * SEC, 5);
  cr_expect_eq(tr.opens, 1);
  cr_expect_eq(tr.open_ms, 30 * SEC);
  px_breaker_destroy(&b);
}

Test(breaker, a_released_probe_slot_lets_another_probe_in) {
  px_breaker_t b;
  init(&b, conf());
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_REJECT);
  px_breaker_release_probe(&b); /* the client went away before the probe's answer */
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_HALF_OPEN, "a release decides nothing");
  cr_expect_eq(px_breaker_admit(&b, t + 1, NULL), PX_BREAKER_ALLOW_PROBE);
  cr_expect_eq(px_breaker_admit(&b, t + 1, NULL), PX_BREAKER_REJECT);
  px_breaker_release_probe(&b);
  px_breaker_release_probe(&b); /* one too many does no harm */
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, t + 1, &s);
  cr_expect_eq(s.probes_in_flight, 0);
  cr_expect_eq(px_breaker_admit(&b, t + 2, NULL), PX_BREAKER_ALLOW_PROBE);
  cr_expect_eq(px_breaker_admit(&b, t + 2, NULL), PX_BREAKER_REJECT);
  px_breaker_destroy(&b);
}

Test(breaker, late_outcomes_do_not_move_an_open_breaker) {
  px_breaker_t b;
  init(&b, conf());
  /* Ten tries admitted while closed; five fail and open it; the rest come back after. */
  for (int i = 0; i < 10; i++) cr_assert_eq(px_breaker_admit(&b, 0, NULL), PX_BREAKER_ALLOW);
  open_it(&b, 0);
  px_breaker_transition_t tr;
  cr_expect_eq(report(&b, 1, PX_BREAKER_SUCCESS, 0, &tr), 0);
  cr_expect_eq(report(&b, 2, PX_BREAKER_FAILURE, 0, &tr), 0);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 3, &s);
  cr_expect_eq(s.state, PX_BREAKER_OPEN);
  cr_expect_eq(s.reopen_at_ms, 30 * SEC, "a late failure does not extend the open time");
  /* Half-open: only probes judge. */
  uint64_t t = half_open(&b);
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 0, &tr), 0);
  cr_expect_eq(report(&b, t, PX_BREAKER_FAILURE, 0, &tr), 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_HALF_OPEN);
  px_breaker_snapshot(&b, t, &s);
  cr_expect_eq(s.probes_in_flight, 1, "an ordinary report gives back no probe slot");
  px_breaker_destroy(&b);
}

Test(breaker, a_probe_outliving_its_period_keeps_its_slot) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.half_open_requests = 2;
  init(&b, c);
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_ALLOW_PROBE); /* slow */
  report(&b, t, PX_BREAKER_FAILURE, 1, NULL);                          /* the other fails: open */
  t = half_open(&b); /* the slow one is still out: it holds one of the two slots */
  cr_expect_eq(px_breaker_admit(&b, t, NULL), PX_BREAKER_REJECT);
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, NULL), 0); /* it answers now, for this period */
  px_breaker_transition_t tr;
  cr_expect_eq(report(&b, t, PX_BREAKER_SUCCESS, 1, &tr), 1);
  expect_tr(tr, PX_BREAKER_HALF_OPEN, PX_BREAKER_CLOSED, PX_BREAKER_CAUSE_PROBE_SUCCEEDED);
  px_breaker_destroy(&b);

  /* While open, a stale probe's report frees its slot and decides nothing. */
  init(&b, c);
  open_it(&b, 0);
  t = half_open(&b);
  px_breaker_admit(&b, t, NULL);
  report(&b, t, PX_BREAKER_FAILURE, 1, NULL);
  cr_expect_eq(report(&b, t + 1, PX_BREAKER_SUCCESS, 1, &tr), 0);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, t + 1, &s);
  cr_expect_eq(s.probes_in_flight, 0);
  px_breaker_destroy(&b);
}

/* ---- max_open_percent ---------------------------------------------------------------- */

Test(breaker, max_open_percent_one_endpoint_may_always_open) {
  /* 1 endpoint, even at 0% or 50%: the only one may open. */
  cr_expect(px_breaker_cluster_may_open(0, 1, 50));
  cr_expect(px_breaker_cluster_may_open(0, 1, 0));
  cr_expect_not(px_breaker_cluster_may_open(1, 1, 50));
  cr_expect_not(px_breaker_cluster_may_open(1, 1, 99));
  cr_expect(px_breaker_cluster_may_open(0, 1, 100));
  /* 2 endpoints at 50%: one of two. */
  cr_expect(px_breaker_cluster_may_open(0, 2, 50));
  cr_expect_not(px_breaker_cluster_may_open(1, 2, 50));
  cr_expect(px_breaker_cluster_may_open(1, 2, 100));
  /* 3 endpoints at 50%: one (two would be 67%); at 67%, two. */
  cr_expect(px_breaker_cluster_may_open(0, 3, 50));
  cr_expect_not(px_breaker_cluster_may_open(1, 3, 50));
  cr_expect(px_breaker_cluster_may_open(1, 3, 67));
  cr_expect_not(px_breaker_cluster_may_open(1, 3, 66));
  cr_expect_not(px_breaker_cluster_may_open(2, 3, 67));
  cr_expect(px_breaker_cluster_may_open(2, 3, 100));
  cr_expect_not(px_breaker_cluster_may_open(3, 3, 100));
  /* 10 endpoints at 50%: five; at 0%, still one; at 100%, all ten. */
  for (int open = 0; open < 5; open++) cr_expect(px_breaker_cluster_may_open(open, 10, 50), "%d open", open);
  cr_expect_not(px_breaker_cluster_may_open(5, 10, 50));
  cr_expect(px_breaker_cluster_may_open(0, 10, 0));
  cr_expect_not(px_breaker_cluster_may_open(1, 10, 0));
  cr_expect_not(px_breaker_cluster_may_open(1, 10, 10), "two of ten is 20%%");
  cr_expect(px_breaker_cluster_may_open(9, 10, 100));
  cr_expect_not(px_breaker_cluster_may_open(10, 10, 100));
}

static int never(void *ctx) {
  (*(int *)ctx)++;
  return 0;
}

Test(breaker, an_open_the_cluster_refuses_stays_closed_and_is_counted) {
  px_breaker_t b;
  init(&b, conf());
  int asked = 0;
  px_breaker_transition_t tr;
  for (int i = 0; i < 4; i++) px_breaker_report(&b, 0, PX_BREAKER_FAILURE, 0, never, &asked, &tr);
  cr_expect_eq(asked, 0, "asked only when it would open");
  cr_expect_eq(px_breaker_report(&b, 0, PX_BREAKER_FAILURE, 0, never, &asked, &tr), 0);
  cr_expect_eq(asked, 1);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(tr.suppressed, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  cr_expect_eq(px_breaker_admit(&b, 0, NULL), PX_BREAKER_ALLOW);
  px_breaker_report(&b, 0, PX_BREAKER_FAILURE, 0, never, &asked, &tr); /* it asks again */
  cr_expect_eq(asked, 2);
  cr_expect_eq(tr.suppressed, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  px_breaker_report(&b, 0, PX_BREAKER_FAILURE, 0, NULL, NULL, &tr); /* and opens once allowed */
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  cr_expect_eq(tr.suppressed, PX_BREAKER_CAUSE_NONE);
  cr_expect_eq(tr.opens, 1);
  px_breaker_destroy(&b);

  init(&b, rate_only());
  for (int i = 0; i < 20; i++) px_breaker_report(&b, 0, PX_BREAKER_FAILURE, 0, never, &asked, &tr);
  cr_expect_eq(tr.suppressed, PX_BREAKER_CAUSE_FAILURE_RATE);
  px_breaker_destroy(&b);
}

/* A cluster as the I/O layer would keep it: the count of endpoints not closed. */
typedef struct {
  atomic_int open;
  int size, percent;
} cluster_t;

static int reserve(void *ctx) {
  cluster_t *c = ctx;
  return px_breaker_cluster_reserve(&c->open, c->size, c->percent);
}

Test(breaker, max_open_percent_across_a_cluster_of_three) {
  cluster_t cl = {.size = 3, .percent = 50};
  px_breaker_t ep[3];
  for (int i = 0; i < 3; i++) init(&ep[i], conf());
  px_breaker_transition_t tr;
  for (int k = 0; k < 5; k++) px_breaker_report(&ep[0], 0, PX_BREAKER_FAILURE, 0, reserve, &cl, &tr);
  cr_expect_eq(px_breaker_state(&ep[0]), PX_BREAKER_OPEN);
  for (int k = 0; k < 5; k++) px_breaker_report(&ep[1], 0, PX_BREAKER_FAILURE, 0, reserve, &cl, &tr);
  cr_expect_eq(px_breaker_state(&ep[1]), PX_BREAKER_CLOSED, "a second would be 67%%");
  cr_expect_eq(tr.suppressed, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  cr_expect_eq(atomic_load(&cl.open), 1);
  /* Half-open still counts as open: its probe may fail and re-open it. */
  uint64_t t = half_open(&ep[0]);
  px_breaker_report(&ep[1], t, PX_BREAKER_FAILURE, 0, reserve, &cl, &tr);
  cr_expect_eq(px_breaker_state(&ep[1]), PX_BREAKER_CLOSED);
  /* ep[0] closes: the caller gives its slot back, and ep[1] may open. */
  px_breaker_report(&ep[0], t, PX_BREAKER_SUCCESS, 1, reserve, &cl, &tr);
  cr_assert_eq(tr.to, PX_BREAKER_CLOSED);
  atomic_fetch_sub(&cl.open, 1);
  px_breaker_report(&ep[1], t, PX_BREAKER_FAILURE, 0, reserve, &cl, &tr);
  cr_expect_eq(px_breaker_state(&ep[1]), PX_BREAKER_OPEN);
  cr_expect_eq(atomic_load(&cl.open), 1);
  for (int i = 0; i < 3; i++) px_breaker_destroy(&ep[i]);
}

/* ---- threads ------------------------------------------------------------------------- */

#define RACERS 8

typedef struct {
  px_breaker_t *b;
  cluster_t *cl;
  pthread_barrier_t *go;
  uint64_t now;
  int probes, transitions, reserved;
} racer_t;

static void *admit_race(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->go);
  for (int i = 0; i < 1000; i++) {
    px_breaker_transition_t tr;
    if (px_breaker_admit(r->b, r->now, &tr) == PX_BREAKER_ALLOW_PROBE) r->probes++;
    r->transitions += tr.changed;
  }
  return NULL;
}

static void run(void *(*fn)(void *), racer_t *proto, racer_t *r) {
  pthread_barrier_t go;
  pthread_barrier_init(&go, NULL, RACERS);
  pthread_t t[RACERS];
  for (int i = 0; i < RACERS; i++) {
    r[i] = *proto;
    r[i].go = &go;
    cr_assert_eq(pthread_create(&t[i], NULL, fn, &r[i]), 0);
  }
  for (int i = 0; i < RACERS; i++) pthread_join(t[i], NULL);
  pthread_barrier_destroy(&go);
}

Test(breaker, eight_threads_get_exactly_half_open_requests_probes) {
  for (int round = 0; round < 200; round++) {
    px_breaker_t b;
    px_breaker_conf_t c = conf();
    c.half_open_requests = 3;
    init(&b, c);
    open_it(&b, 0);
    /* Open and due: the threads race for the turn to half-open and for the slots. */
    racer_t proto = {.b = &b, .now = 30 * SEC}, r[RACERS];
    run(admit_race, &proto, r);
    int probes = 0, transitions = 0;
    for (int i = 0; i < RACERS; i++) {
      probes += r[i].probes;
      transitions += r[i].transitions;
    }
    cr_assert_eq(probes, 3, "round %d: %d probes", round, probes);
    cr_assert_eq(transitions, 1, "round %d: one thread turns it half-open", round);
    cr_assert_eq(px_breaker_state(&b), PX_BREAKER_HALF_OPEN);
    px_breaker_destroy(&b);
  }
}

/* Probes taken and given back as fast as the threads can: never more than
 * half_open_requests held at once. */
static atomic_int held, most_held;

static void *probe_race(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->go);
  for (int i = 0; i < 20000; i++) {
    if (px_breaker_admit(r->b, r->now, NULL) != PX_BREAKER_ALLOW_PROBE) continue;
    r->probes++;
    int now_held = atomic_fetch_add(&held, 1) + 1;
    int most = atomic_load(&most_held);
    while (now_held > most && !atomic_compare_exchange_weak(&most_held, &most, now_held)) {
    }
    atomic_fetch_sub(&held, 1);
    px_breaker_release_probe(r->b);
  }
  return NULL;
}

Test(breaker, probes_in_flight_never_exceed_half_open_requests) {
  px_breaker_t b;
  px_breaker_conf_t c = conf();
  c.half_open_requests = 2;
  init(&b, c);
  open_it(&b, 0);
  half_open(&b);
  px_breaker_release_probe(&b);
  racer_t proto = {.b = &b, .now = 30 * SEC}, r[RACERS];
  run(probe_race, &proto, r);
  int probes = 0;
  for (int i = 0; i < RACERS; i++) probes += r[i].probes;
  cr_expect_gt(probes, 0);
  cr_expect_leq(atomic_load(&most_held), 2);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 30 * SEC, &s);
  cr_expect_eq(s.probes_in_flight, 0, "every slot came back");
  px_breaker_destroy(&b);
}

static void *report_race(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->go);
  for (int i = 0; i < 20000; i++) px_breaker_report(r->b, r->now + (uint64_t)i, i % 2, 0, NULL, NULL, NULL);
  return NULL;
}

Test(breaker, counts_are_exact_across_threads) {
  px_breaker_t b;
  px_breaker_conf_t c = rate_only();
  c.rate_threshold = 1; /* never exceeded: just count */
  c.rate_window_ms = 3600 * SEC;
  init(&b, c);
  racer_t proto = {.b = &b, .now = 0}, r[RACERS];
  run(report_race, &proto, r);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 20 * SEC, &s);
  cr_expect_eq(s.window_requests, RACERS * 20000);
  cr_expect_eq(s.window_failures, RACERS * 10000);
  px_breaker_destroy(&b);
}

static void *reserve_race(void *arg) {
  racer_t *r = arg;
  pthread_barrier_wait(r->go);
  for (int i = 0; i < 100; i++) r->reserved += reserve(r->cl);
  return NULL;
}

Test(breaker, cluster_slots_are_exact_across_threads) {
  cluster_t cl = {.size = 10, .percent = 50};
  racer_t proto = {.cl = &cl}, r[RACERS];
  run(reserve_race, &proto, r);
  int reserved = 0;
  for (int i = 0; i < RACERS; i++) reserved += r[i].reserved;
  cr_expect_eq(reserved, 5);
  cr_expect_eq(atomic_load(&cl.open), 5);
}

/* ---- configuration, names ------------------------------------------------------------ */

Test(breaker, without_a_circuit_breaker_block_everything_goes) {
  px_breaker_t b;
  cr_assert_eq(px_breaker_init(&b, NULL), 0);
  px_breaker_transition_t tr = fails(&b, 0, 1000);
  cr_expect_eq(tr.changed, 0);
  cr_expect_eq(px_breaker_admit(&b, 0, NULL), PX_BREAKER_ALLOW);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 0, &s);
  cr_expect_eq(s.enabled, 0);
  cr_expect_eq(s.window_requests, 0);
  /* A reload adds the block: it starts judging. */
  px_breaker_conf_t c = conf();
  px_breaker_configure(&b, &c, 10, &tr);
  cr_expect_eq(tr.changed, 0);
  fails(&b, 10, 5);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_OPEN);
  px_breaker_destroy(&b);
}

Test(breaker, a_reload_that_removes_the_breaker_closes_it) {
  px_breaker_t b;
  init(&b, conf());
  open_it(&b, 0);
  px_breaker_transition_t tr;
  px_breaker_configure(&b, NULL, 5, &tr);
  expect_tr(tr, PX_BREAKER_OPEN, PX_BREAKER_CLOSED, PX_BREAKER_CAUSE_DISABLED);
  cr_expect_eq(px_breaker_admit(&b, 6, NULL), PX_BREAKER_ALLOW);
  px_breaker_destroy(&b);
}

Test(breaker, a_reload_keeps_the_state_and_applies_new_numbers) {
  px_breaker_t b;
  init(&b, conf());
  fails(&b, 0, 3);
  px_breaker_conf_t c = conf();
  c.consecutive_failures = 4;
  px_breaker_transition_t tr;
  px_breaker_configure(&b, &c, 0, &tr);
  cr_expect_eq(tr.changed, 0);
  tr = fails(&b, 0, 1);
  expect_tr(tr, PX_BREAKER_CLOSED, PX_BREAKER_OPEN, PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES);
  px_breaker_destroy(&b);

  /* Half-open with 2 of 3 probes passed; a reload asks for 2: nothing else would close it. */
  c = conf();
  c.half_open_requests = 3;
  init(&b, c);
  open_it(&b, 0);
  uint64_t t = half_open(&b);
  px_breaker_admit(&b, t, NULL);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL);
  report(&b, t, PX_BREAKER_SUCCESS, 1, NULL);
  c.half_open_requests = 2;
  px_breaker_configure(&b, &c, t, &tr);
  expect_tr(tr, PX_BREAKER_HALF_OPEN, PX_BREAKER_CLOSED, PX_BREAKER_CAUSE_PROBE_SUCCEEDED);
  px_breaker_destroy(&b);
}

Test(breaker, a_reload_with_another_window_starts_it_empty) {
  px_breaker_t b;
  px_breaker_conf_t c = rate_only();
  c.rate_window_ms = SEC; /* buckets of 100ms */
  init(&b, c);
  fails(&b, 5 * SEC, 19);
  c.rate_window_ms = 10 * SEC; /* buckets of 1s: the old ones would mean other times */
  px_breaker_configure(&b, &c, 5 * SEC, NULL);
  fails(&b, 5 * SEC, 1);
  cr_expect_eq(px_breaker_state(&b), PX_BREAKER_CLOSED);
  px_breaker_snapshot_t s;
  px_breaker_snapshot(&b, 5 * SEC, &s);
  cr_expect_eq(s.window_requests, 1);
  px_breaker_snapshot(&b, 15 * SEC, &s); /* and it slides with the new buckets */
  cr_expect_eq(s.window_requests, 0);
  px_breaker_destroy(&b);
}

Test(breaker, names) {
  cr_expect_str_eq(px_breaker_state_name(PX_BREAKER_CLOSED), "closed");
  cr_expect_str_eq(px_breaker_state_name(PX_BREAKER_OPEN), "open");
  cr_expect_str_eq(px_breaker_state_name(PX_BREAKER_HALF_OPEN), "half_open");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_CONSECUTIVE_FAILURES), "consecutive_failures");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_FAILURE_RATE), "failure_rate");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_OPEN_ELAPSED), "open_elapsed");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_PROBE_FAILED), "probe_failed");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_PROBE_SUCCEEDED), "probe_succeeded");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE_DISABLED), "disabled");
  cr_expect_str_eq(px_breaker_cause_name(PX_BREAKER_CAUSE__N), "unknown");
}
