/* Trace context (proxy/trace.h). What a user relies on: a traceparent is taken exactly
 * as the W3C Recommendation writes it (lowercase hex, version 00 exactly 55 characters, a
 * future version read by its first four fields, no all-zero ids) and anything else
 * ignored, tracestate with it; tracestate is checked member by member, normalised, cut
 * to 32 members and 512 characters the way §3.3.1.5 says, and dropped whole when
 * malformed; B3 comes in both forms, 64- and 128-bit, with sampling-only and debug; W3C
 * wins over B3 single over B3 multi, and only the configured formats are read; and what
 * is written on a try parses back to the same trace, sampling and tracestate, with the
 * try's CLIENT span as the parent. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"
#define TP "00-" TID "-" PID "-01"
#define TID64 "463ac35c9f6413ad"
#define SPAN "a2fb4a1d1a96d312"
#define GRAND "0020000000000001"

static px_str_t S(const char *s) { return (px_str_t){s, strlen(s)}; }

/* A copy of `s` in a heap block of exactly its length (no NUL), so ASan sees any read
 * past a value's end. */
static px_str_t exact(const char *s) {
  size_t n = strlen(s);
  char *p = malloc(n ? n : 1);
  memcpy(p, s, n);
  return (px_str_t){p, n};
}
static void unexact(px_str_t s) { free((void *)s.p); }

static int tp(const char *s, uint8_t tid[16], uint8_t pid[8], uint8_t *flags) {
  px_str_t v = exact(s);
  int rc = px_trace_parse_traceparent(v, tid, pid, flags);
  unexact(v);
  return rc;
}

static int tp_ok(const char *s) {
  uint8_t tid[16], pid[8], fl;
  return tp(s, tid, pid, &fl) == 0;
}

static char hexbuf[4][33];
static const char *hex(const uint8_t *id, size_t n) {
  static int next;
  char *b = hexbuf[next++ % 4];
  px_trace_hex(id, n, b);
  return b;
}

/* Parses tracestate fields into a heap buffer of exactly PX_TRACESTATE_MAX + 1 bytes. */
static char ts_out[PX_TRACESTATE_MAX + 1];
static int ts_parse(const char *const *vals, unsigned n) {
  px_str_t v[16];
  for (unsigned i = 0; i < n; i++) v[i] = exact(vals[i]);
  char *out = malloc(PX_TRACESTATE_MAX + 1);
  uint16_t len = 999;
  int rc = px_trace_parse_tracestate(v, n, out, PX_TRACESTATE_MAX + 1, &len);
  cr_assert_eq(strlen(out), len);
  memcpy(ts_out, out, (size_t)len + 1);
  free(out);
  for (unsigned i = 0; i < n; i++) unexact(v[i]);
  return rc;
}
#define TS(...)                                                                                              \
  ts_parse((const char *[]){__VA_ARGS__}, sizeof((const char *[]){__VA_ARGS__}) / sizeof(char *))

static int ts_ok(const char *v) { return TS(v) == 0; }

/* "c" repeated n times, in a buffer that lives until the next call with the same slot. */
static char *rep(int slot, char c, size_t n) {
  static char b[4][1024];
  memset(b[slot], c, n);
  b[slot][n] = '\0';
  return b[slot];
}

static px_trace_ctx_t extract(const px_trace_in_t *in, unsigned prop) {
  px_trace_ctx_t c;
  memset(&c, 0xa5, sizeof(c)); /* nothing of what was there may survive */
  px_trace_extract(in, prop, &c);
  return c;
}

static px_trace_in_t w3c(const char *traceparent, const char *tracestate) {
  px_trace_in_t in = {0};
  in.traceparent[0] = S(traceparent);
  in.n_traceparent = 1;
  if (tracestate) in.tracestate[0] = S(tracestate), in.n_tracestate = 1;
  return in;
}

static px_trace_in_t b3multi(const char *traceid, const char *spanid, const char *sampled) {
  px_trace_in_t in = {0};
  if (traceid) in.b3_traceid = S(traceid);
  if (spanid) in.b3_spanid = S(spanid);
  if (sampled) in.b3_sampled = S(sampled);
  return in;
}

static px_trace_in_t b3single(const char *v) {
  px_trace_in_t in = {0};
  in.b3 = S(v);
  return in;
}

#define ALL (PX_PROP_W3C | PX_PROP_B3 | PX_PROP_B3_SINGLE)

/* ---- traceparent -------------------------------------------------------- */

Test(traceparent, version_00_gives_ids_and_flags) {
  uint8_t tid[16], pid[8], fl = 0;
  cr_assert_eq(tp(TP, tid, pid, &fl), 0);
  cr_expect_str_eq(hex(tid, 16), TID);
  cr_expect_str_eq(hex(pid, 8), PID);
  cr_expect_eq(fl, 1);
  cr_expect_eq(tp("00-" TID "-" PID "-00", tid, pid, &fl), 0);
  cr_expect_eq(fl, 0);
}

Test(traceparent, version_00_is_exactly_55_characters) {
  cr_expect_eq(strlen(TP), 55);
  cr_expect(!tp_ok("00-" TID "-" PID "-0"));   /* 54 */
  cr_expect(!tp_ok("00-" TID "-" PID "-011")); /* 56 */
  cr_expect(!tp_ok(""));
  cr_expect(!tp_ok("00"));
}

Test(traceparent, extra_field_after_version_00_is_invalid) {
  cr_expect(!tp_ok(TP "-00"));
  cr_expect(!tp_ok(TP "-"));
}

Test(traceparent, uppercase_hex_is_invalid) {
  cr_expect(!tp_ok("00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01"));
  cr_expect(!tp_ok("00-4bf92f3577b34da6a3ce929d0e0e473A-" PID "-01"));
  cr_expect(!tp_ok("00-" TID "-00F067AA0BA902B7-01"));
  cr_expect(!tp_ok("00-" TID "-" PID "-0A"));
  cr_expect(!tp_ok("0A-" TID "-" PID "-01"));
}

