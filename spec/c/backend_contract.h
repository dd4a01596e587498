/*
 * backend_contract.h - the state backend contract (cs_backend.h) and the
 * generic snapshot/restore (cs_snapshot.c), as tests that take a factory and
 * use nothing but the vtable, so that every backend runs the same suite:
 * test_heap_backend.c and test_rocksdb_backend.c include this header and
 * call backend_contract(make, flags).
 *
 * A factory returns a fresh, empty backend, or NULL when out of memory; the
 * tests free it with ops->destroy.
 */
#ifndef CS_BACKEND_CONTRACT_H
#define CS_BACKEND_CONTRACT_H

#include "state/cs_backend.h"
#include "cs_test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

typedef cs_backend *(*make_fn)(void);

/* Flags of backend_contract. */
enum {
  /* The backend's operations allocate through cs_malloc, so failing the
   * n-th allocation reaches inside them, and the OOM test requires that it
   * did many times (the heap backend). Without the flag every injected
   * failure is still checked (CS_ENOMEM, backend unchanged), but a backend
   * that allocates inside a library (RocksDB) is not required to fail. */
  CONTRACT_OPS_USE_CS_ALLOC = 1,
  /* Making a backend costs milliseconds (RocksDB creates and syncs files).
   * The two loops that make a fresh backend per case (corrupt snapshots,
   * resealed fuzz: thousands of cases that exercise the snapshot parser,
   * which the heap run covers in full) then take every CONTRACT_STRIDE-th
   * case, unless CS_CONTRACT_FULL=1 is set. */
  CONTRACT_COSTLY_MAKE = 2
};

#define CONTRACT_STRIDE 8
static long contract_stride = 1; /* set by backend_contract */

/* ============================================================ helpers */

static cs_slice S(const char *s) {
  cs_slice sl = {s, strlen(s)};
  return sl;
}

static cs_slice B(const void *p, size_t n) {
  cs_slice sl = {p, n};
  return sl;
}

static int slice_eq(cs_slice a, cs_slice b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

/* A binary key for index i: "k" then i as 4 big-endian bytes (so most keys
 * hold NUL bytes). */
static cs_slice key_of(int i, char buf[5]) {
  buf[0] = 'k';
  buf[1] = (char)(i >> 24);
  buf[2] = (char)(i >> 16);
  buf[3] = (char)(i >> 8);
  buf[4] = (char)i;
  return B(buf, 5);
}

static int get_is(cs_backend *be, int st, int kg, cs_slice key,
                  const cs_slice *ukey, cs_slice want) {
  cs_slice v;
  int rc = be->ops->get(be, st, kg, key, ukey, &v);
  return rc == 0 && slice_eq(v, want);
}

static int get_rc(cs_backend *be, int st, int kg, cs_slice key,
                  const cs_slice *ukey) {
  cs_slice v;
  return be->ops->get(be, st, kg, key, ukey, &v);
}

/* Appends an unambiguous rendering of an entry (state by name) to b. */
static void record(cs_backend *be, const cs_backend_entry *e, cs_buf *b) {
  const char *name = "?";
  cs_state_kind kind = 0;
  be->ops->state_info(be, e->state, &name, &kind);
  cs_slice parts[4] = {S(name), e->key, e->ukey, e->val};
  uint32_t kk[2] = {(uint32_t)kind, (uint32_t)e->kg};
  cs_buf_append(b, kk, sizeof(kk));
  for (int i = 0; i < 4; i++) {
    uint64_t n = parts[i].len;
    cs_buf_append(b, &n, sizeof(n));
    cs_buf_append(b, parts[i].data, parts[i].len);
  }
}

typedef struct rec {
  size_t len;
  char *data;
} rec;

static int rec_cmp(const void *pa, const void *pb) {
  const rec *a = pa, *b = pb;
  size_t n = a->len < b->len ? a->len : b->len;
  int c = memcmp(a->data, b->data, n);
  if (c) return c;
  return a->len < b->len ? -1 : a->len > b->len;
}

/* Renders every entry of [first, last] into out, sorted, so two backends
 * compare with memcmp. Returns the entry count, or -1 on an error (including
 * an entry outside the range). */
static long dump(cs_backend *be, int first, int last, cs_buf *out) {
  cs_backend_iter *it;
  if (be->ops->scan_iter(be, first, last, &it)) return -1;
  size_t n = 0, cap = 1024;
  rec *rs = malloc(cap * sizeof(rec));
  cs_backend_entry e;
  int rc;
  long bad = 0;
  cs_buf b = {0};
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    if (e.kg < first || e.kg > last) bad = 1;
    cs_buf_reset(&b);
    record(be, &e, &b);
    if (n == cap) rs = realloc(rs, (cap *= 2) * sizeof(rec));
    rs[n].len = b.len;
    rs[n].data = malloc(b.len);
    memcpy(rs[n].data, b.data, b.len);
    n++;
  }
  be->ops->iter_destroy(it);
  qsort(rs, n, sizeof(rec), rec_cmp);
  cs_buf_reset(out);
  for (size_t i = 0; i < n; i++) {
    cs_buf_append(out, &rs[i].len, sizeof(rs[i].len));
    cs_buf_append(out, rs[i].data, rs[i].len);
    free(rs[i].data);
  }
  free(rs);
  cs_buf_free(&b);
  return rc < 0 || bad ? -1 : (long)n;
}

/* Order-independent digest of the whole backend: entry count and a sum of
 * entry hashes. */
typedef struct digest {
  long count;
  uint64_t sum;
} digest;

static digest digest_of(cs_backend *be) {
  digest d = {0, 0};
  cs_backend_iter *it;
  if (be->ops->scan_iter(be, 0, 65535, &it)) {
    d.count = -1;
    return d;
  }
  cs_backend_entry e;
  cs_buf b = {0};
  int rc;
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    cs_buf_reset(&b);
    record(be, &e, &b);
    d.sum += XXH3_64bits(b.data, b.len);
    d.count++;
  }
  if (rc < 0) d.count = -1;
  be->ops->iter_destroy(it);
  cs_buf_free(&b);
  d.count += be->ops->state_count(be) * 1000000L; /* registrations count */
  return d;
}

static int digest_eq(digest a, digest b) {
  return a.count == b.count && a.sum == b.sum;
}

static long scan_count(cs_backend *be, int first, int last) {
  cs_backend_iter *it;
  if (be->ops->scan_iter(be, first, last, &it)) return -1;
  cs_backend_entry e;
  long n = 0;
  int rc;
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    if (e.kg < first || e.kg > last) n = -1000000000L;
    n++;
  }
  be->ops->iter_destroy(it);
  return rc < 0 ? -1 : n;
}

