/*
 * cs_swap.c - a worker's half of a hot reload (host/dev watches the files
 * and decides): between two records, the worker prepares a fresh Lua state
 * with the new code (snapshot_state() of the old instances, then
 * initialize_state() and open() of the new ones), reports, and waits for the
 * main thread's decision without taking records. On commit the old
 * instances close and their state goes; on rollback the new ones close and
 * the old refs come back. State never lived in Lua, so every key keeps it.
 */
#include <lauxlib.h>

#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime_int.h"


static void swap_refs(cs_opi *op) {
  struct cs_refs cur = {op->self_ref, {op->fn_ref[0], op->fn_ref[1]}, op->ctx_ref,
                        op->out_ref};
  op->self_ref = op->old.self;
  op->fn_ref[0] = op->old.fn[0];
  op->fn_ref[1] = op->old.fn[1];
  op->ctx_ref = op->old.ctx;
  op->out_ref = op->old.out;
  op->old = cur;
}

/* A reload in preparation on one worker. */
typedef struct swap {
  lua_State *old_L, *L2;
  int old_env;
  int bound;    /* the new code's refs are bound (the old ones kept) */
  int *nstates; /* per opi: the states registered before the reload */
} swap;

/* Binds the new code in L2 to the operator instances (the old refs kept in
 * op->old) and opens the running ones. Returns 0 or -1. */
static int swap_bind(cs_worker *w, swap *sw) {
  lua_State *L2 = sw->L2;
  for (int i = 0; i < w->nopis; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL) continue;
    op->old = (struct cs_refs){op->self_ref, {op->fn_ref[0], op->fn_ref[1]},
                               op->ctx_ref, op->out_ref};
    op->self_ref = op->fn_ref[0] = op->fn_ref[1] = LUA_NOREF;
    op->ctx_ref = op->out_ref = LUA_NOREF;
  }
  sw->bound = 1;
  lua_rawgeti(L2, LUA_REGISTRYINDEX, w->env_ref);
  int env_idx = lua_gettop(L2);
  int ok = 1;
  for (int i = 0; ok && i < w->nopis; i++)
    if (w->opis[i].node && cs__opi_bind(L2, &w->opis[i], env_idx)) ok = 0;
  lua_settop(L2, env_idx - 1);
  for (int i = 0; ok && i < w->nopis; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL || op->t->finished) continue;
    op->restored = 1;
    if (cs__opi_open(L2, op)) ok = 0;
  }
  return ok ? 0 : -1;
}

/* Phase one: the old instances' operator state goes to the backend, the
 * new code is loaded into a fresh state and bound. Returns 0 or -1 (the
 * error in w->reload_error). */
static int swap_prepare(cs_worker *w, swap *sw) {
  for (int i = 0; i < w->nopis; i++)
    if (w->opis[i].node && !w->opis[i].t->finished &&
        cs__opi_snapshot_state(sw->old_L, &w->opis[i]))
      return -1;
  sw->nstates = cs_calloc((size_t)w->nopis + 1, sizeof(int));
  if (sw->nstates == NULL) goto nomem;
  for (int i = 0; i < w->nopis; i++) {
    cs_backend *be = w->opis[i].be;
    sw->nstates[i] = be ? be->ops->state_count(be) : 0;
  }
  sw->L2 = cs_lua_newstate_capped(w->job->hooks->open_core,
                                  (size_t)w->job->cfg->lua_memory_max);
  if (sw->L2 == NULL) goto nomem;
  cs_lua_worker_setup(sw->L2);
  w->L = sw->L2;
  if (cs__worker_load(w, sw->L2)) return -1;
  return swap_bind(w, sw);
nomem:
  w->reload_error = cs_strdup("out of memory");
  return -1;
}

/* Commit: close() of the old instances in the old state, then the new
 * state runs. */
static void swap_commit(cs_worker *w, swap *sw) {
  w->L = sw->old_L;
  for (int i = 0; i < w->nopis; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL || op->t->finished) continue;
    swap_refs(op);
    cs__opi_close(sw->old_L, op);
    swap_refs(op);
  }
  w->L = sw->L2;
  cs__worker_bind_keys(w);
  for (int i = 0; i < w->ntinst; i++)
    if (w->tinst[i].is_source && !w->tinst[i].src_done)
      cs__src_rebind(sw->L2, &w->tinst[i]);
  cs_lua_close(sw->old_L);
}

/* Rollback: the new instances close, the old refs come back, and the
 * states the new version registered are forgotten (they never existed for
 * the running code, so a later version may use the names freely). */
static void swap_rollback(cs_worker *w, swap *sw) {
  for (int i = 0; sw->bound && i < w->nopis; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL) continue;
    if (!op->t->finished && sw->L2) cs__opi_close(sw->L2, op);
    op->self_ref = op->old.self;
    op->fn_ref[0] = op->old.fn[0];
    op->fn_ref[1] = op->old.fn[1];
    op->ctx_ref = op->old.ctx;
    op->out_ref = op->old.out;
  }
  w->L = sw->old_L;
  w->env_ref = sw->old_env;
  cs_lua_close(sw->L2);
  for (int i = 0; sw->nstates && i < w->nopis; i++) {
    cs_backend *be = w->opis[i].be;
    if (be && be->ops->state_count(be) > sw->nstates[i] &&
        be->ops->forget_states(be, sw->nstates[i]))
      fprintf(stderr, "cstream-lua: reload: could not forget the states of the "
              "rolled-back version of operator '%s'\n", w->opis[i].node->id);
  }
}

void cs__worker_reload(cs_worker *w) {
  cs_job *job = w->job;
  int64_t gen = atomic_load(&job->reload_gen);
  w->reload_seen = gen;
  int active = w->ndone < w->ntinst;
  swap sw = {w->L, NULL, w->env_ref, 0, NULL};
  int ok = 1;
  if (active) {
    w->reloading = 1;
    ok = swap_prepare(w, &sw) == 0;
  }
  uv_mutex_lock(&job->lock);
  job->reload_prepared++;
  if (!ok) {
    job->reload_failed = 1;
    if (job->reload_error == NULL) {
      job->reload_error = w->reload_error;
      w->reload_error = NULL;
    }
  }
  uv_async_send(job->main_wake);
  while (job->reload_decided < gen && !atomic_load(&job->failed))
    uv_cond_wait(&job->reload_cond, &job->lock);
  int commit = job->reload_decided == gen && job->reload_commit;
  uv_mutex_unlock(&job->lock);
  if (!active) return;
  if (commit && ok)
    swap_commit(w, &sw);
  else
    swap_rollback(w, &sw);
  cs_free(sw.nstates);
  w->reloading = 0;
  cs_free(w->reload_error);
  w->reload_error = NULL;
}
