/*
 * cs_context_time.c - the Context's event-time and side-output methods:
 * ctx:timestamp(), ctx:timer_service() (the context itself serves as the
 * timer service) with current_watermark, current_processing_time and the
 * register/delete methods for both time domains, ctx:time_domain() inside
 * on_timer, and ctx:output(tag, v).
 */
#include <lauxlib.h>
#include <string.h>

#include "host/api/cs_api.h"
#include "host/api/cs_api_int.h"
#include "host/lua/cs_lua.h"

const char *cs__tag_name(lua_State *L, int idx, const char *fn) {
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tostring(L, idx);
  if (lua_istable(L, idx) && lua_getfield(L, idx, "name") == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1); /* the table holds the string */
    return s;
  }
  luaL_error(L, "%s: expected an output tag from cstream.output_tag(name), got %s",
             fn, luaL_typename(L, idx));
  return NULL;
}

/* ctx:timestamp(): the record's event time in ms, or nil. */
static int ctx_timestamp(lua_State *L) {
  cs_opi *op = cs__check_context(L);
  cs_worker *w = op->w;
  if (w->cur_domain && w->cur_op == op)
    lua_pushinteger(L, w->cur_timer); /* in on_timer: the timer's time */
  else if (w->cur_ts == CS_NO_TS)
    lua_pushnil(L);
  else
    lua_pushinteger(L, w->cur_ts);
  return 1;
}

/* ctx:timer_service(): the context, which has the timer methods. */
static int ctx_timer_service(lua_State *L) {
  cs__check_context(L);
  lua_settop(L, 1);
  return 1;
}

static int ctx_current_watermark(lua_State *L) {
  cs_opi *op = cs__check_context(L);
  lua_pushinteger(L, op->wm);
  return 1;
}

static int ctx_current_processing_time(lua_State *L) {
  cs_opi *op = cs__check_context(L);
  lua_pushinteger(L, op->w->test_clock ? op->w->test_now_ms : cs_now_ms());
  return 1;
}

/* The time argument of a timer method: an integer number of ms. */
static int64_t check_time(lua_State *L, const char *fn) {
  int ok = 0;
  lua_Integer t = lua_tointegerx(L, 2, &ok);
  if (!ok)
    luaL_error(L, "%s: expected a time in milliseconds (an integer), got %s", fn,
               lua_type(L, 2) == LUA_TNUMBER ? "a number with a fraction"
                                             : luaL_typename(L, 2));
  return t;
}

/* Registers or deletes a timer of the current key after checking that op
 * can have one; raises with a message naming fn otherwise. */
static int timer_call(lua_State *L, int domain, int del, const char *fn) {
  cs_opi *op = cs__check_context(L);
  int64_t t = check_time(L, fn);
  if (op->timers == NULL)
    return luaL_error(L, "%s: timers need a keyed stream: operator '%s' is not "
                         "a process function after key_by", fn, op->node->name);
  if (!op->w->key_valid || op->w->cur_op != op)
    return luaL_error(L, "%s: there is no current key here (timers are set while "
                         "processing a record or in on_timer)", fn);
  if (!del) {
    int has = 0;
    if (op->self_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, op->self_ref);
      has = lua_getfield(L, -1, "on_timer") == LUA_TFUNCTION;
      lua_pop(L, 2);
    }
    if (!has)
      return luaL_error(L, "%s: operator '%s' has no on_timer method to call when "
                           "the timer fires (give the process function one)",
                        fn, op->node->name);
  }
  int rc = del ? cs_timer_delete(op, domain, t) : cs_timer_register(op, domain, t);
  if (rc) return luaL_error(L, "%s: %s", fn, cs_strerror(rc));
  return 0;
}

static int ctx_register_event_time_timer(lua_State *L) {
  return timer_call(L, CS_TIME_EVENT, 0, "register_event_time_timer");
}
static int ctx_register_processing_time_timer(lua_State *L) {
  return timer_call(L, CS_TIME_PROCESSING, 0, "register_processing_time_timer");
}
static int ctx_delete_event_time_timer(lua_State *L) {
  return timer_call(L, CS_TIME_EVENT, 1, "delete_event_time_timer");
}
static int ctx_delete_processing_time_timer(lua_State *L) {
  return timer_call(L, CS_TIME_PROCESSING, 1, "delete_processing_time_timer");
}

/* ctx:time_domain(): inside on_timer, "event_time" or "processing_time". */
static int ctx_time_domain(lua_State *L) {
  cs_opi *op = cs__check_context(L);
  int d = op->w->cur_op == op ? op->w->cur_domain : 0;
  if (d == CS_TIME_EVENT)
    lua_pushliteral(L, "event_time");
  else if (d == CS_TIME_PROCESSING)
    lua_pushliteral(L, "processing_time");
  else
    lua_pushnil(L);
  return 1;
}

int cs__output(lua_State *L, cs_opi *op, const char *fn) {
  const char *tag = cs__tag_name(L, 2, fn);
  lua_settop(L, 3);
  if (cs_emit_to(L, op, tag)) {
    cs_lua_push_abort(L);
    return lua_error(L);
  }
  return 0;
}

/* ctx:output(tag, v): sends v to the side output tag. */
static int ctx_output(lua_State *L) {
  return cs__output(L, cs__check_context(L), "output");
}

void cs__time_add_context_methods(lua_State *L, int methods_idx) {
  static const luaL_Reg fns[] = {
      {"timestamp", ctx_timestamp},
      {"timer_service", ctx_timer_service},
      {"current_watermark", ctx_current_watermark},
      {"current_processing_time", ctx_current_processing_time},
      {"register_event_time_timer", ctx_register_event_time_timer},
      {"register_processing_time_timer", ctx_register_processing_time_timer},
      {"delete_event_time_timer", ctx_delete_event_time_timer},
      {"delete_processing_time_timer", ctx_delete_processing_time_timer},
      {"time_domain", ctx_time_domain},
      {"output", ctx_output},
      {NULL, NULL}};
  methods_idx = lua_absindex(L, methods_idx);
  lua_pushvalue(L, methods_idx);
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 1);
}
