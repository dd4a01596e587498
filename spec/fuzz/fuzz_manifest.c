/*
 * fuzz_manifest.c - the manifest of a RocksDB checkpoint (state/cs_rocksdb.h)
 * parsed from arbitrary bytes. Most inputs would stop at the checksum of
 * the end line, so each input is parsed twice: as it is, and with its end
 * line replaced by a correct one ("end <lines - 1> <XXH3-64>"), which lets
 * the fuzzer reach every line kind. Properties: the parser never reads past
 * the bytes; every entry it hands out has a plain file name of 1..255
 * bytes; it hands out entries only for a manifest it accepts whole.
 */
#include <xxhash.h>

#include "state/cs_rocksdb.h"
#include "state/cs_rocksdb_int.h"
#include "fuzz_util.h"

static int name_ok(cs_slice s) {
  if (s.len == 0 || s.len > CS__ROCKSDB_NAME_MAX_LEN || s.data[0] == '.')
    return 0;
  for (size_t i = 0; i < s.len; i++)
    if (s.data[i] == '/' || s.data[i] == '\0' || s.data[i] == '\n') return 0;
  return 1;
}

typedef struct seen {
  size_t entries, shared;
} seen;

static int visit(void *ud, const cs__rocksdb_mentry *e) {
  seen *s = ud;
  FUZZ_CHECK(e->type == CS__ROCKSDB_ENT_FILE || e->type == CS__ROCKSDB_ENT_SST ||
             e->type == CS__ROCKSDB_ENT_SHARED);
  FUZZ_CHECK(name_ok(e->name));
  if (e->type == CS__ROCKSDB_ENT_SHARED) {
    FUZZ_CHECK(name_ok(e->shared));
    s->shared++;
  }
  if (e->type == CS__ROCKSDB_ENT_FILE) FUZZ_CHECK(e->has_hash);
  s->entries++;
  return 0;
}

static void count_shared(void *ud, const char *name) {
  size_t n = strlen(name);
  FUZZ_CHECK(n >= 1 && n <= CS__ROCKSDB_NAME_MAX_LEN);
  (*(size_t *)ud)++;
}

/* Parses d[0, len) (a heap copy, so reads past it are caught). */
static void parse(const char *d, size_t len) {
  seen s = {0, 0};
  int rc = cs__rocksdb_manifest_parse(d, len, visit, &s);
  FUZZ_CHECK(rc == 0 || rc == CS_EDECODE);
  FUZZ_CHECK(rc == 0 || s.entries == 0);
  FUZZ_CHECK(cs__rocksdb_manifest_parse(d, len, NULL, NULL) == rc);
  size_t shared = 0;
  FUZZ_CHECK(cs_rocksdb_manifest_files(d, len, count_shared, &shared) == rc);
  FUZZ_CHECK(shared == s.shared);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *raw = malloc(size ? size : 1);
  FUZZ_CHECK(raw != NULL);
  if (size) memcpy(raw, data, size);
  parse(raw, size);
  free(raw);

  /* The body: the input without its last line when that is an end line. */
  size_t body = size;
  while (body > 0 && data[body - 1] == '\n') body--;
  size_t at = body;
  while (at > 0 && data[at - 1] != '\n') at--;
  if (body - at >= 4 && memcmp(data + at, "end ", 4) == 0) body = at;
  size_t lines = 0;
  for (size_t i = 0; i < body; i++) lines += data[i] == '\n';
  int nl = body > 0 && data[body - 1] != '\n';
  lines += nl;
  char *fixed = malloc(body + 64);
  FUZZ_CHECK(fixed != NULL);
  memcpy(fixed, data, body);
  size_t n = body;
  if (nl) fixed[n++] = '\n';
  n += (size_t)snprintf(fixed + n, 64, "end %zu %016llx\n", lines ? lines - 1 : 0,
                        (unsigned long long)XXH3_64bits(fixed, n));
  parse(fixed, n);
  free(fixed);
  return 0;
}
