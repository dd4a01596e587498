/*
 * cs_codec.c - Lua values to MessagePack bytes and back, and the canonical
 * key form. The mapping itself is written down in cs_codec.h; encoded values
 * read without Lua, and key groups, are in cs_codec_raw.c.
 *
 * Encoder: writes the MessagePack bytes straight into the cs_buf rather than
 * through msgpack-c's msgpack_packer. The packer hands every token (often a
 * single byte) to a write callback, which costs an indirect call and a
 * bounds check per token, and the callback can report running out of memory
 * only through a side channel. Measured on the engine's typical record
 * {"word", 1} with the same table traversal, writing directly encodes about
 * 11 M records/s against 9-10 M/s through the packer (-O2, one core); most
 * of the remaining time is the Lua API. The bytes are the ones msgpack-c
 * writes: the shortest integer form (uint for non-negative values), float64
 * for every float, fixstr/str8/16/32 for strings.
 *
 * Decoder: a hand-written reader over the bytes, pushing Lua values as it
 * goes. It allocates nothing besides the Lua values themselves, where
 * msgpack-c's unpacker builds a msgpack_object tree in a zone that then has
 * to be walked a second time: on {"word", 1} about 8.5-10 M decodes/s
 * against 4.5-5.5 M/s for msgpack_unpack_next plus the walk. Every length
 * is checked against the bytes that remain before anything is read or
 * allocated, so a corrupt length cannot make it read past the end or create
 * a huge table.
 */
#include "cs_codec.h"
#include "cs_codec_int.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ============================================================== encoder */

/* How the value at depth d + 1 is reached from the table at depth d; kept
 * only so that an error can name the path. */
enum { SEG_INDEX, SEG_KEY, SEG_IN_KEY };

typedef struct seg {
  int kind;
  int key;           /* SEG_KEY: stack index of the key */
  lua_Integer index; /* SEG_INDEX: the array index */
} seg;

typedef struct enc {
  lua_State *L;
  cs_buf *out;
  int canonical;
  char *err;
  size_t errlen;
  const void *tables[CS_CODEC_MAX_DEPTH]; /* tables on the encoding path */
  seg path[CS_CODEC_MAX_DEPTH];
} enc;

/* A bounded string builder for error messages: never overflows, always
 * leaves err NUL-terminated when errlen > 0. */
typedef struct msg {
  char *p;
  size_t len, cap;
} msg;

static void msg_add(msg *m, const char *s, size_t n) {
  if (m->cap == 0) return;
  size_t room = m->cap - 1 - m->len;
  if (n > room) n = room;
  memcpy(m->p + m->len, s, n);
  m->len += n;
  m->p[m->len] = '\0';
}

static void msg_str(msg *m, const char *s) { msg_add(m, s, strlen(s)); }

