/*
 * cs_config.c - the key table, the value parsers, the cstream-conf.yaml
 * loader and the precedence rules of the job configuration.
 */
#include "host/config/cs_config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* ================================================================== table */

typedef enum ktype { K_ENUM, K_BOOL, K_INT, K_DURATION, K_SIZE, K_PATH } ktype;

/* An enum spelling accepted on input and the canonical name it stands for. */
typedef struct choice {
  const char *in;
  const char *canon;
} choice;

static const choice backend_choices[] = {{"memory", "memory"},
                                         {"jobmanager", "memory"},
                                         {"filesystem", "filesystem"},
                                         {"hashmap", "filesystem"},
                                         {"fs", "filesystem"},
                                         {"rocksdb", "rocksdb"},
                                         {NULL, NULL}};

/* Flink also knows failure-rate and exponential-delay; we do not (yet). */
static const choice restart_choices[] = {{"none", "none"},
                                         {"off", "none"},
                                         {"disable", "none"},
                                         {"fixed-delay", "fixed-delay"},
                                         {"fixeddelay", "fixed-delay"},
                                         {NULL, NULL}};

typedef struct keydef {
  const char *name;
  const char *alias; /* a second accepted key (Flink's newer name), or NULL */
  ktype type;
  const char *def;       /* the default as input text; NULL: unset */
  long long min, max;    /* K_INT, K_DURATION (ms), K_SIZE (bytes) */
  const choice *choices; /* K_ENUM */
  const char *unset;     /* what an unset value means, for cs_config_print */
  const char *help;
} keydef;

#define NO_MAX LLONG_MAX

/* The index of state.backend, read by cs_config_backend. */
#define BACKEND_KEY 0

static const keydef keys[] = {
    {"state.backend", "state.backend.type", K_ENUM, "memory", 0, 0,
     backend_choices, NULL,
     "where keyed state lives: memory (jobmanager), filesystem (hashmap, fs) "
     "or rocksdb"},
    {"state.checkpoints.dir", NULL, K_PATH, NULL, 0, 0, NULL,
     "no checkpoint storage",
     "directory that holds checkpoints: a local path or file:// URI"},
    {"state.savepoints.dir", NULL, K_PATH, NULL, 0, 0, NULL,
     "no default savepoint directory",
     "default directory for savepoints: a local path or file:// URI"},
    {"state.backend.incremental", NULL, K_BOOL, "false", 0, 1, NULL, NULL,
     "take incremental checkpoints (rocksdb backend)"},
    {"state.checkpoints.num-retained", NULL, K_INT, "1", 1, INT_MAX, NULL, NULL,
     "number of completed checkpoints to keep"},
    {"state.backend.memory.max-state-size", NULL, K_SIZE, "5 mb", 1, NO_MAX,
     NULL, NULL, "largest state snapshot the memory backend accepts"},
    {"state.backend.rocksdb.localdir", NULL, K_PATH, NULL, 0, 0, NULL,
     "the system temporary directory", "where RocksDB keeps its working files"},
    {"state.backend.rocksdb.block.cache-size", NULL, K_SIZE, "64 mb", 1, NO_MAX,
     NULL, NULL, "size of RocksDB's block cache"},
    {"state.backend.rocksdb.writebuffer.size", NULL, K_SIZE, "16 mb", 1, NO_MAX,
     NULL, NULL, "size of a RocksDB memtable before it is flushed"},
    {"state.backend.rocksdb.value-cache.size", NULL, K_SIZE, "32 mb", 0, NO_MAX,
     NULL, NULL,
     "write-back cache of value states in front of RocksDB, per operator "
     "subtask; 0 turns it off"},
    {"execution.checkpointing.interval", NULL, K_DURATION, NULL, 0, NO_MAX,
     NULL, "checkpointing off",
     "time between the starts of two checkpoints; 0 turns checkpointing off"},
    {"execution.checkpointing.timeout", NULL, K_DURATION, "10 min", 1, NO_MAX,
     NULL, NULL, "time after which a checkpoint in progress is aborted"},
    {"execution.checkpointing.tolerable-failed-checkpoints", NULL, K_INT, "0",
     0, INT_MAX, NULL, NULL,
     "consecutive failed checkpoints tolerated before the job fails"},
    {"parallelism.default", NULL, K_INT, NULL, 1, 32768, NULL,
     "number of CPU cores",
     "parallelism of the operators that do not set their own"},
    {"pipeline.max-parallelism", NULL, K_INT, "128", 1, 32768, NULL, NULL,
     "number of key groups: the upper limit when rescaling keyed state"},
    {"restart-strategy", "restart-strategy.type", K_ENUM, NULL, 0, 0,
     restart_choices, "fixed-delay with checkpointing, else none",
     "what to do when a task fails: none (off, disable) or fixed-delay "
     "(fixeddelay)"},
    {"restart-strategy.fixed-delay.attempts", NULL, K_INT, "3", 0, INT_MAX,
     NULL, NULL, "restarts tried before the job fails"},
    {"restart-strategy.fixed-delay.delay", NULL, K_DURATION, "1 s", 0, NO_MAX,
     NULL, NULL, "wait between two restarts"},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* One key's current value. text is NULL when unset. */
typedef struct entry {
  char *text; /* normalised value (owned) */
  long long num;
  cs_conf_origin origin;
  char *where; /* owned; NULL for defaults */
} entry;

struct cs_config {
  entry e[NKEYS];
};

/* Returns the index of the key whose name or alias is name, or -1. */
static int find_key(const char *name) {
  if (name == NULL) return -1;
  for (size_t i = 0; i < NKEYS; i++) {
    if (strcmp(keys[i].name, name) == 0) return (int)i;
    if (keys[i].alias != NULL && strcmp(keys[i].alias, name) == 0)
      return (int)i;
  }
  return -1;
}

/* ============================================================ suggestions */

#define SUGGEST_MAX 3
#define SUGGEST_LEN 128

/* Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions) between two strings shorter than SUGGEST_LEN. */
static size_t edit_distance(const char *a, size_t la, const char *b,
                            size_t lb) {
  size_t rows[3][SUGGEST_LEN + 1];
  size_t *pp = rows[0], *p = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= lb; j++) p[j] = j;
  for (size_t i = 1; i <= la; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t d = p[j] + 1;
      if (cur[j - 1] + 1 < d) d = cur[j - 1] + 1;
      if (p[j - 1] + cost < d) d = p[j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          pp[j - 2] + 1 < d)
        d = pp[j - 2] + 1;
      cur[j] = d;
    }
    size_t *t = pp;
    pp = p;
    p = cur;
    cur = t;
  }
  return p[lb];
}

