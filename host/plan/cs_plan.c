/*
 * cs_plan.c - turns the logical graph a job script built (env._nodes) into
 * the physical plan: nodes with resolved parallelism, tasks (chains) and
 * exchange edges.
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "host/plan/cs_plan.h"

#define PLAN_ERR(...)                       \
  do {                                      \
    snprintf(err, errlen, __VA_ARGS__);     \
    goto fail;                              \
  } while (0)

static const struct {
  const char *name;
  cs_op_kind kind;
} kinds[] = {
    {"source_elements", CS_OP_SRC_ELEMENTS}, {"source_file", CS_OP_SRC_FILE},
    {"source_socket", CS_OP_SRC_SOCKET},     {"source_custom", CS_OP_SRC_CUSTOM},
    {"map", CS_OP_MAP},                      {"flat_map", CS_OP_FLAT_MAP},
    {"filter", CS_OP_FILTER},                {"process", CS_OP_PROCESS},
    {"reduce", CS_OP_REDUCE},                {"co_map", CS_OP_CO_MAP},
    {"co_flat_map", CS_OP_CO_FLAT_MAP},      {"timestamps", CS_OP_TIMESTAMPS},
    {"co_process", CS_OP_CO_PROCESS},
    {"sink_print", CS_OP_SINK_PRINT},
    {"sink_file", CS_OP_SINK_FILE},          {"sink_custom", CS_OP_SINK_CUSTOM},
    {"source_kafka", CS_OP_SRC_KAFKA},       {"sink_kafka", CS_OP_SINK_KAFKA},
    {"source_repartition", CS_OP_SRC_REPARTITION},
    {"sink_repartition", CS_OP_SINK_REPARTITION},
};

static int is_sink(cs_op_kind k) {
  return k >= CS_OP_SINK_PRINT && k != CS_OP_SRC_REPARTITION;
}

/* Reads t[field] as a string copy (NULL if absent).  [-0, +0] */
static char *get_str(lua_State *L, int t, const char *field) {
  char *s = NULL;
  if (lua_getfield(L, t, field) == LUA_TSTRING) s = cs_strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
  return s;
}

