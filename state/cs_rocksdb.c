/*
 * cs_rocksdb.c - the RocksDB state backend: keys, get views, the operations
 * of cs_backend.h, iterators, states (see cs_rocksdb.h for the layout of
 * keys and column families). Opening, the value cache, files, checkpoints
 * and restore have files of their own, listed in cs_rocksdb_int.h.
 *
 * Hot path. A get is one rocksdb_get_pinned_cf: the value is not copied but
 * pinned (in the memtable's copy or a block of the block cache) and the pin
 * is kept in a ring of CS__ROCKSDB_PIN_RING slots, released by the next
 * mutating call or when the ring wraps. A put, del or append composes the key
 * on the stack (heap only past KEY_STACK bytes), writes without the WAL, then
 * releases the pins, after the write, since the value written may be one of
 * the views. VALUE states are read and written through the write-back
 * cache of cs_rocksdb_cache.c when there is one.
 *
 * Map iterators. RocksDB iterators read a snapshot, so they would never see
 * a concurrent mutation; the contract asks for CS_ESTATE instead. The backend
 * keeps its live iterators on a list, and a mutation of a MAP state marks the
 * map iterators of that very (state, kg, key) stale; there are rarely more
 * than one or two, so the walk costs nothing when there are none.
 *
 * The conventions of every file of the backend (RocksDB errors, rerr) are
 * in cs_rocksdb_int.h, with what the files share.
 */
#include "cs_rocksdb_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define KG_MAX 65535
#define KEY_STACK 256 /* composite keys up to this size stay on stack */

/* ============================================================== types */

typedef struct cs__rocksdb_iter riter;

enum { ITER_MAP = 1, ITER_SCAN = 2 };

struct cs__rocksdb_iter {
  cs__rocksdb *r; /* NULL once the backend is destroyed */
  riter *prev, *next;
  int type;
  int stale; /* ITER_MAP: its (state, kg, key) was mutated */
  int done;
  int started; /* the RocksDB iterator is on an entry already returned */
  int state;   /* ITER_MAP: its state; ITER_SCAN: the state being walked */
  int kg_first;
  int kg_last;
  rocksdb_iterator_t *it;    /* ITER_MAP */
  rocksdb_readoptions_t *ro; /* holds a pointer to the bounds below */
  rocksdb_iterator_t **its;  /* ITER_SCAN: one per state, NULL once done */
  int nits;
  char lower[2], upper[2];   /* ITER_SCAN bounds */
  size_t klen;               /* ITER_MAP: key length */
  size_t plen;               /* ITER_MAP: prefix length */
  size_t ulen;               /* ITER_MAP: upper bound length, 0: none */
  char buf[]; /* ITER_MAP: prefix kg ++ varint ++ key, then upper bound */
};

static const char empty_bytes[1];

/* ============================================================ errors */

