/*
 * cs_rocksdb_ttl.c - state TTL in the RocksDB backend: column family names
 * that record a state's kind and TTL configuration, the compaction filter
 * that drops expired entries, and a full compaction on request.
 *
 * Names. A state's column family is "<kind>:<name>" ("value:", "list:",
 * "map:"), and for a TTL state "<kind>/ttl=<ms>,<update>,<visibility>:<name>"
 * (update "create" or "read", visibility "never" or "expired"), so the
 * configuration lives in RocksDB's MANIFEST with the state and comes back
 * with a checkpoint. The kind part never holds ':', so the first one ends it.
 *
 * Compaction filter. The column family of a TTL state gets a compaction
 * filter factory; each (sub)compaction gets its own filter, used from one
 * thread, which reads the clock (cs_ttl_now, the test clock included) and
 * drops VALUE and MAP entries whose timestamp has expired, and rewrites a
 * LIST value without its expired elements (dropping it when none is
 * left). Flushes do not run it, and a merge operand (a LIST append not yet
 * merged) is kept until a compaction has merged it into a value. What the
 * filter has not dropped yet, reads never return (cs_ttl.c checks every
 * timestamp). Memory here is malloc, not cs_malloc, as for the merge
 * operator (cs_rocksdb_open.c): it runs on RocksDB's threads.
 */
#include "cs_rocksdb_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_ttl.h"

/* ============================================================== names */

static const struct {
  const char *word;
  cs_state_kind kind;
} kinds[] = {{"value", CS_STATE_VALUE}, {"list", CS_STATE_LIST},
             {"map", CS_STATE_MAP}};

static const char *kind_word(cs_state_kind kind) {
  return kind == CS_STATE_VALUE ? "value"
         : kind == CS_STATE_LIST ? "list"
                                 : "map";
}

int cs__rocksdb_cf_name(cs_state_kind kind, const cs_ttl_config *ttl,
                        const char *name, cs_buf *out) {
  cs_buf_reset(out);
  int rc = cs_buf_printf(out, "%s", kind_word(kind));
  if (rc == 0 && ttl != NULL)
    rc = cs_buf_printf(out, "/ttl=%" PRId64 ",%s,%s", ttl->ttl_ms,
                       ttl->update == CS_TTL_ON_READ_AND_WRITE ? "read" : "create",
                       ttl->visibility == CS_TTL_NEVER_RETURN_EXPIRED ? "never"
                                                                      : "expired");
  if (rc == 0) rc = cs_buf_printf(out, ":%s", name);
  return rc;
}

/* Parses "/ttl=<ms>,<update>,<visibility>" from p[0, n) into *ttl. */
static int parse_ttl(const char *p, size_t n, cs_ttl_config *ttl) {
  char spec[64], upd[16], vis[16];
  if (n >= sizeof(spec)) return 0;
  memcpy(spec, p, n);
  spec[n] = '\0';
  long long ms;
  int used = 0;
  if (sscanf(spec, "/ttl=%lld,%15[a-z],%15[a-z]%n", &ms, upd, vis, &used) != 3 ||
      (size_t)used != n)
    return 0;
  ttl->ttl_ms = ms;
  ttl->update = strcmp(upd, "read") == 0 ? CS_TTL_ON_READ_AND_WRITE
                : strcmp(upd, "create") == 0 ? CS_TTL_ON_CREATE_AND_WRITE : 0;
  ttl->visibility = strcmp(vis, "never") == 0 ? CS_TTL_NEVER_RETURN_EXPIRED
                    : strcmp(vis, "expired") == 0
                        ? CS_TTL_RETURN_EXPIRED_IF_NOT_CLEANED_UP : 0;
  return cs_ttl_config_valid(ttl);
}

int cs__rocksdb_parse_cf_name(const char *cfname, const char **name,
                              int *has_ttl, cs_ttl_config *ttl) {
  const char *colon = strchr(cfname, ':');
  if (colon == NULL) return 0;
  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    size_t n = strlen(kinds[i].word);
    if (strncmp(cfname, kinds[i].word, n) != 0) continue;
    if (cfname + n == colon) {
      *has_ttl = 0;
    } else if (parse_ttl(cfname + n, (size_t)(colon - cfname) - n, ttl)) {
      *has_ttl = 1;
    } else {
      continue;
    }
    *name = colon + 1;
    return kinds[i].kind;
  }
  return 0;
}

/* ================================================== compaction filter */

typedef struct ttl_filter {
  cs_ttl_config ttl;
  cs_state_kind kind;
  char *buf; /* a LIST value being rewritten; handed to RocksDB, which copies */
  size_t cap;
} ttl_filter;

