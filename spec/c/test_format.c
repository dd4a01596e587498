/*
 * test_format.c - pins the contract of host/cs_format.h: doubles as Java's
 * Double.toString prints them (JDK 19+, shortest digits) and Lua values as
 * Flink prints the corresponding Java values, and encoded values
 * (cs_format_encoded) exactly as the values they decode to.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state/cs_codec.h"
#include "host/lua/cs_lua.h"
#include "cs_test.h"

static lua_State *L;

static void check_double(double d, const char *want, int line) {
  cs_buf b = {0};
  CHECK_EQ_INT(cs_format_double(d, &b), 0);
  CHECK_EQ_INT(cs_buf_append(&b, "", 1), 0);
  if (strcmp(b.data, want) != 0) {
    fprintf(stderr, "%s:%d: %.17g renders as \"%s\", want \"%s\"\n", __FILE__,
            line, d, b.data, want);
    cs_test_failures++;
  }
  cs_buf_free(&b);
}

#define DOUBLE(d, want) check_double(d, want, __LINE__)

static void test_doubles(void) {
  DOUBLE(5.0, "5.0");
  DOUBLE(-3.0, "-3.0");
  DOUBLE(100.0, "100.0");
  DOUBLE(11.0 / 3.0, "3.6666666666666665");
  DOUBLE(0.1, "0.1");
  DOUBLE(0.1 + 0.2, "0.30000000000000004");
  DOUBLE(1.0 / 3.0, "0.3333333333333333");
  DOUBLE(2.0 / 3.0, "0.6666666666666666");
  DOUBLE(1e7, "1.0E7");
  DOUBLE(9999999.0, "9999999.0");
  DOUBLE(9999999.999999998, "9999999.999999998");
  DOUBLE(1234567.0, "1234567.0");
  DOUBLE(1e-3, "0.001");
  DOUBLE(2e-3, "0.002");
  DOUBLE(0.0012345, "0.0012345");
  DOUBLE(1e-4, "1.0E-4");
  DOUBLE(1.5e-4, "1.5E-4");
  DOUBLE(9.99e-4, "9.99E-4");
  DOUBLE(1.2345678e10, "1.2345678E10");
  DOUBLE(-1.2345678e10, "-1.2345678E10");
  DOUBLE(1e21, "1.0E21");
  DOUBLE(1e23, "1.0E23"); /* JDK 17: 9.999999999999999E22 */
  DOUBLE(2e23, "2.0E23"); /* JDK 17: 1.9999999999999998E23 */
  DOUBLE(123456789012345680.0, "1.2345678901234568E17");
  DOUBLE(0.5, "0.5");
  DOUBLE(0.125, "0.125");
  DOUBLE(4.9e-324, "4.9E-324"); /* one digit would do; Java gives two */
  DOUBLE(1e-323, "9.9E-324"); /* closer than 1.0E-323 (JDK 17) */
  DOUBLE(2.2250738585072014e-308, "2.2250738585072014E-308");
  DOUBLE(1.7976931348623157e308, "1.7976931348623157E308");
  /* Powers of two, whose shortest digits can lie above the nearest ones. */
  DOUBLE(0x1p-1017, "7.120236347223045E-307"); /* JDK 17: ...0444E-307 */
  DOUBLE(0x1p60, "1.152921504606847E18"); /* JDK 17: 1.15292150460684698E18 */
  DOUBLE(0x1p63, "9.223372036854776E18");
  DOUBLE(1.0, "1.0");
  DOUBLE(0.0, "0.0");
  DOUBLE(-0.0, "-0.0");
  DOUBLE(1.0 / 0.0, "Infinity");
  DOUBLE(-1.0 / 0.0, "-Infinity");
  DOUBLE(NAN, "NaN");
  DOUBLE(-NAN, "NaN");
}

/* Every rendering reads back as the same double, over random bit patterns
 * and random short decimals. */
