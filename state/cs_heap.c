/*
 * cs_heap.c - the in-memory state backend (the working state of the memory
 * and filesystem backends). It is on the hot path: a keyed operator does a
 * get and a put per record.
 *
 * Layout. Each registered state owns one open-addressing hash table (linear
 * probing, power-of-two capacity, load factor at most 4/5, deletion by
 * backward shift, so there are no tombstones). The hash of (kg, key) is
 * computed once per call, XXH3 seeded with the key group; its low 32 bits
 * stay in the slot, so probes and rehashes compare and move hashes, not keys.
 *
 * A slot is 32 bytes, aligned so that two share a cache line and none
 * straddles one. When key and value fit in its 23 inline bytes (the common
 * case: a counter or a small aggregate under a short key, e.g. a 13-byte
 * encoded string key and an encoded integer) the entry lives in the slot
 * itself and a lookup costs one cache miss: with 100k keys the table is far
 * larger than the caches, so that miss is most of the cost of a get. Larger
 * entries live in a node the slot points to: one allocation with the key
 * bytes, then room for the value (vcap bytes, vlen used). A new value that
 * fits is copied in place; a larger one moves the entry to a (larger) node.
 * LIST appends grow vcap geometrically, so appending is amortised O(1).
 *
 * A MAP state key always has a node, carrying no value but a nested table
 * (user key -> value) of the same shape, so map_iter walks only that key's
 * entries and deleting the key drops the nested table whole. A key whose last
 * user key is removed disappears.
 *
 * Views returned by get and by iterators point into slots or nodes, so they
 * last until the next mutation (a rehash moves slots).
 *
 * Iterators. Every mutation bumps the backend's clock; a nested table records
 * the clock of its last mutation (its stamp). A map iterator remembers the
 * stamp (0 when the key was absent) and looks the key up again, by its saved
 * hash, at every step: a different stamp or a vanished key is CS_ESTATE. This
 * never touches freed memory and does not trip on mutations of other keys.
 * A scan iterator is invalidated by any mutation of the backend.
 */
#include "cs_heap_int.h"

#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL /* the hash is on the hot path: let it inline */
#include <xxhash.h>


enum { ITER_MAP = 1, ITER_SCAN = 2 };

typedef struct heap_iter {
  heap *h;
  int type;
  int done;
  int state;
  int kg_first; /* ITER_MAP: the key group of the key */
  int kg_last;
  uint64_t stamp; /* ITER_MAP: the nested table's; ITER_SCAN: the clock */
  uint32_t hash;  /* ITER_MAP: hash of (kg, key) */
  size_t pos;     /* next slot of the outer table */
  size_t sub;     /* next slot of the nested table */
  size_t klen;
  char key[]; /* ITER_MAP: a copy of the key */
} heap_iter;

/* ============================================================ entries */

static const char empty_bytes[1];

static inline const char *slice_ptr(cs_slice s) {
  return s.data ? s.data : empty_bytes;
}

static inline uint32_t key_hash(int kg, cs_slice key) {
  return (uint32_t)XXH3_64bits_withSeed(slice_ptr(key), key.len,
                                        (XXH64_hash_t)kg);
}

static inline uint32_t ukey_hash(cs_slice ukey) {
  return (uint32_t)XXH3_64bits(slice_ptr(ukey), ukey.len);
}

static inline cs_slice slot_key(const slot *s) {
  cs_slice k;
  if (s->tag == SLOT_INLINE) {
    k.data = s->u.in.bytes;
    k.len = s->klen;
  } else {
    k.data = s->u.n->bytes;
    k.len = s->u.n->klen;
  }
  return k;
}

static inline cs_slice slot_val(const slot *s) {
  cs_slice v;
  if (s->tag == SLOT_INLINE) {
    v.data = s->u.in.bytes + s->klen;
    v.len = s->u.in.vlen;
  } else {
    v.data = s->u.n->bytes + s->u.n->klen;
    v.len = s->u.n->vlen;
  }
  return v;
}

/* Allocates a node holding copies of key and val with room for vcap value
 * bytes (vcap >= val.len). Returns NULL when out of memory. */
