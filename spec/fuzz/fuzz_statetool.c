/*
 * fuzz_statetool.c - `cstream-lua state dump` (host/cli/cs_statetool.c)
 * over a whole job directory built from the fuzz bytes: the _metadata, the
 * heap snapshots, the RocksDB parts and the shared SST files.
 *
 * Input: one flag byte, then files, each "\0\1FILE <path>\n<contents>"
 * up to the next such marker. Paths are relative to the job directory
 * (e.g. "chk-1/_metadata", "chk-1/agg-0.rocksdb/CURRENT",
 * "shared/<lineage>-000009.sst"); a path with "..", a leading "/" or bytes
 * other than [A-Za-z0-9._/-] is skipped. The dump reads "<job>/chk-1".
 * Flag bit 0: write correct end lines into every cs-manifest (with the
 * size and XXH3-64 of each file it names, when that file is in the input)
 * and into chk-1/_metadata, so mutations get past the checksums.
 * Property: the tool exits 0 or 1 with a message, never crashes, and
 * leaves no scratch directory behind.
 */
#include <dirent.h>
#include <fcntl.h>
#include <xxhash.h>

#include "host/cli/cs_cli.h"
#include "fuzz_util.h"

#define MARK "\0\1FILE "
#define MARK_LEN 7
#define MAX_FILES 64

typedef struct file {
  char path[200];
  const uint8_t *data;
  size_t len;
  char *fixed; /* rewritten contents (manifests, _metadata), or NULL */
  size_t fixed_len;
} file;

static const uint8_t *find_mark(const uint8_t *p, const uint8_t *end) {
  while (p + MARK_LEN <= end) {
    const uint8_t *z = memchr(p, '\0', (size_t)(end - p));
    if (z == NULL || z + MARK_LEN > end) return NULL;
    if (memcmp(z, MARK, MARK_LEN) == 0) return z;
    p = z + 1;
  }
  return NULL;
}

static int path_ok(const char *p) {
  if (p[0] == '\0' || p[0] == '/' || strstr(p, "..")) return 0;
  for (const char *c = p; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
          (*c >= '0' && *c <= '9') || *c == '.' || *c == '_' || *c == '-' ||
          *c == '/'))
      return 0;
  return 1;
}

static int split(const uint8_t *d, size_t n, file *fs) {
  int nf = 0;
  const uint8_t *end = d + n, *m = find_mark(d, end);
  while (m && nf < MAX_FILES) {
    const uint8_t *name = m + MARK_LEN;
    const uint8_t *nl = memchr(name, '\n', (size_t)(end - name));
    if (nl == NULL) break;
    const uint8_t *next = find_mark(nl + 1, end);
    size_t plen = (size_t)(nl - name);
    if (plen < sizeof(fs[nf].path)) {
      memcpy(fs[nf].path, name, plen);
      fs[nf].path[plen] = '\0';
      if (path_ok(fs[nf].path)) {
        fs[nf].data = nl + 1;
        fs[nf].len = (size_t)((next ? next : end) - (nl + 1));
        fs[nf].fixed = NULL;
        nf++;
      }
    }
    m = next;
  }
  return nf;
}

static const file *lookup(const file *fs, int nf, const char *path) {
  for (int i = nf - 1; i >= 0; i--) /* the last one written wins */
    if (strcmp(fs[i].path, path) == 0) return &fs[i];
  return NULL;
}

/* Rewrites a manifest: each file/sst/shared line gets the size and hash of
 * the file it names when that file is in the input; the end line gets the
 * entry count and the checksum. dir is the part's directory path. */