static void test_doubles_round_trip(void) {
  uint64_t x = 0x2545f4914f6cdd1du;
  int bad = 0;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    double d;
    if (i % 2) {
      memcpy(&d, &x, sizeof(d));
    } else {
      d = (double)(x % 100000) * pow(10.0, (double)((int)(x >> 40) % 40 - 20));
    }
    if (!isfinite(d)) continue;
    cs_buf b = {0};
    cs_format_double(d, &b);
    cs_buf_append(&b, "", 1);
    char *end;
    double back = strtod(b.data, &end);
    if (back != d || *end != '\0' || strchr(b.data, '.') == NULL) {
      if (bad++ < 5) fprintf(stderr, "%.17g -> %s\n", d, b.data);
    }
    cs_buf_free(&b);
  }
  CHECK_EQ_INT(bad, 0);
}

/* Renders the value a Lua chunk returns. */
static void check_value(const char *code, const char *want, int line) {
  int top = lua_gettop(L);
  if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "%s:%d: lua error: %s\n", __FILE__, line,
            lua_tostring(L, -1));
    cs_test_failures++;
    lua_settop(L, top);
    return;
  }
  cs_buf b = {0};
  cs_buf_append(&b, "> ", 2);
  CHECK_EQ_INT(cs_format_value(L, -1, &b), 0);
  CHECK_EQ_INT(lua_gettop(L), top + 1);
  cs_buf_append(&b, "", 1);
  if (strcmp(b.data + 2, want) != 0 || memcmp(b.data, "> ", 2) != 0) {
    fprintf(stderr, "%s:%d: %s renders as \"%s\", want \"%s\"\n", __FILE__,
            line, code, b.data + 2, want);
    cs_test_failures++;
  }
  cs_buf_free(&b);
  lua_settop(L, top);
}

#define VALUE(code, want) check_value(code, want, __LINE__)

/* Renders the value of code and compares with what Lua's tostring gives
 * for that same value. */
