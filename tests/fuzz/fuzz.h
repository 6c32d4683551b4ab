/* Shared by the fuzz drivers: the libFuzzer entry point and the one way a driver
 * reports a broken invariant. abort() rather than assert(), so a Release build
 * (-DNDEBUG) still checks, and libFuzzer and the replay both see a crash. */
#ifndef PX_FUZZ_H
#define PX_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PX_FUZZ_CHECK(cond)                                                                                  \
  do {                                                                                                       \
    if (!(cond)) {                                                                                           \
      fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                           \
      abort();                                                                                               \
    }                                                                                                        \
  } while (0)

#endif