/* Returns the known key or alias closest to name when it is within
 * SUGGEST_MAX edits, else NULL. Ties go to the first in the table. */
static const char *suggest_key(const char *name) {
  size_t ln = strlen(name), best = SUGGEST_MAX + 1;
  const char *found = NULL;
  for (size_t i = 0; i < NKEYS; i++) {
    const char *cand[2] = {keys[i].name, keys[i].alias};
    for (int k = 0; k < 2; k++) {
      if (cand[k] == NULL) continue;
      size_t lc = strlen(cand[k]);
      size_t diff = ln > lc ? ln - lc : lc - ln;
      if (diff >= best || ln >= SUGGEST_LEN || lc >= SUGGEST_LEN) continue;
      size_t d = edit_distance(name, ln, cand[k], lc);
      if (d < best) {
        best = d;
        found = cand[k];
      }
    }
  }
  return found;
}

/* Writes "unknown key 'name'" with a suggestion when there is one. */
static void unknown_key_msg(char *msg, size_t msglen, const char *name) {
  const char *s = suggest_key(name);
  if (s != NULL)
    snprintf(msg, msglen, "unknown key '%s' (did you mean '%s'?)", name, s);
  else
    snprintf(msg, msglen, "unknown key '%s'", name);
}

/* ================================================================ parsing */

