/*
 * cs_config.c - the key table, the value parsers, the precedence rules,
 * printing and help of the job configuration. Finding and loading
 * cstream-conf.yaml is in cs_config_file.c; the two share cs_config_int.h.
 */
#include "host/config/cs_config.h"
#include "host/config/cs_config_int.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>

/* ================================================================== table */

typedef enum ktype { K_ENUM, K_BOOL, K_INT, K_DURATION, K_SIZE, K_PATH, K_STRING, K_ADDR } ktype;

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
    {"cluster.group", NULL, K_STRING, NULL, 0, 0, NULL, "one process runs the job",
     "run as one process of the group NAME: the processes of a group share "
     "the job through Kafka (docs/scale-out.md)"},
    {"cluster.partitions", NULL, K_INT, "4", 1, 32768, NULL, NULL,
     "partitions of each repartition topic of a group: the job's logical "
     "parallelism, fixed for its life"},
    {"cluster.session-timeout", NULL, K_DURATION, "10 s", 1000, 3600000, NULL, NULL,
     "how long the group waits for a silent process before its share goes "
     "to the others"},
    {"kafka.bootstrap-servers", NULL, K_STRING, NULL, 0, 0, NULL,
     "each kafka_source/kafka_sink names its own",
     "Kafka brokers (host:port,...) for kafka_source and kafka_sink that "
     "give no bootstrap_servers"},
    {"kafka.connect-timeout", NULL, K_DURATION, "30 s", 1, NO_MAX, NULL, NULL,
     "how long kafka_source and kafka_sink wait for unreachable brokers "
     "(at start and when every broker is down) before the job fails"},
    {"kafka.transaction-timeout", NULL, K_DURATION, "15 min", 1000, NO_MAX,
     NULL, NULL,
     "transaction.timeout.ms of kafka_sink's exactly-once producers: the "
     "broker aborts a transaction left open longer (keep it above the "
     "checkpoint interval plus the restart time)"},
    {"pipeline.auto-watermark-interval", NULL, K_DURATION, "200 ms", 1, NO_MAX,
     NULL, NULL,
     "how often watermark generators (assign_timestamps_and_watermarks) "
     "emit a watermark"},
    {"pipeline.max-parallelism", NULL, K_INT, "128", 1, 32768, NULL, NULL,
     "number of key groups: the upper limit when rescaling keyed state"},
    {"pipeline.max-record-size", NULL, K_SIZE, "128 mb", 1, NO_MAX, NULL, NULL,
     "largest record, encoded, that may cross to another subtask; a larger "
     "one fails the job naming the operator and the record"},
    {"source.max-line-length", NULL, K_SIZE, "64 mb", 1, NO_MAX, NULL, NULL,
     "longest line read_text_file and socket_text_stream accept; a longer "
     "one fails the job naming the source and where the line starts"},
    {"taskmanager.memory.lua.max", NULL, K_SIZE, "1 gb", 0, NO_MAX, NULL, NULL,
     "memory each worker's Lua state may hold; user code that needs more "
     "fails the job naming the operator and the record; 0 turns the cap off"},
    {"rest.address", NULL, K_ADDR, "127.0.0.1", 0, 0, NULL, NULL,
     "the address the REST endpoint (rest.port) listens on"},
    {"rest.port", NULL, K_INT, NULL, 0, 65535, NULL, "no REST endpoint",
     "port of the REST endpoint (/metrics, /jobs/overview, /checkpoints and the "
     "web page); 0 picks a free one"},
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
int cs__config_find_key(const char *name) {
  if (name == NULL) return -1;
  for (size_t i = 0; i < NKEYS; i++) {
    if (strcmp(keys[i].name, name) == 0) return (int)i;
    if (keys[i].alias != NULL && strcmp(keys[i].alias, name) == 0)
      return (int)i;
  }
  return -1;
}

/* Returns the name of key idx, a static string. */
const char *cs__config_key_name(int idx) { return keys[idx].name; }

/* Returns the alias of key idx, a static string, or NULL. */
const char *cs__config_key_alias(int idx) { return keys[idx].alias; }

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
void cs__config_unknown_key(char *msg, size_t msglen, const char *name) {
  const char *s = suggest_key(name);
  if (s != NULL)
    snprintf(msg, msglen, "unknown key '%s' (did you mean '%s'?)", name, s);
  else
    snprintf(msg, msglen, "unknown key '%s'", name);
}

