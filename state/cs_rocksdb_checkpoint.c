/*
 * cs_rocksdb_checkpoint.c - native checkpoints of the RocksDB backend and
 * their manifests (see cs_rocksdb.h for the directories and the manifest
 * format): reading and checking a manifest, and taking a checkpoint, full
 * or incremental, with the SST checksums a backend keeps between them.
 */
#include "cs_rocksdb_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define MANIFEST_MAGIC "cstream-rocksdb-checkpoint 1"

/* =========================================================== manifest */

/* A plain file name: 1..255 of [A-Za-z0-9._-], not starting with a dot. */
static int name_ok(cs_slice s) {
  if (s.len == 0 || s.len > CS__ROCKSDB_NAME_MAX_LEN || s.data[0] == '.')
    return 0;
  for (size_t i = 0; i < s.len; i++) {
    char c = s.data[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static int parse_dec(cs_slice s, uint64_t *v) {
  if (s.len == 0 || s.len > 20) return 0;
  uint64_t r = 0;
  for (size_t i = 0; i < s.len; i++) {
    if (s.data[i] < '0' || s.data[i] > '9') return 0;
    unsigned d = (unsigned)(s.data[i] - '0');
    if (r > (UINT64_MAX - d) / 10) return 0;
    r = r * 10 + d;
  }
  *v = r;
  return 1;
}

static int parse_hex16(cs_slice s, uint64_t *v) {
  if (s.len != 16) return 0;
  uint64_t r = 0;
  for (size_t i = 0; i < 16; i++) {
    char c = s.data[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else
      return 0;
    r = r << 4 | d;
  }
  *v = r;
  return 1;
}

static int slice_is(cs_slice s, const char *lit) {
  size_t n = strlen(lit);
  return s.len == n && memcmp(s.data, lit, n) == 0;
}

/* Splits a line at single spaces into at most max tokens; returns the
 * count, or max + 1 when there are more. */
static int tokens(cs_slice line, cs_slice *t, int max) {
  int n = 0;
  size_t start = 0;
  for (size_t i = 0; i <= line.len; i++) {
    if (i < line.len && line.data[i] != ' ') continue;
    if (n == max) return max + 1;
    t[n].data = line.data + start;
    t[n].len = i - start;
    n++;
    start = i + 1;
  }
  return n;
}

/* Checks a whole manifest (frame, checksum, every line) and then, when
 * visit is not NULL, calls it for each entry. Returns 0, CS_EDECODE, or
 * what visit returned. */
int cs__rocksdb_manifest_parse(const char *d, size_t len,
                               cs__rocksdb_mvisit visit, void *ud) {
  if (d == NULL || len < 2 || d[len - 1] != '\n') return CS_EDECODE;
  size_t last = len - 1; /* the start of the end line */
  while (last > 0 && d[last - 1] != '\n') last--;
  cs_slice t[6];
  cs_slice endl = {d + last, len - 1 - last};
  uint64_t count, sum;
  if (tokens(endl, t, 6) != 3 || !slice_is(t[0], "end") ||
      !parse_dec(t[1], &count) || !parse_hex16(t[2], &sum) ||
      XXH3_64bits(d, last) != sum)
    return CS_EDECODE;
  for (int pass = 0; pass < (visit ? 2 : 1); pass++) {
    size_t at = 0, lineno = 0;
    uint64_t n = 0;
    while (at < last) {
      const char *nl = memchr(d + at, '\n', last - at);
      if (nl == NULL) return CS_EDECODE;
      cs_slice line = {d + at, (size_t)(nl - (d + at))};
      at = (size_t)(nl - d) + 1;
      int nt = tokens(line, t, 6);
      uint64_t v;
      cs__rocksdb_mentry e = {0};
      if (lineno++ == 0) {
        if (!slice_is(line, MANIFEST_MAGIC)) return CS_EDECODE;
        continue;
      }
      if (nt == 2 && slice_is(t[0], "lineage") && parse_hex16(t[1], &v))
        continue;
      if (nt == 4 && slice_is(t[0], "file") && name_ok(t[1]) &&
          parse_dec(t[2], &e.size) && parse_hex16(t[3], &e.hash)) {
        e.type = CS__ROCKSDB_ENT_FILE;
        e.name = t[1];
        e.has_hash = 1;
      } else if ((nt == 3 || nt == 4) && slice_is(t[0], "sst") &&
                 name_ok(t[1]) && parse_dec(t[2], &e.size) &&
                 (nt == 3 || parse_hex16(t[3], &e.hash))) {
        e.type = CS__ROCKSDB_ENT_SST;
        e.name = t[1];
        e.has_hash = nt == 4;
      } else if ((nt == 4 || nt == 5) && slice_is(t[0], "shared") &&
                 name_ok(t[1]) && name_ok(t[2]) && parse_dec(t[3], &e.size) &&
                 (nt == 4 || parse_hex16(t[4], &e.hash))) {
        e.type = CS__ROCKSDB_ENT_SHARED;
        e.name = t[1];
        e.shared = t[2];
        e.has_hash = nt == 5;
      } else {
        return CS_EDECODE;
      }
      n++;
      if (pass == 1) {
        int rc = visit(ud, &e);
        if (rc) return rc;
      }
    }
    if (lineno == 0 || n != count) return CS_EDECODE;
  }
  return 0;
}

typedef struct files_ud {
  void (*fn)(void *ud, const char *shared_name);
  void *ud;
} files_ud;

static int visit_shared_name(void *ud, const cs__rocksdb_mentry *e) {
  files_ud *f = ud;
  if (e->type != CS__ROCKSDB_ENT_SHARED) return 0;
  char name[CS__ROCKSDB_NAME_MAX_LEN + 1];
  memcpy(name, e->shared.data, e->shared.len);
  name[e->shared.len] = '\0';
  f->fn(f->ud, name);
  return 0;
}

int cs_rocksdb_manifest_files(const char *manifest, size_t len,
                              void (*fn)(void *ud, const char *shared_name),
                              void *ud) {
  if (fn == NULL) return CS_EINVAL;
  files_ud f = {fn, ud};
  return cs__rocksdb_manifest_parse(manifest, len, visit_shared_name, &f);
}

/* ========================================================= checkpoint */

void cs__rocksdb_free_sums(cs__rocksdb_sst_sum *sums, size_t n) {
  for (size_t i = 0; i < n; i++) cs_free(sums[i].name);
  cs_free(sums);
}

int cs__rocksdb_sum_cmp(const void *pa, const void *pb) {
  return strcmp(((const cs__rocksdb_sst_sum *)pa)->name,
                ((const cs__rocksdb_sst_sum *)pb)->name);
}

static int is_sst(const char *name) {
  size_t n = strlen(name);
  return n > 4 && strcmp(name + n - 4, ".sst") == 0;
}

int cs__rocksdb_ref_cmp_local(const void *pa, const void *pb) {
  const cs__rocksdb_shared_ref *a = pa, *b = pb;
  size_t n = a->local.len < b->local.len ? a->local.len : b->local.len;
  int c = memcmp(a->local.data, b->local.data, n);
  if (c) return c;
  return a->local.len < b->local.len ? -1 : a->local.len > b->local.len;
}

/* The shared name of a local SST file: the one it was restored under, or
 * <lineage>-<name>. */
static void shared_name_of(cs__rocksdb *r, const char *name, char *out,
                           size_t cap) {
  cs__rocksdb_shared_ref key = {{name, strlen(name)}, {NULL, 0}};
  cs__rocksdb_shared_ref *hit =
      r->nrestored
          ? bsearch(&key, r->restored, r->nrestored,
                    sizeof(cs__rocksdb_shared_ref), cs__rocksdb_ref_cmp_local)
          : NULL;
  if (hit)
    snprintf(out, cap, "%.*s", (int)hit->shared.len, hit->shared.data);
  else if ((size_t)snprintf(out, cap, "%s-%.200s", r->lineage, name) >= cap)
    out[cap - 1] = '\0'; /* SST names are short; never reached */
}

/* Moves src to dst (which must not exist): a rename, or across file
 * systems a copy (fsynced, under a temporary name renamed into place) and
 * the removal of src. When hash is not NULL, reports the XXH3-64 of the
 * content and its size. */
static int move_file(const char *src, const char *dst, uint64_t *size,
                     uint64_t *hash, char *err, size_t errlen) {
  if (rename(src, dst) == 0)
    return hash ? cs__rocksdb_copy_hash(dst, NULL, 0, size, hash, err, errlen)
                : 0;
  if (errno != EXDEV)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot move %s to %s: %s",
                            src, dst, strerror(errno));
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", dst) >= (int)sizeof(tmp))
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "path too long: %s", dst);
  unlink(tmp);
  int rc = cs__rocksdb_copy_hash(src, tmp, 1, size, hash, err, errlen);
  if (rc) return rc;
  if (rename(tmp, dst) != 0) {
    rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot rename %s: %s", tmp,
                          strerror(errno));
    unlink(tmp);
    return rc;
  }
  unlink(src);
  return 0;
}

/* Moves the staged SST file src to dst in the shared directory, unless dst
 * is there already (an earlier checkpoint put it there: same name, same
 * content), in which case src is just dropped: only new files are moved,
 * or copied across file systems. */
static int move_to_shared(const char *src, const char *dst, uint64_t *size,
                          char *err, size_t errlen) {
  struct stat ss, ds;
  if (stat(src, &ss) != 0)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot stat %s: %s", src,
                            strerror(errno));
  *size = (uint64_t)ss.st_size;
  if (stat(dst, &ds) == 0) {
    if (ds.st_size != ss.st_size)
      return cs__rocksdb_errf(
          err, errlen, CS_EIO,
          "shared file %s exists with %lld bytes, not %lld: a name "
          "collision in the shared directory",
          dst, (long long)ds.st_size, (long long)ss.st_size);
    if (unlink(src) != 0)
      return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot remove %s: %s", src,
                              strerror(errno));
    return 0;
  }
  if (errno != ENOENT)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot stat %s: %s", dst,
                            strerror(errno));
  return move_file(src, dst, NULL, NULL, err, errlen);
}

