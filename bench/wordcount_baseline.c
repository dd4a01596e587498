/*
 * The C baseline for the word count: one thread, no Lua; an open-addressing
 * table of words to counts, each (word,count) written as the sinks do.
 *   wordcount_baseline INPUT OUTPUT|null
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct entry {
  char *word;
  size_t len;
  long count;
} entry;

static entry *table;
static size_t cap = 1 << 16, used;

static entry *lookup(const char *w, size_t len) {
  size_t i = XXH3_64bits(w, len) & (cap - 1);
  while (table[i].word && (table[i].len != len || memcmp(table[i].word, w, len)))
    i = (i + 1) & (cap - 1);
  return &table[i];
}

static void grow(void) {
  entry *old = table;
  size_t oldcap = cap;
  cap *= 2;
  table = calloc(cap, sizeof(entry));
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].word) *lookup(old[i].word, old[i].len) = old[i];
  free(old);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s INPUT OUTPUT|null\n", argv[0]);
    return 2;
  }
  FILE *in = fopen(argv[1], "r");
  FILE *out = strcmp(argv[2], "null") ? fopen(argv[2], "w") : NULL;
  if (!in) return 1;
  table = calloc(cap, sizeof(entry));
  char *line = NULL;
  size_t n = 0;
  ssize_t len;
  while ((len = getline(&line, &n, in)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    char *p = line, *end = line + len;
    while (p < end) {
      char *c = memchr(p, ',', (size_t)(end - p));
      if (!c) c = end;
      if (c > p) {
        entry *e = lookup(p, (size_t)(c - p));
        if (!e->word) {
          e->word = strndup(p, (size_t)(c - p));
          e->len = (size_t)(c - p);
          if (++used * 2 > cap) {
            grow();
            e = lookup(p, (size_t)(c - p));
          }
        }
        e->count++;
        if (out) fprintf(out, "(%.*s,%ld)\n", (int)e->len, e->word, e->count);
      }
      p = c + 1;
    }
  }
  free(line);
  fclose(in);
  if (out) fclose(out);
  for (size_t i = 0; i < cap; i++) free(table[i].word);
  free(table);
  return 0;
}
