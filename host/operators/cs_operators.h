/*
 * cs_operators.h - host/operators: the built-in operator kinds, one
 * cs_op_type each, for the layer that assigns types to a plan's nodes
 * (host/core). Nothing else here is for other folders: the runtime calls an
 * operator only through its type.
 *
 *   cs_transform.c  map, flat_map, filter, and their connected-stream
 *                   versions (co_map, co_flat_map)
 *   cs_keyed.c      rolling aggregates on keyed streams: sum, min, max,
 *                   reduce (the running value per key in the backend)
 *   cs_process.c    process functions (process_element with ctx and out,
 *                   on_timer with their timers), and their connected-stream
 *                   version (process_element1/process_element2)
 *   cs_time.c       assign_timestamps_and_watermarks: event time and
 *                   watermark generation
 *
 * Depends on host/api, host/runtime and below.
 */
#ifndef CS_OPERATORS_H
#define CS_OPERATORS_H

#include "host/runtime/cs_runtime.h"

extern const cs_op_type cs_op_map;
extern const cs_op_type cs_op_flat_map;
extern const cs_op_type cs_op_filter;
extern const cs_op_type cs_op_co_map;
extern const cs_op_type cs_op_co_flat_map;
extern const cs_op_type cs_op_reduce;
extern const cs_op_type cs_op_process;
extern const cs_op_type cs_op_co_process;
extern const cs_op_type cs_op_timestamps;

#endif /* CS_OPERATORS_H */
