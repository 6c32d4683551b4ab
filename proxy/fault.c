#include "fault.h"

/* `percent` of requests: a draw below percent / 100. 0 never, 100 always. */
static int chosen(double percent, double r) { return r * 100.0 < percent; }

px_fault_t px_fault_pick(const px_fault_conf_t *f, double r_abort, double r_delay, double r_drop) {
  px_fault_t out = {0};
  out.abort = f->abort_status > 0 && chosen(f->abort_percent, r_abort);
  out.delay = f->delay_ms > 0 && chosen(f->delay_percent, r_delay);
  out.drop = !out.abort && chosen(f->drop_percent, r_drop);
  return out;
}