static node *node_new(cs_slice key, cs_slice val, size_t vcap) {
  if (key.len > SIZE_MAX - sizeof(node) ||
      vcap > SIZE_MAX - sizeof(node) - key.len)
    return NULL;
  node *n = cs_malloc(sizeof(node) + key.len + vcap);
  if (n == NULL) return NULL;
  n->map = NULL;
  n->vlen = val.len;
  n->vcap = vcap;
  n->klen = key.len;
  if (key.len) memcpy(n->bytes, key.data, key.len);
  if (val.len) memcpy(n->bytes + key.len, val.data, val.len);
  return n;
}

/* Reallocates *np to hold vcap value bytes. When *src points into the node,
 * it is moved along with it, so a caller may pass a view of the node's own
 * value. Returns 0 or CS_ENOMEM (the node is then unchanged). */
static int node_resize(node **np, size_t vcap, cs_slice *src) {
  node *n = *np;
  if (vcap > SIZE_MAX - sizeof(node) - n->klen) return CS_ENOMEM;
  uintptr_t lo = (uintptr_t)n, hi = lo + sizeof(node) + n->klen + n->vcap;
  uintptr_t p = (uintptr_t)src->data;
  int inside = src->data != NULL && p >= lo && p < hi;
  node *m = cs_realloc(n, sizeof(node) + n->klen + vcap);
  if (m == NULL) return CS_ENOMEM;
  if (inside) src->data = (const char *)m + (p - lo);
  m->vcap = vcap;
  *np = m;
  return 0;
}

static void table_free(table *t);

static void node_free(node *n) {
  if (n->map != NULL) {
    table_free(&n->map->t);
    cs_free(n->map);
  }
  cs_free(n);
}

/* Builds a detached slot for a new entry: inline when key and val fit,
 * else a node with room for vcap value bytes. Returns 0 or CS_ENOMEM. */
static int slot_make(slot *s, uint32_t h, int kg, cs_slice key, cs_slice val,
                     size_t vcap) {
  s->hash = h;
  s->kg = (uint16_t)kg;
  if (key.len <= INLINE_CAP && val.len <= INLINE_CAP - key.len) {
    s->tag = SLOT_INLINE;
    s->klen = (uint8_t)key.len;
    s->u.in.vlen = (uint8_t)val.len;
    if (key.len) memcpy(s->u.in.bytes, key.data, key.len);
    if (val.len) memcpy(s->u.in.bytes + key.len, val.data, val.len);
    return 0;
  }
  node *n = node_new(key, val, vcap < val.len ? val.len : vcap);
  if (n == NULL) return CS_ENOMEM;
  s->tag = SLOT_NODE;
  s->klen = 0;
  s->u.in.vlen = 0;
  s->u.n = n;
  return 0;
}

static void slot_release(slot *s) {
  if (s->tag == SLOT_NODE) node_free(s->u.n);
  s->tag = SLOT_EMPTY;
}

/* Moves an inline entry out to a node whose value is the old value followed
 * by tail, with room for vcap bytes. val views into the slot stay readable
 * until the slot is overwritten, which happens last. */
static int slot_to_node(slot *s, cs_slice head, cs_slice tail, size_t vcap) {
  cs_slice key = slot_key(s);
  node *n = node_new(key, head, vcap);
  if (n == NULL) return CS_ENOMEM;
  if (tail.len) memcpy(n->bytes + n->klen + head.len, tail.data, tail.len);
  n->vlen = head.len + tail.len;
  s->tag = SLOT_NODE;
  s->klen = 0;
  s->u.in.vlen = 0;
  s->u.n = n;
  return 0;
}

/* Replaces the value of a live entry with val: in place when it fits
 * (shrinking a much too large node afterwards, best effort), else moving
 * it to a new or larger node. val may be a view of the entry's own value.
 * Returns 0 or CS_ENOMEM (the old value is then kept). */
static int slot_set(slot *s, cs_slice val) {
  cs_slice none = {NULL, 0};
  if (s->tag == SLOT_INLINE) {
    if (val.len <= (size_t)(INLINE_CAP - s->klen)) {
      if (val.len) memmove(s->u.in.bytes + s->klen, val.data, val.len);
      s->u.in.vlen = (uint8_t)val.len;
      return 0;
    }
    return slot_to_node(s, val, none, val.len);
  }
  node *n = s->u.n;
  if (val.len > n->vcap) {
    int rc = node_resize(&s->u.n, val.len, &val);
    if (rc) return rc;
    n = s->u.n;
  }
  if (val.len) memmove(n->bytes + n->klen, val.data, val.len);
  n->vlen = val.len;
  if (n->vcap > SHRINK_MIN && val.len < n->vcap / 4)
    (void)node_resize(&s->u.n, val.len, &none); /* failing keeps it big */
  return 0;
}

