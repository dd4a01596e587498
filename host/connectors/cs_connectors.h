/*
 * cs_connectors.h - host/connectors: the built-in sources and sinks, one
 * cs_op_type each, for the layer that assigns types to a plan's nodes
 * (host/core). The runtime calls a connector only through its type.
 *
 *   cs_elements.c       from_elements, from_collection
 *   cs_file_source.c    read_text_file (split between subtasks by byte
 *                       ranges; the position is the ranges left to read)
 *   cs_socket_source.c  socket_text_stream (a libuv TCP client)
 *   cs_custom_source.c  add_source: a Lua run(ctx) as a coroutine
 *   cs_print_sink.c     print (Flink's format and "N> " prefixes)
 *   cs_file_sink.c      write_as_text (renamed into place at the end)
 *   cs_custom_sink.c    add_sink: a Lua invoke(v, ctx)
 *   cs_source.c         what the sources share
 *   cs_kafka_source.c   kafka_source (librdkafka; partitions dealt out
 *                       to subtasks, offsets in checkpoints)
 *   cs_kafka_sink.c     kafka_sink (at-least-once, or exactly-once with
 *                       transactions committed on checkpoint completion)
 *   cs_kafka_client.c   the librdkafka clients both share
 *
 * Depends on host/api, host/runtime, host/lua and below.
 */
#ifndef CS_CONNECTORS_H
#define CS_CONNECTORS_H

#include <lua.h>

#include "host/runtime/cs_runtime.h"

extern const cs_op_type cs_src_elements;
extern const cs_op_type cs_src_file;
extern const cs_op_type cs_src_socket;
extern const cs_op_type cs_src_custom;
extern const cs_op_type cs_sink_print;
extern const cs_op_type cs_sink_file;
extern const cs_op_type cs_sink_custom;
extern const cs_op_type cs_src_kafka;
extern const cs_op_type cs_sink_kafka;
/* A group (docs/scale-out.md): the repartition topics of key_by exchanges
 * between processes (cs_repartition.c), and the membership that gives
 * this process its share (cs_group.c; cs_job_hooks.group_open/close). */
extern const cs_op_type cs_src_repartition;
extern const cs_op_type cs_sink_repartition;
int cs_group_open(cs_job *job, char **errmsg);
void cs_group_close(cs_job *job);

/* cstream.sleep(ms): yields inside a custom source's run(), blocks the
 * calling thread elsewhere. */
int cs_source_sleep(lua_State *L);

#endif /* CS_CONNECTORS_H */
