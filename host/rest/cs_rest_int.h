/*
 * cs_rest_int.h - host/rest's internals shared by its files: the observer
 * (endpoint, sampler, progress line), the rates it derives from the
 * metrics, and the renderers.
 */
#ifndef CS_REST_INT_H
#define CS_REST_INT_H

#include <http_parser.h>

#include "host/rest/cs_rest.h"

#define CS__REST_MAX_CONNS 64
#define CS__REST_MAX_REQUEST (16 * 1024) /* bytes of a request's head */
#define CS__REST_TIMEOUT_MS 5000         /* a request read and answered */
#define CS__REST_MAX_DISCARD (64 * 1024) /* bytes read and dropped after it */
#define CS__REST_TICK_MS 500             /* sampling and progress */

struct cs__conn;

/* Rates of one slot, refreshed every tick. */
typedef struct cs__rate {
  uint64_t last;  /* the counter at the last tick */
  double per_s;   /* smoothed rate */
} cs__rate;

typedef struct cs__observer {
  cs_job *job;
  int fd;          /* the bound, listening socket, or -1 */
  char addr[80];   /* as the log shows it: 127.0.0.1:PORT */
  int progress;    /* the progress line is on */
  int shown;       /* a progress line is on the terminal */
  uv_loop_t *loop; /* while an attempt runs */
  uv_tcp_t server;
  uv_timer_t tick;
  int running;
  struct cs__conn *conns;
  int nconns;
  uint64_t last_ns; /* uv_hrtime() of the last tick, 0 before the first */
  cs__rate *in, *out;      /* [nnodes * maxpar] */
  cs__rate *busy, *bp;     /* [ntasks * maxpar], ns per s */
} cs__observer;

/* Refreshes the rates from the metrics (every tick, main thread). */
void cs__rest_sample(cs__observer *o);

/* Appends the response body for a path to out and sets *type to its
 * content type. Returns 200, or 404 for a path there is nothing at
 * (out then holds a short message), or 500 when out of memory. */
int cs__rest_render(cs__observer *o, const char *path, cs_buf *out,
                    const char **type);

/* The page (cs_rest_page.c), NUL-terminated. */
extern const char cs__rest_page[];

/* Writes (or clears, at the end) the progress line on stderr. */
void cs__progress_draw(cs__observer *o);
void cs__progress_clear(cs__observer *o);

#endif /* CS_REST_INT_H */
