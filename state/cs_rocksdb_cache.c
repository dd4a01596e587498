/*
 * cs_rocksdb_cache.c - the write-back cache of VALUE states in front of the
 * RocksDB backend (cs_rocksdb.c calls it from get, put and del).
 *
 * VALUE states (value, reducing, aggregating, folding) are read and updated
 * once per record, and a RocksDB get+put costs microseconds (memtable skip
 * list, comparator calls). A write-back cache in front of them keeps the
 * hot keys in a hash table: a get that hits costs a hash lookup, a put
 * only marks the entry dirty. Dirty entries reach RocksDB in one write batch
 * before anything reads RocksDB itself (a checkpoint, a scan) and when the
 * cache outgrows its budget, after which it is emptied (hot keys come back
 * on their next use). LIST and MAP states go to RocksDB directly.
 *
 * Entries are keyed by state id and composite key (kg ++ key, as stored in
 * RocksDB), in an open-addressing table that lives in the backend
 * (r->ctab); r->climit is the budget, 0 when there is no cache.
 */
#include "cs_rocksdb_int.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

typedef struct cs__rocksdb_centry {
  uint64_t hash; /* 0: an empty slot */
  char *buf;     /* the composite key, then the value */
  uint32_t klen, vlen, vcap;
  int state;
  unsigned char dirty;  /* differs from RocksDB */
  unsigned char absent; /* deleted (dirty) */
} centry;

#define CENTRY_OVERHEAD 16 /* the allocator's header; slots are counted apart */

/* ============================================================== table */

static uint64_t chash(int state, const char *k, size_t n) {
  uint64_t h = XXH3_64bits_withSeed(k, n, (uint64_t)state);
  return h ? h : 1;
}

static centry *cfind(cs__rocksdb *r, uint64_t h, int state, const char *k,
                     size_t n) {
  if (r->cmask == 0) return NULL;
  for (size_t i = h & r->cmask;; i = (i + 1) & r->cmask) {
    centry *e = &r->ctab[i];
    if (e->hash == 0) return e;
    if (e->hash == h && e->state == state && e->klen == n &&
        memcmp(e->buf, k, n) == 0)
      return e;
  }
}

static int cgrow(cs__rocksdb *r) {
  size_t n = r->cmask ? (r->cmask + 1) * 2 : 1024;
  centry *t = cs_calloc(n, sizeof(*t));
  if (t == NULL) return CS_ENOMEM;
  if (r->ndirty > 0 && n > UINT32_MAX) {
    cs_free(t);
    return CS_ENOMEM;
  }
  r->ndirty = 0; /* the slots move: the list is rebuilt */
  for (size_t i = 0; r->cmask && i <= r->cmask; i++) {
    centry *e = &r->ctab[i];
    if (e->hash == 0) continue;
    size_t j = e->hash & (n - 1);
    while (t[j].hash) j = (j + 1) & (n - 1);
    t[j] = *e;
    if (e->dirty) r->cdirty[r->ndirty++] = (uint32_t)j; /* room: no growth */
  }
  r->cbytes += (n - (r->cmask ? r->cmask + 1 : 0)) * sizeof(centry);
  cs_free(r->ctab);
  r->ctab = t;
  r->cmask = n - 1;
  return 0;
}

/* Writes the dirty entries in one batch and marks them clean; with drop,
 * empties the cache too. Returns 0 or CS_EIO. */
int cs__rocksdb_cache_flush(cs__rocksdb *r, int drop) {
  if (r->cmask == 0) return 0;
  /* Entries an asynchronous checkpoint marked clean are in RocksDB only
   * once it has staged: until then they must stay, and writes wait. */
  int rc = cs__rocksdb_wait_writable(r);
  if (rc) return rc;
  rocksdb_writebatch_t *wb = NULL;
  for (size_t d = 0; d < r->ndirty; d++) {
    centry *e = &r->ctab[r->cdirty[d]];
    if (e->hash == 0 || !e->dirty) continue;
    if (wb == NULL) wb = rocksdb_writebatch_create();
    rocksdb_column_family_handle_t *cf = r->states[e->state].cf;
    if (e->absent)
      rocksdb_writebatch_delete_cf(wb, cf, e->buf, e->klen);
    else
      rocksdb_writebatch_put_cf(wb, cf, e->buf, e->klen, e->buf + e->klen,
                                e->vlen);
  }
  if (wb) {
    char *rerr = NULL;
    rocksdb_write(r->db, r->wo, wb, &rerr);
    rocksdb_writebatch_destroy(wb);
    if (rerr) rc = cs__rocksdb_rocks_fail(r, "write", rerr);
  }
  if (rc) return rc;
  for (size_t d = 0; d < r->ndirty; d++) r->ctab[r->cdirty[d]].dirty = 0;
  r->ndirty = 0;
  for (size_t i = 0; drop && i <= r->cmask; i++) {
    centry *e = &r->ctab[i];
    if (e->hash == 0) continue;
    cs_free(e->buf);
    e->hash = 0;
  }
  if (drop) {
    cs_free(r->ctab);
    r->ctab = NULL;
    r->cmask = r->ccount = r->cbytes = 0;
  }
  return rc;
}

/* The entry of (state, k), created empty (clean, absent) when missing.
 * NULL when out of memory. */
