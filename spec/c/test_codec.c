/*
 * test_codec.c - pins the contract of state/cs_codec.h: the value mapping
 * round-trips, the bytes are standard MessagePack (cross-checked against
 * msgpack-c), the canonical key form, error paths, robustness against
 * truncated and random input, the readers of encoded values (array
 * elements, map fields, numbers, key scalars) that the fast paths use
 * without Lua, and key-group ownership.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "state/cs_codec.h"
#include "cs_test.h"

static lua_State *L;

/* A deterministic generator, so failures reproduce on every libc. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng(void) {
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

/* Runs a Lua chunk that returns one value and leaves it on the stack. */
static void push_lua(const char *code) {
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    cs_test_failures++;
  }
}

/* Calls the Lua function deep_eq(a, b) on the two values on top of the
 * stack (popping them): equal types, integer vs float preserved, NaN equal
 * to NaN, -0.0 distinct from 0.0, tables compared entry by entry. */
static int deep_eq(void) {
  lua_getglobal(L, "deep_eq");
  lua_insert(L, -3);
  lua_call(L, 2, 1);
  int eq = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return eq;
}

static const char *deep_eq_src =
    "function deep_eq(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type(a) ~= math.type(b) then return false end\n"
    "    if a ~= a then return b ~= b end\n"
    "    if a == 0 and math.type(a) == 'float' then\n"
    "      return b == 0 and 1/a == 1/b\n"
    "    end\n"
    "    return a == b\n"
    "  end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do\n"
    "    if type(k) == 'table' then\n"
    "      local found = false\n"
    "      for k2, v2 in pairs(b) do\n"
    "        if type(k2) == 'table' and deep_eq(k, k2) and deep_eq(v, v2)\n"
    "        then found = true end\n"
    "      end\n"
    "      if not found then return false end\n"
    "    elseif not deep_eq(v, b[k]) then return false end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if type(k) ~= 'table' and a[k] == nil then return false end\n"
    "  end\n"
    "  return true\n"
    "end\n";

/* Checks that bytes[0, len) is exactly one well-formed MessagePack value as
 * msgpack-c reads it. Its unpacker nests at most MSGPACK_EMBED_STACK_SIZE
 * (32) deep and reports deeper values as out of memory; those pass here. */
static int msgpack_c_accepts(const char *bytes, size_t len) {
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack_next(&u, bytes, len, &off);
  msgpack_unpacked_destroy(&u);
  if (r == MSGPACK_UNPACK_NOMEM_ERROR) return 1;
  return r == MSGPACK_UNPACK_SUCCESS && off == len;
}

/* Encodes the value on top of the stack, decodes it back and checks the
 * result deep-equals the original; checks skip and msgpack-c agree on the
 * bytes and the stack is balanced. Pops the value. */
static void check_round_trip_top(const char *what, int line) {
  int top = lua_gettop(L);
  cs_buf b = {0};
  char err[256] = "";
  int rc = cs_codec_encode(L, -1, &b, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "%s:%d: encode of %s failed: %s\n", __FILE__, line, what,
            err);
    cs_test_failures++;
    lua_pop(L, 1);
    cs_buf_free(&b);
    return;
  }
  CHECK_EQ_INT(lua_gettop(L), top);
  CHECK(msgpack_c_accepts(b.data, b.len));
  CHECK_EQ_INT(cs_codec_skip(b.data, b.len), (long)b.len);
  size_t used = 0;
  rc = cs_codec_decode(L, b.data, b.len, &used);
  CHECK_EQ_INT(rc, 0);
  if (rc == 0) {
    CHECK_EQ_INT(used, b.len);
    CHECK_EQ_INT(lua_gettop(L), top + 1);
    if (!deep_eq()) {
      fprintf(stderr, "%s:%d: round trip of %s changed the value\n", __FILE__,
              line, what);
      cs_test_failures++;
    }
  } else {
    lua_pop(L, 1);
  }
  CHECK_EQ_INT(lua_gettop(L), top - 1);
  cs_buf_free(&b);
}

#define ROUND_TRIP(code)            \
  do {                              \
    push_lua(code);                 \
    check_round_trip_top(code, __LINE__); \
  } while (0)

/* Encodes the value at the top (not popping it) into b, which is reset. */
static int encode_top(cs_buf *b, int key, char *err, size_t errlen) {
  b->len = 0;
  return key ? cs_codec_encode_key(L, -1, b, err, errlen)
             : cs_codec_encode(L, -1, b, err, errlen);
}

static int bytes_eq(const cs_buf *b, const char *hex) {
  size_t n = strlen(hex) / 2;
  if (b->len != n) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    if ((unsigned char)b->data[i] != v) return 0;
  }
  return 1;
}

static size_t unhex(const char *hex, char *out) {
  size_t n = strlen(hex) / 2;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    sscanf(hex + 2 * i, "%2x", &v);
    out[i] = (char)v;
  }
  return n;
}

/* ============================================================ scalars */

/* msgpack-c's packer writes into an sbuffer; used as the reference bytes. */
static void check_int_bytes(lua_Integer v) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_int64(&pk, (int64_t)v);
  lua_pushinteger(L, v);
  cs_buf b = {0};
  char err[128];
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(b.len == sb.size && memcmp(b.data, sb.data, sb.size) == 0);
  /* The key form of an integer is the same bytes. */
  cs_buf k = {0};
  CHECK_EQ_INT(encode_top(&k, 1, err, sizeof(err)), 0);
  CHECK(k.len == b.len && memcmp(k.data, b.data, b.len) == 0);
  check_round_trip_top("integer", __LINE__);
  cs_buf_free(&b);
  cs_buf_free(&k);
  msgpack_sbuffer_destroy(&sb);
}

static void test_integers(void) {
  static const lua_Integer v[] = {0,
                                  1,
                                  -1,
                                  -32,
                                  -33,
                                  127,
                                  128,
                                  -128,
                                  -129,
                                  255,
                                  256,
                                  32767,
                                  -32768,
                                  -32769,
                                  65535,
                                  65536,
                                  INT32_MAX,
                                  (lua_Integer)INT32_MAX + 1,
                                  INT32_MIN,
                                  (lua_Integer)INT32_MIN - 1,
                                  UINT32_MAX,
                                  (lua_Integer)UINT32_MAX + 1,
                                  INT64_MAX,
                                  INT64_MIN};
  for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) check_int_bytes(v[i]);
  for (int i = 0; i < 2000; i++)
    check_int_bytes((lua_Integer)rng() >> (rng() % 64));

  /* A few exact encodings, written out. */
  cs_buf b = {0};
  char err[128];
  struct { lua_Integer v; const char *hex; } pin[] = {
      {0, "00"},         {-1, "ff"},         {-32, "e0"},
      {-33, "d0df"},     {127, "7f"},        {128, "cc80"},
      {255, "ccff"},     {256, "cd0100"},    {65535, "cdffff"},
      {65536, "ce00010000"}, {INT32_MIN, "d280000000"},
      {INT32_MAX, "ce7fffffff"}, {INT64_MAX, "cf7fffffffffffffff"},
      {INT64_MIN, "d38000000000000000"}};
  for (size_t i = 0; i < sizeof(pin) / sizeof(pin[0]); i++) {
    lua_pushinteger(L, pin[i].v);
    CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
    if (!bytes_eq(&b, pin[i].hex)) {
      fprintf(stderr, "integer %lld: wrong bytes, want %s\n",
              (long long)pin[i].v, pin[i].hex);
      cs_test_failures++;
    }
    lua_pop(L, 1);
  }
  cs_buf_free(&b);
}

