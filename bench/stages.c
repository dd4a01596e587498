/*
 * Per-record cost of each stage a word-count record goes through, measured
 * in isolation with the engine's own functions on the words of an input
 * file (bench/gen_words.lua), so the profile of a whole run can be read
 * against it. Prints a markdown table of nanoseconds per record, median of
 * R repetitions, next to a plain C loop and a plain Lua loop per word.
 *
 *   bench_stages INPUT [REPS]
 *
 * Stages, in the order a record meets them:
 *   user code   the job's flat_map body run by Lua: gmatch over the line and
 *               a {word, 1} table per word (time per word)
 *   Lua call    calling into a Lua function through cs_lua_pcall, per line
 *               (the engine's one door into user code), divided per word
 *   encode      {word, 1} to MessagePack (cs_codec_encode)
 *   key         the key's bytes from the encoded record and its key group
 *               (cs_codec_array_elem, cs_key_group: XXH3)
 *   channel     appending to a batch, pushing the batch through an SPSC
 *               channel to another thread and reading the record back
 *   state       rolling sum in C: the field read from the encoded record,
 *               heap backend get + put of the running count
 *   format      rendering the encoded result as Flink prints it "(w,3)"
 *   decode      MessagePack to a Lua table (only for records that reach a
 *               Lua operator: not on word count's path, shown for scale)
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <uv.h>

#include "state/cs_backend.h"
#include "host/runtime/cs_runtime.h"
#include "state/cs_codec.h"
#include "host/lua/cs_lua.h"

#define MAX_PAR 128

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The input: its lines, and every word with its encoded record. */
typedef struct corpus {
  char **lines;
  size_t nlines;
  cs_slice *words;
  size_t nwords;
  cs_buf recs;     /* encoded {word, 1} records, back to back */
  size_t *rec_off; /* [nwords + 1] */
} corpus;

static void die(const char *what) {
  fprintf(stderr, "bench_stages: %s\n", what);
  exit(1);
}

static void load(corpus *c, const char *path, size_t max_lines) {
  FILE *f = fopen(path, "r");
  if (!f) die("cannot open the input");
  char *line = NULL;
  size_t n = 0, cap = 0;
  ssize_t len;
  memset(c, 0, sizeof(*c));
  while (c->nlines < max_lines && (len = getline(&line, &n, f)) > 0) {
    if (line[len - 1] == '\n') line[--len] = '\0';
    if (c->nlines == cap) {
      cap = cap ? cap * 2 : 1024;
      c->lines = realloc(c->lines, cap * sizeof(char *));
      if (!c->lines) die("out of memory");
    }
    c->lines[c->nlines++] = strdup(line);
  }
  free(line);
  fclose(f);
  size_t wcap = 0;
  for (size_t i = 0; i < c->nlines; i++) {
    char *p = c->lines[i], *end = p + strlen(p);
    while (p < end) {
      char *q = memchr(p, ',', (size_t)(end - p));
      if (!q) q = end;
      if (q > p) {
        if (c->nwords == wcap) {
          wcap = wcap ? wcap * 2 : 4096;
          c->words = realloc(c->words, wcap * sizeof(cs_slice));
          if (!c->words) die("out of memory");
        }
        c->words[c->nwords].data = p;
        c->words[c->nwords].len = (size_t)(q - p);
        c->nwords++;
      }
      p = q + 1;
    }
  }
}

/* ------------------------------------------------------------ stages */

static lua_State *L;

/* Runs the job's flat_map body over every line in Lua; returns seconds. */
static double stage_user_code(corpus *c) {
  static const char *src =
      "local lines = ...\n"
      "local n = 0\n"
      "local t0 = os.clock()\n"
      "for i = 1, #lines do\n"
      "  for word in lines[i]:gmatch('[^,]+') do\n"
      "    local rec = { word, 1 }\n"
      "    n = n + #rec - 1\n"
      "  end\n"
      "end\n"
      "return os.clock() - t0, n\n";
  if (luaL_loadstring(L, src) != LUA_OK) die(lua_tostring(L, -1));
  lua_getfield(L, LUA_REGISTRYINDEX, "bench_lines");
  if (cs_lua_pcall(L, 1, 2) != LUA_OK) die(lua_tostring(L, -1));
  double t = lua_tonumber(L, -2);
  if ((size_t)lua_tointeger(L, -1) != c->nwords) die("user code: word count differs");
  lua_pop(L, 2);
  return t;
}