static void check_like_tostring(const char *code, int line) {
  char buf[512];
  snprintf(buf, sizeof(buf), "subject = %s return tostring(subject)", code);
  if (luaL_dostring(L, buf) != LUA_OK) {
    fprintf(stderr, "%s:%d: lua error: %s\n", __FILE__, line,
            lua_tostring(L, -1));
    cs_test_failures++;
    lua_pop(L, 1);
    return;
  }
  char want[256];
  snprintf(want, sizeof(want), "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  check_value("return subject", want, line);
}

static void test_values(void) {
  VALUE("return nil", "null");
  VALUE("return true", "true");
  VALUE("return false", "false");
  VALUE("return -3", "-3");
  VALUE("return 0", "0");
  VALUE("return math.maxinteger", "9223372036854775807");
  VALUE("return math.mininteger", "-9223372036854775808");
  VALUE("return 5.0", "5.0");
  VALUE("return 11 / 3", "3.6666666666666665");
  VALUE("return 10 / 2", "5.0");
  VALUE("return 1e7", "1.0E7");
  VALUE("return -0.0", "-0.0");
  VALUE("return 1/0", "Infinity");
  VALUE("return 0/0", "NaN");
  VALUE("return 'flink'", "flink");
  VALUE("return ''", "");

  VALUE("return {1, 5.0}", "(1,5.0)");
  VALUE("return {'flink', 3}", "(flink,3)");
  VALUE("return {1, {2, 3}}", "(1,(2,3))");
  VALUE("return {}", "()");
  VALUE("return {{}}", "(())");
  VALUE("return {'a', nil}", "(a)");
  VALUE("return {[2] = 'b', [1] = 'a'}", "(a,b)");
  VALUE("return {'x', {k = 1}, 2.5, true}", "(x,{k=1},2.5,true)");
  VALUE("return {b = 2, a = 1}", "{a=1, b=2}");
  VALUE("return {word = 'flink', count = 3}", "{count=3, word=flink}");
  VALUE("return {1, 2, x = 3}", "{1=1, 2=2, x=3}");
  VALUE("return {[1] = 'a', [3] = 'c'}", "{1=a, 3=c}");
  VALUE("return {[0] = 'z'}", "{0=z}");
  VALUE("return {[2.5] = 1, [true] = 2}", "{2.5=1, true=2}");
  VALUE("return {[1] = 'int', ['1'] = 'str'}", "{1=int, 1=str}");
  VALUE("return {[{1, 2}] = 'tuple key'}", "{(1,2)=tuple key}");
  VALUE("return {a = {b = {c = {}}}}", "{a={b={c=()}}}");
  VALUE("local t = {} for i = 20, 1, -1 do t['k' .. string.format('%02d', i)]"
        " = i end return t",
        "{k01=1, k02=2, k03=3, k04=4, k05=5, k06=6, k07=7, k08=8, k09=9, "
        "k10=10, k11=11, k12=12, k13=13, k14=14, k15=15, k16=16, k17=17, "
        "k18=18, k19=19, k20=20}");

  /* __tostring, called protected; its errors are shown, not raised. */
  VALUE("return setmetatable({}, {__tostring = function() return 'P(1)' end})",
        "P(1)");
  VALUE("return {1, setmetatable({2}, {__tostring = function(t) "
        "return 'W' .. t[1] end})}",
        "(1,W2)");
  VALUE("return setmetatable({}, {__tostring = function() return 42 end})",
        "42");
  VALUE("return setmetatable({}, {__tostring = function() error('boom', 0) "
        "end})",
        "<__tostring error: boom>");
  VALUE("return setmetatable({}, {__tostring = function() error({}) end})",
        "<__tostring error: (error object is a table value)>");
  VALUE("return setmetatable({}, {__tostring = function() return {} end})",
        "<__tostring error: '__tostring' must return a string>");
  /* Other metamethods are not consulted. */
  VALUE("return setmetatable({1, 2}, {__len = function() return 5 end, "
        "__index = function() return 'x' end})",
        "(1,2)");

  /* Cycles. */
  VALUE("local t = {1} t[2] = t return t", "(1,<cycle>)");
  VALUE("local t = {} t.self = t return t", "{self=<cycle>}");
  VALUE("local s = {1} return {s, s}", "((1),(1))"); /* shared, not a cycle */

  /* Functions, userdata, threads as tostring shows them. */
  check_like_tostring("print", __LINE__);
  check_like_tostring("function() end", __LINE__);
  check_like_tostring("io.stdout", __LINE__);
  check_like_tostring("coroutine.create(print)", __LINE__);
  VALUE("return {io.stdout == nil}", "(false)");

  /* Strings are written as they are, NUL bytes included. */
  cs_buf b = {0};
  lua_pushlstring(L, "a\0b", 3);
  CHECK_EQ_INT(cs_format_value(L, -1, &b), 0);
  CHECK(b.len == 3 && memcmp(b.data, "a\0b", 3) == 0);
  lua_pop(L, 1);
  b.len = 0;

  /* Very deep nesting is cut, not a crash. */
  CHECK_EQ_INT(
      luaL_dostring(L, "local t = {} for i = 1, 1000 do t = {t} end return t"),
      0);
  CHECK_EQ_INT(cs_format_value(L, -1, &b), 0);
  cs_buf_append(&b, "", 1);
  CHECK(strstr(b.data, "<...>") != NULL);
  lua_pop(L, 1);
  cs_buf_free(&b);
}

/* A __tostring that empties and refills the table being traversed makes
 * lua_next raise; the error propagates as a Lua error and nothing leaks. */
static int format_growing(lua_State *S) {
  cs_buf *b = lua_touserdata(S, 1);
  cs_format_value(S, 2, b);
  return 0;
}

static void test_lua_error_inside(void) {
  size_t before = cs_allocated_bytes();
  cs_buf b = {0};
  lua_pushcfunction(L, format_growing);
  lua_pushlightuserdata(L, &b);
  CHECK_EQ_INT(
      luaL_dostring(L, "local t = {} "
                       "local m = {__tostring = function() "
                       "  for k in pairs(t) do t[k] = nil end "
                       "  for i = 1, 100 do t['n' .. i] = i end return 'm' end}"
                       " for i = 1, 10 do t['k' .. i] = setmetatable({}, m) end"
                       " return t"),
      0);
  int rc = lua_pcall(L, 2, 0, 0);
  CHECK_EQ_INT(rc, LUA_ERRRUN);
  if (rc != LUA_OK) lua_pop(L, 1);
  cs_buf_free(&b);
  CHECK_EQ_INT(cs_allocated_bytes(), before);
  CHECK_EQ_INT(lua_gettop(L), 0);
}

/* Failing each allocation in turn gives CS_ENOMEM, no leak and the stack as
 * it was, until the rendering needs no more. */
static void test_out_of_memory(void) {
  CHECK_EQ_INT(luaL_dostring(L, "local t = {} for i = 1, 50 do "
                                "t['k' .. i] = {i, i / 3} end "
                                "return {t, 'tail'}"),
               0);
  size_t before = cs_allocated_bytes();
  int rc, failures = 0;
  for (long nth = 1; nth < 1000; nth++) {
    cs_buf b = {0};
    cs_fail_nth_alloc(nth);
    rc = cs_format_value(L, -1, &b);
    cs_fail_nth_alloc(0);
    CHECK_EQ_INT(lua_gettop(L), 1);
    if (rc == CS_ENOMEM) {
      failures++;
      CHECK_EQ_INT(b.len, 0);
    }
    cs_buf_free(&b);
    CHECK_EQ_INT(cs_allocated_bytes(), before);
    if (rc != CS_ENOMEM) break;
  }
  CHECK_EQ_INT(rc, 0);
  CHECK(failures >= 3);
  lua_pop(L, 1);
}

/* ===================================================== encoded values */

/* Whether two byte ranges are equal (either may be NULL when empty). */
static int same_bytes(const char *a, size_t alen, const char *b, size_t blen) {
  return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Renders the value a chunk returns both ways: cs_format_value on the Lua
 * value, cs_format_encoded on its cs_codec_encode bytes, each after "> ".
 * want_rc is 0 (the renderings must be equal), 1 (a map: the buffer is
 * left as it was) or -1 (either, for values at the nesting limit). Every
 * proper prefix of the bytes, and the bytes followed by one more value,
 * give CS_EDECODE and leave the buffer as it was. */
static void check_encoded(const char *code, int want_rc, int line) {
  int top = lua_gettop(L);
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "%s:%d: lua error: %s\n", __FILE__, line,
            lua_tostring(L, -1));
    cs_test_failures++;
    lua_settop(L, top);
    return;
  }
  cs_buf want = {0}, bytes = {0}, got = {0};
  char err[256] = "";
  CHECK_EQ_INT(cs_format_value(L, -1, &want), 0);
  if (cs_codec_encode(L, -1, &bytes, err, sizeof(err)) != 0) {
    fprintf(stderr, "%s:%d: encode failed: %s\n", __FILE__, line, err);
    cs_test_failures++;
    goto done;
  }
  cs_buf_append(&got, "> ", 2);
  cs_slice v = {bytes.data, bytes.len};
  int rc = cs_format_encoded(v, &got);
  if (rc == 0 && want_rc != 1) {
    if (memcmp(got.data, "> ", 2) != 0 ||
        !same_bytes(got.data + 2, got.len - 2, want.data, want.len)) {
      fprintf(stderr, "%s:%d: %s renders encoded as \"%.*s\", want \"%.*s\"\n",
              __FILE__, line, code, (int)(got.len - 2), got.data + 2,
              (int)want.len, want.data);
      cs_test_failures++;
    }
  } else if (rc == 1 && want_rc != 0) {
    CHECK(got.len == 2 && memcmp(got.data, "> ", 2) == 0);
  } else {
    fprintf(stderr, "%s:%d: cs_format_encoded of %s returned %d, want %d\n",
            __FILE__, line, code, rc, want_rc);
    cs_test_failures++;
  }
  /* Truncated: a decode error, nothing written. A long value is cut at a
   * few places only. */
  int bad = 0;
  for (size_t cut = 0; cut < bytes.len; cut++) {
    if (bytes.len > 4096 && cut > 64 && cut < bytes.len - 64 &&
        cut != bytes.len / 2)
      continue;
    cs_slice c = {bytes.data, cut};
    got.len = 2;
    if (cs_format_encoded(c, &got) != CS_EDECODE || got.len != 2) bad++;
  }
  /* Followed by one more value: not one value (a map may answer 1 first). */
  cs_buf_append(&bytes, "\xc0", 1);
  v.data = bytes.data, v.len = bytes.len;
  got.len = 2;
  rc = cs_format_encoded(v, &got);
  if ((rc != CS_EDECODE && (rc != 1 || want_rc == 0)) || got.len != 2) bad++;
  if (bad) {
    fprintf(stderr, "%s:%d: %s: %d truncated or extended encoding(s) not"
            " rejected cleanly\n", __FILE__, line, code, bad);
    cs_test_failures++;
  }
done:
  cs_buf_free(&want);
  cs_buf_free(&bytes);
  cs_buf_free(&got);
  lua_settop(L, top);
}

