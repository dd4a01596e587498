/*
 * cs_snapshot.c - snapshot and restore of a key-group range, for any backend
 * (only the vtable is used: state_count, state_info, scan_iter, then
 * register_state, put and append on restore).
 *
 * Format, version 1. Integers are little-endian; "varint" is unsigned LEB128
 * (at most 10 bytes).
 *
 *   header, 32 bytes
 *     magic      8   "CSSNAP1\0"
 *     version    u32 1
 *     flags      u32 0 (reserved; a reader rejects bits it does not know)
 *     total_len  u64 length of the whole snapshot, footer included
 *     kg_first   u16 the key-group range the snapshot was taken of
 *     kg_last    u16
 *     nstates    u32
 *   state table, nstates times
 *     id varint (< nstates, unique) | kind u8 | name_len varint | name
 *   entries, up to the footer
 *     state varint (a table id) | kg u16 | key_len varint | ukey_len varint
 *     | val_len varint | key | ukey | val
 *     MAP states: one entry per user key. VALUE and LIST: one entry per key,
 *     ukey_len 0; a LIST value is the concatenation of its encoded items.
 *   footer, 16 bytes
 *     count      u64 number of entries
 *     checksum   u64 XXH3_64 of every byte before it
 *
 * A restore checks magic, version, length and checksum, then parses the
 * whole snapshot without touching the backend, and only then loads it, so a
 * corrupt snapshot is CS_EDECODE and leaves the backend as it was.
 */
#include "cs_backend.h"

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
  unsigned char hdr[SNAP_HEADER_LEN];
  memcpy(hdr, SNAP_MAGIC, SNAP_MAGIC_LEN);
  put_le(hdr + 8, SNAP_VERSION, 4);
  put_le(hdr + 12, 0, 4);
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
    unsigned char st[1 + 2 * 10];
    size_t nlen = strlen(name);
    size_t n = put_varint(st, (uint64_t)id);
    st[n++] = (unsigned char)kind;
    n += put_varint(st + n, nlen);
    rc = cs_buf_append(out, st, n);
    if (rc == 0) rc = cs_buf_append(out, name, nlen);
  }
  return rc;
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
  cs_backend_iter *it = NULL;
  int rc = write_head(be, kg_first, kg_last, nstates, out);
  if (rc) goto fail;
  rc = be->ops->scan_iter(be, kg_first, kg_last, &it);
  if (rc) goto fail;
  uint64_t count = 0;
  cs_backend_entry e;
  while ((rc = be->ops->iter_next(it, &e)) == 1) {
    if (e.state < 0 || e.state >= nstates) {
      rc = CS_ESTATE; /* the backend scanned a state it did not report */
      goto fail;
    }
    if (e.kg < kg_first || e.kg > kg_last) continue;
    cs_state_kind kind;
    rc = be->ops->state_info(be, e.state, NULL, &kind);
    if (rc) goto fail;
    cs_slice ukey = e.ukey;
    if (kind != CS_STATE_MAP) ukey.len = 0;
    rc = write_entry(out, e.state, e.kg, e.key, ukey, e.val);
    if (rc) goto fail;
    count++;
  }
  if (rc < 0) goto fail;
  be->ops->iter_destroy(it);
  it = NULL;

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
  be->ops->iter_destroy(it);
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
  cs_state_kind kind;
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
  if (get_le(d + 8, 4) != SNAP_VERSION || get_le(d + 12, 4) != 0)
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

/* Parses the state table into *out (caller frees with cs_free). */
static int read_states(cursor *c, uint32_t nstates, snap_state **out) {
  *out = NULL;
  /* Each state takes at least 3 bytes: bound the allocation by the data. */
  if (nstates > (uint64_t)(c->end - c->p) / 3) return CS_EDECODE;
  if (nstates == 0) return 0;
  snap_state *st = cs_calloc(nstates, sizeof(snap_state));
  if (st == NULL) return CS_ENOMEM;
  for (uint32_t i = 0; i < nstates; i++) {
    uint64_t id, kind, nlen;
    cs_slice name;
    if (read_varint(c, &id) || id >= nstates || st[id].seen ||
        read_fixed(c, 1, &kind) || kind < CS_STATE_VALUE ||
        kind > CS_STATE_MAP || read_varint(c, &nlen) ||
        read_bytes(c, nlen, &name) ||
        (name.len && memchr(name.data, 0, name.len))) {
      cs_free(st);
      return CS_EDECODE;
    }
    st[id].seen = 1;
    st[id].kind = (cs_state_kind)kind;
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
    if (rc == 0) rc = be->ops->register_state(be, name.data, st[i].kind);
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

/* Checks the frame, parses everything (pass 1), then registers the states
 * and loads the entries in [kg_first, kg_last] (pass 2). Only pass 2 touches
 * be, and it fails only when be does (CS_ENOMEM, or CS_ESTATE when a name is
 * registered with another kind). */
int cs_backend_restore(cs_backend *be, const char *data, size_t len,
                       int kg_first, int kg_last) {
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
  rc = read_states(&c, nstates, &st);
  if (rc) return rc;

  /* Pass 1: the whole snapshot must parse before anything is loaded. */
  const unsigned char *entries = c.p;
  uint64_t n = 0;
  snap_entry e;
  while (c.p < c.end) {
    if (read_entry(&c, nstates, &e) || e.kg < snap_first || e.kg > snap_last ||
        (st[e.state].kind != CS_STATE_MAP && e.ukey.len != 0)) {
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
  while (c.p < c.end) {
    (void)read_entry(&c, nstates, &e); /* checked by pass 1 */
    if (e.kg < kg_first || e.kg > kg_last) continue;
    snap_state *s = &st[e.state];
    if (s->kind == CS_STATE_MAP) {
      rc = be->ops->put(be, s->id, e.kg, e.key, &e.ukey, e.val);
    } else if (s->kind == CS_STATE_LIST && same_key(&e, &prev)) {
      /* A backend may scan a list in pieces: join them. */
      rc = be->ops->append(be, s->id, e.kg, e.key, e.val);
    } else {
      rc = be->ops->put(be, s->id, e.kg, e.key, NULL, e.val);
    }
    if (rc) goto done;
    prev = e;
  }

done:
  cs_free(st);
  return rc;
}
