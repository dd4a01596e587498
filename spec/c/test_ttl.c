/*
 * test_ttl.c - state time-to-live (cs_ttl.h) on both backends: the TTL
 * configuration as part of a state's registration, expired entries
 * invisible, timestamps refreshed by writes and (per update type) reads,
 * visibility, cleanup on read, the heap's incremental cleanup, RocksDB's
 * compaction filter, and snapshots and checkpoints that leave expired
 * entries out and keep the configuration.
 *
 * Time is the test clock (cs_ttl_clock_set), so nothing here sleeps. The
 * RocksDB instances live under one mkdtemp directory, removed at the end.
 */
#include "cs_test.h"
#include "state/cs_rocksdb.h"
#include "state/cs_ttl.h"

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static char root[] = "/tmp/cs_ttl_test.XXXXXX";
static int seq;

typedef cs_backend *(*make_fn)(void);

/* ============================================================ helpers */

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static const char *fresh(const char *what) {
  static char paths[16][PATH_MAX];
  static int next;
  char *p = paths[next++ % 16];
  snprintf(p, PATH_MAX, "%s/%s-%d", root, what, seq++);
  return p;
}

static cs_backend *make_heap(void) { return cs_heap_backend_create(); }

static cs_backend *make_rocksdb(void) {
  char err[512];
  cs_backend *be = NULL;
  int rc = cs_rocksdb_backend_open(fresh("be"), NULL, &be, err, sizeof(err));
  if (rc) fprintf(stderr, "open: %s\n", err);
  return be;
}

static cs_slice S(const char *s) {
  cs_slice sl = {s, strlen(s)};
  return sl;
}

/* A MessagePack string (fixstr) of s, in buf: list items must be values. */
static cs_slice item(const char *s, char buf[32]) {
  size_t n = strlen(s);
  buf[0] = (char)(0xa0 | n);
  memcpy(buf + 1, s, n);
  cs_slice sl = {buf, n + 1};
  return sl;
}

