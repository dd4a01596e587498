/*
 * The C baseline for bench/passthrough_job.lua: every line copied to the
 * output unchanged, line by line.
 *   passthrough_baseline INPUT OUTPUT
 */
#include "bench_common.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INPUT OUTPUT\n", argv[0]);
    return 2;
  }
  FILE *in = bench_open_in(argv[1]);
  FILE *out = bench_open_out(argv[2]);
  char *line = NULL;
  size_t n = 0;
  ssize_t len;
  while ((len = getline(&line, &n, in)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    if (out) {
      fwrite(line, 1, (size_t)len, out);
      fputc('\n', out);
    }
  }
  free(line);
  fclose(in);
  bench_close_out(out);
  return 0;
}
