/*
 * cs_source.c - what the sources share: their state's creation and
 * destruction, and failing with a message. Each kind is a file of its own
 * (cs_connectors.h); a source runs as the root of a task without inputs,
 * stepped by the worker's scheduler and paused while its outputs are full.
 */
#include <lauxlib.h>
#include <stdint.h>
#include <unistd.h>

#include "host/connectors/cs_connectors_int.h"

int cs__source_fail(cs_tinst *t, const char *msg) {
  t->src_done = 1;
  return cs_opi_fail(t->w->L, t->ops[0], 0, msg);
}

size_t cs__source_max_line(const cs_tinst *t) {
  long long max = t->w->job->cfg->max_line_length;
  return max > 0 ? (size_t)max : SIZE_MAX;
}

int cs__source_line_too_long(cs_tinst *t, const char *what, const char *line,
                             size_t n) {
  cs_buf b = {0};
  cs_buf_printf(&b, "%s is longer than source.max-line-length (%lld bytes); it "
                "starts \"", what, t->w->job->cfg->max_line_length);
  for (size_t i = 0; i < n && i < 40; i++) {
    unsigned char c = (unsigned char)line[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
      cs_buf_append(&b, line + i, 1);
    else
      cs_buf_printf(&b, "\\x%02x", c);
  }
  cs_buf_printf(&b, "%s\"", n > 40 ? "..." : "");
  int rc = cs__source_fail(t, b.data ? b.data : "a line is too long");
  cs_buf_free(&b);
  return rc;
}

cs_source *cs__source_new(cs_tinst *t) {
  cs_source *s = cs_calloc(1, sizeof(*s));
  if (s == NULL) {
    cs__source_fail(t, "out of memory");
    return NULL;
  }
  t->src = s;
  s->t = t;
  s->op = t->ops[0];
  s->fd = -1;
  s->elems_ref = s->co_ref = LUA_NOREF;
  return s;
}

static void sock_closed(uv_handle_t *h) {
  cs_source *s = h->data;
  s->tcp_closed = 1;
}

static void timer_closed(uv_handle_t *h) {
  cs_source *s = h->data;
  s->timer_closed = 1;
}

void cs__source_destroy(lua_State *L, cs_tinst *t) {
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