static void put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static char lower(char ch) {
  return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

/* Case-insensitive comparison of s[0..n) with the lower-case literal lit. */
static int lower_eq(const char *s, size_t n, const char *lit) {
  size_t i = 0;
  for (; i < n && lit[i] != '\0'; i++)
    if (lower(s[i]) != lit[i]) return 0;
  return i == n && lit[i] == '\0';
}

static char *dup_n(const char *s, size_t n) {
  char *d = cs_malloc(n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static char *dup_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...) {
  cs_buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || cs_buf_reserve(&b, (size_t)n + 1) != 0) return NULL;
  va_start(ap, fmt);
  vsnprintf(b.data, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return b.data;
}

/* Renders a value for a message: at most 60 bytes, control bytes as '?'. */
static void show(char *dst, size_t dstlen, const char *s, size_t n) {
  size_t max = 60, o = 0;
  for (size_t i = 0; i < n && i < max && o + 1 < dstlen; i++)
    dst[o++] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
  if (n > max)
    for (int k = 0; k < 3 && o + 1 < dstlen; k++) dst[o++] = '.';
  dst[o] = '\0';
}

/* A unit label and how many base units (ms, bytes) it stands for. */
typedef struct unit {
  const char *label;
  long long mult;
} unit;

/* Flink's TimeUtils labels, minus the units finer than a millisecond. */
static const unit duration_units[] = {
    {"ms", 1},          {"milli", 1},        {"millis", 1},
    {"millisecond", 1}, {"milliseconds", 1}, {"s", 1000},
    {"sec", 1000},      {"secs", 1000},      {"second", 1000},
    {"seconds", 1000},  {"min", 60000},      {"m", 60000},
    {"minute", 60000},  {"minutes", 60000},  {"h", 3600000},
    {"hour", 3600000},  {"hours", 3600000},  {"d", 86400000},
    {"day", 86400000},  {"days", 86400000},  {NULL, 0}};

#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)

/* Flink's MemorySize labels (binary units), plus kib/mib/gib/tib. */
static const unit size_units[] = {
    {"b", 1},     {"bytes", 1},       {"k", KIB}, {"kb", KIB},
    {"kib", KIB}, {"kibibytes", KIB}, {"m", MIB}, {"mb", MIB},
    {"mib", MIB}, {"mebibytes", MIB}, {"g", GIB}, {"gb", GIB},
    {"gib", GIB}, {"gibibytes", GIB}, {"t", TIB}, {"tb", TIB},
    {"tib", TIB}, {"tebibytes", TIB}, {NULL, 0}};

/* The units values are printed in, largest first. */
static const unit duration_show[] = {{"d", 86400000}, {"h", 3600000},
                                     {"min", 60000},  {"s", 1000},
                                     {"ms", 1},       {NULL, 0}};
static const unit size_show[] = {{"tb", TIB}, {"gb", GIB},  {"mb", MIB},
                                 {"kb", KIB}, {"bytes", 1}, {NULL, 0}};

/* Parses "<digits>[ ]<unit>" (unit optional, case-insensitive) the way
 * Flink's TimeUtils and MemorySize do. Returns 0, -1 for bad syntax or an
 * unknown unit, -2 for a value that does not fit in a long long. */
static int parse_scaled(const char *s, size_t n, const unit *units,
                        long long *out) {
  size_t i = 0;
  long long v = 0;
  if (n == 0 || !is_digit(s[0])) return -1;
  for (; i < n && is_digit(s[i]); i++) {
    int d = s[i] - '0';
    if (v > (LLONG_MAX - d) / 10) return -2;
    v = v * 10 + d;
  }
  while (i < n && is_space(s[i])) i++;
  if (i == n) {
    *out = v;
    return 0;
  }
  for (const unit *u = units; u->label != NULL; u++) {
    if (!lower_eq(s + i, n - i, u->label)) continue;
    if (v != 0 && u->mult > LLONG_MAX / v) return -2;
    *out = v * u->mult;
    return 0;
  }
  return -1;
}

/* Returns v as text in the largest unit of show that divides it. */
static char *format_scaled(long long v, const unit *show_units) {
  const unit *u = show_units;
  while (u[1].label != NULL && (v == 0 ? u->mult != 1 : v % u->mult != 0)) u++;
  return dup_printf("%lld %s", v / u->mult, u->label);
}

/* Parses an optionally signed decimal integer. Returns 0, -1 for bad syntax,
 * -2 for overflow. */
static int parse_int(const char *s, size_t n, long long *out) {
  size_t i = 0;
  int neg = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  if (i == n) return -1;
  unsigned long long v = 0, lim = neg ? (unsigned long long)LLONG_MAX + 1
                                      : (unsigned long long)LLONG_MAX;
  for (; i < n; i++) {
    if (!is_digit(s[i])) return -1;
    unsigned d = (unsigned)(s[i] - '0');
    if (v > (lim - d) / 10) return -2;
    v = v * 10 + d;
  }
  *out =
      neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v)
          : (long long)v;
  return 0;
}

static int hexval(char ch) {
  if (is_digit(ch)) return ch - '0';
  ch = lower(ch);
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

/* Parses a local path or file: URI into *out (cs_malloc'd). Returns 0,
 * CS_EINVAL with why set, or CS_ENOMEM. */
static int parse_path(const char *s, size_t n, char **out, char *why,
                      size_t whylen) {
  size_t i = 0;
  if (n == 0) {
    snprintf(why, whylen, "expected a path or file:// URI");
    return CS_EINVAL;
  }
  /* A scheme: ALPHA *(ALPHA / DIGIT / "+" / "-" / ".") ":" */
  int lead = (s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z');
  if (lead) {
    for (i = 1; i < n; i++) {
      char ch = s[i];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
            is_digit(ch) || ch == '+' || ch == '-' || ch == '.'))
        break;
    }
  }
  int is_file = lead && i < n && s[i] == ':' && lower_eq(s, i, "file");
  int other = lead && !is_file && i + 2 < n && s[i] == ':' && s[i + 1] == '/' &&
              s[i + 2] == '/';
  if (other) {
    snprintf(why, whylen,
             "the %.*s:// scheme is not supported (use a local path or a "
             "file:// URI)",
             (int)(i > 20 ? 20 : i), s);
    return CS_EINVAL;
  }
  if (!is_file) {
    size_t len = n;
    while (len > 1 && s[len - 1] == '/') len--;
    *out = dup_n(s, len);
    return *out != NULL ? 0 : CS_ENOMEM;
  }
  /* file:/path, file:///path or file://localhost/path */
  const char *p = s + i + 1, *end = s + n;
  if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
    const char *host = p + 2, *slash = host;
    while (slash < end && *slash != '/') slash++;
    if (slash != host && !lower_eq(host, (size_t)(slash - host), "localhost")) {
      snprintf(why, whylen,
               "file:// URIs with a host are not supported (use "
               "file:///absolute/path)");
      return CS_EINVAL;
    }
    p = slash;
  }
  if (p == end || *p != '/') {
    snprintf(why, whylen, "expected an absolute path after file:");
    return CS_EINVAL;
  }
  char *d = cs_malloc((size_t)(end - p) + 1);
  if (d == NULL) return CS_ENOMEM;
  size_t o = 0;
  for (; p < end; p++) {
    if (*p != '%') {
      d[o++] = *p;
      continue;
    }
    int hi = end - p > 2 ? hexval(p[1]) : -1;
    int lo = end - p > 2 ? hexval(p[2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      cs_free(d);
      snprintf(why, whylen, "bad %%-escape in file: URI");
      return CS_EINVAL;
    }
    d[o++] = (char)(hi * 16 + lo);
    p += 2;
  }
  while (o > 1 && d[o - 1] == '/') o--;
  d[o] = '\0';
  *out = d;
  return 0;
}

/* Parses the value s[0..n) of key k, named keyname in messages. On success
 * sets *text (cs_malloc'd, caller owns) and *num and returns 0; else returns
 * CS_EINVAL with msg set, or CS_ENOMEM. */
static int parse_value(const keydef *k, const char *keyname, const char *s,
                       size_t n, char **text, long long *num, char *msg,
                       size_t msglen) {
  char shown[80], why[256];
  long long v = 0;
  int rc;
  show(shown, sizeof(shown), s, n);
  while (n > 0 && is_space(s[0])) s++, n--;
  while (n > 0 && is_space(s[n - 1])) n--;
  *text = NULL;
  *num = 0;
  why[0] = '\0';
  if (memchr(s, '\0', n) != NULL) {
    snprintf(why, sizeof(why), "it contains a NUL byte");
    goto bad;
  }
  switch (k->type) {
  case K_ENUM: {
    for (const choice *c = k->choices; c->in != NULL; c++) {
      if (!lower_eq(s, n, c->in)) continue;
      *text = cs_strdup(c->canon);
      return *text != NULL ? 0 : CS_ENOMEM;
    }
    size_t o = (size_t)snprintf(why, sizeof(why), "expected one of");
    for (const choice *c = k->choices; c->in != NULL && o < sizeof(why); c++)
      o += (size_t)snprintf(why + o, sizeof(why) - o, "%s %s",
                            c == k->choices ? "" : ",", c->in);
    goto bad;
  }
  case K_BOOL:
    if (lower_eq(s, n, "true"))
      v = 1;
    else if (!lower_eq(s, n, "false")) {
      snprintf(why, sizeof(why), "expected true or false");
      goto bad;
    }
    *num = v;
    *text = cs_strdup(v ? "true" : "false");
    return *text != NULL ? 0 : CS_ENOMEM;
  case K_INT:
    rc = parse_int(s, n, &v);
    if (rc == 0 && v >= k->min && v <= k->max) {
      *num = v;
      *text = dup_printf("%lld", v);
      return *text != NULL ? 0 : CS_ENOMEM;
    }
    if (k->max == INT_MAX || k->max == NO_MAX)
      snprintf(why, sizeof(why), "expected an integer >= %lld", k->min);
    else
      snprintf(why, sizeof(why), "expected an integer from %lld to %lld",
               k->min, k->max);
    goto bad;
  case K_DURATION:
  case K_SIZE: {
    int dur = k->type == K_DURATION;
    rc = parse_scaled(s, n, dur ? duration_units : size_units, &v);
    if (rc == 0 && v >= k->min && v <= k->max) {
      *num = v;
      *text = format_scaled(v, dur ? duration_show : size_show);
      return *text != NULL ? 0 : CS_ENOMEM;
    }
    if (rc == -2)
      snprintf(why, sizeof(why), "the number is too large");
    else if (rc == 0)
      snprintf(why, sizeof(why), "expected at least %lld %s", k->min,
               dur ? "ms" : (k->min == 1 ? "byte" : "bytes"));
    else if (dur)
      snprintf(why, sizeof(why),
               "expected a duration such as 1000 (ms), 100ms, 10 s, 1min, "
               "1h or 2d");
    else
      snprintf(why, sizeof(why),
               "expected a size such as 5242880 (bytes), 512kb, 5 mb, 64m "
               "or 1 gib");
    goto bad;
  }
  case K_PATH:
    rc = parse_path(s, n, text, why, sizeof(why));
    if (rc != CS_EINVAL) return rc;
    goto bad;
  }
  snprintf(why, sizeof(why), "unsupported type");
bad:
  snprintf(msg, msglen, "invalid value '%s' for '%s': %s", shown, keyname, why);
  return CS_EINVAL;
}

/* ============================================================== the store */

/* Stores a value at origin unless the key holds one of higher origin. Takes
 * ownership of text and where either way. */
static void apply(entry *e, char *text, long long num, cs_conf_origin origin,
                  char *where) {
  if (origin < e->origin) {
    cs_free(text);
    cs_free(where);
    return;
  }
  cs_free(e->text);
  cs_free(e->where);
  e->text = text;
  e->num = num;
  e->origin = origin;
  e->where = where;
}

cs_config *cs_config_create(void) {
  cs_config *c = cs_calloc(1, sizeof(*c));
  char msg[256];
  if (c == NULL) return NULL;
  for (size_t i = 0; i < NKEYS; i++) {
    entry *e = &c->e[i];
    e->origin = CS_CONF_DEFAULT;
    if (keys[i].def == NULL) continue;
    if (parse_value(&keys[i], keys[i].name, keys[i].def, strlen(keys[i].def),
                    &e->text, &e->num, msg, sizeof(msg)) != 0) {
      cs_config_destroy(c);
      return NULL;
    }
  }
  return c;
}

void cs_config_destroy(cs_config *c) {
  if (c == NULL) return;
  for (size_t i = 0; i < NKEYS; i++) {
    cs_free(c->e[i].text);
    cs_free(c->e[i].where);
  }
  cs_free(c);
}

int cs_config_set(cs_config *c, const char *key, const char *value,
                  cs_conf_origin origin, const char *where, char *err,
                  size_t errlen) {
  char msg[512];
  const char *pre = where != NULL ? where : "", *sep = where ? ": " : "";
  char *text = NULL, *wcopy = NULL;
  long long num;
  int rc;

  if (err != NULL && errlen > 0) err[0] = '\0';
  if (c == NULL || key == NULL || origin < CS_CONF_DEFAULT ||
      origin > CS_CONF_FLAG) {
    put_err(err, errlen, "%s%sinvalid configuration call", pre, sep);
    return CS_EINVAL;
  }
  int idx = find_key(key);
  if (idx < 0) {
    unknown_key_msg(msg, sizeof(msg), key);
    put_err(err, errlen, "%s%s%s", pre, sep, msg);
    return CS_EINVAL;
  }
  if (value == NULL) {
    put_err(err, errlen, "%s%smissing value for '%s'", pre, sep, key);
    return CS_EINVAL;
  }
  rc = parse_value(&keys[idx], key, value, strlen(value), &text, &num, msg,
                   sizeof(msg));
  if (rc == CS_EINVAL) {
    put_err(err, errlen, "%s%s%s", pre, sep, msg);
    return rc;
  }
  if (rc != 0) goto fail_oom;
  if (where != NULL && (wcopy = cs_strdup(where)) == NULL) goto fail_oom;
  apply(&c->e[idx], text, num, origin, wcopy);
  return 0;

fail_oom:
  cs_free(text);
  put_err(err, errlen, "%s%sout of memory", pre, sep);
  return CS_ENOMEM;
}

/* ================================================================ getters */

static const entry *lookup(const cs_config *c, const char *key) {
  int idx = c != NULL ? find_key(key) : -1;
  return idx >= 0 ? &c->e[idx] : NULL;
}

const char *cs_config_backend(const cs_config *c) {
  const char *b = c != NULL ? c->e[BACKEND_KEY].text : NULL;
  return b != NULL ? b : "memory";
}

const char *cs_config_str(const cs_config *c, const char *key) {
  const entry *e = lookup(c, key);
  return e != NULL ? e->text : NULL;
}

long long cs_config_int(const cs_config *c, const char *key) {
  const entry *e = lookup(c, key);
  return e != NULL && e->text != NULL ? e->num : 0;
}

int cs_config_is_set(const cs_config *c, const char *key) {
  const entry *e = lookup(c, key);
  return e != NULL && e->text != NULL;
}

cs_conf_origin cs_config_origin(const cs_config *c, const char *key) {
  const entry *e = lookup(c, key);
  return e != NULL ? e->origin : CS_CONF_DEFAULT;
}

const char *cs_config_where(const cs_config *c, const char *key) {
  const entry *e = lookup(c, key);
  return e != NULL ? e->where : NULL;
}

const char *cs_config_origin_name(cs_conf_origin origin) {
  switch (origin) {
  case CS_CONF_DEFAULT:
    return "default";
  case CS_CONF_FILE:
    return "file";
  case CS_CONF_JOB:
    return "job";
  case CS_CONF_FLAG:
    return "flag";
  }
  return "unknown";
}

#define UNSET_TEXT "(unset)"

void cs_config_print(const cs_config *c, FILE *out) {
  size_t width = 0;
  if (c == NULL) return;
  for (size_t i = 0; i < NKEYS; i++) {
    const char *v = c->e[i].text != NULL ? c->e[i].text : UNSET_TEXT;
    size_t w = strlen(keys[i].name) + 2 + strlen(v);
    if (w > width) width = w;
  }
  for (size_t i = 0; i < NKEYS; i++) {
    const entry *e = &c->e[i];
    const char *v = e->text != NULL ? e->text : UNSET_TEXT;
    size_t w = strlen(keys[i].name) + 2 + strlen(v);
    fprintf(out, "%s: %s%*s", keys[i].name, v, (int)(width - w + 4), "");
    if (e->origin == CS_CONF_DEFAULT && e->text == NULL && keys[i].unset)
      fprintf(out, "(default: %s)\n", keys[i].unset);
    else if (e->where != NULL)
      fprintf(out, "(%s %s)\n", cs_config_origin_name(e->origin), e->where);
    else
      fprintf(out, "(%s)\n", cs_config_origin_name(e->origin));
  }
}

static const char *type_name(ktype t) {
  switch (t) {
  case K_ENUM:
    return "one of";
  case K_BOOL:
    return "true|false";
  case K_INT:
    return "integer";
  case K_DURATION:
    return "duration";
  case K_SIZE:
    return "size";
  case K_PATH:
    return "path or file:// URI";
  }
  return "?";
}

void cs_config_print_help(FILE *out) {
  for (size_t i = 0; i < NKEYS; i++) {
    const keydef *k = &keys[i];
    fprintf(out, "%s", k->name);
    if (k->alias != NULL) fprintf(out, " (or %s)", k->alias);
    fprintf(out, "\n    %s", type_name(k->type));
    if (k->type == K_ENUM)
      for (const choice *c = k->choices; c->in != NULL; c++)
        fprintf(out, "%s%s", c == k->choices ? " " : "|", c->in);
    if (k->type == K_INT && k->max >= INT_MAX)
      fprintf(out, " >= %lld", k->min);
    else if (k->type == K_INT)
      fprintf(out, " %lld..%lld", k->min, k->max);
    if (k->def != NULL)
      fprintf(out, ", default %s", k->def);
    else
      fprintf(out, ", default unset: %s", k->unset);
    fprintf(out, "\n    %s\n", k->help);
  }
}

/* ============================================================ YAML loader */

/* Nested mappings deeper than this are refused (the recursion is ours). */
#define MAX_DEPTH 32
/* Files larger than this are refused. */
#define MAX_FILE_SIZE (16 << 20)

/* A value read from the file, applied only when the whole file is good. */
typedef struct pending {
  int idx;
  int via_alias; /* the file named the key by its alias */
  size_t line;
  char *text;
  long long num;
  char *where; /* "path:line" */
} pending;

typedef struct loader {
  yaml_parser_t parser;
  cs_buf text; /* the whole file */
  const char *path;
  cs_buf key; /* dotted key of the current node, NUL-terminated */
  pending *items;
  size_t n, cap;
  char *err;
  size_t errlen;
} loader;

static int fail_at(loader *ld, size_t line, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "path:line: message" (or "path: message" for line 0), returns rc. */
static int fail_at(loader *ld, size_t line, int rc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (line > 0)
    put_err(ld->err, ld->errlen, "%s:%zu: %s", ld->path, line, msg);
  else
    put_err(ld->err, ld->errlen, "%s: %s", ld->path, msg);
  return rc;
}

/* The line of byte offset off of the text, for reader errors (libyaml
 * reports only an offset for those). */
static size_t line_of_offset(const cs_buf *text, size_t off) {
  size_t line = 1;
  for (size_t i = 0; i < off && i < text->len; i++)
    if (text->data[i] == '\n') line++;
  return line;
}

/* Turns the parser's error into a message. Returns CS_EINVAL or CS_ENOMEM. */
static int yaml_failure(loader *ld) {
  const yaml_parser_t *p = &ld->parser;
  const char *problem = p->problem != NULL ? p->problem : "unknown problem";
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    return fail_at(ld, 0, CS_ENOMEM, "out of memory reading YAML");
  case YAML_READER_ERROR:
    return fail_at(ld, line_of_offset(&ld->text, p->problem_offset), CS_EINVAL,
                   "YAML read error: %s", problem);
  default: {
    size_t line = p->problem_mark.line + 1, cline = p->context_mark.line + 1;
    /* A key without its ':' is found only on a later line; name its own. */
    if (p->context != NULL &&
        strcmp(p->context, "while scanning a simple key") == 0)
      line = cline;
    if (p->context != NULL && cline != line)
      return fail_at(ld, line, CS_EINVAL,
                     "YAML syntax error: %s (%s at line %zu)", problem,
                     p->context, cline);
    if (p->context != NULL)
      return fail_at(ld, line, CS_EINVAL, "YAML syntax error: %s (%s)", problem,
                     p->context);
    return fail_at(ld, line, CS_EINVAL, "YAML syntax error: %s", problem);
  }
  }
}

/* Reads the next event into ev; the caller deletes it. Returns 0 or an
 * error (ev then holds nothing). */
static int next_event(loader *ld, yaml_event_t *ev) {
  if (yaml_parser_parse(&ld->parser, ev)) return 0;
  return yaml_failure(ld);
}

static const char *node_kind(yaml_event_type_t t) {
  switch (t) {
  case YAML_SEQUENCE_START_EVENT:
    return "a sequence";
  case YAML_MAPPING_START_EVENT:
    return "a mapping";
  case YAML_ALIAS_EVENT:
    return "an alias";
  case YAML_SCALAR_EVENT:
    return "a scalar";
  default:
    return "an unexpected node";
  }
}

/* A plain scalar YAML reads as null: "", "~", "null". */
static int is_null(const yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  return n == 0 || (n == 1 && s[0] == '~') ||
         (n == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
                     memcmp(s, "NULL", 4) == 0));
}

