/*
 * cs_job.c - running a planned job: worker threads, each with a Lua state
 * and a libuv loop, the cooperative scheduler inside a worker, the exchange
 * outputs that encode records into batches, and the main thread's loop that
 * watches signals and the workers.
 *
 * Scheduling: a worker never blocks its thread on a full channel. A task
 * whose outputs are full is "blocked": it takes no new input until its
 * overflow drains, while the worker goes on with other tasks. Tasks are
 * visited sinks first, so downstream work always proceeds and the job
 * cannot deadlock; the bound on records in flight is the channel capacity
 * plus the output of one input batch.
 */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "state/cs_codec.h"
#include "host/lua/cs_format.h"
#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime.h"
#include "state/cs_rocksdb.h"

#define FLUSH_TIMEOUT_NS (2 * 1000 * 1000) /* buffer timeout: 2 ms */
#define BATCHES_PER_VISIT 4

static const char worker_key = 'w';
static const char executed_key = 'x';

cs_worker *cs_worker_of(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &worker_key);
  cs_worker *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

void cs_worker_wake(cs_worker *w) { uv_async_send(&w->wake); }

void cs_job_fail(cs_job *job, const char *msg) {
  uv_mutex_lock(&job->lock);
  if (job->error == NULL) job->error = cs_strdup(msg ? msg : "job failed");
  uv_mutex_unlock(&job->lock);
  if (atomic_exchange(&job->failed, 1) == 0) {
    uv_mutex_lock(&job->lock);
    uv_cond_broadcast(&job->reload_cond); /* nobody waits for a reload now */
    uv_mutex_unlock(&job->lock);
    for (int i = 0; i < job->nworkers; i++) {
      atomic_store(&job->workers[i].abort, 1);
      if (job->workers[i].running) cs_worker_wake(&job->workers[i]);
    }
    if (job->main_wake) uv_async_send(job->main_wake);
  }
}

/* ============================================================ exchange */

int cs_tinst_blocked(const cs_tinst *t) { return t->ovf > 0; }

/* Queues batch b towards consumer c, behind any overflow. */
static void eout_send(cs_eout *eo, int c, cs_batch *b) {
  cs_channel *ch = eo->edge->ch[eo->subtask * eo->edge->ncons + c];
  if (eo->ovf_head[c] == NULL && cs_channel_push(ch, b)) {
    cs_worker_wake((cs_worker *)ch->consumer);
    return;
  }
  b->next = NULL;
  if (eo->ovf_head[c] == NULL) {
    eo->ovf_head[c] = eo->ovf_tail[c] = b;
    eo->t->ovf++;
  } else {
    eo->ovf_tail[c]->next = b;
    eo->ovf_tail[c] = b;
  }
}

static void eout_flush_one(cs_eout *eo, int c) {
  cs_batch *b = eo->pending[c];
  if (b == NULL || b->count == 0) return;
  eo->pending[c] = NULL;
  eout_send(eo, c, b);
}

/* Moves overflow into channels while they have room. Returns 1 if any
 * batch moved. */
static int eout_drain(cs_eout *eo) {
  int moved = 0;
  for (int c = 0; c < eo->edge->ncons; c++) {
    cs_channel *ch = eo->edge->ch[eo->subtask * eo->edge->ncons + c];
    while (eo->ovf_head[c] != NULL) {
      cs_batch *b = eo->ovf_head[c];
      cs_batch *next = b->next;
      if (!cs_channel_push(ch, b)) break;
      moved = 1;
      cs_worker_wake((cs_worker *)ch->consumer);
      eo->ovf_head[c] = next;
      if (next == NULL) {
        eo->ovf_tail[c] = NULL;
        eo->t->ovf--;
      }
    }
  }
  return moved;
}

/* Appends an encoded record for consumer c. Returns 0 or -1. */
static int eout_add(cs_eout *eo, int c, int kg, const cs_buf *key,
                    const cs_buf *val) {
  cs_batch *b = eo->pending[c];
  if (b == NULL) {
    b = eo->pending[c] = cs_batch_create(CS_BATCH_RECORDS);
    if (b == NULL) return -1;
    b->born = uv_hrtime();
  }
  if (cs_batch_add(b, kg, key ? key->data : NULL, key ? key->len : 0,
                   val->data, val->len))
    return -1;
  if (b->count >= CS_BATCH_RECORDS_MAX || b->data.len >= CS_BATCH_BYTES_MAX)
    eout_flush_one(eo, c);
  return 0;
}

/* Extracts the key of the record at idx by the edge's selector and pushes
 * it.  [-0, +1]  Returns 0, or -1 after reporting the failure. */
static int push_key(lua_State *L, cs_opi *op, cs_eout *eo, int idx) {
  cs_node *to = &op->w->job->plan->nodes[eo->edge->to];
  cs_selector *sel = &to->in[eo->edge->input].key;
  char msg[256];
  switch (sel->kind) {
  case CS_SEL_POS:
  case CS_SEL_FIELD:
    if (!lua_istable(L, idx)) {
      lua_pushnil(L);
      snprintf(msg, sizeof(msg),
               "key_by(%s%s%s): the record is a %s, not a table",
               sel->kind == CS_SEL_FIELD ? "\"" : "",
               sel->kind == CS_SEL_FIELD ? sel->field : "",
               sel->kind == CS_SEL_FIELD ? "\"" : "", luaL_typename(L, idx));
      goto bad;
    }
    if (sel->kind == CS_SEL_POS)
      lua_geti(L, idx, sel->pos);
    else
      lua_getfield(L, idx, sel->field);
    if (lua_isnil(L, -1)) {
      if (sel->kind == CS_SEL_POS)
        snprintf(msg, sizeof(msg), "key_by(%lld): the record has no field %lld",
                 (long long)sel->pos, (long long)sel->pos);
      else
        snprintf(msg, sizeof(msg),
                 "key_by(\"%s\"): the record has no field \"%s\"", sel->field,
                 sel->field);
      goto bad;
    }
    return 0;
  case CS_SEL_FN:
    lua_rawgeti(L, LUA_REGISTRYINDEX, eo->key_ref);
    lua_pushvalue(L, idx);
    if (cs_lua_pcall(L, 1, 1) != LUA_OK) {
      if (cs_lua_is_abort(L, -1)) return -1;
      const char *e = lua_tostring(L, -1);
      snprintf(msg, sizeof(msg), "key_by: the key selector failed: %s",
               e ? e : "?");
      /* message may be long: report it whole */
      lua_pushfstring(L, "key_by: the key selector failed: %s", e ? e : "?");
      cs_opi_fail(L, to == NULL ? op : op, idx, lua_tostring(L, -1));
      lua_pop(L, 1);
      return -1;
    }
    if (lua_isnil(L, -1)) {
      snprintf(msg, sizeof(msg), "key_by: the key selector returned nil");
      goto bad;
    }
    return 0;
  default:
    lua_pushvalue(L, idx);
    return 0;
  }
bad:
  cs_opi_fail(L, op, idx, msg);
  return -1;
}

/* Encodes the record at the top of L onto the exchange output (does not
 * pop). Returns 0 or -1. */
