/*
 * cs_checkpoint.c - the checkpoint record, its _metadata file, durable file
 * writes, and finding, reading and removing checkpoint directories.
 */
#include "host/checkpoint/cs_checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "state/cs_rocksdb.h"

#define META_NAME "_metadata"
#define META_MAGIC "cstream-checkpoint 1"

/* ============================================================== record */

cs_ckpt *cs_ckpt_create(void) { return cs_calloc(1, sizeof(cs_ckpt)); }

void cs_ckpt_destroy(cs_ckpt *c) {
  if (c == NULL) return;
  for (int i = 0; i < c->nparts; i++) {
    cs_free(c->parts[i].op_id);
    cs_free(c->parts[i].file);
    cs_free(c->parts[i].source);
    cs_buf_free(&c->parts[i].bytes);
  }
  for (int i = 0; i < c->nops; i++) cs_free(c->ops[i].id);
  cs_free(c->parts);
  cs_free(c->ops);
  cs_free(c->job);
  cs_free(c->backend);
  cs_free(c->dir);
  cs_free(c);
}

static char *dup_or_null(const char *s) { return s ? cs_strdup(s) : NULL; }

int cs_ckpt_add_part(cs_ckpt *c, const char *op_id, int subtask,
                     const char *file, cs_buf *bytes, const char *source) {
  cs_ckpt_part *p = cs_realloc(c->parts, sizeof(*p) * (size_t)(c->nparts + 1));
  if (p == NULL) return CS_ENOMEM;
  c->parts = p;
  p = &c->parts[c->nparts];
  memset(p, 0, sizeof(*p));
  p->op_id = cs_strdup(op_id);
  p->subtask = subtask;
  p->file = dup_or_null(file);
  p->source = dup_or_null(source);
  if (p->op_id == NULL || (file && !p->file) || (source && !p->source)) {
    cs_free(p->op_id);
    cs_free(p->file);
    cs_free(p->source);
    return CS_ENOMEM;
  }
  if (bytes) {
    p->bytes = *bytes;
    memset(bytes, 0, sizeof(*bytes));
  }
  c->nparts++;
  return 0;
}

void cs_ckpt_set_sum(cs_ckpt *c, uint64_t size, uint64_t hash) {
  if (c->nparts == 0) return;
  cs_ckpt_part *p = &c->parts[c->nparts - 1];
  p->has_sum = 1;
  p->size = size;
  p->hash = hash;
}

int cs_ckpt_add_op(cs_ckpt *c, const char *op_id, int parallelism) {
  if (cs_ckpt_op_parallelism(c, op_id)) return 0;
  struct cs_ckpt_op *o = cs_realloc(c->ops, sizeof(*o) * (size_t)(c->nops + 1));
  if (o == NULL) return CS_ENOMEM;
  c->ops = o;
  o[c->nops].id = cs_strdup(op_id);
  if (o[c->nops].id == NULL) return CS_ENOMEM;
  o[c->nops].parallelism = parallelism;
  c->nops++;
  return 0;
}

int cs_ckpt_op_parallelism(const cs_ckpt *c, const char *op_id) {
  for (int i = 0; i < c->nops; i++)
    if (strcmp(c->ops[i].id, op_id) == 0) return c->ops[i].parallelism;
  return 0;
}

const cs_ckpt_part *cs_ckpt_find(const cs_ckpt *c, const char *op_id,
                                 int subtask) {
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].subtask == subtask && strcmp(c->parts[i].op_id, op_id) == 0)
      return &c->parts[i];
  return NULL;
}

/* ================================================================ files */

static void errf(char *err, size_t errlen, const char *what, const char *path) {
  snprintf(err, errlen, "%s '%s': %s", what, path, strerror(errno));
}

int cs_mkdirs(const char *path, char *err, size_t errlen) {
  char tmp[4096];
  if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp)) {
    snprintf(err, errlen, "path too long: '%s'", path);
    return CS_EINVAL;
  }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
      errf(err, errlen, "cannot create directory", tmp);
      return CS_EIO;
    }
    *p = '/';
  }
  if (mkdir(tmp, 0777) != 0 && errno != EEXIST) {
    errf(err, errlen, "cannot create directory", tmp);
    return CS_EIO;
  }
  return 0;
}