/* The size and XXH3-64 of the staged SST file src (local name name): those
 * of the previous checkpoint when it had the file with the same size (SST
 * files do not change), else read from src. Appends them to next[*nnext]. */
static int sst_sum_of(cs__rocksdb *r, const char *src, const char *name,
                      cs__rocksdb_sst_sum *next, size_t *nnext, char *err,
                      size_t errlen) {
  struct stat st;
  if (stat(src, &st) != 0)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot stat %s: %s", src,
                            strerror(errno));
  cs__rocksdb_sst_sum key = {(char *)name, 0, 0};
  cs__rocksdb_sst_sum *old =
      r->nsums ? bsearch(&key, r->sums, r->nsums, sizeof(cs__rocksdb_sst_sum),
                         cs__rocksdb_sum_cmp)
               : NULL;
  uint64_t size = (uint64_t)st.st_size, hash;
  if (old && old->size == size) {
    hash = old->hash;
  } else {
    int rc = cs__rocksdb_copy_hash(src, NULL, 0, &size, &hash, err, errlen);
    if (rc) return rc;
  }
  char *dup = cs_strdup(name);
  if (dup == NULL)
    return cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
  next[(*nnext)++] = (cs__rocksdb_sst_sum){dup, size, hash};
  return 0;
}

static int write_new_file(const char *path, const char *data, size_t len,
                          char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot create %s: %s", path,
                            strerror(errno));
  int ok = cs__rocksdb_write_all(fd, data, len) == 0 && fsync(fd) == 0;
  int e = errno;
  ok = close(fd) == 0 && ok;
  if (!ok)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot write %s: %s", path,
                            strerror(e ? e : errno));
  return 0;
}