static int eout_write(lua_State *L, cs_opi *op, cs_eout *eo) {
  cs_worker *w = op->w;
  int idx = lua_gettop(L);
  char err[256];
  int kg = 0, c = 0;
  cs_buf *key = NULL;
  cs_edge *e = eo->edge;
  const cs_selector *sel = &w->job->plan->nodes[e->to].in[e->input].key;
  /* A key selector function runs first: it sees the record before it is
   * encoded (and may change it). */
  int vrc = 0, encoded = e->part != CS_PART_HASH || sel->kind != CS_SEL_FN;
  cs_buf_reset(&w->valbuf);
  if (encoded) vrc = cs_codec_encode(L, idx, &w->valbuf, err, sizeof(err));
  if (e->part == CS_PART_HASH) {
    /* A scalar key at a position or field: its bytes in the encoded record
     * are already canonical. Otherwise select and encode it in Lua. */
    cs_slice v = {w->valbuf.data, w->valbuf.len}, k;
    int found = encoded && vrc == 0 &&
                (sel->kind == CS_SEL_POS ? cs_codec_array_elem(v, sel->pos, &k)
                 : sel->kind == CS_SEL_FIELD
                     ? cs_codec_map_field(v, sel->field, strlen(sel->field), &k)
                     : 0) &&
                cs_codec_is_key_scalar(k) && k.data[0] != (char)0xc0;
    cs_buf_reset(&w->keybuf);
    if (found) {
      if (cs_buf_append(&w->keybuf, k.data, k.len)) goto nomem;
    } else {
      if (push_key(L, op, eo, idx)) return -1;
      int rc = cs_codec_encode_key(L, -1, &w->keybuf, err, sizeof(err));
      lua_pop(L, 1);
      if (rc) {
        char msg[320];
        snprintf(msg, sizeof(msg), "key_by: the key cannot be used: %s", err);
        return cs_opi_fail(L, op, idx, msg);
      }
    }
    key = &w->keybuf;
    kg = cs_key_group(key->data, key->len, w->job->plan->max_parallelism);
    c = cs_key_group_owner(kg, w->job->plan->max_parallelism, e->ncons);
  }
  if (!encoded) vrc = cs_codec_encode(L, idx, &w->valbuf, err, sizeof(err));
  if (vrc) {
    char msg[320];
    snprintf(msg, sizeof(msg), "the record cannot be sent to '%s': %s",
             w->job->plan->nodes[e->to].name, err);
    return cs_opi_fail(L, op, idx, msg);
  }
  switch (e->part) {
  case CS_PART_HASH:
    break;
  case CS_PART_FORWARD:
    c = eo->subtask;
    break;
  case CS_PART_REBALANCE:
    c = eo->rr;
    eo->rr = (eo->rr + 1) % e->ncons;
    break;
  case CS_PART_BROADCAST:
    for (c = 0; c < e->ncons; c++)
      if (eout_add(eo, c, 0, NULL, &w->valbuf)) goto nomem;
    return 0;
  }
  if (eout_add(eo, c, kg, key, &w->valbuf)) goto nomem;
  return 0;
nomem:
  return cs_opi_fail(L, op, 0, "out of memory while buffering output");
}

/* Sends the encoded record v on an exchange. The key is read from the
 * encoded record when it is a scalar at a position or field (its bytes are
 * then already canonical); other keys take the Lua path. Returns 0 or -1. */
static int eout_write_encoded(lua_State *L, cs_opi *op, cs_eout *eo,
                              cs_slice v) {
  cs_edge *e = eo->edge;
  cs_worker *w = op->w;
  int c = 0, kg = 0;
  cs_buf *key = NULL;
  if (e->part == CS_PART_HASH) {
    const cs_selector *sel = &w->job->plan->nodes[e->to].in[e->input].key;
    cs_slice k;
    int found = sel->kind == CS_SEL_POS ? cs_codec_array_elem(v, sel->pos, &k)
                : sel->kind == CS_SEL_FIELD
                    ? cs_codec_map_field(v, sel->field, strlen(sel->field), &k)
                    : 0;
    if (!found || !cs_codec_is_key_scalar(k) || k.data[0] == (char)0xc0) {
      if (cs_codec_decode(L, v.data, v.len, NULL))
        return cs_opi_fail(L, op, 0, "internal error: a record is corrupt");
      int rc = eout_write(L, op, eo);
      lua_pop(L, 1);
      return rc;
    }
    cs_buf_reset(&w->keybuf);
    if (cs_buf_append(&w->keybuf, k.data, k.len)) goto nomem;
    key = &w->keybuf;
    kg = cs_key_group(key->data, key->len, w->job->plan->max_parallelism);
    c = cs_key_group_owner(kg, w->job->plan->max_parallelism, e->ncons);
  }
  cs_buf val = {(char *)v.data, v.len, v.len};
  switch (e->part) {
  case CS_PART_HASH:
    break;
  case CS_PART_FORWARD:
    c = eo->subtask;
    break;
  case CS_PART_REBALANCE:
    c = eo->rr;
    eo->rr = (eo->rr + 1) % e->ncons;
    break;
  case CS_PART_BROADCAST:
    for (c = 0; c < e->ncons; c++)
      if (eout_add(eo, c, 0, NULL, &val)) goto nomem;
    return 0;
  }
  if (eout_add(eo, c, kg, key, &val)) goto nomem;
  return 0;
nomem:
  return cs_opi_fail(L, op, 0, "out of memory while buffering output");
}

int cs_emit_encoded(lua_State *L, cs_opi *op, cs_slice v) {
  for (int i = 0; i < op->nout; i++) {
    cs_out *o = &op->out[i];
    int rc = o->chained ? cs_opi_process_encoded(L, o->chained, o->input, v)
                        : eout_write_encoded(L, op, o->eout, v);
    if (rc) return -1;
  }
  return 0;
}

int cs_emit(lua_State *L, cs_opi *op) {
  int top = lua_gettop(L);
  for (int i = 0; i < op->nout; i++) {
    cs_out *o = &op->out[i];
    if (o->chained) {
      lua_pushvalue(L, top);
      if (cs_opi_process(L, o->chained, o->input)) {
        lua_settop(L, top - 1);
        return -1;
      }
    } else if (eout_write(L, op, o->eout)) {
      lua_settop(L, top - 1);
      return -1;
    }
  }
  lua_settop(L, top - 1);
  return 0;
}

/* ============================================================== worker */

static void flush_outputs(cs_tinst *t, int all) {
  uint64_t now = all ? 0 : uv_hrtime();
  for (int i = 0; i < t->neouts; i++) {
    cs_eout *eo = t->eouts[i];
    for (int c = 0; c < eo->edge->ncons; c++) {
      cs_batch *b = eo->pending[c];
      if (b && b->count && (all || now - b->born >= FLUSH_TIMEOUT_NS))
        eout_flush_one(eo, c);
    }
  }
}

/* ========================================================= checkpoints */

int cs_job_uses_rocksdb(const cs_job *job) {
  return strcmp(job->cfg->backend, "rocksdb") == 0;
}

void cs_job_rocksdb_options(const cs_job *job, cs_rocksdb_options *o) {
  memset(o, 0, sizeof(*o));
  if (job->cfg->rocksdb_block_cache > 0)
    o->block_cache_bytes = (size_t)job->cfg->rocksdb_block_cache;
  if (job->cfg->rocksdb_write_buffer > 0)
    o->write_buffer_bytes = (size_t)job->cfg->rocksdb_write_buffer;
  o->value_cache_bytes = job->cfg->rocksdb_value_cache > 0
                             ? (size_t)job->cfg->rocksdb_value_cache
                             : SIZE_MAX;
}

