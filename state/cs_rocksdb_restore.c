/*
 * cs_rocksdb_restore.c - the RocksDB backend from a checkpoint: restore
 * (the working directory rebuilt from the checkpoint's files, by links
 * where possible, then opened), opening a checkpoint read-only, and
 * verifying every file a manifest names. All three read and check the
 * manifest first, then walk its entries.
 */
#include "cs_rocksdb_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ===================================================== manifest walks */

typedef struct build_ud {
  const char *dir; /* NULL: only verify the files */
  const char *chk_dir;
  const char *shared_dir;
  size_t nshared;
  size_t nsst; /* SST files, in chk_dir or shared_dir */
  char *err;
  size_t errlen;
} build_ud;

static int visit_count_shared(void *ud, const cs__rocksdb_mentry *e) {
  build_ud *b = ud;
  if (e->type == CS__ROCKSDB_ENT_SHARED) b->nshared++;
  if (e->type != CS__ROCKSDB_ENT_FILE) b->nsst++;
  return 0;
}

/* The path of the checkpoint file of entry e: in chk_dir, or under its
 * shared name in shared_dir. */
static int entry_path(const build_ud *b, const cs__rocksdb_mentry *e, char *src,
                      size_t cap) {
  char name[CS__ROCKSDB_NAME_MAX_LEN + 1];
  if (e->type == CS__ROCKSDB_ENT_SHARED) {
    snprintf(name, sizeof(name), "%.*s", (int)e->shared.len, e->shared.data);
    return cs__rocksdb_path_join(src, cap, b->shared_dir, name);
  }
  snprintf(name, sizeof(name), "%.*s", (int)e->name.len, e->name.data);
  return cs__rocksdb_path_join(src, cap, b->chk_dir, name);
}

/* Compares a file's size and hash with its manifest entry. Returns 0, or
 * CS_EDECODE with a message naming the file. */
static int check_sum(build_ud *b, const char *src, uint64_t size, uint64_t hash,
                     const cs__rocksdb_mentry *e) {
  if (size == e->size && hash == e->hash) return 0;
  return cs__rocksdb_errf(b->err, b->errlen, CS_EDECODE,
                          "checkpoint file %s is corrupt (%llu bytes, checksum "
                          "%016llx; the manifest says %llu bytes, %016llx)",
                          src, (unsigned long long)size,
                          (unsigned long long)hash, (unsigned long long)e->size,
                          (unsigned long long)e->hash);
}

/* Checks one checkpoint file against the manifest: its size, then, when
 * the manifest has one, its XXH3-64 (reading the whole file). */
static int visit_verify(void *ud, const cs__rocksdb_mentry *e) {
  build_ud *b = ud;
  char src[PATH_MAX];
  if (entry_path(b, e, src, sizeof(src)))
    return cs__rocksdb_errf(b->err, b->errlen, CS_EINVAL, "path too long: %.*s",
                            (int)e->name.len, e->name.data);
  struct stat st;
  if (stat(src, &st) != 0) return cs__rocksdb_open_errf(b->err, b->errlen, src);
  if ((uint64_t)st.st_size != e->size)
    return cs__rocksdb_errf(
        b->err, b->errlen, CS_EDECODE,
        "checkpoint file %s is corrupt or truncated: %lld bytes, "
        "the manifest says %llu",
        src, (long long)st.st_size, (unsigned long long)e->size);
  if (!e->has_hash) return 0;
  uint64_t size, hash;
  int rc = cs__rocksdb_copy_hash(src, NULL, 0, &size, &hash, b->err, b->errlen);
  if (rc) return rc;
  return check_sum(b, src, size, hash, e);
}

typedef struct sums_ud {
  cs__rocksdb_sst_sum *sums;
  size_t n;
} sums_ud;

/* Collects the size and hash of every SST file the manifest names with
 * a hash, by local name. */
static int visit_sums(void *ud, const cs__rocksdb_mentry *e) {
  sums_ud *f = ud;
  if (e->type == CS__ROCKSDB_ENT_FILE || !e->has_hash) return 0;
  char *name = cs_malloc(e->name.len + 1);
  if (name == NULL) return CS_ENOMEM;
  memcpy(name, e->name.data, e->name.len);
  name[e->name.len] = '\0';
  f->sums[f->n++] = (cs__rocksdb_sst_sum){name, e->size, e->hash};
  return 0;
}

/* Puts one checkpoint file into the directory being built: private files
 * copied and checked against their hash, SST files linked (or copied) and
 * checked against their size. */
static int visit_build(void *ud, const cs__rocksdb_mentry *e) {
  build_ud *b = ud;
  char name[CS__ROCKSDB_NAME_MAX_LEN + 1], src[PATH_MAX], dst[PATH_MAX];
  snprintf(name, sizeof(name), "%.*s", (int)e->name.len, e->name.data);
  int bad = cs__rocksdb_path_join(dst, sizeof(dst), b->dir, name);
  bad |= entry_path(b, e, src, sizeof(src));
  if (bad)
    return cs__rocksdb_errf(b->err, b->errlen, CS_EINVAL, "path too long: %s",
                            name);
  if (e->type == CS__ROCKSDB_ENT_FILE) {
    uint64_t size, hash;
    int rc =
        cs__rocksdb_copy_hash(src, dst, 0, &size, &hash, b->err, b->errlen);
    if (rc) return rc;
    return check_sum(b, src, size, hash, e);
  }
  struct stat st;
  if (stat(src, &st) != 0) return cs__rocksdb_open_errf(b->err, b->errlen, src);
  if ((uint64_t)st.st_size != e->size)
    return cs__rocksdb_errf(
        b->err, b->errlen, CS_EDECODE,
        "checkpoint file %s is corrupt: %lld bytes, the manifest "
        "says %llu",
        src, (long long)st.st_size, (unsigned long long)e->size);
  return cs__rocksdb_link_or_copy(src, dst, 0, b->err, b->errlen);
}

