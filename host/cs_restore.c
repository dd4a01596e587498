/*
 * cs_restore.c - restoring an operator subtask's state from a checkpoint,
 * at the parallelism it was taken with or another one.
 *
 * Keyed state moves by key group: the new subtask loads, from every old
 * subtask's snapshot, the entries of the key groups it now owns. Operator
 * list state is redistributed as Flink does: the lists of all old subtasks
 * are concatenated and split evenly ("#op/" states), or given whole to
 * every subtask (union list state, "#uop/").
 */
#include <string.h>

#include "../state/cs_codec.h"
#include "cs_runtime.h"
#include "cs_state.h"

/* Loads the snapshot bytes of a part into out (a view of the inline bytes,
 * or the file read into own). */
static int part_bytes(const cs_ckpt *ck, const cs_ckpt_part *part, cs_buf *own,
                      cs_slice *out, char *err, size_t errlen) {
  if (part->bytes.len) {
    out->data = part->bytes.data;
    out->len = part->bytes.len;
    return 0;
  }
  if (part->file == NULL || ck->dir == NULL) {
    out->data = "";
    out->len = 0;
    return CS_ENOTFOUND;
  }
  char path[4500];
  snprintf(path, sizeof(path), "%s/%s", ck->dir, part->file);
  int rc = cs_read_file(path, own, err, errlen);
  out->data = own->data;
  out->len = own->len;
  return rc;
}

/* Appends the operator list state `name` (items concatenated) of an old
 * subtask's snapshot to lists. */
static int collect_opstate(cs_backend *tmp, int sid, cs_buf *items) {
  cs_slice key = {"", 0}, val;
  int rc = tmp->ops->get(tmp, sid, CS_OPSTATE_KEY_GROUP, key, NULL, &val);
  if (rc == CS_ENOTFOUND) return 0;
  if (rc) return rc;
  return cs_buf_append(items, val.data, val.len);
}

/* Puts the share of the concatenated items this subtask gets: all of them
 * (union) or the sub-th of nsub even contiguous parts. */
static int put_share(cs_backend *be, int sid, const cs_buf *items, int uni,
                     int sub, int nsub) {
  size_t from = 0, to = items->len;
  if (!uni) {
    long count = 0;
    for (size_t off = 0; off < items->len; count++) {
      long n = cs_codec_skip(items->data + off, items->len - off);
      if (n < 0) return CS_EDECODE;
      off += (size_t)n;
    }
    long lo = count * sub / nsub, hi = count * (sub + 1) / nsub;
    size_t off = 0;
    for (long i = 0; i < hi; i++) {
      if (i == lo) from = off;
      off += (size_t)cs_codec_skip(items->data + off, items->len - off);
    }
    to = off;
    if (lo == hi) from = to;
  }
  if (to == from) return 0;
  cs_slice key = {"", 0}, v = {items->data + from, to - from};
  return be->ops->put(be, sid, CS_OPSTATE_KEY_GROUP, key, NULL, v);
}