/* Writes a message into err (when there is room) and returns rc. */
int cs__rocksdb_errf(char *err, size_t errlen, int rc, const char *fmt, ...) {
  if (err != NULL && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* For vtable operations, which have no message buffer: logs a RocksDB
 * error with what was being done and where, frees it, returns CS_EIO. */
int cs__rocksdb_rocks_fail(cs__rocksdb *r, const char *what, char *rerr) {
  fprintf(stderr, "cstream-lua: rocksdb %s in %s: %s\n", what, r->workdir,
          rerr);
  rocksdb_free(rerr);
  return CS_EIO;
}

/* For set-up functions: moves a RocksDB error into err and returns rc. */
int cs__rocksdb_rocks_errf(char *err, size_t errlen, int rc, const char *what,
                           const char *where, char *rerr) {
  cs__rocksdb_errf(err, errlen, rc, "rocksdb %s %s: %s", what, where, rerr);
  rocksdb_free(rerr);
  return rc;
}

/* ============================================================== keys */

int cs__rocksdb_wait_writable(cs__rocksdb *r) {
  if (atomic_load(&r->exclusive)) {
    uv_mutex_lock(&r->xlock);
    while (atomic_load(&r->exclusive)) uv_cond_wait(&r->xcond, &r->xlock);
    uv_mutex_unlock(&r->xlock);
  }
  if (atomic_load(&r->broken)) {
    fprintf(stderr, "cstream-lua: RocksDB state in %s: the write of a "
            "checkpoint's cached state failed; the backend takes no more "
            "writes\n", r->workdir);
    return CS_EIO;
  }
  return 0;
}

static inline const char *slice_ptr(cs_slice s) {
  return s.data ? s.data : empty_bytes;
}

static size_t varint_len(size_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static size_t put_varint(char *p, size_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (char)v;
  return n;
}

/* Reads a varint from p[0, len); returns its length, 0 when malformed. */
static size_t get_varint(const char *p, size_t len, size_t *v) {
  size_t r = 0;
  for (size_t i = 0; i < len && i < 10; i++) {
    unsigned char b = (unsigned char)p[i];
    if (i == 9 && b > 1) return 0;
    r |= (size_t)(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      *v = r;
      return i + 1;
    }
  }
  return 0;
}

/* A composite key: on the stack when it fits, else from cs_malloc. */
typedef struct ckey {
  char *p;
  size_t len;
  char stack[KEY_STACK];
} ckey;

/* Composes kg ++ [varint(key.len) when map] ++ key ++ [*ukey] into k; with
 * twice, leaves room for a copy of it right after it. Returns 0 or
 * CS_ENOMEM; release with ckey_done. */
static int ckey_make(ckey *k, int kg, cs_slice key, int map,
                     const cs_slice *ukey, int twice) {
  size_t ulen = ukey ? ukey->len : 0;
  if (key.len > SIZE_MAX / 8 || ulen > SIZE_MAX / 8) return CS_ENOMEM;
  size_t n = 2 + (map ? varint_len(key.len) : 0) + key.len + ulen;
  size_t room = twice ? 2 * n : n;
  k->p = room <= KEY_STACK ? k->stack : cs_malloc(room);
  if (k->p == NULL) return CS_ENOMEM;
  k->p[0] = (char)(kg >> 8);
  k->p[1] = (char)kg;
  size_t at = 2;
  if (map) at += put_varint(k->p + at, key.len);
  if (key.len) memcpy(k->p + at, key.data, key.len);
  at += key.len;
  if (ulen) memcpy(k->p + at, ukey->data, ulen);
  k->len = at + ulen;
  return 0;
}

static void ckey_done(ckey *k) {
  if (k->p != k->stack) cs_free(k->p);
}

/* Turns p[0, n) into the least byte string greater than every string that
 * starts with it. Returns its length, 0 when there is none (all 0xff). */
static size_t prefix_successor(char *p, size_t n) {
  while (n > 0 && (unsigned char)p[n - 1] == 0xff) n--;
  if (n > 0) p[n - 1] = (char)((unsigned char)p[n - 1] + 1);
  return n;
}

/* ========================================================== arguments */

static inline cs__rocksdb_state *state_at(cs__rocksdb *r, int state, int kg) {
  if (state < 0 || state >= r->nstates || kg < 0 || kg > KG_MAX) return NULL;
  return &r->states[state];
}

static inline int ukey_ok(const cs__rocksdb_state *s, const cs_slice *ukey) {
  return (s->kind == CS_STATE_MAP) == (ukey != NULL);
}

/* ============================================================== views */

/* Keeps p alive until the next mutating call or until the ring wraps. */
static void pin(cs__rocksdb *r, rocksdb_pinnableslice_t *p) {
  rocksdb_pinnableslice_t **slot = &r->pins[r->pin_next];
  if (*slot)
    rocksdb_pinnableslice_destroy(*slot);
  else
    r->npinned++;
  *slot = p;
  r->pin_next = (r->pin_next + 1) % CS__ROCKSDB_PIN_RING;
}

static void release_pins(cs__rocksdb *r) {
  if (r->npinned == 0) return;
  for (int i = 0; i < CS__ROCKSDB_PIN_RING; i++) {
    if (r->pins[i]) rocksdb_pinnableslice_destroy(r->pins[i]);
    r->pins[i] = NULL;
  }
  r->npinned = 0;
  r->pin_next = 0;
}

/* Marks the live map iterators of (state, kg, key) stale. */
static void touch(cs__rocksdb *r, int state, int kg, cs_slice key) {
  for (riter *it = r->iters; it != NULL; it = it->next) {
    if (it->type == ITER_MAP && it->state == state && it->kg_first == kg &&
        it->klen == key.len &&
        (key.len == 0 ||
         memcmp(it->buf + it->plen - it->klen, key.data, key.len) == 0))
      it->stale = 1;
  }
}

/* ========================================================= operations */

/* The ops below implement cs_backend.h. Misuse (a state id or key group
 * out of range, a ukey given to a non-MAP state or missing for a MAP one,
 * append on a non-LIST state, any mutation of a read-only backend) is
 * CS_EINVAL; a RocksDB failure is logged and CS_EIO. */

/* Finds a state by name or creates its column family; ids are dense, in
 * creation order, as the column family ids are. A name comes back only with
 * its kind and TTL configuration; a TTL state's column family gets the
 * compaction filter of its configuration. */
static int rdb_register_ttl_state(cs_backend *be, const char *name,
                                  cs_state_kind kind, const cs_ttl_config *ttl) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (name == NULL || kind < CS_STATE_VALUE || kind > CS_STATE_MAP ||
      (ttl != NULL && !cs_ttl_config_valid(ttl)))
    return CS_EINVAL;
  for (int i = 0; i < r->nstates; i++) {
    cs__rocksdb_state *s = &r->states[i];
    if (strcmp(s->name, name) == 0)
      return s->kind == kind && cs_ttl_config_eq(s->has_ttl ? &s->ttl : NULL, ttl)
                 ? i : CS_ESTATE;
  }
  if (r->readonly) return CS_EINVAL;
  if (r->nstates == r->cap) {
    if (r->cap > INT32_MAX / 2) return CS_ENOMEM;
    int cap = r->cap ? r->cap * 2 : 8;
    cs__rocksdb_state *ns =
        cs_realloc(r->states, (size_t)cap * sizeof(cs__rocksdb_state));
    if (ns == NULL) return CS_ENOMEM;
    r->states = ns;
    r->cap = cap;
  }
  int wrc = cs__rocksdb_wait_writable(r);
  if (wrc) return wrc;
  cs_buf cfname = {0};
  char *copy = cs_strdup(name);
  rocksdb_options_t *o = ttl ? cs__rocksdb_ttl_options(r->opts, kind, ttl) : r->opts;
  if (copy == NULL || o == NULL || cs__rocksdb_cf_name(kind, ttl, name, &cfname)) {
    if (o && o != r->opts) rocksdb_options_destroy(o);
    cs_free(copy);
    cs_buf_free(&cfname);
    return CS_ENOMEM;
  }
  char *rerr = NULL;
  rocksdb_column_family_handle_t *cf =
      rocksdb_create_column_family(r->db, o, cfname.data, &rerr);
  if (o != r->opts) rocksdb_options_destroy(o); /* the family keeps its filter */
  cs_buf_free(&cfname);
  if (rerr) {
    if (cf) rocksdb_column_family_handle_destroy(cf); /* NULL inside */
    cs_free(copy);
    return cs__rocksdb_rocks_fail(r, "create column family", rerr);
  }
  cs__rocksdb_state *s = &r->states[r->nstates];
  memset(s, 0, sizeof(*s));
  s->name = copy;
  s->kind = kind;
  if (ttl) {
    s->has_ttl = 1;
    s->ttl = *ttl;
  }
  s->cf = cf;
  return r->nstates++;
}

static int rdb_register_state(cs_backend *be, const char *name,
                              cs_state_kind kind) {
  return rdb_register_ttl_state(be, name, kind, NULL);
}

static int rdb_get(cs_backend *be, int state, int kg, cs_slice key,
                   const cs_slice *ukey, cs_slice *val) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  cs__rocksdb_state *s = state_at(r, state, kg);
  if (s == NULL || !ukey_ok(s, ukey) || val == NULL) return CS_EINVAL;
  ckey k;
  int rc = ckey_make(&k, kg, key, s->kind == CS_STATE_MAP, ukey, 0);
  if (rc) return rc;
  int cached = r->climit && s->kind == CS_STATE_VALUE;
  if (cached) {
    rc = cs__rocksdb_cache_get(r, state, k.p, k.len, val);
    if (rc) {
      ckey_done(&k);
      return rc == 1 ? 0 : rc;
    }
  }
  char *rerr = NULL;
  rocksdb_pinnableslice_t *p =
      rocksdb_get_pinned_cf(r->db, r->ro, s->cf, k.p, k.len, &rerr);
  if (rerr) {
    ckey_done(&k);
    return cs__rocksdb_rocks_fail(r, "get", rerr);
  }
  if (p == NULL) {
    ckey_done(&k);
    return CS_ENOTFOUND;
  }
  val->data = rocksdb_pinnableslice_value(p, &val->len);
  int kept = cached && cs__rocksdb_cache_keep(r, state, k.p, k.len, val);
  ckey_done(&k);
  if (kept) {
    rocksdb_pinnableslice_destroy(p);
    return 0;
  }
  pin(r, p);
  return 0;
}

static int rdb_put(cs_backend *be, int state, int kg, cs_slice key,
                   const cs_slice *ukey, cs_slice val) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  cs__rocksdb_state *s = state_at(r, state, kg);
  if (s == NULL || !ukey_ok(s, ukey) || r->readonly) return CS_EINVAL;
  ckey k;
  int rc = ckey_make(&k, kg, key, s->kind == CS_STATE_MAP, ukey, 0);
  if (rc) return rc;
  if (r->climit && s->kind == CS_STATE_VALUE) {
    rc = cs__rocksdb_cache_put(r, state, k.p, k.len, val);
    ckey_done(&k);
    release_pins(r);
    return rc;
  }
  if ((rc = cs__rocksdb_wait_writable(r)) != 0) {
    ckey_done(&k);
    return rc;
  }
  char *rerr = NULL;
  rocksdb_put_cf(r->db, r->wo, s->cf, k.p, k.len, slice_ptr(val), val.len,
                 &rerr);
  ckey_done(&k);
  if (s->kind == CS_STATE_MAP) touch(r, state, kg, key);
  release_pins(r); /* after the write: val may be a view */
  return rerr ? cs__rocksdb_rocks_fail(r, "put", rerr) : 0;
}

