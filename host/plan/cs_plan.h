/*
 * cs_plan.h - the physical plan of a job: what host/plan owns and what
 * others may call.
 *
 * A job script builds a logical graph of nodes (lua/cstream.lua, env._nodes).
 * The planner turns it into tasks: a task is a chain of nodes joined by
 * forward edges of equal parallelism; tasks are joined by exchange edges
 * whose records travel as encoded batches through channels. Worker w runs
 * subtask w of every task whose parallelism exceeds w.
 *
 * The plan is data only: it knows nothing of workers, Lua states at run
 * time or channels' insides (host/runtime makes those).
 */
#ifndef CS_PLAN_H
#define CS_PLAN_H

#include <lua.h>
#include <stddef.h>

#include "state/cs_common.h"

struct cs_op_type;
struct cs_channel;

typedef enum cs_op_kind {
  CS_OP_SRC_ELEMENTS,
  CS_OP_SRC_FILE,
  CS_OP_SRC_SOCKET,
  CS_OP_SRC_CUSTOM,
  CS_OP_SRC_KAFKA,
  CS_OP_MAP,
  CS_OP_FLAT_MAP,
  CS_OP_FILTER,
  CS_OP_PROCESS,
  CS_OP_REDUCE,
  CS_OP_CO_MAP,
  CS_OP_CO_FLAT_MAP,
  CS_OP_CO_PROCESS,
  CS_OP_TIMESTAMPS,
  CS_OP_SINK_PRINT,
  CS_OP_SINK_FILE,
  CS_OP_SINK_CUSTOM,
  CS_OP_SINK_KAFKA,
  CS_OP_SRC_REPARTITION, /* a group's repartition topic (cstream/group.lua) */
  CS_OP_SINK_REPARTITION
} cs_op_kind;

typedef enum cs_part {
  CS_PART_FORWARD,
  CS_PART_HASH,
  CS_PART_REBALANCE,
  CS_PART_BROADCAST
} cs_part;

/* How a key (or a rolling aggregate's field) is taken from a record. */
typedef enum cs_sel_kind {
  CS_SEL_NONE,  /* the record itself */
  CS_SEL_POS,   /* record[pos] */
  CS_SEL_FIELD, /* record.field */
  CS_SEL_FN     /* a Lua function (keys only) */
} cs_sel_kind;

typedef struct cs_selector {
  cs_sel_kind kind;
  lua_Integer pos;
  char *field;
} cs_selector;

typedef enum cs_agg { CS_AGG_SUM, CS_AGG_MIN, CS_AGG_MAX, CS_AGG_REDUCE } cs_agg;

typedef struct cs_input {
  int from;        /* producer node index */
  cs_part part;    /* as the script asked */
  cs_selector key; /* for CS_PART_HASH */
  int edge;        /* exchange edge index, or -1 when chained */
  char *tag;       /* the producer's side output this input reads, or NULL */
} cs_input;

typedef struct cs_node {
  int index;
  cs_op_kind kind;
  char *name;
  char *id; /* uid, or derived from kind and position */
  int parallelism;
  int keyed;
  int ninputs;
  cs_input in[2];
  int task;
  int chained; /* runs in its producer's task */
  /* parameters */
  char *path;    /* file source, file sink; a group's kafka source or
                    repartition node: its topic(s), comma-separated */
  char *host;    /* socket source */
  int port;
  char delim;
  char *prefix;  /* print sink identifier */
  int to_stderr; /* print sink */
  cs_agg agg;
  cs_selector field; /* rolling aggregate field */
  /* How the runtime runs the node: set after planning by the layer that
   * knows every kind (host/core), NULL until then. */
  const struct cs_op_type *type;
} cs_node;

typedef struct cs_edge {
  int from, to, input;
  cs_part part; /* effective: forward means subtask i -> subtask i */
  int nprod, ncons;
  /* [prod * ncons + cons], NULL where unused; made and freed by the
   * runtime for each run of the job */
  struct cs_channel **ch;
} cs_edge;

typedef struct cs_task {
  int root;
  int parallelism;
  int nnodes;
  int *nodes; /* root first, then chained nodes in graph order */
} cs_task;

typedef struct cs_plan {
  int nnodes;
  cs_node *nodes;
  int nedges;
  cs_edge *edges;
  int ntasks;
  cs_task *tasks;
  int nworkers;
  int max_parallelism;
  size_t channel_capacity;
} cs_plan;

/* Builds a plan from the environment table at env_idx of the planning
 * state. default_par is the parallelism for nodes that set none. Returns 0,
 * or CS_EPLAN with a message in err. Caller frees with cs_plan_destroy. */
int cs_plan_build(lua_State *L, int env_idx, int default_par, cs_plan **out,
                  char *err, size_t errlen);
/* Frees the plan; accepts NULL. The runtime has freed the channels. */
void cs_plan_destroy(cs_plan *p);

#endif /* CS_PLAN_H */