/* ================================================================ parsing */

/* Formats into err when there is room for anything. */
void cs__config_put_err(char *err, size_t errlen, const char *fmt, ...) {
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

/* Returns a cs_malloc'd formatted string, or NULL when out of memory. */
char *cs__config_dup_printf(const char *fmt, ...) {
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
  return cs__config_dup_printf("%lld %s", v / u->mult, u->label);
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
  /* Trailing slashes go, and so does whitespace they exposed: the value
   * was trimmed, and the normalised text must read back as itself. */
  if (!is_file) {
    size_t len = n;
    while (len > 1 && (s[len - 1] == '/' || is_space(s[len - 1]))) len--;
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
  while (o > 1 && (d[o - 1] == '/' || is_space(d[o - 1]))) o--;
  d[o] = '\0';
  *out = d;
  return 0;
}

/* Parses the value s[0..n) of key idx, named keyname in messages. On success
 * sets *text (cs_malloc'd, caller owns) and *num and returns 0; else returns
 * CS_EINVAL with msg set, or CS_ENOMEM. */
int cs__config_parse_value(int idx, const char *keyname, const char *s,
                           size_t n, char **text, long long *num, char *msg,
                           size_t msglen) {
  const keydef *k = &keys[idx];
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
      *text = cs__config_dup_printf("%lld", v);
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
  case K_STRING:
    if (n == 0) {
      snprintf(why, sizeof(why), "expected a non-empty string");
      goto bad;
    }
    *text = cs__config_dup_printf("%.*s", (int)n, s);
    return *text != NULL ? 0 : CS_ENOMEM;
  case K_ADDR: {
    char a[64];
    unsigned char bin[16];
    snprintf(a, sizeof(a), "%.*s", (int)(n < sizeof(a) ? n : sizeof(a) - 1), s);
    if (n < sizeof(a) && (inet_pton(AF_INET, a, bin) == 1 || inet_pton(AF_INET6, a, bin) == 1))
      return (*text = cs_strdup(a)) ? 0 : CS_ENOMEM;
    snprintf(why, sizeof(why), "expected an IPv4 or IPv6 address such as 127.0.0.1, "
             "0.0.0.0 or ::1");
    goto bad;
  }
  }
  snprintf(why, sizeof(why), "unsupported type");
bad:
  snprintf(msg, msglen, "invalid value '%s' for '%s': %s", shown, keyname, why);
  return CS_EINVAL;
}

/* ============================================================== the store */

/* Stores a value of key idx at origin unless the key holds one of higher
 * origin. Takes ownership of text and where either way. */
void cs__config_apply(cs_config *c, int idx, char *text, long long num,
                      cs_conf_origin origin, char *where) {
  entry *e = &c->e[idx];
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
    if (cs__config_parse_value((int)i, keys[i].name, keys[i].def,
                               strlen(keys[i].def), &e->text, &e->num, msg,
                               sizeof(msg)) != 0) {
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
    cs__config_put_err(err, errlen, "%s%sinvalid configuration call", pre, sep);
    return CS_EINVAL;
  }
  int idx = cs__config_find_key(key);
  if (idx < 0) {
    cs__config_unknown_key(msg, sizeof(msg), key);
    cs__config_put_err(err, errlen, "%s%s%s", pre, sep, msg);
    return CS_EINVAL;
  }
  if (value == NULL) {
    cs__config_put_err(err, errlen, "%s%smissing value for '%s'", pre, sep,
                       key);
    return CS_EINVAL;
  }
  rc = cs__config_parse_value(idx, key, value, strlen(value), &text, &num, msg,
                              sizeof(msg));
  if (rc == CS_EINVAL) {
    cs__config_put_err(err, errlen, "%s%s%s", pre, sep, msg);
    return rc;
  }
  if (rc != 0) goto fail_oom;
  if (where != NULL && (wcopy = cs_strdup(where)) == NULL) goto fail_oom;
  cs__config_apply(c, idx, text, num, origin, wcopy);
  return 0;

fail_oom:
  cs_free(text);
  cs__config_put_err(err, errlen, "%s%sout of memory", pre, sep);
  return CS_ENOMEM;
}

/* ================================================================ getters */

static const entry *lookup(const cs_config *c, const char *key) {
  int idx = c != NULL ? cs__config_find_key(key) : -1;
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
  case K_STRING:
    return "string";
  case K_ADDR:
    return "IP address";
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