static int eq(cs_slice a, cs_slice b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static const cs_ttl_config CW = {1000, CS_TTL_ON_CREATE_AND_WRITE,
                                 CS_TTL_NEVER_RETURN_EXPIRED};
static const cs_ttl_config RW = {1000, CS_TTL_ON_READ_AND_WRITE,
                                 CS_TTL_NEVER_RETURN_EXPIRED};
static const cs_ttl_config RX = {1000, CS_TTL_ON_CREATE_AND_WRITE,
                                 CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP};

/* The value cs_ttl_get gives for (st, kg 1, key[, ukey]), or NULL. */
static const char *ttl_value(cs_backend *be, int st, const cs_ttl_config *c,
                             const char *key, const char *ukey, int flags) {
  static char out[256];
  static cs_buf scratch;
  cs_slice u = ukey ? S(ukey) : S(""), v;
  int rc = cs_ttl_get(be, st, c, 1, S(key), ukey ? &u : NULL, flags, &scratch, &v);
  if (rc) return NULL;
  snprintf(out, sizeof(out), "%.*s", (int)v.len, v.data);
  return out;
}

static void ttl_put(cs_backend *be, int st, const char *key, const char *ukey,
                    const char *val) {
  static cs_buf scratch;
  cs_slice u = ukey ? S(ukey) : S("");
  CHECK_EQ_INT(cs_ttl_put(be, st, 1, S(key), ukey ? &u : NULL, S(val), &scratch), 0);
}

/* Whether the backend still stores the entry, expired or not. */
static int stored(cs_backend *be, int st, const char *key, const char *ukey) {
  cs_slice u = ukey ? S(ukey) : S(""), v;
  return be->ops->get(be, st, 1, S(key), ukey ? &u : NULL, &v) == 0;
}

/* The items cs_ttl_list_get gives, as "a,b,c" (fixstr items), or NULL. */
static const char *list_items(cs_backend *be, int st, const cs_ttl_config *c,
                              const char *key) {
  static char out[256];
  static cs_buf scratch, items;
  cs_buf_reset(&items);
  int rc = cs_ttl_list_get(be, st, c, 1, S(key), 0, &scratch, &items);
  if (rc) return NULL;
  size_t at = 0;
  out[0] = '\0';
  for (size_t off = 0; off < items.len;) {
    size_t n = (unsigned char)items.data[off] & 0x1f;
    at += (size_t)snprintf(out + at, sizeof(out) - at, "%s%.*s", at ? "," : "",
                           (int)n, items.data + off + 1);
    off += n + 1;
  }
  return out;
}

static void list_add(cs_backend *be, int st, const char *key, const char *s) {
  static cs_buf scratch;
  char b[32];
  CHECK_EQ_INT(cs_ttl_list_append(be, st, 1, S(key), item(s, b), &scratch), 0);
}

/* Entries a scan sees, expired or not. */
static long scan_count(cs_backend *be) {
  cs_backend_iter *it;
  if (be->ops->scan_iter(be, 0, 65535, &it)) return -1;
  cs_backend_entry e;
  long n = 0;
  int rc;
  while ((rc = be->ops->iter_next(it, &e)) == 1) n++;
  be->ops->iter_destroy(it);
  return rc < 0 ? -1 : n;
}

/* The elements of the stored LIST value of (st, key). */
static long stored_elems(cs_backend *be, int st, const char *key) {
  cs_slice v;
  if (be->ops->get(be, st, 1, S(key), NULL, &v)) return 0;
  long n = 0;
  for (size_t off = 0; off < v.len; n++) {
    long len = cs_ttl_list_elem_len(v.data + off, v.len - off);
    if (len < 0) return -1;
    off += (size_t)len;
  }
  return n;
}

/* ============================================================= config */

static void test_config(void) {
  CHECK(cs_ttl_config_valid(&CW));
  cs_ttl_config bad = CW;
  bad.ttl_ms = 0;
  CHECK(!cs_ttl_config_valid(&bad));
  bad = CW;
  bad.update = 7;
  CHECK(!cs_ttl_config_valid(&bad));
  CHECK(cs_ttl_config_eq(&CW, &CW) && !cs_ttl_config_eq(&CW, &RW));
  CHECK(!cs_ttl_config_eq(&CW, NULL) && cs_ttl_config_eq(NULL, NULL));
  char d[128];
  cs_ttl_describe(&RX, d, sizeof(d));
  CHECK_EQ_STR(d, "1000 ms, on_create_and_write, return_expired_if_not_cleaned_up");
  /* expiry is at ts + ttl, and a timestamp from the future is live */
  CHECK(!cs_ttl_expired(&CW, 1000, 1999) && cs_ttl_expired(&CW, 1000, 2000));
  CHECK(!cs_ttl_expired(&CW, 5000, 10));
  char ts[8];
  cs_ttl_put_ts(ts, 0x0102030405060708LL);
  CHECK(ts[0] == 1 && ts[7] == 8 && cs_ttl_get_ts(ts) == 0x0102030405060708LL);
  cs_ttl_clock_set(42);
  CHECK(cs_ttl_clock_is_test() && cs_ttl_now() == 42);
  cs_ttl_clock_advance(8);
  CHECK_EQ_INT(cs_ttl_now(), 50);
}

/* ======================================================= registration */

static void test_register(make_fn make) {
  cs_backend *be = make();
  int a = be->ops->register_ttl_state(be, "a", CS_STATE_VALUE, &CW);
  CHECK(a >= 0);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "a", CS_STATE_VALUE, &CW), a);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "a", CS_STATE_VALUE, &RW), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "a", CS_STATE_VALUE, NULL), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_state(be, "a", CS_STATE_VALUE), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "a", CS_STATE_LIST, &CW), CS_ESTATE);
  cs_ttl_config longer = CW;
  longer.ttl_ms = 2000;
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "a", CS_STATE_VALUE, &longer), CS_ESTATE);
  int b = be->ops->register_state(be, "b", CS_STATE_MAP);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "b", CS_STATE_MAP, &CW), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "b", CS_STATE_MAP, NULL), b);
  cs_ttl_config bad = CW;
  bad.ttl_ms = -5;
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "c", CS_STATE_LIST, &bad), CS_EINVAL);
  cs_ttl_config got = {0};
  CHECK_EQ_INT(be->ops->state_ttl(be, a, &got), 1);
  CHECK(cs_ttl_config_eq(&got, &CW));
  CHECK_EQ_INT(be->ops->state_ttl(be, b, &got), 0);
  CHECK_EQ_INT(be->ops->state_ttl(be, 99, &got), CS_EINVAL);
  /* a forgotten TTL state's name can come back without one */
  CHECK_EQ_INT(be->ops->forget_states(be, a), 0);
  CHECK(be->ops->register_state(be, "a", CS_STATE_VALUE) >= 0);
  be->ops->destroy(be);
}

/* ============================================================= values */