/* Filters a LIST value: 1 to drop it, 0 to keep it as it is, or 0 with
 * *changed set and *out the value without its expired elements. A value
 * that does not parse is kept. */
static unsigned char filter_list(ttl_filter *f, int64_t now, const char *v,
                                 size_t n, char **out, size_t *out_len,
                                 unsigned char *changed) {
  size_t kept = 0, dropped = 0;
  for (size_t off = 0; off < n;) {
    long e = cs_ttl_list_elem_len(v + off, n - off);
    if (e < 0) return 0;
    if (cs_ttl_expired(&f->ttl, cs_ttl_get_ts(v + off), now)) dropped++;
    else kept += (size_t)e;
    off += (size_t)e;
  }
  if (dropped == 0) return 0;
  if (kept == 0) return 1;
  if (kept > f->cap) {
    char *p = realloc(f->buf, kept);
    if (p == NULL) return 0; /* keep it; a later compaction tries again */
    f->buf = p;
    f->cap = kept;
  }
  size_t at = 0;
  for (size_t off = 0; off < n;) {
    size_t e = (size_t)cs_ttl_list_elem_len(v + off, n - off);
    if (!cs_ttl_expired(&f->ttl, cs_ttl_get_ts(v + off), now)) {
      memcpy(f->buf + at, v + off, e);
      at += e;
    }
    off += e;
  }
  *out = f->buf;
  *out_len = at;
  *changed = 1;
  return 0;
}

/* The filter: returns 1 to drop the entry. */
static unsigned char filter_entry(void *state, int level, const char *key,
                                  size_t klen, const char *v, size_t n,
                                  char **out, size_t *out_len,
                                  unsigned char *changed) {
  (void)level, (void)key, (void)klen;
  ttl_filter *f = state;
  int64_t now = cs_ttl_now();
  if (f->kind == CS_STATE_LIST)
    return filter_list(f, now, v, n, out, out_len, changed);
  cs_slice stored = {v, n};
  return cs_ttl_check(&f->ttl, now, stored, NULL) == 1;
}

static void filter_destroy(void *state) {
  ttl_filter *f = state;
  free(f->buf);
  free(f);
}

/* Stored in SST properties: never rename. */
static const char *filter_name(void *state) {
  (void)state;
  return "cstream.ttl";
}

/* The factory's state is the filter every compaction copies. */
static rocksdb_compactionfilter_t *make_filter(
    void *state, rocksdb_compactionfiltercontext_t *ctx) {
  (void)ctx;
  ttl_filter *f = malloc(sizeof(*f));
  if (f == NULL) return NULL; /* this compaction goes without a filter */
  *f = *(const ttl_filter *)state;
  f->buf = NULL;
  f->cap = 0;
  return rocksdb_compactionfilter_create(f, filter_destroy, filter_entry,
                                         filter_name);
}

static void factory_destroy(void *state) { free(state); }

rocksdb_options_t *cs__rocksdb_ttl_options(rocksdb_options_t *base,
                                           cs_state_kind kind,
                                           const cs_ttl_config *ttl) {
  ttl_filter *proto = malloc(sizeof(*proto));
  if (proto == NULL) return NULL;
  proto->ttl = *ttl;
  proto->kind = kind;
  proto->buf = NULL;
  proto->cap = 0;
  rocksdb_options_t *o = rocksdb_options_create_copy(base);
  /* o owns the factory (a shared pointer, which the column family shares) */
  rocksdb_options_set_compaction_filter_factory(
      o, rocksdb_compactionfilterfactory_create(proto, factory_destroy,
                                                make_filter, filter_name));
  return o;
}

/* ========================================================= compaction */

int cs_rocksdb_compact(cs_backend *be, char *err, size_t errlen) {
  cs__rocksdb_errf(err, errlen, 0, "%s", "");
  if (be == NULL || be->ops != &cs__rocksdb_ops)
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "not a RocksDB backend");
  cs__rocksdb *r = container_of(be, cs__rocksdb, base);
  if (r->readonly)
    return cs__rocksdb_errf(err, errlen, CS_EINVAL, "the backend is read-only");
  /* written out and emptied, so that later reads see what the filters left */
  if (cs__rocksdb_cache_flush(r, 1))
    return cs__rocksdb_errf(err, errlen, CS_EIO, "writing the value cache failed");
  rocksdb_compactoptions_t *co = rocksdb_compactoptions_create();
  /* rewrite the last level too, so that every entry passes the filter */
  rocksdb_compactoptions_set_bottommost_level_compaction(co, 2); /* kForce */
  for (int i = 0; i < r->nstates; i++)
    rocksdb_compact_range_cf_opt(r->db, r->states[i].cf, co, NULL, 0, NULL, 0);
  rocksdb_compactoptions_destroy(co);
  return 0;
}
