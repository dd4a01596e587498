/*
 * cs_statetool.c - `cstream-lua state dump <checkpoint dir | job dir>
 * [--operator ID] [--state NAME]`: prints the keyed and operator state and
 * the source positions of a checkpoint or savepoint as JSON lines. Given a
 * job directory (<dir>/<job>), it dumps the newest complete chk-N after a
 * line {"checkpoint":N}, while the job runs too (no lock is taken).
 *
 *   {"operator":"flat_map_2","subtask":0,"state":"average","kind":"value",
 *    "key_group":17,"key":1,"value":[2,8]}
 *   {"operator":"sink_custom_3","subtask":0,"state":"buffered-elements",
 *    "kind":"operator_list","value":[["Spark",3]]}
 *   {"operator":"source_file_1","subtask":0,"source_position":"file a120:4096"}
 *
 * Map state prints one line per user key ("user_key"); list state prints
 * the whole list as an array. A state with a time to live adds the time of
 * each entry's last access ("last_access", milliseconds; for a list, one
 * per element); expired entries that the checkpoint holds are printed too
 * (a RocksDB checkpoint keeps those no compaction has dropped yet; restore
 * leaves them out). Every backend: a heap snapshot file is read
 * as it is; a RocksDB part (full, or incremental with its SST files under
 * <job>/shared/) is checked against its manifest and opened read-only from
 * hard links (or copies) in a scratch directory under $TMPDIR or /tmp. The
 * checkpoint is never written to.
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdarg.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/cs_backend.h"
#include "state/cs_codec.h"
#include "state/cs_rocksdb.h"
#include "state/cs_ttl.h"
#include "host/checkpoint/cs_checkpoint.h"
#include "host/cli/cs_cli.h"
#include "host/lua/cs_lua.h"

/* The messages of the dump under way, printed on stderr when it ends: a
 * dump of a job directory whose checkpoint retention removed while it was
 * read drops them and reads the newest one again. */
static cs_buf msgs;

static void say(const char *fmt, ...) {
  char line[6000];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  cs_buf_printf(&msgs, "cstream-lua: %s\n", line);
}

static void json_string(cs_buf *b, const char *s, size_t n) {
  cs_buf_append(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      cs_buf_printf(b, "\\%c", c);
    } else if (c < 0x20) {
      cs_buf_printf(b, "\\u%04x", c);
    } else {
      cs_buf_append(b, s + i, 1);
    }
  }
  cs_buf_append(b, "\"", 1);
}

/* Renders the Lua value at idx as JSON (tables with keys 1..n as arrays,
 * other tables as objects with their keys rendered as strings). */
static void json_value(lua_State *L, int idx, cs_buf *b, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    cs_buf_append(b, "null", 4);
    break;
  case LUA_TBOOLEAN:
    cs_buf_printf(b, "%s", lua_toboolean(L, idx) ? "true" : "false");
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      cs_buf_printf(b, "%lld", (long long)lua_tointeger(L, idx));
    } else {
      double d = lua_tonumber(L, idx);
      if (isfinite(d)) {
        cs_buf_printf(b, "%.17g", d);
      } else {
        cs_buf tmp = {0};
        cs_format_double(d, &tmp);
        json_string(b, tmp.data ? tmp.data : "", tmp.len);
        cs_buf_free(&tmp);
      }
    }
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    json_string(b, s, n);
    break;
  }
  case LUA_TTABLE: {
    if (depth > CS_CODEC_MAX_DEPTH || !lua_checkstack(L, 4)) {
      cs_buf_append(b, "null", 4);
      break;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      count++;
      lua_pop(L, 1);
    }
    if (count == n) {
      cs_buf_append(b, "[", 1);
      for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) cs_buf_append(b, ",", 1);
        lua_rawgeti(L, idx, i);
        json_value(L, -1, b, depth + 1);
        lua_pop(L, 1);
      }
      cs_buf_append(b, "]", 1);
    } else {
      cs_buf_append(b, "{", 1);
      int first = 1;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        if (!first) cs_buf_append(b, ",", 1);
        first = 0;
        cs_buf key = {0};
        cs_format_value(L, -2, &key);
        json_string(b, key.data ? key.data : "", key.len);
        cs_buf_free(&key);
        cs_buf_append(b, ":", 1);
        json_value(L, -1, b, depth + 1);
        lua_pop(L, 1);
      }
      cs_buf_append(b, "}", 1);
    }
    break;
  }
  default:
    cs_buf_append(b, "null", 4);
  }
}

