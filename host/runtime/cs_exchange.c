/*
 * cs_exchange.c - emission: a record an operator emits goes to each of its
 * outputs, either straight into a chained operator (as a Lua value or still
 * encoded) or onto an exchange output, which encodes it into the batch of
 * the consumer subtask the edge's partitioning picks (by key group for a
 * key_by) and sends full or timed-out batches through the channels.
 *
 * A channel with no room leaves the batch in an overflow list; the task is
 * then "blocked" (takes no input) until the scheduler drains it.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime_int.h"
#include "state/cs_codec.h"


int cs_tinst_blocked(const cs_tinst *t) { return t->ovf > 0; }

/* Queues batch b towards consumer c, behind any overflow. */
void cs__eout_send(cs_eout *eo, int c, cs_batch *b) {
  cs_channel *ch = eo->edge->ch[eo->subtask * eo->edge->ncons + c];
  if (eo->ovf_head[c] == NULL && cs_channel_push(ch, b)) {
    cs_worker_wake((cs_worker *)ch->consumer);
    return;
  }
  b->next = NULL;
  if (eo->ovf_head[c] == NULL) {
    eo->ovf_head[c] = eo->ovf_tail[c] = b;
    if (eo->t->ovf++ == 0) cs_metric_set(&eo->t->m->bp_since, uv_hrtime());
  } else {
    eo->ovf_tail[c]->next = b;
    eo->ovf_tail[c] = b;
  }
}

void cs__eout_flush(cs_eout *eo, int c) {
  cs_batch *b = eo->pending[c];
  if (b == NULL || b->count == 0) return;
  eo->pending[c] = NULL;
  cs__eout_send(eo, c, b);
}

/* The task's spell of backpressure ended: counted in its metrics. */
static void tinst_unblocked(cs_tinst *t) {
  uint64_t since = cs_metric_get(&t->m->bp_since);
  cs_metric_add(&t->m->bp_ns, uv_hrtime() - since);
  cs_metric_set(&t->m->bp_since, 0);
}

/* Moves overflow into channels while they have room. Returns 1 if any
 * batch moved. */