static void test_value(make_fn make) {
  cs_backend *be = make();
  int cw = be->ops->register_ttl_state(be, "cw", CS_STATE_VALUE, &CW);
  int rw = be->ops->register_ttl_state(be, "rw", CS_STATE_VALUE, &RW);
  int rx = be->ops->register_ttl_state(be, "rx", CS_STATE_VALUE, &RX);
  cs_ttl_clock_set(10000);
  ttl_put(be, cw, "k", NULL, "one");
  ttl_put(be, rw, "k", NULL, "one");
  ttl_put(be, rx, "k", NULL, "one");
  /* the stored value is the timestamp, then the bytes */
  cs_slice raw;
  CHECK_EQ_INT(be->ops->get(be, cw, 1, S("k"), NULL, &raw), 0);
  CHECK(raw.len == 11 && cs_ttl_get_ts(raw.data) == 10000 && memcmp(raw.data + 8, "one", 3) == 0);

  cs_ttl_clock_set(10999);
  CHECK_EQ_STR(ttl_value(be, cw, &CW, "k", NULL, 0), "one");
  CHECK_EQ_STR(ttl_value(be, rw, &RW, "k", NULL, 0), "one"); /* refreshed */
  cs_ttl_clock_set(11500);
  /* on_create_and_write: the read did not refresh it; it is gone, and the
   * read removed it */
  CHECK(ttl_value(be, cw, &CW, "k", NULL, 0) == NULL);
  CHECK(!stored(be, cw, "k", NULL));
  CHECK_EQ_STR(ttl_value(be, rw, &RW, "k", NULL, 0), "one");
  /* return_expired_if_not_cleaned_up: returned once, by the read that
   * removes it */
  CHECK_EQ_STR(ttl_value(be, rx, &RX, "k", NULL, 0), "one");
  CHECK(ttl_value(be, rx, &RX, "k", NULL, 0) == NULL);

  /* writes refresh under both update types */
  ttl_put(be, cw, "w", NULL, "v1");
  cs_ttl_clock_advance(900);
  ttl_put(be, cw, "w", NULL, "v2");
  cs_ttl_clock_advance(900);
  CHECK_EQ_STR(ttl_value(be, cw, &CW, "w", NULL, 0), "v2");
  /* CS_TTL_NO_WRITE: neither refreshed nor removed */
  ttl_put(be, rw, "n", NULL, "x");
  cs_ttl_clock_advance(600);
  CHECK_EQ_STR(ttl_value(be, rw, &RW, "n", NULL, CS_TTL_NO_WRITE), "x");
  cs_ttl_clock_advance(600);
  CHECK(ttl_value(be, rw, &RW, "n", NULL, CS_TTL_NO_WRITE) == NULL);
  CHECK(stored(be, rw, "n", NULL));
  CHECK(ttl_value(be, rw, &RW, "n", NULL, 0) == NULL);
  CHECK(!stored(be, rw, "n", NULL));
  /* a value too short for a timestamp is corrupt, not absent */
  CHECK_EQ_INT(be->ops->put(be, cw, 1, S("bad"), NULL, S("abc")), 0);
  cs_buf scratch = {0};
  cs_slice v;
  CHECK_EQ_INT(cs_ttl_get(be, cw, &CW, 1, S("bad"), NULL, 0, &scratch, &v), CS_EDECODE);
  cs_buf_free(&scratch);
  be->ops->destroy(be);
}

/* ============================================================ map, list */

static void test_map(make_fn make) {
  cs_backend *be = make();
  int m = be->ops->register_ttl_state(be, "m", CS_STATE_MAP, &CW);
  cs_ttl_clock_set(0);
  ttl_put(be, m, "k", "old", "1");
  cs_ttl_clock_set(600);
  ttl_put(be, m, "k", "new", "2");
  cs_ttl_clock_set(1200);
  /* each user key expires on its own */
  CHECK(ttl_value(be, m, &CW, "k", "old", 0) == NULL);
  CHECK(!stored(be, m, "k", "old"));
  CHECK_EQ_STR(ttl_value(be, m, &CW, "k", "new", 0), "2");
  cs_backend_iter *it;
  CHECK_EQ_INT(be->ops->map_iter(be, m, 1, S("k"), &it), 0);
  cs_backend_entry e;
  CHECK_EQ_INT(be->ops->iter_next(it, &e), 1);
  CHECK(eq(e.ukey, S("new")) && cs_ttl_check(&CW, 1200, e.val, NULL) == 0);
  CHECK_EQ_INT(be->ops->iter_next(it, &e), 0);
  be->ops->iter_destroy(it);
  be->ops->destroy(be);
}

