/*
 * cs_tsan_threads.c - C11 threads on the public pthread calls, linked into
 * the executables of a ThreadSanitizer build only (CS_TSAN, CMakeLists.txt).
 *
 * librdkafka makes its threads and takes its locks with <threads.h>
 * (thrd_create, mtx_lock, cnd_wait, call_once). glibc implements those on
 * its internal pthread entry points, which TSan's runtime (GCC 12's and
 * clang 14's) does not intercept: a thread made by glibc's thrd_create has
 * no TSan state and crashes in its first malloc, and the library's locks
 * order nothing TSan can see. An executable's definitions take precedence
 * over glibc's for every library it loads, so these route librdkafka's
 * calls through pthread_create, pthread_mutex_lock and the rest, which TSan
 * intercepts. The types are glibc's own: thrd_t is a pthread_t, mtx_t,
 * cnd_t and once_flag have the size and layout of pthread_mutex_t,
 * pthread_cond_t and pthread_once_t (glibc casts them the same way).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <threads.h>

#include "state/cs_common.h"

_Static_assert(sizeof(thrd_t) == sizeof(pthread_t), "thrd_t is a pthread_t");
_Static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t), "mtx_t is a pthread_mutex_t");
_Static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t), "cnd_t is a pthread_cond_t");
_Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag is a pthread_once_t");

/* The thrd_* result for a pthread error number. */
static int result(int rc) {
  switch (rc) {
  case 0: return thrd_success;
  case ENOMEM: return thrd_nomem;
  case EAGAIN: return thrd_nomem;
  case ETIMEDOUT: return thrd_timedout;
  case EBUSY: return thrd_busy;
  default: return thrd_error;
  }
}

typedef struct start {
  thrd_start_t fn;
  void *arg;
} start;

static void *run(void *p) {
  start s = *(start *)p;
  cs_free(p);
  return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg) {
  start *s = cs_malloc(sizeof(*s));
  if (s == NULL) return thrd_nomem;
  s->fn = fn;
  s->arg = arg;
  int rc = pthread_create((pthread_t *)thr, NULL, run, s);
  if (rc != 0) cs_free(s);
  return result(rc);
}

int thrd_join(thrd_t thr, int *res) {
  void *r = NULL;
  int rc = pthread_join((pthread_t)thr, &r);
  if (rc == 0 && res != NULL) *res = (int)(intptr_t)r;
  return result(rc);
}

int thrd_detach(thrd_t thr) {
  return result(pthread_detach((pthread_t)thr));
}

int mtx_init(mtx_t *m, int type) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc != 0) return result(rc);
  if (type & mtx_recursive) rc = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  if (rc == 0) rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return result(rc);
}

int mtx_lock(mtx_t *m) { return result(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return result(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts) {
  return result(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}
int mtx_unlock(mtx_t *m) { return result(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int cnd_init(cnd_t *c) { return result(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return result(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return result(pthread_cond_broadcast((pthread_cond_t *)c)); }
int cnd_wait(cnd_t *c, mtx_t *m) {
  return result(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}
int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts) {
  return result(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

void call_once(once_flag *flag, void (*fn)(void)) {
  pthread_once((pthread_once_t *)flag, fn);
}