/* Deletes every user key of a MAP key, in one write batch. */
static int del_map_key(cs__rocksdb *r, cs__rocksdb_state *s, int kg,
                       cs_slice key) {
  int rc = cs__rocksdb_wait_writable(r);
  if (rc) return rc;
  ckey k;
  rc = ckey_make(&k, kg, key, 1, NULL, 1); /* the prefix, its bound */
  if (rc) return rc;
  char *upper = k.p + k.len;
  memcpy(upper, k.p, k.len);
  size_t ulen = prefix_successor(upper, k.len);
  rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
  if (ulen) rocksdb_readoptions_set_iterate_upper_bound(ro, upper, ulen);
  rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, s->cf);
  rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
  size_t count = 0;
  for (rocksdb_iter_seek(it, k.p, k.len); rocksdb_iter_valid(it);
       rocksdb_iter_next(it)) {
    size_t n;
    const char *p = rocksdb_iter_key(it, &n);
    if (n < k.len || memcmp(p, k.p, k.len) != 0) break;
    rocksdb_writebatch_delete_cf(wb, s->cf, p, n);
    count++;
  }
  char *rerr = NULL;
  rocksdb_iter_get_error(it, &rerr);
  rocksdb_iter_destroy(it);
  rocksdb_readoptions_destroy(ro);
  ckey_done(&k);
  if (rerr == NULL && count > 0) rocksdb_write(r->db, r->wo, wb, &rerr);
  rocksdb_writebatch_destroy(wb);
  return rerr ? cs__rocksdb_rocks_fail(r, "delete map key", rerr) : 0;
}