/* Appends val to the value of a live entry, growing a node's capacity
 * geometrically. Returns 0 or CS_ENOMEM (the old value is then kept). */
static int slot_append(slot *s, cs_slice val) {
  cs_slice old = slot_val(s);
  if (val.len > SIZE_MAX - old.len) return CS_ENOMEM;
  size_t need = old.len + val.len;
  if (s->tag == SLOT_INLINE) {
    if (need <= (size_t)(INLINE_CAP - s->klen)) {
      if (val.len) memmove(s->u.in.bytes + s->klen + old.len, val.data, val.len);
      s->u.in.vlen = (uint8_t)need;
      return 0;
    }
    return slot_to_node(s, old, val, need < 64 ? 64 : need);
  }
  node *n = s->u.n;
  if (need > n->vcap) {
    size_t cap = n->vcap < 16 ? 16 : n->vcap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    int rc = node_resize(&s->u.n, cap, &val);
    if (rc) return rc;
    n = s->u.n;
  }
  if (val.len) memmove(n->bytes + n->klen + n->vlen, val.data, val.len);
  n->vlen = need;
  return 0;
}

/* ============================================================= tables */

static inline int slot_is(const slot *s, uint32_t h, int kg, cs_slice key) {
  if (s->hash != h || s->kg != kg) return 0;
  cs_slice k = slot_key(s);
  return k.len == key.len && (k.len == 0 || memcmp(k.data, key.data, k.len) == 0);
}

/* Finds (kg, key) in t by its hash h. Returns the slot index, or NONE with
 * *empty (when not NULL) set to the free slot ending the probe (NONE when
 * the table has no slots yet). */
static inline size_t table_find(const table *t, uint32_t h, int kg,
                                cs_slice key, size_t *empty) {
  if (empty) *empty = NONE;
  if (t->slots == NULL) return NONE;
  size_t i = (size_t)h & t->mask;
  for (;;) {
    const slot *s = &t->slots[i];
    if (s->tag == SLOT_EMPTY) {
      if (empty) *empty = i;
      return NONE;
    }
    if (slot_is(s, h, kg, key)) return i;
    i = (i + 1) & t->mask;
  }
}

/* Doubles the capacity of t (or gives it its first slots). Returns 0 or
 * CS_ENOMEM, leaving t as it was. */
static int table_grow(table *t, size_t initial) {
  size_t cap = t->slots ? (t->mask + 1) * 2 : initial;
  /* Homes come from 32-bit hashes: 2^32 slots at most. */
  if (cap == 0 || (uint64_t)cap > (uint64_t)UINT32_MAX + 1 ||
      cap > (SIZE_MAX - SLOT_ALIGN) / sizeof(slot))
    return CS_ENOMEM;
  void *raw = cs_calloc(1, cap * sizeof(slot) + SLOT_ALIGN - 1);
  if (raw == NULL) return CS_ENOMEM;
  slot *ns = (slot *)(((uintptr_t)raw + SLOT_ALIGN - 1) &
                      ~(uintptr_t)(SLOT_ALIGN - 1));
  size_t mask = cap - 1;
  if (t->slots) {
    for (size_t i = 0; i <= t->mask; i++) {
      const slot *s = &t->slots[i];
      if (s->tag == SLOT_EMPTY) continue;
      size_t j = (size_t)s->hash & mask;
      while (ns[j].tag != SLOT_EMPTY) j = (j + 1) & mask;
      ns[j] = *s;
    }
    cs_free(t->raw);
  }
  t->raw = raw;
  t->slots = ns;
  t->mask = mask;
  return 0;
}

/* Moves the detached slot *s (known to be absent) into t. hint is the free
 * slot found by table_find, or NONE. Returns 0, or CS_ENOMEM with t
 * unchanged and *s still the caller's. */
