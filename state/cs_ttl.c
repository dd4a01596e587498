/*
 * cs_ttl.c - state time-to-live over any backend (see cs_ttl.h): the
 * configuration, the clock, the value format, and the reads and writes of
 * TTL states, which stamp what they write and check, refresh or remove
 * what they read. Only the vtable of cs_backend.h is used, so the heap and
 * the RocksDB backend share all of it; each adds its own cleanup of what
 * no read reaches (incremental in the heap, compactions in RocksDB).
 */
#include "cs_ttl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "cs_codec.h"

/* ============================================================ config */

int cs_ttl_config_valid(const cs_ttl_config *c) {
  return c != NULL && c->ttl_ms > 0 &&
         (c->update == CS_TTL_ON_CREATE_AND_WRITE ||
          c->update == CS_TTL_ON_READ_AND_WRITE) &&
         (c->visibility == CS_TTL_NEVER_RETURN_EXPIRED ||
          c->visibility == CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP);
}

int cs_ttl_config_eq(const cs_ttl_config *a, const cs_ttl_config *b) {
  if (a == NULL || b == NULL) return a == b;
  return a->ttl_ms == b->ttl_ms && a->update == b->update &&
         a->visibility == b->visibility;
}

const char *cs_ttl_update_name(cs_ttl_update u) {
  return u == CS_TTL_ON_READ_AND_WRITE ? "on_read_and_write"
                                       : "on_create_and_write";
}

const char *cs_ttl_visibility_name(cs_ttl_visibility v) {
  return v == CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP
             ? "return_expired_if_not_cleaned_up"
             : "never_return_expired";
}

void cs_ttl_describe(const cs_ttl_config *c, char *buf, size_t n) {
  if (n == 0) return;
  if (c == NULL) {
    snprintf(buf, n, "no time to live");
    return;
  }
  snprintf(buf, n, "%lld ms, %s, %s", (long long)c->ttl_ms,
           cs_ttl_update_name(c->update),
           cs_ttl_visibility_name(c->visibility));
}

/* ============================================================= clock */

/* The test clock: on, and its reading. RocksDB's compaction threads read
 * it too, hence atomics. */
static atomic_int test_on;
static _Atomic int64_t test_ms;

