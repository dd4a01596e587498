/*
 * cs_luamod.c - entry point of cstream/core.so, the engine module for a
 * plain Lua interpreter (used by specs of the codec and formatting).
 */
#include <lua.h>

#include "host/core/cs_core.h"

int luaopen_cstream_core(lua_State *L);

int luaopen_cstream_core(lua_State *L) { return cs_core_open(L); }
