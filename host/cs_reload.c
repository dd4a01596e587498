/*
 * cs_reload.c - development mode (--watch): reloading a running job's code
 * with its state, order and every record kept.
 *
 * The main thread watches the job script and the local modules it requires
 * (libuv fs events on their directories, so saving by rename works too) and
 * SIGHUP, and debounces bursts of events. On a change it first loads and
 * plans the new version in a scratch Lua state: a syntax error, an error at
 * load or a plan that cannot be built is printed and the old code keeps
 * running.
 *
 * Same topology (the plan's fingerprint is unchanged: operators, ids,
 * edges, keys, parallelism): a two-phase swap. Every worker, between two
 * records, prepares a fresh lua_State with the new code: snapshot_state()
 * of the old instances (their operator state goes to the backend), then
 * initialize_state() and open() of the new ones (ctx:is_restored() is
 * true). State never lived in Lua, so every key keeps it. When all workers
 * prepared without error the main thread commits: close() of the old
 * instances and their state is dropped; if any failed, all roll back to the
 * old code, which never stopped being bound. A worker waits for the
 * decision without taking records, so no record is lost or processed twice.
 * Lua sources restart their run() in the new state (their position lives
 * in their operator state, as for a restart from a checkpoint); file,
 * element and socket sources keep their position.
 *
 * Changed topology: the job stops with a savepoint and the program starts
 * again (same process) from it with the new plan; state of operators whose
 * ids no longer exist is dropped and named.
 */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cs_core.h"
#include "cs_lua.h"
#include "cs_runtime.h"

/* A burst of events (an editor's save) settles within DEBOUNCE_MS; after
 * a reload the next waits until MIN_INTERVAL_MS have passed, so rapid
 * saves coalesce (ten in a second give at most two reloads). */
#define DEBOUNCE_MS 20
#define MIN_INTERVAL_MS 1000

typedef struct cs_reload {
  cs_job *job;
  uv_loop_t *loop;
  int nwatch;
  struct watch {
    uv_fs_event_t ev;
    char *dir;
    int active;
  } *watch;
  uv_timer_t debounce;
  uv_signal_t sighup;
  uint64_t first_event; /* uv_hrtime() of the first event of a burst */
  uint64_t last_reload; /* uv_now() of the last reload started */
  uint64_t posted;      /* uv_hrtime() when the workers were asked */
  int64_t gen;          /* reload being prepared, 0 when none */
  char *changed;        /* operators whose code changed, for the log */
  char **digests;       /* the running code's digests */
  int ndigests;
  char **next;          /* the digests of the version being prepared */
  int nnext;
  int closing;
} cs_reload;

