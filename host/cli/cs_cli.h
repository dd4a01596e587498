/*
 * cs_cli.h - host/cli, the command line: `cstream-lua job.lua` (cs_main.c:
 * options, the planning state, restarts after a topology change) and
 * `cstream-lua state ...` (cs_statetool.c). Nothing below calls it.
 */
#ifndef CS_CLI_H
#define CS_CLI_H

/* `cstream-lua state ...` (argv[0] is "state"): inspects checkpoints.
 * Returns the process exit status. */
int cs_state_tool_main(int argc, char **argv);

#endif /* CS_CLI_H */
