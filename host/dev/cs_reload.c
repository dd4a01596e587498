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
 * Changed topology, or a changed key selector (records must be
 * partitioned anew): the job stops with a savepoint and the program starts
 * again (same process) from it with the new plan; state of operators whose
 * ids no longer exist is dropped and named, the others' carried over (as a
 * Flink savepoint would, under their old keys when the selector changed).
 *
 * The watched files are the running code's and those of the last version
 * tried (a module it failed to load included); after a commit, the new
 * code's.
 */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/core/cs_core.h"
#include "host/dev/cs_reload.h"
#include "host/lua/cs_lua.h"
#include "host/runtime/cs_runtime.h"

/* A burst of events (an editor's save) settles within DEBOUNCE_MS; after
 * a reload the next waits until MIN_INTERVAL_MS have passed, so rapid
 * saves coalesce (ten in a second give at most two reloads). */
#define DEBOUNCE_MS 20
#define MIN_INTERVAL_MS 1000

/* A node's digest (Env:_digests): DIGEST_HEX hex digits for its key
 * selector(s), as many for its code, then its id. */
#define DIGEST_HEX 32

/* A watch of one directory: saving by rename replaces a file's inode, so
 * the directory is watched, not the file. Heap-allocated one by one, since
 * a started uv handle must not move. */
typedef struct watch {
  uv_fs_event_t ev;
  char *dir;
} watch;

typedef struct cs_reload {
  cs_job *job;
  uv_loop_t *loop;
  int nwatch;
  watch **watch;
  char **files;   /* watched: the running code's and the last version tried */
  int nfiles;
  char **running; /* the files the running code was loaded from */
  int nrunning;
  char **next_files; /* those of the version being prepared */
  int nnext_files;
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

static int contains(char *const *v, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0) return 1;
  return 0;
}

/* A new array of the strings of a, then those of b not in a; *n of them.
 * NULL when out of memory. */
