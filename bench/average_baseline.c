/*
 * The C baseline for bench/average_job.lua: one thread, no Lua; per key a
 * (count, sum) in a hash table; every third record of a key writes
 * (key,average) and forgets the key, as the job does.
 *   average_baseline INPUT OUTPUT
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
  char *line = NULL, num[32];
  size_t n = 0;
  ssize_t len;
  while ((len = getline(&line, &n, in)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    char *c = memchr(line, ',', (size_t)len);
    if (c == NULL) bench_die("a line without a comma");
    int created;
    bench_slot *s = bench_table_get(&t, line, (size_t)(c - line), &created);
    s->v2 += 1;                      /* count */
    s->v.i += strtoll(c + 1, NULL, 10); /* sum */
    if (s->v2 >= 3) {
      bench_format_double((double)s->v.i / (double)s->v2, num);
      if (out) fprintf(out, "(%.*s,%s)\n", (int)s->len, s->key, num);
      bench_table_remove(&t, s);
    }
  }
  free(line);
  fclose(in);
  bench_close_out(out);
  bench_table_free(&t);
  return 0;
}
