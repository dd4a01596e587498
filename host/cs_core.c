/*
 * cs_core.c - the `cstream.core` module: the engine functions the Lua side
 * of the API calls (execute, format, sleep, default_parallelism).
 */
#include <lauxlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_core.h"
#include "cs_format.h"
#include "cs_lua.h"
#include "cs_runtime.h"

int cs_job_worker_execute(lua_State *L, cs_worker *w, int env_idx,
                          const char *fingerprint);

static const char options_key = 'o';

void cs_core_set_options(lua_State *L, cs_options *opts) {
  lua_pushlightuserdata(L, opts);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &options_key);
}

static cs_options *get_options(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &options_key);
  cs_options *o = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return o;
}

int cs_default_parallelism(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int core_default_parallelism(lua_State *L) {
  cs_options *o = get_options(L);
  lua_pushinteger(L, o && o->parallelism > 0 ? o->parallelism
                                             : cs_default_parallelism());
  return 1;
}

static int job_error_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  return 1;
}

/* Raises the job's failure as an error object whose tostring is the
 * message (so no planning traceback is appended to it). */
static int raise_job_error(lua_State *L, const char *msg) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "job_failed");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, job_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  return lua_error(L);
}

/* core.execute(env, name, fingerprint): plans and runs the job (planning
 * state) or binds this worker to it (worker state). */
static int core_execute(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const char *name = luaL_checkstring(L, 2);
  const char *fp = luaL_checkstring(L, 3);
  cs_worker *w = cs_worker_of(L);
  if (w) return cs_job_worker_execute(L, w, 1, fp);
  cs_options *o = get_options(L);
  if (o == NULL)
    return luaL_error(L, "env:execute() needs the cstream-lua runner: run "
                         "'cstream-lua job.lua'");
  if (o->executed)
    return luaL_error(L, "env:execute() was already called: a job script "
                         "runs one job");
  o->executed = 1;
  int par = o->parallelism;
  if (par <= 0) {
    lua_getfield(L, 1, "_parallelism");
    par = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    lua_pop(L, 1);
  }
  if (par <= 0) par = cs_default_parallelism();
  char err[512];
  cs_plan *plan = NULL;
  if (cs_plan_build(L, 1, par, &plan, err, sizeof(err)))
    return luaL_error(L, "%s", err);
  char *msg = NULL;
  int rc = cs_job_run(plan, name, o->script, o->argc, o->argv, fp, &msg);
  cs_plan_destroy(plan);
  if (rc) {
    lua_pushstring(L, msg ? msg : cs_strerror(rc));
    cs_free(msg);
    return raise_job_error(L, lua_tostring(L, -1));
  }
  cs_free(msg);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.format(v): v rendered as Flink prints it. */
static int core_format(lua_State *L) {
  luaL_checkany(L, 1);
  cs_buf b = {0};
  int rc = cs_format_value(L, 1, &b);
  if (rc) {
    cs_buf_free(&b);
    return luaL_error(L, "out of memory");
  }
  lua_pushlstring(L, b.data ? b.data : "", b.len);
  cs_buf_free(&b);
  return 1;
}

int cs_core_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"execute", core_execute},
      {"format", core_format},
      {"sleep", cs_source_sleep},
      {"default_parallelism", core_default_parallelism},
      {NULL, NULL}};
  cs_operator_open_types(L);
  luaL_newlib(L, fns);
  lua_pushstring(L, CS_VERSION);
  lua_setfield(L, -2, "VERSION");
  return 1;
}