static centry *centry_get(cs__rocksdb *r, int state, const char *k, size_t n) {
  uint64_t h = chash(state, k, n);
  if ((r->ccount + 1) * 4 > (r->cmask + 1) * 3 || r->cmask == 0)
    if (cgrow(r)) return NULL;
  centry *e = cfind(r, h, state, k, n);
  if (e->hash) return e;
  char *buf = cs_malloc(n + 16);
  if (buf == NULL) return NULL;
  memcpy(buf, k, n);
  e->hash = h, e->buf = buf, e->klen = (uint32_t)n, e->vlen = 0, e->vcap = 16;
  e->state = state, e->dirty = 0, e->absent = 1;
  r->ccount++;
  r->cbytes += n + 16 + CENTRY_OVERHEAD;
  return e;
}

/* Sets the entry's value to v (which may point into any entry). */
static int centry_set(cs__rocksdb *r, centry *e, cs_slice v) {
  if (v.len > e->vcap) {
    size_t cap = v.len + v.len / 4 + 8;
    if (cap > UINT32_MAX - e->klen) return CS_ENOMEM;
    char *buf = cs_malloc(e->klen + cap);
    if (buf == NULL) return CS_ENOMEM;
    memcpy(buf, e->buf, e->klen);
    memcpy(buf + e->klen, v.data, v.len); /* v.len > 0 */
    cs_free(e->buf);
    r->cbytes += cap - e->vcap;
    e->buf = buf, e->vcap = (uint32_t)cap;
  } else if (v.len) {
    memmove(e->buf + e->klen, v.data, v.len);
  }
  e->vlen = (uint32_t)v.len;
  e->absent = 0;
  return 0;
}

/* Makes room to list one more dirty entry: 0 or CS_ENOMEM. */
static int cdirty_reserve(cs__rocksdb *r) {
  if (r->ndirty == r->cdirty_cap) {
    size_t cap = r->cdirty_cap ? r->cdirty_cap * 2 : 256;
    uint32_t *d = cs_realloc(r->cdirty, cap * sizeof(*d));
    if (d == NULL) return CS_ENOMEM;
    r->cdirty = d;
    r->cdirty_cap = cap;
  }
  return 0;
}

/* Marks e dirty, listing it when it was clean (after cdirty_reserve). */
static void cmark_dirty(cs__rocksdb *r, centry *e) {
  if (e->dirty) return;
  r->cdirty[r->ndirty++] = (uint32_t)(e - r->ctab);
  e->dirty = 1;
}

/* After a write into the cache: keeps it within its budget. */
static int cbound(cs__rocksdb *r) {
  if (r->cbytes <= r->climit) return 0;
  /* While a checkpoint stages its files, emptying the cache would wait for
   * it: the cache may grow to twice its budget first. */
  if (atomic_load(&r->exclusive) && r->cbytes / 2 <= r->climit) return 0;
  return cs__rocksdb_cache_flush(r, 1);
}

/* ========================================================= operations */

int cs__rocksdb_cache_get(cs__rocksdb *r, int state, const char *k, size_t n,
                          cs_slice *val) {
  centry *e = cfind(r, chash(state, k, n), state, k, n);
  if (e == NULL || e->hash == 0) return 0;
  if (e->absent) return CS_ENOTFOUND;
  val->data = e->buf + e->klen;
  val->len = e->vlen;
  return 1;
}

/* Kept clean in the cache while within budget (a get never empties it:
 * views handed out earlier stay valid). */
int cs__rocksdb_cache_keep(cs__rocksdb *r, int state, const char *k,
                           size_t n, cs_slice *val) {
  if (r->cbytes + n + val->len >= r->climit) return 0;
  centry *e = centry_get(r, state, k, n);
  if (e == NULL || centry_set(r, e, *val) != 0) return 0;
  val->data = e->buf + e->klen;
  return 1;
}

int cs__rocksdb_cache_put(cs__rocksdb *r, int state, const char *k, size_t n,
                          cs_slice val) {
  centry *e = centry_get(r, state, k, n);
  int rc = e ? cdirty_reserve(r) : CS_ENOMEM;
  if (rc == 0) rc = centry_set(r, e, val);
  if (rc) return rc;
  cmark_dirty(r, e);
  return cbound(r);
}

int cs__rocksdb_cache_del(cs__rocksdb *r, int state, const char *k,
                          size_t n) {
  centry *e = centry_get(r, state, k, n);
  if (e == NULL || cdirty_reserve(r)) return CS_ENOMEM;
  cmark_dirty(r, e);
  e->absent = 1;
  e->vlen = 0;
  return cbound(r);
}

int cs__rocksdb_cache_take(cs__rocksdb *r, rocksdb_writebatch_t **out) {
  *out = NULL;
  if (r->ndirty == 0) return 0;
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  if (wb == NULL) return CS_ENOMEM;
  for (size_t d = 0; d < r->ndirty; d++) {
    centry *e = &r->ctab[r->cdirty[d]];
    rocksdb_column_family_handle_t *cf = r->states[e->state].cf;
    if (e->absent)
      rocksdb_writebatch_delete_cf(wb, cf, e->buf, e->klen);
    else
      rocksdb_writebatch_put_cf(wb, cf, e->buf, e->klen, e->buf + e->klen,
                                e->vlen);
    e->dirty = 0;
  }
  r->ndirty = 0;
  *out = wb;
  return 0;
}

void cs__rocksdb_cache_free(cs__rocksdb *r) {
  for (size_t i = 0; r->cmask && i <= r->cmask; i++)
    if (r->ctab[i].hash) cs_free(r->ctab[i].buf);
  cs_free(r->ctab);
  cs_free(r->cdirty);
}
