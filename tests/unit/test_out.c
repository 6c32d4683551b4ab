/* The output queue (proxy/out.h): what it queues is what goes on the wire, in order,
 * with chunk framing right, and side pieces resolved where the side buffer is when the
 * write is issued, not where it was when they were queued. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "out.h"

static char wire[4096];

static const char *flatten(px_out_t *o) {
  unsigned n = px_out_iov(o);
  size_t len = 0;
  for (unsigned i = 0; i < n; i++) {
    cr_assert_lt(len + o->iov[i].len, sizeof(wire));
    memcpy(wire + len, o->iov[i].base, o->iov[i].len);
    len += o->iov[i].len;
  }
  wire[len] = '\0';
  return wire;
}

Test(out, chunked_runs_are_framed) {
  px_out_t o = {0};
  px_out_body(&o, "hello", 5, 1);
  px_out_body(&o, "0123456789abcdef!", 17, 1);
  px_out_last_chunk(&o);
  cr_expect_str_eq(flatten(&o), "5\r\nhello\r\n11\r\n0123456789abcdef!\r\n0\r\n\r\n");
  px_out_free(&o);
}

/* The size line of every length class, against printf's reading of "%zx". */
Test(out, chunk_size_lines_are_lowercase_hex_without_leading_zeros) {
  size_t sizes[] = {
      1, 9, 10, 15, 16, 255, 256, 4095, 4096, 0xabcdef, 0x10000000, (size_t)UINT32_MAX + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    char got[24], want[24];
    size_t n = px_chunk_size_line(got, sizes[i]);
    int k = snprintf(want, sizeof(want), "%zx\r\n", sizes[i]);
    cr_assert_eq(n, (size_t)k, "size %zx", sizes[i]);
    cr_expect_eq(memcmp(got, want, n), 0, "size %zx: %.*s", sizes[i], (int)n, got);
  }
  for (size_t v = 1; v < 70000; v++) { /* every size of a small chunk */
    char got[24], want[24];
    size_t n = px_chunk_size_line(got, v);
    int k = snprintf(want, sizeof(want), "%zx\r\n", v);
    cr_assert(n == (size_t)k && memcmp(got, want, n) == 0, "size %zx", v);
  }
}

Test(out, empty_run_is_not_a_last_chunk) {
  px_out_t o = {0};
  px_out_body(&o, "", 0, 1);
  px_out_last_chunk(&o);
  cr_expect_str_eq(flatten(&o), "0\r\n\r\n");
  px_out_reset(&o);
  px_out_body(&o, "", 0, 0);
  cr_expect_eq(o.n, 0);
  px_out_free(&o);
}

Test(out, side_pieces_survive_the_side_buffer_moving) {
  px_out_t o = {0};
  static char a[1000], b[3000];
  memset(a, 'a', sizeof(a));
  memset(b, 'b', sizeof(b));
  px_out_side(&o, a, sizeof(a));
  const char *before = o.side.data;
  px_out_piece(&o, "|", 0, 1);
  px_out_side(&o, b, sizeof(b)); /* grows the side buffer past its first size */
  if (o.side.data == before) cr_skip_test("realloc grew the side buffer in place"); /* never under ASan */
  const char *w = flatten(&o);
  cr_expect_eq(strlen(w), 1000 + 1 + 3000);
  cr_expect_eq(strspn(w, "a"), 1000);
  cr_expect_eq(w[1000], '|');
  cr_expect_eq(strspn(w + 1001, "b"), 3000);
  px_out_free(&o);
}

Test(out, reset_forgets_everything) {
  px_out_t o = {0};
  px_out_side(&o, "abc", 3);
  px_out_piece(&o, "def", 0, 3);
  px_out_reset(&o);
  px_out_piece(&o, "g", 0, 1);
  cr_expect_str_eq(flatten(&o), "g");
  px_out_free(&o);
}
