/*
 * cs_core.h - what the CLI hands the cstream.core module of the planning
 * Lua state.
 */
#ifndef CS_CORE_H
#define CS_CORE_H

#include <lua.h>

typedef struct cs_options {
  const char *script; /* the job file */
  int argc;           /* the script's own arguments */
  char **argv;
  int parallelism; /* -p; 0 when not given */
  int executed;    /* set by env:execute() */
} cs_options;

/* Stores opts (borrowed; must outlive the state) in L's registry. */
void cs_core_set_options(lua_State *L, cs_options *opts);

/* The number of online cores. */
int cs_default_parallelism(void);

#endif /* CS_CORE_H */
