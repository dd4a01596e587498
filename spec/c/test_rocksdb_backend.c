/*
 * test_rocksdb_backend.c - the RocksDB backend (cs_rocksdb.h): the backend
 * contract of backend_contract.h, then native checkpoints: full and
 * incremental, restore, shared-file naming across restores (lineage),
 * read-only opening, damaged checkpoints and bad directories.
 *
 * Everything happens under one mkdtemp directory in /tmp, removed at the
 * end. CS_ROCKSDB_BENCH=1 adds the timing of checkpoints of 1M keys;
 * CS_TEST_ONLY=<part> runs one part (see main); CS_CONTRACT_FULL=1 runs
 * every case of the contract's fuzz loops (see backend_contract.h).
 */
#include "backend_contract.h"
#include "state/cs_rocksdb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[] = "/tmp/cs_rocksdb_test.XXXXXX";
static int seq;

/* ============================================================ helpers */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}


/* A new path under the test root: <root>/<what>-<n>. */
static const char *fresh(const char *what) {
  static char paths[64][PATH_MAX]; /* more than any test holds at once */
  static int next;
  char *p = paths[next++ % 64];
  snprintf(p, PATH_MAX, "%s/%s-%d", root, what, seq++);
  return p;
}

static char *dupstr(const char *s) {
  char *d = malloc(strlen(s) + 1);
  strcpy(d, s);
  return d;
}

static cs_backend *make_rocksdb(void) {
  char dir[PATH_MAX], err[512];
  snprintf(dir, sizeof(dir), "%s/be-%d", root, seq++);
  cs_backend *be = NULL;
  int rc = cs_rocksdb_backend_open(dir, NULL, &be, err, sizeof(err));
  if (rc && rc != CS_ENOMEM) fprintf(stderr, "open %s: %s\n", dir, err);
  return rc ? NULL : be;
}

/* value_cache_bytes: 0 the default, SIZE_MAX none. */
static cs_backend *make_cached(size_t value_cache_bytes) {
  char dir[PATH_MAX], err[512];
  snprintf(dir, sizeof(dir), "%s/be-%d", root, seq++);
  cs_rocksdb_options o = {0};
  o.value_cache_bytes = value_cache_bytes;
  cs_backend *be = NULL;
  int rc = cs_rocksdb_backend_open(dir, &o, &be, err, sizeof(err));
  if (rc && rc != CS_ENOMEM) fprintf(stderr, "open %s: %s\n", dir, err);
  return rc ? NULL : be;
}

/* A cache so small that it is written out and emptied every few puts. */
static cs_backend *make_tiny_cache(void) { return make_cached(4096); }

static cs_backend *open_with(const char *dir, size_t write_buffer) {
  cs_rocksdb_options o = {0};
  o.write_buffer_bytes = write_buffer;
  char err[512];
  cs_backend *be = NULL;
  int rc = cs_rocksdb_backend_open(dir, &o, &be, err, sizeof(err));
  if (rc) fprintf(stderr, "open %s: %s\n", dir, err);
  CHECK_EQ_INT(rc, 0);
  return be;
}

static cs_backend *restore(const char *chk, const char *shared) {
  char err[512];
  cs_backend *be = NULL;
  int rc = cs_rocksdb_restore(fresh("restored"), chk, shared, NULL, &be, err,
                              sizeof(err));
  if (rc) fprintf(stderr, "restore %s: %s\n", chk, err);
  CHECK_EQ_INT(rc, 0);
  return be;
}

static int checkpoint(cs_backend *be, const char *chk, const char *shared,
                      cs_buf *manifest) {
  char err[512];
  int rc = cs_rocksdb_checkpoint(be, chk, shared, manifest, err, sizeof(err));
  if (rc) fprintf(stderr, "checkpoint %s: %s\n", chk, err);
  return rc;
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

static long long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Counts the entries of dir; with suffix, only names ending in it. */
static int count_files(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    size_t l = strlen(de->d_name), sl = suffix ? strlen(suffix) : 0;
    if (de->d_name[0] == '.') continue;
    if (suffix && (l < sl || strcmp(de->d_name + l - sl, suffix) != 0))
      continue;
    n++;
  }
  closedir(d);
  return n;
}

/* The shared names a manifest references. */
typedef struct names {
  char **v;
  int n;
} names;

static void add_name(void *ud, const char *name) {
  names *ns = ud;
  ns->v = realloc(ns->v, (size_t)(ns->n + 1) * sizeof(char *));
  ns->v[ns->n++] = dupstr(name);
}

static names shared_of(const cs_buf *manifest) {
  names ns = {NULL, 0};
  CHECK_EQ_INT(
      cs_rocksdb_manifest_files(manifest->data, manifest->len, add_name, &ns),
      0);
  return ns;
}

static int has_name(const names *ns, const char *name) {
  for (int i = 0; i < ns->n; i++)
    if (strcmp(ns->v[i], name) == 0) return 1;
  return 0;
}

static void free_names(names *ns) {
  for (int i = 0; i < ns->n; i++) free(ns->v[i]);
  free(ns->v);
  ns->v = NULL;
  ns->n = 0;
}

/* Whether two backends hold the same entries (and the same states). */
static int same_content(cs_backend *a, cs_backend *b) {
  cs_buf da = {0}, db = {0};
  long na = dump(a, 0, 65535, &da), nb = dump(b, 0, 65535, &db);
  int same = na >= 0 && na == nb && da.len == db.len &&
             memcmp(da.data, db.data, da.len) == 0 &&
             a->ops->state_count(a) == b->ops->state_count(b);
  cs_buf_free(&da);
  cs_buf_free(&db);
  return same;
}

/* Puts n VALUE entries "key-<i>" -> <tag>-<i> padded to vlen bytes. */
static void fill(cs_backend *be, int st, int first, int n, const char *tag,
                 int vlen) {
  char kb[32], vb[256];
  for (int i = first; i < first + n; i++) {
    int kl = snprintf(kb, sizeof(kb), "key-%07d", i);
    memset(vb, '.', sizeof(vb));
    snprintf(vb, sizeof(vb), "%s-%d", tag, i);
    if (be->ops->put(be, st, i % NKG, B(kb, (size_t)kl), NULL,
                     B(vb, (size_t)vlen)) != 0) {
      CHECK(0 && "put failed");
      return;
    }
  }
}

