/*
 * replay_main.c - the driver that replaces libFuzzer in ordinary builds: it
 * feeds every file named on the command line (a directory: every file in
 * it, in name order) to the target's LLVMFuzzerTestOneInput, so the seed
 * corpus and the regression inputs run under ctest with gcc, plain and
 * sanitized. A target reports a defect by aborting, as under libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  size_t n;
  while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
    len += n;
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (nb == NULL) free(buf);
      buf = nb;
    }
  }
  fclose(f);
  if (buf == NULL) {
    fprintf(stderr, "%s: out of memory\n", path);
    return 1;
  }
  LLVMFuzzerTestOneInput(buf, len);
  free(buf);
  return 0;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of dir (not its dot files). Returns the number of
 * failures; *count gets the inputs run. */
static int run_dir(const char *dir, int *count) {
  DIR *d = opendir(dir);
  if (d == NULL) {
    perror(dir);
    return 1;
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      char **nn = realloc(names, cap * sizeof(*names));
      if (nn == NULL) break;
      names = nn;
    }
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(*names), cmp_name);
  int bad = 0;
  for (size_t i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
    struct stat st;
    if (names[i] && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      bad += run_file(path);
      (*count)++;
    }
    free(names[i]);
  }
  free(names);
  return bad;
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  int bad = 0, count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      bad++;
    } else if (S_ISDIR(st.st_mode)) {
      bad += run_dir(argv[i], &count);
    } else {
      bad += run_file(argv[i]);
      count++;
    }
  }
  fprintf(stderr, "%s: %d input(s) replayed, %d unreadable\n", argv[0], count,
          bad);
  return bad ? 1 : 0;
}