static int table_insert(table *t, const slot *s, size_t hint, size_t initial) {
  if (t->slots == NULL || (t->count + 1) * 5 > (t->mask + 1) * 4) {
    int rc = table_grow(t, initial);
    if (rc) return rc;
    hint = NONE;
  }
  if (hint == NONE) {
    hint = (size_t)s->hash & t->mask;
    while (t->slots[hint].tag != SLOT_EMPTY) hint = (hint + 1) & t->mask;
  }
  t->slots[hint] = *s;
  t->count++;
  return 0;
}

/* Empties slot i (its content already released or moved) without leaving a
 * tombstone: later entries of the probe run that may sit closer to their
 * home slot are shifted back. */
static void table_remove_at(table *t, size_t i) {
  size_t j = i;
  for (;;) {
    j = (j + 1) & t->mask;
    slot *s = &t->slots[j];
    if (s->tag == SLOT_EMPTY) break;
    size_t home = (size_t)s->hash & t->mask;
    /* s may move to i when i lies on its probe path, i.e. between its home
     * slot and j (cyclically). */
    if (((j - home) & t->mask) >= ((j - i) & t->mask)) {
      t->slots[i] = *s;
      i = j;
    }
  }
  t->slots[i].tag = SLOT_EMPTY;
  t->count--;
}

static void table_free(table *t) {
  if (t->slots) {
    for (size_t i = 0; i <= t->mask; i++) slot_release(&t->slots[i]);
    cs_free(t->raw);
  }
  memset(t, 0, sizeof(*t));
}

/* ========================================================== arguments */

/* Returns the state addressed by a call, or NULL when state or kg is out of
 * range. */
static inline hstate *state_at(heap *h, int state, int kg) {
  if (state < 0 || state >= h->nstates || kg < 0 || kg > KG_MAX) return NULL;
  return &h->states[state];
}

/* ukey must be given exactly for MAP states. */
static inline int ukey_ok(const hstate *s, const cs_slice *ukey) {
  return (s->kind == CS_STATE_MAP) == (ukey != NULL);
}

/* ========================================================= operations */

/* The ops below implement the contract of cs_backend.h. Misuse (a state id
 * or key group out of range, a ukey given to a non-MAP state or missing for
 * a MAP one, append on a non-LIST state) is CS_EINVAL, so that CS_ESTATE
 * keeps meaning "kind conflict" or "modified during iteration". */

/* Finds a state by name (linear: operators register a handful) or adds it;
 * ids are dense and stable. A name comes back only with its kind and TTL
 * configuration. */
static int heap_register_ttl_state(cs_backend *be, const char *name,
                                   cs_state_kind kind,
                                   const cs_ttl_config *ttl) {
  heap *h = container_of(be, heap, base);
  if (name == NULL || kind < CS_STATE_VALUE || kind > CS_STATE_MAP ||
      (ttl != NULL && !cs_ttl_config_valid(ttl)))
    return CS_EINVAL;
  for (int i = 0; i < h->nstates; i++) {
    hstate *s = &h->states[i];
    if (strcmp(s->name, name) == 0)
      return s->kind == kind && cs_ttl_config_eq(s->has_ttl ? &s->ttl : NULL, ttl)
                 ? i : CS_ESTATE;
  }
  if (h->nstates == h->cap) {
    if (h->cap > INT32_MAX / 2) return CS_ENOMEM;
    int cap = h->cap ? h->cap * 2 : 8;
    hstate *ns = cs_realloc(h->states, (size_t)cap * sizeof(hstate));
    if (ns == NULL) return CS_ENOMEM;
    h->states = ns;
    h->cap = cap;
  }
  char *copy = cs_strdup(name);
  if (copy == NULL) return CS_ENOMEM;
  hstate *s = &h->states[h->nstates];
  memset(s, 0, sizeof(*s));
  s->name = copy;
  s->kind = kind;
  if (ttl != NULL) {
    s->has_ttl = 1;
    s->ttl = *ttl;
  }
  return h->nstates++;
}

static int heap_register_state(cs_backend *be, const char *name,
                               cs_state_kind kind) {
  return heap_register_ttl_state(be, name, kind, NULL);
}