void cs_opi_workdir(const cs_opi *op, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s-%d", op->w->job->workdir, op->node->id, op->subtask);
  for (char *c = buf + strlen(op->w->job->workdir) + 1; *c; c++)
    if (*c == '/' || *c == ' ') *c = '_';
}

cs_backend *cs_opi_backend(cs_opi *op) {
  if (op->be) return op->be;
  cs_job *job = op->w->job;
  if (cs_job_uses_rocksdb(job)) {
    char dir[4200], err[1024];
    cs_opi_workdir(op, dir, sizeof(dir));
    cs_rocksdb_options o;
    cs_job_rocksdb_options(job, &o);
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

/* Records a failure to snapshot checkpoint id; the coordinator discards
 * the checkpoint (the job goes on within the tolerated failures). */
static void ckpt_part_failed(cs_job *job, int64_t id, const char *msg) {
  uv_mutex_lock(&job->lock);
  if (job->pending && job->pending->id == id && job->pending_error == NULL)
    job->pending_error = cs_strdup(msg);
  uv_mutex_unlock(&job->lock);
}

/* Snapshots the state of every operator of t for checkpoint id (calling
 * snapshot_state of rich functions first) and acknowledges it. Returns 0,
 * or -1 when a user function failed (the job fails). An I/O failure fails
 * only the checkpoint. */
static int tinst_snapshot(cs_tinst *t, int64_t id) {
  cs_worker *w = t->w;
  cs_job *job = w->job;
  char err[512];
  if (t->acked >= id) return 0;
  t->acked = id;
  uint64_t t0 = uv_hrtime();
  cs_ckpt *parts = cs_ckpt_create();
  if (parts == NULL) {
    ckpt_part_failed(job, id, "out of memory");
    goto ack;
  }
  uv_mutex_lock(&job->lock);
  char *dir = job->pending && job->pending->id == id && job->pending->dir
                  ? cs_strdup(job->pending->dir) : NULL;
  int in_memory = job->pending && job->pending->id == id && !job->pending->dir;
  int savepoint = job->pending && job->pending->id == id && job->pending->savepoint;
  uv_mutex_unlock(&job->lock);
  if (!dir && !in_memory) { /* not (or no longer) pending */
    cs_ckpt_destroy(parts);
    return 0;
  }
  for (int i = 0; i < t->nops; i++) {
    cs_opi *op = t->ops[i];
    if (!t->finished && cs_opi_snapshot_state(w->L, op)) {
      cs_free(dir);
      cs_ckpt_destroy(parts);
      return -1;
    }
    char *pos = i == 0 && t->is_source ? cs_source_position(t) : NULL;
    if (op->be == NULL && pos == NULL) continue;
    cs_buf snap = {0};
    char file[600];
    file[0] = '\0';
    int has_sum = 0;
    uint64_t size = 0, hash = 0;
    if (op->be && cs_job_uses_rocksdb(job) && dir) {
      snprintf(file, sizeof(file), "%s-%d.rocksdb", op->node->id, op->subtask);
      for (char *c = file; *c; c++)
        if (*c == '/' || *c == ' ') *c = '_';
      char path[4800], shared[4800];
      snprintf(path, sizeof(path), "%s/%s", dir, file);
      int incremental = job->cfg->incremental && !savepoint && job->ckpt_base;
      if (incremental) snprintf(shared, sizeof(shared), "%s/shared", job->ckpt_base);
      if (incremental && cs_mkdirs(shared, err, sizeof(err))) {
        ckpt_part_failed(job, id, err);
      } else if (cs_rocksdb_checkpoint(op->be, path, incremental ? shared : NULL,
                                       &snap, err, sizeof(err))) {
        ckpt_part_failed(job, id, err);
      } else {
        /* _metadata records the manifest; the manifest, every file */
        has_sum = 1;
        size = snap.len;
        hash = XXH3_64bits(snap.data, snap.len);
      }
      cs_buf_free(&snap);
    } else if (op->be) {
      int rc = cs_backend_snapshot(op->be, 0, 65535, &snap);
      if (rc) {
        snprintf(err, sizeof(err), "snapshot of '%s' failed: %s", op->node->id,
                 cs_strerror(rc));
        ckpt_part_failed(job, id, err);
      } else if (dir) {
        snprintf(file, sizeof(file), "%s-%d.state", op->node->id, op->subtask);
        for (char *c = file; *c; c++)
          if (*c == '/' || *c == ' ') *c = '_';
        char path[4800];
        snprintf(path, sizeof(path), "%s/%s", dir, file);
        has_sum = 1;
        size = snap.len;
        hash = XXH3_64bits(snap.data, snap.len);
        if (cs_write_file_durable(path, snap.data, snap.len, err, sizeof(err)))
          ckpt_part_failed(job, id, err);
        cs_buf_free(&snap);
      }
    }
    if (cs_ckpt_add_op(parts, op->node->id, op->node->parallelism) ||
        cs_ckpt_add_part(parts, op->node->id, op->subtask, file[0] ? file : NULL,
                         snap.len ? &snap : NULL, pos))
      ckpt_part_failed(job, id, "out of memory");
    else if (has_sum)
      cs_ckpt_set_sum(parts, size, hash);
    cs_buf_free(&snap);
    cs_free(pos);
  }
  cs_free(dir);
ack:
  uv_mutex_lock(&job->lock);
  if (job->pending && job->pending->id == id) {
    for (int i = 0; parts && i < parts->nparts; i++) {
      cs_ckpt_part *p = &parts->parts[i];
      if (cs_ckpt_add_op(job->pending, p->op_id,
                         cs_ckpt_op_parallelism(parts, p->op_id)) ||
          cs_ckpt_add_part(job->pending, p->op_id, p->subtask, p->file,
                           &p->bytes, p->source)) {
        if (!job->pending_error) job->pending_error = cs_strdup("out of memory");
      } else if (p->has_sum) {
        cs_ckpt_set_sum(job->pending, p->size, p->hash);
      }
    }
    uint64_t took = uv_hrtime() - t0;
    if (took > job->pending_sync_max) job->pending_sync_max = took;
    if (++job->pending_acks == job->expected_acks) uv_async_send(job->main_wake);
  }
  uv_mutex_unlock(&job->lock);
  cs_ckpt_destroy(parts);
  return 0;
}

/* Sends barrier id on every output of t, behind the records before it. */
static void tinst_emit_barrier(cs_tinst *t, int64_t id) {
  flush_outputs(t, 1);
  for (int i = 0; i < t->neouts; i++) {
    cs_eout *eo = t->eouts[i];
    for (int c = 0; c < eo->edge->ncons; c++) {
      if (eo->edge->ch[eo->subtask * eo->edge->ncons + c] == NULL) continue;
      cs_batch *b = cs_batch_create(CS_BATCH_BARRIER);
      if (b == NULL) {
        cs_job_fail(t->w->job, "out of memory");
        return;
      }
      b->ckpt = id;
      eout_send(eo, c, b);
    }
  }
}

/* When every input of t delivered the barrier being aligned (or ended),
 * snapshots, forwards the barrier and releases the inputs. Returns -1 when
 * the job failed. */
static int tinst_check_aligned(cs_tinst *t) {
  if (t->align_id == 0) return 0;
  int n = 0;
  for (int i = 0; i < t->ninch; i++)
    if (t->inch[i].aligned || t->inch[i].ended) n++;
  if (n < t->ninch) return 0;
  int64_t id = t->align_id;
  t->align_id = 0;
  t->naligned = 0;
  for (int i = 0; i < t->ninch; i++) t->inch[i].aligned = 0;
  if (tinst_snapshot(t, id)) return -1;
  tinst_emit_barrier(t, id);
  return 0;
}

/* Handles checkpoint triggers the coordinator posted: sources snapshot
 * their position and state and inject the barrier; subtasks that already
 * finished acknowledge with their final state. */
static void worker_handle_trigger(cs_worker *w) {
  cs_job *job = w->job;
  int64_t id = atomic_load(&job->trigger);
  if (id <= w->trigger_seen) return;
  w->trigger_seen = id;
  int stop = atomic_load(&job->stop_at_trigger);
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (t->acked >= id) continue;
    if (t->is_source && !t->finished) {
      if (tinst_snapshot(t, id)) return;
      tinst_emit_barrier(t, id);
      if (stop) cs_source_cancel(w->L, t);
    } else if (t->finished) {
      if (tinst_snapshot(t, id)) return;
    }
  }
}

/* Ends a subtask: close() its operators, flush, and queue END downstream. */
static void tinst_finish(cs_tinst *t) {
  lua_State *L = t->w->L;
  /* A checkpoint this subtask has not acknowledged gets its final state. */
  if (t->acked < t->w->trigger_seen && tinst_snapshot(t, t->w->trigger_seen))
    return;
  for (int i = 0; i < t->nops; i++) {
    if (atomic_load(&t->w->job->failed)) break;
    cs_opi_close(L, t->ops[i]);
    cs_sink_flush(t->ops[i]);
  }
  flush_outputs(t, 1);
  for (int i = 0; i < t->neouts; i++) {
    cs_eout *eo = t->eouts[i];
    for (int c = 0; c < eo->edge->ncons; c++) {
      if (eo->edge->ch[eo->subtask * eo->edge->ncons + c] == NULL) continue;
      cs_batch *b = cs_batch_create(CS_BATCH_END);
      if (b == NULL) {
        cs_job_fail(t->w->job, "out of memory");
        return;
      }
      eout_send(eo, c, b);
    }
  }
  t->finished = 1;
}

/* Processes one batch from an input channel. */
static int process_batch(cs_tinst *t, cs_batch *b, int input) {
  cs_worker *w = t->w;
  lua_State *L = w->L;
  size_t off = 0;
  int kg;
  cs_slice key, val;
  int rc;
  while ((rc = cs_batch_next(b, &off, &kg, &key, &val)) == 1) {
    w->cur_kg = kg;
    w->cur_key = key;
    w->key_valid = t->ops[0]->node->keyed;
    rc = cs_opi_process_encoded(L, t->ops[0], input, val);
    w->key_valid = 0;
    if (rc) return -1;
    if (atomic_load_explicit(&w->abort, memory_order_relaxed)) return -1;
  }
  if (rc < 0) {
    cs_job_fail(w->job, "internal error: a record batch is corrupt");
    return -1;
  }
  return 0;
}

/* Gives a non-source subtask a turn. Returns 1 on progress. */
static int tinst_visit_inputs(cs_tinst *t) {
  int progress = 0;
  for (int n = 0; n < t->ninch && !cs_tinst_blocked(t); n++) {
    struct cs_inch *in = &t->inch[(t->rr + n) % t->ninch];
    if (in->ended || in->aligned) continue;
    for (int k = 0; k < BATCHES_PER_VISIT && !cs_tinst_blocked(t); k++) {
      int wake = 0;
      cs_batch *b = cs_channel_pop(in->ch, &wake);
      if (b == NULL) break;
      if (wake) cs_worker_wake((cs_worker *)in->ch->producer);
      progress = 1;
      if (b->kind == CS_BATCH_END) {
        in->ended = 1;
        t->nended++;
        cs_batch_destroy(b);
        if (tinst_check_aligned(t)) return 1;
        break;
      }
      if (b->kind == CS_BATCH_BARRIER) {
        int64_t id = b->ckpt;
        cs_batch_destroy(b);
        if (id <= t->acked) continue; /* a barrier of an abandoned checkpoint */
        if (t->align_id && id < t->align_id) continue; /* abandoned, older */
        if (id > t->align_id) {       /* a newer checkpoint overtakes */
          for (int j = 0; j < t->ninch; j++) t->inch[j].aligned = 0;
          t->align_id = id;
        }
        in->aligned = 1;
        if (tinst_check_aligned(t)) return 1;
        break;
      }
      int rc = process_batch(t, b, in->input);
      cs_batch_destroy(b);
      if (rc) return 1;
    }
  }
  t->rr = t->ninch ? (t->rr + 1) % t->ninch : 0;
  if (t->nended == t->ninch && !t->finished) {
    tinst_finish(t);
    progress = 1;
  }
  return progress;
}

/* One scheduling round over every subtask of the worker. */
static int worker_round(cs_worker *w) {
  int progress = 0;
  lua_State *L = w->L;
  worker_handle_trigger(w);
  if (atomic_load(&w->job->reload_gen) > w->reload_seen) cs_worker_reload(w);
  if (atomic_load(&w->stop) && !w->stop_seen) {
    w->stop_seen = 1;
    for (int i = 0; i < w->ntinst; i++)
      if (w->tinst[i].is_source && !w->tinst[i].src_done)
        cs_source_cancel(L, &w->tinst[i]);
  }
  for (int i = 0; i < w->ntinst; i++) {
    cs_tinst *t = &w->tinst[i];
    if (atomic_load_explicit(&w->abort, memory_order_relaxed)) return 0;
    if (t->done) continue;
    if (t->ovf) {
      int was_blocked = 1;
      for (int k = 0; k < t->neouts; k++) progress |= eout_drain(t->eouts[k]);
      if (was_blocked && !t->ovf && t->is_source) cs_source_unblocked(t);
    }
    if (t->finished) {
      if (!t->ovf) {
        t->done = 1;
        w->ndone++;
        progress = 1;
      }
      continue;
    }
    if (t->ovf) continue;
    if (t->is_source) {
      if (!t->src_done) progress |= cs_source_step(L, t);
      if (t->src_done && !atomic_load(&w->job->failed)) {
        tinst_finish(t);
        progress = 1;
      }
    } else {
      progress |= tinst_visit_inputs(t);
    }
    flush_outputs(t, 0);
  }
  /* Printed lines wait no longer than batches do, even while busy. */
  if ((w->out.len || w->err.len) && uv_hrtime() - w->stdio_born >= FLUSH_TIMEOUT_NS)
    cs_worker_flush_stdio(w);
  return progress;
}

static void worker_stop_loop(cs_worker *w) {
  uv_idle_stop(&w->idle);
  uv_timer_stop(&w->flush_timer);
  uv_stop(&w->loop);
}

static void on_idle(uv_idle_t *h) {
  cs_worker *w = container_of(h, cs_worker, idle);
  if (atomic_load(&w->abort)) {
    worker_stop_loop(w);
    return;
  }
  int progress = worker_round(w);
  if (atomic_load(&w->abort)) {
    worker_stop_loop(w);
    return;
  }
  if (w->ndone == w->ntinst) {
    /* Everything here is done; the loop stays up (answering checkpoint
     * triggers with final state) until every worker is done. */
    cs_worker_flush_stdio(w);
    uv_idle_stop(&w->idle);
    if (!w->idle_reported) {
      w->idle_reported = 1;
      atomic_fetch_add(&w->job->workers_idle, 1);
      uv_async_send(w->job->main_wake);
    }
    if (atomic_load(&w->job->all_done)) worker_stop_loop(w);
    return;
  }
  if (!progress) {
    /* Nothing to do: send partial batches now (latency), then sleep until
     * a channel, a socket or a timer wakes us. */
    for (int i = 0; i < w->ntinst; i++)
      if (!w->tinst[i].finished) flush_outputs(&w->tinst[i], 1);
    cs_worker_flush_stdio(w);
    int runnable = 0;
    for (int i = 0; i < w->ntinst; i++) {
      cs_tinst *t = &w->tinst[i];
      if (t->done) continue;
      if (t->finished && !t->ovf) runnable = 1;
      for (int k = 0; k < t->ninch; k++)
        if (!t->inch[k].ended && !t->inch[k].aligned &&
            cs_channel_ready(t->inch[k].ch))
          runnable = 1;
    }
    if (!runnable) uv_idle_stop(&w->idle);
  }
}

void cs_worker_kick(cs_worker *w) { uv_idle_start(&w->idle, on_idle); }

static void on_wake(uv_async_t *h) {
  cs_worker *w = container_of(h, cs_worker, wake);
  if (atomic_load(&w->abort) || atomic_load(&w->job->all_done)) {
    worker_stop_loop(w);
    return;
  }
  uv_idle_start(&w->idle, on_idle);
}

static void on_flush_timer(uv_timer_t *h) {
  cs_worker *w = container_of(h, cs_worker, flush_timer);
  uv_idle_start(&w->idle, on_idle);
}

/* Puts the script's arguments into the global arg table, as lua.c does. */
static void set_arg_table(lua_State *L, cs_job *job) {
  lua_createtable(L, job->argc, 1);
  lua_pushstring(L, job->script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < job->argc; i++) {
    lua_pushstring(L, job->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
}

/* Loads the job script into the worker's state and runs it up to
 * env:execute(), which stores the environment and unwinds. */
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
  set_arg_table(L, job);
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
  /* Subtasks on this worker, sinks first (reverse graph order). */
  for (int ti = p->ntasks - 1; ti >= 0; ti--) {
    cs_task *task = &p->tasks[ti];
    if (task->parallelism <= w->index) continue;
    cs_tinst *t = &w->tinst[w->ntinst++];
    t->task = task;
    t->subtask = w->index;
    t->w = w;
    t->nops = task->nnodes;
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
    if (t->is_source && L) cs_source_destroy(L, t);
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
    cs_sink_close(&w->opis[i]);
    if (L) cs_opi_release(L, &w->opis[i]);
    cs_free(w->opis[i].out);
    cs_buf_free(&w->opis[i].rbuf);
  }
  cs_free(w->tinst);
  w->tinst = NULL;
  cs_worker_flush_stdio(w);
  cs_buf_free(&w->keybuf);
  cs_buf_free(&w->valbuf);
  cs_buf_free(&w->scratch);
  cs_buf_free(&w->out);
  cs_buf_free(&w->err);
  /* Lua first: finalizers of state objects and iterators still reach the
   * backend. */
  if (L) lua_close(L);
  w->L = NULL;
  for (int i = 0; w->opis && i < w->nopis; i++)
    if (w->opis[i].be) w->opis[i].be->ops->destroy(w->opis[i].be);
  cs_free(w->opis);
  w->opis = NULL;
}

static void close_cb(uv_handle_t *h) { (void)h; }

/* The worker thread: load, bind, open, run the loop, close. */
static void worker_main(void *arg) {
  cs_worker *w = arg;
  cs_job *job = w->job;
  int ok = 0;
  w->L = cs_lua_newstate();
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
        if (w->opis[i].node && cs_opi_bind(w->L, &w->opis[i], env_idx)) ok = 0;
      lua_pop(w->L, 1);
    }
  }
  /* Everyone's handles exist before anyone sends to a channel. */
  uv_barrier_wait(&job->ready);
  if (ok && !atomic_load(&job->failed)) {
    for (int i = 0; ok && job->restore && i < w->nopis; i++)
      if (w->opis[i].node && cs_restore_opi(&w->opis[i], job->restore)) ok = 0;
    for (int i = 0; ok && i < w->nopis; i++)
      if (w->opis[i].node && cs_opi_open(w->L, &w->opis[i])) ok = 0;
    for (int i = 0; ok && i < w->ntinst; i++)
      if (w->tinst[i].is_source && cs_source_start(w->L, &w->tinst[i])) ok = 0;
    if (ok && !atomic_load(&job->failed)) {
      uv_idle_start(&w->idle, on_idle);
      uv_timer_start(&w->flush_timer, on_flush_timer, 2, 2);
      uv_run(&w->loop, UV_RUN_DEFAULT);
    }
  }
  if (w->L && !atomic_load(&job->failed))
    for (int i = 0; i < w->ntinst; i++) {
      /* sources finished early by an abort still need their close() */
      cs_tinst *t = &w->tinst[i];
      if (!t->finished)
        for (int k = 0; k < t->nops; k++) cs_opi_close(w->L, t->ops[k]);
    }
  worker_teardown(w);
  atomic_fetch_add(&job->workers_done, 1);
  uv_async_send(job->main_wake);
}

