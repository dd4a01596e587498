/*
 * cs_file_source.c - read_text_file: a text file read line by line, split
 * between subtasks by byte ranges (a line belongs to the range it starts
 * in). The checkpointed position is the ranges still to be read; on a
 * restore at another parallelism they are dealt out again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/connectors/cs_connectors_int.h"

#define fail cs__source_fail


static int file_fill(cs_source *s) {
  if (s->off > 0) {
    memmove(s->buf, s->buf + s->off, s->len - s->off);
    s->buf_pos += (off_t)s->off;
    s->len -= s->off;
    s->off = 0;
  }
  if (s->len == s->cap) {
    char *nb = cs_realloc(s->buf, s->cap * 2);
    if (nb == NULL) return CS_ENOMEM;
    s->buf = nb;
    s->cap *= 2;
  }
  ssize_t n;
  do n = read(s->fd, s->buf + s->len, s->cap - s->len);
  while (n < 0 && errno == EINTR);
  if (n < 0) return CS_EIO;
  if (n == 0) s->eof = 1;
  s->len += (size_t)n;
  return 0;
}

/* Positions the reader at range r: seeks, and unless the range starts at a
 * line start, skips to the first line that starts at or after its start
 * (the line running across belongs to the previous range). */
static int file_seek_range(cs_tinst *t, cs_source *s, int r) {
  struct frange *fr = &s->ranges[r];
  s->cur = r;
  s->hi = fr->end;
  s->len = s->off = 0;
  s->eof = 0;
  off_t at = fr->aligned || fr->start == 0 ? fr->start : fr->start - 1;
  if (lseek(s->fd, at, SEEK_SET) < 0) return fail(t, strerror(errno));
  s->buf_pos = at;
  if (fr->aligned || fr->start == 0) return 0;
  for (;;) {
    if (s->off == s->len) {
      if (s->eof) break;
      if (file_fill(s)) return fail(t, "read_text_file: read error");
      continue;
    }
    char *nl = memchr(s->buf + s->off, '\n', s->len - s->off);
    if (nl) {
      s->off = (size_t)(nl - s->buf) + 1;
      break;
    }
    s->off = s->len;
  }
  return 0;
}

static int add_range(cs_source *s, off_t start, off_t end, int aligned) {
  struct frange *r = cs_realloc(s->ranges, sizeof(*r) * (size_t)(s->nranges + 1));
  if (r == NULL) return CS_ENOMEM;
  s->ranges = r;
  r[s->nranges].start = start;
  r[s->nranges].end = end;
  r[s->nranges].aligned = aligned;
  s->nranges++;
  return 0;
}

/* Parses "file a0:100,s100:200" (or "file" with no ranges: done) and adds
 * the ranges with index % nsub == sub to s. */
static int parse_ranges(cs_source *s, const char *pos, int *index, int nsub,
                        int sub) {
  if (strncmp(pos, "file", 4) != 0) return CS_EDECODE;
  const char *p = pos + 4;
  while (*p == ' ' || *p == ',') {
    p++;
    if (*p == '\0') break;
    int aligned = *p == 'a';
    if (*p != 'a' && *p != 's') return CS_EDECODE;
    char *e;
    long long a = strtoll(p + 1, &e, 10);
    if (*e != ':') return CS_EDECODE;
    long long b = strtoll(e + 1, &e, 10);
    p = e;
    if ((*index)++ % nsub == sub && add_range(s, (off_t)a, (off_t)b, aligned))
      return CS_ENOMEM;
  }
  return *p == '\0' ? 0 : CS_EDECODE;
}

