/*
 * cs_reload.h - host/dev, the development mode (--watch): hot reload of a
 * running job's code with its state kept. The main thread's watcher lives
 * here; the workers' half of the swap is the runtime's (cs_swap.c).
 *
 * Depends on host/core, host/runtime and below.
 */
#ifndef CS_RELOAD_H
#define CS_RELOAD_H

#include <stddef.h>

#include "host/runtime/cs_runtime.h"

/* The watcher, for cs_options.dev_hooks: it starts with the job's main
 * loop, watches the script and its local modules (and SIGHUP), and on a
 * change reloads in place or stops the job with a savepoint to restart. */
extern const cs_job_hooks cs_reload_hooks;

/* The directory of the savepoints a topology change takes when the job
 * has no checkpoint or savepoint directory: /tmp/cstream-reload-<pid>. */
void cs_reload_savepoint_base(char *buf, size_t len);
/* Removes that directory (the program is ending, not restarting). */
void cs_reload_remove_savepoints(void);

#endif /* CS_RELOAD_H */