typedef struct refs_ud {
  cs__rocksdb_shared_ref *refs;
  size_t n;
} refs_ud;

static int visit_refs(void *ud, const cs__rocksdb_mentry *e) {
  refs_ud *f = ud;
  if (e->type == CS__ROCKSDB_ENT_SHARED) {
    f->refs[f->n].local = e->name;
    f->refs[f->n].shared = e->shared;
    f->n++;
  }
  return 0;
}

/* ============================================================ opening */

/* Restore and open_readonly: reads and checks the manifest of chk_dir,
 * prepares dir, builds it, opens it. For a read-write backend, remembers
 * the shared names, sizes and hashes of the restored SST files. With dir
 * NULL (cs_rocksdb_verify), only checks every file the manifest names. */
static int build_and_open(const char *dir, const char *chk_dir,
                          const char *shared_dir, const cs_rocksdb_options *o,
                          int mode, cs_backend **out, char *err,
                          size_t errlen) {
  cs__rocksdb_errf(err, errlen, 0, "%s", "");
  if (chk_dir == NULL || (out == NULL && dir != NULL))
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "no checkpoint directory");
  char path[PATH_MAX];
  if (cs__rocksdb_path_join(path, sizeof(path), chk_dir,
                            CS_ROCKSDB_MANIFEST_FILE))
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "path too long: %s",
                            chk_dir);
  cs_buf m = {0};
  cs__rocksdb *r = NULL;
  cs__rocksdb_shared_ref *refs = NULL;
  sums_ud sums = {NULL, 0};
  int rc = cs__rocksdb_read_small_file(path, &m, err, errlen);
  if (rc) goto fail_read;
  build_ud b = {dir, chk_dir, shared_dir, 0, 0, err, errlen};
  rc = cs__rocksdb_manifest_parse(m.data, m.len, visit_count_shared, &b);
  if (rc) {
    rc = cs__rocksdb_errf(err, errlen, rc, "checkpoint manifest %s is corrupt",
                          path);
    goto fail_read;
  }
  if (b.nshared > 0 && shared_dir == NULL) {
    rc = cs__rocksdb_errf(err, errlen, CS_EINVAL,
                          "checkpoint %s references shared files but no shared "
                          "directory was given",
                          chk_dir);
    goto fail_read;
  }
  if (dir == NULL) { /* cs_rocksdb_verify */
    rc = cs__rocksdb_manifest_parse(m.data, m.len, visit_verify, &b);
    cs_buf_free(&m);
    return rc;
  }
  if (b.nshared > 0 && mode != CS__ROCKSDB_OPEN_READONLY) {
    refs = cs_malloc(b.nshared * sizeof(*refs));
    if (refs == NULL) {
      rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
      goto fail_read;
    }
  }
  if (b.nsst > 0 && mode != CS__ROCKSDB_OPEN_READONLY) {
    sums.sums = cs_calloc(b.nsst, sizeof(cs__rocksdb_sst_sum));
    if (sums.sums == NULL ||
        cs__rocksdb_manifest_parse(m.data, m.len, visit_sums, &sums) != 0) {
      rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
      goto fail_read;
    }
    qsort(sums.sums, sums.n, sizeof(cs__rocksdb_sst_sum), cs__rocksdb_sum_cmp);
  }
  rc = cs__rocksdb_prepare_dir(dir, err, errlen);
  if (rc) goto fail_read;
  rc = cs__rocksdb_manifest_parse(m.data, m.len, visit_build, &b);
  if (rc) goto fail_build;
  rc = cs__rocksdb_open_instance(dir, o, mode, &r, err, errlen);
  if (rc) goto fail_build;
  if (refs != NULL) {
    refs_ud f = {refs, 0};
    /* checked above */
    cs__rocksdb_manifest_parse(m.data, m.len, visit_refs, &f);
    qsort(refs, f.n, sizeof(*refs), cs__rocksdb_ref_cmp_local);
    r->restored = refs;
    r->nrestored = f.n;
    r->restored_text = m.data; /* refs point into it */
  } else {
    cs_buf_free(&m);
  }
  r->sums = sums.sums;
  r->nsums = sums.n;
  *out = &r->base;
  return 0;

fail_build:
  cs__rocksdb_remove_workdir(dir);
fail_read:
  cs_free(refs);
  cs__rocksdb_free_sums(sums.sums, sums.n);
  cs_buf_free(&m);
  return rc;
}

int cs_rocksdb_restore(const char *workdir, const char *chk_dir,
                       const char *shared_dir, const cs_rocksdb_options *o,
                       cs_backend **out, char *err, size_t errlen) {
  return build_and_open(workdir, chk_dir, shared_dir, o,
                        CS__ROCKSDB_OPEN_EXISTING, out, err, errlen);
}

int cs_rocksdb_verify(const char *chk_dir, const char *shared_dir, char *err,
                      size_t errlen) {
  return build_and_open(NULL, chk_dir, shared_dir, NULL,
                        CS__ROCKSDB_OPEN_READONLY, NULL, err, errlen);
}

int cs_rocksdb_open_readonly(const char *chk_dir, const char *shared_dir,
                             const char *scratch_dir, cs_backend **out,
                             char *err, size_t errlen) {
  return build_and_open(scratch_dir, chk_dir, shared_dir, NULL,
                        CS__ROCKSDB_OPEN_READONLY, out, err, errlen);
}