/* Records the scalar value ev of the current key, read at line. */
static int load_leaf(loader *ld, size_t line, const yaml_event_t *ev) {
  const char *name = ld->key.data;
  char msg[512];
  pending it = {0};
  int idx = find_key(name), rc;

  if (idx < 0) {
    unknown_key_msg(msg, sizeof(msg), name);
    return fail_at(ld, line, CS_EINVAL, "%s", msg);
  }
  if (is_null(ev))
    return fail_at(ld, line, CS_EINVAL, "missing value for '%s'", name);
  rc = parse_value(&keys[idx], name, (const char *)ev->data.scalar.value,
                   ev->data.scalar.length, &it.text, &it.num, msg, sizeof(msg));
  if (rc == CS_EINVAL) return fail_at(ld, line, rc, "%s", msg);
  if (rc != 0) goto fail_oom;
  for (size_t i = 0; i < ld->n; i++) {
    const pending *o = &ld->items[i];
    if (o->idx != idx) continue;
    cs_free(it.text);
    const char *first = o->via_alias ? keys[idx].alias : keys[idx].name;
    if (strcmp(first, name) == 0)
      return fail_at(ld, line, CS_EINVAL,
                     "duplicate key '%s' (first set at line %zu)", name,
                     o->line);
    return fail_at(ld, line, CS_EINVAL,
                   "duplicate key '%s' (same key as '%s' at line %zu)", name,
                   first, o->line);
  }
  it.idx = idx;
  it.via_alias = strcmp(keys[idx].name, name) != 0;
  it.line = line;
  if ((it.where = dup_printf("%s:%zu", ld->path, line)) == NULL) goto fail_oom;
  if (ld->n == ld->cap) {
    size_t cap = ld->cap ? ld->cap * 2 : 8;
    pending *items = cs_realloc(ld->items, cap * sizeof(*items));
    if (items == NULL) goto fail_oom;
    ld->items = items;
    ld->cap = cap;
  }
  ld->items[ld->n++] = it;
  return 0;

fail_oom:
  cs_free(it.text);
  cs_free(it.where);
  return fail_at(ld, line, CS_ENOMEM, "out of memory");
}