static int fsync_dir_of(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) snprintf(dir, sizeof(dir), ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  close(fd);
  return rc;
}

int cs_write_file_durable(const char *path, const void *data, size_t len,
                          char *err, size_t errlen) {
  char tmp[4200];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    errf(err, errlen, "cannot write", tmp);
    return CS_EIO;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;
      errf(err, errlen, "cannot write", tmp);
      close(fd);
      unlink(tmp);
      return CS_EIO;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fsync(fd) != 0) {
    errf(err, errlen, "cannot sync", tmp);
    close(fd);
    unlink(tmp);
    return CS_EIO;
  }
  close(fd);
  if (rename(tmp, path) != 0) {
    errf(err, errlen, "cannot rename into place", path);
    unlink(tmp);
    return CS_EIO;
  }
  if (fsync_dir_of(path) != 0) {
    errf(err, errlen, "cannot sync the directory of", path);
    return CS_EIO;
  }
  return 0;
}

int cs_read_file(const char *path, cs_buf *out, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    errf(err, errlen, "cannot read", path);
    return errno == ENOENT ? CS_ENOTFOUND : CS_EIO;
  }
  for (;;) {
    if (cs_buf_reserve(out, 64 * 1024)) {
      close(fd);
      snprintf(err, errlen, "out of memory reading '%s'", path);
      return CS_ENOMEM;
    }
    ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      errf(err, errlen, "cannot read", path);
      close(fd);
      return CS_EIO;
    }
    if (n == 0) break;
    out->len += (size_t)n;
  }
  close(fd);
  return 0;
}

int cs_ckpt_remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return errno == ENOENT ? 0 : CS_EIO;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(path, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      if (cs_ckpt_remove_dir(path)) rc = CS_EIO;
    } else if (unlink(path) != 0) {
      rc = CS_EIO;
    }
  }
  closedir(d);
  if (rmdir(dir) != 0) rc = CS_EIO;
  return rc;
}

/* ============================================================ metadata */

/* Appends s with spaces, '%' and control bytes percent-encoded. */
static void put_token(cs_buf *b, const char *s) {
  if (*s == '\0') {
    cs_buf_append(b, "%00", 3); /* the empty token */
    return;
  }
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch <= ' ' || ch == '%' || ch == 0x7f)
      cs_buf_printf(b, "%%%02X", ch);
    else
      cs_buf_append(b, s, 1);
  }
}

/* Decodes a token in place. */
static void get_token(char *s) {
  if (strcmp(s, "%00") == 0) {
    *s = '\0';
    return;
  }
  char *o = s;
  for (char *p = s; *p; p++) {
    unsigned v;
    if (*p == '%' && p[1] && p[2] && sscanf(p + 1, "%2x", &v) == 1) {
      *o++ = (char)v;
      p += 2;
    } else {
      *o++ = *p;
    }
  }
  *o = '\0';
}

int cs_ckpt_write_metadata(const cs_ckpt *c, char *err, size_t errlen) {
  cs_buf b = {0};
  cs_buf_printf(&b, "%s\njob ", META_MAGIC);
  put_token(&b, c->job ? c->job : "job");
  cs_buf_printf(&b, "\ncheckpoint %lld\nkind %s\nbackend %s\nmax-parallelism %d\n",
                (long long)c->id, c->savepoint ? "savepoint" : "checkpoint",
                c->backend ? c->backend : "filesystem", c->max_parallelism);
  for (int i = 0; i < c->nops; i++) {
    cs_buf_append(&b, "op ", 3);
    put_token(&b, c->ops[i].id);
    cs_buf_printf(&b, " %d\n", c->ops[i].parallelism);
  }
  for (int i = 0; i < c->nparts; i++) {
    const cs_ckpt_part *p = &c->parts[i];
    if (p->file) {
      cs_buf_append(&b, "state ", 6);
      put_token(&b, p->op_id);
      cs_buf_printf(&b, " %d ", p->subtask);
      put_token(&b, p->file);
      if (p->has_sum)
        cs_buf_printf(&b, " %llu %016llx", (unsigned long long)p->size,
                      (unsigned long long)p->hash);
      cs_buf_append(&b, "\n", 1);
    }
    if (p->source) {
      cs_buf_append(&b, "source ", 7);
      put_token(&b, p->op_id);
      cs_buf_printf(&b, " %d ", p->subtask);
      put_token(&b, p->source);
      cs_buf_append(&b, "\n", 1);
    }
  }
  if (b.data == NULL) {
    snprintf(err, errlen, "out of memory");
    return CS_ENOMEM;
  }
  cs_buf_printf(&b, "end %016llx\n",
                (unsigned long long)XXH3_64bits(b.data, b.len));
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", c->dir, META_NAME);
  int rc = b.data ? cs_write_file_durable(path, b.data, b.len, err, errlen)
                  : CS_ENOMEM;
  cs_buf_free(&b);
  return rc;
}

