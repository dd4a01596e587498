/*
 * The C baseline for bench/enrichment_job.lua: one thread, no Lua; reads
 * the two order files alternately, line by line; each side's unmatched
 * orders wait in a hash table keyed by order id until the other side's
 * line with that id arrives; then (id,product,price,date,address) is
 * written, the price rendered as the engine renders a float.
 *   enrichment_baseline INFO1 INFO2 OUTPUT
 */
#include "bench_common.h"

/* A line split at its first two commas: id, a, b (b is the rest). */
typedef struct order {
  char *line; /* owns the text */
  size_t idlen;
  char *a, *b;
} order;

/* Reads one line from f into a new order; NULL at the end. */
static order *read_order(FILE *f) {
  char *line = NULL;
  size_t n = 0;
  ssize_t len = getline(&line, &n, f);
  if (len <= 0) {
    free(line);
    return NULL;
  }
  if (line[len - 1] == '\n') line[--len] = '\0';
  char *c1 = strchr(line, ',');
  char *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
  if (c2 == NULL) bench_die("an order line without two commas");
  *c1 = *c2 = '\0';
  order *o = bench_xalloc(sizeof(order));
  o->line = line;
  o->idlen = (size_t)(c1 - line);
  o->a = c1 + 1;
  o->b = c2 + 1;
  return o;
}

static void free_order(order *o) {
  if (o) free(o->line);
  free(o);
}

static void emit(FILE *out, order *o1, order *o2) {
  char num[32];
  bench_format_double(strtod(o1->b, NULL), num);
  if (out) fprintf(out, "(%s,%s,%s,%s,%s)\n", o1->line, o1->a, num, o2->a, o2->b);
}

/* One side's order o arrives: joins it with the other side's pending
 * order of the same id, or keeps it pending. left: o is an INFO1 order. */
static void arrive(FILE *out, bench_table *mine, bench_table *other, order *o, int left) {
  bench_slot *s = bench_table_lookup(other, o->line, o->idlen);
  if (s) {
    order *p = s->v.p;
    bench_table_remove(other, s);
    if (left)
      emit(out, o, p);
    else
      emit(out, p, o);
    free_order(p);
    free_order(o);
  } else {
    int created;
    s = bench_table_get(mine, o->line, o->idlen, &created);
    free_order(s->v.p); /* a repeated id replaces the pending order */
    s->v.p = o;
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s INFO1 INFO2 OUTPUT\n", argv[0]);
    return 2;
  }
  FILE *in1 = bench_open_in(argv[1]), *in2 = bench_open_in(argv[2]);
  FILE *out = bench_open_out(argv[3]);
  bench_table p1, p2;
  bench_table_init(&p1);
  bench_table_init(&p2);
  order *o1 = read_order(in1), *o2 = read_order(in2);
  while (o1 || o2) {
    if (o1) {
      arrive(out, &p1, &p2, o1, 1);
      o1 = read_order(in1);
    }
    if (o2) {
      arrive(out, &p2, &p1, o2, 0);
      o2 = read_order(in2);
    }
  }
  for (size_t i = 0; i < p1.cap; i++) free_order(p1.slots[i].v.p);
  for (size_t i = 0; i < p2.cap; i++) free_order(p2.slots[i].v.p);
  bench_table_free(&p1);
  bench_table_free(&p2);
  fclose(in1);
  fclose(in2);
  bench_close_out(out);
  return 0;
}