static int rdb_del(cs_backend *be, int state, int kg, cs_slice key,
                   const cs_slice *ukey) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  cs__rocksdb_state *s = state_at(r, state, kg);
  if (s == NULL || (ukey != NULL && !ukey_ok(s, ukey)) || r->readonly)
    return CS_EINVAL;
  int rc;
  if (s->kind == CS_STATE_MAP && ukey == NULL) {
    rc = del_map_key(r, s, kg, key);
  } else if (r->climit && s->kind == CS_STATE_VALUE) {
    ckey k;
    rc = ckey_make(&k, kg, key, 0, NULL, 0);
    if (rc) return rc;
    rc = cs__rocksdb_cache_del(r, state, k.p, k.len);
    ckey_done(&k);
    if (rc == CS_ENOMEM) return rc; /* nothing changed: the views stay */
  } else {
    ckey k;
    rc = cs__rocksdb_wait_writable(r);
    if (rc) return rc;
    rc = ckey_make(&k, kg, key, s->kind == CS_STATE_MAP, ukey, 0);
    if (rc) return rc;
    char *rerr = NULL;
    rocksdb_delete_cf(r->db, r->wo, s->cf, k.p, k.len, &rerr);
    ckey_done(&k);
    rc = rerr ? cs__rocksdb_rocks_fail(r, "delete", rerr) : 0;
  }
  if (s->kind == CS_STATE_MAP) touch(r, state, kg, key);
  release_pins(r);
  return rc;
}

