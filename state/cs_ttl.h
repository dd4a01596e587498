/*
 * cs_ttl.h - state time-to-live (Flink's StateTtlConfig): the configuration
 * a keyed state is registered with, the format of its values, the clock it
 * is measured with, and the reads and writes of TTL states over any backend
 * (what Flink's TtlValueState, TtlListState and TtlMapState do, in C).
 *
 * Value format. Every value of a TTL state carries the time of its last
 * access: 8 bytes, big-endian, milliseconds, before the value.
 *   VALUE  ts ++ value                  one per key
 *   MAP    ts ++ value                  one per user key
 *   LIST   (ts ++ item)*                one per element; the items are
 *                                       MessagePack values (self-delimiting)
 * States without TTL store their bare bytes: they pay nothing. An entry is
 * expired once ts + ttl_ms <= now. The timestamps travel with the entries
 * into snapshots and checkpoints, so a restored entry expires when it would
 * have without the restart.
 *
 * Time is processing time: the wall clock (CLOCK_REALTIME, so that it
 * means the same after a restart, in another process), or the test clock.
 *
 * Cleanup. An expired entry that a read finds is removed (cleanup on read).
 * Besides: the heap backend checks a few entries of the state at every
 * access (ops->cleanup_expired, Flink's incremental cleanup); RocksDB drops
 * expired entries in its compactions (a compaction filter on the column
 * family of a TTL state); a snapshot (cs_backend_snapshot) and a restore
 * leave expired entries out.
 */
#ifndef CS_TTL_H
#define CS_TTL_H

#include "cs_backend.h"

typedef enum cs_ttl_update {
  CS_TTL_ON_CREATE_AND_WRITE = 1, /* writes refresh the timestamp */
  CS_TTL_ON_READ_AND_WRITE = 2    /* reads refresh it too */
} cs_ttl_update;

typedef enum cs_ttl_visibility {
  CS_TTL_NEVER_RETURN_EXPIRED = 1,
  /* An expired entry that no cleanup removed yet is returned (once: the
   * read that returns it removes it). */
  CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP = 2
} cs_ttl_visibility;

struct cs_ttl_config {
  int64_t ttl_ms; /* > 0 */
  cs_ttl_update update;
  cs_ttl_visibility visibility;
};

#define CS_TTL_TS_LEN 8

/* Entries that the heap backend checks per access of a TTL state. */
#define CS_TTL_CLEANUP_BUDGET 5

/* ============================================================ config */

/* Whether c is a valid configuration (ttl_ms > 0, known enum values). */
int cs_ttl_config_valid(const cs_ttl_config *c);
int cs_ttl_config_eq(const cs_ttl_config *a, const cs_ttl_config *b);
/* "on_create_and_write", ..., as the Lua API spells them. */
const char *cs_ttl_update_name(cs_ttl_update u);
const char *cs_ttl_visibility_name(cs_ttl_visibility v);
/* Writes "1000 ms, on_create_and_write, never_return_expired" into buf
 * (always NUL-terminated when n > 0); "no time to live" for c NULL. */
void cs_ttl_describe(const cs_ttl_config *c, char *buf, size_t n);

/* ============================================================= clock */

/* The current processing time in milliseconds. Safe on any thread. */
int64_t cs_ttl_now(void);
/* Test hooks: from now on the clock reads ms, and moves only when
 * cs_ttl_clock_advance is called; cs_ttl_clock_real goes back to the wall
 * clock. (The engine turns the test clock on for CSTREAM_TEST_CLOCK_MS.) */
void cs_ttl_clock_set(int64_t ms);
void cs_ttl_clock_advance(int64_t ms);
void cs_ttl_clock_real(void);
int cs_ttl_clock_is_test(void);

/* ============================================================ format */

static inline void cs_ttl_put_ts(char *p, int64_t ts) {
  uint64_t v = (uint64_t)ts;
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (char)(v & 0xff);
}

