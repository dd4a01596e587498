/*
 * test_testing.c - the operator test harness (host/testing) when the
 * engine runs out of memory: each of its allocations fails in turn while a
 * harness is created, opened, fed records, watermarks and processing time,
 * read, snapshotted and restored. Every step either works or raises a Lua
 * error, and once the harnesses are collected the engine holds no more
 * memory than before.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "cs_test.h"
#include "host/core/cs_core.h"
#include "state/cs_common.h"

static const char *const SCRIPT =
    "local cstream = require('cstream')\n"
    "local testing = require('cstream.testing')\n"
    "local Op = {\n"
    "  open = function(self, ctx)\n"
    "    self.count = ctx:get_state(cstream.value_state_descriptor('count'))\n"
    "    self.seen = ctx:get_list_state(cstream.list_state_descriptor('seen'))\n"
    "    self.last = ctx:get_map_state(cstream.map_state_descriptor('last'))\n"
    "  end,\n"
    "  process_element = function(self, v, ctx, out)\n"
    "    self.count:update((self.count:value() or 0) + 1)\n"
    "    self.seen:add(v)\n"
    "    self.last:put('v', v)\n"
    "    ctx:timer_service():register_event_time_timer(ctx:timestamp() + 10)\n"
    "    ctx:timer_service():register_processing_time_timer(100)\n"
    "    ctx:output('side', v)\n"
    "    out:collect(v)\n"
    "  end,\n"
    "  on_timer = function(self, ts, ctx, out) out:collect(ts) end,\n"
    "}\n"
    "return function()\n"
    "  local h = testing.keyed(Op, { key_by = function(v) return v % 3 end })\n"
    "  h:open()\n"
    "  for i = 1, 8 do h:process_element(i, i * 10) end\n"
    "  h:process_watermark(45)\n"
    "  h:set_processing_time(100)\n"
    "  assert(h:get_state('count') == 3)\n"
    "  assert(#h:get_state('seen') == 3)\n"
    "  local snap = h:snapshot()\n"
    "  h:close()\n"
    "  h:destroy()\n"
    "  local r = testing.keyed(Op, { key_by = function(v) return v % 3 end })\n"
    "  r:restore(snap)\n"
    "  r:open()\n"
    "  r:set_current_key(2)\n"
    "  assert(r:get_state('count') == 3)\n"
    "  r:process_watermark(1000)\n"
    "  assert(#r:extract_output() == 5, #r:extract_output())\n"
    "  return 'done'\n"
    "end\n";

/* A plain Lua state (its own allocations do not fail) with cstream.core
 * preloaded and the source tree's Lua modules on package.path; pushes the
 * script's run function. */
static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, CS_SOURCE_LUA_DIR "/?.lua");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, cs_core_open);
  lua_setfield(L, -2, "cstream.core");
  lua_pop(L, 2);
  if (luaL_loadstring(L, SCRIPT) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return NULL;
  }
  return L;
}

static void test_runs(void) {
  lua_State *L = new_state();
  CHECK(L != NULL);
  if (L == NULL) return;
  lua_pushvalue(L, -1);
  int rc = lua_pcall(L, 0, 1, 0);
  if (rc) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  CHECK(rc == LUA_OK);
  lua_close(L);
}

/* Allocation n fails, for every n up to past the run's last allocation
 * (the run then succeeds every time). */
static void test_out_of_memory(void) {
  lua_State *L = new_state();
  CHECK(L != NULL);
  if (L == NULL) return;
  lua_gc(L, LUA_GCCOLLECT);
  int failed = 0, ok_in_a_row = 0;
  for (long n = 1; n < 5000 && ok_in_a_row < 50; n++) {
    size_t base = cs_allocated_bytes();
    lua_pushvalue(L, -1);
    cs_fail_nth_alloc(n);
    int rc = lua_pcall(L, 0, 1, 0);
    cs_fail_nth_alloc(0);
    if (rc == LUA_OK) {
      ok_in_a_row++;
    } else {
      ok_in_a_row = 0;
      failed++;
      const char *msg = lua_tostring(L, -1);
      CHECK(msg != NULL);
      /* the failure is the allocation's, never a wrong result */
      if (msg && !strstr(msg, "out of memory")) {
        fprintf(stderr, "allocation %ld: %s\n", n, msg);
        CHECK(strstr(msg, "out of memory") != NULL);
      }
    }
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT); /* the harnesses left behind by the error */
    lua_gc(L, LUA_GCCOLLECT);
    if (cs_allocated_bytes() != base)
      fprintf(stderr, "allocation %ld: %zu bytes left\n", n, cs_allocated_bytes() - base);
    CHECK_EQ_INT(cs_allocated_bytes(), base);
  }
  CHECK_EQ_INT(ok_in_a_row, 50);
  CHECK(failed > 10);
  if (getenv("CS_TEST_VERBOSE")) fprintf(stderr, "%d allocations failed in turn\n", failed);
  lua_close(L);
}

int main(void) {
  test_runs();
  test_out_of_memory();
  TEST_MAIN_END();
}
