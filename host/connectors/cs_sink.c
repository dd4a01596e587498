/*
 * cs_sink.c - the built-in sinks: print (Flink's format and "N> " prefix)
 * and write_as_text. A text file is written under a temporary name and
 * renamed into place when its subtask finishes, so a failed job never
 * leaves a half-written file where a good one was.
 */
#include <errno.h>
#include <lauxlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/lua/cs_format.h"
#include "host/runtime/cs_runtime.h"

#define STDIO_FLUSH_BYTES (64 * 1024)

void cs_worker_flush_stdio(cs_worker *w) {
  if (w->out.len == 0 && w->err.len == 0) return;
  uv_mutex_lock(&w->job->out_lock);
  if (w->out.len) {
    fwrite(w->out.data, 1, w->out.len, stdout);
    fflush(stdout);
  }
  if (w->err.len) {
    fwrite(w->err.data, 1, w->err.len, stderr);
    fflush(stderr);
  }
  uv_mutex_unlock(&w->job->out_lock);
  cs_buf_reset(&w->out);
  cs_buf_reset(&w->err);
}

int cs_sink_open(cs_opi *op) {
  cs_node *n = op->node;
  if (n->kind != CS_OP_SINK_FILE) return 0;
  cs_buf path = {0};
  if (n->parallelism > 1) {
    if (mkdir(n->path, 0777) != 0 && errno != EEXIST) goto fail_errno;
    cs_buf_printf(&path, "%s/%d", n->path, op->subtask + 1);
  } else {
    cs_buf_printf(&path, "%s", n->path);
  }
  if (path.data == NULL) goto fail_errno;
  op->file_path = path.data;
  cs_buf tmp = {0};
  cs_buf_printf(&tmp, "%s.inprogress.%d", op->file_path, (int)getpid());
  if (tmp.data == NULL) goto fail_errno;
  op->file = fopen(tmp.data, "w");
  cs_buf_free(&tmp);
  if (op->file == NULL) goto fail_errno;
  return 0;
fail_errno:;
  char msg[512];
  snprintf(msg, sizeof(msg), "write_as_text: cannot write '%s': %s",
           op->file_path ? op->file_path : n->path, strerror(errno));
  return cs_opi_fail(op->w->L, op, 0, msg);
}

/* The buffer a sink's lines go to. */
static cs_buf *sink_buf(cs_opi *op) {
  if (op->node->kind != CS_OP_SINK_PRINT) return &op->fbuf;
  return op->node->to_stderr ? &op->w->err : &op->w->out;
}

/* Starts a line in b: the print sink's prefix ("N> ", "id> ", "id:N> "). */
static void line_start(cs_opi *op, cs_buf *b) {
  cs_node *n = op->node;
  if (n->kind != CS_OP_SINK_PRINT) return;
  if (op->w->out.len == 0 && op->w->err.len == 0) op->w->stdio_born = uv_hrtime();
  if (n->prefix && n->parallelism > 1)
    cs_buf_printf(b, "%s:%d> ", n->prefix, op->subtask + 1);
  else if (n->prefix)
    cs_buf_printf(b, "%s> ", n->prefix);
  else if (n->parallelism > 1)
    cs_buf_printf(b, "%d> ", op->subtask + 1);
}

/* Ends the line rendered into b (rc: how the rendering went) and flushes
 * when enough is buffered. Returns 0 or -1. */
static int line_end(cs_opi *op, cs_buf *b, int rc) {
  if (rc == 0) rc = cs_buf_append(b, "\n", 1);
  if (rc) return cs_opi_fail(op->w->L, op, 0, "out of memory in a sink");
  if (b->len >= STDIO_FLUSH_BYTES) {
    if (op->node->kind == CS_OP_SINK_PRINT)
      cs_worker_flush_stdio(op->w);
    else
      return cs_sink_flush(op);
  }
  return 0;
}

int cs_sink_write(lua_State *L, cs_opi *op) {
  int rec = lua_gettop(L);
  cs_buf *b = sink_buf(op);
  line_start(op, b);
  int rc = cs_format_value(L, rec, b);
  lua_settop(L, rec - 1);
  return line_end(op, b, rc);
}

int cs_sink_write_encoded(cs_opi *op, cs_slice v) {
  cs_buf *b = sink_buf(op);
  size_t mark = b->len;
  line_start(op, b);
  int rc = cs_format_encoded(v, b);
  if (rc == 1 || rc == CS_EDECODE) { /* the Lua path renders it */
    b->len = mark;
    return 1;
  }
  return line_end(op, b, rc);
}

int cs_sink_flush(cs_opi *op) {
  if (op->node == NULL || op->node->kind != CS_OP_SINK_FILE || op->file == NULL)
    return 0;
  if (op->fbuf.len && fwrite(op->fbuf.data, 1, op->fbuf.len, op->file) != op->fbuf.len) {
    char msg[512];
    snprintf(msg, sizeof(msg), "write_as_text: cannot write '%s': %s",
             op->file_path, strerror(errno));
    return cs_opi_fail(op->w->L, op, 0, msg);
  }
  cs_buf_reset(&op->fbuf);
  return 0;
}

/* Closes a file sink: renamed into place when the job is healthy and the
 * subtask finished, removed otherwise. */
void cs_sink_close(cs_opi *op) {
  if (op->file) {
    int ok = !atomic_load(&op->w->job->failed) && op->t && op->t->finished;
    if (ok && cs_sink_flush(op)) ok = 0;
    if (fflush(op->file) != 0 || fsync(fileno(op->file)) != 0) ok = 0;
    fclose(op->file);
    op->file = NULL;
    cs_buf tmp = {0};
    cs_buf_printf(&tmp, "%s.inprogress.%d", op->file_path, (int)getpid());
    if (tmp.data) {
      if (ok) {
        if (rename(tmp.data, op->file_path) != 0) {
          fprintf(stderr, "cstream-lua: write_as_text: cannot rename '%s': %s\n",
                  tmp.data, strerror(errno));
        }
      } else {
        unlink(tmp.data);
      }
    }
    cs_buf_free(&tmp);
  }
  cs_free(op->file_path);
  op->file_path = NULL;
  cs_buf_free(&op->fbuf);
}
