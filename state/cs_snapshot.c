/*
 * cs_snapshot.c - snapshot and restore of a key-group range, for any backend
 * (only the vtable is used: state_count, state_info, state_ttl, scan_iter,
 * then register_ttl_state, put and append on restore).
 *
 * Format, version 1. Integers are little-endian; "varint" is unsigned LEB128
 * (at most 10 bytes).
 *
 *   header, 32 bytes
 *     magic      8   "CSSNAP1\0"
 *     version    u32 1
 *     flags      u32 bit 0: the state table has TTL configurations; a
 *                    reader rejects bits it does not know
 *     total_len  u64 length of the whole snapshot, footer included
 *     kg_first   u16 the key-group range the snapshot was taken of
 *     kg_last    u16
 *     nstates    u32
 *   state table, nstates times
 *     id varint (< nstates, unique) | kind u8 | [ttl] | name_len varint | name
 *     With flag bit 0, kind has bit 7 set for a TTL state and ttl follows:
 *     ttl_ms varint | update u8 | visibility u8 (cs_ttl.h). The flag is set
 *     only when a state has a TTL, so other snapshots are as they were.
 *   entries, up to the footer
 *     state varint (a table id) | kg u16 | key_len varint | ukey_len varint
 *     | val_len varint | key | ukey | val
 *     MAP states: one entry per user key. VALUE and LIST: one entry per key,
 *     ukey_len 0; a LIST value is the concatenation of its encoded items.
 *     TTL states' values carry their timestamps (cs_ttl.h); entries expired
 *     when the snapshot is taken are left out, and so are those expired
 *     when it is restored.
 *   footer, 16 bytes
 *     count      u64 number of entries
 *     checksum   u64 XXH3_64 of every byte before it
 *
 * A restore checks magic, version, length and checksum, then parses the
 * whole snapshot without touching the backend, and only then loads it, so a
 * corrupt snapshot is CS_EDECODE and leaves the backend as it was.
 */
#include "cs_backend.h"
#include "cs_ttl.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define SNAP_MAGIC "CSSNAP1\0"
#define SNAP_MAGIC_LEN 8
#define SNAP_VERSION 1u
#define SNAP_HEADER_LEN 32
#define SNAP_FOOTER_LEN 16
#define SNAP_TOTAL_OFF 16
#define KG_MAX 65535
#define SNAP_FLAG_TTL 1u
#define KIND_TTL 0x80

/* ============================================================ writing */

static size_t put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
  return (size_t)n;
}

static size_t put_varint(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (unsigned char)v;
  return n;
}

/* Appends one entry to out with a single reservation. Returns 0 or
 * CS_ENOMEM (out->len unchanged). */
static int write_entry(cs_buf *out, int state, int kg, cs_slice key,
                       cs_slice ukey, cs_slice val) {
  unsigned char hdr[2 + 4 * 10];
  size_t n = put_varint(hdr, (uint64_t)state);
  n += put_le(hdr + n, (uint64_t)kg, 2);
  n += put_varint(hdr + n, key.len);
  n += put_varint(hdr + n, ukey.len);
  n += put_varint(hdr + n, val.len);
  size_t need = n;
  if (key.len > SIZE_MAX - need) return CS_ENOMEM;
  need += key.len;
  if (ukey.len > SIZE_MAX - need) return CS_ENOMEM;
  need += ukey.len;
  if (val.len > SIZE_MAX - need) return CS_ENOMEM;
  need += val.len;
  int rc = cs_buf_reserve(out, need);
  if (rc) return rc;
  memcpy(out->data + out->len, hdr, n);
  out->len += n;
  if (key.len) memcpy(out->data + out->len, key.data, key.len);
  out->len += key.len;
  if (ukey.len) memcpy(out->data + out->len, ukey.data, ukey.len);
  out->len += ukey.len;
  if (val.len) memcpy(out->data + out->len, val.data, val.len);
  out->len += val.len;
  return 0;
}