static void test_floats(void) {
  ROUND_TRIP("return 5.0");
  ROUND_TRIP("return 5");
  ROUND_TRIP("return 0.0");
  ROUND_TRIP("return -0.0");
  ROUND_TRIP("return 0.1");
  ROUND_TRIP("return -1.5e300");
  ROUND_TRIP("return 4.9e-324");
  ROUND_TRIP("return 1/0");
  ROUND_TRIP("return -1/0");
  ROUND_TRIP("return 0/0");
  ROUND_TRIP("return 2^63");
  ROUND_TRIP("return math.maxinteger + 0.0");

  /* 5.0 is always float64, never shortened to an integer or float32. */
  cs_buf b = {0};
  char err[128];
  push_lua("return 5.0");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "cb4014000000000000"));
  CHECK_EQ_INT(cs_codec_decode(L, b.data, b.len, NULL), 0);
  CHECK_EQ_STR(lua_typename(L, lua_type(L, -1)), "number");
  CHECK(!lua_isinteger(L, -1));
  CHECK(lua_tonumber(L, -1) == 5.0);
  lua_pop(L, 2);
  push_lua("return 5");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "05"));
  CHECK_EQ_INT(cs_codec_decode(L, b.data, b.len, NULL), 0);
  CHECK(lua_isinteger(L, -1));
  lua_pop(L, 2);
  cs_buf_free(&b);
}

static void test_strings(void) {
  ROUND_TRIP("return ''");
  ROUND_TRIP("return 'a\\0b\\0'");
  ROUND_TRIP("return '\\255\\254 not utf-8 \\0'");
  static const size_t lens[] = {1, 31, 32, 255, 256, 65535, 65536, 100000};
  static const char *heads[] = {"a1", "bf", "d920", "d9ff", "da0100", "daffff",
                                "db00010000", "db000186a0"};
  cs_buf b = {0};
  char err[128];
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    char *s = malloc(lens[i]);
    for (size_t j = 0; j < lens[i]; j++)
      s[j] = (char)(j % 7 == 0 ? 0 : 'a' + j % 26);
    lua_pushlstring(L, s, lens[i]);
    CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
    size_t h = strlen(heads[i]) / 2;
    char want[8];
    unhex(heads[i], want);
    CHECK(b.len == h + lens[i] && memcmp(b.data, want, h) == 0);
    CHECK(memcmp(b.data + h, s, lens[i]) == 0);
    check_round_trip_top("long string", __LINE__);
    free(s);
  }
  cs_buf_free(&b);
}

/* ============================================================= tables */

static void test_tables(void) {
  ROUND_TRIP("return nil");
  ROUND_TRIP("return true");
  ROUND_TRIP("return false");
  ROUND_TRIP("return {}");
  ROUND_TRIP("return {'word', 1}");
  ROUND_TRIP("return {1, 2.5, 'x', true, false, {}}");
  ROUND_TRIP("return {1, {2, {3, {4, {'deep'}}}}}");
  ROUND_TRIP("return {a = 1, b = 'two', c = {1, 2}, d = {e = {f = 5.0}}}");
  ROUND_TRIP("return {[1] = 'a', [3] = 'c'}");              /* hole: a map */
  ROUND_TRIP("return {[0] = 'zero', 'one'}");
  ROUND_TRIP("return {[-1] = 1, [1.5] = 2, [true] = 3, x = 4, [10] = 5}");
  ROUND_TRIP("return {[{1, 2}] = 'table key'}");
  ROUND_TRIP("return {1, 2, 3, n = 3}");
  ROUND_TRIP("return {[3] = 'c', [1] = 'a', [2] = 'b'}"); /* hash part */
  ROUND_TRIP("local t = {} for i = 1, 15 do t[i] = i end return t");
  ROUND_TRIP("local t = {} for i = 1, 16 do t[i] = i end return t");
  ROUND_TRIP("local t = {} for i = 1, 70000 do t[i] = i end return t");
  ROUND_TRIP("local t = {} for i = 1, 16 do t['k'..i] = i end return t");
  ROUND_TRIP("local t = {} for i = 1, 70000 do t['k'..i] = i end return t");
  ROUND_TRIP("local t = {} for i = 100, 1, -1 do t[i] = i * 1.0 end return t");
  ROUND_TRIP("local s = {1} return {s, s, {s}}"); /* shared, not cyclic */

  /* An array is an array, and the empty table an empty array. */
  cs_buf b = {0};
  char err[128];
  push_lua("return {'word', 1}");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "92a4776f726401"));
  lua_pop(L, 1);
  push_lua("return {[2] = 1, [1] = 'word'}");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "92a4776f726401"));
  lua_pop(L, 1);
  push_lua("return {}");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "90"));
  lua_pop(L, 1);
  push_lua("return {[1] = 'a', [3] = 'c'}");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(b.len > 0 && (unsigned char)b.data[0] == 0x82);
  lua_pop(L, 1);
  /* Metatables are not encoded, nor consulted (__len, __index, __pairs). */
  push_lua("return setmetatable({1, 2}, {__len = function() return 9 end,"
           " __pairs = function() error('no') end})");
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "920102"));
  lua_pop(L, 1);
  /* Appends, never overwrites. */
  b.len = 0;
  cs_buf_append(&b, "xy", 2);
  lua_pushinteger(L, 7);
  CHECK_EQ_INT(cs_codec_encode(L, -1, &b, err, sizeof(err)), 0);
  CHECK(bytes_eq(&b, "787907"));
  lua_pop(L, 1);
  cs_buf_free(&b);
}

/* Every format family, including non-shortest forms another writer may
 * produce. */
static void test_decode_families(void) {
  struct {
    const char *hex;
    const char *want; /* Lua expression */
  } cases[] = {
      {"00", "0"}, {"7f", "127"}, {"e0", "-32"}, {"ff", "-1"},
      {"cc05", "5"}, {"ccff", "255"}, {"cd0005", "5"}, {"cdffff", "65535"},
      {"ce00000005", "5"}, {"ceffffffff", "4294967295"},
      {"cf0000000000000005", "5"},
      {"cf7fffffffffffffff", "math.maxinteger"},
      {"cf8000000000000000", "2^63"},
      {"cfffffffffffffffff", "2^64"},
      {"d005", "5"}, {"d080", "-128"}, {"d1ff80", "-128"}, {"d18000", "-32768"},
      {"d2ffffff80", "-128"}, {"d280000000", "-2147483648"},
      {"d3ffffffffffffff80", "-128"}, {"d38000000000000000", "math.mininteger"},
      {"ca40a00000", "5.0"}, {"ca3fc00000", "1.5"}, {"ca7fc00000", "0/0"},
      {"cb4014000000000000", "5.0"}, {"cb8000000000000000", "-0.0"},
      {"a0", "''"}, {"a3616263", "'abc'"}, {"d903616263", "'abc'"},
      {"da0003616263", "'abc'"}, {"db00000003616263", "'abc'"},
      {"c403610062", "'a\\0b'"}, {"c5000161", "'a'"}, {"c60000000161", "'a'"},
      {"c0", "nil"}, {"c2", "false"}, {"c3", "true"},
      {"90", "{}"}, {"920102", "{1, 2}"}, {"dc00020102", "{1, 2}"},
      {"dd000000020102", "{1, 2}"}, {"80", "{}"}, {"81a16101", "{a = 1}"},
      {"de0001a16101", "{a = 1}"}, {"df00000001a16101", "{a = 1}"},
      {"82a16101a16102", "{a = 2}"}, /* a repeated key: the last wins */
      {"81cb3ff000000000000002", "{[1] = 2}"}, /* float key 1.0 is key 1 */
      {"8192010203", "{[{1, 2}] = 3}"},
      {"91ca3fc00000", "{1.5}"},
  };
  char bytes[64];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t n = unhex(cases[i].hex, bytes);
    int top = lua_gettop(L);
    size_t used = 0;
    int rc = cs_codec_decode(L, bytes, n, &used);
    if (rc != 0) {
      fprintf(stderr, "decode of %s failed\n", cases[i].hex);
      cs_test_failures++;
      continue;
    }
    CHECK_EQ_INT(used, n);
    CHECK_EQ_INT(cs_codec_skip(bytes, n), (long)n);
    char code[128];
    snprintf(code, sizeof(code), "return %s", cases[i].want);
    push_lua(code);
    if (!deep_eq()) {
      fprintf(stderr, "decode of %s is not %s\n", cases[i].hex, cases[i].want);
      cs_test_failures++;
    }
    CHECK_EQ_INT(lua_gettop(L), top);
  }

  /* Malformed: unused or ext types, nil and NaN keys, counts that cannot fit
   * in the bytes, nesting deeper than the limit. */
  const char *bad[] = {"c1", "c70101", "d40101", "d5010101", "c801000101",
                       "81c001", "81cb7ff800000000000001", "81ca7fc0000001",
                       "ddffffffff", "dfffffffff00", "dbffffffff61",
                       "dc0003", "92", "8101"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    size_t n = unhex(bad[i], bytes);
    int top = lua_gettop(L);
    if (cs_codec_decode(L, bytes, n, NULL) != CS_EDECODE) {
      fprintf(stderr, "decode of %s should fail\n", bad[i]);
      cs_test_failures++;
      lua_settop(L, top);
    }
    CHECK_EQ_INT(lua_gettop(L), top);
    CHECK_EQ_INT(cs_codec_skip(bytes, n), CS_EDECODE);
  }
  /* One value followed by more bytes: decode reads the one and says so. */
  size_t n = unhex("a161a1", bytes), used = 0;
  CHECK_EQ_INT(cs_codec_decode(L, bytes, n, &used), 0);
  CHECK_EQ_INT(used, 2);
  CHECK_EQ_INT(cs_codec_skip(bytes, n), 2);
  lua_pop(L, 1);
  CHECK_EQ_INT(cs_codec_decode(L, "", 0, NULL), CS_EDECODE);
  CHECK_EQ_INT(cs_codec_skip("", 0), CS_EDECODE);

  /* Depth: CS_CODEC_MAX_DEPTH nested arrays decode, one more does not. */
  char deep[CS_CODEC_MAX_DEPTH + 2];
  memset(deep, 0x91, sizeof(deep));
  deep[CS_CODEC_MAX_DEPTH] = 0x01;
  int top = lua_gettop(L);
  CHECK_EQ_INT(cs_codec_decode(L, deep, CS_CODEC_MAX_DEPTH + 1, NULL), 0);
  CHECK_EQ_INT(cs_codec_skip(deep, CS_CODEC_MAX_DEPTH + 1),
               CS_CODEC_MAX_DEPTH + 1);
  lua_settop(L, top);
  deep[CS_CODEC_MAX_DEPTH] = (char)0x91;
  deep[CS_CODEC_MAX_DEPTH + 1] = 0x01;
  CHECK_EQ_INT(cs_codec_decode(L, deep, sizeof(deep), NULL), CS_EDECODE);
  CHECK_EQ_INT(cs_codec_skip(deep, sizeof(deep)), CS_EDECODE);
  CHECK_EQ_INT(lua_gettop(L), top);
}