static int is_identifier(const char *s, size_t n) {
  if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* Appends one path segment: [3], .name (name when first), ["a b"], [1.5],
 * [true], [table], or <key> while inside a table used as a key. */
static void msg_segment(msg *m, lua_State *L, const seg *s, int first) {
  char tmp[64];
  if (s->kind == SEG_INDEX) {
    snprintf(tmp, sizeof(tmp), "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)s->index);
    msg_str(m, tmp);
    return;
  }
  if (s->kind == SEG_IN_KEY) {
    msg_str(m, "<key>");
    return;
  }
  switch (lua_type(L, s->key)) {
  case LUA_TSTRING: {
    size_t n;
    const char *k = lua_tolstring(L, s->key, &n);
    if (is_identifier(k, n)) {
      if (!first) msg_str(m, ".");
      msg_add(m, k, n);
      return;
    }
    msg_str(m, "[\"");
    for (size_t i = 0; i < n && i < 40; i++) {
      unsigned char c = (unsigned char)k[i];
      if (c == '"' || c == '\\') {
        tmp[0] = '\\', tmp[1] = (char)c;
        msg_add(m, tmp, 2);
      } else if (c < 0x20 || c >= 0x7f) {
        snprintf(tmp, sizeof(tmp), "\\x%02x", c);
        msg_str(m, tmp);
      } else {
        msg_add(m, (const char *)&c, 1);
      }
    }
    msg_str(m, n > 40 ? "...\"]" : "\"]");
    return;
  }
  case LUA_TNUMBER:
    if (lua_isinteger(L, s->key))
      snprintf(tmp, sizeof(tmp), "[" LUA_INTEGER_FMT "]",
               (LUAI_UACINT)lua_tointeger(L, s->key));
    else
      snprintf(tmp, sizeof(tmp), "[%.17g]", (double)lua_tonumber(L, s->key));
    msg_str(m, tmp);
    return;
  case LUA_TBOOLEAN:
    msg_str(m, lua_toboolean(L, s->key) ? "[true]" : "[false]");
    return;
  default:
    msg_str(m, "[");
    msg_str(m, luaL_typename(L, s->key));
    msg_str(m, "]");
    return;
  }
}

/* Records an encoding error: "<what> cannot be encoded<how> at <path>", the
 * path being the segments above depth. Returns CS_EENCODE. */
static int fail(enc *e, int depth, const char *what, const char *how) {
  msg m = {e->err, 0, e->err ? e->errlen : 0};
  if (m.cap == 0) return CS_EENCODE;
  m.p[0] = '\0';
  msg_str(&m, what);
  msg_str(&m, " cannot be encoded");
  msg_str(&m, how);
  if (depth > 0) {
    msg_str(&m, " at ");
    for (int i = 0; i < depth; i++) msg_segment(&m, e->L, &e->path[i], i == 0);
  }
  return CS_EENCODE;
}

static int fail_nomem(enc *e) {
  if (e->err && e->errlen > 0) snprintf(e->err, e->errlen, "out of memory");
  return CS_ENOMEM;
}

/* The article and name of a type that has no encoding. */
static const char *unencodable(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TFUNCTION: return "a function";
  case LUA_TUSERDATA: return "a userdata";
  case LUA_TLIGHTUSERDATA: return "a light userdata";
  case LUA_TTHREAD: return "a thread (coroutine)";
  default: return "a value of unknown type";
  }
}

/* Makes room for n more bytes and returns where they go, or NULL (with the
 * error recorded) when out of memory. */
static inline unsigned char *room(enc *e, size_t n) {
  cs_buf *b = e->out;
  if (b->cap - b->len < n && cs_buf_reserve(b, n) != 0) {
    fail_nomem(e);
    return NULL;
  }
  return (unsigned char *)b->data + b->len;
}

static int put_byte(enc *e, unsigned char c) {
  unsigned char *p = room(e, 1);
  if (p == NULL) return CS_ENOMEM;
  p[0] = c;
  e->out->len += 1;
  return 0;
}

/* Writes v in its shortest form, as msgpack_pack_int64 writes it:
 * non-negative values as positive fixint or uint8..64, negative ones as
 * negative fixint or int8..64, to p (9 bytes of room). Returns the length. */
static size_t int_bytes(unsigned char *p, lua_Integer v) {
  if (v >= 0) {
    uint64_t u = (uint64_t)v;
    if (u < 0x80) {
      p[0] = (unsigned char)u;
      return 1;
    }
    if (u <= 0xff) {
      p[0] = 0xcc, p[1] = (unsigned char)u;
      return 2;
    }
    if (u <= 0xffff) {
      p[0] = 0xcd, cs__codec_put_be16(p + 1, (uint16_t)u);
      return 3;
    }
    if (u <= 0xffffffffu) {
      p[0] = 0xce, cs__codec_put_be32(p + 1, (uint32_t)u);
      return 5;
    }
    p[0] = 0xcf, cs__codec_put_be64(p + 1, u);
    return 9;
  }
  if (v >= -32) {
    p[0] = (unsigned char)(0x100 + v);
    return 1;
  }
  if (v >= INT8_MIN) {
    p[0] = 0xd0, p[1] = (unsigned char)(uint8_t)(int8_t)v;
    return 2;
  }
  if (v >= INT16_MIN) {
    p[0] = 0xd1, cs__codec_put_be16(p + 1, (uint16_t)(int16_t)v);
    return 3;
  }
  if (v >= INT32_MIN) {
    p[0] = 0xd2, cs__codec_put_be32(p + 1, (uint32_t)(int32_t)v);
    return 5;
  }
  p[0] = 0xd3, cs__codec_put_be64(p + 1, (uint64_t)v);
  return 9;
}

static int put_int(enc *e, lua_Integer v) {
  unsigned char *p = room(e, 9);
  if (p == NULL) return CS_ENOMEM;
  e->out->len += int_bytes(p, v);
  return 0;
}

static int put_float(enc *e, double d, int depth) {
  if (e->canonical) {
    if (isnan(d)) return fail(e, depth, "NaN", " in a key");
    /* An integral float in int64 range is the same Lua key as the integer.
     * The range test comes first: converting an out-of-range double is
     * undefined. -0.0 becomes 0, as it does as a Lua table key. */
    if (d >= -0x1p63 && d < 0x1p63 && d == floor(d))
      return put_int(e, (lua_Integer)d);
  }
  unsigned char *p = room(e, 9);
  if (p == NULL) return CS_ENOMEM;
  uint64_t bits;
  memcpy(&bits, &d, sizeof(bits));
  p[0] = 0xcb;
  cs__codec_put_be64(p + 1, bits);
  e->out->len += 9;
  return 0;
}

/* Writes an array or map header: the fix form (base byte fix, lengths up to
 * fixmax), else the 8-bit form when code8 is not 0, else 16 or 32 bits. */
static int put_header(enc *e, size_t n, unsigned fix, size_t fixmax,
                      unsigned code8, unsigned code16, unsigned code32) {
  unsigned char *p = room(e, 5);
  if (p == NULL) return CS_ENOMEM;
  size_t w;
  if (n <= fixmax) {
    p[0] = (unsigned char)(fix | n), w = 1;
  } else if (code8 && n <= 0xff) {
    p[0] = (unsigned char)code8, p[1] = (unsigned char)n, w = 2;
  } else if (n <= 0xffff) {
    p[0] = (unsigned char)code16, cs__codec_put_be16(p + 1, (uint16_t)n), w = 3;
  } else {
    p[0] = (unsigned char)code32, cs__codec_put_be32(p + 1, (uint32_t)n), w = 5;
  }
  e->out->len += w;
  return 0;
}

static int put_array_header(enc *e, size_t n) {
  return put_header(e, n, 0x90, 15, 0, 0xdc, 0xdd);
}

static int put_map_header(enc *e, size_t n) {
  return put_header(e, n, 0x80, 15, 0, 0xde, 0xdf);
}

static int put_str(enc *e, const char *s, size_t n, int depth) {
  if (n > 0xffffffffu)
    return fail(e, depth, "a string longer than 4294967295 bytes", "");
  unsigned char *p = room(e, 5 + n);
  if (p == NULL) return CS_ENOMEM;
  size_t w;
  if (n < 32) {
    p[0] = (unsigned char)(0xa0 | n), w = 1;
  } else if (n <= 0xff) {
    p[0] = 0xd9, p[1] = (unsigned char)n, w = 2;
  } else if (n <= 0xffff) {
    p[0] = 0xda, cs__codec_put_be16(p + 1, (uint16_t)n), w = 3;
  } else {
    p[0] = 0xdb, cs__codec_put_be32(p + 1, (uint32_t)n), w = 5;
  }
  memcpy(p + w, s, n);
  e->out->len += w + n;
  return 0;
}

static int encode_value(enc *e, int idx, int depth);

/* Fast path for the common array: the table's border n is its length and
 * lua_next visits exactly the keys 1..n in order (the array part). Writes
 * the array and returns 0, or returns 1 having written something the caller
 * must discard when the table is not like that, or an error. */
static int encode_sequence(enc *e, int t, lua_Integer n, int depth) {
  lua_State *L = e->L;
  int rc = put_array_header(e, (size_t)n);
  if (rc) return rc;
  lua_Integer i = 0;
  lua_pushnil(L); /* [-0, +1] */
  while (lua_next(L, t)) { /* [-1, +2] key, value */
    if (i == n || !lua_isinteger(L, -2) || lua_tointeger(L, -2) != i + 1) {
      lua_pop(L, 2);
      return 1;
    }
    i++;
    e->path[depth].kind = SEG_INDEX;
    e->path[depth].index = i;
    rc = encode_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1); /* value */
    if (rc) {
      lua_pop(L, 1); /* key */
      return rc;
    }
  }
  return i == n ? 0 : 1;
}

