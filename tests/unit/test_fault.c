/* Fault injection decisions (proxy/fault.h): each fault by its own percentage and its
 * own draw; 0% never, 100% always; an aborted request is never dropped (it never
 * reaches the upstream), while a delay goes with either. */
#include <criterion/criterion.h>

#include "fault.h"

static px_fault_conf_t conf(int status, double ap, uint64_t ms, double dp, double drop) {
  return (px_fault_conf_t){
      .abort_status = status, .abort_percent = ap, .delay_ms = ms, .delay_percent = dp, .drop_percent = drop};
}

Test(fault, nothing_configured_is_nothing_injected) {
  px_fault_conf_t f = conf(0, 0, 0, 0, 0);
  for (double r = 0; r < 1; r += 0.01) {
    px_fault_t x = px_fault_pick(&f, r, r, r);
    cr_expect(!x.abort && !x.delay && !x.drop);
  }
}

Test(fault, zero_never_and_hundred_always) {
  px_fault_conf_t f = conf(503, 100, 10, 100, 0);
  for (double r = 0; r < 1; r += 0.01) {
    px_fault_t x = px_fault_pick(&f, r, r, r);
    cr_expect(x.abort && x.delay && !x.drop, "at %f", r);
  }
  f = conf(503, 0, 10, 0, 100);
  for (double r = 0; r < 1; r += 0.01) {
    px_fault_t x = px_fault_pick(&f, r, r, r);
    cr_expect(!x.abort && !x.delay && x.drop, "at %f", r);
  }
}

Test(fault, a_percentage_is_that_share_of_the_draws) {
  px_fault_conf_t f = conf(503, 25, 10, 5, 20);
  int abort = 0, delay = 0, drop = 0, n = 10000;
  for (int i = 0; i < n; i++) {
    double r = (i + 0.5) / n;
    abort += px_fault_pick(&f, r, 0.99, 0.99).abort;
    delay += px_fault_pick(&f, 0.99, r, 0.99).delay;
    drop += px_fault_pick(&f, 0.99, 0.99, r).drop;
  }
  cr_expect_eq(abort, 2500);
  cr_expect_eq(delay, 500);
  cr_expect_eq(drop, 2000);
}

Test(fault, the_draws_are_independent) {
  px_fault_conf_t f = conf(503, 50, 10, 50, 50);
  px_fault_t x = px_fault_pick(&f, 0.9, 0.1, 0.1);
  cr_expect(!x.abort && x.delay && x.drop);
  x = px_fault_pick(&f, 0.1, 0.9, 0.9);
  cr_expect(x.abort && !x.delay && !x.drop);
}

Test(fault, an_aborted_request_is_not_dropped) {
  px_fault_conf_t f = conf(503, 100, 0, 0, 100);
  px_fault_t x = px_fault_pick(&f, 0.5, 0.5, 0.5);
  cr_expect(x.abort);
  cr_expect_not(x.drop);
}
