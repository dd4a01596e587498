/*
 * cs_main.c - the cstream-lua command: parses the command line, runs the
 * job script in the planning Lua state (env:execute() plans and runs the
 * job), and maps the outcome to an exit status: 0 done, 1 failed, 2 usage.
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/cli/cs_cli.h"
#include "host/config/cs_config.h"
#include "host/core/cs_core.h"
#include "host/dev/cs_reload.h"
#include "host/lua/cs_lua.h"
#include "state/cs_ttl.h"

#define EXIT_USAGE 2

static const char *progname = "cstream-lua";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] job.lua [args...]\n"
          "       %s state dump <checkpoint dir | job dir> [--operator ID] [--state NAME]\n"
          "\n"
          "Runs a cstream-lua job: a Lua script that builds a dataflow with\n"
          "require(\"cstream\") and calls env:execute().\n"
          "\n"
          "options:\n"
          "  -p, --parallelism N        default parallelism of the job's operators\n"
          "                             (default: the number of cores)\n"
          "  --state-backend NAME       memory, filesystem or rocksdb\n"
          "  --checkpoint-dir DIR       where checkpoints go (state.checkpoints.dir)\n"
          "  --checkpoint-interval T    checkpoint every T (\"1000\", \"500ms\", \"1 s\")\n"
          "  -D KEY=VALUE               set any configuration key\n"
          "  --conf FILE                the configuration file (default:\n"
          "                             $CSTREAM_CONF_DIR/cstream-conf.yaml, then\n"
          "                             ./cstream-conf.yaml)\n"
          "  --restore DIR|latest       start from a checkpoint or savepoint\n"
          "  --allow-non-restored-state drop restored state of removed operators\n"
          "  --savepoint-on-stop        write a savepoint when stopped by a signal\n"
          "  --watch                    development mode: reload the job's code\n"
          "                             when the script or a local module it\n"
          "                             requires changes (or on SIGHUP), keeping\n"
          "                             its state\n"
          "  --rest-port N              serve /metrics, /jobs/overview, /checkpoints\n"
          "                             and a web page on 127.0.0.1:N (rest.port,\n"
          "                             rest.address); 0 picks a free port\n"
          "  --group NAME               one process of a group sharing the job\n"
          "                             through Kafka (cluster.group)\n"
          "  --progress                 a status line on stderr even when it is\n"
          "                             not a terminal (default: on a terminal)\n"
          "  --quiet                    no status line\n"
          "  --print-config             print the configuration and where each\n"
          "                             value comes from, then exit\n"
          "  --help-config              list every configuration key\n"
          "  -h, --help                 print this help and exit\n"
          "  -v, --version              print the version and exit\n"
          "\n"
          "Precedence: flags > the job's own calls > the configuration file >\n"
          "defaults. Arguments after the script reach it as the global table\n"
          "arg, as with the lua interpreter. SIGINT or SIGTERM stops the job\n"
          "cleanly (after a final checkpoint when checkpointing is on); a\n"
          "second one aborts it.\n",
          progname, progname);
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", progname);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry '%s --help'.\n", progname);
  return EXIT_USAGE;
}

static int add_flag(cs_options *o, const char *flag, const char *key,
                    const char *value) {
  if (o->nflags >= (int)(sizeof(o->flags) / sizeof(o->flags[0])))
    return usage_error("too many configuration flags (at %s)", flag);
  o->flags[o->nflags].flag = flag;
  o->flags[o->nflags].key = key;
  o->flags[o->nflags].value = value;
  o->nflags++;
  return 0;
}

/* Options that set a configuration key: flag -> key. */
static const struct {
  const char *flag, *alt, *key;
} key_flags[] = {
    {"-p", "--parallelism", "parallelism.default"},
    {"--state-backend", NULL, "state.backend"},
    {"--checkpoint-dir", NULL, "state.checkpoints.dir"},
    {"--checkpoint-interval", NULL, "execution.checkpointing.interval"},
    {"--rest-port", NULL, "rest.port"},
    {"--group", NULL, "cluster.group"},
};

/* Parses the options before the script. Returns the index of the script
 * argument, or -1 after printing help/version (exit 0), or -2 for a usage
 * error (already reported). */
static int parse_options(int argc, char **argv, cs_options *o) {
  int i = 1;
  for (; i < argc; i++) {
    char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) return i + 1;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return -1;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("cstream-lua %s (%s)\n", CS_VERSION, LUA_RELEASE);
      return -1;
    }
    if (strcmp(a, "--help-config") == 0) {
      cs_config_print_help(stdout);
      return -1;
    }
    if (strcmp(a, "--allow-non-restored-state") == 0) {
      o->allow_non_restored = 1;
      continue;
    }
    if (strcmp(a, "--savepoint-on-stop") == 0) {
      o->savepoint_on_stop = 1;
      continue;
    }
    if (strcmp(a, "--watch") == 0) {
      o->watch = 1;
      continue;
    }
    if (strcmp(a, "--progress") == 0 || strcmp(a, "--quiet") == 0) {
      o->progress = a[2] == 'p' ? 1 : -1;
      continue;
    }
    if (strcmp(a, "--print-config") == 0) {
      o->print_config = 1;
      continue;
    }
    /* options with a value: "--opt v" or "--opt=v" */
    char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    if (eq) *eq = '\0';
    const char *value = eq ? eq + 1 : NULL;
    int matched = 0;
    const char *key = NULL;
    for (size_t k = 0; k < sizeof(key_flags) / sizeof(key_flags[0]); k++)
      if (strcmp(a, key_flags[k].flag) == 0 ||
          (key_flags[k].alt && strcmp(a, key_flags[k].alt) == 0))
        key = key_flags[k].key;
    if (key || strcmp(a, "--conf") == 0 || strcmp(a, "--restore") == 0 ||
        strcmp(a, "-D") == 0)
      matched = 1;
    if (!matched) {
      if (strncmp(a, "-D", 2) == 0 && a[2]) { /* -Dkey=value */
        value = a + 2;
        a = "-D";
        matched = 1;
      } else {
        usage_error("unknown option '%s'", a);
        return -2;
      }
    }
    if (value == NULL) {
      if (i + 1 >= argc) {
        usage_error("%s needs a value", a);
        return -2;
      }
      value = argv[++i];
    }
    if (key) {
      if (add_flag(o, a, key, value)) return -2;
    } else if (strcmp(a, "--conf") == 0) {
      o->conf = value;
    } else if (strcmp(a, "--restore") == 0) {
      o->restore = value;
    } else { /* -D key=value */
      char *veq = strchr(value, '=');
      if (veq == NULL) {
        usage_error("-D expects KEY=VALUE, got '%s'", value);
        return -2;
      }
      *veq = '\0';
      if (add_flag(o, "-D", value, veq + 1)) return -2;
    }
  }
  if (i >= argc) {
    usage_error("%s", "no job script given");
    return -2;
  }
  return i;
}