/* A LIST state value is encoded items back to back; decode's used count and
 * skip both walk it. */
static void test_concatenated(void) {
  cs_buf b = {0};
  char err[128];
  const char *items[] = {"return 1", "return {'a', {b = 2.5}}", "return 'x'",
                         "return {}", "return nil", "return {[{}] = {}}"};
  size_t n = sizeof(items) / sizeof(items[0]);
  for (size_t i = 0; i < n; i++) {
    push_lua(items[i]);
    CHECK_EQ_INT(cs_codec_encode(L, -1, &b, err, sizeof(err)), 0);
    lua_pop(L, 1);
  }
  size_t off = 0, count = 0;
  int top = lua_gettop(L);
  while (off < b.len) {
    size_t used = 0;
    int rc = cs_codec_decode(L, b.data + off, b.len - off, &used);
    CHECK_EQ_INT(rc, 0);
    if (rc) break;
    CHECK_EQ_INT(cs_codec_skip(b.data + off, b.len - off), (long)used);
    push_lua(items[count]);
    CHECK(deep_eq());
    off += used;
    count++;
  }
  CHECK_EQ_INT(count, n);
  CHECK_EQ_INT(lua_gettop(L), top);
  cs_buf_free(&b);
}

/* ========================================================= canonical */

static void encode_code(const char *code, int key, cs_buf *b) {
  char err[256] = "";
  push_lua(code);
  int rc = encode_top(b, key, err, sizeof(err));
  if (rc != 0) {
    fprintf(stderr, "encode of %s failed: %s\n", code, err);
    cs_test_failures++;
  }
  lua_pop(L, 1);
}

static int same_key_bytes(const char *a, const char *b) {
  cs_buf x = {0}, y = {0};
  encode_code(a, 1, &x);
  encode_code(b, 1, &y);
  int same = x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
  cs_buf_free(&x);
  cs_buf_free(&y);
  return same;
}

static void test_canonical(void) {
  CHECK(same_key_bytes("return {b = 1, a = 2}", "return {a = 2, b = 1}"));
  CHECK(same_key_bytes("return 1.0", "return 1"));
  CHECK(same_key_bytes("return -0.0", "return 0"));
  CHECK(same_key_bytes("return {1.0, 2.0}", "return {1, 2}"));
  CHECK(same_key_bytes("return {x = {3.0, {y = -7.0}}}",
                       "return {x = {3, {y = -7}}}"));
  CHECK(same_key_bytes("return -2^63", "return math.mininteger"));
  CHECK(!same_key_bytes("return 2^63", "return math.maxinteger"));
  CHECK(!same_key_bytes("return 1.5", "return 1"));
  CHECK(!same_key_bytes("return '1'", "return 1"));
  /* Many keys inserted in different orders, with deletions, so the tables'
   * internal layouts differ. */
  CHECK(same_key_bytes(
      "local t = {} for i = 1, 200 do t['k' .. i] = i; t[i * 1.5] = i end "
      "t[true] = 'yes' return t",
      "local t = {} for i = 400, 1, -1 do t['z' .. i] = i end "
      "for i = 200, 1, -1 do t[i * 1.5] = i; t['k' .. i] = i end "
      "for i = 1, 400 do t['z' .. i] = nil end t[true] = 'yes' return t"));
  CHECK(same_key_bytes("return {[{1, 2}] = 'a', [{1, 3}] = 'b'}",
                       "local t = {} t[{1, 3}] = 'b' t[{1, 2}] = 'a' "
                       "return t"));

  /* The sorted order is the byte order of the keys. */
  cs_buf b = {0};
  encode_code("return {b = 1, a = 2, [1] = 3, [-1] = 4}", 1, &b);
  CHECK(bytes_eq(&b, "840103a16102a16201ff04"));
  encode_code("return 3.0", 1, &b);
  CHECK(bytes_eq(&b, "03"));
  encode_code("return 3.0", 0, &b);
  CHECK(bytes_eq(&b, "cb4008000000000000"));

  /* Canonical bytes decode with the ordinary decoder to an equal value. */
  const char *vals[] = {
      "return {b = 1, a = {2, 3}, [7] = 'x', [2.5] = false}",
      ("local t = {} for i = 1, 50 do t['k' .. i] = {i} end return t"),
      "return 'plain'", "return {}"};
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    encode_code(vals[i], 1, &b);
    CHECK_EQ_INT(cs_codec_skip(b.data, b.len), (long)b.len);
    CHECK(msgpack_c_accepts(b.data, b.len));
    CHECK_EQ_INT(cs_codec_decode(L, b.data, b.len, NULL), 0);
    push_lua(vals[i]);
    CHECK(deep_eq());
  }

  /* NaN is no key, anywhere inside one; it is a fine value. */
  char err[256];
  push_lua("return 0/0");
  CHECK_EQ_INT(encode_top(&b, 1, err, sizeof(err)), CS_EENCODE);
  CHECK(strstr(err, "NaN") != NULL);
  CHECK_EQ_INT(encode_top(&b, 0, err, sizeof(err)), 0);
  lua_pop(L, 1);
  push_lua("return {1, {x = 0/0}}");
  CHECK_EQ_INT(encode_top(&b, 1, err, sizeof(err)), CS_EENCODE);
  CHECK(strstr(err, "[2].x") != NULL);
  lua_pop(L, 1);
  cs_buf_free(&b);
}

/* ============================================================= errors */

/* Encodes the value of code after "xy" already in the buffer; expects
 * CS_EENCODE with a message containing each of want[], the buffer and the
 * stack as they were. */