/* ================================================================ main */

typedef struct main_ctx {
  cs_job *job;
  uv_async_t wake;
  uv_signal_t sigint, sigterm;
  uv_timer_t ckpt_timer;
  int signals;
  int closing;
} main_ctx;

static int verbose(void) {
  const char *v = getenv("CSTREAM_VERBOSE");
  return v && *v && strcmp(v, "0") != 0;
}

static void wake_all(cs_job *job) {
  for (int i = 0; i < job->nworkers; i++) cs_worker_wake(&job->workers[i]);
}

/* Counts a failed checkpoint and reports it; fails the job when more
 * checkpoints failed in a row than it tolerates. */
static void ckpt_failed(cs_job *job, int64_t id, const char *why) {
  job->failed_ckpts++;
  fprintf(stderr, "cstream-lua: checkpoint %lld failed: %s\n", (long long)id, why);
  if (job->failed_ckpts > job->cfg->tolerable_failures) {
    char msg[1400];
    snprintf(msg, sizeof(msg), "checkpoint %lld failed and the job tolerates "
             "%d failed checkpoint(s) in a row "
             "(execution.checkpointing.tolerable-failed-checkpoints): %s",
             (long long)id, job->cfg->tolerable_failures, why);
    cs_job_fail(job, msg);
  }
}

