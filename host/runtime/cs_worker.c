/*
 * cs_worker.c - worker threads. Each worker owns a Lua state into which it
 * loads the job script (up to env:execute(), which binds the worker to the
 * planned job), the instances of the operators it runs (node x subtask),
 * their outputs and input channels, and a libuv loop that runs the
 * scheduler (cs_scheduler.c). The thread builds, binds, restores, opens,
 * runs and tears down in that order.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime_int.h"
#include "state/cs_codec.h"
#include "state/cs_rocksdb.h"

#define RECORD_RENDER_MAX 200

static const char worker_key = 'w';

static const char executed_key = 'x';

cs_worker *cs_worker_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_key);
  cs_worker *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

void cs_worker_wake(cs_worker *w) { uv_async_send(&w->wake); }

/* Writes the worker's buffered stdout/stderr lines, under the job's output
 * lock so lines of different workers never interleave. */
void cs_worker_flush_stdio(cs_worker *w) {
  if (w->out.len == 0 && w->err.len == 0) return;
  uv_mutex_lock(&w->job->out_lock);
  if (w->out.len) {
    fwrite(w->out.data, 1, w->out.len, stdout);
    fflush(stdout);
  }
  if (w->err.len) {
    fwrite(w->err.data, 1, w->err.len, stderr);
    fflush(stderr);
  }
  uv_mutex_unlock(&w->job->out_lock);
  cs_buf_reset(&w->out);
  cs_buf_reset(&w->err);
}


int cs_opi_fail(lua_State *L, cs_opi *op, int rec_idx, const char *msg) {
  cs_buf b = {0};
  cs_node *n = op->node;
  cs_buf_printf(&b, "%s: error in operator '%s' (id %s, subtask %d/%d)",
                op->w->job->script, n->name ? n->name : "?", n->id,
                op->subtask + 1, n->parallelism);
  if (rec_idx != 0) {
    cs_buf r = {0};
    cs_format_value(L, rec_idx, &r);
    if (r.len > RECORD_RENDER_MAX)
      cs_buf_printf(&b, " on record %.*s...", RECORD_RENDER_MAX, r.data);
    else
      cs_buf_printf(&b, " on record %.*s", (int)r.len, r.data ? r.data : "");
    cs_buf_free(&r);
  }
  cs_buf_printf(&b, ":\n%s", msg);
  if (op->w->reloading) { /* a reload's error rolls it back, not the job */
    if (op->w->reload_error == NULL)
      op->w->reload_error = cs_strdup(b.data ? b.data : msg);
  } else {
    cs_job_fail(op->w->job, b.data ? b.data : msg);
  }
  cs_buf_free(&b);
  return -1;
}

/* Both set the worker's current operator for the call, and restore the
 * caller's after: an operator's emit runs the chained operators after it,
 * and its own code goes on after that (its context, a source's sleep). */
int cs_opi_process(lua_State *L, cs_opi *op, int input) {
  cs_opi *caller = op->w->cur_op;
  op->w->cur_op = op;
  int rc = op->node->type->process(L, op, input);
  op->w->cur_op = caller;
  return rc;
}

int cs_opi_process_encoded(lua_State *L, cs_opi *op, int input, cs_slice rec) {
  const cs_op_type *type = op->node->type;
  cs_opi *caller = op->w->cur_op;
  int rc = 1;
  op->w->cur_op = op;
  if (type->process_encoded) rc = type->process_encoded(L, op, input, rec);
  if (rc == 1) {
    if (cs_codec_decode(L, rec.data, rec.len, NULL))
      rc = cs_opi_fail(L, op, 0, "internal error: a record is corrupt");
    else
      rc = type->process(L, op, input);
  }
  op->w->cur_op = caller;
  return rc;
}

int cs_job_uses_rocksdb(const cs_job *job) {
  return strcmp(job->cfg->backend, "rocksdb") == 0;
}

void cs__job_rocksdb_options(const cs_job *job, cs_rocksdb_options *o) {
  memset(o, 0, sizeof(*o));
  if (job->cfg->rocksdb_block_cache > 0)
    o->block_cache_bytes = (size_t)job->cfg->rocksdb_block_cache;
  if (job->cfg->rocksdb_write_buffer > 0)
    o->write_buffer_bytes = (size_t)job->cfg->rocksdb_write_buffer;
  o->value_cache_bytes = job->cfg->rocksdb_value_cache > 0
                             ? (size_t)job->cfg->rocksdb_value_cache
                             : SIZE_MAX;
}

void cs__opi_workdir(const cs_opi *op, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s-%d", op->w->job->workdir, op->node->id, op->subtask);
  for (char *c = buf + strlen(op->w->job->workdir) + 1; *c; c++)
    if (*c == '/' || *c == ' ') *c = '_';
}

