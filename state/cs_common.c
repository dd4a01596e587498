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

/* Orders two byte strings: memcmp of the common prefix, then length. */
static int bytes_cmp(const char *a, size_t na, const char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  if (c != 0) return c;
  return (na > nb) - (na < nb);
}

static int span_cmp(const char *base, const cs_kv_span *a, const cs_kv_span *b) {
  int c = bytes_cmp(base + a->off, a->klen, base + b->off, b->klen);
  if (c != 0) return c;
  return bytes_cmp(base + a->off + a->klen, a->len - a->klen, base + b->off + b->klen,
                   b->len - b->klen);
}

void cs_sort_kv_spans(const char *base, cs_kv_span *v, cs_kv_span *tmp, size_t n) {
  const size_t run = 8;
  for (size_t lo = 0; lo < n; lo += run) {
    size_t hi = lo + run < n ? lo + run : n;
    for (size_t i = lo + 1; i < hi; i++) {
      cs_kv_span x = v[i];
      size_t j = i;
      while (j > lo && span_cmp(base, &v[j - 1], &x) > 0) {
        v[j] = v[j - 1];
        j--;
      }
      v[j] = x;
    }
  }
  for (size_t w = run; w < n; w *= 2) {
    for (size_t lo = 0; lo < n; lo += 2 * w) {
      size_t mid = lo + w < n ? lo + w : n;
      size_t hi = lo + 2 * w < n ? lo + 2 * w : n;
      size_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        tmp[k++] = span_cmp(base, &v[j], &v[i]) < 0 ? v[j++] : v[i++];
      while (i < mid) tmp[k++] = v[i++];
      while (j < hi) tmp[k++] = v[j++];
    }
    memcpy(v, tmp, n * sizeof(*v));
  }
}