static void check_encode_error(const char *code, int key, const char *want1,
                               const char *want2) {
  cs_buf b = {0};
  cs_buf_append(&b, "xy", 2);
  char err[256];
  memset(err, 'Z', sizeof(err));
  push_lua(code);
  int top = lua_gettop(L);
  int rc = key ? cs_codec_encode_key(L, -1, &b, err, sizeof(err))
               : cs_codec_encode(L, -1, &b, err, sizeof(err));
  CHECK_EQ_INT(rc, CS_EENCODE);
  CHECK(memchr(err, '\0', sizeof(err)) != NULL);
  if (rc == CS_EENCODE && (strstr(err, want1) == NULL ||
                           (want2 && strstr(err, want2) == NULL))) {
    fprintf(stderr, "error for %s: \"%s\" lacks \"%s\"/\"%s\"\n", code, err,
            want1, want2 ? want2 : "");
    cs_test_failures++;
  }
  CHECK_EQ_INT(b.len, 2);
  CHECK(memcmp(b.data, "xy", 2) == 0);
  CHECK_EQ_INT(lua_gettop(L), top);
  lua_pop(L, 1);
  cs_buf_free(&b);
}

static void test_errors(void) {
  check_encode_error("return {1, {name = print}}", 0, "a function",
                     "at [2].name");
  check_encode_error("return {1, {name = print}}", 1, "a function",
                     "at [2].name");
  check_encode_error("return print", 0, "a function cannot be encoded", NULL);
  check_encode_error("return {a = {b = {io.stdout}}}", 0, "a userdata",
                     "at a.b[1]");
  check_encode_error("return {x = coroutine.create(print)}", 0, "a thread",
                     "at x");
  check_encode_error("return {['not an id'] = print}", 0, "a function",
                     "at [\"not an id\"]");
  check_encode_error("return {[2.5] = {print}}", 0, "a function",
                     "at [2.5][1]");
  check_encode_error("return {[true] = print}", 0, "a function", "at [true]");
  check_encode_error("return {{[print] = 1}}", 0, "a function",
                     "as a table key at [1]");
  check_encode_error("local t = {1} t[2] = t return t", 0, "cyclic", "at [2]");
  check_encode_error("local t = {a = {}} t.a.b = t return t", 0, "cyclic",
                     "at a.b");
  check_encode_error("local t = {a = {}} t.a.b = t return t", 1, "cyclic",
                     "at a.b");
  /* Depth: CS_CODEC_MAX_DEPTH nested tables encode, one more does not. */
  char code[256];
  snprintf(code, sizeof(code),
           "local t = {} for i = 2, %d do t = {t} end return t",
           CS_CODEC_MAX_DEPTH + 1);
  check_encode_error(code, 0, "deeper than", NULL);
  snprintf(code, sizeof(code),
           "local t = {} for i = 2, %d do t = {t} end return t",
           CS_CODEC_MAX_DEPTH);
  ROUND_TRIP(code);

  /* A small error buffer still gets a terminated (truncated) message, and a
   * missing one is tolerated. */
  cs_buf b = {0};
  char small[8];
  push_lua("return {1, {name = print}}");
  CHECK_EQ_INT(cs_codec_encode(L, -1, &b, small, sizeof(small)), CS_EENCODE);
  CHECK_EQ_INT(strlen(small), sizeof(small) - 1);
  CHECK_EQ_INT(cs_codec_encode(L, -1, &b, NULL, 0), CS_EENCODE);
  CHECK_EQ_INT(b.len, 0);
  lua_pop(L, 1);
  cs_buf_free(&b);
}

/* Failing each allocation in turn: CS_ENOMEM, nothing written, the stack
 * as it was, no leak; until the encoding needs no more allocations. */
static void test_out_of_memory(void) {
  push_lua("local t = {} for i = 1, 100 do t['k' .. i] = {i, 'v' .. i} end "
           "return {t, t}");
  size_t before = cs_allocated_bytes();
  int top = lua_gettop(L);
  for (int key = 0; key <= 1; key++) {
    int failures = 0, rc;
    for (long nth = 1;; nth++) {
      cs_buf b = {0};
      cs_buf_append(&b, "xy", 2);
      char err[128];
      cs_fail_nth_alloc(nth);
      rc = key ? cs_codec_encode_key(L, -1, &b, err, sizeof(err))
               : cs_codec_encode(L, -1, &b, err, sizeof(err));
      cs_fail_nth_alloc(0);
      CHECK_EQ_INT(lua_gettop(L), top);
      if (rc == CS_ENOMEM) {
        failures++;
        CHECK_EQ_INT(b.len, 2);
        CHECK_EQ_STR(err, "out of memory");
      }
      cs_buf_free(&b);
      CHECK_EQ_INT(cs_allocated_bytes(), before);
      if (rc != CS_ENOMEM || nth > 1000) break;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK(failures >= 5); /* the buffer grew several times, maps sorted */
  }
  lua_pop(L, 1);
}

/* ====================================================== bad input */

/* Every proper prefix of a valid encoding is rejected, leaving the stack. */
static void test_truncation(void) {
  const char *vals[] = {
      "return {1, -200, 70000, 2^40, -2^40, 1.5, 'str', true, nil, false}",
      ("return {a = {b = {c = 'deep'}}, [1.5] = {}, [{1}] = 'k', "
       "s = string.rep('x', 300), t = string.rep('y', 70000)}"),
      ("local t = {} for i = 1, 20 do t[i] = {i, tostring(i)} end "
       "for i = 1, 20 do t['m' .. i] = i end return t"),
      "return math.mininteger", "return 0.25", "return 'abc'"};
  for (size_t v = 0; v < sizeof(vals) / sizeof(vals[0]); v++) {
    for (int key = 0; key <= 1; key++) {
      cs_buf b = {0};
      encode_code(vals[v], key, &b);
      int top = lua_gettop(L);
      int bad = 0;
      for (size_t n = 0; n < b.len; n++) {
        size_t used = 12345;
        if (cs_codec_decode(L, b.data, n, &used) != CS_EDECODE) bad++;
        if (used != 12345) bad++;
        if (lua_gettop(L) != top) bad++;
        lua_settop(L, top);
        if (cs_codec_skip(b.data, n) != CS_EDECODE) bad++;
        if (cs_codec_skip_lean(b.data, n) != CS_EDECODE) bad++;
      }
      CHECK_EQ_INT(bad, 0);
      CHECK_EQ_INT(cs_codec_skip_lean(b.data, b.len), (long)b.len);
      CHECK_EQ_INT(cs_codec_decode(L, b.data, b.len, NULL), 0);
      lua_settop(L, top);
      cs_buf_free(&b);
    }
  }
}

/* Decodes data and checks decode and skip agree and the stack is as it
 * should be either way. */
static void fuzz_one(const char *data, size_t len, int *bad) {
  int top = lua_gettop(L);
  size_t used = 0;
  int rc = cs_codec_decode(L, data, len, &used);
  long skip = cs_codec_skip(data, len);
  /* The lean skip checks framing only: wherever skip accepts, it agrees. */
  long lean = cs_codec_skip_lean(data, len);
  if (skip >= 0 && lean != skip) (*bad)++;
  if (rc == 0) {
    if (lua_gettop(L) != top + 1 || used == 0 || used > len ||
        skip != (long)used)
      (*bad)++;
    lua_settop(L, top);
  } else if (rc != CS_EDECODE || lua_gettop(L) != top || skip >= 0) {
    (*bad)++;
    lua_settop(L, top);
  }
}

static void test_garbage(void) {
  /* Type bytes the fuzzer draws from more often, so containers and lengths
   * get exercised rather than mostly fixints. */
  static const unsigned char hot[] = {0x80, 0x81, 0x83, 0x8f, 0x90, 0x91,
                                      0x93, 0x9f, 0xa1, 0xa5, 0xc0, 0xc4,
                                      0xca, 0xcb, 0xcf, 0xd3, 0xd9, 0xda,
                                      0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x00};
  char data[96];
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    size_t len = rng() % sizeof(data);
    for (size_t j = 0; j < len; j++) {
      uint64_t r = rng();
      data[j] = (char)(r % 3 == 0 ? hot[(r >> 8) % sizeof(hot)]
                                  : (unsigned char)(r >> 16));
    }
    fuzz_one(data, len, &bad);
  }
  /* Mutations of valid encodings: flipped, inserted and dropped bytes. */
  cs_buf b = {0};
  encode_code("return {1, {a = 'x', b = {2.5, -3, 70000}}, 'str', "
              "{[{}] = true}, "
              "{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}}",
              0, &b);
  char *m = malloc(b.len + 1);
  for (int i = 0; i < 20000; i++) {
    memcpy(m, b.data, b.len);
    size_t len = b.len;
    int edits = 1 + (int)(rng() % 3);
    for (int k = 0; k < edits; k++) {
      size_t at = rng() % len;
      switch (rng() % 3) {
      case 0: m[at] = (char)rng(); break;
      case 1: m[at] ^= (char)(1u << (rng() % 8)); break;
      default:
        memmove(m + at, m + at + 1, len - at - 1);
        len--;
        break;
      }
      if (len == 0) break;
    }
    fuzz_one(m, len, &bad);
  }
  free(m);
  cs_buf_free(&b);
  CHECK_EQ_INT(bad, 0);
}