static void free_strings(char **v, int n) {
  for (int i = 0; v && i < n; i++) cs_free(v[i]);
  cs_free(v);
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* ================================================================ main */

static void schedule(cs_reload *r);

/* Loads and plans the new version in a scratch state. Returns 0 with the
 * fingerprint and digests in o, or -1 after printing why. */
static int check_new_version(cs_job *job, cs_options *o) {
  memset(o, 0, sizeof(*o));
  o->script = job->script;
  o->argc = job->argc;
  o->argv = job->argv;
  o->plan_only = 1;
  lua_State *L = cs_lua_newstate();
  if (L == NULL) {
    fprintf(stderr, "cstream-lua: reload: out of memory\n");
    return -1;
  }
  cs_core_set_options(L, o);
  lua_createtable(L, job->argc, 1);
  lua_pushstring(L, job->script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < job->argc; i++) {
    lua_pushstring(L, job->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  int rc = 0;
  if (cs_lua_loadfile(L, job->script) != LUA_OK || cs_lua_pcall(L, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "cstream-lua: reload failed, the running code stays:\n%s\n",
            m ? m : "(error object is not a string)");
    rc = -1;
  } else if (o->fingerprint == NULL) {
    fprintf(stderr, "cstream-lua: reload failed, the running code stays: %s "
            "never called env:execute()\n", job->script);
    rc = -1;
  }
  lua_close(L);
  if (rc) cs_options_free_results(o);
  return rc;
}

/* "name (id), ..." of the operators whose digest changed. */
static char *changed_ops(cs_reload *r, const cs_options *o) {
  cs_buf b = {0};
  cs_plan *p = r->job->plan;
  for (int i = 0; i < p->nnodes; i++) {
    const char *a = i < r->ndigests ? r->digests[i] : NULL;
    const char *c = i < o->ndigests ? o->digests[i] : NULL;
    if (a && c && strcmp(a, c) == 0) continue;
    if (p->nodes[i].kind >= CS_OP_SINK_PRINT && p->nodes[i].kind != CS_OP_SINK_CUSTOM)
      continue;
    cs_buf_printf(&b, "%s%s", b.len ? ", " : "", p->nodes[i].id);
  }
  if (b.len == 0) cs_buf_printf(&b, "none");
  return b.data;
}

static void on_debounce(uv_timer_t *h) {
  cs_reload *r = h->data;
  cs_job *job = r->job;
  if (job->stopping || atomic_load(&job->failed)) return;
  if (r->gen) { /* the previous reload is still being decided */
    schedule(r);
    return;
  }
  r->last_reload = uv_now(r->loop);
  cs_options o;
  if (check_new_version(job, &o)) return;
  if (strcmp(o.fingerprint, job->fingerprint) != 0) {
    fprintf(stderr, "cstream-lua: the job's topology changed (operators, ids, "
            "keys or parallelism): stopping with a savepoint to restart with "
            "the new plan\n");
    if (job->ckpt_base == NULL && job->cfg->savepoint_dir == NULL) {
      cs_buf b = {0};
      cs_buf_printf(&b, "/tmp/cstream-reload-%d/%s", (int)getpid(), job->name);
      char err[512];
      if (b.data == NULL || cs_mkdirs(b.data, err, sizeof(err))) {
        fprintf(stderr, "cstream-lua: reload failed: %s\n", b.data ? err : "out of memory");
        cs_buf_free(&b);
        cs_options_free_results(&o);
        return;
      }
      job->ckpt_base = b.data;
    }
    job->restart_savepoint = cs_strdup("yes");
    if (!cs__job_stop(job, 1))
      fprintf(stderr, "cstream-lua: no savepoint could be taken; the job stops\n");
    cs_options_free_results(&o);
    return;
  }
  cs_free(r->changed);
  r->changed = changed_ops(r, &o);
  free_strings(r->next, r->nnext);
  r->next = o.digests; /* the running code's, if the reload commits */
  r->nnext = o.ndigests;
  o.digests = NULL;
  o.ndigests = 0;
  cs_options_free_results(&o);
  uv_mutex_lock(&job->lock);
  job->reload_prepared = 0;
  job->reload_failed = 0;
  cs_free(job->reload_error);
  job->reload_error = NULL;
  uv_mutex_unlock(&job->lock);
  r->posted = uv_hrtime();
  r->gen = atomic_fetch_add(&job->reload_gen, 1) + 1;
  for (int i = 0; i < job->nworkers; i++) cs_worker_wake(&job->workers[i]);
}

void cs_reload_on_wake(cs_job *job) {
  cs_reload *r = job->reload;
  if (r == NULL || r->gen == 0) return;
  uv_mutex_lock(&job->lock);
  int ready = job->reload_prepared + atomic_load(&job->workers_done) >= job->nworkers;
  if (!ready) {
    uv_mutex_unlock(&job->lock);
    return;
  }
  int commit = !job->reload_failed;
  job->reload_decided = r->gen;
  job->reload_commit = commit;
  uv_cond_broadcast(&job->reload_cond);
  char *err = job->reload_error;
  job->reload_error = NULL;
  uv_mutex_unlock(&job->lock);
  uint64_t now = uv_hrtime();
  double ms = (double)(now - r->first_event) / 1e6;
  double paused = (double)(now - r->posted) / 1e6;
  if (commit) {
    free_strings(r->digests, r->ndigests);
    r->digests = r->next;
    r->ndigests = r->nnext;
    r->next = NULL;
    r->nnext = 0;
  }
  if (commit)
    fprintf(stderr, "cstream-lua: reloaded %s (changed operators: %s): %.1f ms "
            "after the change, processing paused %.1f ms\n", base_name(job->script),
            r->changed, ms, paused);
  else
    fprintf(stderr, "cstream-lua: reload rolled back, the running code stays:\n%s\n",
            err ? err : "?");
  cs_free(err);
  r->gen = 0;
}

static void schedule(cs_reload *r) {
  if (r->closing) return;
  if (!uv_is_active((uv_handle_t *)&r->debounce)) r->first_event = uv_hrtime();
  uint64_t now = uv_now(r->loop), delay = DEBOUNCE_MS;
  if (r->last_reload && now < r->last_reload + MIN_INTERVAL_MS &&
      r->last_reload + MIN_INTERVAL_MS - now > delay)
    delay = r->last_reload + MIN_INTERVAL_MS - now;
  uv_timer_start(&r->debounce, on_debounce, delay, 0);
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events,
                        int status) {
  (void)events;
  struct watch *wt = container_of(h, struct watch, ev);
  cs_reload *r = h->data;
  if (status < 0 || filename == NULL) return;
  for (int i = 0; i < r->job->cfg->nwatch_files; i++) {
    const char *f = r->job->cfg->watch_files[i];
    size_t dl = strlen(wt->dir);
    if (strncmp(f, wt->dir, dl) == 0 && f[dl] == '/' && strcmp(f + dl + 1, filename) == 0) {
      schedule(r);
      return;
    }
  }
}

static void on_sighup(uv_signal_t *h, int signum) {
  (void)signum;
  schedule(h->data);
}

static void free_reload(uv_handle_t *h) {
  cs_reload *r = h->data;
  if (--r->closing > 0) return;
  for (int i = 0; i < r->nwatch; i++) cs_free(r->watch[i].dir);
  cs_free(r->watch);
  cs_free(r->changed);
  free_strings(r->digests, r->ndigests);
  free_strings(r->next, r->nnext);
  cs_free(r);
}

int cs_reload_start(cs_job *job, uv_loop_t *loop) {
  const cs_run_config *cfg = job->cfg;
  cs_reload *r = cs_calloc(1, sizeof(*r));
  if (r == NULL) return CS_ENOMEM;
  r->job = job;
  r->loop = loop;
  r->watch = cs_calloc((size_t)cfg->nwatch_files + 1, sizeof(*r->watch));
  r->digests = cs_calloc((size_t)cfg->ndigests + 1, sizeof(char *));
  if (r->watch == NULL || r->digests == NULL) {
    cs_free(r->watch);
    cs_free(r->digests);
    cs_free(r);
    return CS_ENOMEM;
  }
  for (int i = 0; i < cfg->ndigests; i++) r->digests[i] = cs_strdup(cfg->digests[i]);
  r->ndigests = cfg->ndigests;
  uv_timer_init(loop, &r->debounce);
  r->debounce.data = r;
  uv_signal_init(loop, &r->sighup);
  r->sighup.data = r;
  uv_signal_start(&r->sighup, on_sighup, SIGHUP);
  /* one watch per directory holding a watched file */
  for (int i = 0; i < cfg->nwatch_files; i++) {
    char *dir = cs_strdup(cfg->watch_files[i]);
    if (dir == NULL) continue;
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
      cs_free(dir);
      continue;
    }
    *slash = '\0';
    int dup = 0;
    for (int k = 0; k < r->nwatch && !dup; k++) dup = strcmp(r->watch[k].dir, dir) == 0;
    if (dup) {
      cs_free(dir);
      continue;
    }
    struct watch *wt = &r->watch[r->nwatch];
    uv_fs_event_init(loop, &wt->ev);
    wt->ev.data = r;
    wt->dir = dir;
    r->nwatch++;
    int rc = uv_fs_event_start(&wt->ev, on_fs_event, dir, 0);
    if (rc)
      fprintf(stderr, "cstream-lua: --watch: cannot watch %s: %s\n", dir, uv_strerror(rc));
  }
  job->reload = r;
  {
    fprintf(stderr, "cstream-lua: watching %d file(s) for changes (%s", cfg->nwatch_files,
            cfg->nwatch_files ? base_name(cfg->watch_files[0]) : "");
    for (int i = 1; i < cfg->nwatch_files; i++)
      fprintf(stderr, ", %s", base_name(cfg->watch_files[i]));
    fprintf(stderr, ")\n");
  }
  return 0;
}

void cs_reload_stop(cs_job *job) {
  cs_reload *r = job->reload;
  if (r == NULL) return;
  job->reload = NULL;
  r->closing = 2 + r->nwatch;
  uv_close((uv_handle_t *)&r->debounce, free_reload);
  uv_close((uv_handle_t *)&r->sighup, free_reload);
  for (int i = 0; i < r->nwatch; i++) uv_close((uv_handle_t *)&r->watch[i].ev, free_reload);
}

/* ============================================================== worker */

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

void cs_worker_reload(cs_worker *w) {
  cs_job *job = w->job;
  int64_t gen = atomic_load(&job->reload_gen);
  w->reload_seen = gen;
  int active = w->ndone < w->ntinst;
  lua_State *old_L = w->L, *L2 = NULL;
  int old_env = w->env_ref;
  int ok = 1, bound = 0;
  int *nstates = NULL; /* per opi: the states registered before the reload */
  if (active) {
    w->reloading = 1;
    /* operator state of the running instances goes to the backend */
    for (int i = 0; ok && i < w->nopis; i++)
      if (w->opis[i].node && !w->opis[i].t->finished &&
          cs_opi_snapshot_state(old_L, &w->opis[i]))
        ok = 0;
    nstates = ok ? cs_calloc((size_t)w->nopis + 1, sizeof(int)) : NULL;
    if (ok && nstates == NULL) {
      ok = 0;
      w->reload_error = cs_strdup("out of memory");
    }
    for (int i = 0; ok && i < w->nopis; i++) {
      cs_backend *be = w->opis[i].be;
      nstates[i] = be ? be->ops->state_count(be) : 0;
    }
    L2 = ok ? cs_lua_newstate() : NULL;
    if (ok && L2 == NULL) {
      ok = 0;
      w->reload_error = cs_strdup("out of memory");
    }
    if (L2) cs_lua_worker_setup(L2);
    if (ok) {
      w->L = L2;
      if (cs__worker_load(w, L2)) ok = 0;
    }
    if (ok) {
      for (int i = 0; i < w->nopis; i++) {
        cs_opi *op = &w->opis[i];
        if (op->node == NULL) continue;
        op->old = (struct cs_refs){op->self_ref, {op->fn_ref[0], op->fn_ref[1]},
                                   op->ctx_ref, op->out_ref};
        op->self_ref = op->fn_ref[0] = op->fn_ref[1] = LUA_NOREF;
        op->ctx_ref = op->out_ref = LUA_NOREF;
      }
      bound = 1;
      lua_rawgeti(L2, LUA_REGISTRYINDEX, w->env_ref);
      int env_idx = lua_gettop(L2);
      for (int i = 0; ok && i < w->nopis; i++)
        if (w->opis[i].node && cs_opi_bind(L2, &w->opis[i], env_idx)) ok = 0;
      lua_settop(L2, env_idx - 1);
      for (int i = 0; ok && i < w->nopis; i++) {
        cs_opi *op = &w->opis[i];
        if (op->node == NULL || op->t->finished) continue;
        op->restored = 1;
        if (cs_opi_open(L2, op)) ok = 0;
      }
    }
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
  if (commit && ok) {
    /* close() of the old instances, in the old state */
    w->L = old_L;
    for (int i = 0; i < w->nopis; i++) {
      cs_opi *op = &w->opis[i];
      if (op->node == NULL || op->t->finished) continue;
      swap_refs(op);
      cs_opi_close(old_L, op);
      swap_refs(op);
    }
    w->L = L2;
    cs__worker_bind_keys(w);
    for (int i = 0; i < w->ntinst; i++)
      if (w->tinst[i].is_source && !w->tinst[i].src_done)
        cs_source_rebind(L2, &w->tinst[i]);
    lua_close(old_L);
  } else {
    /* roll back: the new instances close, the old refs come back */
    if (bound) {
      for (int i = 0; i < w->nopis; i++) {
        cs_opi *op = &w->opis[i];
        if (op->node == NULL) continue;
        if (!op->t->finished && L2) cs_opi_close(L2, op);
        op->self_ref = op->old.self;
        op->fn_ref[0] = op->old.fn[0];
        op->fn_ref[1] = op->old.fn[1];
        op->ctx_ref = op->old.ctx;
        op->out_ref = op->old.out;
      }
    }
    w->L = old_L;
    w->env_ref = old_env;
    if (L2) lua_close(L2);
    /* States the new version registered never existed for the running
     * code: forget them, so a later version may use the names freely. */
    for (int i = 0; nstates && i < w->nopis; i++) {
      cs_backend *be = w->opis[i].be;
      if (be && be->ops->state_count(be) > nstates[i] &&
          be->ops->forget_states(be, nstates[i]))
        fprintf(stderr, "cstream-lua: reload: could not forget the states of the "
                "rolled-back version of operator '%s'\n", w->opis[i].node->id);
    }
  }
  cs_free(nstates);
  w->reloading = 0;
  cs_free(w->reload_error);
  w->reload_error = NULL;
}
