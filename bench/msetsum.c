/*
 * msetsum - a digest of the lines of files as a multiset, to check that an
 * engine run wrote the same lines as a baseline in any order and split
 * over any number of files: prints "LINES SUM XOR", where SUM and XOR
 * combine the 64-bit XXH3 hashes of the lines (order-independent).
 *   msetsum FILE|DIR...   (a directory: every regular file in it)
 */
#include <dirent.h>
#include <inttypes.h>
#include <sys/stat.h>

#include "bench_common.h"

static uint64_t lines, sum, xr;

static void digest_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "msetsum: cannot open '%s'\n", path);
    exit(1);
  }
  char *line = NULL;
  size_t n = 0;
  ssize_t len;
  while ((len = getline(&line, &n, f)) > 0) {
    if (line[len - 1] == '\n') len--;
    uint64_t h = XXH3_64bits(line, (size_t)len);
    lines++;
    sum += h;
    xr ^= h;
  }
  free(line);
  fclose(f);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "msetsum: no such file or directory '%s'\n", argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      digest_file(argv[i]);
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (d == NULL) bench_die("cannot open a directory");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      char path[4096];
      snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
      if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) digest_file(path);
    }
    closedir(d);
  }
  printf("%" PRIu64 " %016" PRIx64 " %016" PRIx64 "\n", lines, sum, xr);
  return 0;
}
