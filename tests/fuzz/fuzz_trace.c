/* Fuzzes the trace context (proxy/trace.h). The input is a control byte, then lines
 * ('\n'-separated), each a field tag and its value:
 *
 *   control: bits 0-2 the propagation read, bits 3-4 the sample rate (0, 1, 0.5, 0.5),
 *            bits 5-7 the random draw (n / 8)
 *   p traceparent, s tracestate (more than the 2 and 8 kept are counted, not stored),
 *   b b3, t x-b3-traceid, i x-b3-spanid, r x-b3-parentspanid, m x-b3-sampled,
 *   f x-b3-flags; other lines, and lines past the 64th, are ignored.
 *
 * What must hold: a traceparent that parses parses again, the same, once written as
 * version 00; a tracestate that parses is at most 512 characters and 32 members and
 * parses to itself; an extracted context is consistent (ids nonzero unless new, a
 * tracestate only with W3C, only the formats asked for read); px_trace_begin keeps a
 * continued trace's id and decision and always decides; and every set of headers
 * written is well-formed, with lowercase hex ids, and extracts back to the same trace
 * id, decision and tracestate, its parent the try's span. Each value sits in a heap
 * block of its own exact size, so reading past one is caught. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "trace.h"

static int zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

static int lhex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

static unsigned members(const char *ts, size_t n) {
  if (n == 0) return 0;
  unsigned k = 1;
  for (size_t i = 0; i < n; i++) k += ts[i] == ',';
  return k;
}

/* A normalised tracestate: bounded, NUL-terminated at its length, and a fixed point. */
static void check_tracestate(const char *ts, uint16_t len) {
  PX_FUZZ_CHECK(len <= PX_TRACESTATE_MAX && strlen(ts) == len);
  PX_FUZZ_CHECK(members(ts, len) <= PX_TRACESTATE_MEMBERS);
  char *copy = malloc(len ? len : 1), again[PX_TRACESTATE_MAX + 1];
  PX_FUZZ_CHECK(copy != NULL);
  memcpy(copy, ts, len);
  px_str_t v = {copy, len};
  uint16_t alen;
  PX_FUZZ_CHECK(px_trace_parse_tracestate(&v, 1, again, sizeof(again), &alen) == 0);
  PX_FUZZ_CHECK(alen == len && memcmp(again, ts, len) == 0);
  free(copy);
}

static void check_traceparent(px_str_t v) {
  uint8_t tid[16], pid[8], fl;
  if (px_trace_parse_traceparent(v, tid, pid, &fl) != 0) return;
  PX_FUZZ_CHECK(!zero(tid, 16) && !zero(pid, 8));
  char t[33], p[17], f[3], line[56];
  px_trace_hex(tid, 16, t);
  px_trace_hex(pid, 8, p);
  px_trace_hex(&fl, 1, f);
  memcpy(line, "00-", 3);
  memcpy(line + 3, t, 32);
  line[35] = '-';
  memcpy(line + 36, p, 16);
  line[52] = '-';
  memcpy(line + 53, f, 2);
  uint8_t tid2[16], pid2[8], fl2;
  PX_FUZZ_CHECK(px_trace_parse_traceparent((px_str_t){line, 55}, tid2, pid2, &fl2) == 0);
  PX_FUZZ_CHECK(memcmp(tid, tid2, 16) == 0 && memcmp(pid, pid2, 8) == 0 && fl == fl2);
}

