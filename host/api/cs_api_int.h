/*
 * cs_api_int.h - internal to host/api: what cs_function.c and cs_state.c
 * share. Not for other folders (their contract is cs_api.h).
 */
#ifndef CS_API_INT_H
#define CS_API_INT_H

#include <lua.h>

/* Registers the state metatables in L (cs_state.c). */
void cs__state_open_types(lua_State *L);

/* Adds get_state, get_list_state, ..., get_operator_state_store and
 * is_restored to the Context method table at methods_idx (cs_state.c). */
void cs__state_add_context_methods(lua_State *L, int methods_idx);

#endif /* CS_API_INT_H */
