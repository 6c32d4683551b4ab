/* The body reader (proxy/body.h): sized, chunked and close-delimited bodies as they
 * arrive, with every chunked framing RFC 9112 §7.1 forbids refused. Each case is read
 * whole, byte by byte and split in two at every point: the outcome, the data and where
 * the body ends must not depend on how the bytes arrived. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "body.h"

typedef struct {
  px_br_result_t res; /* PX_BR_END, PX_BR_MORE or PX_BR_ERROR at the end of the input */
  char data[256];
  size_t data_len;
  size_t end; /* where the body ended (PX_BR_END) */
  const char *err;
} outcome_t;

/* Feeds `in` in pieces of `step` bytes (0: whole), the first one `first` bytes long
 * when `first` is not 0. */
static outcome_t read_body(px_body_mode_t mode, uint64_t length, const char *in, size_t n, size_t first,
                           size_t step) {
  outcome_t o = {.res = PX_BR_MORE};
  px_body_reader_t r;
  px_body_reader_init(&r, mode, length);
  size_t off = 0;
  while (off <= n) {
    size_t piece = first && off == 0 ? first : step ? step : n - off;
    if (off + piece > n) piece = n - off;
    const char *p = in + off, *end = in + off + piece;
    px_str_t d;
    px_br_result_t res;
    while ((res = px_body_read(&r, &p, end, &d)) == PX_BR_DATA) {
      cr_assert(d.p >= in + off && d.p + d.n <= end, "data outside the input");
      cr_assert_leq(o.data_len + d.n, sizeof(o.data));
      memcpy(o.data + o.data_len, d.p, d.n);
      o.data_len += d.n;
    }
    cr_assert(p >= in + off && p <= end);
    o.res = res;
    if (res == PX_BR_END) {
      o.end = (size_t)(p - in);
      return o;
    }
    if (res == PX_BR_ERROR) {
      o.err = r.err;
      cr_assert_not_null(o.err);
      return o;
    }
    cr_assert_eq(p, end, "more bytes left while the reader asks for more");
    if (off == n) break;
    off += piece;
  }
  return o;
}

/* The outcome read whole, checked against every other way of feeding it. */
static outcome_t read_all_ways(px_body_mode_t mode, uint64_t length, const char *in, size_t n) {
  outcome_t whole = read_body(mode, length, in, n, 0, 0);
  for (size_t step = 1; step <= 3; step++) {
    outcome_t o = read_body(mode, length, in, n, 0, step);
    cr_assert_eq(o.res, whole.res, "step %zu: %d against %d for [%s]", step, o.res, whole.res, in);
    cr_assert_eq(o.data_len, whole.data_len);
    cr_assert(memcmp(o.data, whole.data, o.data_len) == 0);
    if (o.res == PX_BR_END) cr_assert_eq(o.end, whole.end);
  }
  for (size_t split = 1; split < n; split++) {
    outcome_t o = read_body(mode, length, in, n, split, 0);
    cr_assert_eq(o.res, whole.res, "split at %zu: %d against %d for [%s]", split, o.res, whole.res, in);
    cr_assert_eq(o.data_len, whole.data_len);
    if (o.res == PX_BR_END) cr_assert_eq(o.end, whole.end);
  }
  return whole;
}

static outcome_t chunked(const char *in) { return read_all_ways(PX_BODY_CHUNKED, 0, in, strlen(in)); }

#define NEXT "GET /next HTTP/1.1\r\n\r\n"

