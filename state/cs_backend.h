/*
 * cs_backend.h - the state backend interface: one vtable, bytes in and bytes
 * out, key group first. A backend instance belongs to one worker thread and
 * is never shared, so implementations take no locks.
 *
 * Addressing: every entry lives under (state, key group, key[, user key]).
 *   state     a small id returned by cs_backend_register (name + kind);
 *   kg        the key group of the current key (0 .. max_parallelism-1);
 *   key       the canonical key bytes (cs_codec_encode_key);
 *   user key  only for MAP states: the canonical bytes of the map key.
 * Values are opaque bytes (MessagePack from cs_codec). A LIST state value is
 * the concatenation of encoded items; append adds one or more items.
 * A persistent backend (RocksDB) stores entries under the composite byte key
 * kg (2 bytes, big-endian) ++ key ++ user key, one column family per state.
 */
#ifndef CS_BACKEND_H
#define CS_BACKEND_H

#include "cs_common.h"

typedef enum cs_state_kind {
  CS_STATE_VALUE = 1, /* value, reducing, aggregating, folding: one blob */
  CS_STATE_LIST = 2,  /* concatenated encoded items, append supported */
  CS_STATE_MAP = 3    /* user key -> value */
} cs_state_kind;

typedef struct cs_backend cs_backend;
typedef struct cs_backend_iter cs_backend_iter;
typedef struct cs_ttl_config cs_ttl_config; /* cs_ttl.h */

/* One entry seen by iteration; all slices borrowed until the next call on
 * the iterator. ukey is empty for non-map states. */
typedef struct cs_backend_entry {
  int state;
  int kg;
  cs_slice key;
  cs_slice ukey;
  cs_slice val;
} cs_backend_entry;

typedef struct cs_backend_ops {
  const char *name;

  /* Registers (or finds) a state by name. A name registered again with
   * another kind is CS_ESTATE. Returns the id (>= 0) or a negative error. */
  int (*register_state)(cs_backend *be, const char *name, cs_state_kind kind);

  /* Registers (or finds) a state whose entries expire (cs_ttl.h: the
   * format of its values, and how it is read and written). The TTL
   * configuration is part of the registration: the name registered again
   * with another kind or another configuration, or without one
   * (register_state), is CS_ESTATE, and so is register_state of the name of
   * a TTL state. A persistent backend keeps it with the state, so that it
   * comes back on restore. ttl NULL is register_state. */
  int (*register_ttl_state)(cs_backend *be, const char *name,
                            cs_state_kind kind, const cs_ttl_config *ttl);

  /* Looks up an entry. ukey is NULL except for MAP states. On a hit stores a
   * borrowed view in *val (valid until the next mutating call on be) and
   * returns 0; on a miss returns CS_ENOTFOUND. */
  int (*get)(cs_backend *be, int state, int kg, cs_slice key,
             const cs_slice *ukey, cs_slice *val);

  /* Stores a copy of val. */
  int (*put)(cs_backend *be, int state, int kg, cs_slice key,
             const cs_slice *ukey, cs_slice val);

  /* Removes an entry. For a MAP state with ukey NULL, removes every user
   * key under key. Removing what is absent is not an error. */
  int (*del)(cs_backend *be, int state, int kg, cs_slice key,
             const cs_slice *ukey);

  /* LIST states: appends the encoded item(s) in val. */
  int (*append)(cs_backend *be, int state, int kg, cs_slice key,
                cs_slice val);

  /* MAP states: iterates the user keys under key. Mutating the same
   * (state, key) while the iterator lives makes the next step return
   * CS_ESTATE ("modified during iteration"). */
  int (*map_iter)(cs_backend *be, int state, int kg, cs_slice key,
                  cs_backend_iter **it);

  /* Iterates every entry of every state whose key group is in
   * [kg_first, kg_last] (for snapshots and state dumps). */
  int (*scan_iter)(cs_backend *be, int kg_first, int kg_last,
                   cs_backend_iter **it);

  /* Advances: returns 1 with *e filled, 0 at the end, or a negative error. */
  int (*iter_next)(cs_backend_iter *it, cs_backend_entry *e);
  void (*iter_destroy)(cs_backend_iter *it); /* accepts NULL */

  /* Name and kind of a registered state, for snapshots. */
  int (*state_info)(cs_backend *be, int state, const char **name,
                    cs_state_kind *kind);
  int (*state_count)(cs_backend *be);
  /* The TTL configuration of a registered state: returns 1 with *ttl
   * filled (ttl may be NULL), 0 when it has none, CS_EINVAL for a bad id. */
  int (*state_ttl)(cs_backend *be, int state, cs_ttl_config *ttl);

  /* TTL states: checks about budget entries, going round the whole state
   * over successive calls, and removes those expired at now (for a LIST,
   * its expired elements): the heap backend's incremental cleanup, called
   * at each access of the state. A backend that drops expired entries in
   * another way (RocksDB: in compactions) does nothing. It mutates as del
   * does, so no map iterator may be live on the state. Returns 0 or a
   * negative error. */
  int (*cleanup_expired)(cs_backend *be, int state, int64_t now, int budget);

  /* Forgets the states registered from id first on, with their entries:
   * undoes the registrations of code that was rolled back (a hot reload
   * whose new version failed), so that a later version may use those names
   * with another kind. Ids below first are untouched. No iterator may be
   * live on a forgotten state. Returns 0 or a negative error. */
  int (*forget_states)(cs_backend *be, int first);

  /* Optional (NULL: unknown): the entries it holds and an estimate of
   * their bytes, cheap enough to ask every few hundred ms (for metrics). */
  void (*stats)(cs_backend *be, uint64_t *entries, uint64_t *bytes);
  /* Frees the backend and everything it holds. */
  void (*destroy)(cs_backend *be);
} cs_backend_ops;

