/*
 * test_format.c - pins the contract of host/cs_format.h: doubles as Java's
 * Double.toString prints them (JDK 19+, shortest digits) and Lua values as
 * Flink prints the corresponding Java values.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cs_format.h"
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

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  test_doubles();
  test_doubles_round_trip();
  test_values();
  test_lua_error_inside();
  test_out_of_memory();
  CHECK_EQ_INT(lua_gettop(L), 0);
  lua_close(L);
  TEST_MAIN_END();
}