/* Writes the header and the state table. */
static int write_head(cs_backend *be, int kg_first, int kg_last, int nstates,
                      cs_buf *out) {
  unsigned flags = 0;
  for (int id = 0; id < nstates; id++)
    if (be->ops->state_ttl(be, id, NULL) == 1) flags = SNAP_FLAG_TTL;
  unsigned char hdr[SNAP_HEADER_LEN];
  memcpy(hdr, SNAP_MAGIC, SNAP_MAGIC_LEN);
  put_le(hdr + 8, SNAP_VERSION, 4);
  put_le(hdr + 12, flags, 4);
  put_le(hdr + SNAP_TOTAL_OFF, 0, 8); /* patched at the end */
  put_le(hdr + 24, (uint64_t)kg_first, 2);
  put_le(hdr + 26, (uint64_t)kg_last, 2);
  put_le(hdr + 28, (uint64_t)nstates, 4);
  int rc = cs_buf_append(out, hdr, sizeof(hdr));
  for (int id = 0; rc == 0 && id < nstates; id++) {
    const char *name;
    cs_state_kind kind;
    rc = be->ops->state_info(be, id, &name, &kind);
    if (rc) break;
    cs_ttl_config ttl;
    int has_ttl = be->ops->state_ttl(be, id, &ttl) == 1;
    unsigned char st[3 + 3 * 10];
    size_t nlen = strlen(name);
    size_t n = put_varint(st, (uint64_t)id);
    st[n++] = (unsigned char)(kind | (has_ttl ? KIND_TTL : 0));
    if (has_ttl) {
      n += put_varint(st + n, (uint64_t)ttl.ttl_ms);
      st[n++] = (unsigned char)ttl.update;
      st[n++] = (unsigned char)ttl.visibility;
    }
    n += put_varint(st + n, nlen);
    rc = cs_buf_append(out, st, n);
    if (rc == 0) rc = cs_buf_append(out, name, nlen);
  }
  return rc;
}

/* What the entries of a state need: its kind and TTL configuration. */
typedef struct state_meta {
  cs_state_kind kind;
  int has_ttl;
  cs_ttl_config ttl;
} state_meta;

/* The kind and TTL of every state of be, in *out (caller frees). */
static int read_meta(cs_backend *be, int nstates, state_meta **out) {
  state_meta *m = cs_calloc(nstates > 0 ? (size_t)nstates : 1, sizeof(*m));
  if (m == NULL) return CS_ENOMEM;
  for (int id = 0; id < nstates; id++) {
    int rc = be->ops->state_info(be, id, NULL, &m[id].kind);
    if (rc == 0) rc = be->ops->state_ttl(be, id, &m[id].ttl);
    if (rc < 0) {
      cs_free(m);
      return rc;
    }
    m[id].has_ttl = rc;
  }
  *out = m;
  return 0;
}

/* Writes every scanned entry in [kg_first, kg_last] except the expired ones
 * of TTL states, counting them in *count. */
static int write_entries(cs_backend *be, int kg_first, int kg_last,
                         const state_meta *meta, int nstates, cs_buf *out,
                         uint64_t *count) {
  cs_backend_iter *it = NULL;
  cs_buf tmp = {0};
  int64_t now = cs_ttl_now();
  int rc = be->ops->scan_iter(be, kg_first, kg_last, &it);
  cs_backend_entry e;
  while (rc == 0 && (rc = be->ops->iter_next(it, &e)) == 1) {
    rc = 0;
    if (e.state < 0 || e.state >= nstates) {
      rc = CS_ESTATE; /* the backend scanned a state it did not report */
      break;
    }
    if (e.kg < kg_first || e.kg > kg_last) continue;
    const state_meta *m = &meta[e.state];
    cs_slice ukey = e.ukey, val = e.val;
    if (m->kind != CS_STATE_MAP) ukey.len = 0;
    int keep = m->has_ttl ? cs_ttl_unexpired(&m->ttl, m->kind, now, &val, &tmp) : 1;
    if (keep < 0) rc = keep;
    if (keep <= 0) continue;
    rc = write_entry(out, e.state, e.kg, e.key, ukey, val);
    ++*count;
  }
  if (it) be->ops->iter_destroy(it);
  cs_buf_free(&tmp);
  return rc < 0 ? rc : 0;
}