Test(traceparent, field_lengths_are_fixed) {
  cr_expect(!tp_ok("00-4bf92f3577b34da6a3ce929d0e0e473-" PID "0-01"));          /* trace 31, parent 17 */
  cr_expect(!tp_ok("00-4bf92f3577b34da6a3ce929d0e0e47360-00f067aa0ba902b-01")); /* 33, 15 */
  cr_expect(!tp_ok("00-" TID "-" PID "0-1"));                                   /* flags 1 */
  cr_expect(!tp_ok("000-" TID "-" PID "-1"));                                   /* version 3 */
}

Test(traceparent, all_zero_ids_are_invalid) {
  cr_expect(!tp_ok("00-00000000000000000000000000000000-" PID "-01"));
  cr_expect(!tp_ok("00-" TID "-0000000000000000-01"));
  cr_expect(tp_ok("00-00000000000000000000000000000001-0000000000000001-00"));
}

Test(traceparent, version_ff_is_invalid) {
  cr_expect(!tp_ok("ff-" TID "-" PID "-01"));
  cr_expect(tp_ok("fe-" TID "-" PID "-01"));
}

Test(traceparent, version_must_be_hex) {
  cr_expect(!tp_ok("0g-" TID "-" PID "-01"));
  cr_expect(!tp_ok("-0-" TID "-" PID "-01"));
}

Test(traceparent, future_version_is_read_by_its_first_four_fields) {
  uint8_t tid[16], pid[8], fl = 0;
  cr_assert_eq(tp("cc-" TID "-" PID "-01", tid, pid, &fl), 0); /* exactly 55 */
  cr_expect_str_eq(hex(tid, 16), TID);
  cr_assert_eq(tp("cc-" TID "-" PID "-03-what-the-future-will-be-like", tid, pid, &fl), 0);
  cr_expect_str_eq(hex(pid, 8), PID);
  cr_expect_eq(fl, 3);
  cr_expect(tp_ok("01-" TID "-" PID "-01-"));
  /* Longer, but the flags do not end at a '-': not a version we can read. */
  cr_expect(!tp_ok("cc-" TID "-" PID "-01x"));
  cr_expect(!tp_ok("cc-" TID "-" PID "-010"));
  /* Shorter than 55 whatever the version. */
  cr_expect(!tp_ok("cc-" TID "-" PID "-1"));
  /* Its four fields follow version 00's rules. */
  cr_expect(!tp_ok("cc-" TID "-" PID "-0A-x"));
  cr_expect(!tp_ok("cc-00000000000000000000000000000000-" PID "-01-x"));
}

Test(traceparent, separators_must_be_dashes) {
  cr_expect(!tp_ok("00_" TID "-" PID "-01"));
  cr_expect(!tp_ok("00-" TID "_" PID "-01"));
  cr_expect(!tp_ok("00-" TID "-" PID "_01"));
  cr_expect(!tp_ok("00 " TID " " PID " 01"));
  cr_expect(!tp_ok("cc-" TID "-" PID "-01_x"));
}

Test(traceparent, flags_must_be_hex) {
  cr_expect(!tp_ok("00-" TID "-" PID "-0g"));
  cr_expect(!tp_ok("00-" TID "-" PID "-x1"));
  cr_expect(!tp_ok("00-" TID "-" PID "- 1"));
  cr_expect(tp_ok("00-" TID "-" PID "-ff")); /* unknown bits are no error, just dropped */
}

Test(traceparent, ows_around_the_value_is_tolerated_nothing_else) {
  cr_expect(tp_ok(" \t" TP " \t"));
  cr_expect(tp_ok("  " TP));
  cr_expect(!tp_ok("\n" TP));
  cr_expect(!tp_ok(TP "\r"));
  cr_expect(!tp_ok(TP ","));
  cr_expect(!tp_ok("x" TP));
  cr_expect(!tp_ok("00-" TID " -" PID "-01"));
}

Test(traceparent, outputs_untouched_when_invalid) {
  uint8_t tid[16], pid[8], fl = 7;
  memset(tid, 0x11, 16);
  memset(pid, 0x22, 8);
  cr_assert_neq(tp("00-" TID "-" PID "-0g", tid, pid, &fl), 0);
  cr_expect_eq(tid[0], 0x11);
  cr_expect_eq(pid[0], 0x22);
  cr_expect_eq(fl, 7);
}

Test(traceparent, extract_keeps_only_the_sampled_bit) {
  px_trace_in_t in = w3c("00-" TID "-" PID "-03", NULL);
  px_trace_ctx_t c = extract(&in, PX_PROP_W3C);
  cr_expect_eq(c.source, PX_TRACE_W3C);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_str_eq(hex(c.trace_id, 16), TID);
  cr_expect_str_eq(hex(c.parent_id, 8), PID);
  cr_expect_eq(c.trace_id_64, 0);
  cr_expect_eq(c.debug, 0);
  in = w3c("00-" TID "-" PID "-fe", NULL);
  c = extract(&in, PX_PROP_W3C);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
}

Test(traceparent, invalid_one_is_ignored_with_its_tracestate) {
  px_trace_in_t in = w3c("00-" TID "-" PID "-0G", "a=1");
  px_trace_ctx_t c = extract(&in, ALL);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
  cr_expect_eq(c.tracestate_len, 0);
  cr_expect_str_eq(c.tracestate, "");
  for (size_t i = 0; i < 16; i++) cr_expect_eq(c.trace_id[i], 0);
  for (size_t i = 0; i < 8; i++) cr_expect_eq(c.parent_id[i], 0);
}

Test(traceparent, two_fields_are_invalid) {
  px_trace_in_t in = w3c(TP, "a=1");
  in.traceparent[1] = S(TP);
  in.n_traceparent = 2;
  cr_expect_eq(extract(&in, PX_PROP_W3C).source, PX_TRACE_NEW);
  in.n_traceparent = 3; /* the caller saw more than it kept */
  cr_expect_eq(extract(&in, PX_PROP_W3C).source, PX_TRACE_NEW);
  in.n_traceparent = 0;
  cr_expect_eq(extract(&in, PX_PROP_W3C).source, PX_TRACE_NEW);
}

/* ---- tracestate --------------------------------------------------------- */

