/*
 * cs_format.c - renders Lua values the way Flink prints Java values; the
 * rules are in cs_format.h.
 *
 * Floats follow Double.toString as specified since JDK 19 (the shortest
 * decimal that reads back as the same double; earlier JDKs sometimes printed
 * more digits). The digits come from the C library: printf("%.*e") rounds
 * correctly to a given number of significant digits and strtod reads back
 * correctly, so the shortest precision that survives the round trip gives the
 * digits, which are then laid out as Java does.
 */
#include "host/lua/cs_format.h"

#include "state/cs_codec.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tables nested deeper than this render as "<...>"; it bounds recursion. */
#define FORMAT_MAX_DEPTH 200

/* ============================================================== doubles */

/* A positive decimal: the significant digits d[0, n) (d[0] != '0') times
 * 10^(exp - n + 1), so exp is the exponent of the first digit. */
typedef struct decimal {
  char d[24];
  int n;
  int exp;
} decimal;

/* Sets r to x > 0 correctly rounded to prec significant digits. Any
 * character printf writes between the digits (the locale's decimal point) is
 * skipped. */
static void round_to(double x, int prec, decimal *r) {
  char buf[48];
  snprintf(buf, sizeof(buf), "%.*e", prec - 1, x);
  const char *p = buf;
  r->n = 0;
  for (; *p != 'e' && *p != '\0'; p++)
    if (*p >= '0' && *p <= '9' && r->n < (int)sizeof(r->d)) r->d[r->n++] = *p;
  r->exp = *p == 'e' ? atoi(p + 1) : 0;
}

/* The double nearest to r. Written as an integer and an exponent, so no
 * decimal point is involved and the locale cannot change the reading. */
static double value_of(const decimal *r) {
  char buf[48];
  snprintf(buf, sizeof(buf), "%.*se%d", r->n, r->d, r->exp - r->n + 1);
  return strtod(buf, NULL);
}

/* ------------------------------------------------ exact, without printf */

typedef unsigned __int128 u128;

static u128 pow10_u128(int k) {
  u128 v = 1;
  while (k-- > 0) v *= 10;
  return v;
}

/* For x > 0 not a power of two with 1e-3 <= x < 1e7 (the plain range, where
 * the benchmarks' and most jobs' numbers live), does what round_to and the
 * round trip do, in exact 128-bit integer arithmetic: sets r to x correctly
 * rounded (half to even, as printf) to prec <= 17 significant digits and
 * *trip to whether that decimal reads back as x. Returns 0 when x is out
 * of that range (nothing set).
 *
 * x = m / 2^E with m < 2^53; scaled by 10^k (k = prec - 1 - exp10(x)) it
 * is N / D, N = m * 10^max(k,0) < 2^117 and D = 2^E * 10^max(-k,0) < 2^84.
 * The decimal q reads back as x when it is within half an ulp of x (the
 * boundary included when m is even, as strtod rounds half to even):
 * |2qD - 2N| <= 10^max(k,0). */
static int exact_digits(double x, int prec, decimal *r, int *trip) {
  if (!(x >= 1e-3 && x < 1e7)) return 0;
  int e2;
  double f = frexp(x, &e2);
  uint64_t m = (uint64_t)ldexp(f, 53);
  int E = 53 - e2; /* 29 <= E <= 63 in this range */
  if (E < 1 || E > 63) return 0;
  /* exp10: 10^exp10 <= x < 10^(exp10 + 1), checked exactly */
  int ex = (int)floor(log10(x));
  for (int tries = 0; tries < 2; tries++) {
    u128 n1 = (u128)m * pow10_u128(ex < 0 ? -ex : 0);
    u128 d1 = ((u128)1 << E) * pow10_u128(ex > 0 ? ex : 0);
    if (n1 < d1)
      ex--;
    else if (n1 >= 10 * d1)
      ex++;
    else
      break;
  }
  int k = prec - 1 - ex;
  if (k > 19 || k < -7) return 0;
  u128 N = (u128)m * pow10_u128(k > 0 ? k : 0);
  u128 D = ((u128)1 << E) * pow10_u128(k < 0 ? -k : 0);
  u128 q = N / D, rem = N - q * D;
  if (2 * rem > D || (2 * rem == D && (q & 1))) q++;
  u128 lhs = 2 * q * D > 2 * N ? 2 * q * D - 2 * N : 2 * N - 2 * q * D;
  u128 half = pow10_u128(k > 0 ? k : 0);
  *trip = lhs < half || (lhs == half && (m & 1) == 0);
  int exp = ex;
  if (q == pow10_u128(prec)) q /= 10, exp++; /* 9.99.. rounded up to 10.0 */
  char tmp[24];
  int n = 0;
  for (; n < prec; n++) tmp[n] = (char)('0' + (int)(q % 10)), q /= 10;
  for (int i = 0; i < prec; i++) r->d[i] = tmp[prec - 1 - i];
  r->n = prec;
  r->exp = exp;
  return 1;
}