/* Decodes one encoded value (or, for lists, all items as an array) and
 * appends it as JSON. */
static void json_encoded(lua_State *L, cs_slice v, int list, cs_buf *b) {
  int top = lua_gettop(L);
  if (list) {
    lua_newtable(L);
    size_t off = 0;
    lua_Integer i = 1;
    while (off < v.len) {
      size_t used;
      if (cs_codec_decode(L, v.data + off, v.len - off, &used)) break;
      lua_rawseti(L, -2, i++);
      off += used;
    }
    json_value(L, -1, b, 0);
  } else if (v.len == 0) {
    cs_buf_append(b, "null", 4);
  } else if (cs_codec_decode(L, v.data, v.len, NULL) == 0) {
    json_value(L, -1, b, 0);
  } else {
    cs_buf_append(b, "\"<corrupt>\"", 11);
  }
  lua_settop(L, top);
}

/* Appends ,"value":...,"last_access":... for a value of a TTL state: the
 * value (for a list, its items) without the timestamps, and those. */
static void json_ttl_value(lua_State *L, cs_slice v, int list, cs_buf *b) {
  cs_buf items = {0}, times = {0};
  cs_slice user = v;
  if (!list && v.len >= CS_TTL_TS_LEN) {
    cs_buf_printf(&times, "%lld", (long long)cs_ttl_get_ts(v.data));
    user.data += CS_TTL_TS_LEN;
    user.len -= CS_TTL_TS_LEN;
  }
  for (size_t off = 0; list && off < v.len;) {
    long n = cs_ttl_list_elem_len(v.data + off, v.len - off);
    if (n < 0) break;
    cs_buf_printf(&times, "%s%lld", off ? "," : "[", (long long)cs_ttl_get_ts(v.data + off));
    cs_buf_append(&items, v.data + off + CS_TTL_TS_LEN, (size_t)n - CS_TTL_TS_LEN);
    off += (size_t)n;
  }
  if (list) {
    user.data = items.data;
    user.len = items.len;
    cs_buf_append(&times, times.len ? "]" : "[]", times.len ? 1 : 2);
  }
  cs_buf_append(b, ",\"value\":", 9);
  json_encoded(L, user, list, b);
  cs_buf_append(b, ",\"last_access\":", 15);
  if (times.len) cs_buf_append(b, times.data, times.len);
  else cs_buf_append(b, "null", 4);
  cs_buf_free(&items);
  cs_buf_free(&times);
}

/* Opens the RocksDB checkpoint of a part (the directory path) read-only:
 * its files are checked against its manifest, then hard-linked (or copied)
 * into a fresh scratch directory under $TMPDIR or /tmp, which the backend
 * removes when destroyed; the checkpoint itself is never written to.
 * Returns the backend or NULL after a message (say). */
static cs_backend *open_rocksdb_part(const cs_ckpt *ck, const char *path) {
  char shared[4500], err[1500];
  cs_ckpt_shared_dir(ck, shared, sizeof(shared));
  int rc = cs_rocksdb_verify(path, shared, err, sizeof(err));
  if (rc) {
    say("the state file '%s' cannot be read: %s", path, err);
    return NULL;
  }
  const char *tmp = getenv("TMPDIR");
  char scratch[4500];
  snprintf(scratch, sizeof(scratch), "%s/cstream-dump-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (mkdtemp(scratch) == NULL) {
    say("cannot create a scratch directory '%s': %s", scratch, strerror(errno));
    return NULL;
  }
  cs_backend *be = NULL;
  rc = cs_rocksdb_open_readonly(path, shared, scratch, &be, err, sizeof(err));
  if (rc) {
    rmdir(scratch); /* when the open failed before using it */
    say("the state file '%s' cannot be read: %s", path, err);
    return NULL;
  }
  return be;
}

/* Reads the heap snapshot file at path into a heap backend. Returns it or
 * NULL after a message (say). */
static cs_backend *open_heap_part(const char *path) {
  char err[600];
  cs_buf data = {0};
  if (cs_read_file(path, &data, err, sizeof(err))) {
    cs_buf_free(&data);
    say("%s", err);
    return NULL;
  }
  cs_backend *be = cs_heap_backend_create();
  int rc = be ? cs_backend_restore_all(be, data.data, data.len, 0, 65535) : CS_ENOMEM;
  cs_buf_free(&data);
  if (rc) {
    say("the state file '%s' cannot be read: %s", path,
        rc == CS_EDECODE ? "it is corrupt or truncated" : cs_strerror(rc));
    if (be) be->ops->destroy(be);
    return NULL;
  }
  return be;
}

