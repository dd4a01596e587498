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

int cs_lua_pcall(lua_State *L, int nargs, int nresults) {
  /* A worker keeps the handler at index 1 of its main stack (see
   * cs_lua_worker_setup): then no stack shuffling per call. */
  if (lua_tocfunction(L, 1) == msghandler)
    return lua_pcall(L, nargs, nresults, 1);
  int base = lua_gettop(L) - nargs; /* function index */
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
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
  lua_State *L = lua_newstate(lua_alloc, NULL);
  if (L == NULL) return NULL;
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