/* Sets r to the next decimal up with as many digits (r + one unit in its
 * last place). */
static void next_up(decimal *r) {
  int i = r->n - 1;
  while (i >= 0 && r->d[i] == '9') r->d[i--] = '0';
  if (i >= 0) {
    r->d[i]++;
  } else { /* 99..9 became 100..0: one more power of ten */
    r->d[0] = '1';
    r->exp++;
  }
}

/* Whether the prec-digit decimal nearest x reads back as x; for a power of
 * two also tries the one above it (see shortest). Sets r to the one that
 * does. */
static int digits_round_trip(double x, int prec, int pow2, decimal *r) {
  int trip;
  if (!pow2 && exact_digits(x, prec, r, &trip)) return trip;
  round_to(x, prec, r);
  double v = value_of(r);
  if (v == x) return 1;
  if (!pow2 || v > x) return 0;
  decimal up = *r;
  next_up(&up);
  if (value_of(&up) != x) return 0;
  *r = up;
  return 1;
}

/* Sets r to the decimal Double.toString chooses for x > 0 (JDK 19+): among
 * the decimals that round to x, those of the least length m, or of length 1
 * or 2 when m is 1; of these the one closest to x.
 *
 * The closest decimal of a given length is the correctly rounded one, so the
 * search is over the precision. When x is not a power of two, its rounding
 * interval is symmetric, a correctly rounded decimal with more digits is never
 * farther from x, so round-tripping is monotonic in the precision and a binary
 * search finds the least. A power of two has an interval half as wide below
 * it as above: the nearest decimal can fall just outside below while the next
 * one up is inside, so each precision is tried in turn with both. */
static void shortest(double x, decimal *r) {
  int e2;
  int pow2 = frexp(x, &e2) == 0.5;
  int prec = 17;
  decimal t;
  if (!pow2) {
    /* Most doubles that arithmetic makes need 16 or 17 digits: try those
     * first, and search below 15 only when 15 digits round-trip. */
    if (!digits_round_trip(x, 16, 0, &t)) {
      int trip;
      if (!exact_digits(x, 17, r, &trip)) round_to(x, 17, r);
    } else if (!digits_round_trip(x, 15, 0, r)) {
      *r = t, prec = 16;
    } else {
      int lo = 1;
      prec = 15;
      while (lo < prec) {
        int mid = (lo + prec) / 2;
        if (digits_round_trip(x, mid, 0, &t)) {
          prec = mid, *r = t;
        } else {
          lo = mid + 1;
        }
      }
    }
  } else {
    for (prec = 1; prec <= 17; prec++)
      if (digits_round_trip(x, prec, 1, r)) break;
  }
  if (prec == 1 && digits_round_trip(x, 2, pow2, &t)) *r = t;
  while (r->n > 1 && r->d[r->n - 1] == '0') r->n--;
}

/* Sets r to the decimal of x when x is a whole number below 2^53, and
 * returns 1 (else 0). Such a double is exact and its neighbours are at most
 * 1 away, so any decimal with fewer significant digits than x's own (less
 * trailing zeros) is another whole number, at least 1 away: x's digits are
 * the shortest, and no printf is needed. */