#define ENCODED(code) check_encoded(code, 0, __LINE__)
#define ENCODED_MAP(code) check_encoded(code, 1, __LINE__)

/* The rendering of the encoding of code is want (and cs_format_value's). */
static void check_encoded_is(const char *code, const char *want, int line) {
  check_value(code, want, line);
  check_encoded(code, 0, line);
}

#define ENCODED_IS(code, want) check_encoded_is(code, want, __LINE__)

static void test_encoded(void) {
  /* Scalars. */
  ENCODED("return nil");
  ENCODED("return true");
  ENCODED("return false");
  static const char *ints[] = {
      "0", "1", "-1", "127", "128", "-32", "-33", "255", "256", "-128",
      "-129", "65535", "65536", "-32768", "-32769", "2147483647",
      "-2147483648", "4294967295", "4294967296", "math.maxinteger",
      "math.mininteger", "2^53 // 1 + 1"};
  static const char *floats[] = {
      "0.1", "1e7", "9999999.0", "1e-3", "1e-4", "-0.0", "0.0", "0/0",
      "-(0/0)", "1/0", "-1/0", "5.0", "11 / 3", "0.1 + 0.2", "2^63", "-2^63",
      "1e300", "4.9e-324", "2.2250738585072014e-308",
      "1.7976931348623157e308", "1e23", "2^60", "123.456", "-1.5e-7",
      "math.maxinteger + 0.0"};
  char code[160];
  for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
    snprintf(code, sizeof(code), "return %s", ints[i]);
    ENCODED(code);
  }
  for (size_t i = 0; i < sizeof(floats) / sizeof(floats[0]); i++) {
    snprintf(code, sizeof(code), "return %s", floats[i]);
    ENCODED(code);
    snprintf(code, sizeof(code), "return {%s, -(%s)}", floats[i], floats[i]);
    ENCODED(code);
  }
  ENCODED_IS("return {1e7, 0.1, -0.0, 0/0, 1/0, -1/0}",
             "(1.0E7,0.1,-0.0,NaN,Infinity,-Infinity)");
  ENCODED_IS("return {math.maxinteger, math.mininteger, 5.0, 5}",
             "(9223372036854775807,-9223372036854775808,5.0,5)");

  /* Strings: as they are, odd bytes included, at every length form. */
  ENCODED("return ''");
  ENCODED("return 'flink'");
  ENCODED("return 'a\\0b\\0'");
  ENCODED("return '\\255\\254 not utf-8 \\192'");
  ENCODED("return '(1,2)'");
  ENCODED("return '{a=1}'");
  ENCODED("return 'null'");
  ENCODED("return '\\t\\r\\n,\\\\'");
  ENCODED("local s = {} for i = 0, 255 do s[#s + 1] = string.char(i) end"
          " return table.concat(s)");
  static const int lens[] = {31, 32, 255, 256, 65535, 65536};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    snprintf(code, sizeof(code),
             "return {string.rep('ab\\0', %d):sub(1, %d), 'x'}", lens[i],
             lens[i]);
    ENCODED(code);
  }
  ENCODED_IS("return {'a\\0b', 'c'}", "(a\0b,c)");

  /* Tuples. */
  ENCODED_IS("return {1, 5.0}", "(1,5.0)");
  ENCODED_IS("return {'flink', 3}", "(flink,3)");
  ENCODED_IS("return {1, {2, 3}}", "(1,(2,3))");
  ENCODED_IS("return {}", "()");
  ENCODED_IS("return {{}}", "(())");
  ENCODED_IS("return {{}, {{}}, {}}", "((),(()),())");
  ENCODED_IS("return {'a', nil}", "(a)");
  ENCODED_IS("return {[2] = 'b', [1] = 'a'}", "(a,b)");
  ENCODED_IS("return {true, false, 'null', ''}", "(true,false,null,)");
  ENCODED_IS("return {'', ''}", "(,)");
  ENCODED_IS("return {'(', ')', ','}", "((,),,)");
  ENCODED("return {1.5, -0.0, 0/0, 1/0, math.mininteger, 'x', {true}}");
  ENCODED("local t = {} for i = 1, 15 do t[i] = i end return t");
  ENCODED("local t = {} for i = 1, 16 do t[i] = {i, i / 7} end return t");
  ENCODED("local t = {} for i = 1, 17 do t[i] = tostring(i) end return t");
  ENCODED("local t = {} for i = 1, 70000 do t[i] = i end return t");
  ENCODED("local s = {1, 'x'} return {s, s, {s}}");
  /* Deep nesting, around the scalar and beside it. */
  static const int depths[] = {1, 2, 10, 49, 50, 51, 100, 150, 197};
  for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
    snprintf(code, sizeof(code),
             "local t = 'x' for i = 1, %d do t = {t} end return t", depths[i]);
    ENCODED(code);
    snprintf(code, sizeof(code),
             "local t = {} for i = 1, %d do t = {i, t, i / 2} end return t",
             depths[i]);
    ENCODED(code);
  }
  ENCODED_IS("local t = 7 for i = 1, 5 do t = {t} end return t",
             "(((((7)))))");
  /* At the encoder's and the formatter's nesting limit: the same rendering,
   * or the Lua path. */
  for (int d = 198; d <= 200; d++) {
    snprintf(code, sizeof(code),
             "local t = {} for i = 2, %d do t = {t} end return t", d);
    check_encoded(code, -1, __LINE__);
  }

  /* Values holding a map: 1, the buffer as it was, wherever the map is. */
  ENCODED_MAP("return {a = 1}");
  ENCODED_MAP("return {b = 2, a = 1}");
  ENCODED_MAP("return {1, 2, x = 3}");
  ENCODED_MAP("return {[1] = 'a', [3] = 'c'}");
  ENCODED_MAP("return {[0] = 'z'}");
  ENCODED_MAP("return {1, {k = 1}}");
  ENCODED_MAP("return {'x', 'y', {{{a = 1}}}}");
  ENCODED_MAP("return {{1, 2}, {3, 4}, {5, {6, {z = 0}}}}");
  ENCODED_MAP("return {{1, 2}, {3, 4}, {5, {6, {z = 0}}}, 'after'}");
  ENCODED_MAP("return {[{1, 2}] = 'tuple key'}");
  ENCODED_MAP("local t = {a = 1} for i = 1, 50 do t = {i, t} end return t");
  ENCODED_MAP("local t = {} for i = 1, 70000 do t[i] = i end t[70000] = {n = 1}"
              " return t");

  /* Bytes another writer may produce render as their decoded values do. */
  static const char *foreign[] = {
      "ca3fc00000",          /* float32 1.5 */
      "ca7fc00000",          /* float32 NaN */
      "c403616263",          /* bin "abc" */
      "c5000161",            /* bin16 "a" */
      "d005",                /* int8 5 */
      "d0ff",                /* int8 -1 */
      "cd0001",              /* uint16 1 */
      "cf0000000000000005",  /* uint64 5 */
      "d90161",              /* str8 "a" */
      "da0000",              /* str16 "" */
      "dc00020102",          /* array16 (1,2) */
      "dd0000000191a0",      /* array32 (("")) */
      "93ca3fc00000c40161d3ffffffffffffffff"};
  for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
    char raw[64];
    size_t n = strlen(foreign[i]) / 2;
    for (size_t j = 0; j < n; j++) {
      unsigned x;
      sscanf(foreign[i] + 2 * j, "%2x", &x);
      raw[j] = (char)x;
    }
    cs_buf want = {0}, got = {0};
    CHECK_EQ_INT(cs_codec_decode(L, raw, n, NULL), 0);
    CHECK_EQ_INT(cs_format_value(L, -1, &want), 0);
    lua_pop(L, 1);
    cs_slice v = {raw, n};
    int rc = cs_format_encoded(v, &got);
    if (rc != 0 || !same_bytes(got.data, got.len, want.data, want.len)) {
      fprintf(stderr, "%s: encoded rendering \"%.*s\" (%d), decoded \"%.*s\"\n",
              foreign[i], (int)got.len, got.data, rc, (int)want.len,
              want.data);
      cs_test_failures++;
    }
    cs_buf_free(&want);
    cs_buf_free(&got);
  }
  /* Not values: CS_EDECODE, nothing written. */
  static const char *bad[] = {"", "c1", "c70101", "92", "dc0003", "a3616",
                              "9281c001"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char raw[16];
    size_t n = strlen(bad[i]) / 2;
    for (size_t j = 0; j < n; j++) {
      unsigned x;
      sscanf(bad[i] + 2 * j, "%2x", &x);
      raw[j] = (char)x;
    }
    cs_buf got = {0};
    cs_buf_append(&got, "> ", 2);
    cs_slice v = {raw, n};
    CHECK_EQ_INT(cs_format_encoded(v, &got), CS_EDECODE);
    CHECK_EQ_INT(got.len, 2);
    cs_buf_free(&got);
  }
  /* A map with a key decode refuses (nil) is a map all the same: the Lua
   * path decodes it and reports the corruption. */
  cs_buf got = {0};
  cs_slice v = {"\x81\xc0\x01", 3};
  CHECK_EQ_INT(cs_format_encoded(v, &got), 1);
  CHECK_EQ_INT(got.len, 0);
  cs_buf_free(&got);
}