/* Calls a Lua function once per line through the engine's door. */
static double stage_lua_call(corpus *c) {
  if (luaL_dostring(L, "return function(line) return line end") != LUA_OK)
    die(lua_tostring(L, -1));
  int fn = luaL_ref(L, LUA_REGISTRYINDEX);
  double t0 = now();
  for (size_t i = 0; i < c->nlines; i++) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    lua_pushstring(L, c->lines[i]);
    if (cs_lua_pcall(L, 1, 0) != LUA_OK) die(lua_tostring(L, -1));
  }
  double t = now() - t0;
  luaL_unref(L, LUA_REGISTRYINDEX, fn);
  return t;
}

/* Encodes {word, 1} for every word. */
static double stage_encode(corpus *c) {
  char err[256];
  cs_buf_reset(&c->recs);
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    c->rec_off[i] = c->recs.len;
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, c->words[i].data, c->words[i].len);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 1);
    lua_rawseti(L, -2, 2);
    if (cs_codec_encode(L, -1, &c->recs, err, sizeof(err))) die(err);
    lua_pop(L, 1);
  }
  c->rec_off[c->nwords] = c->recs.len;
  return now() - t0;
}

/* Creating the {word, 1} tables alone, to subtract from encode. */
static double stage_tables(corpus *c) {
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, c->words[i].data, c->words[i].len);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
  }
  return now() - t0;
}

static cs_slice rec_of(corpus *c, size_t i) {
  cs_slice s = {c->recs.data + c->rec_off[i], c->rec_off[i + 1] - c->rec_off[i]};
  return s;
}

static volatile long sink_;

static double stage_key(corpus *c) {
  long acc = 0;
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    cs_slice k;
    if (!cs_codec_array_elem(rec_of(c, i), 1, &k)) die("key: no field 1");
    acc += cs_key_group(k.data, k.len, MAX_PAR);
  }
  double t = now() - t0;
  sink_ = acc;
  return t;
}

/* The consumer side of the channel stage. */
typedef struct chan_run {
  cs_channel *ch;
  size_t records;
  long bytes;
} chan_run;

static void consumer(void *arg) {
  chan_run *r = arg;
  for (;;) {
    int wake;
    cs_batch *b = cs_channel_pop(r->ch, &wake);
    if (b == NULL) { /* spin: measures the channel, not wake-ups */
      sched_yield();
      continue;
    }
    if (b->kind == CS_BATCH_END) {
      cs_batch_destroy(b);
      return;
    }
    size_t off = 0;
    int kg;
    cs_slice key, val;
    int64_t ts;
    while (cs_batch_next(b, &off, &kg, &ts, &key, &val) == 1) {
      r->records++;
      r->bytes += (long)val.len;
    }
    cs_batch_destroy(b);
  }
}

static double stage_channel(corpus *c) {
  chan_run r = {cs_channel_create(64), 0, 0};
  if (!r.ch) die("out of memory");
  uv_thread_t th;
  double t0 = now();
  if (uv_thread_create(&th, consumer, &r)) die("thread");
  cs_batch *b = NULL;
  for (size_t i = 0; i <= c->nwords; i++) {
    if (b && (i == c->nwords || b->count >= CS_BATCH_RECORDS_MAX ||
              b->data.len >= CS_BATCH_BYTES_MAX)) {
      while (!cs_channel_push(r.ch, b)) sched_yield();
      b = NULL;
    }
    if (i == c->nwords) break;
    if (!b && !(b = cs_batch_create(CS_BATCH_RECORDS))) die("out of memory");
    cs_slice rec = rec_of(c, i), k;
    cs_codec_array_elem(rec, 1, &k);
    if (cs_batch_add(b, 0, CS_NO_TS, k.data, k.len, rec.data, rec.len)) die("batch");
  }
  cs_batch *end = cs_batch_create(CS_BATCH_END);
  while (!cs_channel_push(r.ch, end)) sched_yield();
  uv_thread_join(&th);
  double t = now() - t0;
  if (r.records != c->nwords) die("channel: records lost");
  cs_channel_destroy(r.ch);
  return t;
}