static int heap_get(cs_backend *be, int state, int kg, cs_slice key,
                    const cs_slice *ukey, cs_slice *val) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, kg);
  if (s == NULL || !ukey_ok(s, ukey)) return CS_EINVAL;
  size_t i = table_find(&s->t, key_hash(kg, key), kg, key, NULL);
  if (i == NONE) return CS_ENOTFOUND;
  const slot *e = &s->t.slots[i];
  if (ukey != NULL) {
    const table *mt = &e->u.n->map->t;
    i = table_find(mt, ukey_hash(*ukey), 0, *ukey, NULL);
    if (i == NONE) return CS_ENOTFOUND;
    e = &mt->slots[i];
  }
  *val = slot_val(e);
  return 0;
}

/* Puts (ukey -> val) under a MAP key, creating the key (node, nested table,
 * first user key) when absent; on CS_ENOMEM nothing is left behind. */
static int map_put(heap *h, hstate *s, int kg, cs_slice key, cs_slice ukey,
                   cs_slice val) {
  uint32_t kh = key_hash(kg, key), uh = ukey_hash(ukey);
  size_t hint, uhint;
  slot u;
  mapval *m;
  size_t i = table_find(&s->t, kh, kg, key, &hint);
  if (i != NONE) {
    m = s->t.slots[i].u.n->map;
    size_t j = table_find(&m->t, uh, 0, ukey, &uhint);
    if (j != NONE) {
      int rc = slot_set(&m->t.slots[j], val);
      if (rc) return rc;
    } else {
      if (slot_make(&u, uh, 0, ukey, val, val.len)) return CS_ENOMEM;
      if (table_insert(&m->t, &u, uhint, INNER_INITIAL_CAP)) {
        slot_release(&u);
        return CS_ENOMEM;
      }
      s->entries++;
    }
    m->stamp = ++h->clock;
    return 0;
  }
  /* A new key: build its node and nested table, then link it in. */
  cs_slice none = {NULL, 0};
  slot k = {.hash = kh, .kg = (uint16_t)kg, .tag = SLOT_NODE};
  k.u.n = node_new(key, none, 0);
  if (k.u.n == NULL) goto fail_node;
  m = cs_calloc(1, sizeof(mapval));
  if (m == NULL) goto fail_map;
  k.u.n->map = m;
  if (slot_make(&u, uh, 0, ukey, val, val.len)) goto fail_map;
  if (table_insert(&m->t, &u, NONE, INNER_INITIAL_CAP)) goto fail_user;
  if (table_insert(&s->t, &k, hint, OUTER_INITIAL_CAP)) goto fail_map;
  s->entries++;
  m->stamp = ++h->clock;
  return 0;

fail_user:
  slot_release(&u);
fail_map:
  node_free(k.u.n); /* and its nested table, with u once it was linked in */
fail_node:
  return CS_ENOMEM;
}

/* Sets (or, append: appends to) the value of (kg, key) in s, adding the
 * entry when it is new. Returns 0 or CS_ENOMEM. */
static int upsert(heap *h, hstate *s, int kg, cs_slice key, cs_slice val,
                  int append) {
  uint32_t kh = key_hash(kg, key);
  size_t hint;
  size_t i = table_find(&s->t, kh, kg, key, &hint);
  if (i != NONE) {
    int rc = append ? slot_append(&s->t.slots[i], val) : slot_set(&s->t.slots[i], val);
    if (rc) return rc;
  } else {
    slot e;
    if (slot_make(&e, kh, kg, key, val, val.len)) return CS_ENOMEM;
    if (table_insert(&s->t, &e, hint, OUTER_INITIAL_CAP)) {
      slot_release(&e);
      return CS_ENOMEM;
    }
    s->entries++;
  }
  h->clock++;
  return 0;
}

static int heap_put(cs_backend *be, int state, int kg, cs_slice key,
                    const cs_slice *ukey, cs_slice val) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, kg);
  if (s == NULL || !ukey_ok(s, ukey)) return CS_EINVAL;
  if (ukey != NULL) return map_put(h, s, kg, key, *ukey, val);
  return upsert(h, s, kg, key, val, 0);
}

/* Removes one entry; for a MAP key without ukey, or when its last user key
 * goes, the key with its whole nested table. */