/* Appends the state of one part (a heap snapshot file or a RocksDB
 * checkpoint directory) to out as JSON lines. Returns 0, or 1 after a
 * message. */
static int dump_part(lua_State *L, const cs_ckpt *ck, const cs_ckpt_part *p,
                     const char *want_state, cs_buf *out) {
  char path[4500];
  snprintf(path, sizeof(path), "%s/%s", ck->dir, p->file);
  size_t plen = strlen(path);
  int rocks = plen > 8 && strcmp(path + plen - 8, ".rocksdb") == 0;
  cs_backend *be = rocks ? open_rocksdb_part(ck, path) : open_heap_part(path);
  if (be == NULL) return 1;
  cs_backend_iter *it = NULL;
  int rc;
  rc = be->ops->scan_iter(be, 0, 65535, &it);
  cs_backend_entry e;
  cs_buf line = {0};
  int more = 0;
  while (rc == 0 && (more = be->ops->iter_next(it, &e)) == 1) {
    const char *name;
    cs_state_kind kind;
    be->ops->state_info(be, e.state, &name, &kind);
    /* "<op id>/<name>", "<op id>/#op/<name>", "<op id>/#uop/<name>" */
    size_t idlen = strlen(p->op_id);
    const char *short_name = strncmp(name, p->op_id, idlen) == 0 && name[idlen] == '/'
                                 ? name + idlen + 1 : name;
    int opstate = e.kg == CS_OPSTATE_KEY_GROUP;
    const char *kind_name = opstate ? (strncmp(short_name, "#uop/", 5) == 0
                                           ? "union_list" : "operator_list")
                            : kind == CS_STATE_LIST ? "list"
                            : kind == CS_STATE_MAP  ? "map" : "value";
    if (strncmp(short_name, "#op/", 4) == 0) short_name += 4;
    else if (strncmp(short_name, "#uop/", 5) == 0) short_name += 5;
    if (want_state && strcmp(want_state, short_name) != 0) continue;
    cs_buf_reset(&line);
    cs_buf_append(&line, "{\"operator\":", 12);
    json_string(&line, p->op_id, strlen(p->op_id));
    cs_buf_printf(&line, ",\"subtask\":%d,\"state\":", p->subtask);
    json_string(&line, short_name, strlen(short_name));
    cs_buf_printf(&line, ",\"kind\":\"%s\"", kind_name);
    if (!opstate) {
      cs_buf_printf(&line, ",\"key_group\":%d,\"key\":", e.kg);
      json_encoded(L, e.key, 0, &line);
    }
    if (kind == CS_STATE_MAP) {
      cs_buf_append(&line, ",\"user_key\":", 12);
      json_encoded(L, e.ukey, 0, &line);
    }
    if (be->ops->state_ttl(be, e.state, NULL) == 1) {
      json_ttl_value(L, e.val, kind == CS_STATE_LIST, &line);
    } else {
      cs_buf_append(&line, ",\"value\":", 9);
      json_encoded(L, e.val, kind == CS_STATE_LIST, &line);
    }
    cs_buf_append(&line, "}\n", 2);
    cs_buf_append(out, line.data, line.len);
  }
  cs_buf_free(&line);
  be->ops->iter_destroy(it);
  be->ops->destroy(be);
  if (rc == 0 && more < 0) rc = more;
  if (rc) {
    say("the state file '%s' cannot be read: %s", path, cs_strerror(rc));
    return 1;
  }
  return 0;
}

/* Appends the dump of the checkpoint in dir to out. Returns 0, 1 after a
 * message, or 2 when dir has no _metadata (not complete, or removed). */