int cs__eout_drain(cs_eout *eo) {
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
        if (--eo->t->ovf == 0) tinst_unblocked(eo->t);
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
  if (cs_batch_add(b, kg, eo->t->w->cur_ts, key ? key->data : NULL,
                   key ? key->len : 0,
                   val->data, val->len))
    return -1;
  if (b->count >= CS_BATCH_RECORDS_MAX || b->data.len >= CS_BATCH_BYTES_MAX)
    cs__eout_flush(eo, c);
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

/* Finds, in the encoded record v, the key that sel selects when it is a
 * scalar at a position or field: its bytes are then already canonical.
 * Returns 1 with the key in *k, else 0 (the key needs Lua). */
static int scalar_key(const cs_selector *sel, cs_slice v, cs_slice *k) {
  int found = sel->kind == CS_SEL_POS ? cs_codec_array_elem(v, sel->pos, k)
              : sel->kind == CS_SEL_FIELD
                  ? cs_codec_map_field(v, sel->field, strlen(sel->field), k)
                  : 0;
  return found && cs_codec_is_key_scalar(*k) && k->data[0] != (char)0xc0;
}

/* Adds the encoded record val, with its canonical key (hash edges; NULL
 * otherwise), to the batch of the consumer(s) the edge's partitioning
 * picks. Returns 0 or -1 (out of memory). */
static int eout_route(cs_eout *eo, const cs_buf *key, const cs_buf *val) {
  cs_edge *e = eo->edge;
  int c = 0, kg = 0;
  switch (e->part) {
  case CS_PART_HASH: {
    int maxp = eo->t->w->job->plan->max_parallelism;
    kg = cs_key_group(key->data, key->len, maxp);
    c = cs_key_group_owner(kg, maxp, e->ncons);
    break;
  }
  case CS_PART_FORWARD:
    c = eo->subtask;
    break;
  case CS_PART_REBALANCE:
    c = eo->rr;
    eo->rr = (eo->rr + 1) % e->ncons;
    break;
  case CS_PART_BROADCAST:
    for (c = 0; c < e->ncons; c++)
      if (eout_add(eo, c, 0, NULL, val)) return -1;
    return 0;
  }
  return eout_add(eo, c, kg, key, val);
}

/* Encodes the record at the top of L onto the exchange output (does not
 * pop). Returns 0 or -1. */
static int eout_write(lua_State *L, cs_opi *op, cs_eout *eo) {
  cs_worker *w = op->w;
  int idx = lua_gettop(L);
  char err[256];
  cs_buf *key = NULL;
  cs_edge *e = eo->edge;
  const cs_selector *sel = &w->job->plan->nodes[e->to].in[e->input].key;
  /* A key selector function runs first: it sees the record before it is
   * encoded (and may change it). */
  int vrc = 0, encoded = e->part != CS_PART_HASH || sel->kind != CS_SEL_FN;
  cs_buf_reset(&w->valbuf);
  if (encoded) vrc = cs_codec_encode(L, idx, &w->valbuf, err, sizeof(err));
  if (e->part == CS_PART_HASH) {
    /* A scalar key at a position or field is read from the encoded record;
     * otherwise it is selected and encoded in Lua. */
    cs_slice v = {w->valbuf.data, w->valbuf.len}, k;
    cs_buf_reset(&w->keybuf);
    if (encoded && vrc == 0 && scalar_key(sel, v, &k)) {
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
  }
  if (!encoded) vrc = cs_codec_encode(L, idx, &w->valbuf, err, sizeof(err));
  if (vrc) {
    char msg[320];
    snprintf(msg, sizeof(msg), "the record cannot be sent to '%s': %s",
             w->job->plan->nodes[e->to].name, err);
    return cs_opi_fail(L, op, idx, msg);
  }
  long long max = w->job->cfg->max_record_size;
  if (max > 0 && w->valbuf.len > (size_t)max) {
    char msg[320];
    snprintf(msg, sizeof(msg), "the record cannot be sent to '%s': it is %zu bytes "
             "encoded, larger than pipeline.max-record-size (%lld bytes)",
             w->job->plan->nodes[e->to].name, w->valbuf.len, max);
    return cs_opi_fail(L, op, idx, msg);
  }
  if (eout_route(eo, key, &w->valbuf)) goto nomem;
  return 0;
nomem:
  return cs_opi_fail(L, op, 0, "out of memory while buffering output");
}

/* Sends the encoded record v on an exchange. The key is read from the
 * encoded record when it is a scalar at a position or field; other keys
 * take the Lua path. Returns 0 or -1. */
static int eout_write_encoded(lua_State *L, cs_opi *op, cs_eout *eo,
                              cs_slice v) {
  cs_edge *e = eo->edge;
  cs_worker *w = op->w;
  cs_buf *key = NULL;
  if (e->part == CS_PART_HASH) {
    const cs_selector *sel = &w->job->plan->nodes[e->to].in[e->input].key;
    cs_slice k;
    if (!scalar_key(sel, v, &k)) {
      if (cs_codec_decode(L, v.data, v.len, NULL))
        return cs_opi_fail(L, op, 0, "internal error: a record is corrupt");
      int rc = eout_write(L, op, eo);
      lua_pop(L, 1);
      return rc;
    }
    cs_buf_reset(&w->keybuf);
    if (cs_buf_append(&w->keybuf, k.data, k.len)) goto nomem;
    key = &w->keybuf;
  }
  cs_buf val = {(char *)v.data, v.len, v.len};
  if (eout_route(eo, key, &val)) goto nomem;
  return 0;
nomem:
  return cs_opi_fail(L, op, 0, "out of memory while buffering output");
}

int cs_emit_encoded(lua_State *L, cs_opi *op, cs_slice v) {
  cs_metric_add(&op->m->out, 1);
  for (int i = 0; i < op->nout; i++) {
    cs_out *o = &op->out[i];
    if (o->tag) continue;
    if (o->chained) cs_metric_add(&o->chained->m->in, 1);
    int rc = o->chained ? cs_opi_process_encoded(L, o->chained, o->input, v)
                        : eout_write_encoded(L, op, o->eout, v);
    if (rc) return -1;
  }
  return 0;
}

/* Pushes the table { v1, ..., vn } of the n values at first.  [-0, +1] */
static void push_tuple(lua_State *L, int first, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, first + i);
    lua_rawseti(L, -2, i + 1);
  }
}