static int whole_number(double x, decimal *r) {
  if (!(x < 9007199254740992.0) || x != floor(x)) return 0;
  uint64_t v = (uint64_t)x;
  char tmp[24];
  int n = 0;
  while (v > 0) tmp[n++] = (char)('0' + v % 10), v /= 10;
  r->exp = n - 1;
  r->n = 0;
  while (n > 0) r->d[r->n++] = tmp[--n];
  while (r->n > 1 && r->d[r->n - 1] == '0') r->n--;
  return 1;
}

/* Writes the rendering of d to buf (at least 32 bytes); returns its length. */
static size_t format_double(double d, char *buf) {
  if (isnan(d)) return (size_t)sprintf(buf, "NaN");
  if (isinf(d)) return (size_t)sprintf(buf, d > 0 ? "Infinity" : "-Infinity");
  if (d == 0) return (size_t)sprintf(buf, signbit(d) ? "-0.0" : "0.0");

  decimal r;
  if (!whole_number(fabs(d), &r)) shortest(fabs(d), &r);
  char *p = buf;
  if (d < 0) *p++ = '-';
  if (r.exp >= -3 && r.exp < 7) { /* plain: 0.001 .. 9999999.x */
    if (r.exp >= 0) {
      for (int i = 0; i <= r.exp; i++) *p++ = i < r.n ? r.d[i] : '0';
      *p++ = '.';
      if (r.n > r.exp + 1) {
        memcpy(p, r.d + r.exp + 1, (size_t)(r.n - r.exp - 1));
        p += r.n - r.exp - 1;
      } else {
        *p++ = '0';
      }
    } else {
      *p++ = '0', *p++ = '.';
      for (int i = -1; i > r.exp; i--) *p++ = '0';
      memcpy(p, r.d, (size_t)r.n);
      p += r.n;
    }
  } else { /* computerized scientific: 1.0E7, 1.5E-4 */
    *p++ = r.d[0];
    *p++ = '.';
    if (r.n > 1) {
      memcpy(p, r.d + 1, (size_t)(r.n - 1));
      p += r.n - 1;
    } else {
      *p++ = '0';
    }
    p += sprintf(p, "E%d", r.exp);
  }
  return (size_t)(p - buf);
}

int cs_format_double(double d, cs_buf *out) {
  char buf[48];
  size_t n = format_double(d, buf);
  return cs_buf_append(out, buf, n);
}

/* =============================================================== values */

typedef struct fmt {
  lua_State *L;
  cs_buf *out;
  const void *path[FORMAT_MAX_DEPTH]; /* the tables being rendered */
} fmt;

/* A map entry rendered at start + off: klen bytes of key, then the value,
 * len bytes in all. Entries are ordered by rendered key, then (for keys
 * that render alike, as 1 and "1") by rendered value, so the output does
 * not depend on the order of the table. */
typedef cs_kv_span entry;

static int put(fmt *f, const char *s) {
  return cs_buf_append(f->out, s, strlen(s));
}

static int put_integer(cs_buf *out, lua_Integer v) {
  char buf[24], *p = buf + sizeof(buf);
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u != 0);
  if (v < 0) *--p = '-';
  return cs_buf_append(out, p, (size_t)(buf + sizeof(buf) - p));
}

/* Appends the string or number at idx as Lua's tostring would, else a note
 * of its type (for error objects). */
static int put_tostring_result(fmt *f, int idx, const char *what) {
  lua_State *L = f->L;
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return cs_buf_append(f->out, s, n);
  }
  return cs_buf_printf(f->out, "(%s is a %s value)", what,
                       luaL_typename(L, idx));
}

/* Renders the value at idx through the __tostring metamethod on the top of
 * the stack, called in protected mode.  [-1, +0, m]
 * Plain lua_pcall rather than cs_lua_pcall: the error is shown inline in
 * the rendering, where a traceback does not belong, and the formatter stays
 * usable from any lua_State, engine or not. */
static int call_tostring(fmt *f, int idx) {
  lua_State *L = f->L;
  lua_pushvalue(L, idx);
  int rc;
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    rc = put(f, "<__tostring error: ");
    if (rc == 0) rc = put_tostring_result(f, -1, "error object");
    if (rc == 0) rc = put(f, ">");
  } else if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER) {
    rc = put_tostring_result(f, -1, "result");
  } else {
    rc = put(f, "<__tostring error: '__tostring' must return a string>");
  }
  lua_pop(L, 1);
  return rc;
}

