#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"

static char dir[64], path[128];

static void setup(void) {
  strcpy(dir, "/tmp/pxstore.XXXXXX");
  cr_assert(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/links.db", dir);
}

static void teardown(void) {
  char cmd[256];
  snprintf(path, sizeof(path), "%s/links.db", dir);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(cmd, sizeof(cmd), "%s%s", path, suffix[i]);
    unlink(cmd);
  }
  rmdir(dir);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 30);

static int lookup(shr_store_t *st, const char *code, char *out, size_t outlen) {
  px_buf_t b = {0};
  int rc = shr_store_lookup(st, code, strlen(code), &b);
  if (rc == 1) snprintf(out, outlen, "%.*s", (int)b.len, b.data);
  px_buf_free(&b);
  return rc;
}

Test(store, insert_and_lookup) {
  char err[256];
  shr_store_t *st = shr_store_open(path, err, sizeof(err));
  cr_assert(st, "%s", err);
  cr_expect_eq(shr_store_insert(st, "abcdefg", "https://a.example/", 18, 1), 0);
  char url[256];
  cr_expect_eq(lookup(st, "abcdefg", url, sizeof(url)), 1);
  cr_expect_str_eq(url, "https://a.example/");
  cr_expect_eq(lookup(st, "zzzzzzz", url, sizeof(url)), 0);
  shr_store_close(st);
}

Test(store, duplicate_code) {
  char err[256];
  shr_store_t *st = shr_store_open(path, err, sizeof(err));
  cr_assert(st, "%s", err);
  cr_expect_eq(shr_store_insert(st, "abcdefg", "https://a.example/", 18, 1), 0);
  cr_expect_eq(shr_store_insert(st, "abcdefg", "https://b.example/", 18, 2), SHR_STORE_DUP);
  char url[256];
  cr_expect_eq(lookup(st, "abcdefg", url, sizeof(url)), 1);
  cr_expect_str_eq(url, "https://a.example/", "first writer wins");
  /* the statement is usable again after the failure */
  cr_expect_eq(shr_store_insert(st, "hijklmn", "https://c.example/", 18, 3), 0);
  shr_store_close(st);
}

Test(store, create_draws_fresh_codes) {
  char err[256];
  shr_store_t *st = shr_store_open(path, err, sizeof(err));
  cr_assert(st, "%s", err);
  char code[SHR_CODE_LEN + 1], prev[SHR_CODE_LEN + 1] = "";
  for (int i = 0; i < 200; i++) {
    cr_assert_eq(shr_store_create(st, "https://x.example/", 18, code), 0, "%s", shr_store_error(st));
    cr_expect(shr_code_valid(code, strlen(code)));
    cr_expect_str_neq(code, prev);
    strcpy(prev, code);
  }
  char url[64];
  cr_expect_eq(lookup(st, code, url, sizeof(url)), 1);
  shr_store_close(st);
}

Test(store, two_handles_share_a_file) {
  char err[256];
  shr_store_t *a = shr_store_open(path, err, sizeof(err));
  shr_store_t *b = shr_store_open(path, err, sizeof(err));
  cr_assert(a && b, "%s", err);
  cr_expect_eq(shr_store_insert(a, "AAAAAAA", "https://a.example/", 18, 1), 0);
  char url[64];
  cr_expect_eq(lookup(b, "AAAAAAA", url, sizeof(url)), 1);
  cr_expect_eq(shr_store_insert(b, "BBBBBBB", "https://b.example/", 18, 1), 0);
  cr_expect_eq(lookup(a, "BBBBBBB", url, sizeof(url)), 1);
  cr_expect_eq(shr_store_insert(b, "AAAAAAA", "https://c.example/", 18, 1), SHR_STORE_DUP);
  shr_store_close(a);
  shr_store_close(b);
  /* WAL mode is recorded in the file */
  char wal[160];
  snprintf(wal, sizeof(wal), "%s", path);
  FILE *f = fopen(wal, "rb");
  cr_assert(f);
  unsigned char hdr[20];
  cr_assert_eq(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
  fclose(f);
  cr_expect_eq(hdr[18], 2, "file format write version 2 = WAL");
}

Test(store, open_failure_reports) {
  char err[256];
  shr_store_t *st = shr_store_open("/nonexistent-dir/sub/links.db", err, sizeof(err));
  cr_expect_null(st);
  cr_expect(strstr(err, "/nonexistent-dir/sub/links.db") != NULL, "%s", err);
}
