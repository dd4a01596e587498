/*
 * cs_lua.h - host/lua, the boundary between the engine and Lua: creating
 * states with the engine's allocator, finding the Lua library directory,
 * and the one door through which C calls user code; with cs_format.h
 * (included), rendering values as Flink prints them. Depends on state/ only.
 */
#ifndef CS_LUA_H
#define CS_LUA_H

#include <lua.h>

#include "host/lua/cs_format.h"
#include "state/cs_common.h"

/* Creates a Lua state that allocates through cs_malloc, with the standard
 * libraries open, `cstream.core` preloaded from open_core (when not NULL)
 * and package.path extended with the cstream Lua directory. Returns NULL
 * when out of memory. Caller closes it with lua_close. */
lua_State *cs_lua_newstate(lua_CFunction open_core);
/* The same, with the state's memory capped at max bytes (0: no cap): while
 * user code runs (inside cs_lua_pcall), an allocation that would take the
 * state past max fails as a Lua memory error, after a full collection;
 * the engine's own calls are never refused. Caller closes it with
 * cs_lua_close, which frees the cap. */
lua_State *cs_lua_newstate_capped(lua_CFunction open_core, size_t max);
/* Closes a state from either function; accepts NULL. */
void cs_lua_close(lua_State *L);

/* The directory holding cstream.lua: $CSTREAM_LUA_DIR, the build's source
 * tree, or the install prefix, whichever has it. */
const char *cs_lua_dir(void);

/* Calls the function below nargs arguments, like lua_pcall, with a message
 * handler that appends a traceback to string errors. On error the error
 * value is left on the stack (one value, as lua_pcall); a memory error
 * from a capped state's cap (LUA_ERRMEM) is a message naming
 * taskmanager.memory.lua.max. */
int cs_lua_pcall(lua_State *L, int nargs, int nresults);
/* lua_resume for a coroutine running user code (a Lua source's run()),
 * under the state's memory cap as cs_lua_pcall. */
int cs_lua_resume(lua_State *co, lua_State *from, int nargs, int *nres);
/* Prepares a worker's fresh state: pushes the message handler at index 1
 * of its empty stack, where cs_lua_pcall finds it (a worker's stack never
 * unwinds below it), and turns on the generational collector. */
void cs_lua_worker_setup(lua_State *L);

/* Loads a script file with chunk name "@path"; on success pushes the chunk
 * and returns LUA_OK, else pushes the message and returns the error. */
int cs_lua_loadfile(lua_State *L, const char *path);

/* Sets the global arg table as lua.c does for a script: arg[0] = script,
 * arg[1..argc] = argv. */
void cs_lua_set_arg(lua_State *L, const char *script, int argc, char **argv);

/* The error raised to unwind user code when the job is already failing
 * (the real error has been recorded); recognised by cs_lua_is_abort. */
void cs_lua_push_abort(lua_State *L);
int cs_lua_is_abort(lua_State *L, int idx);

#endif /* CS_LUA_H */
