/* Fuzzes the configuration loader: px_config_parse either returns a configuration
 * whose GET /config dump is valid JSON, or fails with errors that all point into the
 * file ("fuzz.yaml:LINE:COL: ..."). Either way nothing leaks (ASan's leak check). */
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 65536) return 0; /* larger files say nothing new, only run slower */
  px_errlist_t errs = {0};
  px_config_t *cfg = px_config_parse("fuzz.yaml", (const char *)data, size, &errs);
  if (cfg) {
    PX_FUZZ_CHECK(errs.n == 0);
    px_buf_t out = {0};
    px_config_to_json(cfg, &out);
    char err[128] = "";
    px_json_t *j = px_json_parse(out.data, out.len, err, sizeof(err));
    if (!j) fprintf(stderr, "config JSON refused: %s\n%.*s\n", err, (int)out.len, out.data);
    PX_FUZZ_CHECK(j != NULL);
    PX_FUZZ_CHECK(px_json_type(j) == PX_JSON_OBJECT);
    px_json_free(j);
    px_buf_free(&out);
    px_config_free(cfg);
  } else {
    PX_FUZZ_CHECK(errs.n > 0);
    for (size_t i = 0; i < errs.n; i++) {
      if (strncmp(errs.items[i], "fuzz.yaml:", 10) != 0)
        fprintf(stderr, "error without position: %s\n", errs.items[i]);
      PX_FUZZ_CHECK(strncmp(errs.items[i], "fuzz.yaml:", 10) == 0);
    }
  }
  px_errlist_free(&errs);
  return 0;
}