/* A map entry written at body + off: the key, then the value, len bytes in
 * all. Entries are ordered by their bytes (klen = len): a complete
 * MessagePack value is never a proper prefix of another, so this is the
 * byte order of the keys, with two equal keys (distinct tables with equal
 * contents) ordered by their values. */
typedef cs_kv_span entry;

/* Writes one key (in the encoder's mode) for the entry whose key is at stack
 * index k, with the path pointing at the containing table. */
static int encode_key(enc *e, int k, int depth) {
  switch (lua_type(e->L, k)) {
  case LUA_TFUNCTION:
  case LUA_TUSERDATA:
  case LUA_TLIGHTUSERDATA:
  case LUA_TTHREAD:
    return fail(e, depth, unencodable(e->L, k), " as a table key");
  default:
    e->path[depth].kind = SEG_IN_KEY;
    return encode_value(e, k, depth + 1);
  }
}

/* Writes the count entries of table t as a map; in canonical mode sorted by
 * their encoded bytes. The scratch entry list comes from the C stack for
 * small maps and from cs_malloc otherwise; nothing here raises a Lua error,
 * so it cannot leak. */
static int encode_map(enc *e, int t, size_t count, int depth) {
  lua_State *L = e->L;
  int rc = put_map_header(e, count);
  if (rc) return rc;
  if (!e->canonical) {
    lua_pushnil(L);
    while (lua_next(L, t)) {
      int k = lua_gettop(L) - 1;
      rc = encode_key(e, k, depth);
      if (rc == 0) {
        e->path[depth].kind = SEG_KEY;
        e->path[depth].key = k;
        rc = encode_value(e, k + 1, depth + 1);
      }
      lua_pop(L, 1);
      if (rc) {
        lua_pop(L, 1);
        return rc;
      }
    }
    return 0;
  }

  entry small[2 * 16];
  entry *v = small;
  if (count > 16) {
    v = cs_malloc(2 * count * sizeof(*v));
    if (v == NULL) return fail_nomem(e);
  }
  size_t body = e->out->len, n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int k = lua_gettop(L) - 1;
    entry *x = &v[n++];
    x->off = e->out->len - body;
    rc = encode_key(e, k, depth);
    if (rc == 0) {
      e->path[depth].kind = SEG_KEY;
      e->path[depth].key = k;
      rc = encode_value(e, k + 1, depth + 1);
    }
    x->len = x->klen = e->out->len - body - x->off;
    lua_pop(L, 1);
    if (rc) {
      lua_pop(L, 1);
      goto done;
    }
  }
  /* Sort, then lay the entries out in order past the end of the buffer and
   * move them back over the unsorted ones. */
  size_t total = e->out->len - body;
  if (room(e, total) == NULL) {
    rc = CS_ENOMEM;
    goto done;
  }
  char *base = e->out->data + body;
  cs_sort_kv_spans(base, v, v + count, n);
  char *dst = base + total;
  for (size_t i = 0; i < n; i++) {
    memcpy(dst, base + v[i].off, v[i].len);
    dst += v[i].len;
  }
  memmove(base, base + total, total);