Test(tracestate, simple_and_multi_tenant_keys) {
  cr_expect_eq(TS("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), 0);
  cr_expect_str_eq(ts_out, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  cr_expect(ts_ok("a_-*/0=1"));
  cr_expect(ts_ok("fw529a3039@dt=x"));
  cr_expect(ts_ok("0tenant@sys_-*/9=x")); /* a tenant may start with a digit */
  cr_expect(ts_ok("t@s=x"));
}

Test(tracestate, bad_keys) {
  cr_expect(!ts_ok("0a=1"));   /* a simple key starts with a letter */
  cr_expect(!ts_ok("Ab=1"));   /* lowercase only */
  cr_expect(!ts_ok("a.b=1"));  /* not a key character */
  cr_expect(!ts_ok("=1"));     /* empty key */
  cr_expect(!ts_ok("a =1"));   /* no space before '=' */
  cr_expect(!ts_ok("@s=1"));   /* empty tenant */
  cr_expect(!ts_ok("t@=1"));   /* empty system */
  cr_expect(!ts_ok("t@0s=1")); /* a system id starts with a letter */
  cr_expect(!ts_ok("_t@s=1")); /* a tenant id starts with a letter or digit */
  cr_expect(!ts_ok("t@s@u=1"));
  cr_expect(!ts_ok("t@S=1"));
  cr_expect(!ts_ok("novalue"));
}

Test(tracestate, key_lengths_at_the_limits) {
  char m[1100];
  snprintf(m, sizeof(m), "a%s=1", rep(0, 'b', 255)); /* simple: 256 */
  cr_expect(ts_ok(m));
  snprintf(m, sizeof(m), "a%s=1", rep(0, 'b', 256));
  cr_expect(!ts_ok(m));
  snprintf(m, sizeof(m), "%s@s=1", rep(0, '7', 241)); /* tenant: 241 */
  cr_expect(ts_ok(m));
  snprintf(m, sizeof(m), "%s@s=1", rep(0, '7', 242));
  cr_expect(!ts_ok(m));
  snprintf(m, sizeof(m), "t@s%s=1", rep(0, 'y', 13)); /* system: 14 */
  cr_expect(ts_ok(m));
  snprintf(m, sizeof(m), "t@s%s=1", rep(0, 'y', 14));
  cr_expect(!ts_ok(m));
}

Test(tracestate, value_lengths_at_the_limits) {
  char m[1100];
  snprintf(m, sizeof(m), "k=%s", rep(0, 'v', 256));
  cr_expect(ts_ok(m));
  snprintf(m, sizeof(m), "k=%s", rep(0, 'v', 257));
  cr_expect(!ts_ok(m));
  cr_expect(ts_ok("k=v"));
  cr_expect(!ts_ok("k="));
}

Test(tracestate, value_characters) {
  cr_expect_eq(TS("k=!\"#$%&'()*+-./09:;<>?@AZ[\\]^_`az{|}~"), 0);
  cr_expect(!ts_ok("k=a=b"));      /* '=' is no value character */
  cr_expect(!ts_ok("k=a,b"));      /* ',' splits: "b" is then a member without '=' */
  cr_expect(!ts_ok("k=a\tb"));     /* a tab inside */
  cr_expect(!ts_ok("k=a\x7f"));    /* DEL */
  cr_expect(!ts_ok("k=\xc3\xa9")); /* non-ASCII */
  cr_expect(!ts_ok("k=a\x01"));
  /* A space inside or leading is part of the value. */
  cr_expect_eq(TS("k= a b"), 0);
  cr_expect_str_eq(ts_out, "k= a b");
}

Test(tracestate, trailing_space_is_no_value) {
  /* The value's last character is no space: a value of spaces only is refused, and
   * spaces after the last character are the OWS around the member, dropped. */
  cr_expect(!ts_ok("k= "));
  cr_expect(!ts_ok("k=  ,a=1"));
  cr_expect_eq(TS("k=v  ,a=1 "), 0);
  cr_expect_str_eq(ts_out, "k=v,a=1");
}

Test(tracestate, ows_around_members_is_dropped) {
  cr_expect_eq(TS(" \ta=1 \t, b=2\t,c=3 "), 0);
  cr_expect_str_eq(ts_out, "a=1,b=2,c=3");
}

Test(tracestate, empty_members_are_skipped) {
  cr_expect_eq(TS(",,a=1, ,\t,b=2,"), 0);
  cr_expect_str_eq(ts_out, "a=1,b=2");
  cr_expect_eq(TS(" , ,"), 0);
  cr_expect_str_eq(ts_out, "");
  cr_expect_eq(TS(""), 0);
  cr_expect_str_eq(ts_out, "");
}

Test(tracestate, a_duplicate_key_drops_the_whole_list) {
  cr_expect_eq(TS("a=1,b=2,a=3"), PX_EPARSE);
  cr_expect_str_eq(ts_out, "");
  cr_expect_eq(TS("a=1,b=2", "b=2"), PX_EPARSE); /* across fields, even with one value */
  cr_expect_eq(TS("t@s=1,t@s=2"), PX_EPARSE);
  cr_expect_eq(TS("t@s=1,s=2,t=3"), 0); /* tenant, system and simple keys differ */
}

Test(tracestate, a_malformed_member_drops_the_whole_list) {
  cr_expect_eq(TS("a=1,B=2,c=3"), PX_EPARSE);
  cr_expect_str_eq(ts_out, "");
  cr_expect_eq(TS("a=1", "=2"), PX_EPARSE);
}

Test(tracestate, several_fields_are_one_list) {
  cr_expect_eq(TS("a=1", "b=2,c=3", "", " d=4"), 0);
  cr_expect_str_eq(ts_out, "a=1,b=2,c=3,d=4");
  /* A field boundary separates members: "a=1" then "b=2", not "a=1b=2". */
  cr_expect_eq(TS("a=1", "b=2"), 0);
  cr_expect_str_eq(ts_out, "a=1,b=2");
  cr_expect_eq(ts_parse(NULL, 0), 0);
  cr_expect_str_eq(ts_out, "");
}

static void members(char *out, size_t cap, unsigned from, unsigned n) {
  size_t len = 0;
  out[0] = '\0';
  for (unsigned i = from; i < from + n; i++)
    len += (size_t)snprintf(out + len, cap - len, "%sk%u=%u", i > from ? "," : "", i, i);
}

Test(tracestate, at_most_32_members_the_first_ones) {
  char list[1024], want[1024];
  members(list, sizeof(list), 0, 32);
  cr_expect_eq(TS(list), 0);
  cr_expect_str_eq(ts_out, list);
  members(list, sizeof(list), 0, 33);
  members(want, sizeof(want), 0, 32);
  cr_expect_eq(TS(list), 0);
  cr_expect_str_eq(ts_out, want);
  /* Across fields too. */
  members(list, sizeof(list), 0, 20);
  char rest[1024];
  members(rest, sizeof(rest), 20, 20);
  cr_expect_eq(TS(list, rest), 0);
  cr_expect_str_eq(ts_out, want);
}

Test(tracestate, members_past_the_32nd_are_still_checked) {
  char list[1024];
  members(list, sizeof(list), 0, 33);
  strcat(list, ",K=1");
  cr_expect_eq(TS(list), PX_EPARSE);
  members(list, sizeof(list), 0, 33);
  strcat(list, ",k3=again");
  cr_expect_eq(TS(list), PX_EPARSE);
}

/* Members "k0=vvv", "k1=vvv"... of lens[i] characters each, joined by ",", leaving out
 * those whose bit is set in `skip`. */
static char *sized(char *out, const size_t *lens, unsigned n, unsigned skip) {
  size_t len = 0;
  for (unsigned i = 0; i < n; i++) {
    if (skip & (1u << i)) continue;
    if (len) out[len++] = ',';
    int kl = sprintf(out + len, "k%u=", i);
    memset(out + len + (size_t)kl, 'v', lens[i] - (size_t)kl);
    len += lens[i];
  }
  out[len] = '\0';
  return out;
}

Test(tracestate, exactly_512_characters_are_kept) {
  static const size_t lens[] = {127, 127, 127, 128}; /* 509 + 3 commas */
  char list[2048];
  cr_assert_eq(strlen(sized(list, lens, 4, 0)), 512);
  cr_expect_eq(TS(list), 0);
  cr_expect_str_eq(ts_out, list);
}

Test(tracestate, over_512_drops_members_from_the_end) {
  static const size_t lens[] = {127, 127, 128, 128}; /* 513: none over 128, the last goes */
  char list[2048], want[2048];
  cr_assert_eq(strlen(sized(list, lens, 4, 0)), 513);
  cr_expect_eq(TS(list), 0);
  cr_expect_str_eq(ts_out, sized(want, lens, 4, 1u << 3));
}

Test(tracestate, over_512_drops_long_members_first_from_the_end) {
  /* 704: dropping the last long member brings it to 503, so the first long one stays,
   * and so do the short ones after it. */
  static const size_t lens[] = {100, 200, 100, 200, 100};
  char list[2048], want[2048];
  cr_expect_eq(TS(sized(list, lens, 5, 0)), 0);
  cr_expect_str_eq(ts_out, sized(want, lens, 5, 1u << 3));
  /* Over 128 is long, 128 is not. */
  static const size_t edge[] = {128, 129, 128, 128, 10};
  cr_expect_eq(TS(sized(list, edge, 5, 0)), 0);
  cr_expect_str_eq(ts_out, sized(want, edge, 5, 1u << 1));
}

Test(tracestate, then_from_the_end_when_long_ones_are_not_enough) {
  /* Both long ones go, still 6 × 100 + 5 = 605: then short ones from the end. */
  static const size_t lens[] = {100, 200, 100, 100, 100, 200, 100, 100};
  char list[2048], want[2048];
  cr_expect_eq(TS(sized(list, lens, 8, 0)), 0);
  cr_expect_str_eq(ts_out, sized(want, lens, 8, 1u << 1 | 1u << 5 | 1u << 7));
}

Test(tracestate, a_smaller_buffer_is_a_smaller_limit) {
  px_str_t v = S("a=1,b=2,c=3");
  char out[8];
  uint16_t len;
  cr_expect_eq(px_trace_parse_tracestate(&v, 1, out, sizeof(out), &len), 0);
  cr_expect_str_eq(out, "a=1,b=2");
  cr_expect_eq(len, 7);
}

Test(tracestate, extract_keeps_it_with_a_valid_traceparent) {
  px_trace_in_t in = w3c(TP, " rojo=1 ,congo=2");
  in.tracestate[1] = S("x@y=3");
  in.n_tracestate = 2;
  px_trace_ctx_t c = extract(&in, PX_PROP_W3C);
  cr_expect_eq(c.source, PX_TRACE_W3C);
  cr_expect_str_eq(c.tracestate, "rojo=1,congo=2,x@y=3");
  cr_expect_eq(c.tracestate_len, strlen("rojo=1,congo=2,x@y=3"));
}

Test(tracestate, malformed_is_dropped_the_traceparent_still_used) {
  px_trace_in_t in = w3c(TP, "a=1,a=2");
  px_trace_ctx_t c = extract(&in, PX_PROP_W3C);
  cr_expect_eq(c.source, PX_TRACE_W3C);
  cr_expect_str_eq(hex(c.trace_id, 16), TID);
  cr_expect_eq(c.tracestate_len, 0);
  cr_expect_str_eq(c.tracestate, "");
}

Test(tracestate, more_fields_than_kept_are_dropped) {
  px_trace_in_t in = w3c(TP, "a=1");
  in.n_tracestate = 9;
  in.tracestate[1] = S("b=2");
  for (unsigned i = 2; i < 8; i++) in.tracestate[i] = S("");
  px_trace_ctx_t c = extract(&in, PX_PROP_W3C);
  cr_expect_eq(c.source, PX_TRACE_W3C);
  cr_expect_eq(c.tracestate_len, 0);
  in.n_tracestate = 8;
  c = extract(&in, PX_PROP_W3C);
  cr_expect_str_eq(c.tracestate, "a=1,b=2");
}

/* ---- B3 multi ----------------------------------------------------------- */

Test(b3, multi_128_bit) {
  px_trace_in_t in = b3multi(TID, SPAN, "1");
  in.b3_parentspanid = S(GRAND);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_str_eq(hex(c.trace_id, 16), TID);
  cr_expect_str_eq(hex(c.parent_id, 8), SPAN); /* the caller's span is our parent */
  cr_expect_eq(c.trace_id_64, 0);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_eq(c.debug, 0);
  cr_expect_eq(c.tracestate_len, 0);
}

Test(b3, multi_64_bit_is_left_padded) {
  px_trace_in_t in = b3multi(TID64, SPAN, "0");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_str_eq(hex(c.trace_id, 16), "0000000000000000" TID64);
  cr_expect_eq(c.trace_id_64, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
}

Test(b3, multi_bad_ids) {
  const char *bad_trace[] = {"463AC35C9F6413AD",
                             "463ac35c9f6413a",
                             "463ac35c9f6413ad0",
                             TID "0",
                             "4bf92f3577b34da6a3ce929d0e0e473",
                             "0000000000000000",
                             "00000000000000000000000000000000",
                             "463ac35c9f6413ax",
                             ""};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad_trace); i++) {
    px_trace_in_t in = b3multi(bad_trace[i], SPAN, "1");
    if (!bad_trace[i][0]) in.b3_traceid = (px_str_t){"", 0};
    cr_expect_eq(extract(&in, PX_PROP_B3).source, PX_TRACE_NEW, "%s", bad_trace[i]);
  }
  const char *bad_span[] = {"A2FB4A1D1A96D312", "a2fb4a1d1a96d31", "a2fb4a1d1a96d3120", "0000000000000000",
                            TID};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad_span); i++) {
    px_trace_in_t in = b3multi(TID, bad_span[i], "1");
    cr_expect_eq(extract(&in, PX_PROP_B3).source, PX_TRACE_NEW, "%s", bad_span[i]);
  }
}