Test(body, chunked_bodies_that_follow_the_grammar) {
  static const struct {
    const char *in, *data;
  } ok[] = {
      {"5\r\nhello\r\n0\r\n\r\n", "hello"},
      {"2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n", "hello"},
      {"005\r\nhello\r\n000\r\n\r\n", "hello"},       /* leading zeros: 1*HEXDIG */
      {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"}, /* upper-case hex */
      {"a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
      {"5;a\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5;a=b\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5;a=b;c=d\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5 ;a=b\r\nhello\r\n0\r\n\r\n", "hello"}, /* BWS before ';' */
      {"5; a = b ;c\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5;a=\"q \\\" \xff\"\r\nhello\r\n0\r\n\r\n", "hello"}, /* quoted-string, quoted-pair, obs-text */
      {"5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n", "hello"},
      {"5\r\nhello\r\n0;last=1\r\n\r\n", "hello"},
      {"5\r\nhello\r\n0\r\nT: v\r\n\r\n", "hello"},
      {"5\r\nhello\r\n0\r\nT:\r\nU:  x\t y \r\nV: \xc3\xa9\r\n\r\n", "hello"},
      {"0\r\n\r\n", ""},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    char in[512];
    snprintf(in, sizeof(in), "%s%s", ok[i].in, NEXT);
    outcome_t o = chunked(in);
    cr_assert_eq(o.res, PX_BR_END, "[%s]: %d %s", ok[i].in, o.res, o.err ? o.err : "");
    cr_assert_eq(o.data_len, strlen(ok[i].data));
    cr_assert(memcmp(o.data, ok[i].data, o.data_len) == 0, "[%s]", ok[i].in);
    cr_assert_eq(o.end, strlen(ok[i].in), "[%s] ends at %zu", ok[i].in, o.end);
  }
}

Test(body, chunked_framing_outside_the_grammar_is_refused) {
  static const char *const bad[] = {
      "5;=b\r\nhello\r\n0\r\n\r\n", /* an extension without a name */
      "5;a=\r\nhello\r\n0\r\n\r\n", /* without a value */
      "5;\r\nhello\r\n0\r\n\r\n",   /* a bare ';' */
      "5;;a\r\nhello\r\n0\r\n\r\n",
      "5 \r\nhello\r\n0\r\n\r\n", /* whitespace before CRLF */
      "5\t\r\nhello\r\n0\r\n\r\n",
      " 5\r\nhello\r\n0\r\n\r\n",     /* before the size */
      "5;a \r\nhello\r\n0\r\n\r\n",   /* after a name, before CRLF */
      "5;a=b \r\nhello\r\n0\r\n\r\n", /* after a value, before CRLF */
      "5;a=b c\r\nhello\r\n0\r\n\r\n",
      "5;a=b=c\r\nhello\r\n0\r\n\r\n",
      "5;a\"=b\r\nhello\r\n0\r\n\r\n",
      "5;a=\"x\r\nhello\r\n0\r\n\r\n", /* an unterminated quoted-string */
      "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
      "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
      "5;a=\x01\r\nhello\r\n0\r\n\r\n",
      "+5\r\nhello\r\n0\r\n\r\n",
      "0x5\r\nhello\r\n0\r\n\r\n",
      "\r\nhello\r\n0\r\n\r\n", /* no size */
      "5\nhello\r\n0\r\n\r\n",  /* bare LF after the size */
      "5\rhello\r\n0\r\n\r\n",  /* bare CR */
      "5\r\nhello\nX0\r\n\r\n", /* bare LF after the data */
      "5\r\nhello\rX0\r\n\r\n", /* bare CR after the data */
      "5\r\nhelloXY0\r\n\r\n",  /* no CRLF after the data */
      "5\r\nhello\r\n0\r\n\n",  /* a bare LF ending the body */
      "5\r\nhello\r\n0\n\r\n",
      "5\r\nhello\r\n0\r\nT: v\r\n\n", /* ending the trailer section */
      "5\r\nhello\r\n0\r\nT: v\n\r\n",
      "5\r\nhello\r\n0\r\nT: v\r\n w\r\n\r\n", /* an obs-folded trailer */
      "5\r\nhello\r\n0\r\n T: v\r\n\r\n",
      "5\r\nhello\r\n0\r\nT x: v\r\n\r\n", /* a trailer name with a space */
      "5\r\nhello\r\n0\r\nT : v\r\n\r\n",
      "5\r\nhello\r\n0\r\n: v\r\n\r\n", /* with no name */
      "5\r\nhello\r\n0\r\nT\r\n\r\n",   /* with no colon */
      "5\r\nhello\r\n0\r\nT: a\rb\r\n\r\n",
      "5\r\nhello\r\n0\r\nT: \x7f\r\n\r\n",
      "5\r\nhello\r\n0\r\n\rX",
      "8000000000000000\r\n", /* 2^63 */
      "fffffffffffffffff\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char in[512];
    size_t n = strlen(bad[i]);
    memcpy(in, bad[i], n);
    memcpy(in + n, NEXT, sizeof(NEXT));
    outcome_t o = read_all_ways(PX_BODY_CHUNKED, 0, in, n + sizeof(NEXT) - 1);
    cr_assert_eq(o.res, PX_BR_ERROR, "accepted [%s]", bad[i]);
  }
}

Test(body, trailer_nul_is_refused) {
  static const char in[] = "5\r\nhello\r\n0\r\nT: a\0b\r\n\r\n";
  outcome_t o = read_all_ways(PX_BODY_CHUNKED, 0, in, sizeof(in) - 1);
  cr_assert_eq(o.res, PX_BR_ERROR);
}

Test(body, chunk_size_up_to_63_bits) {
  /* 2^63 - 1 is a size; the data of course never comes. */
  outcome_t o = chunked("7fffffffffffffff\r\nabc");
  cr_assert_eq(o.res, PX_BR_MORE);
  cr_assert_eq(o.data_len, 3);
  o = chunked("0000000000000000000000000000000000000005\r\nhello\r\n0\r\n\r\n");
  cr_assert_eq(o.res, PX_BR_END);
}

Test(body, chunk_line_and_trailer_limits) {
  static char in[PX_BODY_TRAILERS_MAX + 64];
  size_t n = (size_t)snprintf(in, sizeof(in), "5;a=");
  memset(in + n, 'x', PX_BODY_CHUNK_LINE_MAX);
  outcome_t o = read_body(PX_BODY_CHUNKED, 0, in, n + PX_BODY_CHUNK_LINE_MAX, 0, 0);
  cr_assert_eq(o.res, PX_BR_ERROR);
  cr_assert_str_eq(o.err, "a chunk line is too long");
  n = (size_t)snprintf(in, sizeof(in), "0\r\nT: ");
  memset(in + n, 'x', PX_BODY_TRAILERS_MAX);
  o = read_body(PX_BODY_CHUNKED, 0, in, n + PX_BODY_TRAILERS_MAX, 0, 0);
  cr_assert_eq(o.res, PX_BR_ERROR);
  cr_assert_str_eq(o.err, "the trailer section is too large");
}

Test(body, an_incomplete_chunked_body_asks_for_more_and_is_cut_at_eof) {
  static const char *const partial[] = {"5",
                                        "5\r",
                                        "5\r\nhel",
                                        "5\r\nhello",
                                        "5\r\nhello\r",
                                        "5\r\nhello\r\n0",
                                        "5\r\nhello\r\n0\r\n",
                                        "5\r\nhello\r\n0\r\nT: v",
                                        "5;a=\"x"};
  for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++) {
    outcome_t o = chunked(partial[i]);
    cr_assert_eq(o.res, PX_BR_MORE, "[%s]: %d", partial[i], o.res);
    px_body_reader_t r;
    px_body_reader_init(&r, PX_BODY_CHUNKED, 0);
    const char *p = partial[i];
    px_str_t d;
    while (px_body_read(&r, &p, partial[i] + strlen(partial[i]), &d) == PX_BR_DATA) {
    }
    cr_assert_eq(px_body_eof(&r), PX_BR_ERROR);
  }
}

Test(body, sized_bodies) {
  outcome_t o = read_all_ways(PX_BODY_LENGTH, 5, "helloGET", 8);
  cr_assert_eq(o.res, PX_BR_END);
  cr_assert_eq(o.end, 5);
  cr_assert_eq(o.data_len, 5);
  o = read_all_ways(PX_BODY_LENGTH, 10, "hello", 5);
  cr_assert_eq(o.res, PX_BR_MORE);
  cr_assert_eq(o.data_len, 5);
  o = read_all_ways(PX_BODY_LENGTH, 0, "GET", 3);
  cr_assert_eq(o.res, PX_BR_END);
  cr_assert_eq(o.end, 0);
}

Test(body, no_body_ends_at_once) {
  outcome_t o = read_all_ways(PX_BODY_NONE, 0, "HTTP/1.1 200", 12);
  cr_assert_eq(o.res, PX_BR_END);
  cr_assert_eq(o.end, 0);
  px_body_reader_t r;
  px_body_reader_init(&r, PX_BODY_NONE, 0);
  cr_assert_eq(px_body_eof(&r), PX_BR_END);
}

Test(body, close_delimited_bodies_end_at_eof) {
  outcome_t o = read_all_ways(PX_BODY_CLOSE, 0, "anything\r\n0\r\n\r\n", 15);
  cr_assert_eq(o.res, PX_BR_MORE);
  cr_assert_eq(o.data_len, 15);
  px_body_reader_t r;
  px_body_reader_init(&r, PX_BODY_CLOSE, 0);
  cr_assert_eq(px_body_eof(&r), PX_BR_END);
  px_body_reader_init(&r, PX_BODY_LENGTH, 3);
  cr_assert_eq(px_body_eof(&r), PX_BR_ERROR);
  cr_assert_str_eq(r.err, "the body was cut short");
}

Test(body, an_error_is_final) {
  px_body_reader_t r;
  px_body_reader_init(&r, PX_BODY_CHUNKED, 0);
  const char in[] = "x\r\n5\r\nhello\r\n0\r\n\r\n";
  const char *p = in;
  px_str_t d;
  cr_assert_eq(px_body_read(&r, &p, in + sizeof(in) - 1, &d), PX_BR_ERROR);
  cr_assert_eq(px_body_read(&r, &p, in + sizeof(in) - 1, &d), PX_BR_ERROR);
  cr_assert_eq(px_body_eof(&r), PX_BR_ERROR);
}