static lua_Integer get_int(lua_State *L, int t, const char *field,
                           lua_Integer dflt) {
  lua_Integer v = dflt;
  if (lua_getfield(L, t, field) == LUA_TNUMBER && lua_isinteger(L, -1))
    v = lua_tointeger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Reads a selector (position, field name, function) at t[field]. */
static void get_selector(lua_State *L, int t, const char *field,
                         cs_selector *sel) {
  memset(sel, 0, sizeof(*sel));
  switch (lua_getfield(L, t, field)) {
  case LUA_TNUMBER:
    sel->kind = CS_SEL_POS;
    sel->pos = lua_tointeger(L, -1);
    break;
  case LUA_TSTRING:
    sel->kind = CS_SEL_FIELD;
    sel->field = cs_strdup(lua_tostring(L, -1));
    break;
  case LUA_TFUNCTION:
    sel->kind = CS_SEL_FN;
    break;
  default:
    sel->kind = CS_SEL_NONE;
  }
  lua_pop(L, 1);
}

static const char *kind_prefix(cs_op_kind k) {
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
    if (kinds[i].kind == k) return kinds[i].name;
  return "op";
}

#define NODE_ERR(...)                       \
  do {                                      \
    snprintf(err, errlen, __VA_ARGS__);     \
    return -1;                              \
  } while (0)

/* Reads the inputs of node n (number i, its table at t) into n->in.
 * Returns 0, or -1 with a message in err. The stack is as it was. */
static int read_inputs(lua_State *L, cs_plan *p, cs_node *n, int i, int t,
                       char *err, size_t errlen) {
  lua_getfield(L, t, "inputs");
  int inputs = lua_gettop(L);
  n->ninputs = (int)luaL_len(L, inputs);
  if (n->ninputs > 2) NODE_ERR("node %d has too many inputs", i + 1);
  for (int k = 0; k < n->ninputs; k++) {
    cs_input *in = &n->in[k];
    lua_geti(L, inputs, k + 1);
    in->from = (int)get_int(L, -1, "node", 0) - 1;
    char *part = get_str(L, -1, "partition");
    in->part = !part                           ? CS_PART_FORWARD
               : strcmp(part, "hash") == 0      ? CS_PART_HASH
               : strcmp(part, "rebalance") == 0 ? CS_PART_REBALANCE
               : strcmp(part, "broadcast") == 0 ? CS_PART_BROADCAST
                                                : CS_PART_FORWARD;
    cs_free(part);
    get_selector(L, -1, "key", &in->key);
    in->tag = get_str(L, -1, "side");
    in->edge = -1;
    lua_pop(L, 1);
    if (in->from < 0 || in->from >= i) NODE_ERR("node %d has a bad input", i + 1);
    if (is_sink(p->nodes[in->from].kind))
      NODE_ERR("a sink cannot feed another operator");
  }
  lua_pop(L, 1);
  return 0;
}

/* Reads node i of the logical graph (its table at t) into p->nodes[i].
 * Returns 0, or -1 with a message in err. */
static int read_node(lua_State *L, cs_plan *p, int i, int t, int default_par,
                     char *err, size_t errlen) {
  cs_node *n = &p->nodes[i];
  n->index = i;
  n->task = -1;
  char *kind = get_str(L, t, "kind");
  int found = 0;
  for (size_t k = 0; kind && k < sizeof(kinds) / sizeof(kinds[0]); k++)
    if (strcmp(kinds[k].name, kind) == 0) {
      n->kind = kinds[k].kind;
      found = 1;
    }
  cs_free(kind);
  if (!found) NODE_ERR("node %d has an unknown kind", i + 1);
  n->name = get_str(L, t, "name");
  n->id = get_str(L, t, "uid");
  if (n->id == NULL) {
    char buf[64];
    snprintf(buf, sizeof(buf), "%s_%d", kind_prefix(n->kind), i + 1);
    n->id = cs_strdup(buf);
  }
  n->parallelism = (int)get_int(L, t, "parallelism", default_par);
  if (n->parallelism > p->max_parallelism)
    NODE_ERR("operator '%s' (id %s): parallelism %d exceeds the max "
             "parallelism %d",
             n->name, n->id, n->parallelism, p->max_parallelism);
  lua_getfield(L, t, "keyed");
  n->keyed = lua_toboolean(L, -1);
  lua_pop(L, 1);
  n->path = get_str(L, t, "path");
  n->host = get_str(L, t, "host");
  n->port = (int)get_int(L, t, "port", 0);
  char *delim = get_str(L, t, "delimiter");
  n->delim = delim && delim[0] ? delim[0] : '\n';
  cs_free(delim);
  n->prefix = get_str(L, t, "prefix");
  lua_getfield(L, t, "stderr");
  n->to_stderr = lua_toboolean(L, -1);
  lua_pop(L, 1);
  char *agg = get_str(L, t, "agg");
  if (agg) {
    n->agg = strcmp(agg, "sum") == 0   ? CS_AGG_SUM
             : strcmp(agg, "min") == 0 ? CS_AGG_MIN
             : strcmp(agg, "max") == 0 ? CS_AGG_MAX
                                       : CS_AGG_REDUCE;
    cs_free(agg);
  }
  get_selector(L, t, "field", &n->field);
  if (read_inputs(L, p, n, i, t, err, errlen)) return -1;
  if (p->nworkers < n->parallelism) p->nworkers = n->parallelism;
  return 0;
}

/* Chains nodes into tasks and makes the exchange edges between tasks
 * (nodes come in topological order). Returns 0, or -1 with err set. */
static int build_tasks(cs_plan *p, char *err, size_t errlen) {
  for (int i = 0; i < p->nnodes; i++) {
    cs_node *n = &p->nodes[i];
    cs_node *up = n->ninputs == 1 ? &p->nodes[n->in[0].from] : NULL;
    if (up && n->in[0].part == CS_PART_FORWARD &&
        up->parallelism == n->parallelism) {
      n->chained = 1;
      n->task = up->task;
    } else {
      cs_task *task = &p->tasks[p->ntasks];
      task->root = i;
      task->parallelism = n->parallelism;
      n->task = p->ntasks++;
    }
    cs_task *task = &p->tasks[n->task];
    int *nodes = cs_realloc(task->nodes, sizeof(int) * (size_t)(task->nnodes + 1));
    if (nodes == NULL) NODE_ERR("out of memory");
    task->nodes = nodes;
    task->nodes[task->nnodes++] = i;
    if (n->chained) continue;
    for (int k = 0; k < n->ninputs; k++) {
      cs_edge *e = &p->edges[p->nedges];
      cs_node *from = &p->nodes[n->in[k].from];
      e->from = from->index;
      e->to = i;
      e->input = k;
      e->part = n->in[k].part;
      e->nprod = from->parallelism;
      e->ncons = n->parallelism;
      if (e->part == CS_PART_FORWARD && e->nprod != e->ncons)
        e->part = CS_PART_REBALANCE;
      n->in[k].edge = p->nedges++;
    }
  }
  return 0;
}

int cs_plan_build(lua_State *L, int env_idx, int default_par, cs_plan **out,
                  char *err, size_t errlen) {
  cs_plan *p = cs_calloc(1, sizeof(*p));
  if (p == NULL) {
    snprintf(err, errlen, "out of memory");
    return CS_ENOMEM;
  }
  env_idx = lua_absindex(L, env_idx);
  p->max_parallelism = (int)get_int(L, env_idx, "_max_parallelism", 128);
  p->channel_capacity = 16;
  lua_getfield(L, env_idx, "_nodes");
  int nodes_idx = lua_gettop(L);
  p->nnodes = (int)luaL_len(L, nodes_idx);
  p->nodes = cs_calloc((size_t)p->nnodes, sizeof(cs_node));
  p->edges = cs_calloc((size_t)p->nnodes * 2, sizeof(cs_edge));
  p->tasks = cs_calloc((size_t)p->nnodes, sizeof(cs_task));
  if (!p->nodes || !p->edges || !p->tasks) PLAN_ERR("out of memory");
  for (int i = 0; i < p->nnodes; i++) {
    lua_geti(L, nodes_idx, i + 1);
    if (read_node(L, p, i, lua_gettop(L), default_par, err, errlen)) goto fail;
    lua_pop(L, 1); /* node */
  }
  lua_pop(L, 1); /* _nodes */
  if (build_tasks(p, err, errlen)) goto fail;
  *out = p;
  return 0;
fail:
  if (lua_gettop(L) >= nodes_idx) lua_settop(L, nodes_idx - 1);
  cs_plan_destroy(p);
  return CS_EPLAN;
}

static void selector_free(cs_selector *s) { cs_free(s->field); }

void cs_plan_destroy(cs_plan *p) {
  if (p == NULL) return;
  for (int i = 0; p->nodes && i < p->nnodes; i++) {
    cs_node *n = &p->nodes[i];
    cs_free(n->name);
    cs_free(n->id);
    cs_free(n->path);
    cs_free(n->host);
    cs_free(n->prefix);
    selector_free(&n->field);
    for (int k = 0; k < 2; k++) {
      selector_free(&n->in[k].key);
      cs_free(n->in[k].tag);
    }
  }
  for (int i = 0; p->tasks && i < p->ntasks; i++) cs_free(p->tasks[i].nodes);
  cs_free(p->nodes);
  cs_free(p->edges);
  cs_free(p->tasks);
  cs_free(p);
}