static int rdb_append(cs_backend *be, int state, int kg, cs_slice key,
                      cs_slice val) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  cs__rocksdb_state *s = state_at(r, state, kg);
  if (s == NULL || s->kind != CS_STATE_LIST || r->readonly) return CS_EINVAL;
  int rc = cs__rocksdb_wait_writable(r);
  if (rc) return rc;
  ckey k;
  rc = ckey_make(&k, kg, key, 0, NULL, 0);
  if (rc) return rc;
  char *rerr = NULL;
  rocksdb_merge_cf(r->db, r->wo, s->cf, k.p, k.len, slice_ptr(val), val.len,
                   &rerr);
  ckey_done(&k);
  release_pins(r); /* after the write: val may be a view */
  return rerr ? cs__rocksdb_rocks_fail(r, "append", rerr) : 0;
}

/* ========================================================== iterators */

static void iter_link(cs__rocksdb *r, riter *it) {
  it->r = r;
  it->prev = NULL;
  it->next = r->iters;
  if (r->iters) r->iters->prev = it;
  r->iters = it;
}

/* Releases the RocksDB side of an iterator (it must go before the DB). */
static void iter_close_rocks(riter *it) {
  if (it->it) rocksdb_iter_destroy(it->it);
  for (int i = 0; i < it->nits; i++)
    if (it->its[i]) rocksdb_iter_destroy(it->its[i]);
  if (it->ro) rocksdb_readoptions_destroy(it->ro);
  it->it = NULL;
  it->nits = 0;
  it->ro = NULL;
}

/* Closes the RocksDB side and unlinks it from its backend. */
static void iter_detach(riter *it) {
  cs__rocksdb *r = it->r;
  iter_close_rocks(it);
  if (it->prev)
    it->prev->next = it->next;
  else
    r->iters = it->next;
  if (it->next) it->next->prev = it->prev;
  it->r = NULL;
}

/* Makes an iterator over the user keys of (state, kg, key): a RocksDB
 * iterator bounded by the key's prefix and its successor. The caller frees
 * it with iter_destroy. */