/* Rolling sum of field 2 per key in the heap backend, as the engine's
 * rolling aggregate does it on encoded records. */
static double stage_state(corpus *c, cs_backend *be, int st) {
  cs_buf out = {0};
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    cs_slice rec = rec_of(c, i), k, f, old;
    cs_codec_array_elem(rec, 1, &k);
    cs_codec_array_elem(rec, 2, &f);
    cs_num add, acc;
    if (!cs_codec_number(f, &add)) die("state: field 2 is no number");
    int kg = cs_key_group(k.data, k.len, MAX_PAR);
    if (be->ops->get(be, st, kg, k, NULL, &old) == 0) {
      if (!cs_codec_number(old, &acc)) die("state: bad value");
      acc.i += add.i;
    } else {
      acc = add;
    }
    cs_buf_reset(&out);
    cs_codec_put_number(&out, &acc);
    cs_slice v = {out.data, out.len};
    if (be->ops->put(be, st, kg, k, NULL, v)) die("state: put");
  }
  double t = now() - t0;
  cs_buf_free(&out);
  return t;
}

static double stage_format(corpus *c) {
  cs_buf out = {0};
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    cs_buf_reset(&out);
    if (cs_format_encoded(rec_of(c, i), &out)) die("format");
    cs_buf_append(&out, "\n", 1);
  }
  double t = now() - t0;
  cs_buf_free(&out);
  return t;
}

static double stage_decode(corpus *c) {
  double t0 = now();
  for (size_t i = 0; i < c->nwords; i++) {
    cs_slice r = rec_of(c, i);
    if (cs_codec_decode(L, r.data, r.len, NULL) != 0) die("decode");
    lua_pop(L, 1);
  }
  return now() - t0;
}

/* The C and Lua baselines' whole work per word (no output). */
static double base_c(corpus *c) {
  /* the same table work as bench/wordcount_baseline.c, inline */
  size_t cap = 1 << 16;
  struct ent {
    const char *w;
    size_t len;
    long n;
  } *tab = calloc(cap, sizeof(*tab));
  if (!tab) die("out of memory");
  double t0 = now();
  for (size_t i = 0; i < c->nlines; i++) {
    const char *p = c->lines[i], *end = p + strlen(p);
    while (p < end) {
      const char *q = memchr(p, ',', (size_t)(end - p));
      if (!q) q = end;
      if (q > p) {
        size_t h = (size_t)cs_key_group(p, (size_t)(q - p), 1 << 30) & (cap - 1);
        while (tab[h].w && (tab[h].len != (size_t)(q - p) ||
                            memcmp(tab[h].w, p, (size_t)(q - p))))
          h = (h + 1) & (cap - 1);
        if (!tab[h].w) {
          tab[h].w = p;
          tab[h].len = (size_t)(q - p);
        }
        tab[h].n++;
      }
      p = q + 1;
    }
  }
  double t = now() - t0;
  free(tab);
  return t;
}

static double base_lua(void) {
  static const char *src =
      "local lines = ...\n"
      "local counts = {}\n"
      "local t0 = os.clock()\n"
      "for i = 1, #lines do\n"
      "  for word in lines[i]:gmatch('[^,]+') do\n"
      "    counts[word] = (counts[word] or 0) + 1\n"
      "  end\n"
      "end\n"
      "return os.clock() - t0\n";
  if (luaL_loadstring(L, src) != LUA_OK) die(lua_tostring(L, -1));
  lua_getfield(L, LUA_REGISTRYINDEX, "bench_lines");
  if (cs_lua_pcall(L, 1, 1) != LUA_OK) die(lua_tostring(L, -1));
  double t = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return t;
}