/* Overwrites the keys i*100 + off (1% of n keys) with values tagged tag. */
static void change_one_percent(cs_backend *be, int st, int n, int off,
                               const char *tag, int vlen) {
  for (int i = off; i < n; i += 100) fill(be, st, i, 1, tag, vlen);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ================================================== full checkpoints */

static void test_full_checkpoint(void) {
  cs_backend *be = make_rocksdb();
  populate(be, 5000);
  const char *chk = fresh("chk-full");
  cs_buf man = {0};
  cs_buf_append(&man, "x", 1); /* the manifest is appended */
  CHECK_EQ_INT(checkpoint(be, chk, NULL, &man), 0);
  CHECK(man.len > 1 && man.data[0] == 'x');
  names ns = {NULL, 0};
  CHECK_EQ_INT(
      cs_rocksdb_manifest_files(man.data + 1, man.len - 1, add_name, &ns), 0);
  CHECK_EQ_INT(ns.n, 0); /* a full checkpoint shares nothing */
  CHECK(count_files(chk, ".sst") > 0);
  char path[PATH_MAX];
  snprintf(path, sizeof(path), "%s/%s", chk, CS_ROCKSDB_MANIFEST_FILE);
  CHECK_EQ_INT(file_size(path), (long long)man.len - 1);

  /* Writes after the checkpoint are not in it. */
  int v = be->ops->register_state(be, "pop.value", CS_STATE_VALUE);
  cs_backend *r = restore(chk, NULL);
  CHECK(r != NULL && same_content(be, r));
  CHECK_EQ_INT(be->ops->put(be, v, 1, S("later"), NULL, S("x")), 0);
  CHECK(!same_content(be, r));
  /* The states come back with their ids, names and kinds. */
  for (int i = 0; i < be->ops->state_count(be); i++) {
    const char *n1, *n2;
    cs_state_kind k1, k2;
    CHECK_EQ_INT(be->ops->state_info(be, i, &n1, &k1), 0);
    CHECK_EQ_INT(r->ops->state_info(r, i, &n2, &k2), 0);
    CHECK_EQ_STR(n1, n2);
    CHECK_EQ_INT(k1, k2);
  }
  /* A restored backend is a working one: it writes and checkpoints. */
  char kb[5];
  int l = r->ops->register_state(r, "pop.list", CS_STATE_LIST);
  CHECK_EQ_INT(r->ops->append(r, l, 1, key_of(1, kb), S("more;")), 0);
  CHECK(get_is(r, l, 1, key_of(1, kb), NULL, S("item1.0;more;")));
  const char *chk2 = fresh("chk-full");
  CHECK_EQ_INT(checkpoint(r, chk2, NULL, NULL), 0);
  cs_backend *r2 = restore(chk2, NULL);
  CHECK(r2 != NULL && same_content(r, r2));
  r2->ops->destroy(r2);
  r->ops->destroy(r);

  /* A checkpoint directory that exists already, or whose parent does not,
   * is an error that leaves it alone. */
  char err[512] = "";
  CHECK(cs_rocksdb_checkpoint(be, chk, NULL, NULL, err, sizeof(err)) != 0);
  CHECK(strlen(err) > 0);
  CHECK(exists(path));
  snprintf(path, sizeof(path), "%s/no/such/dir", root);
  CHECK(cs_rocksdb_checkpoint(be, path, NULL, NULL, err, sizeof(err)) != 0);
  /* Not a RocksDB backend. */
  cs_backend *heap = cs_heap_backend_create();
  CHECK_EQ_INT(cs_rocksdb_checkpoint(heap, fresh("chk"), NULL, NULL, err,
                                     sizeof(err)),
               CS_EINVAL);
  heap->ops->destroy(heap);
  free_names(&ns);
  cs_buf_free(&man);
  be->ops->destroy(be);
}

/* =========================================== incremental checkpoints */

static void test_incremental(void) {
  enum { N = 100000, VLEN = 64 };
  const char *shared = fresh("shared");
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  /* A write buffer that holds the 100k keys: one flush per checkpoint, so
   * the file counts below do not depend on background compactions. */
  cs_backend *be = open_with(fresh("incr"), 64u << 20);
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  int l = be->ops->register_state(be, "l", CS_STATE_LIST);
  fill(be, v, 0, N, "first", VLEN);
  for (int i = 0; i < 1000; i++)
    be->ops->append(be, l, i % NKG, S("list"), S("[item]"));

  cs_buf m1 = {0}, m2 = {0};
  const char *chk1 = fresh("chk-incr");
  CHECK_EQ_INT(checkpoint(be, chk1, shared, &m1), 0);
  CHECK_EQ_INT(count_files(chk1, ".sst"), 0); /* only private files */
  int n1 = count_files(shared, NULL);
  names s1 = shared_of(&m1);
  CHECK_EQ_INT(s1.n, n1);
  CHECK(n1 >= 2); /* at least one SST file per state */
  cs_backend *at1 = restore(chk1, shared);
  CHECK(at1 != NULL && same_content(be, at1));

  /* Change 1% of the keys: the second checkpoint keeps every file of the
   * first and moves only the new one(s). */
  change_one_percent(be, v, N, 7, "second", VLEN);
  const char *chk2 = fresh("chk-incr");
  double t0 = now_s();
  CHECK_EQ_INT(checkpoint(be, chk2, shared, &m2), 0);
  double t1 = now_s();
  int n2 = count_files(shared, NULL);
  names s2 = shared_of(&m2);
  int common = 0;
  long long bytes_all = 0, bytes_new = 0;
  for (int i = 0; i < s2.n; i++) {
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/%s", shared, s2.v[i]);
    bytes_all += file_size(p);
    if (has_name(&s1, s2.v[i]))
      common++;
    else
      bytes_new += file_size(p);
  }
  printf("incremental checkpoint after 1%% of %d keys changed: %d shared "
         "files referenced, %d of them from the first checkpoint, %d new "
         "file(s) in the shared dir, %lld of %lld bytes new, %.1f ms\n",
         N, s2.n, common, n2 - n1, bytes_new, bytes_all, (t1 - t0) * 1e3);
  CHECK_EQ_INT(common, s1.n);
  CHECK(n2 - n1 >= 1 && n2 - n1 <= 2);
  CHECK_EQ_INT(s2.n - common, n2 - n1);
  CHECK(bytes_new * 20 < bytes_all); /* under 5% */

  /* Both checkpoints restore to what the backend held at the time. */
  cs_backend *r1 = restore(chk1, shared), *r2 = restore(chk2, shared);
  CHECK(r1 != NULL && r2 != NULL);
  CHECK(same_content(r1, at1));
  CHECK(same_content(r2, be));
  CHECK(!same_content(r1, r2));
  char kb[32], vb[VLEN];
  memset(vb, '.', sizeof(vb));
  snprintf(vb, sizeof(vb), "second-%d", 707);
  int kl = snprintf(kb, sizeof(kb), "key-%07d", 707);
  CHECK(get_is(r2, v, 707 % NKG, B(kb, (size_t)kl), NULL, B(vb, VLEN)));

  /* A checkpoint of a restored backend references the files it was
   * restored from under their old names: nothing is copied again. */
  const char *chk3 = fresh("chk-incr");
  cs_buf m3 = {0};
  CHECK_EQ_INT(checkpoint(r2, chk3, shared, &m3), 0);
  names s3 = shared_of(&m3);
  int reused = 0;
  for (int i = 0; i < s3.n; i++) reused += has_name(&s2, s3.v[i]);
  CHECK_EQ_INT(reused, s2.n);
  CHECK_EQ_INT(count_files(shared, NULL), n2); /* nothing new */
  cs_backend *r3 = restore(chk3, shared);
  CHECK(r3 != NULL && same_content(r3, be));

  /* Checkpoints may go to another directory than the working one's file
   * system would allow links to; at least different directories work, and
   * the manifest file in the checkpoint equals the returned manifest. */
  char p[PATH_MAX];
  snprintf(p, sizeof(p), "%s/%s", chk2, CS_ROCKSDB_MANIFEST_FILE);
  CHECK_EQ_INT(file_size(p), (long long)m2.len);

  r1->ops->destroy(r1);
  r2->ops->destroy(r2);
  r3->ops->destroy(r3);
  at1->ops->destroy(at1);
  free_names(&s1);
  free_names(&s2);
  free_names(&s3);
  cs_buf_free(&m1);
  cs_buf_free(&m2);
  cs_buf_free(&m3);
  be->ops->destroy(be);
}

/* ============================================================ lineage */

/* The file part of a shared name "<lineage>-<file>". */
static const char *local_part(const char *shared_name) {
  const char *d = strchr(shared_name, '-');
  return d ? d + 1 : shared_name;
}

/* Restore from checkpoint 1, write, checkpoint again into the same shared
 * directory. The restored instance numbers its new SST files from where
 * checkpoint 1 left off, as the original did after checkpoint 1, so the
 * same SST names come back with other contents; the original's later
 * checkpoints must stay intact. */
static void test_lineage(void) {
  enum { ROUNDS = 9, N = 2000 };
  const char *shared = fresh("shared");
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  cs_backend *a = open_with(fresh("lineage-a"), 0);
  int v = a->ops->register_state(a, "v", CS_STATE_VALUE);
  fill(a, v, 0, N, "a", 40);
  char *chk[ROUNDS + 1];
  cs_buf dumps[ROUNDS + 1], m = {0};
  names an = {NULL, 0}; /* every shared name of a's checkpoints */
  for (int round = 0; round <= ROUNDS; round++) {
    if (round > 0) change_one_percent(a, v, N, round, "a", 40);
    chk[round] = dupstr(fresh("chk-lin"));
    cs_buf_reset(&m);
    CHECK_EQ_INT(checkpoint(a, chk[round], shared, &m), 0);
    cs_rocksdb_manifest_files(m.data, m.len, add_name, &an);
    memset(&dumps[round], 0, sizeof(cs_buf));
    CHECK(dump(a, 0, 65535, &dumps[round]) == N);
  }
  a->ops->destroy(a);

  /* b continues from checkpoint 0 with other writes and checkpoints. */
  cs_backend *b = restore(chk[0], shared);
  int collisions = 0;
  const char *last = NULL;
  for (int round = 0; round < 4; round++) {
    change_one_percent(b, v, N, 50 + round, "b", 40);
    last = fresh("chk-lin");
    cs_buf_reset(&m);
    CHECK_EQ_INT(checkpoint(b, last, shared, &m), 0);
    names bn = shared_of(&m);
    for (int i = 0; i < bn.n; i++) {
      for (int j = 0; j < an.n; j++) {
        if (strcmp(local_part(bn.v[i]), local_part(an.v[j])) == 0 &&
            strcmp(bn.v[i], an.v[j]) != 0) {
          collisions++;
          break;
        }
      }
    }
    free_names(&bn);
  }
  printf("lineage: %d SST file name(s) of the restored instance repeat "
         "names of the original's later checkpoints\n", collisions);
  CHECK(collisions > 0); /* the case the lineage exists for did happen */

  /* Every checkpoint of a, taken before b existed, is intact. */
  cs_buf d = {0};
  for (int round = 0; round <= ROUNDS; round++) {
    cs_backend *r = restore(chk[round], shared);
    CHECK(r != NULL);
    CHECK_EQ_INT(dump(r, 0, 65535, &d), N);
    CHECK(d.len == dumps[round].len &&
          memcmp(d.data, dumps[round].data, d.len) == 0);
    r->ops->destroy(r);
    cs_buf_free(&dumps[round]);
    free(chk[round]);
  }
  cs_backend *rb = restore(last, shared);
  CHECK(rb != NULL && same_content(rb, b));
  rb->ops->destroy(rb);
  b->ops->destroy(b);
  free_names(&an);
  cs_buf_free(&d);
  cs_buf_free(&m);
}

/* =================================================== damaged checkpoints */

static void copy_tree(const char *from, const char *to) {
  char cmd[3 * PATH_MAX];
  snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", from, to);
  CHECK_EQ_INT(system(cmd), 0);
}

/* Restores chk (shared) expecting the error rc with a message naming
 * `names_file`; the working directory must be gone afterwards. */
static void restore_fails(const char *chk, const char *shared, int rc,
                          const char *names_file) {
  char err[1024] = "";
  cs_backend *be = NULL;
  const char *wd = fresh("bad-restore");
  int got = cs_rocksdb_restore(wd, chk, shared, NULL, &be, err, sizeof(err));
  if (got != rc || strstr(err, names_file) == NULL) {
    fprintf(stderr, "restore: rc %d (want %d), message \"%s\" (want it to "
            "name %s)\n", got, rc, err, names_file);
    CHECK(0);
  }
  CHECK(be == NULL);
  CHECK(!exists(wd));
}

/* cs_rocksdb_verify of chk (shared): expects rc, and for an error a
 * message naming `names_file`. */
static void verify_is(const char *chk, const char *shared, int rc,
                      const char *names_file) {
  char err[1024] = "";
  int got = cs_rocksdb_verify(chk, shared, err, sizeof(err));
  if (got != rc || (rc && strstr(err, names_file) == NULL)) {
    fprintf(stderr, "verify: rc %d (want %d), message \"%s\" (want it to "
            "name %s)\n", got, rc, err, names_file ? names_file : "-");
    CHECK(0);
  }
}

/* Flips one byte of the file at path (in place: damage_begin first). */
static void flip_byte(const char *path, off_t at) {
  int fd = open(path, O_RDWR);
  char c;
  CHECK(pread(fd, &c, 1, at) == 1);
  c ^= 1;
  CHECK(pwrite(fd, &c, 1, at) == 1);
  close(fd);
}

/* Replaces path by a copy (a new inode) to be damaged, keeping the
 * original aside: a checkpoint's files may be hard links to a live working
 * directory and must never be modified in place. */
static void damage_begin(const char *path, char *saved, size_t cap) {
  snprintf(saved, cap, "%s.saved", path);
  CHECK_EQ_INT(rename(path, saved), 0);
  copy_tree(saved, path);
}

static void damage_end(const char *path, const char *saved) {
  unlink(path);
  CHECK_EQ_INT(rename(saved, path), 0);
}

static void test_damaged(void) {
  const char *shared = fresh("shared");
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  cs_backend *be = open_with(fresh("damaged"), 0);
  populate(be, 3000);
  const char *chk = fresh("chk-dmg");
  cs_buf m = {0};
  CHECK_EQ_INT(checkpoint(be, chk, shared, &m), 0);
  names s = shared_of(&m);
  CHECK(s.n >= 2);
  char p[PATH_MAX], saved[PATH_MAX + 16];
  verify_is(chk, shared, 0, NULL);

  /* A shared file missing, then truncated, then with a changed byte of
   * the same size: restore links SST files after checking sizes only, and
   * verify reads them. */
  snprintf(p, sizeof(p), "%s/%s", shared, s.v[0]);
  damage_begin(p, saved, sizeof(saved));
  CHECK_EQ_INT(unlink(p), 0);
  restore_fails(chk, shared, CS_ENOTFOUND, s.v[0]);
  verify_is(chk, shared, CS_ENOTFOUND, s.v[0]);
  copy_tree(saved, p);
  CHECK_EQ_INT(truncate(p, file_size(p) / 2), 0);
  restore_fails(chk, shared, CS_EDECODE, s.v[0]);
  verify_is(chk, shared, CS_EDECODE, s.v[0]);
  unlink(p);
  copy_tree(saved, p);
  flip_byte(p, file_size(p) / 3);
  verify_is(chk, shared, CS_EDECODE, s.v[0]);
  damage_end(p, saved);
  verify_is(chk, shared, 0, NULL);

  /* A private file with a flipped byte, then missing. */
  snprintf(p, sizeof(p), "%s/CURRENT", chk);
  damage_begin(p, saved, sizeof(saved));
  int fd = open(p, O_RDWR);
  char c;
  CHECK(pread(fd, &c, 1, 0) == 1);
  c ^= 1;
  CHECK(pwrite(fd, &c, 1, 0) == 1);
  close(fd);
  restore_fails(chk, shared, CS_EDECODE, p);
  verify_is(chk, shared, CS_EDECODE, p);
  CHECK_EQ_INT(unlink(p), 0);
  restore_fails(chk, shared, CS_ENOTFOUND, p);
  damage_end(p, saved);

  /* The manifest damaged, then missing; no shared directory given. */
  snprintf(p, sizeof(p), "%s/%s", chk, CS_ROCKSDB_MANIFEST_FILE);
  damage_begin(p, saved, sizeof(saved));
  CHECK_EQ_INT(truncate(p, file_size(p) - 3), 0);
  restore_fails(chk, shared, CS_EDECODE, CS_ROCKSDB_MANIFEST_FILE);
  CHECK_EQ_INT(unlink(p), 0);
  restore_fails(chk, shared, CS_ENOTFOUND, CS_ROCKSDB_MANIFEST_FILE);
  damage_end(p, saved);
  restore_fails(chk, NULL, CS_EINVAL, chk);
  verify_is(chk, NULL, CS_EINVAL, chk);

  /* Repaired, it restores; the working backend never noticed. */
  cs_backend *r = restore(chk, shared);
  CHECK(r != NULL && same_content(r, be));

  /* A checkpoint of the restored backend records the checksums of the SST
   * files it came with (known from the manifest, not read again) and of
   * the new ones. */
  fill(r, 0, 0, 10, "after", 20);
  const char *chk2 = fresh("chk-dmg2");
  cs_buf m2 = {0};
  CHECK_EQ_INT(checkpoint(r, chk2, shared, &m2), 0);
  int nshared = 0, hashed = 0;
  for (char *line = m2.data; line && line < m2.data + m2.len;) {
    char *nl = memchr(line, '\n', (size_t)(m2.data + m2.len - line));
    int spaces = 0;
    for (char *c = line; c < (nl ? nl : m2.data + m2.len); c++) spaces += *c == ' ';
    if (strncmp(line, "shared ", 7) == 0) {
      nshared++;
      hashed += spaces == 4;
    }
    line = nl ? nl + 1 : NULL;
  }
  CHECK(nshared > s.n);
  CHECK_EQ_INT(hashed, nshared);
  verify_is(chk2, shared, 0, NULL);
  cs_buf_free(&m2);
  r->ops->destroy(r);

  /* A full checkpoint: a changed SST file in the checkpoint directory. */
  const char *full = fresh("chk-dmg-full");
  CHECK_EQ_INT(checkpoint(be, full, NULL, NULL), 0);
  verify_is(full, NULL, 0, NULL);
  DIR *d = opendir(full);
  struct dirent *de;
  p[0] = '\0';
  while ((de = readdir(d)) != NULL)
    if (strstr(de->d_name, ".sst") && p[0] == '\0')
      snprintf(p, sizeof(p), "%s/%s", full, de->d_name);
  closedir(d);
  CHECK(p[0] != '\0');
  damage_begin(p, saved, sizeof(saved));
  flip_byte(p, 100);
  verify_is(full, NULL, CS_EDECODE, p);
  damage_end(p, saved);
  verify_is(full, NULL, 0, NULL);

  /* cs_rocksdb_manifest_files: any damage is CS_EDECODE with no call. */
  long bad = 0;
  for (size_t i = 0; i < m.len; i++) {
    names ns = {NULL, 0};
    m.data[i] ^= 0x20;
    if (cs_rocksdb_manifest_files(m.data, m.len, add_name, &ns) !=
            CS_EDECODE ||
        ns.n != 0)
      bad++;
    m.data[i] ^= 0x20;
    free_names(&ns);
  }
  for (size_t n = 0; n < m.len; n++) {
    names ns = {NULL, 0};
    if (cs_rocksdb_manifest_files(m.data, n, add_name, &ns) != CS_EDECODE ||
        ns.n != 0)
      bad++;
    free_names(&ns);
  }
  CHECK_EQ_INT(bad, 0);
  free_names(&s);
  cs_buf_free(&m);
  be->ops->destroy(be);
}

/* ============================================================ read-only */

static void test_readonly(void) {
  const char *shared = fresh("shared");
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  cs_backend *be = open_with(fresh("ro-src"), 0);
  populate(be, 4000);
  const char *chk = fresh("chk-ro");
  CHECK_EQ_INT(checkpoint(be, chk, shared, NULL), 0);
  const char *scratch = fresh("scratch");
  char err[512];
  cs_backend *ro = NULL;
  int rc = cs_rocksdb_open_readonly(chk, shared, scratch, &ro, err,
                                    sizeof(err));
  if (rc) fprintf(stderr, "open_readonly: %s\n", err);
  CHECK_EQ_INT(rc, 0);
  CHECK(same_content(be, ro));
  CHECK_EQ_INT(scan_count(ro, 0, 63), expected(0, 63));

  /* What a rescale does: copy key groups [0, 63] into a new backend. */
  cs_buf snap = {0}, d1 = {0}, d2 = {0};
  CHECK_EQ_INT(cs_backend_snapshot(ro, 0, 63, &snap), 0);
  cs_backend *lo = make_rocksdb();
  CHECK_EQ_INT(cs_backend_restore(lo, snap.data, snap.len, 0, 63), 0);
  CHECK_EQ_INT(dump(lo, 0, 65535, &d1), expected(0, 63));
  CHECK_EQ_INT(dump(be, 0, 63, &d2), expected(0, 63));
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  lo->ops->destroy(lo);

  /* Reads work; writes and new states are refused. */
  char kb[5];
  int v = ro->ops->register_state(ro, "pop.value", CS_STATE_VALUE);
  int l = ro->ops->register_state(ro, "pop.list", CS_STATE_LIST);
  CHECK(v >= 0 && l >= 0);
  CHECK(get_is(ro, v, 9, key_of(9, kb), NULL, S("value-9")));
  CHECK_EQ_INT(ro->ops->register_state(ro, "new", CS_STATE_VALUE), CS_EINVAL);
  CHECK_EQ_INT(ro->ops->register_state(ro, "pop.value", CS_STATE_LIST),
               CS_ESTATE);
  CHECK_EQ_INT(ro->ops->put(ro, v, 9, key_of(9, kb), NULL, S("x")), CS_EINVAL);
  CHECK_EQ_INT(ro->ops->del(ro, v, 9, key_of(9, kb), NULL), CS_EINVAL);
  CHECK_EQ_INT(ro->ops->append(ro, l, 9, key_of(9, kb), S("x")), CS_EINVAL);
  CHECK_EQ_INT(cs_rocksdb_checkpoint(ro, fresh("chk"), NULL, NULL, err,
                                     sizeof(err)),
               CS_EINVAL);
  CHECK(exists(scratch));
  ro->ops->destroy(ro);
  CHECK(!exists(scratch));
  cs_buf_free(&snap);
  cs_buf_free(&d1);
  cs_buf_free(&d2);
  be->ops->destroy(be);
}

/* ============================================ generic snapshots, heap */

static void test_cross_snapshot(void) {
  cs_backend *heap = cs_heap_backend_create(), *rdb = make_rocksdb();
  populate(heap, 3000);
  cs_buf snap = {0};
  CHECK_EQ_INT(cs_backend_snapshot(heap, 0, 65535, &snap), 0);
  CHECK_EQ_INT(cs_backend_restore(rdb, snap.data, snap.len, 0, 65535), 0);
  CHECK(same_content(heap, rdb));
  cs_backend *back = cs_heap_backend_create();
  cs_buf_reset(&snap);
  CHECK_EQ_INT(cs_backend_snapshot(rdb, 0, 65535, &snap), 0);
  CHECK_EQ_INT(cs_backend_restore(back, snap.data, snap.len, 0, 65535), 0);
  CHECK(same_content(heap, back));
  back->ops->destroy(back);
  heap->ops->destroy(heap);
  rdb->ops->destroy(rdb);
  cs_buf_free(&snap);
}

/* ==================================================== across file systems */

/* Checkpoints to, and restores from, another file system than the working
 * directories' (when /dev/shm is one): files are copied, not linked. */
static void test_other_fs(void) {
  char other[] = "/dev/shm/cs_rocksdb_test.XXXXXX";
  struct stat a, b;
  if (stat(root, &a) != 0 || stat("/dev/shm", &b) != 0 ||
      a.st_dev == b.st_dev || mkdtemp(other) == NULL) {
    printf("no other file system at /dev/shm: cross-file-system paths "
           "not tested\n");
    return;
  }
  char shared[PATH_MAX], chk[3][PATH_MAX];
  snprintf(shared, sizeof(shared), "%s/shared", other);
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  for (int i = 0; i < 3; i++) snprintf(chk[i], PATH_MAX, "%s/chk-%d", other, i);
  cs_backend *be = open_with(fresh("otherfs"), 0);
  populate(be, 3000);
  CHECK_EQ_INT(checkpoint(be, chk[0], NULL, NULL), 0);
  CHECK_EQ_INT(checkpoint(be, chk[1], shared, NULL), 0);
  int n1 = count_files(shared, NULL);
  cs_backend *r0 = restore(chk[0], NULL), *r1 = restore(chk[1], shared);
  CHECK(r0 != NULL && same_content(r0, be));
  CHECK(r1 != NULL && same_content(r1, be));
  int v = be->ops->register_state(be, "pop.value", CS_STATE_VALUE);
  CHECK_EQ_INT(be->ops->put(be, v, 3, S("new"), NULL, S("x")), 0);
  CHECK_EQ_INT(checkpoint(be, chk[2], shared, NULL), 0);
  CHECK_EQ_INT(count_files(shared, NULL), n1 + 1);
  cs_backend *r2 = restore(chk[2], shared);
  CHECK(r2 != NULL && same_content(r2, be));
  r0->ops->destroy(r0);
  r1->ops->destroy(r1);
  r2->ops->destroy(r2);
  be->ops->destroy(be);
  nftw(other, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

/* ============================================================== misc */

static void test_directories(void) {
  char err[512], p[PATH_MAX];
  cs_backend *be = NULL;

  /* A working directory that cannot be created. */
  snprintf(p, sizeof(p), "%s/plain-file", root);
  int fd = open(p, O_WRONLY | O_CREAT, 0644);
  close(fd);
  snprintf(p, sizeof(p), "%s/plain-file/sub", root);
  err[0] = 0;
  CHECK(cs_rocksdb_backend_open(p, NULL, &be, err, sizeof(err)) != 0);
  CHECK(be == NULL && strstr(err, p) != NULL);
  CHECK(cs_rocksdb_backend_open("/proc/cs-no-such/x", NULL, &be, err,
                                sizeof(err)) != 0);
  CHECK(be == NULL && strstr(err, "/proc/cs-no-such/x") != NULL);
  CHECK(cs_rocksdb_backend_open("", NULL, &be, err, sizeof(err)) != 0);
  CHECK(cs_rocksdb_backend_open(NULL, NULL, &be, err, sizeof(err)) != 0);
  CHECK(be == NULL);

  /* A non-empty directory that is not ours is refused, and kept. */
  const char *mine = fresh("users-dir");
  CHECK_EQ_INT(mkdir(mine, 0755), 0);
  snprintf(p, sizeof(p), "%s/precious", mine);
  fd = open(p, O_WRONLY | O_CREAT, 0644);
  close(fd);
  CHECK_EQ_INT(cs_rocksdb_backend_open(mine, NULL, &be, err, sizeof(err)),
               CS_EINVAL);
  CHECK(strstr(err, "refusing") != NULL && exists(p));

  /* A working directory left behind (a crash) is wiped and reused; an
   * existing empty directory is used. */
  const char *left = fresh("left");
  CHECK_EQ_INT(mkdir(left, 0755), 0);
  CHECK_EQ_INT(cs_rocksdb_backend_open(left, NULL, &be, err, sizeof(err)), 0);
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  CHECK_EQ_INT(be->ops->put(be, v, 0, S("k"), NULL, S("old")), 0);
  CHECK_EQ_INT(checkpoint(be, fresh("chk"), NULL, NULL), 0);
  char cmd[2 * PATH_MAX];
  snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s.copy'", left, left);
  CHECK_EQ_INT(system(cmd), 0);
  be->ops->destroy(be);
  CHECK(!exists(left));
  snprintf(cmd, sizeof(cmd), "mv '%s.copy' '%s'", left, left);
  CHECK_EQ_INT(system(cmd), 0);
  CHECK(count_files(left, ".sst") > 0);
  CHECK_EQ_INT(cs_rocksdb_backend_open(left, NULL, &be, err, sizeof(err)), 0);
  CHECK_EQ_INT(be->ops->state_count(be), 0);
  CHECK_EQ_INT(scan_count(be, 0, 65535), 0);
  be->ops->destroy(be);

  /* Restore into a directory that cannot be made. */
  snprintf(p, sizeof(p), "%s/plain-file/sub", root);
  cs_backend *src = make_rocksdb();
  const char *chk = fresh("chk");
  CHECK_EQ_INT(checkpoint(src, chk, NULL, NULL), 0);
  CHECK(cs_rocksdb_restore(p, chk, NULL, NULL, &be, err, sizeof(err)) != 0);
  CHECK(strstr(err, p) != NULL);
  CHECK(cs_rocksdb_open_readonly(chk, NULL, p, &be, err, sizeof(err)) != 0);
  src->ops->destroy(src);
}

/* Keys and user keys longer than the stack buffer of composite keys, and
 * keys of 0xff bytes (whose prefix bound must carry into the length). */
static void test_long_keys(void) {
  cs_backend *be = make_rocksdb();
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  int l = be->ops->register_state(be, "l", CS_STATE_LIST);
  int m = be->ops->register_state(be, "m", CS_STATE_MAP);
  static char big[3][5000];
  size_t lens[3] = {300, 5000, 200};
  for (int i = 0; i < 3; i++)
    for (size_t j = 0; j < lens[i]; j++)
      big[i][j] = i == 2 ? (char)0xff : (char)('a' + (j * 7 + (size_t)i) % 26);
  for (int i = 0; i < 3; i++) {
    cs_slice k = B(big[i], lens[i]), shorter = B(big[i], lens[i] - 1);
    int kg = i == 2 ? 65535 : 77;
    CHECK_EQ_INT(be->ops->put(be, v, kg, k, NULL, S("v")), 0);
    CHECK(get_is(be, v, kg, k, NULL, S("v")));
    CHECK_EQ_INT(get_rc(be, v, kg, shorter, NULL), CS_ENOTFOUND);
    CHECK_EQ_INT(be->ops->append(be, l, kg, k, S("[1]")), 0);
    CHECK_EQ_INT(be->ops->append(be, l, kg, k, S("[2]")), 0);
    CHECK(get_is(be, l, kg, k, NULL, S("[1][2]")));
    /* map: long key with long user keys, and a neighbour that is a prefix */
    for (int u = 0; u < 3; u++) {
      cs_slice uk = B(big[u], lens[u]);
      CHECK_EQ_INT(be->ops->put(be, m, kg, k, &uk, S("mv")), 0);
      CHECK(get_is(be, m, kg, k, &uk, S("mv")));
    }
    cs_slice one = S("x");
    CHECK_EQ_INT(be->ops->put(be, m, kg, shorter, &one, S("neighbour")), 0);
    CHECK_EQ_INT(map_count(be, m, kg, k), 3);
    CHECK_EQ_INT(be->ops->del(be, m, kg, k, NULL), 0);
    CHECK_EQ_INT(map_count(be, m, kg, k), 0);
    CHECK_EQ_INT(map_count(be, m, kg, shorter), 1);
    CHECK(get_is(be, m, kg, shorter, &one, S("neighbour")));
  }
  /* scan gives back the keys whole */
  cs_backend_iter *it;
  cs_backend_entry e;
  long n = 0, bad = 0;
  CHECK_EQ_INT(be->ops->scan_iter(be, 0, 65535, &it), 0);
  while (be->ops->iter_next(it, &e) == 1) {
    n++;
    if (e.key.len != 300 && e.key.len != 5000 && e.key.len != 200 &&
        e.key.len != 299 && e.key.len != 4999 && e.key.len != 199)
      bad++;
  }
  be->ops->iter_destroy(it);
  CHECK_EQ_INT(n, 3 * 3); /* v, l and the neighbour map entry, per key */
  CHECK_EQ_INT(bad, 0);
  be->ops->destroy(be);
}

/* Iterators outliving their backend; views passed back in after other
 * gets and writes. */
static void test_lifetimes(void) {
  cs_backend *be = make_rocksdb();
  int m = be->ops->register_state(be, "m", CS_STATE_MAP);
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  cs_slice u = S("u");
  CHECK_EQ_INT(be->ops->put(be, m, 1, S("k"), &u, S("x")), 0);
  cs_backend_iter *mi, *si, *unused;
  CHECK_EQ_INT(be->ops->map_iter(be, m, 1, S("k"), &mi), 0);
  CHECK_EQ_INT(be->ops->scan_iter(be, 0, 65535, &si), 0);
  CHECK_EQ_INT(be->ops->scan_iter(be, 0, 65535, &unused), 0);
  cs_backend_entry e;
  CHECK_EQ_INT(be->ops->iter_next(mi, &e), 1);
  CHECK_EQ_INT(be->ops->iter_next(si, &e), 1);
  /* A scan reads the snapshot it was made at. */
  CHECK_EQ_INT(be->ops->put(be, v, 1, S("k"), NULL, S("late")), 0);
  CHECK_EQ_INT(be->ops->iter_next(si, &e), 0);
  be->ops->iter_destroy(unused);
  const cs_backend_ops *ops = be->ops; /* static: outlives be */
  be->ops->destroy(be);
  CHECK_EQ_INT(ops->iter_next(mi, &e), CS_EINVAL);
  ops->iter_destroy(mi);
  ops->iter_destroy(si);

  /* 16 views stay valid across gets; any of them can be written back. */
  be = make_rocksdb();
  v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  char kb[5], vb[32];
  cs_slice views[16];
  for (int i = 0; i < 16; i++) {
    snprintf(vb, sizeof(vb), "value-%d", i);
    CHECK_EQ_INT(be->ops->put(be, v, 0, key_of(i, kb), NULL, S(vb)), 0);
  }
  for (int i = 0; i < 16; i++)
    CHECK_EQ_INT(be->ops->get(be, v, 0, key_of(i, kb), NULL, &views[i]), 0);
  for (int i = 0; i < 16; i++) {
    snprintf(vb, sizeof(vb), "value-%d", i);
    CHECK(slice_eq(views[i], S(vb)));
  }
  CHECK_EQ_INT(be->ops->put(be, v, 0, S("copy"), NULL, views[3]), 0);
  CHECK(get_is(be, v, 0, S("copy"), NULL, S("value-3")));
  be->ops->destroy(be);
}

/* ========================================================== benchmark */

/* Puts keys "key-<i>" for i in [first, first + n) with vlen random bytes
 * (incompressible, as most real values are after encoding). */
static void fill_random(cs_backend *be, int st, int first, int n, int step,
                        int vlen, uint64_t *rng) {
  char kb[32], vb[256];
  for (int i = first; i < first + n; i += step) {
    int kl = snprintf(kb, sizeof(kb), "key-%07d", i);
    for (int j = 0; j < vlen; j += 8) {
      *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
      memcpy(vb + j, rng, 8);
    }
    if (be->ops->put(be, st, i % NKG, B(kb, (size_t)kl), NULL,
                     B(vb, (size_t)vlen)) != 0) {
      CHECK(0 && "put failed");
      return;
    }
  }
}

/* Bytes of the files in dir. */
static long long dir_bytes(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  long long n = 0;
  char p[PATH_MAX];
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
    n += file_size(p);
  }
  closedir(d);
  return n;
}

/* Full, first incremental, and incremental after 1% of the keys changed,
 * into checkpoint and shared directories under base; prints durations. */
static void bench_round(cs_backend *be, int v, int n, int vlen, int round,
                        uint64_t *rng, const char *base, const char *where) {
  char shared[PATH_MAX], full[PATH_MAX], inc1[PATH_MAX], inc2[PATH_MAX];
  snprintf(shared, sizeof(shared), "%s/shared-%d", base, round);
  snprintf(full, sizeof(full), "%s/full-%d", base, round);
  snprintf(inc1, sizeof(inc1), "%s/inc1-%d", base, round);
  snprintf(inc2, sizeof(inc2), "%s/inc2-%d", base, round);
  CHECK_EQ_INT(mkdir(shared, 0755), 0);
  double t0 = now_s();
  CHECK_EQ_INT(checkpoint(be, full, NULL, NULL), 0);
  double t1 = now_s();
  CHECK_EQ_INT(checkpoint(be, inc1, shared, NULL), 0);
  double t2 = now_s();
  int n1 = count_files(shared, NULL);
  long long b1 = dir_bytes(shared);
  fill_random(be, v, 3 + round, n - 3 - round, 100, vlen, rng); /* 1% */
  double t3 = now_s();
  CHECK_EQ_INT(checkpoint(be, inc2, shared, NULL), 0);
  double t4 = now_s();
  int n2 = count_files(shared, NULL);
  long long b2 = dir_bytes(shared);
  printf("  %s: full %.3f s (%.1f MB); first incremental %.3f s (%d shared "
         "files); incremental after 1%% changed %.3f s (%d new shared "
         "file(s), %.1f MB)\n",
         where, t1 - t0, dir_bytes(full) / 1e6, t2 - t1, n1, t4 - t3,
         n2 - n1, (b2 - b1) / 1e6);
}

/* Not an assertion: checkpoint durations for 1M keys with 100-byte values,
 * into the directory of the working state (same file system: RocksDB and
 * the shared directory link files) and, when /dev/shm is another file
 * system, there (every new file is copied). */
static void bench_checkpoints(void) {
  enum { N = 1000000, VLEN = 100 };
  cs_backend *be = open_with(fresh("bench"), 0);
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  uint64_t rng = 88172645463325252u;
  double t0 = now_s();
  fill_random(be, v, 0, N, 1, VLEN, &rng);
  printf("rocksdb checkpoints of %d keys x %d-byte random values (loaded "
         "in %.2f s):\n", N, VLEN, now_s() - t0);
  bench_round(be, v, N, VLEN, 0, &rng, root, "same file system (links)");
  char other[] = "/dev/shm/cs_rocksdb_bench.XXXXXX";
  struct stat a, b;
  if (stat(root, &a) == 0 && stat("/dev/shm", &b) == 0 &&
      a.st_dev != b.st_dev && mkdtemp(other) != NULL) {
    bench_round(be, v, N, VLEN, 1, &rng, other,
                "other file system (copies)");
    nftw(other, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
  }
  be->ops->destroy(be);
}

/* ======================================================= value cache */

/* The write-back cache of VALUE states, at three sizes (none, tiny, the
 * default), against the heap backend as the oracle: random puts, gets and
 * deletes; views that outlive later gets; checkpoints holding what is
 * only in the cache; a restore equal to the oracle. */
static void test_value_cache(void) {
  size_t sizes[] = {SIZE_MAX, 4096, 0};
  for (int si = 0; si < 3; si++) {
    cs_backend *be = make_cached(sizes[si]);
    cs_backend *oracle = cs_heap_backend_create();
    CHECK(be != NULL && oracle != NULL);
    int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
    int m = be->ops->register_state(be, "m", CS_STATE_MAP);
    CHECK_EQ_INT(oracle->ops->register_state(oracle, "v", CS_STATE_VALUE), v);
    CHECK_EQ_INT(oracle->ops->register_state(oracle, "m", CS_STATE_MAP), m);
    uint32_t x = 7;
    char kb[16], vb[64];
    int mismatches = 0;
    for (int i = 0; i < 20000; i++) {
      x = x * 1664525u + 1013904223u;
      int k = (int)((x >> 8) % 500);
      snprintf(kb, sizeof(kb), "k%d", k);
      int kg = k % NKG;
      cs_slice key = B(kb, strlen(kb));
      int op = (int)((x >> 20) % 10);
      if (op < 5) { /* put a value of varying length */
        int n = snprintf(vb, sizeof(vb), "%d:%.*s", i, (int)(x % 40),
                         "0123456789012345678901234567890123456789");
        CHECK_EQ_INT(be->ops->put(be, v, kg, key, NULL, B(vb, (size_t)n)), 0);
        oracle->ops->put(oracle, v, kg, key, NULL, B(vb, (size_t)n));
      } else if (op < 6) {
        CHECK_EQ_INT(be->ops->del(be, v, kg, key, NULL), 0);
        oracle->ops->del(oracle, v, kg, key, NULL);
      } else if (op < 7) { /* a map state beside it is not disturbed */
        CHECK_EQ_INT(be->ops->put(be, m, kg, key, &key, key), 0);
        oracle->ops->put(oracle, m, kg, key, &key, key);
      } else {
        cs_slice a, b;
        int ra = be->ops->get(be, v, kg, key, NULL, &a);
        int rb = oracle->ops->get(oracle, v, kg, key, NULL, &b);
        if (ra != rb || (ra == 0 && (a.len != b.len ||
                                     memcmp(a.data, b.data, a.len) != 0)))
          mismatches++;
      }
      if (i % 5000 == 4999) { /* a checkpoint holds the cached writes */
        const char *chk = fresh("chk-cache");
        CHECK_EQ_INT(checkpoint(be, chk, NULL, NULL), 0);
        cs_backend *r = restore(chk, NULL);
        CHECK(r != NULL && same_content(oracle, r));
        if (r) r->ops->destroy(r);
      }
    }
    CHECK_EQ_INT(mismatches, 0);
    /* A view stays valid over 16 more gets, misses and hits alike. */
    CHECK_EQ_INT(be->ops->put(be, v, 1, S("held"), NULL, S("held-value")), 0);
    cs_slice held;
    CHECK_EQ_INT(be->ops->get(be, v, 1, S("held"), NULL, &held), 0);
    for (int i = 0; i < 16; i++) {
      cs_slice t;
      snprintf(kb, sizeof(kb), "k%d", i * 31);
      be->ops->get(be, v, (i * 31) % NKG, B(kb, strlen(kb)), NULL, &t);
    }
    CHECK(held.len == 10 && memcmp(held.data, "held-value", 10) == 0);
    /* A put of a view of the same entry. */
    CHECK_EQ_INT(be->ops->put(be, v, 1, S("held"), NULL, held), 0);
    CHECK(get_is(be, v, 1, S("held"), NULL, S("held-value")));
    /* A scan sees what is only in the cache. */
    oracle->ops->put(oracle, v, 1, S("held"), NULL, S("held-value"));
    CHECK(same_content(oracle, be));
    be->ops->destroy(be);
    oracle->ops->destroy(oracle);
  }
}

/* ================================================================ main */

int main(void) {
  if (mkdtemp(root) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  /* CS_TEST_ONLY=<name> runs one part (contract, full, incremental, ...). */
  const char *only = getenv("CS_TEST_ONLY");
#define RUN(name, call) \
  if (only == NULL || strcmp(only, name) == 0) call
  RUN("contract", backend_contract(make_rocksdb, CONTRACT_COSTLY_MAKE));
  RUN("contract-tiny-cache",
      backend_contract(make_tiny_cache, CONTRACT_COSTLY_MAKE));
  RUN("valuecache", test_value_cache());
  RUN("full", test_full_checkpoint());
  RUN("incremental", test_incremental());
  RUN("lineage", test_lineage());
  RUN("damaged", test_damaged());
  RUN("readonly", test_readonly());
  RUN("cross", test_cross_snapshot());
  RUN("otherfs", test_other_fs());
  RUN("directories", test_directories());
  RUN("lifetimes", test_lifetimes());
  RUN("longkeys", test_long_keys());
  CHECK_EQ_INT(cs_allocated_bytes(), 0); /* the backends freed everything */
  RUN("timing", timing(make_rocksdb, "rocksdb"));
  const char *bench = getenv("CS_ROCKSDB_BENCH");
  if (bench && strcmp(bench, "1") == 0) RUN("bench", bench_checkpoints());
  nftw(root, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
  TEST_MAIN_END();
}
