/*
 * fuzz_metadata.c - a checkpoint's _metadata (host/checkpoint) read from
 * arbitrary bytes. The first byte chooses how: bit 0 set replaces the end
 * line with a correct checksum of the rest (else almost every input would
 * stop at the checksum); the remaining bytes are the file. Properties: the
 * reader gives a checkpoint or an error with a message, never a crash;
 * a checkpoint it accepts has a job, a backend and a max parallelism; it
 * writes back (cs_ckpt_write_metadata) to a file that reads as the same
 * checkpoint; cs_ckpt_verify of it answers without crashing whatever its
 * state lines name.
 */
#include <xxhash.h>

#include "host/checkpoint/cs_checkpoint.h"
#include "fuzz_util.h"

static int str_eq(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

/* Whether two checkpoints read from disk hold the same. */
static int same(const cs_ckpt *a, const cs_ckpt *b) {
  if (a->id != b->id || a->savepoint != b->savepoint || !str_eq(a->job, b->job) ||
      !str_eq(a->backend, b->backend) || a->max_parallelism != b->max_parallelism ||
      a->nops != b->nops || a->nparts != b->nparts)
    return 0;
  for (int i = 0; i < a->nops; i++)
    if (!str_eq(a->ops[i].id, b->ops[i].id) ||
        a->ops[i].parallelism != b->ops[i].parallelism)
      return 0;
  for (int i = 0; i < a->nparts; i++) {
    const cs_ckpt_part *p = &a->parts[i];
    const cs_ckpt_part *q = cs_ckpt_find(b, p->op_id, p->subtask);
    if (q == NULL || !str_eq(p->file, q->file) || !str_eq(p->source, q->source) ||
        p->has_sum != q->has_sum || (p->has_sum && (p->size != q->size || p->hash != q->hash)))
      return 0;
  }
  return 1;
}

/* Writes the file of the input into dir/_metadata. */
static void write_input(const char *dir, const uint8_t *data, size_t size) {
  char path[700];
  snprintf(path, sizeof(path), "%s/_metadata", dir);
  int fix = size > 0 && (data[0] & 1);
  if (size > 0) data++, size--;
  if (!fix) {
    fuzz_write_file(path, data, size);
    return;
  }
  size_t body = size;
  const char *d = (const char *)data;
  for (size_t at = 0; at < size;) { /* cut at the last end line */
    if (size - at >= 4 && memcmp(d + at, "end ", 4) == 0) body = at;
    const char *nl = memchr(d + at, '\n', size - at);
    at = nl ? (size_t)(nl - d) + 1 : size;
  }
  char *f = malloc(body + 40);
  FUZZ_CHECK(f != NULL);
  memcpy(f, d, body);
  size_t n = body;
  if (n > 0 && f[n - 1] != '\n') f[n++] = '\n';
  n += (size_t)snprintf(f + n, 40, "end %016llx\n",
                        (unsigned long long)XXH3_64bits(f, n));
  fuzz_write_file(path, f, n);
  free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char in[600], out[600], err[1200];
  snprintf(in, sizeof(in), "%s/in", fuzz_scratch_dir());
  snprintf(out, sizeof(out), "%s/out", fuzz_scratch_dir());
  mkdir(in, 0700);
  mkdir(out, 0700);
  write_input(in, data, size);
  cs_ckpt *c = NULL;
  err[0] = '\0';
  int rc = cs_ckpt_read(in, &c, err, sizeof(err));
  if (rc != 0) {
    FUZZ_CHECK(c == NULL && err[0] != '\0');
    return 0;
  }
  FUZZ_CHECK(c != NULL && c->job && c->backend && c->max_parallelism > 0);
  for (int i = 0; i < c->nparts; i++) {
    FUZZ_CHECK(c->parts[i].op_id != NULL);
    FUZZ_CHECK(c->parts[i].file || c->parts[i].source);
    FUZZ_CHECK(cs_ckpt_find(c, c->parts[i].op_id, c->parts[i].subtask) != NULL);
  }
  int bad = -1;
  rc = cs_ckpt_verify(c, &bad, err, sizeof(err));
  FUZZ_CHECK(rc == 0 || (bad >= 0 && bad < c->nparts));

  /* read(write(c)) == c */
  char *dir = c->dir;
  c->dir = out;
  FUZZ_CHECK(cs_ckpt_write_metadata(c, err, sizeof(err)) == 0);
  c->dir = dir;
  cs_ckpt *c2 = NULL;
  rc = cs_ckpt_read(out, &c2, err, sizeof(err));
  if (rc) fprintf(stderr, "written metadata does not read back: %s\n", err);
  FUZZ_CHECK(rc == 0);
  FUZZ_CHECK(same(c, c2));
  cs_ckpt_destroy(c2);
  cs_ckpt_destroy(c);
  return 0;
}