/* ------------------------------------------------------------- main */

enum { S_USER, S_CALL, S_TABLES, S_ENCODE, S_KEY, S_CHANNEL, S_STATE,
       S_FORMAT, S_DECODE, B_C, B_LUA, NSTAGES };

static const char *names[NSTAGES] = {
    "user code: gmatch + {word,1} (Lua)",
    "Lua call into user code, per word",
    "  (building {word,1} from C, not counted)",
    "encode {word,1} to MessagePack",
    "key bytes + key group (XXH3)",
    "batch + SPSC channel to another thread",
    "rolling sum: field, heap get + put",
    "format \"(w,n)\" for the sink",
    "decode to a Lua table (Lua operators only)",
    "baseline: C loop, whole work per word",
    "baseline: Lua loop, whole work per word",
};

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_stages INPUT [REPS]\n");
    return 2;
  }
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (reps < 1) reps = 1;
  corpus c;
  load(&c, argv[1], 200000);
  if (c.nwords == 0) die("no words in the input");
  c.rec_off = calloc(c.nwords + 1, sizeof(size_t));
  if (!c.rec_off) die("out of memory");
  L = cs_lua_newstate(NULL);
  if (!L) die("cannot create a Lua state");
  luaL_openlibs(L);
  lua_createtable(L, (int)c.nlines, 0);
  for (size_t i = 0; i < c.nlines; i++) {
    lua_pushstring(L, c.lines[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "bench_lines");

  double *t[NSTAGES];
  for (int s = 0; s < NSTAGES; s++) t[s] = calloc((size_t)reps, sizeof(double));
  for (int r = 0; r < reps; r++) {
    cs_backend *be = cs_heap_backend_create();
    int st = be->ops->register_state(be, "sum", CS_STATE_VALUE);
    if (st < 0) die("register_state");
    t[S_USER][r] = stage_user_code(&c);
    t[S_CALL][r] = stage_lua_call(&c);
    t[S_TABLES][r] = stage_tables(&c);
    t[S_ENCODE][r] = stage_encode(&c);
    t[S_KEY][r] = stage_key(&c);
    t[S_CHANNEL][r] = stage_channel(&c);
    t[S_STATE][r] = stage_state(&c, be, st);
    t[S_FORMAT][r] = stage_format(&c);
    t[S_DECODE][r] = stage_decode(&c);
    t[B_C][r] = base_c(&c);
    t[B_LUA][r] = base_lua();
    lua_gc(L, LUA_GCCOLLECT);
    be->ops->destroy(be);
  }
  printf("per-record cost of each stage: %zu lines, %zu words; median of %d run(s)\n\n",
         c.nlines, c.nwords, reps);
  printf("| %-42s | %9s |\n", "stage", "ns/word");
  printf("|--------------------------------------------|-----------|\n");
  double engine = 0;
  for (int s = 0; s < NSTAGES; s++) {
    double ns = median(t[s], reps) * 1e9 / (double)c.nwords;
    if (s == S_ENCODE) ns -= median(t[S_TABLES], reps) * 1e9 / (double)c.nwords;
    if (s == S_USER || s == S_CALL || s == S_ENCODE || s == S_KEY ||
        s == S_CHANNEL || s == S_STATE || s == S_FORMAT)
      engine += ns;
    if (s == B_C)
      printf("| %-42s | %9.1f |\n", "sum of the engine's stages above", engine);
    printf("| %-42s | %9.1f |\n", names[s], ns);
  }
  for (int s = 0; s < NSTAGES; s++) free(t[s]);
  lua_close(L);
  cs_buf_free(&c.recs);
  for (size_t i = 0; i < c.nlines; i++) free(c.lines[i]);
  free(c.lines);
  free(c.words);
  free(c.rec_off);
  return 0;
}
