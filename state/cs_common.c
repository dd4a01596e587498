/*
 * cs_common.c - error strings, the counting allocator and cs_buf.
 */
#include "cs_common.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

const char *cs_strerror(int err) {
  switch (err) {
#define XX(code, msg) \
  case CS_##code:     \
    return msg;
    CS_ERRNO_MAP(XX)
#undef XX
  case 0:
    return "success";
  default:
    if (err < 0 && err > CS__ERR_BASE) return uv_strerror(err);
    return "unknown error";
  }
}

/* ------------------------------------------------------------------ alloc */

/* Each block carries its size in a header so frees can be counted. */
typedef union hdr {
  size_t size;
  max_align_t align;
} hdr;

static atomic_size_t allocated;
static atomic_long fail_countdown;

static int should_fail(void) {
  long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
  if (n <= 0) return 0;
  return atomic_fetch_sub(&fail_countdown, 1) == 1;
}

void cs_fail_nth_alloc(long n) { atomic_store(&fail_countdown, n); }

size_t cs_allocated_bytes(void) { return atomic_load(&allocated); }

void *cs_malloc(size_t n) {
  if (should_fail()) return NULL;
  hdr *h = malloc(sizeof(hdr) + n);
  if (h == NULL) return NULL;
  h->size = n;
  atomic_fetch_add_explicit(&allocated, n, memory_order_relaxed);
  return h + 1;
}

void *cs_calloc(size_t n, size_t size) {
  if (size != 0 && n > SIZE_MAX / size) return NULL;
  void *p = cs_malloc(n * size);
  if (p != NULL) memset(p, 0, n * size);
  return p;
}

void *cs_realloc(void *p, size_t n) {
  if (p == NULL) return cs_malloc(n);
  if (should_fail()) return NULL;
  hdr *old = (hdr *)p - 1;
  size_t oldsize = old->size;
  hdr *h = realloc(old, sizeof(hdr) + n);
  if (h == NULL) return NULL;
  h->size = n;
  if (n >= oldsize)
    atomic_fetch_add_explicit(&allocated, n - oldsize, memory_order_relaxed);
  else
    atomic_fetch_sub_explicit(&allocated, oldsize - n, memory_order_relaxed);
  return h + 1;
}

void cs_free(void *p) {
  if (p == NULL) return;
  hdr *h = (hdr *)p - 1;
  atomic_fetch_sub_explicit(&allocated, h->size, memory_order_relaxed);
  free(h);
}

char *cs_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = cs_malloc(n);
  if (d != NULL) memcpy(d, s, n);
  return d;
}

/* -------------------------------------------------------------------- buf */

void cs_buf_init(cs_buf *b) { memset(b, 0, sizeof(*b)); }

void cs_buf_free(cs_buf *b) {
  cs_free(b->data);
  memset(b, 0, sizeof(*b));
}

int cs_buf_reserve(cs_buf *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap - b->len < n) {
    if (cap > SIZE_MAX / 2) return CS_ENOMEM;
    cap *= 2;
  }
  char *d = cs_realloc(b->data, cap);
  if (d == NULL) return CS_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

int cs_buf_append_slow(cs_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  int rc = cs_buf_reserve(b, n);
  if (rc) return rc;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int cs_buf_printf(cs_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return CS_EINVAL;
  int rc = cs_buf_reserve(b, (size_t)n + 1);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}
