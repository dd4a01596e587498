/*
 * bench_common.h - what the plain C baselines of the benchmarks share: a
 * string-keyed hash table (open addressing, linear probing, deletion by
 * backward shift), a line reader, and the rendering of doubles and tuples
 * the engine's text sinks use, so a baseline writes the same bytes as the
 * engine. Header-only (static functions): each bench/<name>_baseline.c is
 * its own program.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ============================================================== errors */

/* Prints "baseline: what" and exits 1; the baselines stop at the first error. */
static inline void bench_die(const char *what) {
  fprintf(stderr, "baseline: %s\n", what);
  exit(1);
}

static inline void *bench_xalloc(size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (p == NULL) bench_die("out of memory");
  return p;
}

/* ============================================================== table */

/* One slot: a key (owned by the table, NUL-terminated copy) and a value
 * the caller uses as it likes (a count, a sum, a pointer it owns). */
typedef struct bench_slot {
  char *key;
  size_t len;
  uint64_t hash;
  union {
    int64_t i;
    double d;
    void *p;
  } v;
  int64_t v2;
} bench_slot;

typedef struct bench_table {
  bench_slot *slots;
  size_t cap, used;
} bench_table;

static inline void bench_table_init(bench_table *t) {
  t->cap = 1 << 12;
  t->used = 0;
  t->slots = bench_xalloc(t->cap * sizeof(bench_slot));
}

/* The slot of key, or the empty slot where it would go. */
static inline bench_slot *bench_table_find(bench_table *t, const char *k, size_t len, uint64_t h) {
  size_t i = (size_t)h & (t->cap - 1);
  for (;;) {
    bench_slot *s = &t->slots[i];
    if (s->key == NULL || (s->hash == h && s->len == len && memcmp(s->key, k, len) == 0))
      return s;
    i = (i + 1) & (t->cap - 1);
  }
}

static inline void bench_table_grow(bench_table *t) {
  bench_slot *old = t->slots;
  size_t oldcap = t->cap;
  t->cap *= 2;
  t->slots = bench_xalloc(t->cap * sizeof(bench_slot));
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].key) *bench_table_find(t, old[i].key, old[i].len, old[i].hash) = old[i];
  free(old);
}

/* The slot of key k, created (value zeroed) if absent. *created says which. */
static inline bench_slot *bench_table_get(bench_table *t, const char *k, size_t len, int *created) {
  uint64_t h = XXH3_64bits(k, len);
  bench_slot *s = bench_table_find(t, k, len, h);
  *created = s->key == NULL;
  if (*created) {
    if ((t->used + 1) * 2 > t->cap) {
      bench_table_grow(t);
      s = bench_table_find(t, k, len, h);
    }
    s->key = bench_xalloc(len + 1);
    memcpy(s->key, k, len);
    s->len = len;
    s->hash = h;
    t->used++;
  }
  return s;
}

/* The slot of key k, or NULL. */
static inline bench_slot *bench_table_lookup(bench_table *t, const char *k, size_t len) {
  bench_slot *s = bench_table_find(t, k, len, XXH3_64bits(k, len));
  return s->key ? s : NULL;
}

/* Removes slot s (from bench_table_get/lookup): frees its key, not its value. */
static inline void bench_table_remove(bench_table *t, bench_slot *s) {
  size_t i = (size_t)(s - t->slots);
  free(s->key);
  /* backward shift: move later entries of the run into the hole */
  size_t j = i;
  for (;;) {
    j = (j + 1) & (t->cap - 1);
    bench_slot *n = &t->slots[j];
    if (n->key == NULL) break;
    size_t home = (size_t)n->hash & (t->cap - 1);
    /* n may move to i if its home is not in (i, j] (cyclically) */
    int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      t->slots[i] = *n;
      i = j;
    }
  }
  memset(&t->slots[i], 0, sizeof(bench_slot));
  t->used--;
}

static inline void bench_table_free(bench_table *t) {
  for (size_t i = 0; i < t->cap; i++) free(t->slots[i].key);
  free(t->slots);
}

/* ============================================================== output */

/* Opens OUTPUT for writing with a large buffer, as the engine's sinks
 * buffer; "null" gives NULL (no output). */
static inline FILE *bench_open_out(const char *path) {
  if (strcmp(path, "null") == 0) return NULL;
  FILE *f = fopen(path, "w");
  if (f == NULL) bench_die("cannot open the output file");
  setvbuf(f, NULL, _IOFBF, 1 << 16);
  return f;
}

static inline FILE *bench_open_in(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) bench_die("cannot open the input file");
  return f;
}

static inline void bench_close_out(FILE *f) {
  if (f && fclose(f) != 0) bench_die("cannot write the output file");
}

/* Renders d as the engine prints a Lua float (Java's Double.toString):
 * the shortest digits that read back as d, always with a fraction ("5.0").
 * Covers the plain range the benchmarks produce, 1e-3 <= |d| < 1e7 (Java
 * switches to "1.0E7" outside it; the baselines never print such values).
 * buf holds at least 32 bytes. Returns the length. */
static inline int bench_format_double(double d, char *buf) {
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(buf, 32, "%.*g", prec, d);
    if (strtod(buf, NULL) == d) break;
  }
  if (strchr(buf, '.') == NULL) {
    buf[n++] = '.';
    buf[n++] = '0';
    buf[n] = '\0';
  }
  return n;
}

#endif