/* Sets ld->key to its first base bytes plus "." and the key s[0..n). */
static int push_key(loader *ld, size_t base, const char *s, size_t n,
                    size_t line) {
  if (n == 0) return fail_at(ld, line, CS_EINVAL, "empty key");
  if (memchr(s, '\0', n) != NULL)
    return fail_at(ld, line, CS_EINVAL, "key contains a NUL byte");
  ld->key.len = base;
  if ((base > 0 && cs_buf_append(&ld->key, ".", 1) != 0) ||
      cs_buf_append(&ld->key, s, n) != 0 || cs_buf_reserve(&ld->key, 1) != 0)
    return fail_at(ld, line, CS_ENOMEM, "out of memory");
  ld->key.data[ld->key.len] = '\0';
  return 0;
}

static int load_mapping(loader *ld, int depth);

/* Reads the value of the current key, which was read at line. */
static int load_value(loader *ld, size_t line, int depth) {
  yaml_event_t ev;
  int rc = next_event(ld, &ev);
  if (rc) return rc;
  yaml_event_type_t type = ev.type;
  if (type == YAML_SCALAR_EVENT) rc = load_leaf(ld, line, &ev);
  yaml_event_delete(&ev);
  if (type == YAML_SCALAR_EVENT) return rc;
  if (type == YAML_MAPPING_START_EVENT) {
    if (depth >= MAX_DEPTH)
      return fail_at(ld, line, CS_EINVAL, "mappings nested too deeply");
    return load_mapping(ld, depth + 1);
  }
  if (find_key(ld->key.data) < 0) {
    char msg[512];
    unknown_key_msg(msg, sizeof(msg), ld->key.data);
    return fail_at(ld, line, CS_EINVAL, "%s", msg);
  }
  if (type == YAML_ALIAS_EVENT)
    return fail_at(ld, line, CS_EINVAL,
                   "'%s' is a YAML alias; aliases are not supported",
                   ld->key.data);
  return fail_at(ld, line, CS_EINVAL, "'%s' takes a single value, not %s",
                 ld->key.data, node_kind(type));
}