done:
  if (v != small) cs_free(v);
  return rc;
}

/* Writes the table at absolute index t, reached at the given depth. */
static int encode_table(enc *e, int t, int depth) {
  lua_State *L = e->L;
  if (depth >= CS_CODEC_MAX_DEPTH) {
    char what[64];
    snprintf(what, sizeof(what), "a table nested deeper than %d levels",
             CS_CODEC_MAX_DEPTH);
    return fail(e, depth, what, "");
  }
  const void *self = lua_topointer(L, t);
  for (int i = 0; i < depth; i++)
    if (e->tables[i] == self)
      return fail(e, depth, "a cyclic table (one that contains itself)", "");
  /* lua_checkstack, not luaL_checkstack: a Lua error here would leak the
   * scratch memory of the maps being written above us. */
  if (!lua_checkstack(L, 4)) return fail_nomem(e);
  e->tables[depth] = self;

  size_t start = e->out->len;
  lua_Unsigned border = lua_rawlen(L, t);
  if (border > 0 && border <= 0xffffffffu) {
    int rc = encode_sequence(e, t, (lua_Integer)border, depth);
    if (rc <= 0) return rc;
    e->out->len = start;
  }

  /* General case: one pass to count the entries and see whether the keys
   * are exactly 1..n, then one to write them. */
  size_t count;
  int seq = cs_codec_table_is_sequence(L, t, &count);
  if (count > 0xffffffffu)
    return fail(e, depth, "a table with more than 4294967295 entries", "");
  if (count == 0) return put_byte(e, 0x90);
  if (!seq) return encode_map(e, t, count, depth);

  int rc = put_array_header(e, count);
  for (lua_Integer i = 1; rc == 0 && i <= (lua_Integer)count; i++) {
    lua_rawgeti(L, t, i);
    e->path[depth].kind = SEG_INDEX;
    e->path[depth].index = i;
    rc = encode_value(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  return rc;
}

/* Writes the value at absolute index idx, found at the given depth. */
static int encode_value(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return put_byte(e, 0xc0);
  case LUA_TBOOLEAN:
    return put_byte(e, lua_toboolean(L, idx) ? 0xc3 : 0xc2);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return put_int(e, lua_tointeger(L, idx));
    return put_float(e, (double)lua_tonumber(L, idx), depth);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_str(e, s, n, depth);
  }
  case LUA_TTABLE:
    return encode_table(e, idx, depth);
  default:
    return fail(e, depth, unencodable(L, idx), "");
  }
}