/* ============================================ encoded values, no Lua */

/* The encoded bytes of a value, viewed as a slice. */
static cs_slice slice_of(const cs_buf *b) {
  cs_slice s = {b->data, b->len};
  return s;
}

static int slice_is(cs_slice s, const cs_buf *b) {
  return s.len == b->len && (s.len == 0 || memcmp(s.data, b->data, s.len) == 0);
}

/* Encodes the value at idx into b, which is reset first. */
static void encode_at(int idx, cs_buf *b) {
  char err[256] = "";
  b->len = 0;
  if (cs_codec_encode(L, idx, b, err, sizeof(err)) != 0) {
    fprintf(stderr, "encode failed: %s\n", err);
    cs_test_failures++;
  }
}

/* Checks cs_codec_array_elem on the array a chunk returns: every position
 * (or a sample of a long array) gives the bytes cs_codec_encode writes for
 * that element, positions out of range give 0, and on every proper prefix
 * of the bytes an element is found exactly when it lies entirely inside. */
static void check_array_elem(const char *code) {
  int top = lua_gettop(L);
  push_lua(code);
  int t = lua_gettop(L);
  cs_buf b = {0}, e = {0};
  encode_at(t, &b);
  cs_slice v = slice_of(&b), out;
  lua_Integer n = luaL_len(L, t);
  lua_Integer step = n <= 100 ? 1 : n / 37;
  int bad = 0;
  for (lua_Integer pos = 1; pos <= n; pos += (pos < 3 || pos > n - 3) ? 1 : step) {
    lua_geti(L, t, pos);
    encode_at(-1, &e);
    lua_pop(L, 1);
    out.data = NULL, out.len = 0;
    if (cs_codec_array_elem(v, pos, &out) != 1 || !slice_is(out, &e) ||
        out.data < b.data || out.data + out.len > b.data + b.len) {
      if (bad++ < 3)
        fprintf(stderr, "%s: element %lld wrong\n", code, (long long)pos);
    }
    /* Prefixes: found exactly when the element ends inside the prefix. */
    if (b.len <= 4096 && bad == 0) {
      size_t end = (size_t)(out.data + out.len - b.data);
      for (size_t cut = 0; cut < b.len; cut++) {
        cs_slice c = {b.data, cut}, o = {NULL, 0};
        int r = cs_codec_array_elem(c, pos, &o);
        if (r != (end <= cut) || (r && !slice_is(o, &e))) {
          if (bad++ < 3)
            fprintf(stderr, "%s: element %lld of a %zu-byte prefix: %d\n",
                    code, (long long)pos, cut, r);
        }
      }
    }
  }
  static const int64_t outside[] = {0, -1, INT64_MIN, INT64_MAX};
  for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
    if (cs_codec_array_elem(v, outside[i], &out) != 0) bad++;
  if (cs_codec_array_elem(v, n + 1, &out) != 0) bad++;
  if (cs_codec_array_elem(v, n + 1000, &out) != 0) bad++;
  if (bad) {
    fprintf(stderr, "%s: %d array_elem failure(s)\n", code, bad);
    cs_test_failures++;
  }
  lua_settop(L, top);
  cs_buf_free(&b);
  cs_buf_free(&e);
}

/* cs_codec_skip_lean: the framing of cs_codec_skip without its map-key
 * checks (nil and NaN keys are left for decode to refuse). */
static void test_skip_lean(void) {
  char bytes[32];
  size_t n = unhex("81c001", bytes);
  CHECK_EQ_INT(cs_codec_skip(bytes, n), CS_EDECODE);
  CHECK_EQ_INT(cs_codec_skip_lean(bytes, n), 3);
  n = unhex("81cb7ff800000000000001", bytes);
  CHECK_EQ_INT(cs_codec_skip(bytes, n), CS_EDECODE);
  CHECK_EQ_INT(cs_codec_skip_lean(bytes, n), 11);
  static const char *bad[] = {"", "c1", "c70101", "d40101", "92", "dc0003",
                              "ddffffffff", "dfffffffff00", "dbffffffff61",
                              "8101", "cb3ff8"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    n = unhex(bad[i], bytes);
    if (cs_codec_skip_lean(bytes, n) != CS_EDECODE) {
      fprintf(stderr, "skip_lean of %s should fail\n", bad[i]);
      cs_test_failures++;
    }
  }
  n = unhex("a161a1", bytes);
  CHECK_EQ_INT(cs_codec_skip_lean(bytes, n), 2);
  /* Depth: CS_CODEC_MAX_DEPTH nested arrays, as skip. */
  char deep[CS_CODEC_MAX_DEPTH + 2];
  memset(deep, 0x91, sizeof(deep));
  deep[CS_CODEC_MAX_DEPTH] = 0x01;
  CHECK_EQ_INT(cs_codec_skip_lean(deep, CS_CODEC_MAX_DEPTH + 1),
               CS_CODEC_MAX_DEPTH + 1);
  deep[CS_CODEC_MAX_DEPTH] = (char)0x91;
  deep[CS_CODEC_MAX_DEPTH + 1] = 0x01;
  CHECK_EQ_INT(cs_codec_skip_lean(deep, sizeof(deep)), CS_EDECODE);
}

static void test_array_elem(void) {
  check_array_elem("return {1}");
  check_array_elem("return {1, -1, 127, 128, -33, 200, -200, 70000, 1 << 40,"
                   " -(1 << 40), math.mininteger, math.maxinteger}");
  check_array_elem("return {'a', {1, 2}, {x = 1, y = {2}}, 2.5, true, false,"
                   " -0.0, 0/0, 1/0, '', {}}");
  check_array_elem("return {string.rep('s', 31), string.rep('t', 32),"
                   " string.rep('u', 300), string.rep('v', 70000), 'end'}");
  check_array_elem("return {{}, {{}}, {{{}}}, {[1] = 'a', [3] = 'c'}, ''}");
  check_array_elem("return {{1, {2, {3, {4}}}}, 'tail', {k = {1, {z = 2}}}}");
  check_array_elem("return {'\\0', '\\255\\254', '\\x92\\x01\\x02'}");
  check_array_elem("local t = {} for i = 1, 15 do t[i] = i * 1000 end return t");
  check_array_elem("local t = {} for i = 1, 16 do t[i] = {i, tostring(i)} end"
                   " return t");
  check_array_elem("local t = {} for i = 1, 70000 do t[i] = i end return t");
  /* The deepest value the encoder writes: its element is still read. */
  char code[160];
  snprintf(code, sizeof(code),
           "local t = {} for i = 2, %d do t = {t} end return {t, 'after'}",
           CS_CODEC_MAX_DEPTH - 1);
  check_array_elem(code);

  /* Not arrays: 0, whatever the position. */
  static const char *others[] = {
      "return nil",        "return 1",         "return 2.5",
      "return true",       "return 'abc'",     "return '\\x92\\x01\\x02'",
      "return {a = 1}",    "return {}",        "return {[1] = 'a', [3] = 'c'}",
      "return {1, 2, x = 3}", "return {[0] = 1, 2}"};
  cs_buf b = {0};
  cs_slice out;
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    push_lua(others[i]);
    encode_at(-1, &b);
    lua_pop(L, 1);
    for (int64_t pos = 0; pos <= 3; pos++) {
      if (cs_codec_array_elem(slice_of(&b), pos, &out) != 0) {
        fprintf(stderr, "%s: array_elem(%lld) should be 0\n", others[i],
                (long long)pos);
        cs_test_failures++;
      }
    }
  }
  cs_slice empty = {"", 0};
  CHECK_EQ_INT(cs_codec_array_elem(empty, 1, &out), 0);
  /* Non-shortest headers another writer may use are read all the same. */
  char bytes[16];
  cs_slice v = {bytes, unhex("dc0002a161cd0102", bytes)};
  CHECK_EQ_INT(cs_codec_array_elem(v, 2, &out), 1);
  CHECK(out.len == 3 && memcmp(out.data, "\xcd\x01\x02", 3) == 0);
  v.len = unhex("dd00000001c3", bytes);
  CHECK_EQ_INT(cs_codec_array_elem(v, 1, &out), 1);
  CHECK(out.len == 1 && (unsigned char)out.data[0] == 0xc3);
  /* Only the array's own elements, whatever bytes follow it. */
  v.len = unhex("910203", bytes);
  CHECK_EQ_INT(cs_codec_array_elem(v, 1, &out), 1);
  CHECK(out.len == 1 && out.data[0] == 2);
  CHECK_EQ_INT(cs_codec_array_elem(v, 2, &out), 0);
  /* A count the bytes cannot hold, a malformed element before the one
   * asked for. */
  v.len = unhex("dcffff01", bytes);
  CHECK_EQ_INT(cs_codec_array_elem(v, 1, &out), 1);
  CHECK_EQ_INT(cs_codec_array_elem(v, 2, &out), 0);
  v.len = unhex("93c10102", bytes);
  CHECK_EQ_INT(cs_codec_array_elem(v, 3, &out), 0);
  cs_buf_free(&b);
}

