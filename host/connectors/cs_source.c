/*
 * cs_source.c - the sources: elements and collections, text files (split
 * between subtasks by byte ranges), a TCP text socket (libuv client) and
 * user sources written in Lua, which run as coroutines so the worker can
 * interleave them with other work and pause them under backpressure.
 */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime.h"

#define LINES_PER_STEP 1024
#define COLLECTS_PER_YIELD 256
#define FILE_CHUNK (64 * 1024)

typedef struct cs_source {
  cs_tinst *t;
  cs_opi *op;
  /* elements */
  int elems_ref;
  lua_Integer pos, count;
  /* file: the byte ranges still to read, the first one being read now */
  int fd;
  char *buf;
  size_t len, off, cap;
  int eof;
  off_t buf_pos; /* file offset of buf[0] */
  off_t hi;      /* lines starting at or after hi belong to the next split */
  struct frange {
    off_t start, end;
    int aligned; /* start is a line start; else skip to the next line */
  } *ranges;
  int nranges, cur; /* cur: the range being read, -1 before the first */
  /* socket */
  uv_tcp_t tcp;
  uv_connect_t conn;
  struct addrinfo *ai, *ai_cur;
  int tcp_open, tcp_closed, reading, connected;
  cs_buf line;
  char rbuf[FILE_CHUNK];
  /* custom */
  lua_State *co;
  int co_ref;
  int started;
  uv_timer_t timer;
  int timer_open, timer_closed;
  uint64_t sleep_until;
} cs_source;

static int fail(cs_tinst *t, const char *msg) {
  t->src_done = 1;
  return cs_opi_fail(t->w->L, t->ops[0], 0, msg);
}

/* ================================================================ file */

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
  s->cap = FILE_CHUNK;
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

static int file_step(lua_State *L, cs_tinst *t, cs_source *s) {
  for (int k = 0; k < LINES_PER_STEP && !cs_tinst_blocked(t); k++) {
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
      if (file_fill(s)) return fail(t, "read_text_file: read error"), 1;
      k--;
      continue;
    }
    size_t end = nl ? (size_t)(nl - s->buf) : s->len;
    if (nl == NULL && end == s->off) continue; /* end of file */
    size_t l = end - s->off;
    if (l > 0 && s->buf[s->off + l - 1] == '\r') l--;
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

/* ============================================================== socket */

static void sock_closed(uv_handle_t *h) {
  cs_source *s = h->data;
  s->tcp_closed = 1;
}

static void sock_try_next(cs_source *s);

static void sock_retry(uv_handle_t *h) {
  cs_source *s = h->data;
  s->tcp_open = 0;
  if (!s->t->src_done) sock_try_next(s);
}

static void sock_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  cs_source *s = h->data;
  (void)suggested;
  buf->base = s->rbuf;
  buf->len = sizeof(s->rbuf);
}

/* Emits complete lines from s->line. */
static void sock_emit_lines(cs_source *s, int final) {
  cs_tinst *t = s->t;
  lua_State *L = t->w->L;
  char delim = s->op->node->delim;
  size_t off = 0;
  for (;;) {
    char *d = memchr(s->line.data + off, delim, s->line.len - off);
    if (d == NULL) break;
    size_t l = (size_t)(d - (s->line.data + off));
    if (delim == '\n' && l > 0 && s->line.data[off + l - 1] == '\r') l--;
    lua_pushlstring(L, s->line.data + off, l);
    off = (size_t)(d - s->line.data) + 1;
    if (cs_emit(L, s->op)) return;
  }
  if (final && off < s->line.len) {
    lua_pushlstring(L, s->line.data + off, s->line.len - off);
    off = s->line.len;
    if (cs_emit(L, s->op)) return;
  }
  memmove(s->line.data, s->line.data + off, s->line.len - off);
  s->line.len -= off;
}

static void sock_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  cs_source *s = st->data;
  cs_tinst *t = s->t;
  if (nread > 0) {
    if (cs_buf_append(&s->line, buf->base, (size_t)nread)) {
      fail(t, "out of memory");
      return;
    }
    sock_emit_lines(s, 0);
    if (cs_tinst_blocked(t) && s->reading) {
      uv_read_stop(st);
      s->reading = 0;
    }
  } else if (nread < 0) {
    if (nread != UV_EOF) {
      char msg[300];
      snprintf(msg, sizeof(msg), "socket_text_stream: reading from %s:%d failed: %s",
               s->op->node->host, s->op->node->port, uv_strerror((int)nread));
      fail(t, msg);
    } else {
      sock_emit_lines(s, 1);
    }
    uv_read_stop(st);
    s->reading = 0;
    t->src_done = 1;
    if (!uv_is_closing((uv_handle_t *)&s->tcp)) uv_close((uv_handle_t *)&s->tcp, sock_closed);
  }
  cs_worker_kick(t->w);
}