static int heap_del(cs_backend *be, int state, int kg, cs_slice key,
                    const cs_slice *ukey) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, kg);
  if (s == NULL || (ukey != NULL && !ukey_ok(s, ukey))) return CS_EINVAL;
  size_t i = table_find(&s->t, key_hash(kg, key), kg, key, NULL);
  if (i == NONE) return 0;
  slot *e = &s->t.slots[i];
  if (ukey != NULL) {
    mapval *m = e->u.n->map;
    size_t j = table_find(&m->t, ukey_hash(*ukey), 0, *ukey, NULL);
    if (j == NONE) return 0;
    slot_release(&m->t.slots[j]);
    table_remove_at(&m->t, j);
    s->entries--;
    m->stamp = ++h->clock;
    if (m->t.count > 0) return 0;
  } else {
    s->entries -= s->kind == CS_STATE_MAP ? e->u.n->map->t.count : 1;
  }
  /* Iterators of this key find it gone at their next step. */
  slot_release(e);
  table_remove_at(&s->t, i);
  h->clock++;
  return 0;
}

static int heap_append(cs_backend *be, int state, int kg, cs_slice key,
                       cs_slice val) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, kg);
  if (s == NULL || s->kind != CS_STATE_LIST) return CS_EINVAL;
  return upsert(h, s, kg, key, val, 1);
}

/* ========================================================== iterators */

/* Makes an iterator over the user keys of (state, kg, key); it keeps a copy
 * of the key and the nested table's stamp, not pointers into the table.
 * The caller frees it with iter_destroy. */
static int heap_map_iter(cs_backend *be, int state, int kg, cs_slice key,
                         cs_backend_iter **out) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, kg);
  if (s == NULL || s->kind != CS_STATE_MAP || out == NULL) return CS_EINVAL;
  heap_iter *it = cs_malloc(sizeof(heap_iter) + key.len);
  if (it == NULL) return CS_ENOMEM;
  memset(it, 0, sizeof(*it));
  it->h = h;
  it->type = ITER_MAP;
  it->state = state;
  it->kg_first = it->kg_last = kg;
  it->hash = key_hash(kg, key);
  it->klen = key.len;
  if (key.len) memcpy(it->key, key.data, key.len);
  size_t i = table_find(&s->t, it->hash, kg, key, NULL);
  it->stamp = i == NONE ? 0 : s->t.slots[i].u.n->map->stamp;
  *out = (cs_backend_iter *)it;
  return 0;
}

/* Makes an iterator over every entry in [kg_first, kg_last], state by state
 * in slot order. The caller frees it with iter_destroy. */
static int heap_scan_iter(cs_backend *be, int kg_first, int kg_last,
                          cs_backend_iter **out) {
  heap *h = container_of(be, heap, base);
  if (kg_first < 0 || kg_last > KG_MAX || kg_first > kg_last || out == NULL)
    return CS_EINVAL;
  heap_iter *it = cs_malloc(sizeof(heap_iter));
  if (it == NULL) return CS_ENOMEM;
  memset(it, 0, sizeof(*it));
  it->h = h;
  it->type = ITER_SCAN;
  it->kg_first = kg_first;
  it->kg_last = kg_last;
  it->stamp = h->clock;
  *out = (cs_backend_iter *)it;
  return 0;
}

/* Fills e->ukey and e->val from the next live slot of a nested table at or
 * after it->sub; returns 0 when there is none. */
static int next_in_map(heap_iter *it, const table *mt, cs_backend_entry *e) {
  while (mt->slots != NULL && it->sub <= mt->mask) {
    const slot *u = &mt->slots[it->sub++];
    if (u->tag == SLOT_EMPTY) continue;
    e->ukey = slot_key(u);
    e->val = slot_val(u);
    return 1;
  }
  return 0;
}

/* One step of a map iterator: the key is looked up again by its saved hash
 * and its stamp compared, so a mutated, deleted or re-created key is
 * CS_ESTATE and the slot position stays meaningful otherwise. */