/* Drops the pending checkpoint (failed or abandoned); under no lock. */
static void ckpt_discard(cs_job *job, const char *why) {
  uv_mutex_lock(&job->lock);
  cs_ckpt *c = job->pending;
  job->pending = NULL;
  char *e = job->pending_error;
  job->pending_error = NULL;
  uv_mutex_unlock(&job->lock);
  if (c == NULL) {
    cs_free(e);
    return;
  }
  if (why) ckpt_failed(job, c->id, e ? e : why);
  if (c->dir) cs_ckpt_remove_dir(c->dir);
  cs_ckpt_destroy(c);
  cs_free(e);
}

/* After checkpoint c completed: keeps the newest num-retained complete
 * checkpoints of the job, this run's and earlier runs' alike (the one this
 * run was restored from goes only once newer ones are complete); a
 * savepoint is never removed. Then drops the shared files no remaining
 * checkpoint or savepoint references. */
static void ckpt_retain(cs_job *job, const cs_ckpt *c) {
  if (c->dir == NULL || job->ckpt_base == NULL) return;
  int removed = cs_ckpt_retain(job->ckpt_base, c->id, job->cfg->num_retained);
  if (removed && cs_job_uses_rocksdb(job)) cs_ckpt_gc_shared(job->ckpt_base);
}

