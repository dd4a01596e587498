/*
 * cs_group_run.c - the runtime's side of a group (cluster.group,
 * docs/scale-out.md): which logical subtasks this process runs, and where
 * each starts from.
 *
 * The membership (host/connectors/cs_group.c, through the job's hooks)
 * reports assignments and revocations from its own thread; the main
 * thread's loop looks every 100 ms (cs__group_check) and stops a running
 * attempt whose share changed (job->rebalanced) with a final checkpoint,
 * which commits what its subtasks did (or, when that does not complete
 * within cluster.session-timeout, fails it: the new owners replay from the
 * checkpoint before); cs_job_run starts the next attempt once an
 * assignment holds, without counting it as a restart.
 *
 * Every process checkpoints into its own directory
 * <dir>/<job>/<group>/<member>/.
 * Before an attempt, each logical subtask r this process now runs is
 * restored from the complete checkpoint, in any member's directory, whose
 * repartition sources were furthest into their partition r (the sum of
 * their next offsets for subtask r): the offsets of a partition only grow,
 * so that is the newest state of r, whoever wrote it. A member keeps the
 * newest of its checkpoints that holds each subtask, besides the newest
 * state.checkpoints.num-retained (cs__group_retain).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "host/runtime/cs_runtime_int.h"

void cs_job_group_assigned(cs_job *job, const unsigned char *mine, int n) {
  uv_mutex_lock(&job->lock);
  for (int r = 0; r < job->group_n; r++) job->group_mine[r] = r < n && mine[r];
  job->group_assigned = 1;
  job->group_gen++;
  uv_cond_broadcast(&job->group_cond);
  uv_mutex_unlock(&job->lock);
}

void cs_job_group_revoked(cs_job *job) {
  uv_mutex_lock(&job->lock);
  job->group_assigned = 0;
  job->group_gen++;
  uv_mutex_unlock(&job->lock);
}

int cs__group_check(cs_job *job) {
  uv_mutex_lock(&job->lock);
  int changed = job->group_gen != job->attempt_gen &&
                (!job->group_assigned ||
                 memcmp(job->attempt_mine, job->group_mine, (size_t)job->group_n) != 0);
  if (!changed) job->attempt_gen = job->group_gen; /* the same share again */
  uv_mutex_unlock(&job->lock);
  return changed && atomic_exchange(&job->rebalanced, 1) == 0;
}

int cs_job_runs_subtask(const cs_job *job, int r) {
  if (job->group == NULL || job->attempt_mine == NULL) return 1;
  return r >= 0 && r < job->group_n && job->attempt_mine[r];
}

cs_ckpt *cs_job_restore_for(const cs_job *job, int subtask) {
  if (job->group == NULL) return job->restore;
  if (job->restore_sub == NULL || subtask < 0 || subtask >= job->group_n) return NULL;
  return job->restore_sub[subtask];
}

/* The sum of the next offsets of partition r that the repartition sources'
 * positions for subtask r in ck hold, or -1 when ck holds none. */
static long long score(const cs_job *job, const cs_ckpt *ck, int r) {
  long long sum = -1;
  for (int k = 0; k < job->plan->nnodes; k++) {
    const cs_node *n = &job->plan->nodes[k];
    if (n->kind != CS_OP_SRC_REPARTITION) continue;
    const cs_ckpt_part *p = cs_ckpt_find(ck, n->id, r);
    if (p == NULL || p->source == NULL || strncmp(p->source, "repart ", 7) != 0) continue;
    long long next = strtoll(p->source + 7, NULL, 10);
    sum = (sum < 0 ? 0 : sum) + next;
  }
  return sum;
}

/* Loads every complete checkpoint under <dir>/<job>/<group>/<member>/ of
 * every member into job->group_ckpts. */
static int load_all(cs_job *job) {
  cs_buf base = {0};
  cs_buf_printf(&base, "%s/%s/%s", job->cfg->checkpoint_dir, job->name, job->cfg->group);
  if (base.data == NULL) return CS_ENOMEM;
  DIR *d = opendir(base.data);
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && d && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || strcmp(e->d_name, "shared") == 0) continue;
    cs_buf mdir = {0};
    cs_buf_printf(&mdir, "%s/%s", base.data, e->d_name);
    DIR *md = mdir.data ? opendir(mdir.data) : NULL;
    struct dirent *c;
    while (rc == 0 && md && (c = readdir(md)) != NULL) {
      if (strncmp(c->d_name, "chk-", 4) != 0) continue;
      cs_buf cdir = {0};
      cs_buf_printf(&cdir, "%s/%s", mdir.data, c->d_name);
      cs_ckpt *ck = NULL;
      char err[512];
      if (cdir.data && cs_ckpt_read(cdir.data, &ck, err, sizeof(err)) == 0) {
        cs_ckpt **nl = cs_realloc(job->group_ckpts,
                                  sizeof(*nl) * (size_t)(job->ngroup_ckpts + 1));
        if (nl == NULL) {
          cs_ckpt_destroy(ck);
          rc = CS_ENOMEM;
        } else {
          job->group_ckpts = nl;
          nl[job->ngroup_ckpts++] = ck;
        }
      }
      cs_buf_free(&cdir);
    }
    if (md) closedir(md);
    cs_buf_free(&mdir);
  }
  if (d) closedir(d);
  cs_buf_free(&base);
  return rc;
}

/* Picks, for every logical subtask this attempt runs, the checkpoint with
 * the highest score that is intact and fits the plan. */