static void fix_manifest(file *f, const file *fs, int nf, const char *dir) {
  char *out = malloc(f->len + 64 * 1024);
  FUZZ_CHECK(out != NULL);
  size_t o = 0, entries = 0, at = 0, lineno = 0;
  const char *d = (const char *)f->data;
  while (at < f->len && o + 600 < f->len + 60 * 1024) {
    const char *nl = memchr(d + at, '\n', f->len - at);
    size_t ll = nl ? (size_t)(nl - (d + at)) : f->len - at;
    char line[700];
    size_t cl = ll < 600 ? ll : 600;
    memcpy(line, d + at, cl);
    line[cl] = '\0';
    at += ll + 1;
    if (strncmp(line, "end ", 4) == 0) continue;
    char kind[16], a[300], b[300];
    int k = sscanf(line, "%15s %299s %299s", kind, a, b);
    char path[700];
    const file *t = NULL;
    if (k >= 2 && (!strcmp(kind, "file") || !strcmp(kind, "sst"))) {
      snprintf(path, sizeof(path), "%s/%s", dir, a);
      t = lookup(fs, nf, path);
      if (t) o += (size_t)sprintf(out + o, "%s %s %zu %016llx\n", kind, a, t->len,
                                  (unsigned long long)XXH3_64bits(t->data, t->len));
    } else if (k == 3 && !strcmp(kind, "shared")) {
      snprintf(path, sizeof(path), "shared/%s", b);
      t = lookup(fs, nf, path);
      if (t) o += (size_t)sprintf(out + o, "shared %s %s %zu %016llx\n", a, b, t->len,
                                  (unsigned long long)XXH3_64bits(t->data, t->len));
    }
    if (t == NULL) {
      memcpy(out + o, line, cl);
      o += cl;
      out[o++] = '\n';
    }
    if (lineno++ > 0) entries++;
  }
  /* "lineage" lines are not entries */
  for (size_t i = 0; i < o; i++)
    if ((i == 0 || out[i - 1] == '\n') && strncmp(out + i, "lineage ", 8) == 0 && entries)
      entries--;
  o += (size_t)sprintf(out + o, "end %zu %016llx\n", entries,
                       (unsigned long long)XXH3_64bits(out, o));
  f->fixed = out;
  f->fixed_len = o;
}

static void fix_metadata(file *f) {
  char *out = malloc(f->len + 64);
  FUZZ_CHECK(out != NULL);
  size_t o = 0, at = 0;
  const char *d = (const char *)f->data;
  while (at < f->len) {
    const char *nl = memchr(d + at, '\n', f->len - at);
    size_t ll = nl ? (size_t)(nl - (d + at)) : f->len - at;
    if (!(ll >= 4 && memcmp(d + at, "end ", 4) == 0)) {
      memcpy(out + o, d + at, ll);
      o += ll;
      out[o++] = '\n';
    }
    at += ll + 1;
  }
  o += (size_t)sprintf(out + o, "end %016llx\n", (unsigned long long)XXH3_64bits(out, o));
  f->fixed = out;
  f->fixed_len = o;
}

static void write_tree(const char *root, file *fs, int nf) {
  for (int i = 0; i < nf; i++) {
    char path[900];
    snprintf(path, sizeof(path), "%.600s/%.199s", root, fs[i].path);
    for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')) != NULL; s++) {
      *s = '\0';
      mkdir(path, 0700); /* may exist, or be a file: then the open fails */
      *s = '/';
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) continue; /* a path that is also a directory */
    const void *d = fs[i].fixed ? (const void *)fs[i].fixed : fs[i].data;
    size_t n = fs[i].fixed ? fs[i].fixed_len : fs[i].len;
    if (n) fwrite(d, 1, n, f);
    fclose(f);
  }
}

static int dir_empty(const char *path) {
  DIR *d = opendir(path);
  FUZZ_CHECK(d != NULL);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  /* The dump's JSON goes nowhere; its messages stay on stderr. */
  int fd = open("/dev/null", O_WRONLY);
  FUZZ_CHECK(fd >= 0 && dup2(fd, 1) == 1);
  close(fd);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  int fix = data[0] & 1;
  static file fs[MAX_FILES];
  int nf = split(data + 1, size - 1, fs);
  if (fix) {
    for (int i = 0; i < nf; i++) {
      size_t pl = strlen(fs[i].path);
      if (pl > 12 && strcmp(fs[i].path + pl - 12, "/cs-manifest") == 0) {
        char dir[200];
        memcpy(dir, fs[i].path, pl - 12);
        dir[pl - 12] = '\0';
        fix_manifest(&fs[i], fs, nf, dir);
      } else if (strcmp(fs[i].path, "chk-1/_metadata") == 0) {
        fix_metadata(&fs[i]);
      }
    }
  }
  char root[700], scratch[700], job[720];
  snprintf(root, sizeof(root), "%s/job", fuzz_scratch_dir());
  snprintf(scratch, sizeof(scratch), "%s/tmp", fuzz_scratch_dir());
  fuzz_rm_rf(root);
  mkdir(root, 0700);
  mkdir(scratch, 0700);
  write_tree(root, fs, nf);
  for (int i = 0; i < nf; i++) free(fs[i].fixed);
  snprintf(job, sizeof(job), "%s/chk-1", root);
  setenv("TMPDIR", scratch, 1);
  char *argv[] = {"state", "dump", job, NULL};
  int rc = cs_state_tool_main(3, argv);
  fflush(stdout);
  FUZZ_CHECK(rc == 0 || rc == 1);
  FUZZ_CHECK(dir_empty(scratch));
  return 0;
}