/* Checks one written line's value and files it into `in`, as the caller would. */
static void read_line(px_str_t name, px_str_t v, px_trace_in_t *in) {
  for (size_t i = 0; i < v.n; i++) PX_FUZZ_CHECK(v.p[i] >= 0x20 && v.p[i] <= 0x7e);
  if (px_str_eq(name, PX_STR("traceparent"))) {
    PX_FUZZ_CHECK(v.n == 55 && memcmp(v.p, "00-", 3) == 0 && lhex(v.p + 3, 32) && v.p[35] == '-');
    PX_FUZZ_CHECK(lhex(v.p + 36, 16) && v.p[52] == '-' && v.p[53] == '0' &&
                  (v.p[54] == '0' || v.p[54] == '1'));
    PX_FUZZ_CHECK(in->n_traceparent == 0);
    in->traceparent[in->n_traceparent++] = v;
  } else if (px_str_eq(name, PX_STR("tracestate"))) {
    PX_FUZZ_CHECK(v.n > 0 && in->n_tracestate == 0);
    in->tracestate[in->n_tracestate++] = v;
  } else if (px_str_eq(name, PX_STR("x-b3-traceid"))) {
    PX_FUZZ_CHECK((v.n == 16 || v.n == 32) && lhex(v.p, v.n) && in->b3_traceid.n == 0);
    in->b3_traceid = v;
  } else if (px_str_eq(name, PX_STR("x-b3-spanid"))) {
    PX_FUZZ_CHECK(v.n == 16 && lhex(v.p, v.n) && in->b3_spanid.n == 0);
    in->b3_spanid = v;
  } else if (px_str_eq(name, PX_STR("x-b3-parentspanid"))) {
    PX_FUZZ_CHECK(v.n == 16 && lhex(v.p, v.n) && in->b3_parentspanid.n == 0);
    in->b3_parentspanid = v;
  } else if (px_str_eq(name, PX_STR("x-b3-sampled"))) {
    PX_FUZZ_CHECK(v.n == 1 && (v.p[0] == '0' || v.p[0] == '1') && in->b3_sampled.n == 0);
    in->b3_sampled = v;
  } else if (px_str_eq(name, PX_STR("x-b3-flags"))) {
    PX_FUZZ_CHECK(px_str_eq(v, PX_STR("1")) && in->b3_flags.n == 0);
    in->b3_flags = v;
  } else {
    PX_FUZZ_CHECK(px_str_eq(name, PX_STR("b3")) && in->b3.n == 0);
    /* trace-span-sampling-server, the trace 16 or 32 digits */
    PX_FUZZ_CHECK(v.n == 16 + 36 || v.n == 32 + 36);
    size_t tn = v.n - 36;
    PX_FUZZ_CHECK(lhex(v.p, tn) && v.p[tn] == '-' && lhex(v.p + tn + 1, 16) && v.p[tn + 17] == '-');
    char s = v.p[tn + 18];
    PX_FUZZ_CHECK((s == '0' || s == '1' || s == 'd') && v.p[tn + 19] == '-' && lhex(v.p + tn + 20, 16));
    in->b3 = v;
  }
}

static px_trace_in_t read_back(const px_buf_t *b) {
  px_trace_in_t in = {0};
  size_t i = 0;
  while (i < b->len) {
    const char *line = b->data + i;
    const char *eol = memchr(line, '\r', b->len - i);
    PX_FUZZ_CHECK(eol != NULL && (size_t)(eol - b->data) + 1 < b->len && eol[1] == '\n');
    PX_FUZZ_CHECK(memchr(line, '\n', (size_t)(eol - line)) == NULL);
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    PX_FUZZ_CHECK(colon != NULL && colon + 1 < eol && colon[1] == ' ');
    read_line((px_str_t){line, (size_t)(colon - line)}, (px_str_t){colon + 2, (size_t)(eol - colon - 2)},
              &in);
    i = (size_t)(eol - b->data) + 2;
  }
  return in;
}

static void check_ctx(const px_trace_ctx_t *c, unsigned prop) {
  PX_FUZZ_CHECK(c->source <= PX_TRACE_B3 && c->sampled <= PX_SAMPLE_DEFER && c->debug <= 1);
  PX_FUZZ_CHECK(c->trace_id_64 <= 1);
  if (c->source == PX_TRACE_NEW)
    PX_FUZZ_CHECK(zero(c->trace_id, 16) && zero(c->parent_id, 8));
  else
    PX_FUZZ_CHECK(!zero(c->trace_id, 16) && !zero(c->parent_id, 8));
  if (c->source == PX_TRACE_W3C) PX_FUZZ_CHECK(prop & PX_PROP_W3C);
  if (c->source != PX_TRACE_W3C) PX_FUZZ_CHECK(c->tracestate_len == 0 && c->tracestate[0] == '\0');
  if (c->source == PX_TRACE_B3 || c->debug || (c->source == PX_TRACE_NEW && c->sampled != PX_SAMPLE_DEFER))
    PX_FUZZ_CHECK(prop & (PX_PROP_B3 | PX_PROP_B3_SINGLE));
  if (c->source == PX_TRACE_W3C) PX_FUZZ_CHECK(c->sampled != PX_SAMPLE_DEFER && !c->debug);
  if (c->trace_id_64) PX_FUZZ_CHECK(c->source == PX_TRACE_B3 && zero(c->trace_id, 8));
  if (c->debug) PX_FUZZ_CHECK(c->sampled == PX_SAMPLE_YES);
  PX_FUZZ_CHECK(zero(c->span_id, 8));
  check_tracestate(c->tracestate, c->tracestate_len);
}

