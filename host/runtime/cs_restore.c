/*
 * cs_restore.c - restoring an operator subtask's state from a checkpoint,
 * at the parallelism it was taken with or another one.
 *
 * Keyed state moves by key group: the new subtask loads, from every old
 * subtask's snapshot, the entries of the key groups it now owns. Operator
 * list state is redistributed as Flink does: the lists of all old subtasks
 * are concatenated and split evenly ("#op/" states), or given whole to
 * every subtask (union list state, "#uop/").
 *
 * Before any of that, the checkpoint --restore names is found, checked
 * against its checksums and against the plan.
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "state/cs_codec.h"
#include "state/cs_rocksdb.h"
#include "state/cs_ttl.h"
#include "host/runtime/cs_runtime_int.h"

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
 * registering states by name, kind and TTL configuration; entries of TTL
 * states that have expired are left out. */
static int copy_range(cs_backend *src, cs_backend *dst, int first, int last) {
  cs_backend_iter *it = NULL;
  cs_buf tmp = {0};
  int64_t now = cs_ttl_now();
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
    cs_ttl_config ttl;
    rc = src->ops->state_info(src, e.state, &name, &kind);
    int has_ttl = rc ? rc : src->ops->state_ttl(src, e.state, &ttl);
    if (has_ttl < 0) {
      rc = has_ttl;
      break;
    }
    int sid = dst->ops->register_ttl_state(dst, name, kind, has_ttl ? &ttl : NULL);
    if (sid < 0) {
      rc = sid;
      break;
    }
    cs_slice val = e.val;
    int keep = has_ttl ? cs_ttl_unexpired(&ttl, kind, now, &val, &tmp) : 1;
    if (keep < 0) rc = keep;
    if (keep > 0)
      rc = dst->ops->put(dst, sid, e.kg, e.key, kind == CS_STATE_MAP ? &e.ukey : NULL,
                         val);
  }
  if (it) src->ops->iter_destroy(it);
  cs_buf_free(&tmp);
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

int cs__restore_opi(cs_opi *op, const cs_ckpt *ck) {
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
    cs__opi_workdir(op, dir, sizeof(dir));
    cs_rocksdb_options o;
    cs__job_rocksdb_options(op->w->job, &o);
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

/* Checks that checkpoint ck can start this plan: same max parallelism,
 * and every operator with state in ck still exists (or the user allowed
 * dropping its state). Returns 0 or CS_EPLAN with a message. */
int cs__restore_check(const cs_job *job, const cs_ckpt *ck, char *err, size_t errlen) {
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


int cs__restore_load(cs_job *job, cs_ckpt **out, char *err, size_t errlen) {
  int rc = load_restore(job, out, err, errlen);
  if (rc == 0 && *out && (rc = cs__restore_check(job, *out, err, errlen)) != 0) {
    cs_ckpt_destroy(*out);
    *out = NULL;
  }
  return rc;
}