int cs_emit_tuple(lua_State *L, cs_opi *op, int first, int n) {
  cs_worker *w = op->w;
  int top = lua_gettop(L), table = 0, rc = 0;
  first = lua_absindex(L, first);
  for (int i = 0; rc == 0 && i < op->nout; i++) {
    cs_out *o = &op->out[i];
    if (o->tag) continue;
    if (!o->chained) {
      /* encoded just before its use: a chained operator run in between
       * may emit a tuple of its own */
      char err[256];
      cs_eout *eo = o->eout;
      const cs_selector *sel = &w->job->plan->nodes[eo->edge->to].in[eo->edge->input].key;
      /* a key by position that is a string or integer: its bytes as encoded
       * are its canonical form, so it is marked while encoding */
      int mark = 0;
      if (eo->edge->part == CS_PART_HASH && sel->kind == CS_SEL_POS &&
          sel->pos >= 1 && sel->pos <= n) {
        int t = lua_type(L, first + (int)sel->pos - 1);
        if (t == LUA_TSTRING || (t == LUA_TNUMBER && lua_isinteger(L, first + (int)sel->pos - 1)))
          mark = (int)sel->pos;
      }
      size_t koff = 0, klen = 0;
      cs_buf_reset(&w->tuplebuf);
      if (cs_codec_encode_tuple(L, first, n, &w->tuplebuf, err, sizeof(err),
                                mark, &koff, &klen) == 0) {
        cs_slice v = {w->tuplebuf.data, w->tuplebuf.len};
        if (mark) {
          cs_buf key = {w->tuplebuf.data + koff, klen, klen};
          cs_buf val = {w->tuplebuf.data, v.len, v.len};
          if (eout_route(eo, &key, &val))
            rc = cs_opi_fail(L, op, 0, "out of memory while buffering output");
        } else {
          rc = eout_write_encoded(L, op, eo, v);
        }
        continue;
      }
      /* the table path reports what cannot be encoded, with the record */
    }
    if (!table) {
      push_tuple(L, first, n);
      table = lua_gettop(L);
    }
    if (o->chained) {
      lua_pushvalue(L, table);
      rc = cs_opi_process(L, o->chained, o->input);
    } else {
      lua_pushvalue(L, table);
      rc = eout_write(L, op, o->eout);
    }
    lua_settop(L, table);
  }
  lua_settop(L, top);
  return rc ? -1 : 0;
}

/* Emits the value on top of L (popped) through op's outputs of side output
 * tag (NULL: the main output). */
static int emit_tagged(lua_State *L, cs_opi *op, const char *tag) {
  int top = lua_gettop(L);
  cs_metric_add(&op->m->out, 1);
  for (int i = 0; i < op->nout; i++) {
    cs_out *o = &op->out[i];
    if (o->tag != tag && (o->tag == NULL || tag == NULL || strcmp(o->tag, tag) != 0))
      continue;
    if (o->chained) {
      cs_metric_add(&o->chained->m->in, 1);
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

int cs_emit(lua_State *L, cs_opi *op) { return emit_tagged(L, op, NULL); }

int cs_emit_to(lua_State *L, cs_opi *op, const char *tag) {
  if (op->w->side_output) return op->w->side_output(L, op, tag);
  return emit_tagged(L, op, tag);
}

void cs__flush_outputs(cs_tinst *t, int all) {
  uint64_t now = all ? 0 : uv_hrtime();
  for (int i = 0; i < t->neouts; i++) {
    cs_eout *eo = t->eouts[i];
    for (int c = 0; c < eo->edge->ncons; c++) {
      cs_batch *b = eo->pending[c];
      if (b && b->count && (all || now - b->born >= CS__FLUSH_TIMEOUT_NS))
        cs__eout_flush(eo, c);
    }
  }
}

int cs__eout_control(cs_tinst *t, cs_eout *eo, cs_batch_kind kind, int64_t v) {
  for (int c = 0; c < eo->edge->ncons; c++) {
    if (eo->edge->ch[eo->subtask * eo->edge->ncons + c] == NULL) continue;
    cs__eout_flush(eo, c);
    cs_batch *b = cs_batch_create(kind);
    if (b == NULL) {
      cs_job_fail(t->w->job, "out of memory");
      return -1;
    }
    b->ckpt = v;
    cs__eout_send(eo, c, b);
  }
  return 0;
}

int cs__send_control(cs_tinst *t, cs_batch_kind kind, int64_t id) {
  for (int i = 0; i < t->neouts; i++)
    if (cs__eout_control(t, t->eouts[i], kind, id)) return -1;
  return 0;
}

int cs__channels_create(cs_plan *p) {
  for (int i = 0; i < p->nedges; i++) {
    cs_edge *e = &p->edges[i];
    e->ch = cs_calloc((size_t)e->nprod * (size_t)e->ncons, sizeof(cs_channel *));
    if (e->ch == NULL) goto fail;
    for (int a = 0; a < e->nprod; a++)
      for (int b = 0; b < e->ncons; b++) {
        if (e->part == CS_PART_FORWARD && a != b) continue;
        cs_channel *ch = cs_channel_create(p->channel_capacity);
        if (ch == NULL) goto fail;
        e->ch[a * e->ncons + b] = ch;
      }
  }
  return 0;
fail:
  cs__channels_destroy(p);
  return CS_ENOMEM;
}

void cs__channels_destroy(cs_plan *p) {
  for (int i = 0; p->edges && i < p->nedges; i++) {
    cs_edge *e = &p->edges[i];
    if (e->ch)
      for (int k = 0; k < e->nprod * e->ncons; k++) cs_channel_destroy(e->ch[k]);
    cs_free(e->ch);
    e->ch = NULL;
  }
}