cs_backend *cs_opi_backend(cs_opi *op) {
  if (op->be) return op->be;
  cs_job *job = op->w->job;
  if (cs_job_uses_rocksdb(job)) {
    char dir[4200], err[1024];
    cs__opi_workdir(op, dir, sizeof(dir));
    cs_rocksdb_options o;
    cs__job_rocksdb_options(job, &o);
    if (cs_rocksdb_backend_open(dir, &o, &op->be, err, sizeof(err))) {
      char msg[1400];
      snprintf(msg, sizeof(msg), "cannot create the RocksDB state of operator '%s' "
               "(id %s, subtask %d): %s", op->node->name, op->node->id,
               op->subtask + 1, err);
      cs_job_fail(job, msg);
      op->be = NULL;
    }
    return op->be;
  }
  op->be = cs_heap_backend_create();
  if (op->be == NULL) cs_job_fail(job, "out of memory creating state");
  return op->be;
}

void cs__worker_sample_metrics(cs_worker *w) {
  w->metrics_due = uv_now(&w->loop) + 200;
  for (int i = 0; i < w->nopis; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL) continue;
    atomic_store_explicit(&op->m->wm, op->wm, memory_order_relaxed);
    cs_metric_set(&op->m->running, !op->t->done);
    uint64_t n = 0, bytes = 0;
    if (op->be && op->be->ops->stats) op->be->ops->stats(op->be, &n, &bytes);
    cs_metric_set(&op->m->state_entries, n);
    cs_metric_set(&op->m->state_bytes, bytes);
    cs_metric_set(&op->m->has_state, op->be != NULL);
  }
}

/* A failure while loading: fatal, or captured while reloading. */
static void worker_error(cs_worker *w, const char *msg) {
  if (w->reloading) {
    if (w->reload_error == NULL) w->reload_error = cs_strdup(msg);
  } else {
    cs_job_fail(w->job, msg);
  }
}

int cs__worker_load(cs_worker *w, lua_State *L) {
  cs_job *job = w->job;
  char msg[512];
  lua_pushlightuserdata(L, w);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &worker_key);
  cs_lua_set_arg(L, job->script, job->argc, job->argv);
  if (cs_lua_loadfile(L, job->script) != LUA_OK) {
    snprintf(msg, sizeof(msg), "worker %d: %s", w->index, lua_tostring(L, -1));
    worker_error(w, msg);
    lua_pop(L, 1);
    return -1;
  }
  int rc = cs_lua_pcall(L, 0, 0);
  if (rc == LUA_OK) {
    snprintf(msg, sizeof(msg),
             "%s: the script did not reach env:execute() in worker %d, as it "
             "did when planned (a script must build the same job every time "
             "it runs)",
             job->script, w->index);
    worker_error(w, msg);
    return -1;
  }
  if (lua_touserdata(L, -1) != &executed_key) {
    const char *e = lua_tostring(L, -1);
    if (!cs_lua_is_abort(L, -1)) {
      cs_buf b = {0};
      cs_buf_printf(&b, "%s (while loading the job in worker %d)",
                    e ? e : "error", w->index);
      worker_error(w, b.data ? b.data : "error loading the job");
      cs_buf_free(&b);
    }
    lua_pop(L, 1);
    return -1;
  }
  lua_pop(L, 1);
  return 0;
}

/* Called by env:execute() inside a worker: checks the plan fingerprint and
 * keeps the environment, then unwinds the script. */
int cs_job_worker_execute(lua_State *L, cs_worker *w, int env_idx,
                          const char *fingerprint) {
  if (strcmp(fingerprint, w->job->fingerprint) != 0) {
    return luaL_error(
        L,
        "the job graph built in worker %d differs from the one built when "
        "the job was planned: the script must build the same graph every "
        "time it runs (do not branch on random numbers, time or I/O at the "
        "top level; do such work in open())",
        w->index);
  }
  lua_pushvalue(L, env_idx);
  w->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, (void *)&executed_key);
  return lua_error(L);
}

void cs__worker_bind_keys(cs_worker *w) {
  lua_State *L = w->L;
  cs_plan *p = w->job->plan;
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    for (int k = 0; k < t->neouts; k++) {
      cs_eout *eo = t->eouts[k];
      cs_input *in = &p->nodes[eo->edge->to].in[eo->edge->input];
      eo->key_ref = LUA_NOREF;
      if (in->key.kind != CS_SEL_FN) continue;
      /* env._nodes[to+1].inputs[input+1].key */
      lua_rawgeti(L, LUA_REGISTRYINDEX, w->env_ref);
      lua_getfield(L, -1, "_nodes");
      lua_geti(L, -1, eo->edge->to + 1);
      lua_getfield(L, -1, "inputs");
      lua_geti(L, -1, eo->edge->input + 1);
      lua_getfield(L, -1, "key");
      eo->key_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      lua_pop(L, 5);
    }
  }
}