static int format_value(fmt *f, int idx, int depth);

/* Renders the count entries of table t as "{k=v, k2=v2}" in key order. Each
 * "kv" is rendered at the end of out, then they are laid out sorted past the
 * end and moved back. The entry list lives in a userdata, so a Lua error
 * raised under us (a __tostring that adds keys to a table being traversed
 * makes lua_next raise) leaks nothing. */
static int format_map(fmt *f, int t, size_t count, int depth) {
  lua_State *L = f->L;
  cs_buf *out = f->out;
  entry *v = lua_newuserdatauv(L, 2 * count * sizeof(*v), 0); /* [-0, +1] */
  int ud = lua_gettop(L);
  size_t start = out->len, n = 0;
  int rc = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (n == count) { /* grew under a __tostring: show what was counted */
      lua_pop(L, 2);
      break;
    }
    entry *x = &v[n++];
    x->off = out->len - start;
    rc = format_value(f, ud + 1, depth + 1);
    x->klen = out->len - start - x->off;
    if (rc == 0) rc = format_value(f, ud + 2, depth + 1);
    x->len = out->len - start - x->off;
    lua_pop(L, 1);
    if (rc) goto done;
  }
  size_t body = out->len - start;
  size_t total = body + 2 + n + (n > 0 ? 2 * (n - 1) : 0);
  rc = cs_buf_reserve(out, total);
  if (rc) goto done;
  char *base = out->data + start;
  cs_sort_kv_spans(base, v, v + count, n);
  char *p = base + body;
  *p++ = '{';
  for (size_t i = 0; i < n; i++) {
    if (i > 0) *p++ = ',', *p++ = ' ';
    memcpy(p, base + v[i].off, v[i].klen);
    p += v[i].klen;
    *p++ = '=';
    memcpy(p, base + v[i].off + v[i].klen, v[i].len - v[i].klen);
    p += v[i].len - v[i].klen;
  }
  *p++ = '}';
  memmove(base, base + body, total);
  out->len = start + total;
done:
  lua_settop(L, ud - 1);
  return rc;
}

/* Renders the table at absolute index t: a tuple when its keys are exactly
 * 1..n (or it is empty), else a map. */
