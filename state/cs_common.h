/*
 * cs_common.h - error codes, allocation and the growable byte buffer shared
 * by every module of cstream-lua.
 */
#ifndef CS_COMMON_H
#define CS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Error codes: negative ints, generated once. libuv codes (UV_E*) pass through
 * unchanged and are also negative; ours start far below them. */
#define CS_ERRNO_MAP(XX)                                              \
  XX(ENOMEM, "out of memory")                                         \
  XX(EINVAL, "invalid argument")                                      \
  XX(EENCODE, "value cannot be encoded")                              \
  XX(EDECODE, "corrupt or truncated encoded value")                   \
  XX(ENOTFOUND, "not found")                                          \
  XX(EIO, "input/output error")                                       \
  XX(ELUA, "error in Lua code")                                       \
  XX(ESTATE, "state error")                                           \
  XX(EPLAN, "invalid job plan")                                       \
  XX(ECANCELED, "canceled")

enum {
  CS__ERR_BASE = -10000,
#define XX(code, _) CS_##code,
  CS_ERRNO_MAP(XX)
#undef XX
  CS__ERR_END
};

/* Returns a static description of an error code (ours or libuv's). */
const char *cs_strerror(int err);

/* Allocation: every allocation in the engine goes through these so it can be
 * counted and failed on purpose in tests. cs_free accepts NULL. */
void *cs_malloc(size_t n);
void *cs_calloc(size_t n, size_t size);
void *cs_realloc(void *p, size_t n);
void cs_free(void *p);
char *cs_strdup(const char *s);

/* A key and its value laid out at base + off: klen bytes of key, then the
 * value, len bytes in all (map entries being encoded or rendered). */
typedef struct cs_kv_span {
  size_t off, klen, len;
} cs_kv_span;

/* Sorts v[0, n) by key bytes, shorter first among equal prefixes, and
 * entries with equal keys by value bytes, using tmp[0, n) (a stable merge
 * sort: insertion sort of short runs, then bottom-up merges). */
void cs_sort_kv_spans(const char *base, cs_kv_span *v, cs_kv_span *tmp, size_t n);
/* Bytes currently allocated through cs_* (approximate, for tests/metrics). */
size_t cs_allocated_bytes(void);
/* Test hook: make the n-th allocation from now on fail (0 disables). */
void cs_fail_nth_alloc(long n);

/* A growable byte buffer. Zero-initialised is a valid empty buffer.
 * The buffer owns data; release it with cs_buf_free. */
typedef struct cs_buf {
  char *data;
  size_t len;
  size_t cap;
} cs_buf;

void cs_buf_init(cs_buf *b);
void cs_buf_free(cs_buf *b);
/* Makes room for at least n more bytes. Returns 0 or CS_ENOMEM. */
int cs_buf_reserve(cs_buf *b, size_t n);
int cs_buf_append_slow(cs_buf *b, const void *p, size_t n);
/* Appends n bytes; inline when they fit (the per-record case). */
static inline int cs_buf_append(cs_buf *b, const void *p, size_t n) {
  if (n == 0) return 0;
  if (b->cap - b->len < n) return cs_buf_append_slow(b, p, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}
int cs_buf_printf(cs_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void cs_buf_reset(cs_buf *b) { b->len = 0; }

/* A borrowed byte range; never owns its memory. */
typedef struct cs_slice {
  const char *data;
  size_t len;
} cs_slice;

#ifndef container_of
#define container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))
#endif

#endif /* CS_COMMON_H */
