/*
 * cs_custom_source.c - add_source: a user source's run(self, ctx) runs as
 * a coroutine, so the worker can interleave it with other work: it yields
 * every few collects, whenever the task's outputs are full, and in
 * cstream.sleep (a libuv timer wakes it). Its position is its operator
 * state, as in Flink; after a reload run() starts again in the new state.
 */
#include <errno.h>
#include <lauxlib.h>
#include <time.h>

#include "host/api/cs_api.h"
#include "host/connectors/cs_connectors_int.h"
#include "host/lua/cs_lua.h"
#include "state/cs_ttl.h"

#define COLLECTS_PER_YIELD 256


static void on_sleep_timer(uv_timer_t *h) {
  cs_source *s = h->data;
  s->sleep_until = 0;
  cs_worker_kick(s->t->w);
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
  int st = cs_lua_resume(co, L, nargs, &nres);
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

static int cs_source_collect(lua_State *L, cs_opi *op) {
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
  if (cs_ttl_clock_is_test()) { /* CSTREAM_TEST_CLOCK_MS: time moves at once */
    cs_ttl_clock_advance((int64_t)ms);
    ms = 0; /* and a source still yields to the engine */
  }
  cs_worker *w = cs_worker_of(L);
  cs_source *s = w && w->cur_op && w->cur_op->t && w->cur_op->node->type == &cs_src_custom
                      ? w->cur_op->t->src : NULL;
  if (s && s->co == L && lua_isyieldable(L)) {
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

static int custom_src_start(lua_State *L, cs_tinst *t) {
  cs_source *s = cs__source_new(t);
  return s ? custom_start(L, t, s) : -1;
}

static int custom_src_step(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL || t->src_done) return 0;
  return custom_step(L, t, s);
}

/* run() starts again in the new state; its position is its operator
 * state, as after a restart from a checkpoint. */
static void custom_rebind(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL) return;
  s->co = lua_newthread(L);
  s->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->started = 0;
  s->sleep_until = 0;
  uv_timer_stop(&s->timer);
}

/* Calls the rich function's cancel(self), if it has one. */
static void custom_cancel(lua_State *L, cs_tinst *t) {
  cs_source *s = t->src;
  if (s == NULL || s->op->self_ref == LUA_NOREF) return;
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

const cs_op_type cs_src_custom = {
    .name = "source_custom",
    .method = {"run", NULL},
    .bind = cs_api_bind,
    CS_API_LIFECYCLE,
    .src_start = custom_src_start,
    .src_step = custom_src_step,
    .src_rebind = custom_rebind,
    .src_cancel = custom_cancel,
    .src_destroy = cs__source_destroy,
    .src_collect = cs_source_collect,
};