/* Writes header and state table, then one entry per scanned entry, then
 * the footer, whose checksum covers the total length patched into the
 * header. On any error out is cut back to where it was. */
int cs_backend_snapshot(cs_backend *be, int kg_first, int kg_last,
                        cs_buf *out) {
  if (be == NULL || out == NULL || kg_first < 0 || kg_last > KG_MAX ||
      kg_first > kg_last)
    return CS_EINVAL;
  int nstates = be->ops->state_count(be);
  if (nstates < 0) return nstates;
  size_t start = out->len;
  state_meta *meta = NULL;
  uint64_t count = 0;
  int rc = read_meta(be, nstates, &meta);
  if (rc == 0) rc = write_head(be, kg_first, kg_last, nstates, out);
  if (rc == 0) rc = write_entries(be, kg_first, kg_last, meta, nstates, out, &count);
  cs_free(meta);
  if (rc) goto fail;

  unsigned char foot[SNAP_FOOTER_LEN];
  put_le(foot, count, 8);
  rc = cs_buf_append(out, foot, 8);
  if (rc) goto fail;
  put_le((unsigned char *)out->data + start + SNAP_TOTAL_OFF,
         (uint64_t)(out->len - start) + 8, 8);
  put_le(foot + 8, XXH3_64bits(out->data + start, out->len - start), 8);
  rc = cs_buf_append(out, foot + 8, 8);
  if (rc) goto fail;
  return 0;

fail:
  out->len = start;
  return rc;
}

/* ============================================================ reading */

/* A bounds-checked cursor over the snapshot. Every read fails (returns
 * nonzero) rather than step past end. */
typedef struct cursor {
  const unsigned char *p;
  const unsigned char *end;
} cursor;

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static int read_fixed(cursor *c, int n, uint64_t *v) {
  if (c->end - c->p < n) return CS_EDECODE;
  *v = get_le(c->p, n);
  c->p += n;
  return 0;
}

static int read_varint(cursor *c, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (c->p == c->end) return CS_EDECODE;
    unsigned char b = *c->p++;
    if (shift == 63 && b > 1) return CS_EDECODE; /* beyond 64 bits */
    r |= (uint64_t)(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = r;
      return 0;
    }
  }
  return CS_EDECODE;
}

/* Reads n bytes as a slice borrowed from the snapshot. */
static int read_bytes(cursor *c, uint64_t n, cs_slice *s) {
  if (n > (uint64_t)(c->end - c->p)) return CS_EDECODE;
  s->data = (const char *)c->p;
  s->len = (size_t)n;
  c->p += n;
  return 0;
}

typedef struct snap_state {
  cs_slice name;
  state_meta m;
  int seen;
  int id; /* in the target backend, once registered */
} snap_state;

typedef struct snap_entry {
  uint64_t state;
  int kg;
  cs_slice key, ukey, val;
} snap_entry;

static int read_entry(cursor *c, uint32_t nstates, snap_entry *e) {
  uint64_t kg, klen, ulen, vlen;
  if (read_varint(c, &e->state) || e->state >= nstates ||
      read_fixed(c, 2, &kg) || read_varint(c, &klen) ||
      read_varint(c, &ulen) || read_varint(c, &vlen) ||
      read_bytes(c, klen, &e->key) || read_bytes(c, ulen, &e->ukey) ||
      read_bytes(c, vlen, &e->val))
    return CS_EDECODE;
  e->kg = (int)kg;
  return 0;
}

/* Checks the frame: magic, version, flags, length and checksum. */
static int check_frame(const unsigned char *d, size_t len) {
  if (d == NULL || len < SNAP_HEADER_LEN + SNAP_FOOTER_LEN) return CS_EDECODE;
  if (memcmp(d, SNAP_MAGIC, SNAP_MAGIC_LEN) != 0) return CS_EDECODE;
  if (get_le(d + 8, 4) != SNAP_VERSION || (get_le(d + 12, 4) & ~SNAP_FLAG_TTL))
    return CS_EDECODE;
  if (get_le(d + SNAP_TOTAL_OFF, 8) != (uint64_t)len) return CS_EDECODE;
  if (XXH3_64bits(d, len - 8) != get_le(d + len - 8, 8)) return CS_EDECODE;
  return 0;
}