Test(b3, multi_trace_id_and_span_id_go_together) {
  px_trace_in_t in = b3multi(TID, NULL, NULL);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
  in = b3multi(NULL, SPAN, "1"); /* not even as a sampling-only context */
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
  in = b3multi(NULL, NULL, "1");
  in.b3_parentspanid = S(GRAND);
  cr_expect_eq(extract(&in, PX_PROP_B3).sampled, PX_SAMPLE_DEFER);
}

Test(b3, multi_parent_span_id_is_checked_not_kept) {
  px_trace_in_t in = b3multi(TID, SPAN, "1");
  in.b3_parentspanid = S(GRAND);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_str_eq(hex(c.parent_id, 8), SPAN);
  const char *bad[] = {"002000000000000", "0020000000000001a", "0000000000000000", "002000000000000G"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad); i++) {
    in.b3_parentspanid = S(bad[i]);
    cr_expect_eq(extract(&in, PX_PROP_B3).source, PX_TRACE_NEW, "%s", bad[i]);
  }
}

Test(b3, multi_sampled_values) {
  struct {
    const char *v;
    int want; /* -1: invalid */
  } cases[] = {{"1", PX_SAMPLE_YES},
               {"0", PX_SAMPLE_NO},
               {"true", PX_SAMPLE_YES},
               {"false", PX_SAMPLE_NO},
               {"True", PX_SAMPLE_YES},
               {"FALSE", PX_SAMPLE_NO},
               {" 1 ", PX_SAMPLE_YES},
               {"2", -1},
               {"yes", -1},
               {"01", -1},
               {"d", -1},
               {" ", -1}};
  for (size_t i = 0; i < PX_ARRAY_SIZE(cases); i++) {
    px_trace_in_t in = b3multi(TID, SPAN, cases[i].v);
    px_trace_ctx_t c = extract(&in, PX_PROP_B3);
    if (cases[i].want < 0) {
      cr_expect_eq(c.source, PX_TRACE_NEW, "%s", cases[i].v);
      cr_expect_eq(c.sampled, PX_SAMPLE_DEFER, "%s", cases[i].v);
    } else {
      cr_expect_eq(c.source, PX_TRACE_B3, "%s", cases[i].v);
      cr_expect_eq(c.sampled, cases[i].want, "%s", cases[i].v);
    }
  }
}