/* A checkpoint being taken: where its files come from and go, the
 * manifest written so far, and what the backend keeps when it succeeds. */
typedef struct chk {
  cs__rocksdb *r;
  const char *chk_dir;
  const char *shared_dir; /* NULL: a full checkpoint */
  char staging[PATH_MAX]; /* where RocksDB puts the files first */
  char **names;           /* the files in staging, sorted */
  size_t nnames;
  cs__rocksdb_sst_sum *sums; /* of the SST files; r->sums after success */
  size_t nsums;
  cs_buf text; /* the manifest */
  int moved;   /* a file went to shared_dir */
  char *err;
  size_t errlen;
} chk;

/* Has RocksDB flush the memtables and hard-link the live files into the
 * staging directory, then lists them and makes room for the sums of the
 * SST files among them. */
static int stage(chk *c) {
  char *rerr = NULL;
  rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(c->r->db, &rerr);
  if (rerr == NULL) {
    rocksdb_checkpoint_create(cp, c->staging, 0, &rerr); /* 0: always flush */
    rocksdb_checkpoint_object_destroy(cp);
  }
  if (rerr)
    return cs__rocksdb_rocks_errf(c->err, c->errlen, CS_EIO, "checkpoint of",
                                  c->r->workdir, rerr);
  int rc = cs__rocksdb_list_dir(c->staging, &c->names, &c->nnames, c->err,
                                c->errlen);
  if (rc) return rc;
  if (c->nnames &&
      (c->sums = cs_calloc(c->nnames, sizeof(*c->sums))) == NULL)
    return cs__rocksdb_errf(c->err, c->errlen, CS_ENOMEM, "out of memory");
  return 0;
}