static char **union_of(char *const *a, int na, char *const *b, int nb, int *n) {
  char **v = cs_calloc((size_t)(na + nb) + 1, sizeof(char *));
  *n = 0;
  if (v == NULL) return NULL;
  for (int i = 0; i < na + nb; i++) {
    const char *x = i < na ? a[i] : b[i - na];
    if (contains(v, *n, x)) continue;
    if ((v[*n] = cs_strdup(x)) == NULL) {
      free_strings(v, *n);
      return NULL;
    }
    (*n)++;
  }
  return v;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* ================================================================ main */

static void schedule(cs_reload *r);
static void on_fs_event(uv_fs_event_t *h, const char *filename, int events,
                        int status);

/* Starts watching the directory of file, unless it is watched already. */
static void watch_dir(cs_reload *r, const char *file) {
  const char *slash = strrchr(file, '/');
  if (slash == NULL || slash == file) return;
  size_t len = (size_t)(slash - file);
  for (int k = 0; k < r->nwatch; k++)
    if (strlen(r->watch[k]->dir) == len && strncmp(r->watch[k]->dir, file, len) == 0)
      return;
  watch **nw = cs_realloc(r->watch, (size_t)(r->nwatch + 1) * sizeof(*nw));
  if (nw == NULL) return;
  r->watch = nw;
  watch *wt = cs_calloc(1, sizeof(*wt));
  char *dir = cs_malloc(len + 1);
  if (wt == NULL || dir == NULL) {
    cs_free(wt);
    cs_free(dir);
    return;
  }
  memcpy(dir, file, len);
  dir[len] = '\0';
  uv_fs_event_init(r->loop, &wt->ev);
  wt->ev.data = r;
  wt->dir = dir;
  r->watch[r->nwatch++] = wt;
  int rc = uv_fs_event_start(&wt->ev, on_fs_event, dir, 0);
  if (rc)
    fprintf(stderr, "cstream-lua: --watch: cannot watch %s: %s\n", dir, uv_strerror(rc));
}

/* Makes v (n paths; takes ownership) the watched files; with announce,
 * names those not watched before. */
static void set_files(cs_reload *r, char **v, int n, int announce) {
  for (int i = 0; i < n; i++) {
    watch_dir(r, v[i]);
    if (announce && !contains(r->files, r->nfiles, v[i]))
      fprintf(stderr, "cstream-lua: watching %s too\n", base_name(v[i]));
  }
  free_strings(r->files, r->nfiles);
  r->files = v;
  r->nfiles = n;
}

/* Loads and plans the new version in a scratch state. Returns 0 with the
 * fingerprint and digests in o, or -1 after printing why. Either way sets
 * *mods to the script and the job's own modules the version required
 * (those that failed to load too; caller frees). */
static int check_new_version(cs_job *job, cs_options *o, char ***mods, int *nmods) {
  memset(o, 0, sizeof(*o));
  *mods = NULL;
  *nmods = 0;
  o->script = job->script;
  o->argc = job->argc;
  o->argv = job->argv;
  o->plan_only = 1;
  lua_State *L = cs_lua_newstate(cs_core_open);
  if (L == NULL) {
    fprintf(stderr, "cstream-lua: reload: out of memory\n");
    return -1;
  }
  cs_core_set_options(L, o);
  cs_lua_set_arg(L, job->script, job->argc, job->argv);
  cs_core_record_requires(L);
  int rc = 0;
  if (cs_lua_loadfile(L, job->script) != LUA_OK || cs_lua_pcall(L, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "cstream-lua: reload failed, the running code stays:\n%s\n",
            m ? m : "(error object is not a string)");
    cs_metrics_reload(job->metrics, 0, m);
    lua_pop(L, 1);
    rc = -1;
  } else if (o->fingerprint == NULL) {
    fprintf(stderr, "cstream-lua: reload failed, the running code stays: %s "
            "never called env:execute()\n", job->script);
    rc = -1;
  }
  *mods = cs_core_local_modules(L, job->script, nmods);
  lua_close(L);
  if (rc) cs_options_free_results(o);
  return rc;
}

/* The running code's digest of the operator with d's id, or NULL. */
static const char *running_digest(cs_reload *r, const char *d) {
  if (d == NULL || strlen(d) < 2 * DIGEST_HEX) return NULL;
  for (int i = 0; i < r->ndigests; i++)
    if (r->digests[i] && strlen(r->digests[i]) >= 2 * DIGEST_HEX &&
        strcmp(r->digests[i] + 2 * DIGEST_HEX, d + 2 * DIGEST_HEX) == 0)
      return r->digests[i];
  return NULL;
}

/* "id, ..." of the operators of the new version (digests in o) whose
 * code (part) or key selector (key part) differs from the running code's;
 * "none" (parts) or NULL (keys) when none does. */
static char *changed_ops(cs_reload *r, const cs_options *o, int key) {
  cs_buf b = {0};
  for (int i = 0; i < o->ndigests; i++) {
    const char *d = o->digests[i];
    const char *a = running_digest(r, d);
    if (a == NULL) {
      if (!key && d && strlen(d) >= 2 * DIGEST_HEX)
        cs_buf_printf(&b, "%s%s", b.len ? ", " : "", d + 2 * DIGEST_HEX);
      continue;
    }
    int off = key ? 0 : DIGEST_HEX;
    if (strncmp(a + off, d + off, DIGEST_HEX) == 0) continue;
    cs_buf_printf(&b, "%s%s%s%s", b.len ? ", " : "", key ? "'" : "", d + 2 * DIGEST_HEX,
                  key ? "'" : "");
  }
  if (b.len == 0 && !key) cs_buf_printf(&b, "none");
  return b.data;
}

/* The job's topology changed: stops it with a savepoint, from which the
 * program restarts with the new plan (cs_main.c). Without a checkpoint or
 * savepoint directory the savepoint goes to cs_reload_savepoint_base(),
 * removed when the program ends. */
static void stop_for_restart(cs_job *job) {
  fprintf(stderr, "cstream-lua: the job's topology changed (operators, ids, "
          "keys or parallelism): stopping with a savepoint to restart with "
          "the new plan\n");
  if (job->ckpt_base == NULL && job->cfg->savepoint_dir == NULL) {
    char base[64];
    cs_reload_savepoint_base(base, sizeof(base));
    cs_buf b = {0};
    cs_buf_printf(&b, "%s/%s", base, job->name);
    char err[512];
    if (b.data == NULL || cs_mkdirs(b.data, err, sizeof(err))) {
      fprintf(stderr, "cstream-lua: reload failed: %s\n", b.data ? err : "out of memory");
      cs_buf_free(&b);
      return;
    }
    job->ckpt_base = b.data;
  }
  job->restart_savepoint = cs_strdup("yes");
  if (!cs_job_stop(job, 1))
    fprintf(stderr, "cstream-lua: no savepoint could be taken; the job stops\n");
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
  char **mods;
  int nmods, nu;
  int bad = check_new_version(job, &o, &mods, &nmods);
  /* watch the files of the running code and of this version (a module it
   * failed to load too: fixing it is the next change) */
  char **u = union_of(r->running, r->nrunning, mods, nmods, &nu);
  if (u) set_files(r, u, nu, 1);
  if (bad) {
    free_strings(mods, nmods);
    return;
  }
  char *keys = changed_ops(r, &o, 1);
  if (keys)
    fprintf(stderr, "cstream-lua: the key selector of operator(s) %s changed: their keyed "
            "state is carried over as it is, under the old keys (give an operator a new "
            "uid to start it empty)\n", keys);
  if (keys || strcmp(o.fingerprint, job->fingerprint) != 0) {
    cs_free(keys);
    free_strings(mods, nmods);
    cs_options_free_results(&o);
    stop_for_restart(job);
    return;
  }
  cs_free(r->changed);
  r->changed = changed_ops(r, &o, 0);
  free_strings(r->next, r->nnext);
  r->next = o.digests; /* the running code's, if the reload commits */
  r->nnext = o.ndigests;
  o.digests = NULL;
  o.ndigests = 0;
  cs_options_free_results(&o);
  free_strings(r->next_files, r->nnext_files);
  r->next_files = mods;
  r->nnext_files = nmods;
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

static void reload_on_wake(cs_job *job) {
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
    /* the new code's files are the running ones now */
    free_strings(r->running, r->nrunning);
    r->running = r->next_files;
    r->nrunning = r->nnext_files;
    r->next_files = NULL;
    r->nnext_files = 0;
    int n;
    char **v = union_of(r->running, r->nrunning, NULL, 0, &n);
    if (v) set_files(r, v, n, 1);
  }
  if (commit)
    fprintf(stderr, "cstream-lua: reloaded %s (changed operators: %s): %.1f ms "
            "after the change, processing paused %.1f ms\n", base_name(job->script),
            r->changed, ms, paused);
  else
    fprintf(stderr, "cstream-lua: reload rolled back, the running code stays:\n%s\n",
            err ? err : "?");
  cs_metrics_reload(job->metrics, commit, commit ? r->changed : err);
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
  watch *wt = container_of(h, watch, ev);
  cs_reload *r = h->data;
  if (status < 0 || filename == NULL || r->closing) return;
  size_t dl = strlen(wt->dir);
  for (int i = 0; i < r->nfiles; i++) {
    const char *f = r->files[i];
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
  for (int i = 0; i < r->nwatch; i++) {
    cs_free(r->watch[i]->dir);
    cs_free(r->watch[i]);
  }
  cs_free(r->watch);
  free_strings(r->files, r->nfiles);
  free_strings(r->running, r->nrunning);
  free_strings(r->next_files, r->nnext_files);
  cs_free(r->changed);
  free_strings(r->digests, r->ndigests);
  free_strings(r->next, r->nnext);
  cs_free(r);
}

static int reload_start(cs_job *job, uv_loop_t *loop) {
  const cs_run_config *cfg = job->cfg;
  cs_reload *r = cs_calloc(1, sizeof(*r));
  if (r == NULL) return CS_ENOMEM;
  r->job = job;
  r->loop = loop;
  r->digests = cs_calloc((size_t)cfg->ndigests + 1, sizeof(char *));
  r->running = union_of((char *const *)cfg->watch_files, cfg->nwatch_files, NULL, 0,
                        &r->nrunning);
  char **files = union_of((char *const *)cfg->watch_files, cfg->nwatch_files, NULL, 0,
                          &r->nfiles);
  if (r->digests == NULL || r->running == NULL || files == NULL) {
    cs_free(r->digests);
    free_strings(r->running, r->nrunning);
    free_strings(files, r->nfiles);
    cs_free(r);
    return CS_ENOMEM;
  }
  for (int i = 0; i < cfg->ndigests; i++)
    r->digests[i] = cfg->digests[i] ? cs_strdup(cfg->digests[i]) : NULL;
  r->ndigests = cfg->ndigests;
  uv_timer_init(loop, &r->debounce);
  r->debounce.data = r;
  uv_signal_init(loop, &r->sighup);
  r->sighup.data = r;
  uv_signal_start(&r->sighup, on_sighup, SIGHUP);
  int n = r->nfiles;
  r->nfiles = 0;
  set_files(r, files, n, 0);
  job->reload = r;
  fprintf(stderr, "cstream-lua: watching %d file(s) for changes (%s", r->nfiles,
          r->nfiles ? base_name(r->files[0]) : "");
  for (int i = 1; i < r->nfiles; i++) fprintf(stderr, ", %s", base_name(r->files[i]));
  fprintf(stderr, ")\n");
  return 0;
}

static void reload_stop(cs_job *job) {
  cs_reload *r = job->reload;
  if (r == NULL) return;
  job->reload = NULL;
  r->closing = 2 + r->nwatch;
  uv_close((uv_handle_t *)&r->debounce, free_reload);
  uv_close((uv_handle_t *)&r->sighup, free_reload);
  for (int i = 0; i < r->nwatch; i++) uv_close((uv_handle_t *)&r->watch[i]->ev, free_reload);
}

void cs_reload_savepoint_base(char *buf, size_t len) {
  snprintf(buf, len, "/tmp/cstream-reload-%d", (int)getpid());
}

void cs_reload_remove_savepoints(void) {
  char base[64];
  cs_reload_savepoint_base(base, sizeof(base));
  struct stat st;
  if (stat(base, &st) == 0 && S_ISDIR(st.st_mode)) cs_ckpt_remove_dir(base);
}

const cs_job_hooks cs_reload_hooks = {
    .reload_start = reload_start,
    .reload_stop = reload_stop,
    .reload_on_wake = reload_on_wake,
};