static int map_iter_next(heap_iter *it, cs_backend_entry *e) {
  hstate *s = &it->h->states[it->state];
  cs_slice key = {it->key, it->klen};
  size_t i = table_find(&s->t, it->hash, it->kg_first, key, NULL);
  mapval *m = i == NONE ? NULL : s->t.slots[i].u.n->map;
  if ((m ? m->stamp : 0) != it->stamp) return CS_ESTATE;
  if (m == NULL || !next_in_map(it, &m->t, e)) {
    it->done = 1;
    return 0;
  }
  e->state = it->state;
  e->kg = it->kg_first;
  e->key = key;
  return 1;
}

/* One step of a scan: the next VALUE/LIST key, or the next user key of
 * the current MAP key, whose key group is in range. Any mutation of the
 * backend since the scan began is CS_ESTATE. */
static int scan_iter_next(heap_iter *it, cs_backend_entry *e) {
  heap *h = it->h;
  if (h->clock != it->stamp) return CS_ESTATE;
  for (; it->state < h->nstates; it->state++, it->pos = 0) {
    hstate *s = &h->states[it->state];
    const table *t = &s->t;
    for (; t->slots != NULL && it->pos <= t->mask; it->pos++) {
      const slot *k = &t->slots[it->pos];
      if (k->tag == SLOT_EMPTY || k->kg < it->kg_first || k->kg > it->kg_last)
        continue;
      if (s->kind == CS_STATE_MAP) {
        if (!next_in_map(it, &k->u.n->map->t, e)) {
          it->sub = 0;
          continue;
        }
      } else {
        e->ukey.data = empty_bytes;
        e->ukey.len = 0;
        e->val = slot_val(k);
        it->pos++;
      }
      e->state = it->state;
      e->kg = k->kg;
      e->key = slot_key(k);
      return 1;
    }
  }
  it->done = 1;
  return 0;
}

static int heap_iter_next(cs_backend_iter *bit, cs_backend_entry *e) {
  heap_iter *it = (heap_iter *)bit;
  if (it == NULL || e == NULL) return CS_EINVAL;
  if (it->done) return 0;
  return it->type == ITER_MAP ? map_iter_next(it, e) : scan_iter_next(it, e);
}

/* Touches only the iterator, so it may run after the backend is gone. */
static void heap_iter_destroy(cs_backend_iter *it) { cs_free(it); }

/* ======================================================== TTL cleanup */

/* Incremental cleanup (Flink's for heap state): each access of a TTL state
 * lets cleanup_expired check a few entries from a cursor that goes round the
 * state's table, so expired entries that are never read again go too. A
 * rehash moves the entries under the cursor; it goes on from the same index,
 * which at worst checks some entries twice or late. */

/* Removes the expired user keys of the MAP key in slot i, counting those
 * checked in *checked; returns 1 when the key went with its last one. */
static int expire_map_key(heap *h, hstate *s, size_t i, int64_t now,
                          int *checked) {
  mapval *m = s->t.slots[i].u.n->map;
  size_t before = m->t.count;
  for (size_t j = 0; m->t.slots != NULL && j <= m->t.mask;) {
    slot *u = &m->t.slots[j];
    if (u->tag == SLOT_EMPTY) {
      j++;
      continue;
    }
    ++*checked;
    if (cs_ttl_check(&s->ttl, now, slot_val(u), NULL) == 1) {
      slot_release(u);
      table_remove_at(&m->t, j); /* j now holds the next entry, if any */
      s->entries--;
    } else {
      j++;
    }
  }
  if (m->t.count == before) return 0;
  m->stamp = ++h->clock;
  if (m->t.count > 0) return 0;
  slot_release(&s->t.slots[i]);
  table_remove_at(&s->t, i);
  return 1;
}

/* Checks the VALUE or LIST entry in slot i (a LIST loses its expired
 * elements); returns 1 when the entry went, so that the slot now holds
 * another entry (or none). */
static int expire_entry(heap *h, hstate *s, size_t i, int64_t now) {
  slot *e = &s->t.slots[i];
  size_t kept = 0, dropped = 1;
  if (s->kind == CS_STATE_LIST) {
    cs_buf_reset(&h->tmp);
    if (cs_ttl_list_filter(&s->ttl, now, slot_val(e), 0, &h->tmp, &kept,
                           &dropped) != 0)
      return 0; /* a malformed list stays as it is */
  } else if (cs_ttl_check(&s->ttl, now, slot_val(e), NULL) != 1) {
    return 0;
  }
  if (dropped == 0) return 0;
  h->clock++;
  if (kept > 0) {
    cs_slice v = {h->tmp.data, h->tmp.len};
    (void)slot_set(e, v); /* out of memory: the old value stays */
    return 0;
  }
  slot_release(e);
  table_remove_at(&s->t, i);
  s->entries--;
  return 1;
}