static int rdb_map_iter(cs_backend *be, int state, int kg, cs_slice key,
                        cs_backend_iter **out) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  cs__rocksdb_state *s = state_at(r, state, kg);
  if (s == NULL || s->kind != CS_STATE_MAP || out == NULL) return CS_EINVAL;
  if (key.len > SIZE_MAX / 4) return CS_ENOMEM;
  size_t plen = 2 + varint_len(key.len) + key.len;
  riter *it = cs_malloc(sizeof(riter) + 2 * plen);
  if (it == NULL) return CS_ENOMEM;
  memset(it, 0, sizeof(*it));
  it->type = ITER_MAP;
  it->state = state;
  it->kg_first = it->kg_last = kg;
  it->klen = key.len;
  it->plen = plen;
  it->buf[0] = (char)(kg >> 8);
  it->buf[1] = (char)kg;
  size_t at = 2 + put_varint(it->buf + 2, key.len);
  if (key.len) memcpy(it->buf + at, key.data, key.len);
  memcpy(it->buf + plen, it->buf, plen);
  it->ulen = prefix_successor(it->buf + plen, plen);
  it->ro = rocksdb_readoptions_create();
  if (it->ulen)
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->buf + plen,
                                                it->ulen);
  it->it = rocksdb_create_iterator_cf(r->db, it->ro, s->cf);
  iter_link(r, it);
  *out = (cs_backend_iter *)it;
  return 0;
}

/* Makes an iterator over every state's entries in [kg_first, kg_last]: one
 * RocksDB iterator per state, all made now, so the scan reads the state of
 * the backend at this call. (Not an explicit RocksDB snapshot: releasing one
 * marks the bottommost SST files for a compaction that rewrites them, and
 * the next incremental checkpoint would copy them whole.) The caller frees
 * it with iter_destroy. */
static int rdb_scan_iter(cs_backend *be, int kg_first, int kg_last,
                         cs_backend_iter **out) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (kg_first < 0 || kg_last > KG_MAX || kg_first > kg_last || out == NULL)
    return CS_EINVAL;
  if (cs__rocksdb_cache_flush(r, 0))
    return CS_EIO; /* the scan reads RocksDB itself */
  riter *it = cs_malloc(sizeof(riter));
  if (it == NULL) return CS_ENOMEM;
  memset(it, 0, sizeof(*it));
  if (r->nstates > 0) {
    it->its = cs_calloc((size_t)r->nstates, sizeof(*it->its));
    if (it->its == NULL) {
      cs_free(it);
      return CS_ENOMEM;
    }
  }
  it->type = ITER_SCAN;
  it->kg_first = kg_first;
  it->kg_last = kg_last;
  it->lower[0] = (char)(kg_first >> 8);
  it->lower[1] = (char)kg_first;
  it->upper[0] = (char)((kg_last + 1) >> 8);
  it->upper[1] = (char)(kg_last + 1);
  it->ro = rocksdb_readoptions_create();
  rocksdb_readoptions_set_fill_cache(it->ro, 0); /* a bulk read */
  if (kg_last < KG_MAX)
    rocksdb_readoptions_set_iterate_upper_bound(it->ro, it->upper, 2);
  it->nits = r->nstates;
  for (int i = 0; i < it->nits; i++) {
    it->its[i] = rocksdb_create_iterator_cf(r->db, it->ro, r->states[i].cf);
    rocksdb_iter_seek(it->its[i], it->lower, 2);
  }
  iter_link(r, it);
  *out = (cs_backend_iter *)it;
  return 0;
}

static int rocks_iter_error(riter *it, const char *what) {
  char *rerr = NULL;
  rocksdb_iter_get_error(it->it, &rerr);
  return rerr ? cs__rocksdb_rocks_fail(it->r, what, rerr) : 0;
}

