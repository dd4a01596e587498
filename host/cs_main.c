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

#include "cs_core.h"
#include "cs_lua.h"

#define EXIT_USAGE 2

static const char *progname = "cstream-lua";

static void usage(FILE *f) {
  fprintf(f,
          "usage: %s [options] job.lua [args...]\n"
          "\n"
          "Runs a cstream-lua job: a Lua script that builds a dataflow with\n"
          "require(\"cstream\") and calls env:execute().\n"
          "\n"
          "options:\n"
          "  -p, --parallelism N   default parallelism of the job's operators\n"
          "                        (default: the number of cores)\n"
          "  -h, --help            print this help and exit\n"
          "  -v, --version         print the version and exit\n"
          "\n"
          "Arguments after the script reach it as the global table arg,\n"
          "as with the lua interpreter. SIGINT or SIGTERM stops the job\n"
          "cleanly; a second one aborts it.\n",
          progname);
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "%s: ", progname);
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry '%s --help'.\n", progname);
  return EXIT_USAGE;
}

static int parse_int(const char *s, int *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *s == '\0' || *end != '\0' || v < 1 || v > 32768) return -1;
  *out = (int)v;
  return 0;
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

int main(int argc, char **argv) {
  cs_options opts;
  memset(&opts, 0, sizeof(opts));
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("cstream-lua %s (%s)\n", CS_VERSION, LUA_RELEASE);
      return 0;
    }
    if (strcmp(a, "-p") == 0 || strcmp(a, "--parallelism") == 0 ||
        strncmp(a, "--parallelism=", 14) == 0) {
      const char *v = strncmp(a, "--parallelism=", 14) == 0 ? a + 14
                      : i + 1 < argc                        ? argv[++i]
                                                            : NULL;
      if (v == NULL) return usage_error("%s needs a value", a);
      if (parse_int(v, &opts.parallelism))
        return usage_error("bad parallelism '%s': expected an integer from 1 "
                           "to 32768", v);
      continue;
    }
    return usage_error("unknown option '%s'", a);
  }
  if (i >= argc) return usage_error("%s", "no job script given");
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
  opts.argc = argc - i - 1;
  opts.argv = argv + i + 1;

  lua_State *L = cs_lua_newstate();
  if (L == NULL) {
    fprintf(stderr, "%s: out of memory\n", progname);
    return 1;
  }
  cs_core_set_options(L, &opts);
  set_arg(L, argv, i, argc);
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
  return status;
}
