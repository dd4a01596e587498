/*
 * cs_source.c - what the sources share: their state's creation and
 * destruction, and failing with a message. Each kind is a file of its own
 * (cs_connectors.h); a source runs as the root of a task without inputs,
 * stepped by the worker's scheduler and paused while its outputs are full.
 */
#include <lauxlib.h>
#include <unistd.h>

#include "host/connectors/cs_connectors_int.h"

int cs__source_fail(cs_tinst *t, const char *msg) {
  t->src_done = 1;
  return cs_opi_fail(t->w->L, t->ops[0], 0, msg);
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