static int encode(lua_State *L, int idx, cs_buf *out, char *err,
                  size_t errlen, int canonical) {
  enc e;
  e.L = L;
  e.out = out;
  e.canonical = canonical;
  e.err = err;
  e.errlen = errlen;
  int top = lua_gettop(L);
  size_t len = out->len;
  int rc = encode_value(&e, lua_absindex(L, idx), 0);
  if (rc) {
    out->len = len;
    lua_settop(L, top);
  }
  return rc;
}

int cs_codec_encode(lua_State *L, int idx, cs_buf *out, char *err,
                    size_t errlen) {
  return encode(L, idx, out, err, errlen, 0);
}

int cs_codec_encode_key(lua_State *L, int idx, cs_buf *out, char *err,
                        size_t errlen) {
  return encode(L, idx, out, err, errlen, 1);
}

int cs_codec_encode_tuple(lua_State *L, int first, int n, cs_buf *out,
                          char *err, size_t errlen, int mark,
                          size_t *mark_off, size_t *mark_len) {
  enc e;
  e.L = L;
  e.out = out;
  e.canonical = 0;
  e.err = err;
  e.errlen = errlen;
  int top = lua_gettop(L);
  size_t len = out->len;
  first = lua_absindex(L, first);
  e.tables[0] = NULL; /* the tuple is no table: nothing can contain it */
  int rc = put_array_header(&e, (size_t)n);
  for (int i = 0; rc == 0 && i < n; i++) {
    size_t at = out->len;
    e.path[0].kind = SEG_INDEX;
    e.path[0].index = i + 1;
    rc = encode_value(&e, first + i, 1);
    if (i + 1 == mark) *mark_off = at, *mark_len = out->len - at;
  }
  if (rc) {
    out->len = len;
    lua_settop(L, top);
  }
  return rc;
}