/* Creates the operator instances, exchange outputs and input channel lists
 * of this worker's subtasks. */
static int worker_build(cs_worker *w) {
  cs_plan *p = w->job->plan;
  w->nopis = p->nnodes;
  w->opis = cs_calloc((size_t)p->nnodes, sizeof(cs_opi));
  w->tinst = cs_calloc((size_t)p->ntasks, sizeof(cs_tinst));
  if (!w->opis || !w->tinst) return CS_ENOMEM;
  w->cur_ts = CS_NO_TS;
  /* Subtasks on this worker, sinks first (reverse graph order). */
  for (int ti = p->ntasks - 1; ti >= 0; ti--) {
    cs_task *task = &p->tasks[ti];
    if (task->parallelism <= w->index) continue;
    cs_tinst *t = &w->tinst[w->ntinst++];
    t->task = task;
    t->subtask = w->index;
    t->w = w;
    t->nops = task->nnodes;
    t->wm = CS_NO_TS;
    t->m = cs_metrics_tm(w->job->metrics, ti, w->index);
    t->ops = cs_calloc((size_t)task->nnodes, sizeof(cs_opi *));
    if (!t->ops) return CS_ENOMEM;
    for (int k = 0; k < task->nnodes; k++) {
      cs_opi *op = &w->opis[task->nodes[k]];
      op->node = &p->nodes[task->nodes[k]];
      op->w = w;
      op->t = t;
      op->subtask = w->index;
      op->self_ref = op->fn_ref[0] = op->fn_ref[1] = LUA_NOREF;
      op->ctx_ref = op->out_ref = LUA_NOREF;
      op->wm = CS_NO_TS;
      op->m = cs_metrics_opm(w->job->metrics, task->nodes[k], w->index);
      t->ops[k] = op;
    }
    cs_node *root = &p->nodes[task->root];
    t->is_source = root->ninputs == 0;
    /* inputs: every channel into the root */
    for (int k = 0; k < root->ninputs; k++) {
      cs_edge *e = &p->edges[root->in[k].edge];
      for (int a = 0; a < e->nprod; a++) {
        cs_channel *ch = e->ch[a * e->ncons + w->index];
        if (ch == NULL) continue;
        struct cs_inch *in = cs_realloc(t->inch, sizeof(*in) * (size_t)(t->ninch + 1));
        if (!in) return CS_ENOMEM;
        t->inch = in;
        in[t->ninch].ch = ch;
        in[t->ninch].input = k;
        in[t->ninch].ended = 0;
        in[t->ninch].aligned = 0;
        in[t->ninch].idle = 0;
        in[t->ninch].wm = CS_NO_TS;
        t->ninch++;
        ch->consumer = w;
      }
    }
  }
  /* outputs of every operator instance */
  for (int i = 0; i < p->nnodes; i++) {
    cs_opi *op = &w->opis[i];
    if (op->node == NULL) continue;
    for (int j = i + 1; j < p->nnodes; j++) {
      cs_node *n = &p->nodes[j];
      for (int k = 0; k < n->ninputs; k++) {
        if (n->in[k].from != i) continue;
        cs_out *o = cs_realloc(op->out, sizeof(*o) * (size_t)(op->nout + 1));
        if (!o) return CS_ENOMEM;
        op->out = o;
        o = &op->out[op->nout++];
        memset(o, 0, sizeof(*o));
        o->input = k;
        o->tag = n->in[k].tag;
        if (n->chained) {
          o->chained = &w->opis[j];
          continue;
        }
        cs_edge *e = &p->edges[n->in[k].edge];
        cs_eout *eo = cs_calloc(1, sizeof(*eo));
        if (!eo) return CS_ENOMEM;
        o->eout = eo;
        eo->edge = e;
        eo->subtask = w->index;
        eo->t = op->t;
        eo->op = op;
        eo->key_ref = LUA_NOREF;
        eo->rr = w->index % e->ncons;
        eo->pending = cs_calloc((size_t)e->ncons, sizeof(cs_batch *));
        eo->ovf_head = cs_calloc((size_t)e->ncons, sizeof(cs_batch *));
        eo->ovf_tail = cs_calloc((size_t)e->ncons, sizeof(cs_batch *));
        cs_eout **list = cs_realloc(op->t->eouts, sizeof(*list) * (size_t)(op->t->neouts + 1));
        if (!eo->pending || !eo->ovf_head || !eo->ovf_tail || !list) {
          cs_free(list);
          return CS_ENOMEM;
        }
        op->t->eouts = list;
        list[op->t->neouts++] = eo;
        for (int c = 0; c < e->ncons; c++)
          if (e->ch[w->index * e->ncons + c])
            e->ch[w->index * e->ncons + c]->producer = w;
      }
    }
  }
  return 0;
}

