/*
 * cs_heap_clone.c - a deep copy of an in-memory backend, the synchronous
 * part of its asynchronous snapshot: the worker copies its tables as they
 * are (one memcpy per table, slot positions kept, so nothing is hashed or
 * probed again; nodes and nested tables copied one by one), and another
 * thread serializes the copy (cs_backend_snapshot) and writes it while the
 * worker goes on with the original. The copy shares nothing with the
 * original, so neither needs a lock.
 */
#include "cs_heap_int.h"

#include <string.h>

static int table_clone(table *dst, const table *src, void *spare);

/* A copy of node n with exactly its value bytes (and its nested table).
 * NULL when out of memory. */
static node *node_clone(const node *n) {
  node *m = cs_malloc(sizeof(node) + n->klen + n->vlen);
  if (m == NULL) return NULL;
  m->map = NULL;
  m->vlen = m->vcap = n->vlen;
  m->klen = n->klen;
  memcpy(m->bytes, n->bytes, n->klen + n->vlen);
  if (n->map == NULL) return m;
  if ((m->map = cs_calloc(1, sizeof(mapval))) == NULL ||
      table_clone(&m->map->t, &n->map->t, NULL) != 0) {
    cs_free(m->map);
    cs_free(m);
    return NULL;
  }
  m->map->stamp = n->map->stamp;
  return m;
}

/* Frees a table made by table_clone (its nodes, nested tables and slots). */
static void table_drop(table *t) {
  for (size_t i = 0; t->slots && i <= t->mask; i++) {
    node *n = t->slots[i].tag == SLOT_NODE ? t->slots[i].u.n : NULL;
    if (n == NULL) continue;
    if (n->map) {
      table_drop(&n->map->t);
      cs_free(n->map);
    }
    cs_free(n);
  }
  cs_free(t->raw);
  memset(t, 0, sizeof(*t));
}

/* Copies src into the empty table dst: the same capacity and slot
 * positions, nodes copied. Returns 0 or CS_ENOMEM (dst is then empty). */
static int table_clone(table *dst, const table *src, void *spare) {
  memset(dst, 0, sizeof(*dst));
  if (src->slots == NULL) return 0;
  size_t cap = src->mask + 1;
  void *raw = spare ? spare : cs_malloc(cap * sizeof(slot) + SLOT_ALIGN - 1);
  if (raw == NULL) return CS_ENOMEM;
  slot *ns = (slot *)(((uintptr_t)raw + SLOT_ALIGN - 1) &
                      ~(uintptr_t)(SLOT_ALIGN - 1));
  memcpy(ns, src->slots, cap * sizeof(slot));
  dst->raw = raw;
  dst->slots = ns;
  dst->mask = src->mask;
  dst->count = src->count;
  for (size_t i = 0; i < cap; i++) {
    if (ns[i].tag != SLOT_NODE) continue;
    node *m = node_clone(src->slots[i].u.n);
    if (m == NULL) {
      /* the slots from i on still point at the original's nodes */
      for (size_t j = i; j < cap; j++)
        if (ns[j].tag == SLOT_NODE) ns[j].tag = SLOT_EMPTY;
      table_drop(dst);
      return CS_ENOMEM;
    }
    ns[i].u.n = m;
  }
  return 0;
}

cs_backend *cs_heap_backend_clone(cs_backend *be) {
  if (be == NULL || be->ops != &cs__heap_ops) return NULL;
  const heap *h = container_of(be, heap, base);
  heap *c = cs_calloc(1, sizeof(heap));
  if (c == NULL) return NULL;
  c->base.ops = &cs__heap_ops;
  c->clock = h->clock;
  if (h->nstates > 0 &&
      (c->states = cs_calloc((size_t)h->nstates, sizeof(hstate))) == NULL) {
    cs_free(c);
    return NULL;
  }
  c->cap = h->nstates;
  for (int i = 0; i < h->nstates; i++) {
    hstate *s = &h->states[i];
    hstate *d = &c->states[i];
    void *spare = NULL;
    if (s->spare && s->t.slots && s->spare_mask == s->t.mask) {
      spare = s->spare; /* the copy owns it now, even if it fails */
      s->spare = NULL;
    }
    d->kind = s->kind;
    d->entries = s->entries;
    d->has_ttl = s->has_ttl;
    d->ttl = s->ttl;
    int failed = (d->name = cs_strdup(s->name)) == NULL;
    if (failed) cs_free(spare);
    else failed = table_clone(&d->t, &s->t, spare) != 0; /* frees spare */
    if (failed) {
      cs_free(d->name);
      c->nstates = i; /* the states copied whole */
      cs__heap_ops.destroy(&c->base);
      return NULL;
    }
    c->nstates = i + 1;
  }
  return &c->base;
}

void cs_heap_clone_strip(cs_backend *copy) {
  if (copy == NULL || copy->ops != &cs__heap_ops) return;
  heap *c = container_of(copy, heap, base);
  for (int i = 0; i < c->nstates; i++) {
    table *t = &c->states[i].t;
    for (size_t j = 0; t->slots && j <= t->mask; j++) {
      slot *s = &t->slots[j];
      if (s->tag != SLOT_NODE) continue;
      if (s->u.n->map) {
        table_drop(&s->u.n->map->t);
        cs_free(s->u.n->map);
      }
      cs_free(s->u.n);
      s->tag = SLOT_EMPTY;
    }
    t->count = 0;
    c->states[i].entries = 0;
  }
}

void cs_heap_backend_recycle(cs_backend *be, cs_backend *copy) {
  if (copy == NULL) return;
  if (be && be->ops == &cs__heap_ops && copy->ops == &cs__heap_ops) {
    cs_heap_clone_strip(copy); /* nothing left when the caller did it */
    heap *h = container_of(be, heap, base), *c = container_of(copy, heap, base);
    for (int i = 0; i < h->nstates && i < c->nstates; i++) {
      table *t = &c->states[i].t;
      if (t->raw == NULL) continue;
      cs_free(h->states[i].spare);
      h->states[i].spare = t->raw;
      h->states[i].spare_mask = t->mask;
      memset(t, 0, sizeof(*t));
    }
  }
  copy->ops->destroy(copy);
}