static inline int64_t cs_ttl_get_ts(const char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | (unsigned char)p[i];
  return (int64_t)v;
}

/* Whether an entry last accessed at ts has expired at now. A timestamp in
 * the future (a clock set back) has not. */
static inline int cs_ttl_expired(const cs_ttl_config *c, int64_t ts,
                                 int64_t now) {
  return ts <= now && (uint64_t)now - (uint64_t)ts >= (uint64_t)c->ttl_ms;
}

/* A stored VALUE or MAP value: returns 1 when it has expired at now, 0 when
 * not, CS_EDECODE when it is too short to hold a timestamp. *user (may be
 * NULL) is the value without its timestamp. */
int cs_ttl_check(const cs_ttl_config *c, int64_t now, cs_slice stored,
                 cs_slice *user);

/* The length of the LIST element (ts ++ item) at p[0, len), or CS_EDECODE
 * (negative) when there is not one whole element. */
long cs_ttl_list_elem_len(const char *p, size_t len);

/* Appends to out the elements of a stored LIST value that have not expired
 * at now, with their timestamps set to now when restamp. *kept and
 * *dropped (either may be NULL) count the elements. Returns 0, CS_EDECODE
 * (out cut back) or CS_ENOMEM. */
int cs_ttl_list_filter(const cs_ttl_config *c, int64_t now, cs_slice list,
                       int restamp, cs_buf *out, size_t *kept,
                       size_t *dropped);

/* For an entry (kind: its state's) being copied into a snapshot or out of
 * one: returns 0 when it has expired at now (leave it out), 1 to copy *val,
 * which for a LIST may now be its unexpired elements (in tmp), or
 * CS_ENOMEM. A value that does not parse is copied as it is. */
int cs_ttl_unexpired(const cs_ttl_config *c, cs_state_kind kind, int64_t now,
                     cs_slice *val, cs_buf *tmp);

/* ===================================================== reads, writes */

/* The operations below address a TTL state of be as the vtable does and
 * apply c (the state's configuration) at time cs_ttl_now(). */

/* Flags of the reads. */
enum {
  /* Neither refresh nor remove what the read finds (the caller has an
   * iterator open on the state, which a write would invalidate). */
  CS_TTL_NO_WRITE = 1
};

/* Reads a VALUE entry (ukey NULL) or a MAP entry. On a hit stores the
 * value without its timestamp in *val and returns 0; returns CS_ENOTFOUND
 * when there is none or it has expired (with visibility
 * CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP an expired entry is returned).
 * An expired entry is removed; a live one is restamped under
 * CS_TTL_ON_READ_AND_WRITE. *val is a view of the backend's bytes or of
 * scratch, valid until the next call on be or on scratch. */
int cs_ttl_get(cs_backend *be, int st, const cs_ttl_config *c, int kg,
               cs_slice key, const cs_slice *ukey, int flags, cs_buf *scratch,
               cs_slice *val);

/* Stores val stamped with the current time (built in scratch). */
int cs_ttl_put(cs_backend *be, int st, int kg, cs_slice key,
               const cs_slice *ukey, cs_slice val, cs_buf *scratch);

/* Appends the encoded items in items (one or more MessagePack values),
 * each stamped with the current time (built in scratch). CS_EDECODE when
 * items is not a sequence of whole values. */
int cs_ttl_list_append(cs_backend *be, int st, int kg, cs_slice key,
                       cs_slice items, cs_buf *scratch);

/* Reads a LIST: appends to out the items (without timestamps) that are
 * visible, and returns 0, or CS_ENOTFOUND when none is. Expired elements
 * are removed from the stored list (the whole entry when none is left),
 * and under CS_TTL_ON_READ_AND_WRITE the others restamped. scratch is
 * used for the rewritten list. */
int cs_ttl_list_get(cs_backend *be, int st, const cs_ttl_config *c, int kg,
                    cs_slice key, int flags, cs_buf *scratch, cs_buf *out);

#endif /* CS_TTL_H */