static void worker_teardown(cs_worker *w) {
  lua_State *L = w->L;
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (t->is_source && L) cs__src_destroy(L, t);
    for (int k = 0; k < t->neouts; k++) {
      cs_eout *eo = t->eouts[k];
      for (int c = 0; eo->pending && c < eo->edge->ncons; c++) {
        cs_batch_destroy(eo->pending[c]);
        for (cs_batch *b = eo->ovf_head ? eo->ovf_head[c] : NULL; b;) {
          cs_batch *n = b->next;
          cs_batch_destroy(b);
          b = n;
        }
      }
      cs_free(eo->pending);
      cs_free(eo->ovf_head);
      cs_free(eo->ovf_tail);
      cs_free(eo);
    }
    cs_free(t->eouts);
    cs_free(t->inch);
    cs_free(t->ops);
  }
  for (int i = 0; w->opis && i < w->nopis; i++) {
    if (w->opis[i].node == NULL) continue;
    cs__opi_destroy(&w->opis[i]);
    cs_timers_destroy(&w->opis[i]);
    if (L) cs__opi_release(L, &w->opis[i]);
    cs_free(w->opis[i].out);
    cs_buf_free(&w->opis[i].rbuf);
  }
  cs_free(w->tinst);
  w->tinst = NULL;
  cs_worker_flush_stdio(w);
  cs_buf_free(&w->keybuf);
  cs_buf_free(&w->valbuf);
  cs_buf_free(&w->tuplebuf);
  cs_buf_free(&w->scratch);
  cs_buf_free(&w->out);
  cs_buf_free(&w->err);
  /* Lua first: finalizers of state objects and iterators still reach the
   * backend. */
  cs_lua_close(L);
  w->L = NULL;
  for (int i = 0; w->opis && i < w->nopis; i++)
    if (w->opis[i].be) w->opis[i].be->ops->destroy(w->opis[i].be);
  cs_free(w->opis);
  w->opis = NULL;
}


/* The worker thread: load, bind, open, run the loop, close. */
void cs__worker_main(void *arg) {
  cs_worker *w = arg;
  cs_job *job = w->job;
  int ok = 0;
  w->L = cs_lua_newstate_capped(job->hooks->open_core, (size_t)job->cfg->lua_memory_max);
  if (w->L) cs_lua_worker_setup(w->L);
  if (w->L == NULL) {
    cs_job_fail(job, "out of memory creating a worker");
  } else if (cs__worker_load(w, w->L) == 0) {
    if (worker_build(w) != 0) {
      cs_job_fail(job, "out of memory building the job");
    } else {
      cs__worker_bind_keys(w);
      ok = 1;
      lua_rawgeti(w->L, LUA_REGISTRYINDEX, w->env_ref);
      int env_idx = lua_gettop(w->L);
      for (int i = 0; ok && i < w->nopis; i++)
        if (w->opis[i].node && cs__opi_bind(w->L, &w->opis[i], env_idx)) ok = 0;
      lua_pop(w->L, 1);
    }
  }
  /* Everyone's handles exist before anyone sends to a channel. */
  uv_barrier_wait(&job->ready);
  if (ok && !atomic_load(&job->failed)) {
    for (int i = 0; ok && i < w->nopis; i++) {
      cs_ckpt *ck = w->opis[i].node ? cs_job_restore_for(job, w->opis[i].subtask) : NULL;
      if (ck && cs__restore_opi(&w->opis[i], ck)) ok = 0;
    }
    for (int i = 0; ok && i < w->nopis; i++)
      if (w->opis[i].node && cs__opi_open(w->L, &w->opis[i])) ok = 0;
    for (int i = 0; ok && i < w->ntinst; i++)
      if (w->tinst[i].is_source && cs__src_start(w->L, &w->tinst[i])) ok = 0;
    if (ok && !atomic_load(&job->failed)) {
      cs__worker_start_rounds(w);
      
      uv_run(&w->loop, UV_RUN_DEFAULT);
    }
  }
  if (w->L && !atomic_load(&job->failed))
    for (int i = 0; i < w->ntinst; i++) {
      /* sources finished early by an abort still need their close() */
      cs_tinst *t = &w->tinst[i];
      if (!t->finished)
        for (int k = 0; k < t->nops; k++) cs__opi_close(w->L, t->ops[k]);
    }
  /* Snapshots still writing their files end (and are acknowledged)
   * before their backends go. */
  for (int i = 0; i < w->ntinst; i++) cs__tinst_snap_wait(&w->tinst[i]);
  worker_teardown(w);
  atomic_fetch_add(&job->workers_done, 1);
  uv_async_send(job->main_wake);
}