static int map_iter_next(riter *it, cs_backend_entry *e) {
  if (it->stale) return CS_ESTATE;
  if (!it->started) {
    rocksdb_iter_seek(it->it, it->buf, it->plen);
    it->started = 1;
  } else {
    rocksdb_iter_next(it->it);
  }
  if (!rocksdb_iter_valid(it->it)) {
    int rc = rocks_iter_error(it, "map iteration");
    if (rc) return rc;
    it->done = 1;
    return 0;
  }
  size_t n;
  const char *k = rocksdb_iter_key(it->it, &n);
  if (n < it->plen || memcmp(k, it->buf, it->plen) != 0) {
    it->done = 1;
    return 0;
  }
  e->state = it->state;
  e->kg = it->kg_first;
  e->key.data = it->buf + it->plen - it->klen;
  e->key.len = it->klen;
  e->ukey.data = k + it->plen;
  e->ukey.len = n - it->plen;
  e->val.data = rocksdb_iter_value(it->it, &e->val.len);
  return 1;
}

/* One step of a scan: the next key of the current state's iterator, or
 * the first of the next state that has one. Exhausted iterators are
 * released at once. */
static int scan_iter_next(riter *it, cs_backend_entry *e) {
  cs__rocksdb *r = it->r;
  rocksdb_iterator_t *ri = NULL;
  for (; it->state < it->nits; it->state++, it->started = 0) {
    ri = it->its[it->state];
    if (it->started) rocksdb_iter_next(ri);
    it->started = 1;
    if (rocksdb_iter_valid(ri)) break;
    char *rerr = NULL;
    rocksdb_iter_get_error(ri, &rerr);
    if (rerr) return cs__rocksdb_rocks_fail(r, "scan", rerr);
    rocksdb_iter_destroy(ri);
    it->its[it->state] = NULL;
  }
  if (it->state >= it->nits) {
    it->done = 1;
    return 0;
  }
  size_t n;
  const char *k = rocksdb_iter_key(ri, &n);
  if (n < 2) return CS_EDECODE;
  e->state = it->state;
  e->kg = ((unsigned char)k[0] << 8) | (unsigned char)k[1];
  if (r->states[it->state].kind == CS_STATE_MAP) {
    size_t klen, vl = get_varint(k + 2, n - 2, &klen);
    if (vl == 0 || klen > n - 2 - vl) return CS_EDECODE;
    e->key.data = k + 2 + vl;
    e->key.len = klen;
    e->ukey.data = k + 2 + vl + klen;
    e->ukey.len = n - 2 - vl - klen;
  } else {
    e->key.data = k + 2;
    e->key.len = n - 2;
    e->ukey.data = empty_bytes;
    e->ukey.len = 0;
  }
  e->val.data = rocksdb_iter_value(ri, &e->val.len);
  return 1;
}

static int rdb_iter_next(cs_backend_iter *bit, cs_backend_entry *e) {
  riter *it = (riter *)bit;
  if (it == NULL || e == NULL || it->r == NULL) return CS_EINVAL;
  if (it->done) return 0;
  return it->type == ITER_MAP ? map_iter_next(it, e) : scan_iter_next(it, e);
}

static void rdb_iter_destroy(cs_backend_iter *bit) {
  riter *it = (riter *)bit;
  if (it == NULL) return;
  if (it->r) iter_detach(it);
  cs_free(it->its);
  cs_free(it);
}

/* ============================================================== state */

static int rdb_state_info(cs_backend *be, int state, const char **name,
                          cs_state_kind *kind) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (state < 0 || state >= r->nstates) return CS_EINVAL;
  if (name) *name = r->states[state].name;
  if (kind) *kind = r->states[state].kind;
  return 0;
}

static int rdb_state_count(cs_backend *be) {
  return container_of(be, cs__rocksdb, base)->nstates;
}

static int rdb_state_ttl(cs_backend *be, int state, cs_ttl_config *ttl) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (state < 0 || state >= r->nstates) return CS_EINVAL;
  const cs__rocksdb_state *s = &r->states[state];
  if (s->has_ttl && ttl) *ttl = s->ttl;
  return s->has_ttl;
}

/* Expired entries go in compactions (cs_rocksdb_ttl.c), not here. */
static int rdb_cleanup_expired(cs_backend *be, int state, int64_t now,
                               int budget) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  (void)now;
  return state < 0 || state >= r->nstates || budget < 0 ? CS_EINVAL : 0;
}