/* Checks about budget entries from the cursor (a MAP key's user keys count
 * one each and are checked together), looking at no more than 4 * budget
 * slots so that a sparse table costs a bounded walk. */
static int heap_cleanup_expired(cs_backend *be, int state, int64_t now,
                                int budget) {
  heap *h = container_of(be, heap, base);
  hstate *s = state_at(h, state, 0);
  if (s == NULL || budget < 0) return CS_EINVAL;
  if (!s->has_ttl) return 0;
  int checked = 0;
  for (long n = 0; n < 4L * budget && checked < budget && s->t.count > 0; n++) {
    size_t i = s->cursor & s->t.mask;
    int gone = 0;
    if (s->t.slots[i].tag != SLOT_EMPTY)
      gone = s->kind == CS_STATE_MAP ? expire_map_key(h, s, i, now, &checked)
                                     : (checked++, expire_entry(h, s, i, now));
    if (!gone) s->cursor = i + 1;
  }
  return 0;
}

/* ============================================================== state */

static int heap_state_info(cs_backend *be, int state, const char **name,
                           cs_state_kind *kind) {
  heap *h = container_of(be, heap, base);
  if (state < 0 || state >= h->nstates) return CS_EINVAL;
  if (name) *name = h->states[state].name;
  if (kind) *kind = h->states[state].kind;
  return 0;
}

static int heap_state_count(cs_backend *be) { return container_of(be, heap, base)->nstates; }
/* Metrics: entries, and bytes of slot tables (long values, nested maps not counted). */
static void heap_stats(cs_backend *be, uint64_t *n, uint64_t *bytes) {
  heap *h = container_of(be, heap, base);
  *n = *bytes = 0;
  for (const hstate *s = h->states; s < h->states + h->nstates; s++)
    *n += s->entries, *bytes += s->t.slots ? (s->t.mask + 1) * sizeof(slot) : 0;
}

static int heap_state_ttl(cs_backend *be, int state, cs_ttl_config *ttl) {
  heap *h = container_of(be, heap, base);
  if (state < 0 || state >= h->nstates) return CS_EINVAL;
  const hstate *s = &h->states[state];
  if (s->has_ttl && ttl) *ttl = s->ttl;
  return s->has_ttl;
}

static int heap_forget_states(cs_backend *be, int first) {
  heap *h = container_of(be, heap, base);
  if (first < 0) return CS_EINVAL;
  while (h->nstates > first) {
    hstate *s = &h->states[--h->nstates];
    table_free(&s->t);
    cs_free(s->spare);
    cs_free(s->name);
  }
  return 0;
}

static void heap_destroy(cs_backend *be) {
  if (be == NULL) return;
  heap *h = container_of(be, heap, base);
  for (int i = 0; i < h->nstates; i++) {
    table_free(&h->states[i].t);
    cs_free(h->states[i].spare);
    cs_free(h->states[i].name);
  }
  cs_free(h->states);
  cs_buf_free(&h->tmp);
  cs_free(h);
}

const cs_backend_ops cs__heap_ops = {
    .name = "heap",
    .register_state = heap_register_state,
    .register_ttl_state = heap_register_ttl_state,
    .get = heap_get,
    .put = heap_put,
    .del = heap_del,
    .append = heap_append,
    .map_iter = heap_map_iter,
    .scan_iter = heap_scan_iter,
    .iter_next = heap_iter_next,
    .iter_destroy = heap_iter_destroy,
    .state_info = heap_state_info,
    .state_count = heap_state_count,
    .state_ttl = heap_state_ttl,
    .cleanup_expired = heap_cleanup_expired,
    .forget_states = heap_forget_states,
    .destroy = heap_destroy, .stats = heap_stats,
};

cs_backend *cs_heap_backend_create(void) {
  heap *h = cs_calloc(1, sizeof(heap));
  if (h == NULL) return NULL;
  h->base.ops = &cs__heap_ops;
  return &h->base;
}
