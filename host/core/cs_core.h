/*
 * cs_core.h - host/core, the `cstream.core` module: what the CLI hands the
 * module of the planning Lua state, and the module's opener. env:execute()
 * there configures, plans and runs the job; in a worker's state it binds
 * the worker to the running job.
 *
 * Depends on host/config, host/testing, host/operators, host/connectors,
 * host/api, host/runtime and below; host/dev and host/cli sit above it.
 */
#ifndef CS_CORE_H
#define CS_CORE_H

#include <lua.h>

struct cs_job_hooks;

/* A configuration key given on the command line. */
typedef struct cs_flag {
  const char *flag; /* as typed, for messages: "--state-backend" */
  const char *key;  /* the configuration key */
  const char *value;
} cs_flag;

typedef struct cs_options {
  const char *script; /* the job file */
  int argc;           /* the script's own arguments */
  char **argv;
  int nflags;         /* configuration keys set by flags, in order */
  cs_flag flags[64];
  const char *conf;    /* --conf, or NULL */
  const char *restore; /* --restore, or NULL */
  int allow_non_restored;
  int savepoint_on_stop;
  int print_config;
  int watch;           /* --watch: hot reload */
  int progress;        /* 1 --progress, -1 --quiet, 0 when stderr is a TTY */
  char **all_argv;     /* the whole command line, for a restart */
  int script_index;    /* all_argv[script_index] is the script */
  int plan_only;       /* a reload's check: plan, record, do not run */
  char *fingerprint;   /* plan_only: the plan's fingerprint (cs_free) */
  char **digests;      /* plan_only: per node, the digest of its key
                          selector(s) then of its code (Env:_digests) */
  int ndigests;
  char *restart_savepoint; /* set when the job must restart from it */
  int executed; /* set by env:execute() */
  /* --watch: the development mode's watcher (host/dev), or NULL */
  const struct cs_job_hooks *dev_hooks;
} cs_options;

/* Frees what plan_only and a run left in o (fingerprint, digests,
 * restart_savepoint). */
void cs_options_free_results(cs_options *o);

/* Stores opts (borrowed; must outlive the state) in L's registry. */
void cs_core_set_options(lua_State *L, cs_options *opts);

/* --watch: makes require() in L record the job's own modules as it finds
 * them (before the script runs). Returns 0 or -1. */
int cs_core_record_requires(lua_State *L);
/* The script and the job's own modules loaded into L (absolute paths);
 * *n of them. Caller frees each and the array with cs_free. */
char **cs_core_local_modules(lua_State *L, const char *script, int *n);

/* Opens cstream.core into a new table on the stack. */
int cs_core_open(lua_State *L);

/* The number of online cores. */
int cs_default_parallelism(void);

#endif /* CS_CORE_H */