static void test_list(make_fn make) {
  cs_backend *be = make();
  int cw = be->ops->register_ttl_state(be, "cw", CS_STATE_LIST, &CW);
  int rw = be->ops->register_ttl_state(be, "rw", CS_STATE_LIST, &RW);
  cs_ttl_clock_set(0);
  list_add(be, cw, "k", "a");
  list_add(be, rw, "k", "a");
  cs_ttl_clock_set(500);
  list_add(be, cw, "k", "b");
  list_add(be, rw, "k", "b");
  char b1[32], b2[32];
  cs_buf two = {0}, scratch = {0};
  cs_slice i1 = item("c", b1), i2 = item("d", b2);
  cs_buf_append(&two, i1.data, i1.len);
  cs_buf_append(&two, i2.data, i2.len);
  cs_slice both = {two.data, two.len};
  CHECK_EQ_INT(cs_ttl_list_append(be, cw, 1, S("k"), both, &scratch), 0);
  CHECK_EQ_INT(cs_ttl_list_append(be, cw, 1, S("k"), S("\xc1"), &scratch), CS_EDECODE);
  CHECK_EQ_INT(stored_elems(be, cw, "k"), 4); /* every element has its own */

  cs_ttl_clock_set(999);
  CHECK_EQ_STR(list_items(be, cw, &CW, "k"), "a,b,c,d");
  CHECK_EQ_STR(list_items(be, rw, &RW, "k"), "a,b"); /* both refreshed */
  cs_ttl_clock_set(1200);
  /* each element expires on its own; the read drops the expired */
  CHECK_EQ_STR(list_items(be, cw, &CW, "k"), "b,c,d");
  CHECK_EQ_INT(stored_elems(be, cw, "k"), 3);
  CHECK_EQ_STR(list_items(be, rw, &RW, "k"), "a,b");
  cs_ttl_clock_set(1600);
  CHECK(list_items(be, cw, &CW, "k") == NULL);
  CHECK(!stored(be, cw, "k", NULL)); /* the last one took the entry along */
  CHECK_EQ_STR(list_items(be, rw, &RW, "k"), "a,b");
  cs_buf_free(&two);
  cs_buf_free(&scratch);
  be->ops->destroy(be);
}

/* ============================================================ cleanup */

/* The heap checks a few entries per call and removes the expired; RocksDB
 * leaves it to compactions and does nothing. */
static void test_incremental(make_fn make, int heap) {
  cs_backend *be = make();
  int v = be->ops->register_ttl_state(be, "v", CS_STATE_VALUE, &CW);
  int l = be->ops->register_ttl_state(be, "l", CS_STATE_LIST, &CW);
  int m = be->ops->register_ttl_state(be, "m", CS_STATE_MAP, &CW);
  int plain = be->ops->register_state(be, "plain", CS_STATE_VALUE);
  char k[16];
  cs_ttl_clock_set(0);
  for (int i = 0; i < 200; i++) {
    snprintf(k, sizeof(k), "key%d", i);
    ttl_put(be, v, k, NULL, "x");
    list_add(be, l, k, "old");
    ttl_put(be, m, k, "u1", "x");
    ttl_put(be, m, k, "u2", "x");
    CHECK_EQ_INT(be->ops->put(be, plain, 1, S(k), NULL, S("forever")), 0);
  }
  cs_ttl_clock_set(700);
  for (int i = 0; i < 100; i++) { /* half the lists get a live element */
    snprintf(k, sizeof(k), "key%d", i);
    list_add(be, l, k, "new");
  }
  CHECK_EQ_INT(scan_count(be), 1000);
  cs_ttl_clock_set(1500);
  /* one call checks about its budget */
  CHECK_EQ_INT(be->ops->cleanup_expired(be, v, cs_ttl_now(), 5), 0);
  long after = scan_count(be);
  CHECK(heap ? after >= 995 && after < 1000 : after == 1000);
  for (int i = 0; i < 400; i++) {
    CHECK_EQ_INT(be->ops->cleanup_expired(be, v, cs_ttl_now(), 5), 0);
    CHECK_EQ_INT(be->ops->cleanup_expired(be, l, cs_ttl_now(), 5), 0);
    CHECK_EQ_INT(be->ops->cleanup_expired(be, m, cs_ttl_now(), 5), 0);
    CHECK_EQ_INT(be->ops->cleanup_expired(be, plain, cs_ttl_now(), 5), 0);
  }
  /* the heap kept only the live list elements and the state without TTL */
  CHECK_EQ_INT(scan_count(be), heap ? 300 : 1000);
  if (heap) {
    CHECK_EQ_INT(stored_elems(be, l, "key5"), 1);
    CHECK(!stored(be, l, "key150", NULL));
  }
  CHECK_EQ_INT(be->ops->cleanup_expired(be, 99, 0, 5), CS_EINVAL);
  be->ops->destroy(be);
}