/* Writes a try's headers in `prop` and reads them back with the same formats. */
static void check_write(const px_trace_ctx_t *c, unsigned prop) {
  uint8_t client[8];
  px_trace_new_span_id(client);
  PX_FUZZ_CHECK(!zero(client, 8));
  px_buf_t b = {0};
  px_trace_write_headers(c, client, prop, &b);
  px_trace_in_t in = read_back(&b);
  px_trace_ctx_t d;
  px_trace_extract(&in, prop, &d);
  if (prop == 0) {
    PX_FUZZ_CHECK(b.len == 0 && d.source == PX_TRACE_NEW);
  } else {
    PX_FUZZ_CHECK(d.source != PX_TRACE_NEW);
    PX_FUZZ_CHECK(memcmp(d.trace_id, c->trace_id, 16) == 0);
    PX_FUZZ_CHECK(memcmp(d.parent_id, client, 8) == 0);
    PX_FUZZ_CHECK(d.sampled == c->sampled);
    if (prop & PX_PROP_W3C) {
      PX_FUZZ_CHECK(d.tracestate_len == c->tracestate_len && strcmp(d.tracestate, c->tracestate) == 0);
    } else {
      PX_FUZZ_CHECK(d.debug == c->debug && d.trace_id_64 == c->trace_id_64);
    }
  }
  px_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > 65536) return 0;
  unsigned prop = data[0] & 7;
  static const double rates[] = {0.0, 1.0, 0.5, 0.5};
  double rate = rates[(data[0] >> 3) & 3], r01 = (data[0] >> 5) / 8.0;

  px_trace_in_t in = {0};
  char *owned[64];
  size_t nowned = 0;
  for (size_t i = 1; i < size;) {
    const uint8_t *nl = memchr(data + i, '\n', size - i);
    size_t end = nl ? (size_t)(nl - data) : size;
    if (end > i && nowned < PX_ARRAY_SIZE(owned)) {
      size_t n = end - i - 1;
      char *p = malloc(n ? n : 1);
      PX_FUZZ_CHECK(p != NULL);
      memcpy(p, data + i + 1, n);
      owned[nowned++] = p;
      px_str_t v = {p, n};
      switch (data[i]) {
      case 'p':
        if (in.n_traceparent < PX_ARRAY_SIZE(in.traceparent)) in.traceparent[in.n_traceparent] = v;
        in.n_traceparent++;
        break;
      case 's':
        if (in.n_tracestate < PX_ARRAY_SIZE(in.tracestate)) in.tracestate[in.n_tracestate] = v;
        in.n_tracestate++;
        break;
      case 'b': in.b3 = v; break;
      case 't': in.b3_traceid = v; break;
      case 'i': in.b3_spanid = v; break;
      case 'r': in.b3_parentspanid = v; break;
      case 'm': in.b3_sampled = v; break;
      case 'f': in.b3_flags = v; break;
      default: break;
      }
    }
    i = end + 1;
  }

  /* The parsers on their own. */
  for (unsigned i = 0; i < in.n_traceparent && i < PX_ARRAY_SIZE(in.traceparent); i++)
    check_traceparent(in.traceparent[i]);
  unsigned nts =
      in.n_tracestate < PX_ARRAY_SIZE(in.tracestate) ? in.n_tracestate : PX_ARRAY_SIZE(in.tracestate);
  char ts[PX_TRACESTATE_MAX + 1], small[65];
  uint16_t len, slen;
  int rc = px_trace_parse_tracestate(in.tracestate, nts, ts, sizeof(ts), &len);
  if (rc == 0)
    check_tracestate(ts, len);
  else
    PX_FUZZ_CHECK(rc == PX_EPARSE && len == 0 && ts[0] == '\0');
  /* A smaller buffer is a smaller limit, and never a different verdict. */
  size_t cap = 1 + (size % sizeof(small));
  int src = px_trace_parse_tracestate(in.tracestate, nts, small, cap, &slen);
  PX_FUZZ_CHECK(src == rc && slen < cap && strlen(small) == slen);
  if (src == 0) check_tracestate(small, slen);

  /* Extract, begin, and every set of formats written and read back. */
  px_trace_ctx_t c;
  memset(&c, 0x5a, sizeof(c));
  px_trace_extract(&in, prop, &c);
  check_ctx(&c, prop);
  px_trace_ctx_t before = c;
  px_trace_begin(&c, rate, r01);
  PX_FUZZ_CHECK(c.sampled == PX_SAMPLE_YES || c.sampled == PX_SAMPLE_NO);
  PX_FUZZ_CHECK(!zero(c.trace_id, 16) && !zero(c.span_id, 8));
  if (before.source != PX_TRACE_NEW) {
    PX_FUZZ_CHECK(memcmp(c.trace_id, before.trace_id, 16) == 0 &&
                  memcmp(c.parent_id, before.parent_id, 8) == 0);
    PX_FUZZ_CHECK(strcmp(c.tracestate, before.tracestate) == 0);
  }
  if (before.sampled != PX_SAMPLE_DEFER)
    PX_FUZZ_CHECK(c.sampled == before.sampled);
  else
    PX_FUZZ_CHECK(c.sampled == (r01 < rate ? PX_SAMPLE_YES : PX_SAMPLE_NO));
  for (unsigned p = 0; p <= (PX_PROP_W3C | PX_PROP_B3 | PX_PROP_B3_SINGLE); p++) check_write(&c, p);

  for (size_t i = 0; i < nowned; i++) free(owned[i]);
  return 0;
}