int64_t cs_ttl_now(void) {
  if (atomic_load_explicit(&test_on, memory_order_relaxed))
    return atomic_load_explicit(&test_ms, memory_order_relaxed);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cs_ttl_clock_set(int64_t ms) {
  atomic_store(&test_ms, ms);
  atomic_store(&test_on, 1);
}

void cs_ttl_clock_advance(int64_t ms) { atomic_fetch_add(&test_ms, ms); }

void cs_ttl_clock_real(void) { atomic_store(&test_on, 0); }

int cs_ttl_clock_is_test(void) { return atomic_load(&test_on); }

/* ============================================================ format */

int cs_ttl_check(const cs_ttl_config *c, int64_t now, cs_slice stored,
                 cs_slice *user) {
  if (stored.len < CS_TTL_TS_LEN) return CS_EDECODE;
  if (user) {
    user->data = stored.data + CS_TTL_TS_LEN;
    user->len = stored.len - CS_TTL_TS_LEN;
  }
  return cs_ttl_expired(c, cs_ttl_get_ts(stored.data), now);
}

long cs_ttl_list_elem_len(const char *p, size_t len) {
  if (len <= CS_TTL_TS_LEN) return CS_EDECODE;
  long n = cs_codec_skip_lean(p + CS_TTL_TS_LEN, len - CS_TTL_TS_LEN);
  return n < 0 ? CS_EDECODE : n + CS_TTL_TS_LEN;
}

/* Appends ts ++ item to out with one reservation. */
static int put_elem(cs_buf *out, int64_t ts, const char *item, size_t n) {
  int rc = cs_buf_reserve(out, CS_TTL_TS_LEN + n);
  if (rc) return rc;
  cs_ttl_put_ts(out->data + out->len, ts);
  memcpy(out->data + out->len + CS_TTL_TS_LEN, item, n);
  out->len += CS_TTL_TS_LEN + n;
  return 0;
}

int cs_ttl_list_filter(const cs_ttl_config *c, int64_t now, cs_slice list,
                       int restamp, cs_buf *out, size_t *kept,
                       size_t *dropped) {
  size_t start = out->len, nkept = 0, ndropped = 0;
  for (size_t off = 0; off < list.len;) {
    long n = cs_ttl_list_elem_len(list.data + off, list.len - off);
    if (n < 0) {
      out->len = start;
      return CS_EDECODE;
    }
    const char *p = list.data + off;
    int64_t ts = cs_ttl_get_ts(p);
    off += (size_t)n;
    if (cs_ttl_expired(c, ts, now)) {
      ndropped++;
      continue;
    }
    int rc = put_elem(out, restamp ? now : ts, p + CS_TTL_TS_LEN,
                      (size_t)n - CS_TTL_TS_LEN);
    if (rc) {
      out->len = start;
      return rc;
    }
    nkept++;
  }
  if (kept) *kept = nkept;
  if (dropped) *dropped = ndropped;
  return 0;
}

int cs_ttl_unexpired(const cs_ttl_config *c, cs_state_kind kind, int64_t now,
                     cs_slice *val, cs_buf *tmp) {
  if (kind != CS_STATE_LIST) return cs_ttl_check(c, now, *val, NULL) != 1;
  size_t kept, dropped;
  cs_buf_reset(tmp);
  int rc = cs_ttl_list_filter(c, now, *val, 0, tmp, &kept, &dropped);
  if (rc == CS_ENOMEM) return rc;
  if (rc || dropped == 0) return 1;
  if (kept == 0) return 0;
  val->data = tmp->data;
  val->len = tmp->len;
  return 1;
}

/* ===================================================== reads, writes */

int cs_ttl_get(cs_backend *be, int st, const cs_ttl_config *c, int kg,
               cs_slice key, const cs_slice *ukey, int flags, cs_buf *scratch,
               cs_slice *val) {
  cs_slice stored, user;
  int rc = be->ops->get(be, st, kg, key, ukey, &stored);
  if (rc) return rc;
  int64_t now = cs_ttl_now();
  int expired = cs_ttl_check(c, now, stored, &user);
  if (expired < 0) return expired;
  int write = !(flags & CS_TTL_NO_WRITE);
  if (expired) {
    int show = c->visibility == CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP;
    if (show && write) { /* the removal ends the view: keep a copy */
      cs_buf_reset(scratch);
      if ((rc = cs_buf_append(scratch, user.data, user.len)) != 0) return rc;
      user.data = scratch->data;
    }
    if (write && (rc = be->ops->del(be, st, kg, key, ukey)) != 0) return rc;
    if (!show) return CS_ENOTFOUND;
  } else if (write && c->update == CS_TTL_ON_READ_AND_WRITE) {
    cs_buf_reset(scratch);
    if ((rc = put_elem(scratch, now, user.data, user.len)) != 0) return rc;
    cs_slice v = {scratch->data, scratch->len};
    if ((rc = be->ops->put(be, st, kg, key, ukey, v)) != 0) return rc;
    user.data = scratch->data + CS_TTL_TS_LEN;
  }
  *val = user;
  return 0;
}

int cs_ttl_put(cs_backend *be, int st, int kg, cs_slice key,
               const cs_slice *ukey, cs_slice val, cs_buf *scratch) {
  cs_buf_reset(scratch);
  int rc = put_elem(scratch, cs_ttl_now(), val.data, val.len);
  if (rc) return rc;
  cs_slice v = {scratch->data, scratch->len};
  return be->ops->put(be, st, kg, key, ukey, v);
}

int cs_ttl_list_append(cs_backend *be, int st, int kg, cs_slice key,
                       cs_slice items, cs_buf *scratch) {
  int64_t now = cs_ttl_now();
  cs_buf_reset(scratch);
  for (size_t off = 0; off < items.len;) {
    long n = cs_codec_skip_lean(items.data + off, items.len - off);
    if (n < 0) return CS_EDECODE;
    int rc = put_elem(scratch, now, items.data + off, (size_t)n);
    if (rc) return rc;
    off += (size_t)n;
  }
  if (scratch->len == 0) return 0;
  cs_slice v = {scratch->data, scratch->len};
  return be->ops->append(be, st, kg, key, v);
}

/* Appends the items of the stored list that a read sees to out, counting
 * the live and the expired elements. */
static int visible_items(const cs_ttl_config *c, int64_t now, cs_slice list,
                         cs_buf *out, size_t *live, size_t *expired) {
  int show = c->visibility == CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP;
  *live = *expired = 0;
  for (size_t off = 0; off < list.len;) {
    long n = cs_ttl_list_elem_len(list.data + off, list.len - off);
    if (n < 0) return CS_EDECODE;
    const char *p = list.data + off;
    off += (size_t)n;
    int gone = cs_ttl_expired(c, cs_ttl_get_ts(p), now);
    if (gone) ++*expired;
    else ++*live;
    if (gone && !show) continue;
    int rc = cs_buf_append(out, p + CS_TTL_TS_LEN, (size_t)n - CS_TTL_TS_LEN);
    if (rc) return rc;
  }
  return 0;
}

int cs_ttl_list_get(cs_backend *be, int st, const cs_ttl_config *c, int kg,
                    cs_slice key, int flags, cs_buf *scratch, cs_buf *out) {
  cs_slice stored;
  int rc = be->ops->get(be, st, kg, key, NULL, &stored);
  if (rc) return rc;
  int64_t now = cs_ttl_now();
  size_t start = out->len, live, expired;
  rc = visible_items(c, now, stored, out, &live, &expired);
  if (rc) {
    out->len = start;
    return rc;
  }
  int restamp = c->update == CS_TTL_ON_READ_AND_WRITE;
  if (!(flags & CS_TTL_NO_WRITE) && (expired > 0 || (restamp && live > 0))) {
    if (live == 0) {
      rc = be->ops->del(be, st, kg, key, NULL);
    } else {
      cs_buf_reset(scratch);
      rc = cs_ttl_list_filter(c, now, stored, restamp, scratch, NULL, NULL);
      cs_slice v = {scratch->data, scratch->len};
      if (rc == 0) rc = be->ops->put(be, st, kg, key, NULL, v);
    }
    if (rc) return rc;
  }
  return out->len > start ? 0 : CS_ENOTFOUND;
}
