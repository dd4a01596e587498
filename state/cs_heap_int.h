/*
 * cs_heap_int.h - internal to the in-memory backend: the layout of its
 * tables (described at the top of cs_heap.c), shared by its files:
 *   cs_heap.c        entries, tables, the operations, iterators, TTL cleanup
 *   cs_heap_clone.c  a deep copy of a whole backend, for asynchronous
 *                    snapshots
 */
#ifndef CS_HEAP_INT_H
#define CS_HEAP_INT_H

#include "cs_backend.h"
#include "cs_ttl.h"

#include <stdint.h>

#define KG_MAX 65535
#define NONE SIZE_MAX
#define SLOT_ALIGN 32
#define INLINE_CAP 23 /* key + value bytes held in a slot */
#define OUTER_INITIAL_CAP 16
#define INNER_INITIAL_CAP 4
#define SHRINK_MIN 256 /* node values below this capacity never shrink */

/* ============================================================== types */

struct mapval;

typedef struct node {
  struct mapval *map; /* MAP state keys: the user-key table; else NULL */
  size_t vlen;        /* value bytes in use */
  size_t vcap;        /* value bytes allocated after the key */
  size_t klen;
  char bytes[]; /* klen key bytes, then vcap value bytes */
} node;

enum { SLOT_EMPTY = 0, SLOT_INLINE = 1, SLOT_NODE = 2 };

typedef struct slot {
  uint32_t hash; /* the low 32 bits of the entry's hash */
  uint16_t kg;   /* 0 in nested tables */
  uint8_t tag;   /* SLOT_* */
  uint8_t klen;  /* SLOT_INLINE: key bytes at u.in.bytes */
  union {
    node *n; /* SLOT_NODE */
    struct {
      uint8_t vlen; /* value bytes after the key */
      char bytes[INLINE_CAP];
    } in;
  } u;
} slot;

_Static_assert(sizeof(slot) == SLOT_ALIGN, "two slots per cache line");

typedef struct table {
  slot *slots; /* SLOT_ALIGN-aligned inside raw; NULL until the first insert */
  void *raw;
  size_t mask; /* capacity - 1 */
  size_t count;
} table;

typedef struct mapval {
  table t;
  uint64_t stamp; /* backend clock at the last mutation */
} mapval;

typedef struct hstate {
  char *name;
  cs_state_kind kind;
  table t;        /* (kg, key) -> entry */
  size_t entries; /* keys, or (key, user key) pairs for MAP states */
  int has_ttl;
  cs_ttl_config ttl;
  size_t cursor; /* TTL states: the next slot incremental cleanup checks */
  /* Slot memory of an earlier copy (cs_heap_clone.c), kept for the next
   * copy of a table of the same capacity: fresh memory costs a page fault
   * per 4 KiB, which on some machines costs more than the copy. */
  void *spare;
  size_t spare_mask;
} hstate;

typedef struct heap {
  cs_backend base;
  hstate *states;
  int nstates;
  int cap;
  uint64_t clock; /* bumped by every mutation */
  cs_buf tmp;     /* incremental cleanup: a LIST value being filtered */
} heap;

/* The vtable of the backend (cs_heap.c): a backend is a heap when it has
 * it. */
extern const cs_backend_ops cs__heap_ops;

#endif /* CS_HEAP_INT_H */
