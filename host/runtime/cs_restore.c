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
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "state/cs_codec.h"
#include "state/cs_rocksdb.h"
#include "host/runtime/cs_runtime.h"
#include "host/api/cs_state.h"

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

static int is_rocksdb_part(const cs_ckpt_part *part) {
  size_t n = part->file ? strlen(part->file) : 0;
  return n > 8 && strcmp(part->file + n - 8, ".rocksdb") == 0;
}

/* Opens the RocksDB checkpoint of a part read-only (in a scratch dir). */
static int open_rocksdb_part(cs_opi *op, const cs_ckpt *ck, const cs_ckpt_part *part,
                             cs_backend **out, char *err, size_t errlen) {
  static atomic_int seq;
  char chk[4500], shared[4500], scratch[4500];
  snprintf(chk, sizeof(chk), "%s/%s", ck->dir, part->file);
  cs_ckpt_shared_dir(ck, shared, sizeof(shared));
  snprintf(scratch, sizeof(scratch), "%s/restore-%d-%d",
           op->w->job->workdir ? op->w->job->workdir : "/tmp",
           (int)getpid(), atomic_fetch_add(&seq, 1));
  return cs_rocksdb_open_readonly(chk, shared, scratch, out, err, errlen);
}

/* Copies the entries of src whose key group is in [first, last] into dst,
 * registering states by name and kind. */
static int copy_range(cs_backend *src, cs_backend *dst, int first, int last) {
  cs_backend_iter *it = NULL;
  int rc = src->ops->scan_iter(src, first, last, &it);
  cs_backend_entry e;
  int n;
  while (rc == 0 && (n = src->ops->iter_next(it, &e)) != 0) {
    if (n < 0) {
      rc = n;
      break;
    }
    const char *name;
    cs_state_kind kind;
    rc = src->ops->state_info(src, e.state, &name, &kind);
    if (rc) break;
    int sid = dst->ops->register_state(dst, name, kind);
    if (sid < 0) {
      rc = sid;
      break;
    }
    rc = dst->ops->put(dst, sid, e.kg, e.key, kind == CS_STATE_MAP ? &e.ukey : NULL,
                       e.val);
  }
  if (it) src->ops->iter_destroy(it);
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
    if (is_rocksdb_part(part)) {
      int r = open_rocksdb_part(op, ck, part, &tmp[j], err, errlen);
      if (r) rc = r;
      continue;
    }
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
  char err[1200];
  err[0] = '\0';
  int rc = 0;
  int maxp = op->w->job->plan->max_parallelism;
  int first, last;
  cs_key_group_range(op->subtask, maxp, n->parallelism, &first, &last);
  const cs_ckpt_part *mine = cs_ckpt_find(ck, n->id, op->subtask);
  int fast = 0;
  if (oldp == n->parallelism && mine && is_rocksdb_part(mine) && op->be == NULL &&
      cs_job_uses_rocksdb(op->w->job)) {
    /* Same parallelism, RocksDB to RocksDB: the checkpoint becomes the
     * working instance (hard links, no copying of entries). */
    char chk[4500], shared[4500], dir[4500];
    snprintf(chk, sizeof(chk), "%s/%s", ck->dir, mine->file);
    cs_ckpt_shared_dir(ck, shared, sizeof(shared));
    cs_opi_workdir(op, dir, sizeof(dir));
    cs_rocksdb_options o;
    cs_job_rocksdb_options(op->w->job, &o);
    rc = cs_rocksdb_restore(dir, chk, shared, &o, &op->be, err, sizeof(err));
    if (rc) op->be = NULL;
    fast = rc == 0;
  }
  cs_backend *be = rc == 0 ? cs_opi_backend(op) : NULL;
  if (rc == 0 && be == NULL) return -1;
  for (int j = 0; rc == 0 && !fast && j < oldp; j++) {
    int of, ol;
    cs_key_group_range(j, maxp, oldp, &of, &ol);
    if (ol < first || of > last) continue; /* no key group in common */
    const cs_ckpt_part *part = cs_ckpt_find(ck, n->id, j);
    if (part == NULL || (!part->file && !part->bytes.len)) continue;
    cs_buf own = {0};
    cs_slice bytes;
    if (is_rocksdb_part(part)) {
      cs_backend *src = NULL;
      rc = open_rocksdb_part(op, ck, part, &src, err, sizeof(err));
      if (rc == 0) {
        rc = copy_range(src, be, first, last);
        if (rc && err[0] == '\0')
          snprintf(err, sizeof(err), "copying state from '%s/%s' failed: %s", ck->dir,
                   part->file, cs_strerror(rc));
      }
      if (src) src->ops->destroy(src);
      continue;
    }
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
  char msg[2200];
  snprintf(msg, sizeof(msg), "cannot restore the state of operator '%s' (id %s, "
           "subtask %d/%d): %s", n->name ? n->name : "?", n->id, op->subtask + 1,
           n->parallelism, err[0] ? err : cs_strerror(rc));
  cs_job_fail(op->w->job, msg);
  return -1;
}
