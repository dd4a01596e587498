/*
 * cs_rest.h - host/rest, watching a running job from outside: the HTTP
 * endpoint on the main thread's loop (`--rest-port`, rest.port and
 * rest.address) with /metrics (Prometheus text), /jobs/overview and
 * /checkpoints (JSON) and / (the web page), and the one-line progress on
 * a terminal (--progress, --quiet). It reads host/metrics' slots and the
 * plan; it never locks or waits on a worker.
 *
 * The layer that starts a job (host/core) gives these to the runtime as
 * its cs_job_hooks' observe_* functions; they run on the main thread.
 */
#ifndef CS_REST_H
#define CS_REST_H

#include "host/runtime/cs_runtime.h"

/* Before the first attempt: binds the endpoint when job->cfg asks for one
 * (logging its address on stderr) and decides on the progress line; sets
 * job->observer when either is on. Returns 0, or CS_EIO with a message in
 * *errmsg (caller frees) when the address cannot be bound: the job does
 * not start. */
int cs_rest_open(cs_job *job, char **errmsg);
/* Serves on loop for one attempt of the job, and stops serving (every
 * handle closed; the loop may end). */
void cs_rest_start(cs_job *job, uv_loop_t *loop);
void cs_rest_stop(cs_job *job);
/* After the last attempt: closes the socket, frees job->observer. */
void cs_rest_close(cs_job *job);

#endif /* CS_REST_H */