/* Operator state of every old subtask, redistributed into be. */
static int restore_opstate(cs_opi *op, const cs_ckpt *ck, int oldp, cs_backend *be,
                           char *err, size_t errlen) {
  cs_backend **tmp = cs_calloc((size_t)oldp, sizeof(*tmp));
  int rc = tmp ? 0 : CS_ENOMEM;
  for (int j = 0; rc == 0 && j < oldp; j++) {
    const cs_ckpt_part *part = cs_ckpt_find(ck, op->node->id, j);
    if (part == NULL) continue;
    cs_buf own = {0};
    cs_slice bytes;
    int r = part_bytes(ck, part, &own, &bytes, err, errlen);
    if (r == 0) {
      tmp[j] = cs_heap_backend_create();
      r = tmp[j] ? cs_backend_restore(tmp[j], bytes.data, bytes.len,
                                      CS_OPSTATE_KEY_GROUP, CS_OPSTATE_KEY_GROUP)
                 : CS_ENOMEM;
      if (r == CS_EDECODE)
        snprintf(err, errlen, "the state file '%s' of checkpoint %s is corrupt",
                 part->file ? part->file : "(in memory)", ck->dir ? ck->dir : "");
    }
    if (r && r != CS_ENOTFOUND) rc = r;
    cs_buf_free(&own);
  }
  /* every operator state name seen in any old subtask */
  for (int j = 0; rc == 0 && j < oldp; j++) {
    if (tmp[j] == NULL) continue;
    int n = tmp[j]->ops->state_count(tmp[j]);
    for (int sidx = 0; rc == 0 && sidx < n; sidx++) {
      const char *name;
      cs_state_kind kind;
      tmp[j]->ops->state_info(tmp[j], sidx, &name, &kind);
      int uni = strstr(name, "/#uop/") != NULL;
      if (!uni && strstr(name, "/#op/") == NULL) continue;
      int sid = be->ops->register_state(be, name, CS_STATE_LIST);
      if (sid < 0) {
        rc = sid;
        break;
      }
      /* handled already when an earlier subtask had the same name */
      int seen = 0;
      for (int k = 0; k < j && !seen; k++) {
        if (tmp[k] == NULL) continue;
        int m = tmp[k]->ops->state_count(tmp[k]);
        for (int q = 0; q < m; q++) {
          const char *other;
          cs_state_kind ok;
          tmp[k]->ops->state_info(tmp[k], q, &other, &ok);
          if (strcmp(other, name) == 0) seen = 1;
        }
      }
      if (seen) continue;
      /* At the same parallelism a subtask gets its own list back. */
      int own_only = !uni && oldp == op->node->parallelism;
      cs_buf items = {0};
      for (int k = j; rc == 0 && k < oldp; k++) {
        if (tmp[k] == NULL || (own_only && k != op->subtask)) continue;
        int m = tmp[k]->ops->state_count(tmp[k]);
        for (int q = 0; rc == 0 && q < m; q++) {
          const char *other;
          cs_state_kind ok;
          tmp[k]->ops->state_info(tmp[k], q, &other, &ok);
          if (strcmp(other, name) == 0) rc = collect_opstate(tmp[k], q, &items);
        }
      }
      if (rc == 0)
        rc = put_share(be, sid, &items, uni || own_only, op->subtask,
                       op->node->parallelism);
      cs_buf_free(&items);
    }
  }
  for (int j = 0; tmp && j < oldp; j++)
    if (tmp[j]) tmp[j]->ops->destroy(tmp[j]);
  cs_free(tmp);
  if (rc && err[0] == '\0')
    snprintf(err, errlen, "operator state cannot be restored: %s", cs_strerror(rc));
  return rc;
}

int cs_restore_opi(cs_opi *op, const cs_ckpt *ck) {
  cs_node *n = op->node;
  int oldp = cs_ckpt_op_parallelism(ck, n->id);
  if (oldp == 0) return 0; /* nothing of this operator in the checkpoint */
  int any = 0;
  for (int j = 0; j < oldp && !any; j++) {
    const cs_ckpt_part *part = cs_ckpt_find(ck, n->id, j);
    any = part && (part->file || part->bytes.len);
  }
  op->restored = 1;
  if (!any) return 0; /* only source positions */
  cs_backend *be = cs_opi_backend(op);
  if (be == NULL) return -1;
  char err[600];
  err[0] = '\0';
  int maxp = op->w->job->plan->max_parallelism;
  int first, last;
  cs_key_group_range(op->subtask, maxp, n->parallelism, &first, &last);
  int rc = 0;
  for (int j = 0; rc == 0 && j < oldp; j++) {
    int of, ol;
    cs_key_group_range(j, maxp, oldp, &of, &ol);
    if (ol < first || of > last) continue; /* no key group in common */
    const cs_ckpt_part *part = cs_ckpt_find(ck, n->id, j);
    if (part == NULL || (!part->file && !part->bytes.len)) continue;
    cs_buf own = {0};
    cs_slice bytes;
    rc = part_bytes(ck, part, &own, &bytes, err, sizeof(err));
    if (rc == 0) {
      rc = cs_backend_restore(be, bytes.data, bytes.len, first, last);
      if (rc == CS_EDECODE)
        snprintf(err, sizeof(err), "the state file '%s/%s' is corrupt or truncated",
                 ck->dir ? ck->dir : "(memory)", part->file ? part->file : "");
      else if (rc == CS_ESTATE)
        snprintf(err, sizeof(err), "a state of the checkpoint has the name of a "
                 "state of another kind");
    }
    cs_buf_free(&own);
  }
  if (rc == 0) rc = restore_opstate(op, ck, oldp, be, err, sizeof(err));
  if (rc == 0) return 0;
  char msg[900];
  snprintf(msg, sizeof(msg), "cannot restore the state of operator '%s' (id %s, "
           "subtask %d/%d): %s", n->name ? n->name : "?", n->id, op->subtask + 1,
           n->parallelism, err[0] ? err : cs_strerror(rc));
  cs_job_fail(op->w->job, msg);
  return -1;
}