/* Checks cs_codec_map_field on the map a chunk returns, for a name that is
 * (want_found) or is not one of its string keys. */
static void check_map_field(const char *code, const char *name, size_t namelen,
                            int want_found, int line) {
  int top = lua_gettop(L);
  push_lua(code);
  int t = lua_gettop(L);
  cs_buf b = {0}, e = {0};
  encode_at(t, &b);
  cs_slice out = {NULL, 0};
  int r = cs_codec_map_field(slice_of(&b), name, namelen, &out);
  if (r != want_found) {
    fprintf(stderr, "%s:%d: map_field(%.*s) is %d, want %d\n", __FILE__, line,
            (int)namelen, name, r, want_found);
    cs_test_failures++;
  } else if (r) {
    lua_pushlstring(L, name, namelen);
    lua_rawget(L, t);
    encode_at(-1, &e);
    CHECK(slice_is(out, &e));
    /* Prefixes: found exactly when the value ends inside the prefix (the
     * entries before it are complete then too). */
    size_t end = (size_t)(out.data + out.len - b.data);
    int bad = 0;
    for (size_t cut = 0; cut < b.len && b.len <= 4096; cut++) {
      cs_slice c = {b.data, cut}, o = {NULL, 0};
      int rc = cs_codec_map_field(c, name, namelen, &o);
      if (rc != (end <= cut) || (rc && !slice_is(o, &e))) bad++;
    }
    if (bad) {
      fprintf(stderr, "%s:%d: map_field(%.*s) wrong on %d prefix(es)\n",
              __FILE__, line, (int)namelen, name, bad);
      cs_test_failures++;
    }
  }
  lua_settop(L, top);
  cs_buf_free(&b);
  cs_buf_free(&e);
}

#define FIELD(code, name, found) \
  check_map_field(code, name, sizeof(name) - 1, found, __LINE__)