Test(b3, multi_absent_sampled_is_deferred) {
  px_trace_in_t in = b3multi(TID, SPAN, NULL);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
}

Test(b3, multi_flags_1_is_debug_and_sampled) {
  px_trace_in_t in = b3multi(TID, SPAN, NULL);
  in.b3_flags = S("1");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.debug, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  in.b3_sampled = S("0"); /* debug wins */
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.debug, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  in.b3_flags = S("0"); /* other values are ignored, as B3 allows */
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_eq(c.debug, 0);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  in.b3_flags = S("3");
  cr_expect_eq(extract(&in, PX_PROP_B3).debug, 0);
}

Test(b3, multi_sampling_only_is_a_new_trace_with_that_decision) {
  px_trace_in_t in = b3multi(NULL, NULL, "0");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  in = b3multi(NULL, NULL, "true");
  cr_expect_eq(extract(&in, PX_PROP_B3).sampled, PX_SAMPLE_YES);
  in = b3multi(NULL, NULL, NULL);
  in.b3_flags = S("1");
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.debug, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  in.b3_flags = S("0"); /* nothing to act on */
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
  cr_expect_eq(c.debug, 0);
}

/* ---- B3 single ---------------------------------------------------------- */

Test(b3single, four_fields) {
  px_trace_in_t in = b3single(TID "-" SPAN "-1-" GRAND);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_str_eq(hex(c.trace_id, 16), TID);
  cr_expect_str_eq(hex(c.parent_id, 8), SPAN);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_eq(c.trace_id_64, 0);
}