struct cs_backend {
  const cs_backend_ops *ops;
};

/* The in-memory backend (used by the memory and filesystem backends).
 * Returns NULL when out of memory. Caller frees with be->ops->destroy. */
cs_backend *cs_heap_backend_create(void);

/* A deep copy of an in-memory backend (cs_heap_backend_create), sharing
 * nothing with it: the synchronous part of an asynchronous snapshot, whose
 * copy another thread serializes with cs_backend_snapshot while the
 * original's thread goes on. Costs a copy of the tables (their slot arrays
 * whole, nodes one by one). Returns NULL when out of memory or when be is
 * not an in-memory backend. Caller frees with ->ops->destroy. */
cs_backend *cs_heap_backend_clone(cs_backend *be);

/* Frees the entries of a copy made by cs_heap_backend_clone (on any
 * thread, once it is serialized), keeping only its tables' slot memory for
 * cs_heap_backend_recycle; the copy is empty then. */
void cs_heap_clone_strip(cs_backend *copy);

/* Gives the slot memory of copy (a clone of be) back to be, for its next
 * clone, and destroys copy; on be's thread. A clone then copies into memory
 * already mapped: on machines where page faults are dear, that is most of
 * the cost of a clone. be keeps that memory (as much as its tables) until
 * it is destroyed. copy NULL does nothing; be NULL only destroys copy. */
void cs_heap_backend_recycle(cs_backend *be, cs_backend *copy);

/* Snapshot of key groups [kg_first, kg_last] of every state, appended to out
 * in a self-describing, versioned, checksummed format (see cs_snapshot.c).
 * Works for any backend through scan_iter. */
int cs_backend_snapshot(cs_backend *be, int kg_first, int kg_last,
                        cs_buf *out);

/* Loads the entries of a snapshot whose key group is in [kg_first, kg_last]
 * into be (registering states as needed). Other key groups are skipped, so a
 * snapshot can be restored at another parallelism, and so are entries of
 * TTL states that have expired by now (cs_ttl.h). A truncated or corrupt
 * snapshot is CS_EDECODE and may leave be partly filled. */
int cs_backend_restore(cs_backend *be, const char *data, size_t len,
                       int kg_first, int kg_last);

/* As cs_backend_restore, keeping the entries of TTL states that have
 * expired: for tools that show what a snapshot holds. */
int cs_backend_restore_all(cs_backend *be, const char *data, size_t len,
                           int kg_first, int kg_last);

/* Operator state lives under this key group, outside every keyed range
 * (max parallelism is at most 32768). */
#define CS_OPSTATE_KEY_GROUP 65535

#endif /* CS_BACKEND_H */