/* Moves the staged file name to its place and appends its manifest line: a
 * private file to chk_dir (hashed), an SST file to chk_dir (full) or, under
 * its shared name, to shared_dir (incremental; only new files move). */
static int place_file(chk *c, const char *name) {
  char src[PATH_MAX], dst[PATH_MAX];
  char sname[CS__ROCKSDB_NAME_MAX_LEN + 1];
  uint64_t size = 0, hash = 0;
  int rc;
  if (!name_ok((cs_slice){name, strlen(name)}))
    return cs__rocksdb_errf(c->err, c->errlen, CS_EIO,
                            "unexpected file %s in %s", name, c->staging);
  int shared = is_sst(name) && c->shared_dir != NULL;
  if (shared) shared_name_of(c->r, name, sname, sizeof(sname));
  if (cs__rocksdb_path_join(src, sizeof(src), c->staging, name) ||
      cs__rocksdb_path_join(dst, sizeof(dst),
                            shared ? c->shared_dir : c->chk_dir,
                            shared ? sname : name))
    return cs__rocksdb_errf(c->err, c->errlen, CS_EINVAL,
                            "path too long for %s", name);
  if (is_sst(name)) {
    rc = sst_sum_of(c->r, src, name, c->sums, &c->nsums, c->err, c->errlen);
    if (rc) return rc;
    size = c->sums[c->nsums - 1].size;
    hash = c->sums[c->nsums - 1].hash;
  }
  if (shared) {
    uint64_t moved_size;
    rc = move_to_shared(src, dst, &moved_size, c->err, c->errlen);
    c->moved = 1;
    if (rc == 0)
      rc = cs_buf_printf(&c->text, "shared %s %s %llu %016llx\n", name, sname,
                         (unsigned long long)size, (unsigned long long)hash);
  } else if (is_sst(name)) {
    rc = move_file(src, dst, NULL, NULL, c->err, c->errlen);
    if (rc == 0)
      rc = cs_buf_printf(&c->text, "sst %s %llu %016llx\n", name,
                         (unsigned long long)size, (unsigned long long)hash);
  } else {
    rc = move_file(src, dst, &size, &hash, c->err, c->errlen);
    if (rc == 0)
      rc = cs_buf_printf(&c->text, "file %s %llu %016llx\n", name,
                         (unsigned long long)size, (unsigned long long)hash);
  }
  return rc;
}

/* Places every staged file and writes the manifest's text around their
 * lines: the magic and lineage lines first, then the end line with the
 * entry count and the checksum of everything before it. */
static int place_files(chk *c) {
  int rc = cs_buf_printf(&c->text, "%s\nlineage %s\n", MANIFEST_MAGIC,
                         c->r->lineage);
  for (size_t i = 0; rc == 0 && i < c->nnames; i++)
    rc = place_file(c, c->names[i]);
  if (rc == 0)
    rc = cs_buf_printf(
        &c->text, "end %zu %016llx\n", c->nnames,
        (unsigned long long)XXH3_64bits(c->text.data, c->text.len));
  if (rc == CS_ENOMEM)
    cs__rocksdb_errf(c->err, c->errlen, rc, "out of memory");
  return rc;
}

/* Writes the manifest into chk_dir, then makes the checkpoint last: fsyncs
 * shared_dir (when a file went there), chk_dir and the directory above. */