static void test_map_field(void) {
  const char *m =
      "return {a = 1, b = 'x', c = {1, 2}, d = {e = 5}, [1] = 'int',"
      " ['1'] = 'str', [true] = 'bool', [2.5] = 'float', [{1}] = 'table',"
      " ['a\\0b'] = 'nul', [''] = 'empty', [string.rep('k', 40)] = 'long',"
      " ab = 'ab', f = 2.5, g = -70000, h = {x = {y = {}}}, n = 0/0}";
  FIELD(m, "a", 1);
  FIELD(m, "b", 1);
  FIELD(m, "c", 1);
  FIELD(m, "d", 1);
  FIELD(m, "ab", 1);
  FIELD(m, "f", 1);
  FIELD(m, "g", 1);
  FIELD(m, "h", 1);
  FIELD(m, "n", 1);
  FIELD(m, "1", 1); /* the string key, not the integer one */
  FIELD(m, "a\0b", 1);
  FIELD(m, "", 1);
  FIELD(m, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", 1); /* str8 key */
  FIELD(m, "z", 0);
  FIELD(m, "A", 0);
  FIELD(m, "a\0", 0);
  FIELD(m, "abc", 0);
  FIELD(m, "e", 0); /* a key of a nested map */
  FIELD(m, "true", 0);
  FIELD(m, "2.5", 0);
  FIELD(m, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", 0);
  FIELD(m, "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", 0);
  /* Only non-string keys. */
  const char *nonstr = "return {[1] = 'a', [3] = 'c', [true] = 1, [-1] = 2}";
  FIELD(nonstr, "1", 0);
  FIELD(nonstr, "3", 0);
  FIELD(nonstr, "true", 0);
  FIELD(nonstr, "-1", 0);
  /* A value that is itself a string equal to the name is not a key. */
  FIELD("return {x = 'y', [2] = 'z'}", "y", 0);
  FIELD("return {x = 'y', [2] = 'z'}", "z", 0);
  FIELD("return {x = 'y', [2] = 'z'}", "x", 1);
  /* map16 and map32 headers. */
  const char *m16 = "local t = {} for i = 1, 40 do t['f' .. i] = i * i end"
                    " return t";
  FIELD(m16, "f1", 1);
  FIELD(m16, "f17", 1);
  FIELD(m16, "f40", 1);
  FIELD(m16, "f41", 0);
  const char *m32 = "local t = {} for i = 1, 70000 do t['f' .. i] = i end"
                    " return t";
  FIELD(m32, "f1", 1);
  FIELD(m32, "f69999", 1);
  FIELD(m32, "f0", 0);
  /* The deepest value the encoder writes, under a field. */
  char code[160];
  snprintf(code, sizeof(code),
           "local t = {} for i = 2, %d do t = {t} end return {a = t, b = 1}",
           CS_CODEC_MAX_DEPTH - 1);
  FIELD(code, "a", 1);
  FIELD(code, "b", 1);

  /* Not maps. */
  static const char *others[] = {"return {'a', 'b'}", "return {}",
                                 "return 'a'", "return nil", "return 1",
                                 "return {{a = 1}}"};
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    FIELD(others[i], "a", 0);
    FIELD(others[i], "1", 0);
  }
  cs_slice out, empty = {"", 0};
  CHECK_EQ_INT(cs_codec_map_field(empty, "a", 1, &out), 0);
  /* map16/map32 and str8 keys another writer may use for short maps. */
  char bytes[32];
  cs_slice v = {bytes, unhex("de0001d90161cc05", bytes)};
  CHECK_EQ_INT(cs_codec_map_field(v, "a", 1, &out), 1);
  CHECK(out.len == 2 && memcmp(out.data, "\xcc\x05", 2) == 0);
  v.len = unhex("df00000002a16201a16102", bytes);
  CHECK_EQ_INT(cs_codec_map_field(v, "a", 1, &out), 1);
  CHECK(out.len == 1 && out.data[0] == 2);
  /* A malformed entry before the one asked for. */
  v.len = unhex("82a162c1a16102", bytes);
  CHECK_EQ_INT(cs_codec_map_field(v, "a", 1, &out), 0);
}

/* Reads the number a chunk returns with cs_codec_number and compares with
 * the Lua value: integer or float, the same integer, the same float bits
 * (NaN: some NaN). */
static void check_number_of(const char *code, unsigned char *first_bytes,
                            int line) {
  push_lua(code);
  cs_buf b = {0};
  encode_at(-1, &b);
  cs_num num;
  memset(&num, 0x5a, sizeof(num));
  int r = cs_codec_number(slice_of(&b), &num);
  int ok = r == 1;
  if (ok && lua_isinteger(L, -1)) {
    ok = num.is_int == 1 && num.i == (int64_t)lua_tointeger(L, -1);
  } else if (ok) {
    double d = (double)lua_tonumber(L, -1);
    ok = num.is_int == 0 &&
         (isnan(d) ? isnan(num.d) : memcmp(&d, &num.d, sizeof(d)) == 0);
  }
  if (!ok) {
    fprintf(stderr, "%s:%d: cs_codec_number of %s: %d\n", __FILE__, line,
            code, r);
    cs_test_failures++;
  }
  if (first_bytes && b.len) first_bytes[(unsigned char)b.data[0]] = 1;
  lua_pop(L, 1);
  cs_buf_free(&b);
}

/* cs_codec_number on hand-written bytes: want_ok, and then the value. */
static void check_number_hex(const char *hex, int want_ok, int is_int,
                             int64_t i, double d, int line) {
  char bytes[32];
  cs_slice v = {bytes, unhex(hex, bytes)};
  cs_num num;
  int r = cs_codec_number(v, &num);
  int ok = r == want_ok;
  if (ok && r)
    ok = num.is_int == is_int && (is_int ? num.i == i : num.d == d);
  if (!ok) {
    fprintf(stderr, "%s:%d: cs_codec_number of %s: %d\n", __FILE__, line, hex,
            r);
    cs_test_failures++;
  }
}

#define NUMBER_HEX(hex, ok, is_int, i, d) \
  check_number_hex(hex, ok, is_int, i, d, __LINE__)

static const char *int_boundaries[] = {
    "0", "1", "127", "128", "255", "256", "65535", "65536", "4294967295",
    "4294967296", "math.maxinteger", "-1", "-32", "-33", "-128", "-129",
    "-32768", "-32769", "-2147483648", "-2147483649", "math.mininteger"};

static void test_number(void) {
  /* Every integer width, at its boundaries. */
  unsigned char first[256] = {0};
  char code[128];
  for (size_t i = 0; i < sizeof(int_boundaries) / sizeof(int_boundaries[0]);
       i++) {
    snprintf(code, sizeof(code), "return %s", int_boundaries[i]);
    check_number_of(code, first, __LINE__);
  }
  static const unsigned char widths[] = {0x00, 0x7f, 0xe0, 0xff, 0xcc, 0xcd,
                                         0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3};
  for (size_t i = 0; i < sizeof(widths); i++) CHECK(first[widths[i]]);
  for (int i = 0; i < 2000; i++) {
    snprintf(code, sizeof(code), "return %lld",
             (long long)((int64_t)rng() >> (rng() % 64)));
    check_number_of(code, NULL, __LINE__);
  }
  check_number_of("return math.mininteger", NULL, __LINE__);

  /* Floats, float64 always. */
  static const char *floats[] = {
      "0.5",  "-0.0",    "0.0",     "0/0",      "-(0/0)",  "1/0",
      "-1/0", "2^63",    "-2^63",   "1e300",    "5.0",     "4.9e-324",
      "0.1",  "11 / 3",  "2^53 + 0.0", "-1.5e-300"};
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
    snprintf(code, sizeof(code), "return %s", floats[i]);
    check_number_of(code, NULL, __LINE__);
  }
  push_lua("return -0.0");
  cs_buf b = {0};
  encode_at(-1, &b);
  cs_num num;
  CHECK_EQ_INT(cs_codec_number(slice_of(&b), &num), 1);
  CHECK(num.is_int == 0 && num.d == 0 && signbit(num.d));
  lua_pop(L, 1);

  /* Hand-written forms: non-shortest integers, float32, uint64 past
   * INT64_MAX (no Lua integer holds it: 0). */
  NUMBER_HEX("cf8000000000000000", 0, 0, 0, 0);
  NUMBER_HEX("cfffffffffffffffff", 0, 0, 0, 0);
  NUMBER_HEX("cf7fffffffffffffff", 1, 1, INT64_MAX, 0);
  NUMBER_HEX("cf0000000000000005", 1, 1, 5, 0);
  NUMBER_HEX("d005", 1, 1, 5, 0);
  NUMBER_HEX("d0ff", 1, 1, -1, 0);
  NUMBER_HEX("d080", 1, 1, -128, 0);
  NUMBER_HEX("cd0001", 1, 1, 1, 0);
  NUMBER_HEX("d1ffff", 1, 1, -1, 0);
    NUMBER_HEX("d2ffffffff", 1, 1, -1, 0);
  NUMBER_HEX("d3ffffffffffffffff", 1, 1, -1, 0);
  NUMBER_HEX("ce80000000", 1, 1, 2147483648LL, 0);
  NUMBER_HEX("ca3fc00000", 1, 0, 0, 1.5);
  NUMBER_HEX("cb3ff8000000000000", 1, 0, 0, 1.5);
  /* Truncated or followed by more bytes: not a whole number. */
  static const char *partial[] = {
      "cc",         "cd00",     "ce000000",   "cf00000000000000", "d0",
      "d100",       "d2000000", "d300000000000000", "ca3fc000", "cb3ff8",
      "0102",       "ff00",     "cc0101",     "cb3ff800000000000000",
      "ca3fc0000000", "d30000000000000000ff"};
  for (size_t i = 0; i < sizeof(partial) / sizeof(partial[0]); i++)
    NUMBER_HEX(partial[i], 0, 0, 0, 0);
  cs_slice empty = {"", 0};
  CHECK_EQ_INT(cs_codec_number(empty, &num), 0);

  /* Not numbers. */
  static const char *others[] = {"nil", "true", "false", "'x'", "'1'", "''",
                                 "{}", "{1}", "{a = 1}", "'\\204\\5'"};
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    snprintf(code, sizeof(code), "return %s", others[i]);
    push_lua(code);
    encode_at(-1, &b);
    lua_pop(L, 1);
    if (cs_codec_number(slice_of(&b), &num) != 0) {
      fprintf(stderr, "cs_codec_number of %s should be 0\n", others[i]);
      cs_test_failures++;
    }
  }
  NUMBER_HEX("c1", 0, 0, 0, 0);
  NUMBER_HEX("c40105", 0, 0, 0, 0);
  cs_buf_free(&b);
}

/* cs_codec_put_number appends exactly what cs_codec_encode writes for the
 * same Lua number, and cs_codec_number reads it back. */
static void check_put_number_top(int *bad) {
  cs_num num;
  num.is_int = lua_isinteger(L, -1);
  num.i = num.is_int ? (int64_t)lua_tointeger(L, -1) : 0;
  num.d = num.is_int ? 0 : (double)lua_tonumber(L, -1);
  cs_buf want = {0}, got = {0};
  encode_at(-1, &want);
  cs_buf_append(&got, "ab", 2);
  int rc = cs_codec_put_number(&got, &num);
  cs_num back;
  cs_slice tail = {got.data + 2, got.len - 2};
  if (rc != 0 || got.len != want.len + 2 || memcmp(got.data, "ab", 2) != 0 ||
      memcmp(got.data + 2, want.data, want.len) != 0 ||
      cs_codec_number(tail, &back) != 1 || back.is_int != num.is_int ||
      (num.is_int ? back.i != num.i
                  : memcmp(&back.d, &num.d, sizeof(num.d)) != 0)) {
    if ((*bad)++ < 5) {
      lua_pushvalue(L, -1);
      fprintf(stderr, "put_number of %s differs from cs_codec_encode\n",
              luaL_tolstring(L, -1, NULL));
      lua_pop(L, 2);
    }
  }
  cs_buf_free(&want);
  cs_buf_free(&got);
}