/* Of the functions on encoded values without Lua (cs_codec_raw.c), the one
 * that writes: here, since it writes integers with the encoder's int_bytes. */
int cs_codec_put_number(cs_buf *out, const cs_num *num) {
  if (cs_buf_reserve(out, 9)) return CS_ENOMEM;
  unsigned char *p = (unsigned char *)out->data + out->len;
  if (num->is_int) {
    out->len += int_bytes(p, (lua_Integer)num->i);
  } else {
    uint64_t bits;
    memcpy(&bits, &num->d, sizeof(bits));
    p[0] = 0xcb;
    cs__codec_put_be64(p + 1, bits);
    out->len += 9;
  }
  return 0;
}

/* ============================================================== decoder */

typedef struct dec {
  lua_State *L;
  const unsigned char *p, *end;
} dec;

/* The length of a str/bin/array/map whose n-byte big-endian length follows
 * the type byte, or -1 when the bytes end first. */
static inline int64_t read_len(dec *d, int n) {
  if (d->end - d->p < n) return -1;
  const unsigned char *p = d->p;
  d->p += n;
  return n == 1   ? p[0]
         : n == 2 ? cs__codec_get_be16(p)
                  : (int64_t)cs__codec_get_be32(p);
}

static inline int push_str(dec *d, int64_t n) {
  if (n < 0 || d->end - d->p < n) return CS_EDECODE;
  lua_pushlstring(d->L, (const char *)d->p, (size_t)n);
  d->p += n;
  return 0;
}

static int decode_value(dec *d, int depth);

static int decode_array(dec *d, int64_t n, int depth) {
  lua_State *L = d->L;
  /* Every element takes at least one byte: a longer count is corrupt, and
   * checking it first keeps a bad count from sizing a huge table. */
  if (n < 0 || n > d->end - d->p || depth >= CS_CODEC_MAX_DEPTH)
    return CS_EDECODE;
  luaL_checkstack(L, 2, "decoding a value");
  lua_createtable(L, n <= INT_MAX ? (int)n : 0, 0);
  for (int64_t i = 1; i <= n; i++) {
    int rc = decode_value(d, depth + 1);
    if (rc) return rc;
    lua_rawseti(L, -2, (lua_Integer)i);
  }
  return 0;
}

static int decode_map(dec *d, int64_t n, int depth) {
  lua_State *L = d->L;
  if (n < 0 || n > (d->end - d->p) / 2 || depth >= CS_CODEC_MAX_DEPTH)
    return CS_EDECODE;
  luaL_checkstack(L, 3, "decoding a value");
  lua_createtable(L, 0, n <= INT_MAX ? (int)n : 0);
  for (int64_t i = 0; i < n; i++) {
    int rc = decode_value(d, depth + 1);
    if (rc) return rc;
    int t = lua_type(L, -1);
    if (t == LUA_TNIL) return CS_EDECODE;
    if (t == LUA_TNUMBER && !lua_isinteger(L, -1) && isnan(lua_tonumber(L, -1)))
      return CS_EDECODE;
    rc = decode_value(d, depth + 1);
    if (rc) return rc;
    lua_rawset(L, -3);
  }
  return 0;
}

/* Reads one value at d->p and pushes it. On error the caller pops whatever
 * was pushed below it. */