static int name_cmp(const void *pa, const void *pb) {
  const snap_state *a = *(snap_state *const *)pa, *b = *(snap_state *const *)pb;
  size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
  int c = memcmp(a->name.data, b->name.data, n);
  if (c) return c;
  return a->name.len < b->name.len ? -1 : a->name.len > b->name.len;
}

/* Reads the kind byte of a state, and its TTL configuration when the
 * snapshot has them (ttls) and the kind says so. */
static int read_kind(cursor *c, int ttls, state_meta *m) {
  uint64_t kind, ms, upd, vis;
  if (read_fixed(c, 1, &kind)) return CS_EDECODE;
  m->has_ttl = ttls && (kind & KIND_TTL);
  kind &= m->has_ttl ? ~(uint64_t)KIND_TTL : ~(uint64_t)0;
  if (kind < CS_STATE_VALUE || kind > CS_STATE_MAP) return CS_EDECODE;
  m->kind = (cs_state_kind)kind;
  if (!m->has_ttl) return 0;
  if (read_varint(c, &ms) || ms > INT64_MAX || read_fixed(c, 1, &upd) ||
      read_fixed(c, 1, &vis))
    return CS_EDECODE;
  m->ttl.ttl_ms = (int64_t)ms;
  m->ttl.update = (cs_ttl_update)upd;
  m->ttl.visibility = (cs_ttl_visibility)vis;
  return cs_ttl_config_valid(&m->ttl) ? 0 : CS_EDECODE;
}

/* Parses the state table into *out (caller frees with cs_free). */
static int read_states(cursor *c, uint32_t nstates, int ttls,
                       snap_state **out) {
  *out = NULL;
  /* Each state takes at least 3 bytes: bound the allocation by the data. */
  if (nstates > (uint64_t)(c->end - c->p) / 3) return CS_EDECODE;
  if (nstates == 0) return 0;
  snap_state *st = cs_calloc(nstates, sizeof(snap_state));
  if (st == NULL) return CS_ENOMEM;
  for (uint32_t i = 0; i < nstates; i++) {
    uint64_t id, nlen;
    cs_slice name;
    state_meta m;
    if (read_varint(c, &id) || id >= nstates || st[id].seen ||
        read_kind(c, ttls, &m) || read_varint(c, &nlen) ||
        read_bytes(c, nlen, &name) ||
        (name.len && memchr(name.data, 0, name.len))) {
      cs_free(st);
      return CS_EDECODE;
    }
    st[id].seen = 1;
    st[id].m = m;
    st[id].name = name;
  }
  /* Names are unique: two states must not load into one. */
  snap_state **by_name = cs_malloc(nstates * sizeof(*by_name));
  if (by_name == NULL) {
    cs_free(st);
    return CS_ENOMEM;
  }
  for (uint32_t i = 0; i < nstates; i++) by_name[i] = &st[i];
  qsort(by_name, nstates, sizeof(*by_name), name_cmp);
  int dup = 0;
  for (uint32_t i = 1; i < nstates && !dup; i++)
    dup = name_cmp(&by_name[i - 1], &by_name[i]) == 0;
  cs_free(by_name);
  if (dup) {
    cs_free(st);
    return CS_EDECODE;
  }
  *out = st;
  return 0;
}

/* Registers every state of the snapshot in be. */
static int register_states(cs_backend *be, snap_state *st, uint32_t nstates) {
  cs_buf name = {0};
  int rc = 0;
  for (uint32_t i = 0; i < nstates && rc == 0; i++) {
    cs_buf_reset(&name);
    rc = cs_buf_append(&name, st[i].name.data, st[i].name.len);
    if (rc == 0) rc = cs_buf_append(&name, "", 1);
    if (rc == 0)
      rc = be->ops->register_ttl_state(be, name.data, st[i].m.kind,
                                       st[i].m.has_ttl ? &st[i].m.ttl : NULL);
    if (rc >= 0) {
      st[i].id = rc;
      rc = 0;
    }
  }
  cs_buf_free(&name);
  return rc;
}

