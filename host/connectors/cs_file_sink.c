/*
 * cs_file_sink.c - write_as_text: each record rendered as print renders it
 * (without prefix), one line, to a file, or with parallelism > 1 to one
 * file per subtask in a directory. A file is written under a temporary
 * name and renamed into place when its subtask finishes, so a failed job
 * never leaves a half-written file where a good one was.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/connectors/cs_connectors_int.h"

/* Opens the sink's temporary file (when first bound, not on a reload). */
static int file_sink_bind(lua_State *L, cs_opi *op, int env_idx) {
  (void)env_idx;
  if (op->w->reloading) return 0;
  cs_node *n = op->node;
  cs_file_sink *fs = cs_calloc(1, sizeof(*fs));
  if (fs == NULL) return cs_opi_fail(L, op, 0, "out of memory");
  op->data = fs;
  cs_buf path = {0};
  if (n->parallelism > 1) {
    if (mkdir(n->path, 0777) != 0 && errno != EEXIST) goto fail_errno;
    cs_buf_printf(&path, "%s/%d", n->path, op->subtask + 1);
  } else {
    cs_buf_printf(&path, "%s", n->path);
  }
  if (path.data == NULL) goto fail_errno;
  fs->path = path.data;
  cs_buf tmp = {0};
  cs_buf_printf(&tmp, "%s.inprogress.%d", fs->path, (int)getpid());
  if (tmp.data == NULL) goto fail_errno;
  fs->file = fopen(tmp.data, "w");
  cs_buf_free(&tmp);
  if (fs->file == NULL) goto fail_errno;
  return 0;
fail_errno:;
  char msg[512];
  snprintf(msg, sizeof(msg), "write_as_text: cannot write '%s': %s",
           fs->path ? fs->path : n->path, strerror(errno));
  return cs_opi_fail(L, op, 0, msg);
}

int cs__file_sink_flush(cs_opi *op) {
  cs_file_sink *fs = op->data;
  if (fs == NULL || fs->file == NULL) return 0;
  if (fs->buf.len && fwrite(fs->buf.data, 1, fs->buf.len, fs->file) != fs->buf.len) {
    char msg[512];
    snprintf(msg, sizeof(msg), "write_as_text: cannot write '%s': %s",
             fs->path, strerror(errno));
    return cs_opi_fail(op->w->L, op, 0, msg);
  }
  cs_buf_reset(&fs->buf);
  return 0;
}

static int file_sink_process(lua_State *L, cs_opi *op, int input) {
  (void)input;
  cs_file_sink *fs = op->data;
  return cs__sink_write_line(L, op, &fs->buf);
}

static int file_sink_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice v) {
  (void)L;
  (void)input;
  cs_file_sink *fs = op->data;
  return cs__sink_write_line_encoded(op, &fs->buf, v);
}

/* Closes the file: renamed into place when the job is healthy and the
 * subtask finished, removed otherwise. */
static void file_sink_destroy(cs_opi *op) {
  cs_file_sink *fs = op->data;
  if (fs == NULL) return;
  if (fs->file) {
    int ok = !atomic_load(&op->w->job->failed) && op->t && op->t->finished;
    if (ok && cs__file_sink_flush(op)) ok = 0;
    if (fflush(fs->file) != 0 || fsync(fileno(fs->file)) != 0) ok = 0;
    fclose(fs->file);
    fs->file = NULL;
    cs_buf tmp = {0};
    cs_buf_printf(&tmp, "%s.inprogress.%d", fs->path, (int)getpid());
    if (tmp.data) {
      if (ok) {
        if (rename(tmp.data, fs->path) != 0) {
          fprintf(stderr, "cstream-lua: write_as_text: cannot rename '%s': %s\n",
                  tmp.data, strerror(errno));
        }
      } else {
        unlink(tmp.data);
      }
    }
    cs_buf_free(&tmp);
  }
  cs_free(fs->path);
  cs_buf_free(&fs->buf);
  cs_free(fs);
  op->data = NULL;
}

const cs_op_type cs_sink_file = {
    .name = "sink_file",
    .bind = file_sink_bind,
    .process = file_sink_process,
    .process_encoded = file_sink_process_encoded,
    .flush = cs__file_sink_flush,
    .destroy = file_sink_destroy,
};
