/*
 * cs_rocksdb_files.c - the files of the RocksDB backend: its working
 * directory (made, wiped and removed only when it is ours: it holds the
 * marker file "cs-workdir"), and reading, copying, hashing, syncing and
 * listing the files of checkpoint directories. Plain POSIX, no RocksDB.
 *
 * Functions with err/errlen put a message naming the file at fault there;
 * the others set errno and return -1, as the calls they wrap do.
 */
#include "cs_rocksdb_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define MARKER_FILE "cs-workdir"
#define MANIFEST_MAX ((size_t)64 << 20) /* 64 MiB */
#define COPY_CHUNK (256 * 1024)

/* ======================================================== directories */

int cs__rocksdb_path_join(char *buf, size_t cap, const char *dir,
                          const char *name) {
  int n = snprintf(buf, cap, "%s/%s", dir, name);
  return n < 0 || (size_t)n >= cap ? CS_EINVAL : 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Removes path and everything below it, following no symlinks. */
int cs__rocksdb_remove_tree(const char *path) {
  if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) == 0) return 0;
  return errno == ENOENT ? 0 : -1;
}

/* Removes every entry of dir (dir itself stays; it may be a symlink). */
static int clear_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  char path[PATH_MAX];
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (cs__rocksdb_path_join(path, sizeof(path), dir, de->d_name) ||
        cs__rocksdb_remove_tree(path))
      rc = -1;
  }
  closedir(d);
  return rc;
}

/* Returns 1 when dir has no entries, 0 when it has, -1 on error. */
static int dir_is_empty(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return -1;
  struct dirent *de;
  int empty = 1;
  while (empty && (de = readdir(d)) != NULL)
    empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
  closedir(d);
  return empty;
}

/* mkdir -p. */
static int mkdir_p(const char *dir) {
  char p[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(p)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(p, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
    p[i] = c;
  }
  struct stat st;
  if (stat(dir, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

/* Makes dir an empty working directory of ours: created with its parents,
 * or emptied when it is empty or holds our marker (refused otherwise, so
 * that a wrong path never wipes a user's files). Leaves the marker in it. */
int cs__rocksdb_prepare_dir(const char *dir, char *err, size_t errlen) {
  char marker[PATH_MAX];
  struct stat st;
  if (dir == NULL || dir[0] == '\0')
    return cs__rocksdb_errf(err, errlen, CS_EINVAL,
                            "no working directory given");
  if (cs__rocksdb_path_join(marker, sizeof(marker), dir, MARKER_FILE))
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "path too long: %s", dir);
  if (stat(dir, &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return cs__rocksdb_errf(err, errlen, CS_EINVAL,
                              "%s exists and is not a directory", dir);
    if (access(marker, F_OK) != 0) {
      int empty = dir_is_empty(dir);
      if (empty < 0)
        return cs__rocksdb_errf(err, errlen, CS_EIO,
                                "cannot read directory %s: %s", dir,
                                strerror(errno));
      if (!empty)
        return cs__rocksdb_errf(
            err, errlen, CS_EINVAL,
            "refusing to wipe %s: it is not empty and not a "
            "cstream-lua working directory (no %s in it)",
            dir, MARKER_FILE);
    }
    if (clear_dir(dir))
      return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot wipe %s: %s", dir,
                              strerror(errno));
  } else if (errno != ENOENT || mkdir_p(dir) != 0) {
    return cs__rocksdb_errf(err, errlen, CS_EIO,
                            "cannot create directory %s: %s", dir,
                            strerror(errno));
  }
  int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot write in %s: %s", dir,
                            strerror(errno));
  close(fd);
  return 0;
}

/* Removes a working directory: its content, then itself when it is a
 * plain directory. */
void cs__rocksdb_remove_workdir(const char *dir) {
  struct stat st;
  if (lstat(dir, &st) != 0) return;
  if (S_ISLNK(st.st_mode)) {
    clear_dir(dir);
    return;
  }
  if (cs__rocksdb_remove_tree(dir) != 0)
    fprintf(stderr, "cstream-lua: rocksdb: cannot remove %s: %s\n", dir,
            strerror(errno));
}

/* ================================================== writing, syncing */

int cs__rocksdb_fsync_path(const char *path, int dir) {
  int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

/* fsyncs the directory that holds path (so that path's entry lasts). */
int cs__rocksdb_fsync_parent(const char *path) {
  char p[PATH_MAX];
  size_t n = strlen(path);
  if (n >= sizeof(p)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(p, path, n + 1);
  while (n > 1 && p[n - 1] == '/') p[--n] = '\0'; /* trailing slashes */
  char *slash = strrchr(p, '/');
  if (slash == NULL) return cs__rocksdb_fsync_path(".", 1);
  if (slash == p) return cs__rocksdb_fsync_path("/", 1);
  *slash = '\0';
  return cs__rocksdb_fsync_path(p, 1);
}

int cs__rocksdb_write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* ================================================== reading, copying */

/* Maps a failed open of a checkpoint file to an error naming it. */
int cs__rocksdb_open_errf(char *err, size_t errlen, const char *path) {
  if (errno == ENOENT)
    return cs__rocksdb_errf(err, errlen, CS_ENOTFOUND,
                            "checkpoint file %s is missing", path);
  return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot read %s: %s", path,
                          strerror(errno));
}

/* Reads the whole of src, hashing it (XXH3-64) and, when dst is not NULL,
 * copying it to dst (created; fsynced when sync). Reports the size and the
 * hash. */
int cs__rocksdb_copy_hash(const char *src, const char *dst, int sync,
                          uint64_t *size, uint64_t *hash, char *err,
                          size_t errlen) {
  int rc = 0, in = -1, out = -1;
  char *buf = NULL;
  XXH3_state_t st;
  XXH3_64bits_reset(&st);
  uint64_t total = 0;
  in = open(src, O_RDONLY | O_CLOEXEC);
  if (in < 0) return cs__rocksdb_open_errf(err, errlen, src);
  buf = cs_malloc(COPY_CHUNK);
  if (buf == NULL) {
    rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
    goto done;
  }
  if (dst != NULL) {
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
      rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot create %s: %s", dst,
                            strerror(errno));
      goto done;
    }
  }
  for (;;) {
    ssize_t n = read(in, buf, COPY_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot read %s: %s", src,
                            strerror(errno));
      goto done;
    }
    if (n == 0) break;
    XXH3_64bits_update(&st, buf, (size_t)n);
    total += (uint64_t)n;
    if (out >= 0 && cs__rocksdb_write_all(out, buf, (size_t)n) != 0) {
      rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot write %s: %s", dst,
                            strerror(errno));
      goto done;
    }
  }
  if (out >= 0 && sync && fsync(out) != 0) {
    rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot sync %s: %s", dst,
                          strerror(errno));
    goto done;
  }
  if (size) *size = total;
  if (hash) *hash = XXH3_64bits_digest(&st);