Test(b3single, sixty_four_bit_and_two_fields_deferred) {
  px_trace_in_t in = b3single(TID64 "-" SPAN);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_str_eq(hex(c.trace_id, 16), "0000000000000000" TID64);
  cr_expect_eq(c.trace_id_64, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
}

Test(b3single, sampling_states) {
  px_trace_in_t in = b3single(TID "-" SPAN "-0");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  in = b3single(TID "-" SPAN "-1");
  cr_expect_eq(extract(&in, PX_PROP_B3_SINGLE).sampled, PX_SAMPLE_YES);
  in = b3single(TID "-" SPAN "-d-" GRAND);
  c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_eq(c.debug, 1);
}

Test(b3single, sampling_only) {
  px_trace_in_t in = b3single("0");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  in = b3single("1");
  cr_expect_eq(extract(&in, PX_PROP_B3_SINGLE).sampled, PX_SAMPLE_YES);
  in = b3single(" d ");
  c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_eq(c.debug, 1);
}

Test(b3single, anything_else_is_invalid) {
  const char *bad[] = {"2",
                       "D",
                       "true",
                       "-",
                       " ",
                       "00",
                       TID,
                       TID "-",
                       TID "-" SPAN "-",
                       TID "-" SPAN "-1-",
                       TID "-" SPAN "-x",
                       TID "-" SPAN "-10",
                       TID "-" SPAN "-" GRAND, /* a parent needs the sampling field before it */
                       TID "-" SPAN "-1-" GRAND "-",
                       TID "-" SPAN "-1-0020000000000001a",
                       TID "-" SPAN "-1-0000000000000000",
                       TID "-" SPAN "-1-002000000000000",
                       TID "-A2FB4A1D1A96D312",
                       "4BF92F3577B34DA6A3CE929D0E0E4736-" SPAN,
                       "00000000000000000000000000000000-" SPAN,
                       TID "-0000000000000000",
                       "463ac35c9f6413a-" SPAN,
                       TID "0-" SPAN,
                       TID "-" SPAN "0",
                       TID "_" SPAN,
                       TID "-" SPAN "_1"};
  for (size_t i = 0; i < PX_ARRAY_SIZE(bad); i++) {
    px_trace_in_t in = {0};
    in.b3 = exact(bad[i]);
    px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
    cr_expect_eq(c.source, PX_TRACE_NEW, "%s", bad[i]);
    cr_expect_eq(c.sampled, PX_SAMPLE_DEFER, "%s", bad[i]);
    unexact(in.b3);
  }
}

/* ---- precedence and which formats are read ------------------------------ */

Test(precedence, w3c_wins_over_b3) {
  px_trace_in_t in = w3c(TP, "a=1");
  in.b3 = S(TID64 "-" SPAN "-0");
  in.b3_traceid = S(TID64);
  in.b3_spanid = S(SPAN);
  px_trace_ctx_t c = extract(&in, ALL);
  cr_expect_eq(c.source, PX_TRACE_W3C);
  cr_expect_str_eq(hex(c.parent_id, 8), PID);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_str_eq(c.tracestate, "a=1");
}

Test(precedence, an_invalid_traceparent_falls_to_b3) {
  px_trace_in_t in = w3c("00-" TID "-" PID "-1", "a=1");
  in.b3 = S(TID64 "-" SPAN "-0");
  px_trace_ctx_t c = extract(&in, ALL);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_eq(c.trace_id_64, 1);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  cr_expect_eq(c.tracestate_len, 0); /* tracestate belongs to W3C */
}

Test(precedence, b3_single_wins_over_multi) {
  px_trace_in_t in = b3single(TID64 "-" SPAN "-0");
  in.b3_traceid = S(TID);
  in.b3_spanid = S(GRAND);
  in.b3_sampled = S("1");
  px_trace_ctx_t c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.trace_id_64, 1);
  cr_expect_str_eq(hex(c.parent_id, 8), SPAN);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  /* As in Brave, even when it is only a sampling decision. */
  in.b3 = S("0");
  c = extract(&in, PX_PROP_B3);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
}

Test(precedence, an_invalid_b3_single_falls_to_multi) {
  px_trace_in_t in = b3single(TID "-" SPAN "-x");
  in.b3_traceid = S(TID64);
  in.b3_spanid = S(GRAND);
  px_trace_ctx_t c = extract(&in, PX_PROP_B3_SINGLE);
  cr_expect_eq(c.source, PX_TRACE_B3);
  cr_expect_eq(c.trace_id_64, 1);
  cr_expect_str_eq(hex(c.parent_id, 8), GRAND);
}

Test(precedence, none_valid_is_a_new_trace) {
  px_trace_in_t in = w3c("garbage", "a=1");
  in.b3 = S("garbage");
  in.b3_traceid = S("garbage");
  in.b3_spanid = S(SPAN);
  px_trace_ctx_t c = extract(&in, ALL);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
  px_trace_in_t none = {0};
  c = extract(&none, ALL);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  cr_expect_eq(c.sampled, PX_SAMPLE_DEFER);
}

Test(propagation, only_listed_formats_are_read) {
  px_trace_in_t in = w3c(TP, "a=1");
  in.b3 = S(TID64 "-" SPAN "-0");
  cr_expect_eq(extract(&in, PX_PROP_B3).source, PX_TRACE_B3);
  cr_expect_eq(extract(&in, PX_PROP_B3_SINGLE).source, PX_TRACE_B3);
  cr_expect_eq(extract(&in, 0).source, PX_TRACE_NEW);
  px_trace_in_t b = b3single(TID64 "-" SPAN "-0");
  cr_expect_eq(extract(&b, PX_PROP_W3C).source, PX_TRACE_NEW);
  cr_expect_eq(extract(&b, PX_PROP_W3C).sampled, PX_SAMPLE_DEFER);
  px_trace_in_t s = b3single("0"); /* a sampling-only b3 is a B3 thing too */
  cr_expect_eq(extract(&s, PX_PROP_W3C).sampled, PX_SAMPLE_DEFER);
}

Test(propagation, either_b3_bit_reads_both_b3_forms) {
  px_trace_in_t multi = b3multi(TID, SPAN, "1");
  cr_expect_eq(extract(&multi, PX_PROP_B3_SINGLE).source, PX_TRACE_B3);
  cr_expect_eq(extract(&multi, PX_PROP_B3).source, PX_TRACE_B3);
  px_trace_in_t single = b3single(TID "-" SPAN "-1");
  cr_expect_eq(extract(&single, PX_PROP_B3).source, PX_TRACE_B3);
  cr_expect_eq(extract(&single, PX_PROP_B3_SINGLE).source, PX_TRACE_B3);
}