/* Drops the column families of the states from first on. The value cache
 * is written out and emptied first, so no entry of theirs stays in it. */
static int rdb_forget_states(cs_backend *be, int first) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (first < 0 || r->readonly) return CS_EINVAL;
  if (first >= r->nstates) return 0;
  release_pins(r);
  int rc = cs__rocksdb_wait_writable(r);
  if (rc == 0) rc = cs__rocksdb_cache_flush(r, 1);
  if (rc) return rc;
  while (r->nstates > first) {
    cs__rocksdb_state *s = &r->states[r->nstates - 1];
    char *rerr = NULL;
    rocksdb_drop_column_family(r->db, s->cf, &rerr);
    if (rerr) return cs__rocksdb_rocks_fail(r, "drop column family", rerr);
    rocksdb_column_family_handle_destroy(s->cf);
    cs_free(s->name);
    r->nstates--;
  }
  return 0;
}

/* Closes the instance (without flushing: the directory goes next), then
 * removes the working directory. Live iterators are detached first. */
static void rdb_destroy(cs_backend *be) {
  if (be == NULL) return;
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  /* The engine destroys a checkpoint object before its backend; should one
   * still be exclusive, its thread is using the instance. */
  if (!r->readonly) (void)cs__rocksdb_wait_writable(r);
  while (r->iters) iter_detach(r->iters);
  release_pins(r);
  cs__rocksdb_cache_free(r);
  for (int i = 0; i < r->nstates; i++) {
    rocksdb_column_family_handle_destroy(r->states[i].cf);
    cs_free(r->states[i].name);
  }
  cs_free(r->states);
  if (!r->readonly) rocksdb_cancel_all_background_work(r->db, 1);
  rocksdb_close(r->db);
  rocksdb_readoptions_destroy(r->ro);
  rocksdb_writeoptions_destroy(r->wo);
  rocksdb_options_destroy(r->opts);
  rocksdb_cache_destroy(r->cache);
  cs__rocksdb_remove_workdir(r->workdir);
  cs_free(r->restored);
  cs_free(r->restored_text);
  cs__rocksdb_free_sums(r->sums, r->nsums);
  cs_free(r->workdir);
  uv_cond_destroy(&r->xcond);
  uv_mutex_destroy(&r->xlock);
  cs_free(r);
}

/* Metrics: RocksDB's own estimates per column family (keys, live data),
 * plus what the value cache holds and has not written yet. */
static void rdb_stats(cs_backend *be, uint64_t *n, uint64_t *bytes) {
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  *n = *bytes = 0;
  for (int i = 0; i < r->nstates; i++) {
    uint64_t v = 0;
    if (rocksdb_property_int_cf(r->db, r->states[i].cf, "rocksdb.estimate-num-keys", &v) == 0)
      *n += v;
    if (rocksdb_property_int_cf(r->db, r->states[i].cf,
                                "rocksdb.estimate-live-data-size", &v) == 0)
      *bytes += v;
    if (rocksdb_property_int_cf(r->db, r->states[i].cf,
                                "rocksdb.cur-size-all-mem-tables", &v) == 0)
      *bytes += v;
  }
  *bytes += r->cbytes;
}

const cs_backend_ops cs__rocksdb_ops = {
    .name = "rocksdb",
    .register_state = rdb_register_state,
    .register_ttl_state = rdb_register_ttl_state,
    .get = rdb_get,
    .put = rdb_put,
    .del = rdb_del,
    .append = rdb_append,
    .map_iter = rdb_map_iter,
    .scan_iter = rdb_scan_iter,
    .iter_next = rdb_iter_next,
    .iter_destroy = rdb_iter_destroy,
    .state_info = rdb_state_info,
    .state_count = rdb_state_count,
    .state_ttl = rdb_state_ttl,
    .cleanup_expired = rdb_cleanup_expired,
    .forget_states = rdb_forget_states,
    .destroy = rdb_destroy,
    .stats = rdb_stats,
};
