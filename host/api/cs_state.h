/*
 * cs_state.h - managed state objects for Lua (keyed state of six kinds and
 * operator list state), backed by the worker's state backend.
 */
#ifndef CS_STATE_H
#define CS_STATE_H

#include <lua.h>

/* Operator state lives under this key group, outside every keyed range
 * (max parallelism is at most 32768). */
#define CS_OPSTATE_KEY_GROUP 65535

/* Registers the state metatables in L. */
void cs_state_open_types(lua_State *L);

/* Adds get_state, get_list_state, ..., get_operator_state_store and
 * is_restored to the Context method table at methods_idx. */
void cs_state_add_context_methods(lua_State *L, int methods_idx);

#endif /* CS_STATE_H */