static int write_manifest(chk *c) {
  char path[PATH_MAX];
  if (cs__rocksdb_path_join(path, sizeof(path), c->chk_dir,
                            CS_ROCKSDB_MANIFEST_FILE))
    return cs__rocksdb_errf(c->err, c->errlen, CS_EINVAL,
                            "path too long in %s", c->chk_dir);
  int rc = write_new_file(path, c->text.data, c->text.len, c->err, c->errlen);
  if (rc) return rc;
  if (c->moved && cs__rocksdb_fsync_path(c->shared_dir, 1) != 0)
    return cs__rocksdb_errf(c->err, c->errlen, CS_EIO, "cannot sync %s: %s",
                            c->shared_dir, strerror(errno));
  if (cs__rocksdb_fsync_path(c->chk_dir, 1) != 0 ||
      cs__rocksdb_fsync_parent(c->chk_dir) != 0)
    return cs__rocksdb_errf(c->err, c->errlen, CS_EIO, "cannot sync %s: %s",
                            c->chk_dir, strerror(errno));
  return 0;
}

/* A checkpoint between its two phases (cs_rocksdb.h): the cached state
 * to write first, and where the files go. */
struct cs_rocksdb_snap {
  cs__rocksdb *r;
  rocksdb_writebatch_t *wb; /* the dirty cache entries; NULL: none */
  char *chk_dir;
  char *shared_dir; /* NULL: a full checkpoint */
  int exclusive;    /* still holds the backend's exclusive phase */
};

/* Ends the exclusive phase of s: writes to RocksDB may go on. */
static void release_exclusive(cs_rocksdb_snap *s) {
  if (!s->exclusive) return;
  s->exclusive = 0;
  uv_mutex_lock(&s->r->xlock);
  atomic_store(&s->r->exclusive, 0);
  uv_cond_broadcast(&s->r->xcond);
  uv_mutex_unlock(&s->r->xlock);
}

/* Writes the checkpoint's batch of cached entries into RocksDB (once);
 * a failure breaks the backend (the entries are marked clean in a cache
 * that may drop them). */
static int write_batch(cs_rocksdb_snap *s, char *err, size_t errlen) {
  if (s->wb == NULL) return 0;
  char *rerr = NULL;
  rocksdb_write(s->r->db, s->r->wo, s->wb, &rerr);
  rocksdb_writebatch_destroy(s->wb);
  s->wb = NULL;
  if (rerr == NULL) return 0;
  atomic_store(&s->r->broken, 1);
  return cs__rocksdb_rocks_errf(err, errlen, CS_EIO,
                                "write of the cached state of",
                                s->r->workdir, rerr);
}

/* The synchronous phase: copies the dirty cache entries out and makes the
 * backend exclusive to the checkpoint. No I/O. */
int cs_rocksdb_checkpoint_begin(cs_backend *be, const char *chk_dir,
                                const char *shared_dir, cs_rocksdb_snap **out,
                                char *err, size_t errlen) {
  cs__rocksdb_errf(err, errlen, 0, "%s", "");
  if (be == NULL || be->ops != &cs__rocksdb_ops || chk_dir == NULL ||
      out == NULL)
    return cs__rocksdb_errf(
        err, errlen, CS_EINVAL,
        "not a RocksDB backend, or no checkpoint directory");
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (r->readonly)
    return cs__rocksdb_errf(err, errlen, CS_EINVAL,
                            "a read-only backend (%s) takes no checkpoints",
                            r->workdir);
  if (atomic_load(&r->snap_live))
    return cs__rocksdb_errf(err, errlen, CS_EINVAL,
                            "a checkpoint of %s is still being taken",
                            r->workdir);
  if (atomic_load(&r->broken))
    return cs__rocksdb_errf(err, errlen, CS_EIO,
                            "the RocksDB state in %s lost a write", r->workdir);
  cs_rocksdb_snap *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) goto fail_alloc;
  s->r = r;
  if ((s->chk_dir = cs_strdup(chk_dir)) == NULL) goto fail_dirs;
  if (shared_dir && (s->shared_dir = cs_strdup(shared_dir)) == NULL)
    goto fail_dirs;
  if (cs__rocksdb_cache_take(r, &s->wb)) goto fail_dirs;
  s->exclusive = 1;
  atomic_store(&r->exclusive, 1);
  atomic_store(&r->snap_live, 1);
  *out = s;
  return 0;

