/*
 * fuzz_util.h - what the fuzz targets of spec/fuzz share: a failed property
 * aborts (libFuzzer and the replay driver both report it), a scratch
 * directory per process, and writing the fuzz bytes to files in it.
 */
#ifndef CS_FUZZ_UTIL_H
#define CS_FUZZ_UTIL_H

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A property the target checks: on failure prints where and aborts. */
#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__,       \
              __LINE__, #cond);                                            \
      abort();                                                             \
    }                                                                      \
  } while (0)

/* The scratch directory of this process ($TMPDIR or /tmp), made on first
 * use and removed at exit with what is left in it. */
static char fuzz_scratch[512];

static inline int fuzz_rm_one(const char *path, const struct stat *st,
                              int type, struct FTW *ftw) {
  (void)st, (void)ftw;
  if ((type == FTW_DP ? rmdir(path) : unlink(path)) != 0)
    fprintf(stderr, "cannot remove %s: %s\n", path, strerror(errno));
  return 0;
}

/* rm -rf path (nothing when it does not exist). */
static inline void fuzz_rm_rf(const char *path) {
  nftw(path, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline void fuzz_scratch_cleanup(void) {
  if (fuzz_scratch[0]) fuzz_rm_rf(fuzz_scratch);
}

static inline const char *fuzz_scratch_dir(void) {
  if (fuzz_scratch[0]) return fuzz_scratch;
  const char *tmp = getenv("TMPDIR");
  snprintf(fuzz_scratch, sizeof(fuzz_scratch), "%s/cstream-fuzz-XXXXXX",
           tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(fuzz_scratch) == NULL) {
    perror(fuzz_scratch);
    abort();
  }
  atexit(fuzz_scratch_cleanup);
  return fuzz_scratch;
}

/* Writes data[0, len) to path (truncating). Aborts when it cannot: the
 * target cannot test anything then. */
static inline void fuzz_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || (len && fwrite(data, 1, len, f) != len) || fclose(f)) {
    perror(path);
    abort();
  }
}

#endif /* CS_FUZZ_UTIL_H */