/* Reads the pairs of a mapping whose start event was consumed, up to and
 * including its end event. Keys are joined to the enclosing ones by dots. */
static int load_mapping(loader *ld, int depth) {
  size_t base = ld->key.len;
  for (;;) {
    yaml_event_t ev;
    int rc = next_event(ld, &ev);
    if (rc) return rc;
    size_t line = ev.start_mark.line + 1;
    if (ev.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&ev);
      ld->key.len = base;
      if (ld->key.data != NULL) ld->key.data[base] = '\0';
      return 0;
    }
    if (ev.type != YAML_SCALAR_EVENT) {
      const char *kind = node_kind(ev.type);
      yaml_event_delete(&ev);
      return fail_at(ld, line, CS_EINVAL, "a key must be a string, not %s",
                     kind);
    }
    rc = push_key(ld, base, (const char *)ev.data.scalar.value,
                  ev.data.scalar.length, line);
    yaml_event_delete(&ev);
    if (rc) return rc;
    rc = load_value(ld, line, depth);
    if (rc) return rc;
  }
}

/* Reads the whole stream: nothing, or one document whose root is a mapping
 * (or empty). */
static int load_stream(loader *ld) {
  yaml_event_t ev;
  int rc, docs = 0;
  if ((rc = next_event(ld, &ev)) != 0) return rc;
  yaml_event_delete(&ev); /* STREAM-START */
  for (;;) {
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    yaml_event_type_t type = ev.type;
    size_t line = ev.start_mark.line + 1;
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT) return 0;
    if (docs++ > 0)
      return fail_at(ld, line, CS_EINVAL,
                     "more than one YAML document (remove the second '---')");
    /* The root node. */
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    type = ev.type;
    line = ev.start_mark.line + 1;
    int empty = type == YAML_SCALAR_EVENT && is_null(&ev);
    yaml_event_delete(&ev);
    if (type == YAML_MAPPING_START_EVENT) {
      if ((rc = load_mapping(ld, 0)) != 0) return rc;
    } else if (!empty) {
      return fail_at(ld, line, CS_EINVAL,
                     "expected a mapping of configuration keys, not %s",
                     node_kind(type));
    }
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    yaml_event_delete(&ev); /* DOCUMENT-END */
  }
}

