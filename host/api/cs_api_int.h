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

/* The Context at index 1 (raises when it is not one, or is closed). */
struct cs_opi *cs__check_context(lua_State *L);

/* The name of the output tag at idx (cstream.output_tag(name) or a
 * string); raises naming fn otherwise (cs_context_time.c). */
const char *cs__tag_name(lua_State *L, int idx, const char *fn);

/* Adds timestamp, timer_service and the timer methods, time_domain and
 * output to the Context method table at methods_idx (cs_context_time.c). */
void cs__time_add_context_methods(lua_State *L, int methods_idx);

#endif /* CS_API_INT_H */