static int format_table(fmt *f, int t, int depth) {
  lua_State *L = f->L;
  if (depth >= FORMAT_MAX_DEPTH) return put(f, "<...>");
  const void *self = lua_topointer(L, t);
  for (int i = 0; i < depth; i++)
    if (f->path[i] == self) return put(f, "<cycle>");
  if (!lua_checkstack(L, 8)) return CS_ENOMEM;
  f->path[depth] = self;

  size_t count;
  int seq = cs_codec_table_is_sequence(L, t, &count);
  if (!seq) return format_map(f, t, count, depth);

  int rc = cs_buf_append(f->out, "(", 1);
  for (lua_Integer i = 1; rc == 0 && i <= (lua_Integer)count; i++) {
    if (i > 1) rc = cs_buf_append(f->out, ",", 1);
    lua_rawgeti(L, t, i);
    if (rc == 0) rc = format_value(f, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  if (rc == 0) rc = cs_buf_append(f->out, ")", 1);
  return rc;
}

/* Renders the value at absolute index idx, found at the given depth. */
static int format_value(fmt *f, int idx, int depth) {
  lua_State *L = f->L;
  if (luaL_getmetafield(L, idx, "__tostring") != LUA_TNIL) /* [-0, +1] */
    return call_tostring(f, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return put(f, "null");
  case LUA_TBOOLEAN:
    return put(f, lua_toboolean(L, idx) ? "true" : "false");
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return put_integer(f->out, lua_tointeger(L, idx));
    return cs_format_double((double)lua_tonumber(L, idx), f->out);
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return cs_buf_append(f->out, s, n);
  }
  case LUA_TTABLE:
    return format_table(f, idx, depth);
  default: { /* "function: 0x...", honouring __name, as tostring does */
    size_t n;
    const char *s = luaL_tolstring(L, idx, &n); /* [-0, +1] */
    int rc = cs_buf_append(f->out, s, n);
    lua_pop(L, 1);
    return rc;
  }
  }
}

int cs_format_value(lua_State *L, int idx, cs_buf *out) {
  fmt f;
  f.L = L;
  f.out = out;
  int top = lua_gettop(L);
  size_t len = out->len;
  if (!lua_checkstack(L, 8)) return CS_ENOMEM;
  int rc = format_value(&f, lua_absindex(L, idx), 0);
  if (rc) out->len = len;
  lua_settop(L, top);
  return rc;
}

/* ====================================================== encoded values */

/* Renders the value at *v, advancing it. Every read is bounds-checked. */
static int format_encoded(cs_slice *v, cs_buf *out, int depth) {
  if (v->len == 0) return CS_EDECODE;
  const unsigned char *p = (const unsigned char *)v->data;
  unsigned c = p[0];
  if ((c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf)
    return 1; /* a map: sorted rendering, left to the Lua path */
  if ((c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd) {
    if (depth >= FORMAT_MAX_DEPTH - 1) return 1;
    size_t h = c <= 0x9f ? 1 : c == 0xdc ? 3 : 5;
    if (v->len < h) return CS_EDECODE;
    uint32_t count = c <= 0x9f ? (c & 0x0fu)
                     : c == 0xdc ? ((uint32_t)p[1] << 8 | p[2])
                                 : ((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
                                    (uint32_t)p[3] << 8 | p[4]);
    v->data += h;
    v->len -= h;
    if (count > v->len) return CS_EDECODE; /* each element takes a byte */
    int rc = cs_buf_append(out, "(", 1);
    for (uint32_t i = 0; rc == 0 && i < count; i++) {
      if (i > 0) rc = cs_buf_append(out, ",", 1);
      if (rc == 0) rc = format_encoded(v, out, depth + 1);
    }
    return rc ? rc : cs_buf_append(out, ")", 1);
  }
  /* the commonest scalars, read in place: small integers, short strings */
  if (c < 0x80 || c >= 0xe0) {
    v->data++, v->len--;
    return put_integer(out, c < 0x80 ? (lua_Integer)c : (lua_Integer)c - 256);
  }
  if (c >= 0xa0 && c <= 0xbf) {
    size_t sn = c & 0x1fu;
    if (v->len < 1 + sn) return CS_EDECODE;
    v->data += 1 + sn, v->len -= 1 + sn;
    return cs_buf_append(out, p + 1, sn);
  }
  long n = cs_codec_skip_lean(v->data, v->len);
  if (n < 0) return CS_EDECODE;
  cs_slice one = {v->data, (size_t)n};
  v->data += n;
  v->len -= (size_t)n;
  cs_num num;
  if (cs_codec_number(one, &num))
    return num.is_int ? put_integer(out, (lua_Integer)num.i)
                      : cs_format_double(num.d, out);
  size_t h;
  if (c >= 0xa0 && c <= 0xbf) h = 1;
  else if (c == 0xc4 || c == 0xd9) h = 2;
  else if (c == 0xc5 || c == 0xda) h = 3;
  else if (c == 0xc6 || c == 0xdb) h = 5;
  else if (c == 0xc0) /* nil inside an array: the decoded table is no tuple */
    return depth > 0 ? 1 : cs_buf_append(out, "null", 4);
  else if (c == 0xc2) return cs_buf_append(out, "false", 5);
  else if (c == 0xc3) return cs_buf_append(out, "true", 4);
  else return 1; /* a map: sorted rendering, left to the Lua path */
  return cs_buf_append(out, one.data + h, one.len - h);
}

int cs_format_encoded(cs_slice v, cs_buf *out) {
  size_t len = out->len;
  cs_slice whole = v;
  int rc = format_encoded(&v, out, 0);
  /* Met a map: whether the bytes are one whole value is only known now. */
  if (rc == 1 && cs_codec_skip_lean(whole.data, whole.len) != (long)whole.len)
    rc = CS_EDECODE;
  if (rc == 0 && v.len != 0) rc = CS_EDECODE;
  if (rc) out->len = len;
  return rc;
}