/* Reads the whole stream once for its syntax alone, so that a syntax error
 * anywhere is reported before any error in the meaning of the keys. */
static int check_syntax(loader *ld) {
  for (;;) {
    yaml_event_t ev;
    int rc = next_event(ld, &ev);
    if (rc) return rc;
    yaml_event_type_t type = ev.type;
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT) return 0;
  }
}

/* Reads the file at ld->path into ld->text. Returns 0 or an error. */
static int read_file(loader *ld) {
  struct stat st;
  int rc = 0;
  FILE *f = fopen(ld->path, "rb");
  if (f == NULL) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR)
      return fail_at(ld, 0, CS_ENOTFOUND, "no such file");
    if (e == EISDIR)
      return fail_at(ld, 0, CS_EINVAL, "is a directory, not a file");
    return fail_at(ld, 0, CS_EIO, "%s", strerror(e));
  }
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = fail_at(ld, 0, CS_EINVAL, "is a directory, not a file");
    goto close_file;
  }
  for (;;) {
    if (cs_buf_reserve(&ld->text, 4096) != 0) {
      rc = fail_at(ld, 0, CS_ENOMEM, "out of memory");
      goto close_file;
    }
    size_t got =
        fread(ld->text.data + ld->text.len, 1, ld->text.cap - ld->text.len, f);
    ld->text.len += got;
    if (ld->text.len > MAX_FILE_SIZE) {
      rc = fail_at(ld, 0, CS_EINVAL,
                   "larger than %d MiB; not a "
                   "configuration file",
                   MAX_FILE_SIZE >> 20);
      goto close_file;
    }
    if (got > 0) continue;
    if (ferror(f)) rc = fail_at(ld, 0, CS_EIO, "%s", strerror(errno));
    break;
  }
