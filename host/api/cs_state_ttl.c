/*
 * cs_state_ttl.c - the state objects of keyed states with a time to live
 * (descriptor:enable_time_to_live, Flink's StateTtlConfig): reading the
 * configuration off a descriptor, the errors of a registration that
 * changes it, and the reads and writes of such states, which cs_state.c
 * calls when a state object's ttl_on flag is set (states without TTL pay
 * that one test).
 *
 * The rules are cs_ttl.h's: each value (list element, map entry) carries
 * the time of its last access; reads hide (or, with
 * return_expired_if_not_cleaned_up, return once) and remove what has
 * expired, and refresh the rest under on_read_and_write. Every access
 * then lets the backend clean up a few entries (the heap's incremental
 * cleanup; RocksDB's compactions do it there): after the access, so that
 * what the access reads is still there for it (return_expired_if_not_
 * cleaned_up sees an expired value before the cleanup takes it), and after
 * the caller is done with a view of it (cleanup moves entries).
 *
 * Writes and map iterators. A write to a map while one of its iterators
 * is open ends the iterator ("modified while it was being iterated"), so
 * while a state object is being iterated its reads write nothing back and
 * the incremental cleanup pauses; the iterator itself queues what its
 * reads ask for (removals, new timestamps) and applies it when it ends.
 */
#include <lauxlib.h>
#include <string.h>

#include "host/api/cs_api_int.h"

/* ====================================================== reads, writes */

/* The flags of a read: no write-backs while the state is iterated. */
static int flags_of(const cs__kstate *s) {
  return s->iterating ? CS_TTL_NO_WRITE : 0;
}

/* Lets the backend check a few entries of the state (not while it is
 * being iterated); rc, the access's own result, wins over its error. */
static int after_access(cs__kstate *s, cs_backend *be, int rc) {
  if (s->iterating || (rc != 0 && rc != CS_ENOTFOUND)) return rc;
  int crc = be->ops->cleanup_expired(be, s->id, cs_ttl_now(), CS_TTL_CLEANUP_BUDGET);
  return crc ? crc : rc;
}

int cs__ttl_touch(cs__kstate *s, cs_backend *be) { return after_access(s, be, 0); }

int cs__ttl_get(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                const cs_slice *ukey, cs_slice *val) {
  return cs_ttl_get(be, s->id, &s->ttl, kg, key, ukey, flags_of(s),
                    &s->op->w->scratch, val);
}

int cs__ttl_contains(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                     const cs_slice *ukey) {
  cs_slice val;
  return after_access(s, be, cs__ttl_get(s, be, kg, key, ukey, &val));
}

int cs__ttl_put(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                const cs_slice *ukey, cs_slice val) {
  return after_access(s, be, cs_ttl_put(be, s->id, kg, key, ukey, val,
                                        &s->op->w->scratch));
}

int cs__ttl_list_get(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                     cs_buf *out) {
  return after_access(s, be, cs_ttl_list_get(be, s->id, &s->ttl, kg, key, flags_of(s),
                                             &s->op->w->scratch, out));
}

int cs__ttl_list_append(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                        cs_slice items) {
  return after_access(s, be, cs_ttl_list_append(be, s->id, kg, key, items,
                                                &s->op->w->scratch));
}

/* ====================================================== map iteration */

/* A queued write: op ('d' remove, 'p' put), then the user key and, for a
 * put, the stored value, each as a size_t length and the bytes. */
static int queue(cs_buf *pending, char op, cs_slice ukey, const cs_slice *user,
                 int64_t ts) {
  size_t vlen = user ? CS_TTL_TS_LEN + user->len : 0;
  int rc = cs_buf_reserve(pending, 1 + 2 * sizeof(size_t) + ukey.len + vlen);
  if (rc) return rc;
  char *p = pending->data + pending->len;
  *p++ = op;
  memcpy(p, &ukey.len, sizeof(size_t));
  p += sizeof(size_t);
  if (ukey.len) memcpy(p, ukey.data, ukey.len);
  p += ukey.len;
  memcpy(p, &vlen, sizeof(size_t));
  p += sizeof(size_t);
  if (user) {
    cs_ttl_put_ts(p, ts);
    if (user->len) memcpy(p + CS_TTL_TS_LEN, user->data, user->len);
    p += vlen;
  }
  pending->len = (size_t)(p - pending->data);
  return 0;
}

int cs__ttl_map_entry(cs__kstate *s, const cs_backend_entry *e,
                      cs_buf *pending, cs_slice *val) {
  int64_t now = cs_ttl_now();
  cs_slice user;
  int expired = cs_ttl_check(&s->ttl, now, e->val, &user), rc = 0;
  if (expired < 0) return expired;
  if (expired) {
    rc = queue(pending, 'd', e->ukey, NULL, 0);
    if (rc || s->ttl.visibility != CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP)
      return rc ? rc : 0;
  } else if (s->ttl.update == CS_TTL_ON_READ_AND_WRITE) {
    rc = queue(pending, 'p', e->ukey, &user, now);
    if (rc) return rc;
  }
  *val = user;
  return 1;
}

