/*
 * cs_elements.c - from_elements and from_collection: the elements, kept in
 * the job's environment table, emitted in order by subtask 0. The position
 * is the index of the next element.
 */
#include <lauxlib.h>
#include <stdio.h>

#include "host/connectors/cs_connectors_int.h"

/* Binds s to the elements table of its node in the environment of L. */
static void bind_elements(lua_State *L, cs_tinst *t, cs_source *s) {
  cs_node *n = s->op->node;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->w->env_ref);
  lua_getfield(L, -1, "_nodes");
  lua_geti(L, -1, n->index + 1);
  lua_getfield(L, -1, "count");
  s->count = lua_tointeger(L, -1);
  lua_getfield(L, -2, "elements");
  s->elems_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 4);
}

static int elements_start(lua_State *L, cs_tinst *t) {
  cs_source *s = cs__source_new(t);
  if (s == NULL) return -1;
  bind_elements(L, t, s);
  s->pos = 1;
  if (t->w->job->restore) {
    const cs_ckpt_part *part = cs_ckpt_find(t->w->job->restore, s->op->node->id, 0);
    long long next;
    if (part && part->source && sscanf(part->source, "elements %lld", &next) == 1)
      s->pos = (lua_Integer)next;
  }
  return 0;
}

static int elements_step(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL || t->src_done) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->elems_ref);
  for (int k = 0; k < CS__LINES_PER_STEP && !cs_tinst_blocked(t); k++) {
    if (s->pos > s->count) {
      t->src_done = 1;
      break;
    }
    lua_geti(L, -1, s->pos++);
    if (cs_emit(L, s->op)) break;
  }
  lua_pop(L, 1);
  return 1;
}

static char *elements_position(cs_tinst *t) {
  cs_source *s = t->src;
  cs_buf b = {0};
  if (s == NULL)
    cs_buf_printf(&b, "none");
  else
    cs_buf_printf(&b, "elements %lld", (long long)s->pos);
  return b.data;
}

/* After a reload: the elements table of the new state (the position is
 * kept). */
static void elements_rebind(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->w->env_ref);
  lua_getfield(L, -1, "_nodes");
  lua_geti(L, -1, s->op->node->index + 1);
  lua_getfield(L, -1, "elements");
  s->elems_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 3);
}

const cs_op_type cs_src_elements = {
    .name = "source_elements",
    .src_start = elements_start,
    .src_step = elements_step,
    .src_position = elements_position,
    .src_rebind = elements_rebind,
    .src_destroy = cs__source_destroy,
};