done:
  if (out >= 0 && close(out) != 0 && rc == 0)
    rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot write %s: %s", dst,
                          strerror(errno));
  if (rc && out >= 0) unlink(dst);
  close(in);
  cs_free(buf);
  return rc;
}

/* Hard-links src to dst, or copies it where links cannot be made (another
 * file system, or one without links). */
int cs__rocksdb_link_or_copy(const char *src, const char *dst, int sync,
                             char *err, size_t errlen) {
  if (link(src, dst) == 0) return 0;
  if (errno == ENOENT) return cs__rocksdb_open_errf(err, errlen, src);
  if (errno != EXDEV && errno != EPERM && errno != EMLINK &&
      errno != EOPNOTSUPP)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot link %s to %s: %s",
                            src, dst, strerror(errno));
  return cs__rocksdb_copy_hash(src, dst, sync, NULL, NULL, err, errlen);
}

/* Reads a whole (small) file into b. */
int cs__rocksdb_read_small_file(const char *path, cs_buf *b, char *err,
                                size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cs__rocksdb_open_errf(err, errlen, path);
  int rc = 0;
  for (;;) {
    if (b->len >= MANIFEST_MAX) {
      rc = cs__rocksdb_errf(err, errlen, CS_EDECODE, "%s is too large", path);
      break;
    }
    if (cs_buf_reserve(b, 64 * 1024)) {
      rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
      break;
    }
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      rc = cs__rocksdb_errf(err, errlen, CS_EIO, "cannot read %s: %s", path,
                            strerror(errno));
      break;
    }
    if (n == 0) break;
    b->len += (size_t)n;
  }
  close(fd);
  return rc;
}

/* ============================================================ listing */

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

void cs__rocksdb_free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) cs_free(names[i]);
  cs_free(names);
}

/* Lists the names in dir (sorted; "." and ".." left out). The caller frees
 * them with cs__rocksdb_free_names. */
int cs__rocksdb_list_dir(const char *dir, char ***out, size_t *count, char *err,
                         size_t errlen) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return cs__rocksdb_errf(err, errlen, CS_EIO, "cannot read directory %s: %s",
                            dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0;
  int rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (n == cap) {
      size_t nc = cap ? cap * 2 : 16;
      char **nn = cs_realloc(names, nc * sizeof(*nn));
      if (nn == NULL) {
        rc = CS_ENOMEM;
        break;
      }
      names = nn;
      cap = nc;
    }
    if ((names[n] = cs_strdup(de->d_name)) == NULL) {
      rc = CS_ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  if (rc) {
    cs__rocksdb_free_names(names, n);
    return cs__rocksdb_errf(err, errlen, rc, "out of memory");
  }
  if (n) qsort(names, n, sizeof(*names), cmp_str);
  *out = names;
  *count = n;
  return 0;
}