close_file:
  fclose(f);
  return rc;
}

/* Points a freshly initialised parser at the text read. */
static int start_parser(loader *ld) {
  if (!yaml_parser_initialize(&ld->parser))
    return fail_at(ld, 0, CS_ENOMEM, "out of memory");
  yaml_parser_set_input_string(
      &ld->parser, (const unsigned char *)ld->text.data, ld->text.len);
  return 0;
}

int cs_config_load_file(cs_config *c, const char *path, char *err,
                        size_t errlen) {
  loader ld;
  int rc;

  if (err != NULL && errlen > 0) err[0] = '\0';
  if (c == NULL || path == NULL) {
    put_err(err, errlen, "no configuration file given");
    return CS_EINVAL;
  }
  memset(&ld, 0, sizeof(ld));
  ld.path = path;
  ld.err = err;
  ld.errlen = errlen;
  if ((rc = read_file(&ld)) != 0) goto fail_read;
  if ((rc = start_parser(&ld)) != 0) goto fail_read;
  rc = check_syntax(&ld);
  yaml_parser_delete(&ld.parser);
  if (rc != 0) goto fail_read;
  if ((rc = start_parser(&ld)) != 0) goto fail_read;

  rc = load_stream(&ld);
  for (size_t i = 0; i < ld.n; i++) {
    pending *it = &ld.items[i];
    if (rc == 0)
      apply(&c->e[it->idx], it->text, it->num, CS_CONF_FILE, it->where);
    else {
      cs_free(it->text);
      cs_free(it->where);
    }
  }
  cs_free(ld.items);
  cs_buf_free(&ld.key);
  yaml_parser_delete(&ld.parser);
fail_read:
  cs_buf_free(&ld.text);
  return rc;
}

/* ================================================================ finding */

static char *join_path(const char *dir, const char *name) {
  size_t n = strlen(dir);
  int slash = n > 0 && dir[n - 1] == '/';
  return dup_printf("%s%s%s", dir, slash ? "" : "/", name);
}

static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

char *cs_config_find(const char *explicit_path) {
  struct stat st;
  if (explicit_path != NULL && explicit_path[0] != '\0') {
    if (stat(explicit_path, &st) == 0 && S_ISDIR(st.st_mode))
      return join_path(explicit_path, CS_CONFIG_FILE_NAME);
    return cs_strdup(explicit_path);
  }
  const char *dir = getenv("CSTREAM_CONF_DIR");
  if (dir != NULL && dir[0] != '\0') {
    char *p = join_path(dir, CS_CONFIG_FILE_NAME);
    if (p != NULL && is_file(p)) return p;
    cs_free(p);
  }
  if (is_file(CS_CONFIG_FILE_NAME)) return cs_strdup(CS_CONFIG_FILE_NAME);
  return NULL;
}