/* Compactions drop expired values and map entries and rewrite lists, in a
 * new instance and in one restored from a checkpoint (the filter comes
 * back with the column family's name). */
static void test_compaction_filter(void) {
  cs_backend *be = make_rocksdb();
  int v = be->ops->register_ttl_state(be, "v", CS_STATE_VALUE, &CW);
  int l = be->ops->register_ttl_state(be, "l", CS_STATE_LIST, &CW);
  int m = be->ops->register_ttl_state(be, "m", CS_STATE_MAP, &RW);
  int plain = be->ops->register_state(be, "plain", CS_STATE_VALUE);
  char k[16], err[512];
  cs_ttl_clock_set(0);
  for (int i = 0; i < 50; i++) {
    snprintf(k, sizeof(k), "key%d", i);
    ttl_put(be, v, k, NULL, "x");
    list_add(be, l, k, "old");
    ttl_put(be, m, k, "u", "x");
    CHECK_EQ_INT(be->ops->put(be, plain, 1, S(k), NULL, S("forever")), 0);
  }
  cs_ttl_clock_set(700);
  for (int i = 0; i < 10; i++) {
    snprintf(k, sizeof(k), "key%d", i);
    ttl_put(be, v, k, NULL, "y");
    list_add(be, l, k, "new");
  }
  CHECK_EQ_INT(cs_rocksdb_compact(be, err, sizeof(err)), 0);
  CHECK_EQ_INT(scan_count(be), 200); /* nothing has expired yet */
  cs_ttl_clock_set(1500);
  /* a compaction merges the appends of a list into one value, the next
   * filters that value */
  CHECK_EQ_INT(cs_rocksdb_compact(be, err, sizeof(err)), 0);
  CHECK_EQ_INT(cs_rocksdb_compact(be, err, sizeof(err)), 0);
  CHECK_EQ_INT(scan_count(be), 70); /* 10 values, 10 lists, 50 plain */
  CHECK_EQ_INT(stored_elems(be, l, "key3"), 1);
  CHECK(!stored(be, v, "key30", NULL) && !stored(be, m, "key3", "u"));

  /* after a checkpoint and restore */
  const char *chk = fresh("chk");
  CHECK_EQ_INT(cs_rocksdb_checkpoint(be, chk, NULL, NULL, err, sizeof(err)), 0);
  be->ops->destroy(be);
  CHECK_EQ_INT(cs_rocksdb_restore(fresh("restored"), chk, NULL, NULL, &be, err,
                                  sizeof(err)), 0);
  cs_ttl_config got;
  CHECK_EQ_INT(be->ops->state_ttl(be, m, &got), 1);
  CHECK(cs_ttl_config_eq(&got, &RW));
  CHECK_EQ_INT(be->ops->state_ttl(be, plain, &got), 0);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "v", CS_STATE_VALUE, NULL), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_ttl_state(be, "v", CS_STATE_VALUE, &CW), v);
  cs_ttl_clock_set(2500);
  CHECK_EQ_INT(cs_rocksdb_compact(be, err, sizeof(err)), 0);
  CHECK_EQ_INT(scan_count(be), 50);
  CHECK_EQ_INT(cs_rocksdb_compact(NULL, err, sizeof(err)), CS_EINVAL);
  be->ops->destroy(be);
}

/* ========================================================== snapshots */