static void sock_connected(uv_connect_t *req, int status) {
  cs_source *s = req->data;
  if (s->t->src_done) return;
  if (status < 0) {
    if (s->ai_cur && s->ai_cur->ai_next) {
      /* Try the next address once this handle has closed. */
      s->ai_cur = s->ai_cur->ai_next;
      uv_close((uv_handle_t *)&s->tcp, sock_retry);
      return;
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "socket_text_stream: cannot connect to %s:%d: %s",
             s->op->node->host, s->op->node->port, uv_strerror(status));
    fail(s->t, msg);
    cs_worker_kick(s->t->w);
    return;
  }
  s->connected = 1;
  uv_read_start((uv_stream_t *)&s->tcp, sock_alloc, sock_read);
  s->reading = 1;
}

static void sock_try_next(cs_source *s) {
  cs_worker *w = s->t->w;
  uv_tcp_init(&w->loop, &s->tcp);
  s->tcp.data = s;
  s->tcp_open = 1;
  s->tcp_closed = 0;
  s->conn.data = s;
  int rc = uv_tcp_connect(&s->conn, &s->tcp, s->ai_cur->ai_addr, sock_connected);
  if (rc) sock_connected(&s->conn, rc);
}

static int socket_start(cs_tinst *t, cs_source *s) {
  cs_node *n = t->ops[0]->node;
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  char port[16];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", n->port);
  int rc = uv_getaddrinfo(&t->w->loop, &req, NULL, n->host, port, &hints);
  if (rc) {
    char msg[300];
    snprintf(msg, sizeof(msg), "socket_text_stream: cannot resolve '%s': %s",
             n->host, uv_strerror(rc));
    return fail(t, msg);
  }
  s->ai = s->ai_cur = req.addrinfo;
  sock_try_next(s);
  return atomic_load(&t->w->job->failed) ? -1 : 0;
}

/* ============================================================== custom */

static void on_sleep_timer(uv_timer_t *h) {
  cs_source *s = h->data;
  s->sleep_until = 0;
  cs_worker_kick(s->t->w);
}

static void timer_closed(uv_handle_t *h) {
  cs_source *s = h->data;
  s->timer_closed = 1;
}

static int custom_start(lua_State *L, cs_tinst *t, cs_source *s) {
  s->co = lua_newthread(L);
  s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(&t->w->loop, &s->timer);
  s->timer.data = s;
  s->timer_open = 1;
  return 0;
}

static int custom_step(lua_State *L, cs_tinst *t, cs_source *s) {
  if (s->sleep_until) return 0;
  lua_State *co = s->co;
  int nargs = 0, nres = 0;
  if (!s->started) {
    s->started = 1;
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->op->fn_ref[0]);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->op->self_ref);
    lua_rawgeti(co, LUA_REGISTRYINDEX, s->op->ctx_ref);
    nargs = 2;
  }
  t->w->cur_op = s->op;
  int st = lua_resume(co, L, nargs, &nres);
  if (st == LUA_YIELD) {
    lua_pop(co, nres);
    return 1;
  }
  t->src_done = 1;
  if (st != LUA_OK) {
    if (!cs_lua_is_abort(co, -1)) {
      const char *m = lua_tostring(co, -1);
      luaL_traceback(L, co, m ? m : "(error object is not a string)", 0);
      cs_opi_fail(L, s->op, 0, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_settop(co, 0);
  return 1;
}

int cs_source_collect(lua_State *L, cs_opi *op) {
  cs_tinst *t = op->t;
  cs_source *s = t->src;
  if (s == NULL || L != s->co)
    return luaL_error(L, "ctx:collect must be called from the source's run()");
  if (cs_emit(L, op)) {
    cs_lua_push_abort(L);
    return lua_error(L);
  }
  if ((cs_tinst_blocked(t) || ++s->pos % COLLECTS_PER_YIELD == 0 ||
       atomic_load(&t->w->stop)) && lua_isyieldable(L))
    return lua_yield(L, 0);
  return 0;
}

int cs_source_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms < 0) ms = 0;
  cs_worker *w = cs_worker_of(L);
  if (w && w->cur_op && w->cur_op->t && w->cur_op->t->src &&
      w->cur_op->t->src->co == L && lua_isyieldable(L)) {
    cs_source *s = w->cur_op->t->src;
    s->sleep_until = uv_now(&w->loop) + (uint64_t)ms + 1;
    uv_timer_start(&s->timer, on_sleep_timer, (uint64_t)ms, 0);
    return lua_yield(L, 0);
  }
  struct timespec ts = {(time_t)(ms / 1000),
                        (long)((ms - (lua_Number)(time_t)(ms / 1000) * 1000) * 1e6)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

/* ============================================================= generic */

int cs_source_start(lua_State *L, cs_tinst *t) {
  cs_source *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) return fail(t, "out of memory");
  t->src = s;
  s->t = t;
  s->op = t->ops[0];
  s->fd = -1;
  s->elems_ref = s->co_ref = LUA_NOREF;
  cs_node *n = s->op->node;
  switch (n->kind) {
  case CS_OP_SRC_ELEMENTS:
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->w->env_ref);
    lua_getfield(L, -1, "_nodes");
    lua_geti(L, -1, n->index + 1);
    lua_getfield(L, -1, "count");
    s->count = lua_tointeger(L, -1);
    lua_getfield(L, -2, "elements");
    s->elems_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 4);
    s->pos = 1;
    if (t->w->job->restore) {
      const cs_ckpt_part *part = cs_ckpt_find(t->w->job->restore, n->id, 0);
      long long next;
      if (part && part->source && sscanf(part->source, "elements %lld", &next) == 1)
        s->pos = (lua_Integer)next;
    }
    return 0;
  case CS_OP_SRC_FILE:
    return file_start(t, s);
  case CS_OP_SRC_SOCKET:
    return socket_start(t, s);
  case CS_OP_SRC_CUSTOM:
    return custom_start(L, t, s);
  default:
    return fail(t, "internal error: not a source");
  }
}