/* While another iterator of the state is open, the writes would end it:
 * they are dropped (the expired entries go at a later access). Then the
 * access's cleanup. */
int cs__ttl_apply(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                  cs_buf *pending) {
  int rc = 0;
  for (size_t off = 0; !s->iterating && rc == 0 && off < pending->len;) {
    const char *p = pending->data + off;
    char op = *p++;
    cs_slice ukey, v;
    memcpy(&ukey.len, p, sizeof(size_t));
    ukey.data = p += sizeof(size_t);
    p += ukey.len;
    memcpy(&v.len, p, sizeof(size_t));
    v.data = p += sizeof(size_t);
    off = (size_t)(p + v.len - pending->data);
    rc = op == 'd' ? be->ops->del(be, s->id, kg, key, &ukey)
                   : be->ops->put(be, s->id, kg, key, &ukey, v);
  }
  cs_buf_reset(pending);
  return after_access(s, be, rc);
}

int cs__ttl_map_is_empty(cs__kstate *s, cs_backend *be, int kg, cs_slice key,
                         int *empty) {
  int flags = flags_of(s);
  cs_backend_iter *it = NULL;
  int rc = be->ops->map_iter(be, s->id, kg, key, &it);
  cs_buf pending = {0};
  cs_backend_entry e;
  *empty = 1;
  while (rc == 0 && *empty && (rc = be->ops->iter_next(it, &e)) == 1) {
    cs_slice v;
    rc = cs__ttl_map_entry(s, &e, &pending, &v);
    if (rc == 1) *empty = 0;
    if (rc > 0) rc = 0;
  }
  if (it) be->ops->iter_destroy(it);
  if (rc == 0 && !(flags & CS_TTL_NO_WRITE)) rc = cs__ttl_apply(s, be, kg, key, &pending);
  cs_buf_free(&pending);
  return rc;
}

/* ====================================================== registration */

/* Reads one of two names at field of the table at idx into *out. */
static int read_choice(lua_State *L, int idx, const char *field, const char *a,
                       const char *b, int *out) {
  lua_getfield(L, idx, field);
  const char *v = lua_tostring(L, -1);
  *out = v && strcmp(v, a) == 0 ? 1 : v && strcmp(v, b) == 0 ? 2 : 0;
  lua_pop(L, 1);
  return *out != 0;
}

int cs__ttl_read_config(lua_State *L, int idx, const char *getter,
                        const char *name, cs_ttl_config *ttl) {
  idx = lua_absindex(L, idx);
  if (lua_getfield(L, idx, "ttl_config") == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  int t = lua_gettop(L), ok = lua_istable(L, t), isnum = 0, upd = 0, vis = 0;
  if (ok) {
    lua_getfield(L, t, "ttl");
    ttl->ttl_ms = lua_tointegerx(L, -1, &isnum);
    lua_pop(L, 1);
    ok = isnum && ttl->ttl_ms > 0 &&
         read_choice(L, t, "update_type", "on_create_and_write", "on_read_and_write",
                     &upd) &&
         read_choice(L, t, "visibility", "never_return_expired",
                     "return_expired_if_not_cleaned_up", &vis);
  }
  if (!ok)
    return luaL_error(L, "%s('%s'): the descriptor's ttl_config is not a state TTL "
                         "configuration (use descriptor:enable_time_to_live("
                         "cstream.state_ttl_config(ms)))", getter, name);
  ttl->update = (cs_ttl_update)upd;
  ttl->visibility = (cs_ttl_visibility)vis;
  lua_pop(L, 1);
  return 1;
}

/* "a time to live of 1000 ms, ..." or "no time to live". */
static void describe(const cs_ttl_config *c, char *buf, size_t n) {
  char d[160];
  cs_ttl_describe(c, d, sizeof(d));
  snprintf(buf, n, "%s%s", c ? "a time to live of " : "", d);
}

int cs__ttl_register_error(lua_State *L, cs_backend *be, const char *fullname,
                           const char *getter, const char *name,
                           const char *op_name, const cs_ttl_config *ttl) {
  int n = be->ops->state_count(be);
  for (int id = 0; id < n; id++) {
    const char *other;
    cs_state_kind kind;
    if (be->ops->state_info(be, id, &other, &kind) || strcmp(other, fullname) != 0)
      continue;
    cs_ttl_config old;
    int has_old = be->ops->state_ttl(be, id, &old) == 1;
    if (cs_ttl_config_eq(has_old ? &old : NULL, ttl)) break; /* the kind, then */
    char was[200], now[200];
    describe(has_old ? &old : NULL, was, sizeof(was));
    describe(ttl, now, sizeof(now));
    return luaL_error(L, "%s('%s'): state '%s' of operator '%s' was registered (or "
                         "restored from a checkpoint) with %s and is now asked for "
                         "with %s: the state cannot be migrated "
                         "(StateMigrationException); keep its TTL configuration, or "
                         "give the state a new name", getter, name, name, op_name,
                      was, now);
  }
  return luaL_error(L, "%s('%s'): the name is used by a state of another kind", getter,
                    name);
}