static int same_key(const snap_entry *a, const snap_entry *b) {
  return a->state == b->state && a->kg == b->kg && a->key.len == b->key.len &&
         (a->key.len == 0 || memcmp(a->key.data, b->key.data, a->key.len) == 0);
}

/* Loads one entry of the snapshot into be; an entry of a TTL state that
 * has expired at now is left out (a LIST keeps its unexpired elements). */
static int load_entry(cs_backend *be, const snap_state *s, const snap_entry *e,
                      const snap_entry *prev, int64_t now, cs_buf *tmp) {
  cs_slice val = e->val;
  int keep = s->m.has_ttl && now != INT64_MIN
                 ? cs_ttl_unexpired(&s->m.ttl, s->m.kind, now, &val, tmp) : 1;
  if (keep <= 0) return keep;
  if (s->m.kind == CS_STATE_MAP)
    return be->ops->put(be, s->id, e->kg, e->key, &e->ukey, val);
  if (s->m.kind == CS_STATE_LIST && same_key(e, prev))
    /* A backend may scan a list in pieces: join them. */
    return be->ops->append(be, s->id, e->kg, e->key, val);
  return be->ops->put(be, s->id, e->kg, e->key, NULL, val);
}

/* Checks the frame, parses everything (pass 1), then registers the states
 * and loads the entries in [kg_first, kg_last] (pass 2). Only pass 2 touches
 * be, and it fails only when be does (CS_ENOMEM, or CS_ESTATE when a name is
 * registered with another kind or TTL configuration). */
static int restore(cs_backend *be, const char *data, size_t len, int kg_first,
                   int kg_last, int64_t now) {
  if (be == NULL || kg_first < 0 || kg_last > KG_MAX || kg_first > kg_last)
    return CS_EINVAL;
  const unsigned char *d = (const unsigned char *)data;
  int rc = check_frame(d, len);
  if (rc) return rc;
  int snap_first = (int)get_le(d + 24, 2), snap_last = (int)get_le(d + 26, 2);
  uint32_t nstates = (uint32_t)get_le(d + 28, 4);
  uint64_t count = get_le(d + len - SNAP_FOOTER_LEN, 8);
  if (snap_first > snap_last) return CS_EDECODE;

  cursor c = {d + SNAP_HEADER_LEN, d + len - SNAP_FOOTER_LEN};
  snap_state *st;
  rc = read_states(&c, nstates, (get_le(d + 12, 4) & SNAP_FLAG_TTL) != 0, &st);
  if (rc) return rc;

  /* Pass 1: the whole snapshot must parse before anything is loaded. */
  const unsigned char *entries = c.p;
  uint64_t n = 0;
  snap_entry e;
  while (c.p < c.end) {
    if (read_entry(&c, nstates, &e) || e.kg < snap_first || e.kg > snap_last ||
        (st[e.state].m.kind != CS_STATE_MAP && e.ukey.len != 0)) {
      rc = CS_EDECODE;
      goto done;
    }
    n++;
  }
  if (n != count) {
    rc = CS_EDECODE;
    goto done;
  }

  /* Pass 2: load. */
  rc = register_states(be, st, nstates);
  if (rc) goto done;
  c.p = entries;
  snap_entry prev = {.state = UINT64_MAX};
  cs_buf tmp = {0};
  while (c.p < c.end && rc == 0) {
    (void)read_entry(&c, nstates, &e); /* checked by pass 1 */
    if (e.kg < kg_first || e.kg > kg_last) continue;
    rc = load_entry(be, &st[e.state], &e, &prev, now, &tmp);
    prev = e;
  }
  cs_buf_free(&tmp);

done:
  cs_free(st);
  return rc;
}

int cs_backend_restore(cs_backend *be, const char *data, size_t len,
                       int kg_first, int kg_last) {
  return restore(be, data, len, kg_first, kg_last, cs_ttl_now());
}

/* INT64_MIN: no time at which anything has expired. */
int cs_backend_restore_all(cs_backend *be, const char *data, size_t len,
                           int kg_first, int kg_last) {
  return restore(be, data, len, kg_first, kg_last, INT64_MIN);
}