static void test_snapshot(make_fn make) {
  cs_backend *be = make();
  int v = be->ops->register_ttl_state(be, "v", CS_STATE_VALUE, &CW);
  int l = be->ops->register_ttl_state(be, "l", CS_STATE_LIST, &RX);
  int m = be->ops->register_ttl_state(be, "m", CS_STATE_MAP, &RW);
  int plain = be->ops->register_state(be, "plain", CS_STATE_VALUE);
  cs_ttl_clock_set(0);
  ttl_put(be, v, "old", NULL, "x");
  ttl_put(be, m, "k", "old", "x");
  list_add(be, l, "k", "old");
  list_add(be, l, "gone", "old");
  CHECK_EQ_INT(be->ops->put(be, plain, 1, S("k"), NULL, S("forever")), 0);
  cs_ttl_clock_set(900);
  ttl_put(be, v, "new", NULL, "y");
  ttl_put(be, m, "k", "new", "y");
  list_add(be, l, "k", "new");
  cs_ttl_clock_set(1500);
  cs_buf snap = {0};
  CHECK_EQ_INT(cs_backend_snapshot(be, 0, 65535, &snap), 0);
  CHECK_EQ_INT((unsigned char)snap.data[12], 1); /* the TTL flag */

  /* restored with the clock set back, what the snapshot holds is visible:
   * only what had not expired when it was taken */
  cs_ttl_clock_set(0);
  cs_backend *r = make();
  CHECK_EQ_INT(cs_backend_restore(r, snap.data, snap.len, 0, 65535), 0);
  CHECK_EQ_INT(scan_count(r), 4); /* v new, m k/new, l k (one element), plain */
  CHECK(!stored(r, v, "old", NULL) && stored(r, v, "new", NULL));
  CHECK(!stored(r, m, "k", "old") && stored(r, m, "k", "new"));
  CHECK_EQ_INT(stored_elems(r, l, "k"), 1);
  CHECK(!stored(r, l, "gone", NULL));
  /* the configurations came along */
  cs_ttl_config got;
  CHECK_EQ_INT(r->ops->state_ttl(r, l, &got), 1);
  CHECK(cs_ttl_config_eq(&got, &RX));
  CHECK_EQ_INT(r->ops->state_ttl(r, plain, &got), 0);
  CHECK_EQ_INT(r->ops->register_ttl_state(r, "m", CS_STATE_MAP, &CW), CS_ESTATE);
  r->ops->destroy(r);

  /* restored later, what expired since is left out too */
  cs_ttl_clock_set(2000);
  r = make();
  CHECK_EQ_INT(cs_backend_restore(r, snap.data, snap.len, 0, 65535), 0);
  CHECK_EQ_INT(scan_count(r), 1);
  r->ops->destroy(r);
  /* ... unless a tool asks for everything the snapshot holds */
  r = make();
  CHECK_EQ_INT(cs_backend_restore_all(r, snap.data, snap.len, 0, 65535), 0);
  CHECK_EQ_INT(scan_count(r), 4);
  r->ops->destroy(r);

  /* a snapshot registers its states with their TTL: a backend that has
   * the name without one refuses it */
  r = make();
  CHECK(r->ops->register_state(r, "m", CS_STATE_MAP) >= 0);
  CHECK_EQ_INT(cs_backend_restore(r, snap.data, snap.len, 0, 65535), CS_ESTATE);
  r->ops->destroy(r);

  /* a bad configuration in the state table is a corrupt snapshot */
  for (size_t i = 32; i < 60 && i + 2 < snap.len; i++) {
    if ((unsigned char)snap.data[i] != (0x80 | CS_STATE_VALUE)) continue;
    snap.data[i + 1] = 0; /* ttl_ms varint 0 */
    break;
  }
  /* reseal: the checksum covers everything before it */
  uint64_t h = XXH3_64bits(snap.data, snap.len - 8);
  for (int i = 0; i < 8; i++) snap.data[snap.len - 8 + i] = (char)(h >> (8 * i));
  r = make();
  CHECK_EQ_INT(cs_backend_restore(r, snap.data, snap.len, 0, 65535), CS_EDECODE);
  r->ops->destroy(r);

  /* without TTL states, the flag stays clear (the old format) */
  CHECK_EQ_INT(be->ops->forget_states(be, 0), 0);
  CHECK(be->ops->register_state(be, "x", CS_STATE_VALUE) >= 0);
  cs_buf_reset(&snap);
  CHECK_EQ_INT(cs_backend_snapshot(be, 0, 65535, &snap), 0);
  CHECK_EQ_INT((unsigned char)snap.data[12], 0);
  cs_buf_free(&snap);
  be->ops->destroy(be);
}

/* =============================================================== main */

static void suite(make_fn make, int heap) {
  test_register(make);
  test_value(make);
  test_map(make);
  test_list(make);
  test_incremental(make, heap);
  test_snapshot(make);
}

int main(void) {
  if (mkdtemp(root) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  test_config();
  suite(make_heap, 1);
  suite(make_rocksdb, 0);
  test_compaction_filter();
  cs_ttl_clock_real();
  nftw(root, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
  TEST_MAIN_END();
}