static void test_put_number(void) {
  int bad = 0;
  char code[128];
  for (size_t i = 0; i < sizeof(int_boundaries) / sizeof(int_boundaries[0]);
       i++) {
    snprintf(code, sizeof(code), "return %s", int_boundaries[i]);
    push_lua(code);
    check_put_number_top(&bad);
    lua_pop(L, 1);
  }
  for (int i = 0; i < 2000; i++) {
    lua_pushinteger(L, (lua_Integer)((int64_t)rng() >> (rng() % 64)));
    check_put_number_top(&bad);
    lua_pop(L, 1);
    uint64_t bits = rng();
    double d;
    memcpy(&d, &bits, sizeof(d));
    lua_pushnumber(L, d);
    check_put_number_top(&bad);
    lua_pop(L, 1);
  }
  static const char *floats[] = {"0.5", "-0.0", "0.0", "0/0", "1/0", "-1/0",
                                 "2^63", "5.0", "4.9e-324", "0.1", "-2^63"};
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
    snprintf(code, sizeof(code), "return %s", floats[i]);
    push_lua(code);
    check_put_number_top(&bad);
    lua_pop(L, 1);
  }
  CHECK_EQ_INT(bad, 0);

  /* Out of memory: CS_ENOMEM, nothing appended. */
  cs_buf b = {0};
  cs_num num = {1, 70000, 0};
  cs_fail_nth_alloc(1);
  CHECK_EQ_INT(cs_codec_put_number(&b, &num), CS_ENOMEM);
  cs_fail_nth_alloc(0);
  CHECK_EQ_INT(b.len, 0);
  cs_buf_free(&b);
}

/* cs_codec_is_key_scalar answers 1 exactly for nil, booleans, integers and
 * strings, and for those the record bytes are the canonical key bytes. */
static void test_is_key_scalar(void) {
  static const char *scalars[] = {
      "nil", "true", "false", "0", "1", "-1", "-32", "-33", "127", "128",
      "255", "256", "65536", "4294967296", "math.maxinteger",
      "math.mininteger", "-129", "-32769", "-2147483649", "''", "'a'",
      "'\\0'", "'1'", "string.rep('x', 31)", "string.rep('x', 32)",
      "string.rep('x', 256)", "string.rep('x', 65536)"};
  static const char *others[] = {
      "1.0", "1.5", "-0.0", "0.0", "2^63", "-2^63", "1e300", "1/0", "-1/0",
      "0/0", "{}", "{1}", "{1.0}", "{a = 1}", "{'a', 'b'}", "{[1.0] = 2}"};
  char code[128];
  cs_buf b = {0}, k = {0};
  char err[128];
  for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
    snprintf(code, sizeof(code), "return %s", scalars[i]);
    push_lua(code);
    encode_at(-1, &b);
    k.len = 0;
    CHECK_EQ_INT(cs_codec_encode_key(L, -1, &k, err, sizeof(err)), 0);
    lua_pop(L, 1);
    if (cs_codec_is_key_scalar(slice_of(&b)) != 1 || !slice_is(slice_of(&b), &k)) {
      fprintf(stderr, "is_key_scalar(%s) should be 1, with key bytes\n",
              scalars[i]);
      cs_test_failures++;
    }
  }
  for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
    snprintf(code, sizeof(code), "return %s", others[i]);
    push_lua(code);
    encode_at(-1, &b);
    lua_pop(L, 1);
    if (cs_codec_is_key_scalar(slice_of(&b)) != 0) {
      fprintf(stderr, "is_key_scalar(%s) should be 0\n", others[i]);
      cs_test_failures++;
    }
  }
  /* An integral float's key is the integer, not its record bytes. */
  push_lua("return 1.0");
  encode_at(-1, &b);
  k.len = 0;
  CHECK_EQ_INT(cs_codec_encode_key(L, -1, &k, err, sizeof(err)), 0);
  CHECK(!slice_is(slice_of(&b), &k));
  lua_pop(L, 1);
  /* uint64 past INT64_MAX decodes as a float: not a key scalar; nor are bin
   * strings (decoded as strings, but not the bytes the encoder writes). */
  char bytes[16];
  cs_slice v = {bytes, unhex("cf8000000000000000", bytes)};
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("cfffffffffffffffff", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("cf7fffffffffffffff", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 1);
  v.len = unhex("c40161", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("c1", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("ca3fc00000", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("dc0000", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  /* Padded forms (another writer's) decode to the same value but are not
   * its key bytes (found by spec/fuzz/fuzz_codec.c). */
  static const char *padded[] = {"cc05", "cd0005", "ce00000005",
                                 "cf0000000000000005", "d3000000000000007f",
                                 "d0ff", "d1ff80", "d2ffffff80",
                                 "d3ffffffff80000000", "d903616263",
                                 "da0003616263", "db00000003616263"};
  for (size_t i = 0; i < sizeof(padded) / sizeof(*padded); i++) {
    v.len = unhex(padded[i], bytes);
    CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  }
  v.len = unhex("d3ffffffff7fffffff", bytes); /* below INT32_MIN: shortest */
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 1);
  v.len = unhex("cc80", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 1);
  v.len = unhex("cc", bytes); /* truncated */
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = unhex("de0000", bytes);
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  v.len = 0;
  CHECK_EQ_INT(cs_codec_is_key_scalar(v), 0);
  cs_buf_free(&b);
  cs_buf_free(&k);
}

/* ========================================================= key groups */

static void test_key_group_ranges(void) {
  int bad = 0;
  static const int big[] = {128, 1000, 4096, 32768};
  for (int maxp = 1; maxp <= 300 + 4; maxp++) {
    int m = maxp <= 300 ? maxp : big[maxp - 301];
    int pmax = m <= 300 ? m + 3 : 300; /* a few p > maxp: empty ranges */
    for (int p = 1; p <= pmax; p++) {
      int next = 0; /* the ranges cover 0..m-1 in order, without gaps */
      for (int i = 0; i < p; i++) {
        int first, last;
        cs_key_group_range(i, m, p, &first, &last);
        if (first != next || last < first - 1 || last >= m) bad++;
        for (int kg = first; kg <= last; kg++)
          if (cs_key_group_owner(kg, m, p) != i) bad++;
        next = last + 1;
      }
      if (next != m) bad++;
      for (int kg = 0; kg < m; kg++) {
        int o = cs_key_group_owner(kg, m, p);
        if (o < 0 || o >= p) bad++;
      }
    }
  }
  CHECK_EQ_INT(bad, 0);
  /* Flink's numbers: 128 key groups over 3 subtasks. */
  int first, last;
  cs_key_group_range(0, 128, 3, &first, &last);
  CHECK(first == 0 && last == 42);
  cs_key_group_range(1, 128, 3, &first, &last);
  CHECK(first == 43 && last == 85);
  cs_key_group_range(2, 128, 3, &first, &last);
  CHECK(first == 86 && last == 127);
}

static void test_key_group_values(void) {
  cs_buf b = {0};
  /* Pinned so that a change of hash, seed or key encoding is noticed: state
   * written by one build must be found by the next. */
  encode_code("return 'word'", 1, &b);
  CHECK(bytes_eq(&b, "a4776f7264"));
  CHECK_EQ_INT(XXH3_64bits(b.data, b.len) % 128,
               cs_key_group(b.data, b.len, 128));
  CHECK_EQ_INT(cs_key_group(b.data, b.len, 128), 3);
  CHECK_EQ_INT(cs_key_group(b.data, b.len, 32768), 32387);
  encode_code("return {'flink', 3.0}", 1, &b);
  CHECK_EQ_INT(cs_key_group(b.data, b.len, 128), 113);
  encode_code("return 42", 1, &b);
  CHECK_EQ_INT(cs_key_group(b.data, b.len, 128), 13);
  CHECK_EQ_INT(cs_key_group(b.data, b.len, 1), 0);
  for (int i = 0; i < 1000; i++) {
    lua_pushinteger(L, (lua_Integer)rng());
    encode_top(&b, 1, NULL, 0);
    lua_pop(L, 1);
    int kg = cs_key_group(b.data, b.len, 300);
    if (kg < 0 || kg >= 300) CHECK(0);
  }
  cs_buf_free(&b);
}

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L, deep_eq_src) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  size_t before = cs_allocated_bytes();
  test_integers();
  test_floats();
  test_strings();
  test_tables();
  test_decode_families();
  test_concatenated();
  test_canonical();
  test_errors();
  test_out_of_memory();
  test_truncation();
  test_garbage();
  test_skip_lean();
  test_array_elem();
  test_map_field();
  test_number();
  test_put_number();
  test_is_key_scalar();
  test_key_group_ranges();
  test_key_group_values();
  CHECK_EQ_INT(lua_gettop(L), 0);
  CHECK_EQ_INT(cs_allocated_bytes(), before);
  lua_close(L);
  TEST_MAIN_END();
}
