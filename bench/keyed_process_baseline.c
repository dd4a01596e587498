/*
 * The C baseline for bench/keyed_process_job.lua: one thread, no Lua; a
 * running sum per key in a hash table, (key,sum) written for every record.
 *   keyed_process_baseline INPUT OUTPUT
 */
#include "bench_common.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INPUT OUTPUT\n", argv[0]);
    return 2;
  }
  FILE *in = bench_open_in(argv[1]);
  FILE *out = bench_open_out(argv[2]);
  bench_table t;
  bench_table_init(&t);
  char *line = NULL;
  size_t n = 0;
  ssize_t len;
  while ((len = getline(&line, &n, in)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    char *c = memchr(line, ',', (size_t)len);
    if (c == NULL) bench_die("a line without a comma");
    int created;
    bench_slot *s = bench_table_get(&t, line, (size_t)(c - line), &created);
    s->v.i += strtoll(c + 1, NULL, 10);
    if (out) fprintf(out, "(%.*s,%lld)\n", (int)s->len, s->key, (long long)s->v.i);
  }
  free(line);
  fclose(in);
  bench_close_out(out);
  bench_table_free(&t);
  return 0;
}
