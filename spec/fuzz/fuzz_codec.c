/*
 * fuzz_codec.c - the MessagePack value decoder and the canonical key
 * encoder of state/cs_codec.h, on arbitrary bytes. For every input:
 *   - cs_codec_decode, cs_codec_skip and cs_codec_skip_lean agree on
 *     whether the bytes start with one value and on its size;
 *   - a decoded value x encodes, and decode(encode(x)) equals x exactly
 *     (integer vs float, -0.0, NaN);
 *   - x encodes as a key unless it holds a NaN; the key decodes to a value
 *     equal to x as a key (1.0 == 1), and encoding that again gives the
 *     same bytes (the canonical form is a fixed point);
 *   - when the input is a key scalar (cs_codec_is_key_scalar), its key
 *     encoding is the input itself; cs_codec_number reads what decode reads.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>

#include "state/cs_codec.h"
#include "fuzz_util.h"

static lua_State *L;

/* eq(a, b, strict): strict compares number subtypes and the sign of zero,
 * else numbers compare as Lua table keys do. Table keys that are tables
 * cannot be looked up in the other table: they are only counted (the key
 * property compares their canonical bytes instead). */
static const char *helpers =
    "local function eq(a, b, strict)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then return false end\n"
    "  if ta == 'number' then\n"
    "    if a ~= a then return b ~= b end\n"
    "    if strict then\n"
    "      if math.type(a) ~= math.type(b) then return false end\n"
    "      if a == 0 and math.type(a) == 'float' then return 1/a == 1/b end\n"
    "    end\n"
    "    return a == b\n"
    "  end\n"
    "  if ta ~= 'table' then return a == b end\n"
    "  local na, nb = 0, 0\n"
    "  for k, v in pairs(a) do\n"
    "    na = na + 1\n"
    "    if type(k) ~= 'table' and not eq(v, rawget(b, k), strict) then\n"
    "      return false\n"
    "    end\n"
    "  end\n"
    "  for _ in pairs(b) do nb = nb + 1 end\n"
    "  return na == nb\n"
    "end\n"
    "local function has_nan(v)\n"
    "  if v ~= v then return true end\n"
    "  if type(v) ~= 'table' then return false end\n"
    "  for k, x in pairs(v) do\n"
    "    if has_nan(k) or has_nan(x) then return true end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "return eq, has_nan\n";

static int eq_ref, has_nan_ref;

/* Calls eq(a, b, strict) on the values at indices a and b. */
static int lua_eq(int a, int b, int strict) {
  a = lua_absindex(L, a);
  b = lua_absindex(L, b);
  lua_rawgeti(L, LUA_REGISTRYINDEX, eq_ref);
  lua_pushvalue(L, a);
  lua_pushvalue(L, b);
  lua_pushboolean(L, strict);
  lua_call(L, 3, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

static int holds_nan(int idx) {
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, has_nan_ref);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

/* The properties, run under lua_pcall (the codec raises only memory
 * errors). Upvalue-free: the input is a light userdata and a length. */
static int check(lua_State *l) {
  (void)l;
  const char *data = lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  lua_settop(L, 0);
  size_t used = 0;
  int rc = cs_codec_decode(L, data, len, &used);
  long skip = cs_codec_skip(data, len);
  long lean = cs_codec_skip_lean(data, len);
  if (rc != 0) {
    FUZZ_CHECK(lua_gettop(L) == 0);
    FUZZ_CHECK(skip < 0);
    return 0;
  }
  FUZZ_CHECK(lua_gettop(L) == 1);
  FUZZ_CHECK(used > 0 && used <= len);
  FUZZ_CHECK(skip == (long)used);
  FUZZ_CHECK(lean == (long)used);
  cs_slice whole = {data, used};

  /* decode(encode(x)) == x */
  cs_buf e = {0}, k = {0}, k2 = {0};
  char err[256];
  FUZZ_CHECK(cs_codec_encode(L, 1, &e, err, sizeof(err)) == 0);
  size_t used2 = 0;
  FUZZ_CHECK(cs_codec_decode(L, e.data, e.len, &used2) == 0);
  FUZZ_CHECK(used2 == e.len);
  FUZZ_CHECK(lua_eq(1, 2, 1));
  lua_settop(L, 1);

  /* the canonical key form */
  rc = cs_codec_encode_key(L, 1, &k, err, sizeof(err));
  if (rc != 0) {
    FUZZ_CHECK(rc == CS_EENCODE && holds_nan(1));
  } else {
    FUZZ_CHECK(!holds_nan(1));
    FUZZ_CHECK(cs_codec_decode(L, k.data, k.len, &used2) == 0);
    FUZZ_CHECK(used2 == k.len);
    FUZZ_CHECK(lua_eq(1, 2, 0));
    FUZZ_CHECK(cs_codec_encode_key(L, 2, &k2, err, sizeof(err)) == 0);
    FUZZ_CHECK(k2.len == k.len && memcmp(k.data, k2.data, k.len) == 0);
    if (cs_codec_is_key_scalar(whole))
      FUZZ_CHECK(k.len == used && memcmp(k.data, data, used) == 0);
  }
  lua_settop(L, 1);

  /* the number reader of the fast paths */
  cs_num num;
  if (cs_codec_number(whole, &num)) {
    FUZZ_CHECK(lua_type(L, 1) == LUA_TNUMBER);
    if (num.is_int) {
      FUZZ_CHECK(lua_isinteger(L, 1) && lua_tointeger(L, 1) == num.i);
    } else {
      double d = (double)lua_tonumber(L, 1);
      FUZZ_CHECK(!lua_isinteger(L, 1));
      FUZZ_CHECK(d == num.d || (isnan(d) && isnan(num.d)));
    }
  }
  cs_buf_free(&e);
  cs_buf_free(&k);
  cs_buf_free(&k2);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (L == NULL) {
    L = luaL_newstate();
    luaL_openlibs(L);
    FUZZ_CHECK(luaL_loadstring(L, helpers) == LUA_OK);
    lua_call(L, 0, 2);
    has_nan_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    eq_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, check);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)size);
  int st = lua_pcall(L, 2, 0, 0);
  /* A memory error may leak the buffers of that run; any other error is
   * a defect. */
  if (st != LUA_OK && st != LUA_ERRMEM) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
