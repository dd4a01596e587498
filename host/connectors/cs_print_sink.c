/*
 * cs_print_sink.c - print: each record rendered as Flink prints it, one
 * line, to stdout (or stderr), prefixed "N> " (subtask N) when the sink
 * runs in parallel and with the identifier given to print(). Lines are
 * buffered per worker and written whole (cs_worker_flush_stdio). The line
 * rendering is shared with write_as_text (cs_file_sink.c).
 */
#include "host/api/cs_api.h"
#include "host/connectors/cs_connectors_int.h"
#include "host/lua/cs_lua.h"

#define STDIO_FLUSH_BYTES (64 * 1024)

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
      return cs__file_sink_flush(op);
  }
  return 0;
}

int cs__sink_write_line(lua_State *L, cs_opi *op, cs_buf *b) {
  int rec = lua_gettop(L);
  line_start(op, b);
  int rc = cs_format_value(L, rec, b);
  lua_settop(L, rec - 1);
  return line_end(op, b, rc);
}

int cs__sink_write_line_encoded(cs_opi *op, cs_buf *b, cs_slice v) {
  size_t mark = b->len;
  line_start(op, b);
  int rc = cs_format_encoded(v, b);
  if (rc == 1 || rc == CS_EDECODE) { /* the Lua path renders it */
    b->len = mark;
    return 1;
  }
  return line_end(op, b, rc);
}

/* The worker's buffer the sink's lines go to. */
static cs_buf *print_buf(cs_opi *op) {
  return op->node->to_stderr ? &op->w->err : &op->w->out;
}

static int print_process(lua_State *L, cs_opi *op, int input) {
  (void)input;
  return cs__sink_write_line(L, op, print_buf(op));
}

static int print_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice v) {
  (void)L;
  (void)input;
  return cs__sink_write_line_encoded(op, print_buf(op), v);
}

const cs_op_type cs_sink_print = {
    .name = "sink_print",
    .process = print_process,
    .process_encoded = print_process_encoded,
};