fail_dirs:
  cs_free(s->chk_dir);
  cs_free(s->shared_dir);
  cs_free(s);
fail_alloc:
  return cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
}

void cs_rocksdb_snap_destroy(cs_rocksdb_snap *s) {
  if (s == NULL) return;
  char err[256];
  if (write_batch(s, err, sizeof(err)))
    fprintf(stderr, "cstream-lua: %s\n", err);
  release_exclusive(s);
  atomic_store(&s->r->snap_live, 0);
  cs_free(s->chk_dir);
  cs_free(s->shared_dir);
  cs_free(s);
}

/* The asynchronous phase: writes the cached state, takes the RocksDB
 * checkpoint into a staging directory inside the working directory (hard
 * links: the same file system) and ends the exclusive phase; then sorts
 * the staged files: private files go to chk_dir (hashed), SST files to
 * chk_dir (full) or, the new ones only, to shared_dir (incremental); then
 * writes the manifest. Staging first matters when chk_dir is on another
 * file system: RocksDB would copy every SST file there, shared or not. */
int cs_rocksdb_checkpoint_finish(cs_rocksdb_snap *s, cs_buf *manifest,
                                 char *err, size_t errlen) {
  cs__rocksdb_errf(err, errlen, 0, "%s", "");
  if (s == NULL) return cs__rocksdb_errf(err, errlen, CS_EINVAL, "no checkpoint");
  cs__rocksdb *r = s->r;
  const char *chk_dir = s->chk_dir;
  chk c = {.r = r,
           .chk_dir = chk_dir,
           .shared_dir = s->shared_dir,
           .err = err,
           .errlen = errlen};
  size_t start = manifest ? manifest->len : 0;
  int made = 0;
  int rc = write_batch(s, err, errlen);
  if (rc) goto fail;
  if (cs__rocksdb_path_join(c.staging, sizeof(c.staging), r->workdir,
                            "checkpoint-staging")) {
    rc = cs__rocksdb_errf(err, errlen, CS_EINVAL, "path too long: %s",
                          r->workdir);
    goto fail;
  }
  cs__rocksdb_remove_tree(c.staging); /* left by a failed attempt */
  if (mkdir(chk_dir, 0755) != 0) {
    rc = cs__rocksdb_errf(err, errlen, CS_EIO,
                          "cannot create checkpoint directory %s: %s", chk_dir,
                          strerror(errno));
    goto fail;
  }
  made = 1;
  rc = stage(&c);
  release_exclusive(s);
  if (rc) goto fail;
  rc = place_files(&c);
  if (rc) goto fail;
  rc = write_manifest(&c);
  if (rc) goto fail;
  if (manifest && cs_buf_append(manifest, c.text.data, c.text.len)) {
    rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
    goto fail;
  }
  cs__rocksdb_remove_tree(c.staging);
  cs__rocksdb_free_names(c.names, c.nnames);
  cs__rocksdb_free_sums(r->sums, r->nsums);
  r->sums = c.sums;
  r->nsums = c.nsums;
  cs_buf_free(&c.text);
  return 0;

fail:
  release_exclusive(s);
  if (c.staging[0]) cs__rocksdb_remove_tree(c.staging);
  if (made) cs__rocksdb_remove_tree(chk_dir);
  if (manifest) manifest->len = start;
  cs__rocksdb_free_names(c.names, c.nnames);
  cs__rocksdb_free_sums(c.sums, c.nsums);
  cs_buf_free(&c.text);
  return rc;
}

/* Both phases at once, on the backend's thread. */
int cs_rocksdb_checkpoint(cs_backend *be, const char *chk_dir,
                          const char *shared_dir, cs_buf *manifest, char *err,
                          size_t errlen) {
  cs_rocksdb_snap *s;
  int rc = cs_rocksdb_checkpoint_begin(be, chk_dir, shared_dir, &s, err, errlen);
  if (rc) return rc;
  rc = cs_rocksdb_checkpoint_finish(s, manifest, err, errlen);
  cs_rocksdb_snap_destroy(s);
  return rc;
}