/* Failing each allocation in turn: CS_ENOMEM, the buffer as it was, no
 * leak, until the rendering needs no more. */
static void test_encoded_out_of_memory(void) {
  CHECK_EQ_INT(luaL_dostring(L, "local t = {} for i = 1, 200 do "
                                "t[i] = {i, i / 3, string.rep('s', i)} end "
                                "return t"),
               0);
  cs_buf bytes = {0};
  CHECK_EQ_INT(cs_codec_encode(L, -1, &bytes, NULL, 0), 0);
  lua_pop(L, 1);
  size_t before = cs_allocated_bytes();
  int rc, failures = 0;
  for (long nth = 1; nth < 1000; nth++) {
    cs_buf b = {0};
    cs_buf_append(&b, "> ", 2);
    cs_slice v = {bytes.data, bytes.len};
    cs_fail_nth_alloc(nth);
    rc = cs_format_encoded(v, &b);
    cs_fail_nth_alloc(0);
    if (rc == CS_ENOMEM) {
      failures++;
      CHECK_EQ_INT(b.len, 2);
    }
    cs_buf_free(&b);
    CHECK_EQ_INT(cs_allocated_bytes(), before);
    if (rc != CS_ENOMEM) break;
  }
  CHECK_EQ_INT(rc, 0);
  CHECK(failures >= 3);
  cs_buf_free(&bytes);
}

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  test_doubles();
  test_doubles_round_trip();
  test_values();
  test_lua_error_inside();
  test_out_of_memory();
  test_encoded();
  test_encoded_out_of_memory();
  CHECK_EQ_INT(lua_gettop(L), 0);
  lua_close(L);
  TEST_MAIN_END();
}