char *cs_source_position(cs_tinst *t) {
  cs_source *s = t->src;
  cs_buf b = {0};
  if (s == NULL) {
    cs_buf_printf(&b, "none");
    return b.data;
  }
  switch (s->op->node->kind) {
  case CS_OP_SRC_ELEMENTS:
    cs_buf_printf(&b, "elements %lld", (long long)s->pos);
    return b.data;
  case CS_OP_SRC_FILE:
    return file_position(s);
  default:
    cs_buf_printf(&b, "none");
    return b.data;
  }
}

void cs_source_rebind(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL) return;
  cs_node *n = s->op->node;
  if (n->kind == CS_OP_SRC_ELEMENTS) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->w->env_ref);
    lua_getfield(L, -1, "_nodes");
    lua_geti(L, -1, n->index + 1);
    lua_getfield(L, -1, "elements");
    s->elems_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 3);
  } else if (n->kind == CS_OP_SRC_CUSTOM) {
    /* run() starts again in the new state; its position is its operator
     * state, as after a restart from a checkpoint */
    s->co = lua_newthread(L);
    s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->started = 0;
    s->sleep_until = 0;
    uv_timer_stop(&s->timer);
  }
}

int cs_source_step(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL || t->src_done) return 0;
  switch (s->op->node->kind) {
  case CS_OP_SRC_ELEMENTS:
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->elems_ref);
    for (int k = 0; k < LINES_PER_STEP && !cs_tinst_blocked(t); k++) {
      if (s->pos > s->count) {
        t->src_done = 1;
        break;
      }
      lua_geti(L, -1, s->pos++);
      if (cs_emit(L, s->op)) break;
    }
    lua_pop(L, 1);
    return 1;
  case CS_OP_SRC_FILE:
    return file_step(L, t, s);
  case CS_OP_SRC_SOCKET:
    return 0; /* driven by read callbacks */
  case CS_OP_SRC_CUSTOM:
    return custom_step(L, t, s);
  default:
    return 0;
  }
}

void cs_source_unblocked(cs_tinst *t) {
  cs_source *s = t->src;
  if (s && s->op->node->kind == CS_OP_SRC_SOCKET && s->connected && !s->reading &&
      !t->src_done) {
    uv_read_start((uv_stream_t *)&s->tcp, sock_alloc, sock_read);
    s->reading = 1;
  }
}

void cs_source_cancel(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  t->src_done = 1;
  if (s == NULL) return;
  if (s->op->node->kind == CS_OP_SRC_SOCKET && s->tcp_open &&
      !uv_is_closing((uv_handle_t *)&s->tcp)) {
    uv_close((uv_handle_t *)&s->tcp, sock_closed);
  }
  if (s->op->node->kind == CS_OP_SRC_CUSTOM && s->op->self_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->op->self_ref);
    if (lua_getfield(L, -1, "cancel") == LUA_TFUNCTION) {
      lua_insert(L, -2);
      if (cs_lua_pcall(L, 1, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        cs_opi_fail(L, s->op, 0, m ? m : "error in cancel()");
        lua_pop(L, 1);
      }
    } else {
      lua_pop(L, 2);
    }
  }
}

void cs_source_destroy(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL) return;
  cs_worker *w = t->w;
  if (s->tcp_open && !uv_is_closing((uv_handle_t *)&s->tcp))
    uv_close((uv_handle_t *)&s->tcp, sock_closed);
  if (s->timer_open) uv_close((uv_handle_t *)&s->timer, timer_closed);
  /* Let close callbacks run before the memory goes. */
  for (int i = 0; i < 100 && ((s->tcp_open && !s->tcp_closed) ||
                              (s->timer_open && !s->timer_closed)); i++)
    uv_run(&w->loop, UV_RUN_NOWAIT);
  if (s->ai) uv_freeaddrinfo(s->ai);
  if (s->fd >= 0) close(s->fd);
  cs_free(s->buf);
  cs_free(s->ranges);
  cs_buf_free(&s->line);
  luaL_unref(L, LUA_REGISTRYINDEX, s->elems_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->co_ref);
  cs_free(s);
  t->src = NULL;
}