#define BAD(...)                                                        \
  do {                                                                  \
    int n_ = snprintf(err, errlen, "checkpoint metadata '%s': ", path); \
    if (n_ > 0 && (size_t)n_ < errlen)                                  \
      snprintf(err + n_, errlen - (size_t)n_, __VA_ARGS__);             \
    rc = CS_EDECODE;                                                    \
    goto done;                                                          \
  } while (0)

int cs_ckpt_read(const char *dir, cs_ckpt **out, char *err, size_t errlen) {
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s", dir, META_NAME);
  cs_buf b = {0};
  cs_ckpt *c = NULL;
  int rc = cs_read_file(path, &b, err, errlen);
  if (rc) goto done;
  if (cs_buf_append(&b, "", 1)) BAD("out of memory");
  b.len--; /* NUL-terminated, not counted */
  /* the checksum line */
  char *end = NULL;
  for (char *p = b.data; p && *p;) {
    if (strncmp(p, "end ", 4) == 0) end = p;
    char *nl = strchr(p, '\n');
    p = nl ? nl + 1 : NULL;
  }
  if (end == NULL) BAD("truncated (no end line)");
  unsigned long long want;
  if (sscanf(end, "end %llx", &want) != 1) BAD("malformed end line");
  if (XXH3_64bits(b.data, (size_t)(end - b.data)) != want)
    BAD("checksum mismatch (the file is corrupt)");
  *end = '\0';
  c = cs_ckpt_create();
  if (c == NULL) BAD("out of memory");
  c->dir = cs_strdup(dir);
  int line = 0;
  for (char *p = b.data, *nl; *p; p = nl + 1) {
    nl = strchr(p, '\n');
    if (nl == NULL) BAD("line %d is not terminated", line + 1);
    *nl = '\0';
    line++;
    char a[1024], s2[1024], s3[1024], hex[32];
    unsigned long long size;
    int n, k;
    if (line == 1) {
      if (strcmp(p, META_MAGIC) != 0) BAD("not a cstream-lua checkpoint (or another version)");
    } else if (sscanf(p, "job %1023s", a) == 1) {
      if (c->job) BAD("line %d: a second job line", line);
      get_token(a);
      c->job = cs_strdup(a);
    } else if (sscanf(p, "checkpoint %1023s", a) == 1) {
      c->id = strtoll(a, NULL, 10);
    } else if (sscanf(p, "kind %1023s", a) == 1) {
      c->savepoint = strcmp(a, "savepoint") == 0;
    } else if (sscanf(p, "backend %1023s", a) == 1) {
      if (c->backend) BAD("line %d: a second backend line", line);
      c->backend = cs_strdup(a);
    } else if (sscanf(p, "max-parallelism %d", &n) == 1) {
      c->max_parallelism = n;
    } else if (sscanf(p, "op %1023s %d", a, &n) == 2) {
      get_token(a);
      if (cs_ckpt_add_op(c, a, n)) BAD("out of memory");
    } else if ((k = sscanf(p, "state %1023s %d %1023s %llu %31s", a, &n, s2,
                           &size, hex)) == 3 || k == 5) {
      get_token(a);
      get_token(s2);
      if (strstr(s2, "..") || s2[0] == '/') BAD("line %d: bad state file name", line);
      unsigned long long hash = 0;
      if (k == 5 && (strlen(hex) != 16 || strspn(hex, "0123456789abcdef") != 16 ||
                     sscanf(hex, "%llx", &hash) != 1))
        BAD("line %d: bad checksum", line);
      cs_ckpt_part *q = (cs_ckpt_part *)cs_ckpt_find(c, a, n);
      if (q) {
        cs_free(q->file);
        q->file = cs_strdup(s2);
      } else if (cs_ckpt_add_part(c, a, n, s2, NULL, NULL)) {
        BAD("out of memory");
      } else {
        q = &c->parts[c->nparts - 1];
      }
      if (q->file == NULL) BAD("out of memory");
      q->has_sum = k == 5;
      q->size = size;
      q->hash = hash;
    } else if (sscanf(p, "source %1023s %d %1023s", a, &n, s3) == 3) {
      get_token(a);
      get_token(s3);
      cs_ckpt_part *q = (cs_ckpt_part *)cs_ckpt_find(c, a, n);
      if (q) {
        cs_free(q->source);
        q->source = cs_strdup(s3);
      } else if (cs_ckpt_add_part(c, a, n, NULL, NULL, s3)) {
        BAD("out of memory");
      }
    } else {
      BAD("line %d is not understood: %.80s", line, p);
    }
  }
  if (c->job == NULL || c->backend == NULL || c->max_parallelism <= 0)
    BAD("incomplete (job, backend or max-parallelism missing)");
  *out = c;
  c = NULL;
done:
  cs_buf_free(&b);
  cs_ckpt_destroy(c);
  return rc;
}