static int file_start(cs_tinst *t, cs_source *s) {
  cs_node *n = t->ops[0]->node;
  char msg[600];
  s->fd = open(n->path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (s->fd < 0 || fstat(s->fd, &st) != 0) {
    snprintf(msg, sizeof(msg), "read_text_file: cannot open '%s': %s", n->path,
             strerror(errno));
    return fail(t, msg);
  }
  if (S_ISDIR(st.st_mode)) {
    snprintf(msg, sizeof(msg), "read_text_file: '%s' is a directory", n->path);
    return fail(t, msg);
  }
  s->cap = CS__FILE_CHUNK;
  s->buf = cs_malloc(s->cap);
  if (s->buf == NULL) return fail(t, "out of memory");
  s->cur = -1;
  int p = n->parallelism, i = t->subtask;
  cs_ckpt *ck = t->w->job->restore;
  int oldp = ck ? cs_ckpt_op_parallelism(ck, n->id) : 0;
  if (oldp > 0) {
    /* The ranges every old subtask still had to read, dealt out again. */
    int index = 0;
    for (int j = 0; j < oldp; j++) {
      const cs_ckpt_part *part = cs_ckpt_find(ck, n->id, j);
      if (part == NULL || part->source == NULL ||
          parse_ranges(s, part->source, &index, p, i)) {
        snprintf(msg, sizeof(msg), "read_text_file: the checkpoint has no "
                 "valid position for subtask %d of '%s'", j + 1, n->id);
        return fail(t, msg);
      }
    }
  } else {
    off_t size = st.st_size;
    off_t lo = (off_t)((long double)size * i / p);
    off_t hi = (off_t)((long double)size * (i + 1) / p);
    if (add_range(s, lo, hi, lo == 0)) return fail(t, "out of memory");
  }
  return 0;
}

/* Fails the source on the line starting at file offset at (the first n
 * bytes of it in line), naming its number: the newlines before it are
 * counted now, on the way out, not on every line read. */
static int file_line_too_long(cs_tinst *t, cs_source *s, off_t at,
                              const char *line, size_t n) {
  long long lineno = 1;
  char buf[CS__FILE_CHUNK];
  for (off_t pos = 0; pos < at;) {
    size_t want = at - pos < (off_t)sizeof(buf) ? (size_t)(at - pos) : sizeof(buf);
    ssize_t r = pread(s->fd, buf, want, pos);
    if (r <= 0) break;
    for (ssize_t i = 0; i < r; i++) lineno += buf[i] == '\n';
    pos += r;
  }
  char what[600];
  snprintf(what, sizeof(what), "read_text_file: line %lld of '%s' (at byte %lld)",
           lineno, t->ops[0]->node->path, (long long)at);
  return cs__source_line_too_long(t, what, line, n);
}

static int file_step(lua_State *L, cs_tinst *t, cs_source *s) {
  size_t max = cs__source_max_line(t);
  for (int k = 0; k < CS__LINES_PER_STEP && !cs_tinst_blocked(t); k++) {
    if (s->cur < 0 || s->buf_pos + (off_t)s->off >= s->hi ||
        (s->eof && s->off == s->len)) {
      /* this range is done: on to the next one */
      if (s->cur + 1 >= s->nranges) {
        s->cur = s->nranges;
        t->src_done = 1;
        return 1;
      }
      if (file_seek_range(t, s, s->cur + 1)) return 1;
      continue;
    }
    char *nl = memchr(s->buf + s->off, '\n', s->len - s->off);
    if (nl == NULL && !s->eof) {
      if (s->len - s->off > max)
        return file_line_too_long(t, s, s->buf_pos + (off_t)s->off, s->buf + s->off,
                                  s->len - s->off), 1;
      if (file_fill(s)) return fail(t, "read_text_file: read error"), 1;
      k--;
      continue;
    }
    size_t end = nl ? (size_t)(nl - s->buf) : s->len;
    if (nl == NULL && end == s->off) continue; /* end of file */
    size_t l = end - s->off;
    if (l > 0 && s->buf[s->off + l - 1] == '\r') l--;
    if (l > max)
      return file_line_too_long(t, s, s->buf_pos + (off_t)s->off, s->buf + s->off, l), 1;
    lua_pushlstring(L, s->buf + s->off, l);
    s->off = nl ? end + 1 : end;
    if (cs_emit(L, s->op)) return 1;
  }
  return 1;
}

/* "file a<next line>:<end>,s<start>:<end>,...": the rest of the current
 * range (from the next line, which is a line start) and the ranges not
 * started yet. */
static char *file_position(cs_source *s) {
  cs_buf b = {0};
  cs_buf_append(&b, "file", 4);
  char sep = ' ';
  int from = s->cur < 0 ? 0 : s->cur;
  for (int r = from; r < s->nranges; r++) {
    off_t start = s->ranges[r].start;
    int aligned = s->ranges[r].aligned;
    if (r == s->cur) {
      start = s->buf_pos + (off_t)s->off;
      aligned = 1;
      if (start >= s->ranges[r].end || (s->eof && s->off == s->len)) continue;
    }
    cs_buf_printf(&b, "%c%c%lld:%lld", sep, aligned ? 'a' : 's', (long long)start,
                  (long long)s->ranges[r].end);
    sep = ',';
  }
  cs_buf_append(&b, "", 1);
  return b.data;
}

static int file_src_start(lua_State *L, cs_tinst *t) {
  (void)L;
  cs_source *s = cs__source_new(t);
  return s ? file_start(t, s) : -1;
}

static int file_src_step(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL || t->src_done) return 0;
  return file_step(L, t, s);
}

static char *file_src_position(cs_tinst *t) {
  if (t->src == NULL) return cs_strdup("none");
  return file_position(t->src);
}

const cs_op_type cs_src_file = {
    .name = "source_file",
    .src_start = file_src_start,
    .src_step = file_src_step,
    .src_position = file_src_position,
    .src_destroy = cs__source_destroy,
};