static int dump_one(const char *dir, const char *want_op, const char *want_state,
                    cs_buf *out) {
  char err[1024];
  cs_ckpt *ck = NULL;
  int rc = cs_ckpt_read(dir, &ck, err, sizeof(err));
  if (rc) {
    cs_ckpt_destroy(ck);
    say("%s", err);
    return rc == CS_ENOTFOUND && ck == NULL ? 2 : 1;
  }
  lua_State *L = luaL_newstate();
  int status = L ? 0 : 1;
  for (int i = 0; L && i < ck->nparts; i++) {
    const cs_ckpt_part *p = &ck->parts[i];
    if (want_op && strcmp(want_op, p->op_id) != 0) continue;
    if (p->file && dump_part(L, ck, p, want_state, out)) status = 1;
    if (p->source && !want_state) {
      cs_buf_append(out, "{\"operator\":", 12);
      json_string(out, p->op_id, strlen(p->op_id));
      cs_buf_printf(out, ",\"subtask\":%d,\"source_position\":", p->subtask);
      json_string(out, p->source, strlen(p->source));
      cs_buf_append(out, "}\n", 2);
    }
  }
  if (L) lua_close(L);
  cs_ckpt_destroy(ck);
  return status;
}

static int has_metadata(const char *dir) {
  char path[4600];
  struct stat st;
  snprintf(path, sizeof(path), "%s/_metadata", dir);
  return stat(path, &st) == 0;
}

/* A job directory (<checkpoint dir>/<job>): the newest complete chk-N is
 * dumped, after a line {"checkpoint":N}. The job may be running: a chk-N
 * without _metadata is being written (or removed) and is passed over, and
 * when retention removes the one being read (its _metadata goes first),
 * the dump starts again from the newest. */
static int dump_job_dir(const char *jobdir, const char *want_op, const char *want_state,
                        cs_buf *out) {
  for (int attempt = 0; attempt < 100; attempt++) {
    long long *ids;
    int n = cs_ckpt_list_ids(jobdir, &ids);
    int status = 2;
    char dir[4500];
    long long id = -1;
    for (int i = 0; i < n && status == 2; i++) {
      id = ids[i];
      snprintf(dir, sizeof(dir), "%s/chk-%lld", jobdir, id);
      cs_buf_reset(&msgs);
      cs_buf_reset(out);
      cs_buf_printf(out, "{\"checkpoint\":%lld}\n", id);
      status = dump_one(dir, want_op, want_state, out);
    }
    cs_free(ids);
    if (n < 0) {
      say("out of memory listing '%s'", jobdir);
      return 1;
    }
    if ((status == 2 || n == 0) && attempt < 3) {
      /* each one listed was incomplete when read: the newest may have
       * completed and the older ones gone meanwhile */
      usleep(20 * 1000);
      continue;
    }
    if (status == 2 || n == 0) {
      cs_buf_reset(&msgs);
      cs_buf_reset(out);
      say("state dump: '%s' holds no complete checkpoint (chk-N with a _metadata)", jobdir);
      return 1;
    }
    if (status == 0 || has_metadata(dir)) return status;
    /* removed by retention while it was read: the newest again */
  }
  say("state dump: the checkpoints of '%s' were removed faster than they could be read",
      jobdir);
  return 1;
}

static int dump(const char *dir, const char *want_op, const char *want_state) {
  cs_buf out = {0};
  long long *ids = NULL;
  int status;
  if (!has_metadata(dir) && cs_ckpt_list_ids(dir, &ids) > 0) {
    status = dump_job_dir(dir, want_op, want_state, &out);
  } else {
    status = dump_one(dir, want_op, want_state, &out);
    if (status == 1 && !has_metadata(dir))
      say("the checkpoint '%s' was removed while it was read (a running job keeps "
          "state.checkpoints.num-retained of them); give the job directory to dump its "
          "newest complete checkpoint", dir);
    if (status == 2) status = 1;
  }
  cs_free(ids);
  if (out.len) fwrite(out.data, 1, out.len, stdout);
  if (msgs.len) fwrite(msgs.data, 1, msgs.len, stderr);
  cs_buf_free(&out);
  cs_buf_free(&msgs);
  return status;
}

int cs_state_tool_main(int argc, char **argv) {
  const char *dir = NULL, *op = NULL, *state = NULL;
  if (argc < 2 || strcmp(argv[1], "dump") != 0) {
    fprintf(stderr, "usage: cstream-lua state dump <checkpoint dir | job dir> "
                    "[--operator ID] [--state NAME]\n");
    return 2;
  }
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--operator") == 0 && i + 1 < argc) {
      op = argv[++i];
    } else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) {
      state = argv[++i];
    } else if (argv[i][0] != '-' && dir == NULL) {
      dir = argv[i];
    } else {
      fprintf(stderr, "cstream-lua: state dump: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (dir == NULL) {
    fprintf(stderr, "cstream-lua: state dump: no checkpoint directory given\n");
    return 2;
  }
  return dump(dir, op, state);
}