/* ====================================================== the population */

#define NKG 128
#define OP_KG 65535

static long per_kg[65536]; /* entries per key group of populate() */

/* Fills be with nkeys keys, key i in key group i % NKG: a VALUE entry each,
 * a LIST of i % 5 items (none when 0), a MAP of i % 4 user keys; plus three
 * keys of operator state (LIST) at key group 65535. Counts entries per key
 * group in per_kg. */
static void populate(cs_backend *be, int nkeys) {
  memset(per_kg, 0, sizeof(per_kg));
  int v = be->ops->register_state(be, "pop.value", CS_STATE_VALUE);
  int l = be->ops->register_state(be, "pop.list", CS_STATE_LIST);
  int m = be->ops->register_state(be, "pop.map", CS_STATE_MAP);
  int o = be->ops->register_state(be, "pop.op", CS_STATE_LIST);
  char kb[5], vb[32], ub[16];
  for (int i = 0; i < nkeys; i++) {
    int kg = i % NKG;
    cs_slice k = key_of(i, kb);
    snprintf(vb, sizeof(vb), "value-%d", i);
    CHECK_EQ_INT(be->ops->put(be, v, kg, k, NULL, S(vb)), 0);
    per_kg[kg]++;
    for (int j = 0; j < i % 5; j++) {
      snprintf(vb, sizeof(vb), "item%d.%d;", i, j);
      CHECK_EQ_INT(be->ops->append(be, l, kg, k, S(vb)), 0);
    }
    if (i % 5) per_kg[kg]++;
    for (int j = 0; j < i % 4; j++) {
      snprintf(ub, sizeof(ub), "u%d", j);
      snprintf(vb, sizeof(vb), "mv%d.%d", i, j);
      cs_slice u = S(ub);
      CHECK_EQ_INT(be->ops->put(be, m, kg, k, &u, S(vb)), 0);
      per_kg[kg]++;
    }
  }
  for (int i = 0; i < 3; i++) {
    snprintf(vb, sizeof(vb), "op-item-%d", i);
    CHECK_EQ_INT(be->ops->append(be, o, OP_KG, key_of(i, kb), S(vb)), 0);
    per_kg[OP_KG]++;
  }
}

static long expected(int first, int last) {
  long n = 0;
  for (int kg = first; kg <= last; kg++) n += per_kg[kg];
  return n;
}

/* ============================================================== tests */

static void test_register(make_fn make) {
  cs_backend *be = make();
  CHECK(be != NULL);
  CHECK_EQ_INT(be->ops->state_count(be), 0);
  int a = be->ops->register_state(be, "a", CS_STATE_VALUE);
  CHECK(a >= 0);
  CHECK_EQ_INT(be->ops->register_state(be, "a", CS_STATE_VALUE), a);
  CHECK_EQ_INT(be->ops->register_state(be, "a", CS_STATE_LIST), CS_ESTATE);
  CHECK_EQ_INT(be->ops->register_state(be, "a", CS_STATE_MAP), CS_ESTATE);
  int b = be->ops->register_state(be, "b", CS_STATE_MAP);
  CHECK(b >= 0 && b != a);
  CHECK_EQ_INT(be->ops->register_state(be, "b", CS_STATE_MAP), b);
  CHECK_EQ_INT(be->ops->state_count(be), 2);
  const char *name;
  cs_state_kind kind;
  CHECK_EQ_INT(be->ops->state_info(be, a, &name, &kind), 0);
  CHECK_EQ_STR(name, "a");
  CHECK_EQ_INT(kind, CS_STATE_VALUE);
  CHECK_EQ_INT(be->ops->state_info(be, b, &name, &kind), 0);
  CHECK_EQ_STR(name, "b");
  CHECK_EQ_INT(kind, CS_STATE_MAP);
  /* Many states: ids stay stable as the table of states grows. */
  char nm[32];
  for (int i = 0; i < 100; i++) {
    snprintf(nm, sizeof(nm), "s%d", i);
    CHECK(be->ops->register_state(be, nm, CS_STATE_LIST) >= 0);
  }
  CHECK_EQ_INT(be->ops->register_state(be, "a", CS_STATE_VALUE), a);
  CHECK_EQ_INT(be->ops->register_state(be, "s7", CS_STATE_LIST),
               be->ops->register_state(be, "s7", CS_STATE_LIST));
  CHECK_EQ_INT(be->ops->state_count(be), 102);
  be->ops->destroy(be);
}

/* Forgetting the newest states (a rolled-back reload's) drops them and
 * their entries; their names can then come back with another kind, and the
 * older states keep their ids and entries. */
static void test_forget_states(make_fn make) {
  cs_backend *be = make();
  int a = be->ops->register_state(be, "a", CS_STATE_VALUE);
  CHECK_EQ_INT(be->ops->put(be, a, 1, S("k"), NULL, S("kept")), 0);
  int n = be->ops->state_count(be);
  int b = be->ops->register_state(be, "b", CS_STATE_MAP);
  int c = be->ops->register_state(be, "c", CS_STATE_VALUE);
  CHECK(b >= 0 && c >= 0);
  cs_slice uk = S("u");
  CHECK_EQ_INT(be->ops->put(be, b, 1, S("k"), &uk, S("x")), 0);
  CHECK_EQ_INT(be->ops->put(be, c, 1, S("k"), NULL, S("y")), 0);
  CHECK_EQ_INT(be->ops->forget_states(be, n), 0);
  CHECK_EQ_INT(be->ops->state_count(be), n);
  CHECK_EQ_INT(be->ops->forget_states(be, n), 0); /* nothing more to forget */
  CHECK(get_is(be, a, 1, S("k"), NULL, S("kept")));
  int b2 = be->ops->register_state(be, "b", CS_STATE_VALUE);
  CHECK(b2 >= 0);
  CHECK_EQ_INT(get_rc(be, b2, 1, S("k"), NULL), CS_ENOTFOUND);
  int c2 = be->ops->register_state(be, "c", CS_STATE_VALUE);
  CHECK(c2 >= 0 && c2 != b2);
  CHECK_EQ_INT(get_rc(be, c2, 1, S("k"), NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->forget_states(be, -1), CS_EINVAL);
  be->ops->destroy(be);
}

static void test_value(make_fn make) {
  cs_backend *be = make();
  int st = be->ops->register_state(be, "v", CS_STATE_VALUE);
  cs_slice k = S("key");
  CHECK_EQ_INT(get_rc(be, st, 3, k, NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, S("one")), 0);
  CHECK(get_is(be, st, 3, k, NULL, S("one")));

  /* Overwrite with a larger, then a smaller, then an empty value. */
  char big[5000];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)(i * 7);
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, B(big, sizeof(big))), 0);
  CHECK(get_is(be, st, 3, k, NULL, B(big, sizeof(big))));
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, S("ab")), 0);
  CHECK(get_is(be, st, 3, k, NULL, S("ab")));
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, S("abcdef")), 0);
  CHECK(get_is(be, st, 3, k, NULL, S("abcdef")));
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, B("", 0)), 0);
  CHECK(get_is(be, st, 3, k, NULL, B("", 0)));

  /* A borrowed view may be passed straight back in (a prefix of itself). */
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, S("0123456789")), 0);
  cs_slice v;
  CHECK_EQ_INT(be->ops->get(be, st, 3, k, NULL, &v), 0);
  v.data += 2;
  v.len -= 2;
  CHECK_EQ_INT(be->ops->put(be, st, 3, k, NULL, v), 0);
  CHECK(get_is(be, st, 3, k, NULL, S("23456789")));

  CHECK_EQ_INT(be->ops->del(be, st, 3, k, NULL), 0);
  CHECK_EQ_INT(get_rc(be, st, 3, k, NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->del(be, st, 3, k, NULL), 0); /* absent: no error */
  CHECK_EQ_INT(scan_count(be, 0, 65535), 0);
  be->ops->destroy(be);
}