void cs_ckpt_shared_dir(const cs_ckpt *c, char *buf, size_t len) {
  snprintf(buf, len, "%s", c->dir ? c->dir : ".");
  char *slash = strrchr(buf, '/');
  if (slash) *slash = '\0';
  else snprintf(buf, len, ".");
  size_t n = strlen(buf);
  snprintf(buf + n, len - n, "/shared");
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads the file at path through, reporting its size and XXH3-64. */
static int hash_file(const char *path, uint64_t *size, uint64_t *hash,
                     char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int missing = errno == ENOENT;
    errf(err, errlen, "cannot read", path);
    return missing ? CS_ENOTFOUND : CS_EIO;
  }
  enum { CHUNK = 256 * 1024 };
  char *buf = cs_malloc(CHUNK);
  XXH3_state_t *st = XXH3_createState();
  int rc = 0;
  uint64_t total = 0;
  if (buf == NULL || st == NULL) {
    snprintf(err, errlen, "out of memory");
    rc = CS_ENOMEM;
    goto done;
  }
  XXH3_64bits_reset(st);
  for (;;) {
    ssize_t n = read(fd, buf, CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      errf(err, errlen, "cannot read", path);
      rc = CS_EIO;
      goto done;
    }
    if (n == 0) break;
    XXH3_64bits_update(st, buf, (size_t)n);
    total += (uint64_t)n;
  }
  *size = total;
  *hash = XXH3_64bits_digest(st);
done:
  if (st) XXH3_freeState(st);
  cs_free(buf);
  close(fd);
  return rc;
}

/* Checks one part's file against _metadata; a RocksDB part, its manifest,
 * then every file the manifest names. */
static int verify_part(const cs_ckpt *c, const cs_ckpt_part *p, char *err,
                       size_t errlen) {
  char path[4500], target[4600];
  snprintf(path, sizeof(path), "%s/%s", c->dir, p->file);
  int rocks = ends_with(p->file, ".rocksdb");
  if (rocks)
    snprintf(target, sizeof(target), "%s/%s", path, CS_ROCKSDB_MANIFEST_FILE);
  else
    snprintf(target, sizeof(target), "%s", path);
  if (p->has_sum) {
    uint64_t size = 0, hash = 0;
    int rc = hash_file(target, &size, &hash, err, errlen);
    if (rc == CS_ENOTFOUND)
      snprintf(err, errlen, "the state file '%s' is missing", target);
    if (rc) return rc;
    if (size != p->size) {
      snprintf(err, errlen, "the state file '%s' is corrupt or truncated: "
               "%llu bytes, the checkpoint's _metadata says %llu", target,
               (unsigned long long)size, (unsigned long long)p->size);
      return CS_EDECODE;
    }
    if (hash != p->hash) {
      snprintf(err, errlen, "the state file '%s' is corrupt: its XXH3-64 "
               "checksum is %016llx, the checkpoint's _metadata says %016llx",
               target, (unsigned long long)hash, (unsigned long long)p->hash);
      return CS_EDECODE;
    }
  } else {
    struct stat st;
    if (stat(target, &st) != 0) {
      snprintf(err, errlen, "the state file '%s' is missing", target);
      return CS_ENOTFOUND;
    }
  }
  if (!rocks) return 0;
  char shared[4500], rerr[1500];
  cs_ckpt_shared_dir(c, shared, sizeof(shared));
  int rc = cs_rocksdb_verify(path, shared, rerr, sizeof(rerr));
  if (rc)
    snprintf(err, errlen, "the RocksDB state '%s' is damaged: %s", path, rerr);
  return rc;
}