static int decode_value(dec *d, int depth) {
  lua_State *L = d->L;
  if (d->p >= d->end) return CS_EDECODE;
  unsigned c = *d->p++;
  if (c < 0x80) {
    lua_pushinteger(L, (lua_Integer)c);
    return 0;
  }
  if (c >= 0xe0) {
    lua_pushinteger(L, (lua_Integer)c - 0x100);
    return 0;
  }
  if (c >= 0xa0 && c <= 0xbf) return push_str(d, c & 0x1f);
  if (c <= 0x8f) return decode_map(d, c & 0x0f, depth);
  if (c <= 0x9f) return decode_array(d, c & 0x0f, depth);

  static const signed char width[32] = {
      /* c0 nil, c1 unused, c2 false, c3 true */ 0, -1, 0, 0,
      /* c4..c6 bin, c7..c9 ext (unused) */ 1, 2, 4, -1, -1, -1,
      /* ca float32, cb float64 */ 4, 8,
      /* cc..cf uint8..64 */ 1, 2, 4, 8,
      /* d0..d3 int8..64 */ 1, 2, 4, 8,
      /* d4..d8 fixext (unused) */ -1, -1, -1, -1, -1,
      /* d9..db str8..32 */ 1, 2, 4,
      /* dc, dd array16/32; de, df map16/32 */ 2, 4, 2, 4};
  int w = width[c - 0xc0];
  if (w < 0 || d->end - d->p < w) return CS_EDECODE;
  const unsigned char *p = d->p;
  switch (c) {
  case 0xc0: lua_pushnil(L); return 0;
  case 0xc2: lua_pushboolean(L, 0); return 0;
  case 0xc3: lua_pushboolean(L, 1); return 0;
  case 0xc4: case 0xc5: case 0xc6: case 0xd9: case 0xda: case 0xdb:
    return push_str(d, read_len(d, w));
  case 0xdc: case 0xdd:
    return decode_array(d, read_len(d, w), depth);
  case 0xde: case 0xdf:
    return decode_map(d, read_len(d, w), depth);
  default:
    break;
  }
  d->p += w;
  switch (c) {
  case 0xca: {
    uint32_t bits = cs__codec_get_be32(p);
    float f;
    memcpy(&f, &bits, sizeof(f));
    lua_pushnumber(L, (lua_Number)f);
    return 0;
  }
  case 0xcb: {
    uint64_t bits = cs__codec_get_be64(p);
    double f;
    memcpy(&f, &bits, sizeof(f));
    lua_pushnumber(L, (lua_Number)f);
    return 0;
  }
  case 0xcc: lua_pushinteger(L, p[0]); return 0;
  case 0xcd: lua_pushinteger(L, cs__codec_get_be16(p)); return 0;
  case 0xce: lua_pushinteger(L, (lua_Integer)cs__codec_get_be32(p)); return 0;
  case 0xcf: {
    uint64_t u = cs__codec_get_be64(p);
    if (u > (uint64_t)LUA_MAXINTEGER)
      lua_pushnumber(L, (lua_Number)u); /* no Lua integer holds it */
    else
      lua_pushinteger(L, (lua_Integer)u);
    return 0;
  }
  case 0xd0: lua_pushinteger(L, (int8_t)p[0]); return 0;
  case 0xd1: lua_pushinteger(L, (int16_t)cs__codec_get_be16(p)); return 0;
  case 0xd2: lua_pushinteger(L, (int32_t)cs__codec_get_be32(p)); return 0;
  default: /* 0xd3 */
    lua_pushinteger(L, (lua_Integer)(int64_t)cs__codec_get_be64(p));
    return 0;
  }
}

int cs_codec_decode(lua_State *L, const char *data, size_t len, size_t *used) {
  if (len == 0) return CS_EDECODE;
  int top = lua_gettop(L);
  luaL_checkstack(L, 1, "decoding a value");
  dec d = {L, (const unsigned char *)data, (const unsigned char *)data + len};
  if (decode_value(&d, 0) != 0) {
    lua_settop(L, top);
    return CS_EDECODE;
  }
  if (used) *used = (size_t)(d.p - (const unsigned char *)data);
  return 0;
}

int cs_codec_table_is_sequence(lua_State *L, int t, size_t *count) {
  size_t n = 0;
  int seq = 1;
  lua_Integer max = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    n++;
    if (seq) {
      lua_Integer k;
      if (lua_isinteger(L, -1) && (k = lua_tointeger(L, -1)) >= 1) {
        if (k > max) max = k;
      } else {
        seq = 0;
      }
    }
  }
  *count = n;
  return seq && (size_t)max == n;
}
