/* Fault injection decisions (SPEC §5, route `fault`), pure: which of abort, delay and
 * drop_response a request gets, each by its own percentage and its own draw, as
 * Envoy's fault filter does. A request may be both delayed and aborted (the delay
 * first); an aborted request is never dropped, since it never reaches the upstream. */
#ifndef PX_FAULT_H
#define PX_FAULT_H

#include "config.h"

typedef struct {
  int abort; /* answer with fault.abort.status, the upstream not called */
  int delay; /* wait fault.delay.duration before going on */
  int drop;  /* forward, let the upstream finish, reset the client without an answer */
} px_fault_t;

/* The faults for one request, from three independent uniform draws in [0, 1). */
px_fault_t px_fault_pick(const px_fault_conf_t *f, double r_abort, double r_delay, double r_drop);

#endif
