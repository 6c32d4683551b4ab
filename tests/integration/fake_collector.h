/* A fake Zipkin collector for tracing tests: a thread on a free loopback port that
 * takes POSTs of span batches and keeps every span it was sent, parsed, so a test can
 * check ids, parents and tags. It can also fail on purpose: answer 500, or take the
 * request and never answer. */
#ifndef FAKE_COLLECTOR_H
#define FAKE_COLLECTOR_H

#include "json.h"

typedef enum { FC_OK, FC_FAIL, FC_HANG } fc_mode_t;

typedef struct fc_s fc_t;

fc_t *fc_start(fc_mode_t mode);
/* The same on a given loopback port (0: any); NULL when it cannot listen there. */
fc_t *fc_start_at(fc_mode_t mode, int port);
int fc_port(const fc_t *c);
void fc_set_mode(fc_t *c, fc_mode_t mode);
/* POSTs received (whole), and spans in those taken (FC_OK). */
int fc_posts(fc_t *c);
int fc_nspans(fc_t *c);
/* Waits up to timeout_ms for at least n spans; how many there are. */
int fc_wait_spans(fc_t *c, int n, int timeout_ms);
/* Span i (a JSON object, valid until fc_stop), in the order received. */
const px_json_t *fc_span(fc_t *c, int i);
/* A string field of span i ("id", "parentId", "kind", "traceId", "name"), or of its
 * tags when `tag` is set; NULL when absent. Valid until fc_stop. */
const char *fc_field(fc_t *c, int i, const char *name);
const char *fc_tag(fc_t *c, int i, const char *tag);
void fc_stop(fc_t *c);

#endif