static int choose(cs_job *job, char **errmsg) {
  for (int r = 0; r < job->group_n; r++) {
    if (!job->attempt_mine[r]) continue;
    for (;;) {
      int best = -1;
      long long bs = -1;
      for (int i = 0; i < job->ngroup_ckpts; i++) {
        if (job->group_ckpts[i] == NULL) continue;
        long long s = score(job, job->group_ckpts[i], r);
        if (s > bs) {
          bs = s;
          best = i;
        }
      }
      if (best < 0) break; /* nothing of r yet: it starts empty */
      char err[2000];
      cs_ckpt *ck = job->group_ckpts[best];
      int bad = -1;
      if (cs_ckpt_verify(ck, &bad, err, sizeof(err)) != 0) {
        fprintf(stderr, "cstream-lua: skipping the damaged checkpoint %s: %s\n", ck->dir,
                err);
        cs_ckpt_destroy(ck);
        job->group_ckpts[best] = NULL;
        continue;
      }
      if (cs__restore_check(job, ck, err, sizeof(err)) != 0) {
        *errmsg = cs_strdup(err);
        return CS_EPLAN;
      }
      job->restore_sub[r] = ck;
      break;
    }
  }
  return 0;
}

int cs__group_retain(cs_job *job) {
  DIR *d = opendir(job->ckpt_base);
  if (d == NULL) return 0;
  int n = 0, cap = 0, removed = 0;
  struct held {
    int64_t id;
    char *dir;
    long long *score; /* [group_n], -1 where it holds nothing of r */
  } *all = NULL;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "chk-", 4) != 0) continue;
    cs_buf path = {0};
    cs_buf_printf(&path, "%s/%s", job->ckpt_base, e->d_name);
    cs_ckpt *ck = NULL;
    char err[512];
    if (path.data == NULL || cs_ckpt_read(path.data, &ck, err, sizeof(err)) != 0) {
      cs_buf_free(&path); /* incomplete: cs_ckpt_remove_incomplete's */
      continue;
    }
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      struct held *na = cs_realloc(all, sizeof(*na) * (size_t)cap);
      if (na == NULL) {
        cs_ckpt_destroy(ck);
        cs_buf_free(&path);
        break;
      }
      all = na;
    }
    all[n].id = ck->id;
    all[n].dir = path.data;
    all[n].score = cs_calloc((size_t)job->group_n, sizeof(long long));
    for (int r = 0; all[n].score && r < job->group_n; r++)
      all[n].score[r] = score(job, ck, r);
    cs_ckpt_destroy(ck);
    n++;
  }
  closedir(d);
  for (int i = 0; i < n; i++) {
    int newer = 0, keep = all[i].score == NULL;
    for (int j = 0; j < n; j++) newer += all[j].id > all[i].id;
    keep |= newer < job->cfg->num_retained;
    for (int r = 0; !keep && r < job->group_n; r++) {
      if (all[i].score[r] < 0) continue;
      int newest = 1; /* of the checkpoints of this member that hold r */
      for (int j = 0; j < n && newest; j++)
        if (all[j].id > all[i].id && all[j].score && all[j].score[r] >= 0) newest = 0;
      keep = newest;
    }
    if (!keep && cs_ckpt_remove_dir(all[i].dir) == 0) removed++;
  }
  for (int i = 0; i < n; i++) {
    cs_free(all[i].dir);
    cs_free(all[i].score);
  }
  cs_free(all);
  return removed;
}

int cs__group_begin_attempt(cs_job *job, char **errmsg) {
  long long wait_ms = job->cfg->group_session_ms * 3 + job->cfg->kafka_connect_timeout_ms;
  uint64_t until = uv_hrtime() + (uint64_t)wait_ms * 1000000u;
  uv_mutex_lock(&job->lock);
  while (!job->group_assigned && uv_hrtime() < until)
    uv_cond_timedwait(&job->group_cond, &job->lock, 200000000u);
  int ok = job->group_assigned;
  if (ok) {
    memcpy(job->attempt_mine, job->group_mine, (size_t)job->group_n);
    job->attempt_gen = job->group_gen;
  }
  uv_mutex_unlock(&job->lock);
  if (!ok) {
    cs_buf b = {0};
    cs_buf_printf(&b, "the group '%s' gave this process no share within %lld ms "
                  "(3 x cluster.session-timeout + kafka.connect-timeout): are the "
                  "brokers %s up?", job->cfg->group, wait_ms,
                  job->cfg->kafka_bootstrap ? job->cfg->kafka_bootstrap : "?");
    *errmsg = b.data;
    return CS_EIO;
  }
  atomic_store(&job->rebalanced, 0);
  cs_buf list = {0};
  for (int r = 0; r < job->group_n; r++)
    if (job->attempt_mine[r]) cs_buf_printf(&list, "%s%d", list.len ? "," : "", r);
  fprintf(stderr, "cstream-lua: group '%s': member %s runs logical subtask(s) [%s] of %d\n",
          job->cfg->group, job->member, list.data ? list.data : "", job->group_n);
  cs_buf_free(&list);
  job->restore_sub = cs_calloc((size_t)job->group_n, sizeof(cs_ckpt *));
  if (job->restore_sub == NULL || load_all(job)) {
    *errmsg = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  int rc = choose(job, errmsg);
  for (int r = 0; rc == 0 && r < job->group_n; r++)
    if (job->restore_sub[r])
      fprintf(stderr, "cstream-lua: group '%s': logical subtask %d starts from %s\n",
              job->cfg->group, r, job->restore_sub[r]->dir);
  return rc;
}

void cs__group_end_attempt(cs_job *job) {
  for (int i = 0; i < job->ngroup_ckpts; i++) cs_ckpt_destroy(job->group_ckpts[i]);
  cs_free(job->group_ckpts);
  job->group_ckpts = NULL;
  job->ngroup_ckpts = 0;
  cs_free(job->restore_sub);
  job->restore_sub = NULL;
}