static void test_independence(make_fn make) {
  cs_backend *be = make();
  int a = be->ops->register_state(be, "a", CS_STATE_VALUE);
  int b = be->ops->register_state(be, "b", CS_STATE_VALUE);
  cs_slice k = S("same");
  CHECK_EQ_INT(be->ops->put(be, a, 1, k, NULL, S("a1")), 0);
  CHECK_EQ_INT(be->ops->put(be, a, 2, k, NULL, S("a2")), 0);
  CHECK_EQ_INT(be->ops->put(be, b, 1, k, NULL, S("b1")), 0);
  CHECK_EQ_INT(be->ops->put(be, a, OP_KG, k, NULL, S("op")), 0);
  CHECK(get_is(be, a, 1, k, NULL, S("a1")));
  CHECK(get_is(be, a, 2, k, NULL, S("a2")));
  CHECK(get_is(be, b, 1, k, NULL, S("b1")));
  CHECK(get_is(be, a, OP_KG, k, NULL, S("op")));
  CHECK_EQ_INT(get_rc(be, b, 2, k, NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->del(be, a, 1, k, NULL), 0);
  CHECK_EQ_INT(get_rc(be, a, 1, k, NULL), CS_ENOTFOUND);
  CHECK(get_is(be, a, 2, k, NULL, S("a2")));
  CHECK(get_is(be, b, 1, k, NULL, S("b1")));
  CHECK(get_is(be, a, OP_KG, k, NULL, S("op")));

  /* Binary keys: NUL bytes are part of the key; prefixes are other keys. */
  cs_slice k1 = B("a\0b", 3), k2 = B("a\0c", 3), k3 = B("a", 1),
           k4 = B("a\0", 2);
  CHECK_EQ_INT(be->ops->put(be, a, 5, k1, NULL, S("1")), 0);
  CHECK_EQ_INT(be->ops->put(be, a, 5, k2, NULL, S("2")), 0);
  CHECK_EQ_INT(be->ops->put(be, a, 5, k3, NULL, S("3")), 0);
  CHECK_EQ_INT(be->ops->put(be, a, 5, k4, NULL, B("\0\0", 2)), 0);
  CHECK(get_is(be, a, 5, k1, NULL, S("1")));
  CHECK(get_is(be, a, 5, k2, NULL, S("2")));
  CHECK(get_is(be, a, 5, k3, NULL, S("3")));
  CHECK(get_is(be, a, 5, k4, NULL, B("\0\0", 2)));

  /* The empty key is a key like any other (data may be NULL). */
  cs_slice e1 = B("", 0), e2 = B(NULL, 0);
  CHECK_EQ_INT(get_rc(be, a, 5, e1, NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->put(be, a, 5, e1, NULL, S("empty")), 0);
  CHECK(get_is(be, a, 5, e2, NULL, S("empty")));
  CHECK(get_is(be, a, 5, k3, NULL, S("3")));
  CHECK_EQ_INT(be->ops->del(be, a, 5, e2, NULL), 0);
  CHECK_EQ_INT(get_rc(be, a, 5, e1, NULL), CS_ENOTFOUND);
  be->ops->destroy(be);
}

static void test_list(make_fn make) {
  cs_backend *be = make();
  int l = be->ops->register_state(be, "l", CS_STATE_LIST);
  cs_slice k = S("k");
  CHECK_EQ_INT(get_rc(be, l, 0, k, NULL), CS_ENOTFOUND);
  cs_buf model = {0};
  char item[64];
  for (int i = 0; i < 20000; i++) {
    int n = snprintf(item, sizeof(item), "<%d:%.*s>", i, i % 40,
                     "0123456789012345678901234567890123456789");
    CHECK_EQ_INT(be->ops->append(be, l, 0, k, B(item, (size_t)n)), 0);
    cs_buf_append(&model, item, (size_t)n);
  }
  CHECK(get_is(be, l, 0, k, NULL, B(model.data, model.len)));
  /* Appending several items at once, and a list's own view to itself. */
  CHECK_EQ_INT(be->ops->append(be, l, 0, k, S("[x][y]")), 0);
  cs_buf_append(&model, "[x][y]", 6);
  cs_slice v;
  CHECK_EQ_INT(be->ops->get(be, l, 0, k, NULL, &v), 0);
  CHECK_EQ_INT(cs_buf_reserve(&model, model.len), 0); /* no self-aliasing */
  memcpy(model.data + model.len, model.data, model.len);
  model.len *= 2;
  CHECK_EQ_INT(be->ops->append(be, l, 0, k, v), 0);
  CHECK(get_is(be, l, 0, k, NULL, B(model.data, model.len)));
  /* put replaces the whole list; appends go on from there. */
  CHECK_EQ_INT(be->ops->put(be, l, 0, k, NULL, S("[a]")), 0);
  CHECK_EQ_INT(be->ops->append(be, l, 0, k, S("[b]")), 0);
  CHECK(get_is(be, l, 0, k, NULL, S("[a][b]")));
  /* Another key group is another list. */
  CHECK_EQ_INT(be->ops->append(be, l, 1, k, S("[c]")), 0);
  CHECK(get_is(be, l, 1, k, NULL, S("[c]")));
  CHECK(get_is(be, l, 0, k, NULL, S("[a][b]")));
  CHECK_EQ_INT(be->ops->del(be, l, 0, k, NULL), 0);
  CHECK_EQ_INT(get_rc(be, l, 0, k, NULL), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->append(be, l, 0, k, S("[d]")), 0);
  CHECK(get_is(be, l, 0, k, NULL, S("[d]")));
  cs_buf_free(&model);
  be->ops->destroy(be);
}

/* Iterates all of (st, kg, key); returns the count or the error. */
static long map_count(cs_backend *be, int st, int kg, cs_slice key) {
  cs_backend_iter *it;
  int rc = be->ops->map_iter(be, st, kg, key, &it);
  if (rc) return rc;
  cs_backend_entry e;
  long n = 0;
  while ((rc = be->ops->iter_next(it, &e)) == 1) n++;
  be->ops->iter_destroy(it);
  return rc < 0 ? rc : n;
}

static void test_map(make_fn make) {
  cs_backend *be = make();
  int m = be->ops->register_state(be, "m", CS_STATE_MAP);
  cs_slice k = S("user"), u1 = S("u1"), u2 = S("u2"), ue = B(NULL, 0);
  CHECK_EQ_INT(get_rc(be, m, 7, k, &u1), CS_ENOTFOUND);
  CHECK_EQ_INT(map_count(be, m, 7, k), 0);
  CHECK_EQ_INT(be->ops->put(be, m, 7, k, &u1, S("one")), 0);
  CHECK(get_is(be, m, 7, k, &u1, S("one")));
  CHECK_EQ_INT(get_rc(be, m, 7, k, &u2), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->put(be, m, 7, k, &u2, S("two")), 0);
  CHECK_EQ_INT(be->ops->put(be, m, 7, k, &ue, S("empty ukey")), 0);
  CHECK_EQ_INT(be->ops->put(be, m, 7, k, &u1, S("ONE, longer now")), 0);
  CHECK(get_is(be, m, 7, k, &u1, S("ONE, longer now")));
  CHECK(get_is(be, m, 7, k, &ue, S("empty ukey")));
  CHECK_EQ_INT(map_count(be, m, 7, k), 3);
  /* Same key in another key group is another map. */
  CHECK_EQ_INT(map_count(be, m, 8, k), 0);
  CHECK_EQ_INT(be->ops->del(be, m, 7, k, &u2), 0);
  CHECK_EQ_INT(get_rc(be, m, 7, k, &u2), CS_ENOTFOUND);
  CHECK_EQ_INT(be->ops->del(be, m, 7, k, &u2), 0);
  CHECK_EQ_INT(map_count(be, m, 7, k), 2);
  CHECK_EQ_INT(be->ops->del(be, m, 7, k, NULL), 0); /* the whole key */
  CHECK_EQ_INT(get_rc(be, m, 7, k, &u1), CS_ENOTFOUND);
  CHECK_EQ_INT(map_count(be, m, 7, k), 0);
  CHECK_EQ_INT(scan_count(be, 0, 65535), 0);
  /* Removing the last user key leaves nothing behind either. */
  CHECK_EQ_INT(be->ops->put(be, m, 7, k, &u1, S("x")), 0);
  CHECK_EQ_INT(be->ops->del(be, m, 7, k, &u1), 0);
  CHECK_EQ_INT(scan_count(be, 0, 65535), 0);

  /* 100k user keys under one key; a neighbour key must not show up. */
  enum { N = 100000 };
  char ub[16], vb[16];
  CHECK_EQ_INT(be->ops->put(be, m, 7, S("other"), &u1, S("o")), 0);
  for (int i = 0; i < N; i++) {
    cs_slice u = B(ub, (size_t)snprintf(ub, sizeof(ub), "%d", i));
    snprintf(vb, sizeof(vb), "v%d", i);
    CHECK_EQ_INT(be->ops->put(be, m, 7, k, &u, S(vb)), 0);
  }
  unsigned char *seen = calloc(N, 1);
  cs_backend_iter *it;
  CHECK_EQ_INT(be->ops->map_iter(be, m, 7, k, &it), 0);
  cs_backend_entry e;
  long n = 0, bad = 0;
  int rc;
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    char tmp[16];
    int i = -1;
    if (e.ukey.len > 0 && e.ukey.len < sizeof(tmp)) {
      memcpy(tmp, e.ukey.data, e.ukey.len);
      tmp[e.ukey.len] = 0;
      i = atoi(tmp);
    }
    snprintf(vb, sizeof(vb), "v%d", i);
    if (i < 0 || i >= N || seen[i] || !slice_eq(e.val, S(vb)) ||
        !slice_eq(e.key, k) || e.kg != 7 || e.state != m)
      bad++;
    else
      seen[i] = 1;
    n++;
  }
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_INT(be->ops->iter_next(it, &e), 0); /* stays at the end */
  be->ops->iter_destroy(it);
  CHECK_EQ_INT(n, N);
  CHECK_EQ_INT(bad, 0);
  free(seen);

  /* Mutating the key being iterated: the next step is CS_ESTATE, whichever
   * mutation it is. Reading, or mutating another key, is fine. */
  for (int how = 0; how < 4; how++) {
    CHECK_EQ_INT(be->ops->map_iter(be, m, 7, k, &it), 0);
    cs_slice u0 = S("0");
    CHECK_EQ_INT(be->ops->iter_next(it, &e), 1);
    CHECK_EQ_INT(get_rc(be, m, 7, k, &u0), 0);
    CHECK_EQ_INT(be->ops->put(be, m, 7, S("other"), &u2, S("p")), 0);
    CHECK_EQ_INT(be->ops->put(be, m, 8, k, &u2, S("p")), 0);
    CHECK_EQ_INT(be->ops->iter_next(it, &e), 1);
    if (how == 0) be->ops->put(be, m, 7, k, &u1, S("new"));
    if (how == 1) be->ops->put(be, m, 7, k, &u0, S("v0"));
    if (how == 2) be->ops->del(be, m, 7, k, &u1);
    if (how == 3) be->ops->del(be, m, 7, k, NULL);
    CHECK_EQ_INT(be->ops->iter_next(it, &e), CS_ESTATE);
    be->ops->iter_destroy(it);
  }
  /* An iterator of an absent key notices the key appearing. */
  CHECK_EQ_INT(be->ops->map_iter(be, m, 9, k, &it), 0);
  CHECK_EQ_INT(be->ops->put(be, m, 9, k, &u1, S("late")), 0);
  CHECK_EQ_INT(be->ops->iter_next(it, &e), CS_ESTATE);
  be->ops->iter_destroy(it);
  /* Destroying an iterator that never stepped is fine, and NULL too. */
  CHECK_EQ_INT(be->ops->map_iter(be, m, 9, k, &it), 0);
  be->ops->iter_destroy(it);
  be->ops->iter_destroy(NULL);
  be->ops->destroy(be);
}

static void test_many_values(make_fn make) {
  cs_backend *be = make();
  int v = be->ops->register_state(be, "v", CS_STATE_VALUE);
  enum { N = 100000 };
  char kb[5], vb[32];
  for (int i = 0; i < N; i++) {
    snprintf(vb, sizeof(vb), "value %d", i);
    CHECK_EQ_INT(be->ops->put(be, v, i % NKG, key_of(i, kb), NULL, S(vb)), 0);
  }
  long bad = 0;
  for (int i = 0; i < N; i++) {
    snprintf(vb, sizeof(vb), "value %d", i);
    if (!get_is(be, v, i % NKG, key_of(i, kb), NULL, S(vb))) bad++;
    /* the same key in the neighbouring key group is absent */
    if (get_rc(be, v, (i + 1) % NKG, key_of(i, kb), NULL) != CS_ENOTFOUND)
      bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(scan_count(be, 0, 65535), N);
  for (int i = 0; i < N; i += 2)
    CHECK_EQ_INT(be->ops->del(be, v, i % NKG, key_of(i, kb), NULL), 0);
  bad = 0;
  for (int i = 0; i < N; i++) {
    snprintf(vb, sizeof(vb), "value %d", i);
    if (i % 2 ? !get_is(be, v, i % NKG, key_of(i, kb), NULL, S(vb))
              : get_rc(be, v, i % NKG, key_of(i, kb), NULL) != CS_ENOTFOUND)
      bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK_EQ_INT(scan_count(be, 0, 65535), N / 2);
  be->ops->destroy(be);
}

static void test_scan(make_fn make) {
  cs_backend *be = make();
  populate(be, 5000);
  static const int ranges[][2] = {{0, 65535}, {0, 127}, {0, 63},  {64, 127},
                                  {5, 5},     {0, 0},   {127, 127}, {10, 20},
                                  {128, 65534}, {65535, 65535}, {100, 65535}};
  for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
    int f = ranges[r][0], l = ranges[r][1];
    CHECK_EQ_INT(scan_count(be, f, l), expected(f, l));
  }
  /* Scan entries carry ukey only for MAP states. */
  cs_backend_iter *it;
  CHECK_EQ_INT(be->ops->scan_iter(be, 0, 65535, &it), 0);
  cs_backend_entry e;
  long bad = 0;
  while (be->ops->iter_next(it, &e) == 1) {
    cs_state_kind kind;
    be->ops->state_info(be, e.state, NULL, &kind);
    if ((kind == CS_STATE_MAP) != (e.ukey.len > 0)) bad++;
  }
  be->ops->iter_destroy(it);
  CHECK_EQ_INT(bad, 0);
  be->ops->destroy(be);
}

static void test_snapshot(make_fn make) {
  cs_backend *full = make();
  populate(full, 5000);
  cs_buf snap = {0}, d1 = {0}, d2 = {0};
  cs_buf_append(&snap, "prefix", 6); /* the snapshot is appended */
  CHECK_EQ_INT(cs_backend_snapshot(full, 0, 65535, &snap), 0);
  CHECK(memcmp(snap.data, "prefix", 6) == 0);
  const char *data = snap.data + 6;
  size_t len = snap.len - 6;

  /* Everything into a fresh backend. */
  cs_backend *copy = make();
  CHECK_EQ_INT(cs_backend_restore(copy, data, len, 0, 65535), 0);
  long n1 = dump(full, 0, 65535, &d1), n2 = dump(copy, 0, 65535, &d2);
  CHECK_EQ_INT(n1, expected(0, 65535));
  CHECK_EQ_INT(n2, n1);
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  CHECK_EQ_INT(copy->ops->state_count(copy), full->ops->state_count(full));
  copy->ops->destroy(copy);

  /* Split in two at another parallelism: an exact partition. */
  cs_backend *lo = make(), *hi = make();
  CHECK_EQ_INT(cs_backend_restore(lo, data, len, 0, 63), 0);
  CHECK_EQ_INT(cs_backend_restore(hi, data, len, 64, 127), 0);
  long nlo = dump(lo, 0, 65535, &d2);
  CHECK_EQ_INT(nlo, expected(0, 63));
  CHECK_EQ_INT(dump(full, 0, 63, &d1), nlo);
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  long nhi = dump(hi, 0, 65535, &d2);
  CHECK_EQ_INT(nhi, expected(64, 127));
  CHECK_EQ_INT(dump(full, 64, 127, &d1), nhi);
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  CHECK_EQ_INT(nlo + nhi, expected(0, 127));
  CHECK_EQ_INT(scan_count(lo, OP_KG, OP_KG), 0); /* operator state excluded */
  lo->ops->destroy(lo);
  hi->ops->destroy(hi);

  /* Operator state (key group 65535) comes back when the range holds it. */
  cs_backend *op = make();
  CHECK_EQ_INT(cs_backend_restore(op, data, len, 128, 65535), 0);
  CHECK_EQ_INT(dump(op, 0, 65535, &d2), 3);
  CHECK_EQ_INT(dump(full, OP_KG, OP_KG, &d1), 3);
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  int o = op->ops->register_state(op, "pop.op", CS_STATE_LIST);
  char kb[5];
  CHECK(get_is(op, o, OP_KG, key_of(1, kb), NULL, S("op-item-1")));
  op->ops->destroy(op);

  /* A snapshot of a sub-range holds only that range. */
  cs_buf part = {0};
  CHECK_EQ_INT(cs_backend_snapshot(full, 64, 127, &part), 0);
  cs_backend *p = make();
  CHECK_EQ_INT(cs_backend_restore(p, part.data, part.len, 0, 65535), 0);
  CHECK_EQ_INT(dump(p, 0, 65535, &d2), expected(64, 127));
  CHECK_EQ_INT(dump(full, 64, 127, &d1), expected(64, 127));
  CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
  p->ops->destroy(p);

  /* An empty backend round-trips too. */
  cs_backend *empty = make(), *back = make();
  cs_buf_reset(&part);
  CHECK_EQ_INT(cs_backend_snapshot(empty, 0, 65535, &part), 0);
  CHECK_EQ_INT(cs_backend_restore(back, part.data, part.len, 0, 65535), 0);
  CHECK_EQ_INT(back->ops->state_count(back), 0);
  CHECK_EQ_INT(scan_count(back, 0, 65535), 0);
  empty->ops->destroy(empty);
  back->ops->destroy(back);

  cs_buf_free(&part);
  cs_buf_free(&snap);
  cs_buf_free(&d1);
  cs_buf_free(&d2);
  full->ops->destroy(full);
}

/* Restores data[0, len) into a fresh backend; corrupt input must be
 * CS_EDECODE and (this snapshot code parses before it loads) leave it
 * empty. Returns 1 when that holds. */
static int rejects(make_fn make, const char *data, size_t len) {
  cs_backend *be = make();
  int rc = cs_backend_restore(be, data, len, 0, 65535);
  int ok = rc == CS_EDECODE && be->ops->state_count(be) == 0;
  be->ops->destroy(be);
  return ok;
}

static void test_corrupt_snapshot(make_fn make) {
  cs_backend *be = make();
  populate(be, 300);
  cs_buf snap = {0};
  CHECK_EQ_INT(cs_backend_snapshot(be, 0, 65535, &snap), 0);
  be->ops->destroy(be);
  size_t len = snap.len;
  CHECK(len > 1000);

  /* Truncations: the first and last 64 prefix lengths, then a sample. */
  long bad = 0, tried = 0, cases = 0;
  for (size_t n = 0; n < len; n++) {
    if (n >= 64 && n + 64 < len && n % 37 != 0) continue;
    if (cases++ % contract_stride) continue;
    tried++;
    if (!rejects(make, snap.data, n)) bad++;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(tried > 128 / contract_stride);
  CHECK(rejects(make, NULL, 0));

  /* Trailing bytes are corruption too. */
  cs_buf longer = {0};
  cs_buf_append(&longer, snap.data, len);
  cs_buf_append(&longer, "", 1);
  CHECK(rejects(make, longer.data, longer.len));
  cs_buf_free(&longer);

  /* A flipped byte anywhere: every byte of the header, state table and
   * footer, and a sample of the entries, with two different flips. */
  bad = 0;
  for (size_t i = 0; i < len; i++) {
    if (i >= 160 && i + 64 < len && i % 11 != 0) continue;
    for (int f = 0; f < 2; f++) {
      if (cases++ % contract_stride) continue;
      unsigned char x = f ? 0xff : 0x01;
      snap.data[i] = (char)(snap.data[i] ^ x);
      if (!rejects(make, snap.data, len)) bad++;
      snap.data[i] = (char)(snap.data[i] ^ x);
    }
  }
  CHECK_EQ_INT(bad, 0);
  /* And the unflipped snapshot still loads. */
  cs_backend *ok = make();
  CHECK_EQ_INT(cs_backend_restore(ok, snap.data, len, 0, 65535), 0);
  CHECK_EQ_INT(scan_count(ok, 0, 65535), expected(0, 65535));
  ok->ops->destroy(ok);
  cs_buf_free(&snap);
}

/* ----------------------------------------- hand-made and resealed snapshots */

/* A second, independent writer of the snapshot format (see cs_snapshot.c),
 * to build inputs the backend scan never produces. */
static void le(cs_buf *b, uint64_t v, int n) {
  for (int i = 0; i < n; i++) {
    unsigned char c = (unsigned char)(v >> (8 * i));
    cs_buf_append(b, &c, 1);
  }
}

static void varint(cs_buf *b, uint64_t v) {
  for (; v >= 0x80; v >>= 7) {
    unsigned char c = (unsigned char)(v | 0x80);
    cs_buf_append(b, &c, 1);
  }
  unsigned char c = (unsigned char)v;
  cs_buf_append(b, &c, 1);
}

static void snap_begin(cs_buf *b, int kg_first, int kg_last, int nstates) {
  cs_buf_reset(b);
  cs_buf_append(b, "CSSNAP1\0", 8);
  le(b, 1, 4);
  le(b, 0, 4);
  le(b, 0, 8); /* total length, set by snap_seal */
  le(b, (uint64_t)kg_first, 2);
  le(b, (uint64_t)kg_last, 2);
  le(b, (uint64_t)nstates, 4);
}

static void snap_state(cs_buf *b, int id, int kind, const char *name) {
  varint(b, (uint64_t)id);
  le(b, (uint64_t)kind, 1);
  varint(b, strlen(name));
  cs_buf_append(b, name, strlen(name));
}

static void snap_entry(cs_buf *b, int id, int kg, cs_slice k, cs_slice u,
                       cs_slice v) {
  varint(b, (uint64_t)id);
  le(b, (uint64_t)kg, 2);
  varint(b, k.len);
  varint(b, u.len);
  varint(b, v.len);
  cs_buf_append(b, k.data, k.len);
  cs_buf_append(b, u.data, u.len);
  cs_buf_append(b, v.data, v.len);
}

/* Sets the total length of b[0, len) and recomputes its checksum. */
static void reseal(char *b, size_t len) {
  for (int i = 0; i < 8; i++) b[16 + i] = (char)((uint64_t)len >> (8 * i));
  uint64_t h = XXH3_64bits(b, len - 8);
  for (int i = 0; i < 8; i++) b[len - 8 + i] = (char)(h >> (8 * i));
}

static void snap_end(cs_buf *b, uint64_t count) {
  le(b, count, 8);
  le(b, 0, 8);
  reseal(b->data, b->len);
}

static int restore_fresh(make_fn make, cs_buf *b, cs_backend **out) {
  cs_backend *be = make();
  int rc = cs_backend_restore(be, b->data, b->len, 0, 65535);
  if (out) *out = be;
  else be->ops->destroy(be);
  return rc;
}

static void test_handmade_snapshot(make_fn make) {
  cs_buf b = {0};
  cs_slice none = {NULL, 0};
  cs_backend *be;

  /* A list scanned in pieces comes back whole; a MAP entry with ukey. */
  snap_begin(&b, 0, 127, 2);
  snap_state(&b, 1, CS_STATE_MAP, "m");
  snap_state(&b, 0, CS_STATE_LIST, "l");
  snap_entry(&b, 0, 9, S("k"), none, S("[1]"));
  snap_entry(&b, 0, 9, S("k"), none, S("[2][3]"));
  snap_entry(&b, 0, 10, S("k"), none, S("[4]"));
  snap_entry(&b, 1, 9, S("k"), S("uk"), S("mv"));
  snap_end(&b, 4);
  CHECK_EQ_INT(restore_fresh(make, &b, &be), 0);
  int l = be->ops->register_state(be, "l", CS_STATE_LIST);
  int m = be->ops->register_state(be, "m", CS_STATE_MAP);
  CHECK(get_is(be, l, 9, S("k"), NULL, S("[1][2][3]")));
  CHECK(get_is(be, l, 10, S("k"), NULL, S("[4]")));
  cs_slice uk = S("uk");
  CHECK(get_is(be, m, 9, S("k"), &uk, S("mv")));
  CHECK_EQ_INT(scan_count(be, 0, 65535), 3);
  /* Restoring over a state of another kind is a state error. */
  cs_backend *clash = make();
  CHECK(clash->ops->register_state(clash, "l", CS_STATE_VALUE) >= 0);
  CHECK_EQ_INT(cs_backend_restore(clash, b.data, b.len, 0, 65535), CS_ESTATE);
  clash->ops->destroy(clash);
  be->ops->destroy(be);

  /* Well-sealed but malformed: each is CS_EDECODE and loads nothing. */
  for (int c = 0; c < 10; c++) {
    int nst = c == 0 || c == 9 ? 2 : 1;
    snap_begin(&b, 0, 127, nst);
    /* 6: an unknown kind; 7: a NUL in the name */
    if (c == 7) {
      varint(&b, 0);
      le(&b, CS_STATE_VALUE, 1);
      varint(&b, 3);
      cs_buf_append(&b, "a\0b", 3);
    } else {
      snap_state(&b, 0, c == 6 ? 4 : CS_STATE_VALUE, "v");
    }
    if (c == 0) snap_state(&b, 0, CS_STATE_LIST, "dup"); /* duplicate id */
    if (c == 9) snap_state(&b, 1, CS_STATE_LIST, "v");   /* duplicate name */
    int id = c == 1 ? 1 : 0;                              /* unknown state */
    int kg = c == 2 ? 128 : 5;                            /* outside header */
    cs_slice u = c == 3 ? S("u") : none;                  /* ukey, not MAP */
    snap_entry(&b, id, kg, S("k"), u, S("v"));
    if (c == 8) b.len -= 1; /* an entry cut short */
    snap_end(&b, c == 4 ? 2 : 1); /* 4: wrong count */
    if (c == 5) { /* an unknown version */
      b.data[8] = 2;
      reseal(b.data, b.len);
    }
    cs_backend *x = make();
    int rc = cs_backend_restore(x, b.data, b.len, 0, 65535);
    if (rc != CS_EDECODE || x->ops->state_count(x) != 0) {
      fprintf(stderr, "malformed snapshot case %d: rc %d\n", c, rc);
      CHECK(0);
    }
    x->ops->destroy(x);
  }
  cs_buf_free(&b);
}

/* Random damage behind a valid checksum: the parser must stay inside the
 * buffer (ASan watches) and either load or say CS_EDECODE. */
static void test_resealed_fuzz(make_fn make) {
  cs_backend *src = make();
  populate(src, 200);
  cs_buf snap = {0}, b = {0};
  CHECK_EQ_INT(cs_backend_snapshot(src, 0, 65535, &snap), 0);
  src->ops->destroy(src);
  uint32_t x = 99;
  long bad = 0, decoded = 0;
  for (int round = 0; round < 3000; round++) {
    cs_buf_reset(&b);
    cs_buf_append(&b, snap.data, snap.len);
    x = x * 1664525u + 1013904223u;
    if (round % 3 == 0) {
      /* cut the body somewhere and keep the footer */
      size_t body = b.len - 16 - 32, cut = 32 + (x >> 8) % body;
      memmove(b.data + cut, b.data + b.len - 16, 16);
      b.len = cut + 16;
    } else {
      for (int k = 0; k <= round % 4; k++) {
        x = x * 1664525u + 1013904223u;
        size_t at = 32 + (x >> 8) % (b.len - 32 - 8);
        b.data[at] = (char)(b.data[at] ^ (1 + (x & 0x7f)));
      }
    }
    reseal(b.data, b.len);
    if (round % contract_stride) continue;
    cs_backend *be = make();
    int rc = cs_backend_restore(be, b.data, b.len, 0, 65535);
    if (rc == CS_EDECODE) {
      decoded++;
      if (be->ops->state_count(be) != 0) bad++;
    } else if (rc != 0) {
      bad++;
    }
    be->ops->destroy(be);
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(decoded > 1000 / contract_stride);
  cs_buf_free(&snap);
  cs_buf_free(&b);
}

/* ================================================================ OOM */

typedef struct oom_case {
  int state;
  int kg;
  cs_slice key;
  const cs_slice *ukey;
  cs_slice val;
  int op; /* 0 put, 1 append, 2 del */
} oom_case;

static int run_case(cs_backend *be, const oom_case *c) {
  switch (c->op) {
  case 0: return be->ops->put(be, c->state, c->kg, c->key, c->ukey, c->val);
  case 1: return be->ops->append(be, c->state, c->kg, c->key, c->val);
  default: return be->ops->del(be, c->state, c->kg, c->key, c->ukey);
  }
}

/* Fails the 1st, 2nd, ... allocation of the operation until it succeeds;
 * each failure must be CS_ENOMEM and leave the backend as it was. Returns
 * the number of failures seen. */
static int oom_loop(cs_backend *be, const oom_case *c) {
  digest before = digest_of(be);
  for (long n = 1; n < 100; n++) {
    cs_fail_nth_alloc(n);
    int rc = run_case(be, c);
    cs_fail_nth_alloc(0);
    if (rc == 0) return (int)n - 1;
    CHECK_EQ_INT(rc, CS_ENOMEM);
    CHECK(digest_eq(digest_of(be), before));
  }
  CHECK(0 && "operation never succeeded");
  return 0;
}

static void test_oom(make_fn make, int flags) {
  /* Creating a backend. */
  cs_backend *be = NULL;
  for (long n = 1; be == NULL && n < 100; n++) {
    cs_fail_nth_alloc(n);
    be = make();
    cs_fail_nth_alloc(0);
  }
  CHECK(be != NULL);
  /* Registering states. */
  int v = -1, l = -1, m = -1;
  for (long n = 1; v < 0 && n < 100; n++) {
    cs_fail_nth_alloc(n);
    v = be->ops->register_state(be, "v", CS_STATE_VALUE);
    cs_fail_nth_alloc(0);
    CHECK(v >= 0 || v == CS_ENOMEM);
  }
  l = be->ops->register_state(be, "l", CS_STATE_LIST);
  m = be->ops->register_state(be, "m", CS_STATE_MAP);
  CHECK(v >= 0 && l >= 0 && m >= 0);

  /* New keys (through several table growths), growing values, list
   * appends, new map keys and user keys. */
  char kb[5], big[600];
  memset(big, 'x', sizeof(big));
  int failures = 0;
  for (int i = 0; i < 70; i++) {
    cs_slice k = key_of(i, kb), u = B(kb, 5);
    oom_case cases[] = {
        {v, i % 3, k, NULL, S("small"), 0},
        {v, i % 3, k, NULL, B(big, 100 + (size_t)i * 7), 0}, /* grows */
        {v, i % 3, k, NULL, S("s"), 0},                      /* shrinks */
        {l, i % 3, k, NULL, B(big, 10 + (size_t)i), 1},
        {l, i % 3, k, NULL, B(big, 300), 1},
        {m, i % 3, k, &u, S("mv"), 0},
        {m, 1, S("one key"), &u, B(big, (size_t)i), 0},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
      failures += oom_loop(be, &cases[c]);
    cs_slice got;
    CHECK_EQ_INT(be->ops->get(be, v, i % 3, k, NULL, &got), 0);
    CHECK(slice_eq(got, S("s")));
    CHECK(get_is(be, m, 1, S("one key"), &u, B(big, (size_t)i)));
  }
  if (flags & CONTRACT_OPS_USE_CS_ALLOC) CHECK(failures > 70);

  /* Iterators, snapshot and restore. */
  cs_backend_iter *it = NULL;
  int rc = CS_ENOMEM;
  for (long n = 1; rc == CS_ENOMEM && n < 100; n++) {
    cs_fail_nth_alloc(n);
    rc = be->ops->map_iter(be, m, 1, S("one key"), &it);
    cs_fail_nth_alloc(0);
  }
  CHECK_EQ_INT(rc, 0);
  be->ops->iter_destroy(it);
  rc = CS_ENOMEM;
  for (long n = 1; rc == CS_ENOMEM && n < 100; n++) {
    cs_fail_nth_alloc(n);
    rc = be->ops->scan_iter(be, 0, 65535, &it);
    cs_fail_nth_alloc(0);
  }
  CHECK_EQ_INT(rc, 0);
  be->ops->iter_destroy(it);

  cs_buf snap = {0};
  rc = CS_ENOMEM;
  for (long n = 1; rc == CS_ENOMEM && n < 1000; n++) {
    cs_fail_nth_alloc(n);
    rc = cs_backend_snapshot(be, 0, 65535, &snap);
    cs_fail_nth_alloc(0);
    if (rc) CHECK_EQ_INT(snap.len, 0);
  }
  CHECK_EQ_INT(rc, 0);
  rc = CS_ENOMEM;
  cs_buf d1 = {0}, d2 = {0};
  for (long n = 1; rc == CS_ENOMEM && n < 100000; n++) {
    cs_backend *r = make();
    cs_fail_nth_alloc(n);
    rc = cs_backend_restore(r, snap.data, snap.len, 0, 65535);
    cs_fail_nth_alloc(0);
    if (rc == 0) {
      long n1 = dump(be, 0, 65535, &d1), n2 = dump(r, 0, 65535, &d2);
      CHECK_EQ_INT(n1, n2);
      CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
    } else {
      CHECK_EQ_INT(rc, CS_ENOMEM);
    }
    r->ops->destroy(r);
  }
  CHECK_EQ_INT(rc, 0);
  cs_buf_free(&d1);
  cs_buf_free(&d2);
  cs_buf_free(&snap);
  be->ops->destroy(be);
}

/* ========================================================== the suite */

static void backend_contract(make_fn make, int flags) {
  const char *full = getenv("CS_CONTRACT_FULL");
  contract_stride = (flags & CONTRACT_COSTLY_MAKE) &&
                            !(full != NULL && strcmp(full, "1") == 0)
                        ? CONTRACT_STRIDE
                        : 1;
  test_register(make);
  test_forget_states(make);
  test_value(make);
  test_independence(make);
  test_list(make);
  test_map(make);
  test_many_values(make);
  test_scan(make);
  test_snapshot(make);
  test_corrupt_snapshot(make);
  test_handmade_snapshot(make);
  test_resealed_fuzz(make);
  test_oom(make, flags);
}

/* Writes the 12-byte key "user-NNNNNNN" of counter i into b. */
static void counter_key(char b[12], int i) {
  memcpy(b, "user-", 5);
  for (int d = 11; d >= 5; d--, i /= 10) b[d] = (char)('0' + i % 10);
}

/* Not an assertion: value get+put pairs per second, 1M operations over 100k
 * keys of 12 bytes with 8-byte values, keys visited in a pseudo-random
 * order. As in the engine, each record's key is built fresh (so it is in
 * cache) and its key group computed from it; both are counted. */
static void timing(make_fn make, const char *name) {
  enum { NKEYS = 100000, NOPS = 1000000 };
  cs_backend *be = make();
  int st = be->ops->register_state(be, "counter", CS_STATE_VALUE);
  char kb[12];
  for (int i = 0; i < NKEYS; i++) {
    counter_key(kb, i);
    uint64_t zero = 0;
    be->ops->put(be, st, (int)(XXH3_64bits(kb, 12) % NKG), B(kb, 12), NULL,
                 B(&zero, 8));
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint32_t x = 12345;
  long errors = 0;
  for (int i = 0; i < NOPS; i++) {
    x = x * 1664525u + 1013904223u;
    counter_key(kb, (int)((x >> 8) % NKEYS));
    int kg = (int)(XXH3_64bits(kb, 12) % NKG);
    cs_slice v;
    uint64_t c = 0;
    if (be->ops->get(be, st, kg, B(kb, 12), NULL, &v) == 0 && v.len == 8)
      memcpy(&c, v.data, 8);
    else
      errors++;
    c++;
    errors += be->ops->put(be, st, kg, B(kb, 12), NULL, B(&c, 8)) != 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  CHECK_EQ_INT(errors, 0);
  printf("%s backend: %.2f M value get+put pairs/s (%d pairs over %d keys "
         "in %.3f s)\n",
         name, NOPS / s / 1e6, NOPS, NKEYS, s);
  be->ops->destroy(be);
}

#endif /* CS_BACKEND_CONTRACT_H */