/* Completes the pending checkpoint once every subtask acknowledged it. */
static void ckpt_complete(cs_job *job) {
  uv_mutex_lock(&job->lock);
  cs_ckpt *c = job->pending;
  int done = c && job->pending_acks == job->expected_acks;
  int failed = job->pending_error != NULL;
  uv_mutex_unlock(&job->lock);
  if (!done) return;
  if (failed) {
    ckpt_discard(job, "a subtask could not write its state");
    return;
  }
  char err[1024];
  size_t total = 0;
  for (int i = 0; i < c->nparts; i++) total += c->parts[i].bytes.len;
  if (c->dir == NULL && (long long)total > job->cfg->memory_max_state) {
    snprintf(err, sizeof(err), "the state size %zu bytes exceeds the memory "
             "backend's maximum of %lld bytes (state.backend.memory.max-state-size); "
             "use the filesystem or rocksdb backend for larger state",
             total, job->cfg->memory_max_state);
    uv_mutex_lock(&job->lock);
    job->pending_error = cs_strdup(err);
    uv_mutex_unlock(&job->lock);
    ckpt_discard(job, err);
    return;
  }
  if (c->dir && cs_ckpt_write_metadata(c, err, sizeof(err))) {
    uv_mutex_lock(&job->lock);
    if (!job->pending_error) job->pending_error = cs_strdup(err);
    uv_mutex_unlock(&job->lock);
    ckpt_discard(job, err);
    return;
  }
  uv_mutex_lock(&job->lock);
  job->pending = NULL;
  uv_mutex_unlock(&job->lock);
  job->failed_ckpts = 0;
  if (verbose()) {
    long long size = (long long)total, shared = 0;
    if (c->dir) {
      size = cs_dir_size(c->dir);
      if (job->ckpt_base) {
        char sh[4200];
        snprintf(sh, sizeof(sh), "%s/shared", job->ckpt_base);
        shared = cs_dir_size(sh);
      }
    }
    fprintf(stderr, "cstream-lua: %s %lld completed in %.1f ms (longest subtask "
            "snapshot %.1f ms, %lld bytes, shared dir %lld bytes)%s%s\n",
            c->savepoint ? "savepoint" : "checkpoint", (long long)c->id,
            (double)(uv_hrtime() - job->pending_started) / 1e6,
            (double)job->pending_sync_max / 1e6, size, shared,
            c->dir ? ": " : "", c->dir ? c->dir : "");
  }
  if (c->savepoint)
    fprintf(stderr, "cstream-lua: savepoint written to %s\n", c->dir);
  else
    ckpt_retain(job, c);
  cs_ckpt_destroy(job->latest);
  job->latest = c;
}

/* Starts checkpoint (or savepoint) job->last_id + 1. */
static void ckpt_trigger(cs_job *job, int savepoint) {
  uv_mutex_lock(&job->lock);
  int busy = job->pending != NULL;
  uv_mutex_unlock(&job->lock);
  if (busy) {
    if ((long long)((uv_hrtime() - job->pending_started) / 1000000) <
        job->cfg->timeout_ms)
      return;
    ckpt_discard(job, "it timed out (execution.checkpointing.timeout)");
  }
  if (atomic_load(&job->failed) || atomic_load(&job->all_done)) return;
  cs_ckpt *c = cs_ckpt_create();
  if (c == NULL) return;
  c->id = ++job->last_id;
  c->savepoint = savepoint;
  c->job = cs_strdup(job->name);
  c->backend = cs_strdup(job->cfg->backend);
  c->max_parallelism = job->plan->max_parallelism;
  int in_memory = strcmp(job->cfg->backend, "memory") == 0;
  if ((savepoint && (job->cfg->savepoint_dir || job->ckpt_base)) ||
      (!savepoint && !in_memory && job->ckpt_base)) {
    cs_buf dir = {0};
    if (savepoint && job->cfg->savepoint_dir)
      cs_buf_printf(&dir, "%s/savepoint-%lld", job->cfg->savepoint_dir, (long long)c->id);
    else
      cs_buf_printf(&dir, "%s/%s-%lld", job->ckpt_base,
                    savepoint ? "savepoint" : "chk", (long long)c->id);
    c->dir = dir.data;
    char err[600];
    if (c->dir == NULL || cs_mkdirs(c->dir, err, sizeof(err))) {
      ckpt_failed(job, c->id, c->dir ? err : "out of memory");
      cs_ckpt_destroy(c);
      return;
    }
  }
  int expected = 0;
  for (int i = 0; i < job->plan->ntasks; i++) expected += job->plan->tasks[i].parallelism;
  uv_mutex_lock(&job->lock);
  job->pending = c;
  job->pending_acks = 0;
  job->expected_acks = expected;
  job->pending_started = uv_hrtime();
  job->pending_sync_max = 0;
  uv_mutex_unlock(&job->lock);
  atomic_store(&job->trigger, c->id);
  wake_all(job);
}

static void main_close(main_ctx *m) {
  if (m->closing) return;
  m->closing = 1;
  uv_close((uv_handle_t *)&m->wake, close_cb);
  uv_close((uv_handle_t *)&m->sigint, close_cb);
  uv_close((uv_handle_t *)&m->sigterm, close_cb);
  uv_close((uv_handle_t *)&m->ckpt_timer, close_cb);
  cs_reload_stop(m->job);
}

static void on_main_wake(uv_async_t *h) {
  main_ctx *m = container_of(h, main_ctx, wake);
  cs_job *job = m->job;
  ckpt_complete(job);
  if (job->reload) cs_reload_on_wake(job);
  if (atomic_load(&job->workers_idle) == job->nworkers &&
      !atomic_exchange(&job->all_done, 1)) {
    uv_timer_stop(&m->ckpt_timer);
    wake_all(job);
  }
  if (atomic_load(&job->workers_done) == job->nworkers) main_close(m);
}

static void on_ckpt_timer(uv_timer_t *h) {
  main_ctx *m = h->data;
  if (!m->job->stopping) ckpt_trigger(m->job, 0);
}

int cs__job_stop(cs_job *job, int savepoint) {
  const cs_run_config *cfg = job->cfg;
  int in_memory = strcmp(cfg->backend, "memory") == 0;
  int with_ckpt = savepoint ? (cfg->savepoint_dir != NULL || job->ckpt_base != NULL)
                            : cfg->interval_ms > 0 && !in_memory && job->ckpt_base;
  job->stopping = 1;
  if (with_ckpt) {
    /* Sources inject the final barrier and stop right after it. */
    uv_mutex_lock(&job->lock);
    int busy = job->pending != NULL;
    uv_mutex_unlock(&job->lock);
    if (busy) ckpt_discard(job, NULL);
    atomic_store(&job->stop_at_trigger, 1);
    ckpt_trigger(job, savepoint);
    job->stop_ckpt = 1;
    if (atomic_load(&job->trigger) == job->last_id) return 1;
  }
  for (int i = 0; i < job->nworkers; i++) {
    atomic_store(&job->workers[i].stop, 1);
    cs_worker_wake(&job->workers[i]);
  }
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  main_ctx *m = h->data;
  cs_job *job = m->job;
  if (++m->signals == 1) {
    const cs_run_config *cfg = job->cfg;
    int in_memory = strcmp(cfg->backend, "memory") == 0;
    int with_ckpt = cfg->savepoint_on_stop
                        ? (cfg->savepoint_dir != NULL || job->ckpt_base != NULL)
                        : cfg->interval_ms > 0 && !in_memory && job->ckpt_base;
    fprintf(stderr, "cstream-lua: %s received, stopping the job%s (again to "
                    "abort)\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
            with_ckpt ? (cfg->savepoint_on_stop ? " with a savepoint"
                                                : " after a final checkpoint")
                      : "");
    cs__job_stop(job, cfg->savepoint_on_stop);
  } else {
    cs_job_fail(job, "job aborted by a second signal");
  }
}