/* ---- begin -------------------------------------------------------------- */

static int zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return 0;
  return 1;
}

Test(begin, a_new_trace_gets_ids) {
  px_trace_in_t none = {0};
  px_trace_ctx_t c = extract(&none, ALL);
  px_trace_begin(&c, 1.0, 0.5);
  cr_expect(!zero(c.trace_id, 16));
  cr_expect(!zero(c.span_id, 8));
  cr_expect(zero(c.parent_id, 8));
  cr_expect_eq(c.trace_id_64, 0);
  cr_expect_eq(c.source, PX_TRACE_NEW);
  px_trace_ctx_t d = extract(&none, ALL);
  px_trace_begin(&d, 1.0, 0.5);
  cr_expect_neq(memcmp(c.trace_id, d.trace_id, 16), 0);
  cr_expect_neq(memcmp(c.span_id, d.span_id, 8), 0);
}

Test(begin, sample_rate_decides_new_traces) {
  px_trace_in_t none = {0};
  px_trace_ctx_t c = extract(&none, ALL);
  px_trace_begin(&c, 0.0, 0.0);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  c = extract(&none, ALL);
  px_trace_begin(&c, 1.0, 0.9999999999);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  c = extract(&none, ALL);
  px_trace_begin(&c, 0.25, 0.2);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  c = extract(&none, ALL);
  px_trace_begin(&c, 0.25, 0.25);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
}

Test(begin, a_continued_trace_keeps_its_id_and_decision) {
  px_trace_in_t in = w3c("00-" TID "-" PID "-00", "a=1");
  px_trace_ctx_t c = extract(&in, ALL);
  px_trace_begin(&c, 1.0, 0.0);
  cr_expect_str_eq(hex(c.trace_id, 16), TID);
  cr_expect_str_eq(hex(c.parent_id, 8), PID);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  cr_expect_str_eq(c.tracestate, "a=1");
  cr_expect(!zero(c.span_id, 8));
  cr_expect_neq(memcmp(c.span_id, c.parent_id, 8), 0);
  in = w3c(TP, NULL);
  c = extract(&in, ALL);
  px_trace_begin(&c, 0.0, 0.5);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
}

Test(begin, a_b3_deferred_decision_is_taken_here) {
  px_trace_in_t in = b3multi(TID64, SPAN, NULL);
  px_trace_ctx_t c = extract(&in, ALL);
  px_trace_begin(&c, 1.0, 0.5);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_str_eq(hex(c.trace_id, 16), "0000000000000000" TID64);
  cr_expect_eq(c.trace_id_64, 1);
  c = extract(&in, ALL);
  px_trace_begin(&c, 0.0, 0.5);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
}

Test(begin, a_sampling_only_decision_is_kept) {
  px_trace_in_t in = b3single("0");
  px_trace_ctx_t c = extract(&in, ALL);
  px_trace_begin(&c, 1.0, 0.0);
  cr_expect_eq(c.sampled, PX_SAMPLE_NO);
  cr_expect(!zero(c.trace_id, 16));
  in = b3single("d");
  c = extract(&in, ALL);
  px_trace_begin(&c, 0.0, 0.5);
  cr_expect_eq(c.sampled, PX_SAMPLE_YES);
  cr_expect_eq(c.debug, 1);
}

Test(begin, span_ids_are_never_zero) {
  uint8_t id[8];
  for (int i = 0; i < 1000; i++) {
    px_trace_new_span_id(id);
    cr_assert(!zero(id, 8));
  }
}

/* ---- write -------------------------------------------------------------- */

static const uint8_t client[8] = {0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31};
#define CLIENT "b7ad6b7169203331"

/* A context as px_trace_begin leaves it, with a known SERVER span. */
static px_trace_ctx_t begun(const px_trace_in_t *in) {
  px_trace_ctx_t c = extract(in, ALL);
  px_trace_begin(&c, 1.0, 0.5);
  static const uint8_t server[8] = {0x53, 0x45, 0x52, 0x56, 0x45, 0x52, 0x00, 0x01};
  memcpy(c.span_id, server, 8);
  return c;
}
#define SERVER "5345525645520001"

static char *written(const px_trace_ctx_t *c, unsigned prop) {
  static char s[2048];
  px_buf_t b = {0};
  px_trace_write_headers(c, client, prop, &b);
  memcpy(s, b.data ? b.data : "", b.len);
  s[b.len] = '\0';
  px_buf_free(&b);
  return s;
}

Test(write, w3c_lines) {
  px_trace_in_t in = w3c("00-" TID "-" PID "-01", " b=2 , a=1");
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_W3C),
                   "traceparent: 00-" TID "-" CLIENT "-01\r\ntracestate: b=2,a=1\r\n");
  in = w3c("00-" TID "-" PID "-00", NULL);
  c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_W3C), "traceparent: 00-" TID "-" CLIENT "-00\r\n");
}

Test(write, future_version_and_other_flags_go_out_as_00) {
  px_trace_in_t in = w3c("cc-" TID "-" PID "-ff-more", NULL);
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_W3C), "traceparent: 00-" TID "-" CLIENT "-01\r\n");
  in = w3c("00-" TID "-" PID "-fe", NULL);
  c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_W3C), "traceparent: 00-" TID "-" CLIENT "-00\r\n");
}

Test(write, b3_multi_lines) {
  px_trace_in_t in = w3c(TP, "a=1");
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_B3), "x-b3-traceid: " TID "\r\nx-b3-spanid: " CLIENT
                                            "\r\nx-b3-parentspanid: " SERVER "\r\nx-b3-sampled: 1\r\n");
  in = b3multi(TID64, SPAN, "0");
  c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_B3), "x-b3-traceid: " TID64 "\r\nx-b3-spanid: " CLIENT
                                            "\r\nx-b3-parentspanid: " SERVER "\r\nx-b3-sampled: 0\r\n");
}