int cs_ckpt_verify(const cs_ckpt *c, int *bad_part, char *err, size_t errlen) {
  if (c->dir == NULL) return 0;
  for (int i = 0; i < c->nparts; i++) {
    if (c->parts[i].file == NULL) continue;
    int rc = verify_part(c, &c->parts[i], err, errlen);
    if (rc) {
      if (bad_part) *bad_part = i;
      return rc;
    }
  }
  return 0;
}

static int cmp_id_desc(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

int cs_ckpt_list_ids(const char *job_dir, long long **out) {
  *out = NULL;
  DIR *d = opendir(job_dir);
  if (d == NULL) return 0;
  long long *ids = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long long id;
    char tail;
    if (sscanf(e->d_name, "chk-%lld%c", &id, &tail) != 1 || id < 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      long long *v = cs_realloc(ids, sizeof(*v) * (size_t)cap);
      if (v == NULL) {
        closedir(d);
        cs_free(ids);
        return -1;
      }
      ids = v;
    }
    ids[n++] = id;
  }
  closedir(d);
  if (n) qsort(ids, (size_t)n, sizeof(*ids), cmp_id_desc);
  *out = ids;
  return n;
}

cs_ckpt *cs_ckpt_find_latest(const char *base, const char *job) {
  char jobdir[4200];
  snprintf(jobdir, sizeof(jobdir), "%s/%s", base, job);
  long long *ids;
  int n = cs_ckpt_list_ids(jobdir, &ids);
  cs_ckpt *found = NULL;
  for (int i = 0; i < n && found == NULL; i++) {
    char dir[4500], err[2048];
    snprintf(dir, sizeof(dir), "%s/chk-%lld", jobdir, ids[i]);
    cs_ckpt *c = NULL;
    int rc = cs_ckpt_read(dir, &c, err, sizeof(err));
    if (rc == 0) rc = cs_ckpt_verify(c, NULL, err, sizeof(err));
    if (rc == 0) {
      found = c;
      continue;
    }
    int incomplete = rc == CS_ENOTFOUND && c == NULL; /* no _metadata */
    cs_ckpt_destroy(c);
    if (!incomplete)
      fprintf(stderr, "cstream-lua: skipping checkpoint %s: %s\n", dir, err);
  }
  cs_free(ids);
  return found;
}

int cs_ckpt_retain(const char *job_dir, int64_t newest, int keep) {
  long long *ids;
  int n = cs_ckpt_list_ids(job_dir, &ids);
  int kept = 0, removed = 0;
  for (int i = 0; i < n; i++) {
    if (ids[i] > newest) continue; /* not ours to judge */
    char dir[4500], err[512];
    snprintf(dir, sizeof(dir), "%s/chk-%lld", job_dir, ids[i]);
    if (kept < keep) {
      cs_ckpt *c = NULL;
      int rc = cs_ckpt_read(dir, &c, err, sizeof(err));
      cs_ckpt_destroy(c);
      if (rc == 0) {
        kept++;
        continue;
      }
    }
    if (ids[i] >= newest) continue;
    /* Its _metadata goes first: from then on a reader that takes no lock
     * (state dump) sees the checkpoint as incomplete, not as one whose
     * files are vanishing. */
    char meta[4600];
    snprintf(meta, sizeof(meta), "%s/%s", dir, META_NAME);
    unlink(meta);
    if (cs_ckpt_remove_dir(dir) == 0) removed++;
  }
  cs_free(ids);
  return removed;
}

/* ======================================================== shared files */

typedef struct names {
  char **v;
  size_t n, cap;
} names;