/* One run of the job: workers started, the main loop run until they all
 * finish, everything torn down. Returns 0 or CS_ELUA with job->error set. */
static int run_attempt(cs_job *job) {
  main_ctx m;
  uv_loop_t loop;
  int started = 0;
  memset(&m, 0, sizeof(m));
  m.job = job;
  job->error = NULL;
  atomic_store(&job->failed, 0);
  atomic_store(&job->workers_done, 0);
  atomic_store(&job->workers_idle, 0);
  atomic_store(&job->all_done, 0);
  atomic_store(&job->stop_at_trigger, 0);
  atomic_store(&job->trigger, 0);
  job->stopping = 0;
  job->stop_ckpt = 0;
  if (cs_plan_create_channels(job->plan)) {
    job->error = cs_strdup("out of memory creating channels");
    return CS_ENOMEM;
  }
  job->workers = cs_calloc((size_t)job->nworkers, sizeof(cs_worker));
  if (job->workers == NULL) {
    job->error = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  uv_barrier_init(&job->ready, (unsigned)job->nworkers);
  uv_loop_init(&loop);
  uv_async_init(&loop, &m.wake, on_main_wake);
  job->main_wake = &m.wake;
  uv_signal_init(&loop, &m.sigint);
  uv_signal_init(&loop, &m.sigterm);
  m.sigint.data = m.sigterm.data = &m;
  uv_signal_start(&m.sigint, on_signal, SIGINT);
  uv_signal_start(&m.sigterm, on_signal, SIGTERM);
  uv_timer_init(&loop, &m.ckpt_timer);
  m.ckpt_timer.data = &m;
  if (job->cfg->interval_ms > 0)
    uv_timer_start(&m.ckpt_timer, on_ckpt_timer, (uint64_t)job->cfg->interval_ms,
                   (uint64_t)job->cfg->interval_ms);
  if (job->cfg->watch) cs_reload_start(job, &loop);

  for (int i = 0; i < job->nworkers; i++) {
    cs_worker *w = &job->workers[i];
    w->index = i;
    w->job = job;
    w->env_ref = LUA_NOREF;
    uv_loop_init(&w->loop);
    uv_async_init(&w->loop, &w->wake, on_wake);
    uv_idle_init(&w->loop, &w->idle);
    uv_timer_init(&w->loop, &w->flush_timer);
    uv_unref((uv_handle_t *)&w->flush_timer);
    w->running = 1;
  }
  for (int i = 0; i < job->nworkers; i++) {
    if (uv_thread_create(&job->workers[i].thread, worker_main, &job->workers[i])) {
      /* cannot happen short of resource exhaustion; run no job */
      fprintf(stderr, "cstream-lua: cannot start worker threads\n");
      abort();
    }
    started++;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < started; i++) uv_thread_join(&job->workers[i].thread);
  for (int i = 0; i < job->nworkers; i++) {
    cs_worker *w = &job->workers[i];
    uv_close((uv_handle_t *)&w->wake, close_cb);
    uv_close((uv_handle_t *)&w->idle, close_cb);
    uv_close((uv_handle_t *)&w->flush_timer, close_cb);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
  }
  main_close(&m);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  job->main_wake = NULL;
  /* A checkpoint still open when the job ended never completes. */
  ckpt_complete(job);
  ckpt_discard(job, NULL);
  uv_barrier_destroy(&job->ready);
  cs_free(job->workers);
  job->workers = NULL;
  cs_plan_destroy_channels(job->plan);
  return atomic_load(&job->failed) ? CS_ELUA : 0;
}

/* Checks that checkpoint ck can start this plan: same max parallelism,
 * and every operator with state in ck still exists (or the user allowed
 * dropping its state). Returns 0 or CS_EPLAN with a message. */
static int check_restorable(const cs_job *job, const cs_ckpt *ck, char *err,
                            size_t errlen) {
  const cs_plan *p = job->plan;
  if (ck->max_parallelism != p->max_parallelism) {
    snprintf(err, errlen, "cannot restore %s: it was taken with max parallelism "
             "%d and the job now has %d; keyed state is spread over key groups "
             "and cannot move to another max parallelism",
             ck->dir ? ck->dir : "the checkpoint", ck->max_parallelism,
             p->max_parallelism);
    return CS_EPLAN;
  }
  cs_buf dropped = {0};
  for (int i = 0; i < ck->nops; i++) {
    int found = 0;
    for (int k = 0; k < p->nnodes && !found; k++)
      found = strcmp(p->nodes[k].id, ck->ops[i].id) == 0;
    if (!found) cs_buf_printf(&dropped, "%s'%s'", dropped.len ? ", " : "", ck->ops[i].id);
  }
  if (dropped.len && !job->cfg->allow_non_restored) {
    snprintf(err, errlen, "cannot restore %s: it has state for operator(s) %s that "
             "the job no longer has (give operators stable ids with :uid(), or "
             "pass --allow-non-restored-state to drop that state)",
             ck->dir ? ck->dir : "the checkpoint", dropped.data);
    cs_buf_free(&dropped);
    return CS_EPLAN;
  }
  if (dropped.len)
    fprintf(stderr, "cstream-lua: dropping the state of operator(s) %s, which the "
            "job no longer has (--allow-non-restored-state)\n", dropped.data);
  cs_buf_free(&dropped);
  return 0;
}

/* The node of the plan with operator id `id`, or NULL. */
static const cs_node *node_of(const cs_plan *p, const char *id) {
  for (int k = 0; k < p->nnodes; k++)
    if (strcmp(p->nodes[k].id, id) == 0) return &p->nodes[k];
  return NULL;
}

/* Loads the checkpoint --restore names: "latest" (the newest complete and
 * intact one; damaged ones are skipped with a message), or a directory,
 * which must be intact: every state file is checked against the sizes and
 * checksums of its _metadata before any state is loaded. */
static int load_restore(cs_job *job, cs_ckpt **out, char *err, size_t errlen) {
  const cs_run_config *cfg = job->cfg;
  *out = NULL;
  if (cfg->restore == NULL) return 0;
  if (strcmp(cfg->restore, "latest") == 0) {
    if (cfg->checkpoint_dir == NULL) {
      snprintf(err, errlen, "--restore latest needs a checkpoint directory "
               "(--checkpoint-dir or state.checkpoints.dir)");
      return CS_EINVAL;
    }
    *out = cs_ckpt_find_latest(cfg->checkpoint_dir, job->name);
    if (*out == NULL)
      fprintf(stderr, "cstream-lua: no complete checkpoint of job '%s' under %s: "
              "starting without state\n", job->name, cfg->checkpoint_dir);
    else if ((*out)->job && strcmp((*out)->job, job->name) != 0) {
      snprintf(err, errlen, "cannot restore %s: it belongs to job '%s', not '%s'",
               (*out)->dir, (*out)->job, job->name);
      cs_ckpt_destroy(*out);
      *out = NULL;
      return CS_EPLAN;
    }
    return 0;
  }
  int rc = cs_ckpt_read(cfg->restore, out, err, errlen);
  if (rc) return rc;
  if ((*out)->job && strcmp((*out)->job, job->name) != 0) {
    snprintf(err, errlen, "cannot restore %s: it belongs to job '%s', not '%s'",
             (*out)->dir, (*out)->job, job->name);
    rc = CS_EPLAN;
  } else {
    char why[1500];
    int bad = -1;
    rc = cs_ckpt_verify(*out, &bad, why, sizeof(why));
    if (rc && bad >= 0) {
      const cs_ckpt_part *p = &(*out)->parts[bad];
      const cs_node *n = node_of(job->plan, p->op_id);
      snprintf(err, errlen, "cannot restore the state of operator '%s' (id %s, "
               "subtask %d/%d) from %s: %s", n && n->name ? n->name : "?", p->op_id,
               p->subtask + 1, cs_ckpt_op_parallelism(*out, p->op_id),
               (*out)->dir, why);
    } else if (rc) {
      snprintf(err, errlen, "cannot restore %s: %s", (*out)->dir, why);
    }
  }
  if (rc) {
    cs_ckpt_destroy(*out);
    *out = NULL;
  }
  return rc;
}

int cs_job_run(cs_plan *plan, const cs_run_config *cfg, const char *name,
               const char *script, int argc, char **argv,
               const char *fingerprint, char **errmsg) {
  cs_job job;
  char err[4096];
  int rc = 0;
  memset(&job, 0, sizeof(job));
  *errmsg = NULL;
  job.plan = plan;
  job.cfg = cfg;
  job.name = name;
  job.script = script;
  job.argc = argc;
  job.argv = argv;
  job.fingerprint = fingerprint;
  job.nworkers = plan->nworkers;
  uv_mutex_init(&job.lock);
  uv_mutex_init(&job.out_lock);
  uv_cond_init(&job.reload_cond);
  if (cfg->checkpoint_dir) {
    cs_buf b = {0};
    cs_buf_printf(&b, "%s/%s", cfg->checkpoint_dir, name);
    job.ckpt_base = b.data;
  }
  if (cfg->interval_ms > 0 && strcmp(cfg->backend, "memory") != 0 &&
      job.ckpt_base == NULL) {
    *errmsg = cs_strdup("checkpointing with the filesystem or rocksdb backend "
                        "needs a checkpoint directory (--checkpoint-dir, "
                        "state.checkpoints.dir, or the backend's URI)");
    rc = CS_EINVAL;
    goto done;
  }
  if (strcmp(cfg->backend, "rocksdb") == 0) {
    if (cfg->interval_ms > 0 && job.ckpt_base == NULL) {
      *errmsg = cs_strdup("checkpointing with the rocksdb backend needs a "
                          "checkpoint directory");
      rc = CS_EINVAL;
      goto done;
    }
    cs_ckpt_remove_stale_workdirs(cfg->rocksdb_localdir ? cfg->rocksdb_localdir : "/tmp");
    cs_buf b = {0};
    static atomic_int seq;
    cs_buf_printf(&b, "%s/cstream-%d-%d",
                  cfg->rocksdb_localdir ? cfg->rocksdb_localdir : "/tmp",
                  (int)getpid(), atomic_fetch_add(&seq, 1));
    job.workdir = b.data;
    if (job.workdir == NULL || cs_mkdirs(job.workdir, err, sizeof(err))) {
      cs_buf m = {0};
      cs_buf_printf(&m, "the RocksDB working directory "
                    "(state.backend.rocksdb.localdir) cannot be made: %s",
                    job.workdir ? err : "out of memory");
      *errmsg = m.data;
      rc = CS_EIO;
      goto done;
    }
  }
  if (cfg->savepoint_on_stop && !job.ckpt_base && !cfg->savepoint_dir) {
    *errmsg = cs_strdup("--savepoint-on-stop needs a directory for the savepoint "
                        "(state.savepoints.dir or --checkpoint-dir)");
    rc = CS_EINVAL;
    goto done;
  }
  if ((rc = load_restore(&job, &job.latest, err, sizeof(err))) != 0 ||
      (job.latest && (rc = check_restorable(&job, job.latest, err, sizeof(err))))) {
    *errmsg = cs_strdup(err);
    goto done;
  }
  if (job.ckpt_base) cs_ckpt_remove_incomplete(job.ckpt_base);
  /* New checkpoint ids never reuse a directory of an earlier run. */
  job.last_id = job.ckpt_base ? cs_ckpt_max_id(job.ckpt_base) : 0;
  if (job.latest) {
    if (job.latest->id > job.last_id) job.last_id = job.latest->id;
    fprintf(stderr, "cstream-lua: restoring job '%s' from %s %lld (%s)\n", name,
            job.latest->savepoint ? "savepoint" : "checkpoint",
            (long long)job.latest->id, job.latest->dir);
  }
  int attempts = 0;
  int max_attempts = cfg->restart_attempts;
  for (;;) {
    job.restore = job.latest;
    rc = run_attempt(&job);
    if (rc == 0 && job.restart_savepoint && job.latest && job.latest->savepoint &&
        cfg->restart_savepoint) {
      *cfg->restart_savepoint = cs_strdup(job.latest->dir);
      break;
    }
    if (rc == 0 || job.stopping) break;
    if (max_attempts < 0 || attempts >= max_attempts) break;
    attempts++;
    fprintf(stderr, "cstream-lua: the job failed:\n%s\n", job.error ? job.error : "?");
    if (job.latest)
      fprintf(stderr, "cstream-lua: restarting (attempt %d of %d) in %lld ms from "
              "checkpoint %lld\n", attempts, max_attempts, cfg->restart_delay_ms,
              (long long)job.latest->id);
    else
      fprintf(stderr, "cstream-lua: restarting (attempt %d of %d) in %lld ms without "
              "state (no checkpoint completed yet)\n", attempts, max_attempts,
              cfg->restart_delay_ms);
    cs_free(job.error);
    job.error = NULL;
    uv_sleep((unsigned)cfg->restart_delay_ms);
  }
  if (rc) {
    if (max_attempts > 0 && attempts >= max_attempts && !job.stopping) {
      cs_buf b = {0};
      cs_buf_printf(&b, "%s\n(the job failed %d time(s) after %d restart(s); "
                    "restart-strategy.fixed-delay.attempts is %d)",
                    job.error ? job.error : "job failed", attempts + 1, attempts,
                    max_attempts);
      *errmsg = b.data;
    } else {
      *errmsg = job.error;
      job.error = NULL;
    }
  }
done:
  cs_free(job.error);
  cs_ckpt_destroy(job.latest);
  cs_free(job.ckpt_base);
  if (job.workdir) cs_ckpt_remove_dir(job.workdir);
  cs_free(job.workdir);
  cs_free(job.reload_error);
  cs_free(job.restart_savepoint);
  uv_cond_destroy(&job.reload_cond);
  uv_mutex_destroy(&job.lock);
  uv_mutex_destroy(&job.out_lock);
  return rc;
}