Test(write, b3_debug_sends_flags_not_sampled) {
  px_trace_in_t in = b3multi(TID, SPAN, NULL);
  in.b3_flags = S("1");
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_B3), "x-b3-traceid: " TID "\r\nx-b3-spanid: " CLIENT
                                            "\r\nx-b3-parentspanid: " SERVER "\r\nx-b3-flags: 1\r\n");
  cr_expect_str_eq(written(&c, PX_PROP_B3_SINGLE), "b3: " TID "-" CLIENT "-d-" SERVER "\r\n");
  cr_expect_str_eq(written(&c, PX_PROP_W3C), "traceparent: 00-" TID "-" CLIENT "-01\r\n");
}

Test(write, b3_single_line) {
  px_trace_in_t in = b3single(TID64 "-" SPAN "-1-" GRAND);
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_B3_SINGLE), "b3: " TID64 "-" CLIENT "-1-" SERVER "\r\n");
  in = b3single(TID "-" SPAN "-0");
  c = begun(&in);
  cr_expect_str_eq(written(&c, PX_PROP_B3_SINGLE), "b3: " TID "-" CLIENT "-0-" SERVER "\r\n");
}

Test(write, all_formats_agree) {
  px_trace_in_t in = b3single(TID64 "-" SPAN "-0");
  px_trace_ctx_t c = begun(&in);
  cr_expect_str_eq(written(&c, ALL), "traceparent: 00-0000000000000000" TID64 "-" CLIENT "-00\r\n"
                                     "x-b3-traceid: " TID64 "\r\nx-b3-spanid: " CLIENT
                                     "\r\nx-b3-parentspanid: " SERVER "\r\nx-b3-sampled: 0\r\n"
                                     "b3: " TID64 "-" CLIENT "-0-" SERVER "\r\n");
  cr_expect_str_eq(written(&c, 0), "");
}

Test(write, nothing_for_a_context_that_cannot_be_written) {
  px_trace_in_t none = {0};
  px_trace_ctx_t c = extract(&none, ALL); /* px_trace_begin not run: no trace id */
  cr_expect_str_eq(written(&c, ALL), "");
  c = begun(&none);
  px_buf_t b = {0};
  static const uint8_t nil[8];
  px_trace_write_headers(&c, nil, ALL, &b);
  cr_expect_eq(b.len, 0);
  px_buf_free(&b);
}

Test(write, hex_is_lowercase) {
  static const uint8_t id[4] = {0xab, 0xcd, 0x01, 0xef};
  char out[9];
  px_trace_hex(id, 4, out);
  cr_expect_str_eq(out, "abcd01ef");
  px_trace_hex(id, 0, out);
  cr_expect_str_eq(out, "");
}

/* ---- round trip --------------------------------------------------------- */

/* Reads written header lines back into fields, as the caller would hand them over. */
static px_trace_in_t read_back(const px_buf_t *b) {
  px_trace_in_t in = {0};
  const char *p = b->data, *end = b->data + b->len;
  while (p < end) {
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    cr_assert(eol != NULL && eol + 1 < end && eol[1] == '\n');
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    cr_assert(colon != NULL && colon[1] == ' ');
    px_str_t name = {p, (size_t)(colon - p)}, value = {colon + 2, (size_t)(eol - colon - 2)};
    if (px_str_eq(name, PX_STR("traceparent")))
      in.traceparent[in.n_traceparent++] = value;
    else if (px_str_eq(name, PX_STR("tracestate")))
      in.tracestate[in.n_tracestate++] = value;
    else if (px_str_eq(name, PX_STR("b3")))
      in.b3 = value;
    else if (px_str_eq(name, PX_STR("x-b3-traceid")))
      in.b3_traceid = value;
    else if (px_str_eq(name, PX_STR("x-b3-spanid")))
      in.b3_spanid = value;
    else if (px_str_eq(name, PX_STR("x-b3-parentspanid")))
      in.b3_parentspanid = value;
    else if (px_str_eq(name, PX_STR("x-b3-sampled")))
      in.b3_sampled = value;
    else if (px_str_eq(name, PX_STR("x-b3-flags")))
      in.b3_flags = value;
    else
      cr_assert_fail("unexpected line %.*s", (int)(eol - p), p);
    p = eol + 2;
  }
  return in;
}

static void round_trip(const px_trace_in_t *in, double rate) {
  for (unsigned prop = 1; prop <= ALL; prop++) {
    px_trace_ctx_t c = extract(in, prop);
    px_trace_begin(&c, rate, 0.5);
    uint8_t cs[8];
    px_trace_new_span_id(cs);
    px_buf_t b = {0};
    px_trace_write_headers(&c, cs, prop, &b);
    px_trace_in_t back = read_back(&b);
    px_trace_ctx_t d = extract(&back, prop);
    cr_expect_neq(d.source, PX_TRACE_NEW, "prop %u", prop);
    cr_expect_eq(memcmp(d.trace_id, c.trace_id, 16), 0, "prop %u", prop);
    cr_expect_eq(memcmp(d.parent_id, cs, 8), 0, "prop %u", prop);
    cr_expect_eq(d.sampled, c.sampled, "prop %u", prop);
    if (prop & PX_PROP_W3C) {
      cr_expect_str_eq(d.tracestate, c.tracestate, "prop %u", prop);
    } else {
      cr_expect_eq(d.debug, c.debug, "prop %u", prop);
      cr_expect_eq(d.trace_id_64, c.trace_id_64, "prop %u", prop);
    }
    px_buf_free(&b);
  }
}

Test(roundtrip, what_is_written_parses_back) {
  px_trace_in_t in = w3c(TP, "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE");
  round_trip(&in, 0.0);
  in = w3c("00-" TID "-" PID "-00", NULL);
  round_trip(&in, 1.0);
  in = b3single(TID64 "-" SPAN "-d");
  round_trip(&in, 0.0);
  in = b3multi(TID, SPAN, NULL);
  round_trip(&in, 1.0);
  in = b3multi(TID64, SPAN, NULL);
  round_trip(&in, 0.0);
  px_trace_in_t none = {0};
  round_trip(&none, 1.0);
  round_trip(&none, 0.0);
  in = b3single("d");
  round_trip(&in, 0.0);
}
