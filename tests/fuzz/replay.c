/* Runs a libFuzzer driver over saved inputs without libFuzzer, so a GCC build (the
 * Sanitize one CI uses) replays the seed corpus and every crash ever added to it.
 *
 *   fuzzreplay_http1 tests/fuzz/corpus/http1 [more dirs or files...]
 *
 * Each argument is a file or a directory (read one level deep, in name order so a
 * failure reproduces the same way). A broken invariant aborts; so does any ASan or
 * UBSan report. Exit status 0 means every input ran; 1 means an argument could not
 * be read or held no input at all. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *data = malloc(cap);
  size_t n;
  if (!data) abort();
  while ((n = fread(data + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap && !(data = realloc(data, cap *= 2))) abort();
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    fprintf(stderr, "replay: %s: cannot read\n", path);
    free(data);
    return -1;
  }
  /* An exact-size copy, as libFuzzer passes it, so reads past the end are caught. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) abort();
  memcpy(exact, data, len);
  free(data);
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Returns the number of inputs run, or -1. */
static int run_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      names = realloc(names, cap * sizeof(*names));
      if (!names) abort();
    }
    names[n] = strdup(e->d_name);
    if (!names[n]) abort();
    n++;
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(*names), cmp_names);
  int ran = 0, bad = 0;
  for (size_t i = 0; i < n; i++) {
    size_t plen = strlen(dir) + strlen(names[i]) + 2;
    char *path = malloc(plen);
    if (!path) abort();
    snprintf(path, plen, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) == 0)
        ran++;
      else
        bad = 1;
    }
    free(path);
    free(names[i]);
  }
  free(names);
  return bad ? -1 : ran;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
    return 2;
  }
  int status = 0;
  long total = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
      status = 1;
      continue;
    }
    int ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) == 0 ? 1 : -1);
    if (ran <= 0) {
      if (ran == 0) fprintf(stderr, "replay: %s: no input found\n", argv[i]);
      status = 1;
      continue;
    }
    total += ran;
  }
  fprintf(stderr, "replay: %ld input(s) ran\n", total);
  return status;
}
