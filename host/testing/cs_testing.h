/*
 * cs_testing.h - host/testing: the operator test harness behind the Lua
 * module cstream.testing (lua/cstream/testing.lua), what Flink's
 * (Keyed)OneInputStreamOperatorTestHarness and TwoInputStreamOperator-
 * TestHarness are to a Flink user.
 *
 * A harness runs one user operator (a process, flat_map, map, filter or
 * reduce function, a sink, or a connected streams' co-function) on a
 * worker of its own inside the calling Lua state, without a thread and
 * without a job: the real operator type
 * (host/operators), Context, Collector and state objects (host/api),
 * timers (host/runtime/cs_timers.c) and the heap backend (state/). Its
 * main output is chained into a capture operator that keeps every record
 * (with its timestamp) in a Lua list; side outputs are kept per tag.
 * Records, watermarks and processing time are handed in by the caller, so
 * a test decides when timers fire.
 *
 * Depends on host/connectors, host/operators, host/api, host/runtime and
 * below; host/core exposes it as cstream.core._harness.
 */
#ifndef CS_TESTING_H
#define CS_TESTING_H

#include <lua.h>

/* core._harness(operator, kind, keyed, name, uid, max_parallelism):
 * creates a harness for operator (a function or a rich table, which the
 * harness holds), of kind "process", "flat_map", "map", "filter",
 * "reduce", "sink", or for connected streams "co_process", "co_flat_map"
 * or "co_map", on a keyed stream when keyed is true, and binds it
 * (a rich table without the kind's method is an error). Returns the
 * harness, a full userdata "cstream.Harness" that owns its worker, its
 * backend and its Lua refs; they are freed by h:destroy(), __close or
 * __gc. Its methods (open, process, watermark, processing_time, set_key,
 * state, snapshot, restore, close, output, side_output, clear_output)
 * are documented in cs_testing.c; lua/cstream/testing.lua is the
 * interface users see. */
int cs_testing_new(lua_State *L);

/* Registers the harness metatable in L (once; cs_testing_new does too). */
void cs_testing_open_types(lua_State *L);

#endif /* CS_TESTING_H */