static void names_add(void *ud, const char *name) {
  names *ns = ud;
  if (ns->n == ns->cap) {
    size_t cap = ns->cap ? ns->cap * 2 : 64;
    char **v = cs_realloc(ns->v, cap * sizeof(*v));
    if (v == NULL) return;
    ns->v = v;
    ns->cap = cap;
  }
  char *d = cs_strdup(name);
  if (d) ns->v[ns->n++] = d;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the shared files every RocksDB part of checkpoint dir references.
 * Returns 0, or -1 when a manifest cannot be read (then nothing may be
 * deleted: a file might still be needed). */
static int collect_refs(const char *dir, names *ns) {
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL) {
    size_t len = strlen(e->d_name);
    if (len < 8 || strcmp(e->d_name + len - 8, ".rocksdb") != 0) continue;
    char path[4500], err[256];
    snprintf(path, sizeof(path), "%s/%s/%s", dir, e->d_name, CS_ROCKSDB_MANIFEST_FILE);
    cs_buf m = {0};
    if (cs_read_file(path, &m, err, sizeof(err)) == CS_ENOTFOUND) {
      cs_buf_free(&m);
      continue; /* a checkpoint that failed half-way references nothing */
    }
    if (m.data == NULL || cs_rocksdb_manifest_files(m.data, m.len, names_add, ns))
      rc = -1;
    cs_buf_free(&m);
  }
  closedir(d);
  return rc;
}

int cs_ckpt_gc_shared(const char *job_dir) {
  names ns = {0};
  DIR *d = opendir(job_dir);
  if (d == NULL) return 0;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d)) != NULL && rc == 0) {
    if (strncmp(e->d_name, "chk-", 4) != 0 && strncmp(e->d_name, "savepoint-", 10) != 0)
      continue;
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s", job_dir, e->d_name);
    rc = collect_refs(path, &ns);
  }
  closedir(d);
  int deleted = 0;
  if (rc == 0) {
    if (ns.n) qsort(ns.v, ns.n, sizeof(*ns.v), cmp_str);
    char shared[4300];
    snprintf(shared, sizeof(shared), "%s/shared", job_dir);
    DIR *s = opendir(shared);
    while (s && (e = readdir(s)) != NULL) {
      if (e->d_name[0] == '.') continue;
      const char *key = e->d_name;
      if (ns.n && bsearch(&key, ns.v, ns.n, sizeof(*ns.v), cmp_str)) continue;
      char path[4600];
      snprintf(path, sizeof(path), "%s/%s", shared, e->d_name);
      if (unlink(path) == 0) deleted++;
    }
    if (s) closedir(s);
  }
  for (size_t i = 0; i < ns.n; i++) cs_free(ns.v[i]);
  cs_free(ns.v);
  return rc ? rc : deleted;
}

int64_t cs_ckpt_max_id(const char *job_dir) {
  DIR *d = opendir(job_dir);
  if (d == NULL) return 0;
  int64_t max = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long long n;
    if (sscanf(e->d_name, "chk-%lld", &n) == 1 || sscanf(e->d_name, "savepoint-%lld", &n) == 1)
      if (n > max) max = n;
  }
  closedir(d);
  return max;
}

void cs_ckpt_remove_stale_workdirs(const char *base) {
  DIR *d = opendir(base);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int pid, n;
    char tail;
    if (sscanf(e->d_name, "cstream-%d-%d%c", &pid, &n, &tail) != 2 || pid <= 0)
      continue;
    if (pid == (int)getpid() || kill(pid, 0) == 0 || errno != ESRCH) continue;
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
    /* only our own working directories: they hold RocksDB instances */
    cs_ckpt_remove_dir(path);
  }
  closedir(d);
}

void cs_ckpt_remove_incomplete(const char *job_dir) {
  DIR *d = opendir(job_dir);
  if (d == NULL) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    long long n;
    if (sscanf(e->d_name, "chk-%lld", &n) != 1) continue;
    char meta[4400];
    struct stat st;
    snprintf(meta, sizeof(meta), "%s/%s/%s", job_dir, e->d_name, META_NAME);
    if (stat(meta, &st) == 0) continue;
    snprintf(meta, sizeof(meta), "%s/%s", job_dir, e->d_name);
    cs_ckpt_remove_dir(meta);
  }
  closedir(d);
}

long long cs_dir_size(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return (long long)st.st_size;
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  long long total = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    char sub[4400];
    snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
    total += cs_dir_size(sub);
  }
  closedir(d);
  return total;
}
