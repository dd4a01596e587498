/*
 * cs_api_int.h - internal to host/api: what cs_function.c, cs_state.c and
 * cs_state_ttl.c share. Not for other folders (their contract is cs_api.h).
 */
#ifndef CS_API_INT_H
#define CS_API_INT_H

#include <lua.h>

#include "host/runtime/cs_runtime.h"
#include "state/cs_ttl.h"

/* ============================================== state objects (cs_state.c) */

/* A keyed or operator state object (the userdata behind ValueState, ...). */
typedef struct cs__kstate {
  cs_opi *op;
  int id;
  int kind;     /* CS__K_* */
  int op_state; /* operator list state: fixed key group and key */
  int fn_ref;   /* reduce / fold function, or aggregate table */
  int init_ref; /* folding initial value (encoded once, as a string) */
  int ttl_on;   /* the descriptor enabled a time to live: ttl applies */
  int iterating; /* map iterators open on it (TTL states: no write-backs) */
  cs_ttl_config ttl;
  char name[128];
} cs__kstate;

enum { CS__K_VALUE, CS__K_LIST, CS__K_MAP, CS__K_REDUCING, CS__K_AGGREGATING,
       CS__K_FOLDING };

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

/* Sends the value at 3 to the side output whose tag is at 2 (the method
 * fn of a Context or Collector): [ctx|out, tag, v]. Raises on a bad tag. */
int cs__output(lua_State *L, struct cs_opi *op, const char *fn);

/* Adds timestamp, timer_service and the timer methods, time_domain and
 * output to the Context method table at methods_idx (cs_context_time.c). */
void cs__time_add_context_methods(lua_State *L, int methods_idx);
/* ============================================ state TTL (cs_state_ttl.c) */

/* The reads and writes of a TTL state object s (ttl_on) at (kg, key[,
 * ukey]) of its backend be: cs_ttl.h's, followed by the backend's
 * incremental cleanup, and without write-backs while s is being iterated.
 * Views and the worker's scratch buffer as cs_ttl.h says. cs__ttl_get
 * alone leaves the cleanup to its caller, who calls cs__ttl_touch once
 * done with the view. */
int cs__ttl_touch(cs__kstate *s, cs_backend *be); /* the cleanup alone */
int cs__ttl_get(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                const cs_slice *ukey, cs_slice *val);
/* 0 when the map entry is visible, CS_ENOTFOUND when not. */
int cs__ttl_contains(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                     const cs_slice *ukey);
int cs__ttl_put(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                const cs_slice *ukey, cs_slice val);
/* The visible items of a list, appended to out (not the scratch buffer). */
int cs__ttl_list_get(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                     cs_buf *out);
int cs__ttl_list_append(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                        cs_slice items);

/* A map entry met by an iterator of s: returns 1 when the iteration shows
 * it (*val its value without timestamp), 0 when it skips it (expired).
 * What the read asks of the entry (removal, a new timestamp) is queued in
 * pending, to be applied by cs__ttl_apply once the iterator is done.
 * Returns CS_EDECODE for a value without a timestamp, or CS_ENOMEM. */
int cs__ttl_map_entry(cs__kstate *s, const cs_backend_entry *e,
                      cs_buf *pending, cs_slice *val);
/* Applies the queued writes to (kg, key) of be; empties pending. */
int cs__ttl_apply(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                  cs_buf *pending);
/* Whether the map of (kg, key) has no visible entry (*empty), removing
 * the expired entries it meets. */
int cs__ttl_map_is_empty(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                         int *empty);

/* Reads descriptor.ttl_config (at idx) into *ttl: returns 1 when there is
 * one, 0 when not; raises, naming getter and the state, when malformed. */
int cs__ttl_read_config(lua_State *L, int idx, const char *getter,
                        const char *name, cs_ttl_config *ttl);
/* Raises the error of a registration the backend refused (CS_ESTATE):
 * the name has another kind, or another TTL configuration (Flink's
 * StateMigrationException). */
int cs__ttl_register_error(lua_State *L, cs_backend *be, const char *fullname,
                           const char *getter, const char *name,
                           const char *op_name, const cs_ttl_config *ttl);

#endif /* CS_API_INT_H */