/* Sets the global arg table as lua.c does: arg[0] the script, arg[-1] the
 * program, arg[1..] the script's arguments. */
static void set_arg(lua_State *L, char **argv, int script_i, int argc) {
  lua_createtable(L, argc - script_i - 1, script_i + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script_i);
  }
  lua_setglobal(L, "arg");
}

/* --watch saw the job's topology change: the job stopped with a savepoint;
 * start this program again, in this process, with the same command line
 * plus --restore of that savepoint. */
static int restart_from(char **argv, int script_i, const char *savepoint) {
  int argc = 0;
  while (argv[argc]) argc++;
  char **nargv = cs_calloc((size_t)argc + 4, sizeof(char *));
  if (nargv == NULL) return 1;
  int k = 0;
  for (int j = 0; j < script_i; j++) nargv[k++] = argv[j];
  nargv[k++] = "--restore";
  nargv[k++] = (char *)savepoint;
  nargv[k++] = "--allow-non-restored-state";
  for (int j = script_i; j < argc; j++) nargv[k++] = argv[j];
  nargv[k] = NULL;
  fprintf(stderr, "%s: restarting with the new plan from %s\n", progname, savepoint);
  fflush(NULL);
  execv("/proc/self/exe", nargv);
  fprintf(stderr, "%s: cannot restart: %s\n", progname, strerror(errno));
  cs_free(nargv);
  return 1;
}

int main(int argc, char **argv) {
  cs_options opts;
  memset(&opts, 0, sizeof(opts));
  if (argc >= 2 && strcmp(argv[1], "state") == 0)
    return cs_state_tool_main(argc - 1, argv + 1);
  int i = parse_options(argc, argv, &opts);
  if (i == -1) return 0;
  if (i < 0) return EXIT_USAGE;
  /* flag values are checked before the job runs, for a usage error */
  {
    cs_config *check = cs_config_create();
    char err[512];
    for (int k = 0; check && k < opts.nflags; k++)
      if (cs_config_set(check, opts.flags[k].key, opts.flags[k].value, CS_CONF_FLAG,
                        opts.flags[k].flag, err, sizeof(err))) {
        cs_config_destroy(check);
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", progname, err, progname);
        return EXIT_USAGE;
      }
    cs_config_destroy(check);
  }
  const char *script = argv[i];
  struct stat st;
  if (stat(script, &st) != 0) {
    fprintf(stderr, "%s: cannot open job script '%s': %s\n", progname, script,
            strerror(errno));
    return EXIT_USAGE;
  }
  if (S_ISDIR(st.st_mode)) {
    fprintf(stderr, "%s: job script '%s' is a directory\n", progname, script);
    return EXIT_USAGE;
  }
  opts.script = script;
  opts.all_argv = argv;
  opts.script_index = i;
  opts.argc = argc - i - 1;
  opts.argv = argv + i + 1;

  /* Test only: CSTREAM_TEST_CLOCK_MS=<ms> starts the processing-time clock
   * of state TTL at ms, and only cstream.sleep(d) moves it (by d, at once). */
  const char *test_clock = getenv("CSTREAM_TEST_CLOCK_MS");
  if (test_clock && *test_clock) cs_ttl_clock_set(strtoll(test_clock, NULL, 10));

  if (opts.watch) opts.dev_hooks = &cs_reload_hooks;
  lua_State *L = cs_lua_newstate(cs_core_open);
  if (L == NULL) {
    fprintf(stderr, "%s: out of memory\n", progname);
    return 1;
  }
  cs_core_set_options(L, &opts);
  set_arg(L, argv, i, argc);
  if (opts.watch) cs_core_record_requires(L);
  int status = 0;
  if (cs_lua_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    status = 1;
  } else if (cs_lua_pcall(L, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object is not a string)");
    status = 1;
  } else if (!opts.executed) {
    fprintf(stderr,
            "%s: %s: the script never called env:execute(), so no job ran\n",
            progname, script);
    status = 1;
  }
  lua_close(L);
  if (status == 0 && opts.restart_savepoint)
    status = restart_from(argv, i, opts.restart_savepoint); /* returns only on error */
  /* not restarting: the savepoints of topology changes go, unless they
   * went to a directory the user configured */
  if (opts.watch) cs_reload_remove_savepoints();
  cs_options_free_results(&opts);
  return status;
}
