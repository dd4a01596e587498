/*
 * cs_lua.c - Lua states with our allocator, the message handler and the
 * single pcall door into user code.
 */
#include "host/lua/cs_lua.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Lua's allocator contract on mimalloc (the C library's allocator in the
 * sanitizer build). Not cs_realloc: Lua allocates several blocks per
 * record, and the shared atomic byte counter behind cs_malloc made the
 * workers' cores fight over one cache line; mimalloc's thread-local free
 * lists take fewer instructions than glibc's (bench/README.md, "Profile").
 * Lua counts its own memory (collectgarbage("count")). */
#ifdef CS_LUA_MIMALLOC
#include <mimalloc.h>
#define lua_free_ mi_free
#define lua_malloc_ mi_malloc
#define lua_realloc_ mi_realloc
#else
#define lua_free_ free
#define lua_malloc_ malloc
#define lua_realloc_ realloc
#endif

/* A new block (ptr NULL: osize is then a type tag, not a size) takes the
 * allocator's malloc path, which is shorter than realloc's. */
static void *lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    lua_free_(ptr);
    return NULL;
  }
  if (ptr == NULL) return lua_malloc_(nsize);
  return lua_realloc_(ptr, nsize);
}

/* A worker's Lua memory cap (taskmanager.memory.lua.max): the bytes the
 * state holds, counted by its own thread, and whether an allocation was
 * refused. Allocations are refused only while user code runs (armed, set
 * by cs_lua_pcall), where the error is caught by that pcall; the engine's
 * own calls between two user calls never fail on the cap, so a state
 * over its cap never reaches Lua's panic handler (an abort). */
typedef struct lua_cap {
  size_t used, max;
  int armed;   /* cs_lua_pcall depth */
  int refused; /* an allocation over max was refused */
} lua_cap;

/* As lua_alloc, counting; new blocks take the malloc path here too. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lua_cap *c = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    lua_free_(ptr);
    c->used -= old;
    return NULL;
  }
  if (nsize > old && c->armed > 0 && c->used - old + nsize > c->max) {
    c->refused = 1;
    return NULL; /* Lua collects garbage and retries once before failing */
  }
  void *p = ptr ? lua_realloc_(ptr, nsize) : lua_malloc_(nsize);
  if (p != NULL) c->used = c->used - old + nsize;
  return p;
}

/* L's cap, or NULL when it has none. */
static lua_cap *cap_of(lua_State *L) {
  void *ud;
  return lua_getallocf(L, &ud) == capped_alloc ? ud : NULL;
}

static int file_exists(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return stat(path, &st) == 0;
}

const char *cs_lua_dir(void) {
  const char *env = getenv("CSTREAM_LUA_DIR");
  if (env != NULL && *env) return env;
  if (file_exists(CS_SOURCE_LUA_DIR, "cstream.lua")) return CS_SOURCE_LUA_DIR;
  return CS_INSTALL_LUA_DIR;
}

static int panic_handler(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  fprintf(stderr, "cstream-lua: unprotected Lua error: %s\n",
          msg ? msg : "(not a string)");
  return 0; /* Lua then aborts */
}

static int abort_key;

void cs_lua_push_abort(lua_State *L) { lua_pushlightuserdata(L, &abort_key); }

int cs_lua_is_abort(lua_State *L, int idx) {
  return lua_touserdata(L, idx) == &abort_key;
}

/* Message handler: string errors get a traceback; light userdata (the
 * engine's own markers: abort, execute's unwinding) pass through unchanged. */
static int msghandler(lua_State *L) {
  if (lua_type(L, 1) == LUA_TLIGHTUSERDATA) return 1;
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* After a call into user code on a capped state: a refused allocation's
 * "not enough memory" (on top of L) becomes a message naming the cap. */
static void name_cap_error(lua_State *L, lua_cap *cap, int rc) {
  if (rc != LUA_ERRMEM || !cap->refused) return;
  /* Disarmed while the message is made: inside an outer user call a
   * refusal here would raise through the C frame that called us. */
  int armed = cap->armed;
  cap->armed = 0;
  cap->refused = 0;
  lua_pop(L, 1);
  lua_pushfstring(L, "out of memory: this worker's Lua state holds %I bytes and "
                  "may hold at most %I (taskmanager.memory.lua.max)",
                  (lua_Integer)cap->used, (lua_Integer)cap->max);
  cap->armed = armed;
}

int cs_lua_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
  lua_cap *cap = cap_of(co);
  if (cap) cap->armed++;
  int rc = lua_resume(co, from, nargs, nres);
  if (cap) {
    cap->armed--;
    name_cap_error(co, cap, rc);
  }
  return rc;
}

int cs_lua_pcall(lua_State *L, int nargs, int nresults) {
  lua_cap *cap = cap_of(L);
  if (cap) cap->armed++;
  int rc;
  /* A worker keeps the handler at index 1 of its main stack (see
   * cs_lua_worker_setup): then no stack shuffling per call. */
  if (lua_tocfunction(L, 1) == msghandler) {
    rc = lua_pcall(L, nargs, nresults, 1);
  } else {
    int base = lua_gettop(L) - nargs; /* function index */
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
  }
  if (cap) {
    cap->armed--;
    /* the caller adds the operator and record as for any error */
    name_cap_error(L, cap, rc);
  }
  return rc;
}

void cs_lua_worker_setup(lua_State *L) {
  lua_pushcfunction(L, msghandler);
  lua_insert(L, 1);
  /* Records make short-lived garbage: the generational collector handles it
   * with less work (bench/README.md, "Profile"). A job can switch back with
   * collectgarbage("incremental"). */
  lua_gc(L, LUA_GCGEN, 0, 0);
}

int cs_lua_loadfile(lua_State *L, const char *path) {
  return luaL_loadfilex(L, path, "t");
}

lua_State *cs_lua_newstate(lua_CFunction open_core) {
  return cs_lua_newstate_capped(open_core, 0);
}

lua_State *cs_lua_newstate_capped(lua_CFunction open_core, size_t max) {
  lua_cap *cap = NULL;
  if (max > 0) {
    cap = cs_calloc(1, sizeof(*cap));
    if (cap == NULL) return NULL;
    cap->max = max;
  }
  lua_State *L = cap ? lua_newstate(capped_alloc, cap) : lua_newstate(lua_alloc, NULL);
  if (L == NULL) {
    cs_free(cap);
    return NULL;
  }
  lua_atpanic(L, panic_handler);
  luaL_openlibs(L);
  /* package.preload["cstream.core"] = open_core */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  if (open_core) {
    lua_pushcfunction(L, open_core);
    lua_setfield(L, -2, "cstream.core");
  }
  lua_pop(L, 1);
  /* package.path = <lua dir>/?.lua;<lua dir>/?/init.lua;<old> */
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  const char *dir = cs_lua_dir();
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, old ? old : "");
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return L;
}

void cs_lua_close(lua_State *L) {
  if (L == NULL) return;
  lua_cap *cap = cap_of(L);
  lua_close(L);
  cs_free(cap);
}

void cs_lua_set_arg(lua_State *L, const char *script, int argc, char **argv) {
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
}
