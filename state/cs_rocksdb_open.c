/*
 * cs_rocksdb_open.c - making a RocksDB backend: the options every column
 * family shares (block cache, bloom filters, memtable budget), the merge
 * operator of LIST appends, and opening an instance, new or existing
 * (read-write or read-only), whose column families are its states.
 *
 * The merge operator's results are allocated with malloc, not cs_malloc: they
 * are made on RocksDB's background threads during compactions, and a failure
 * injected there (cs_fail_nth_alloc) would put the instance into a permanent
 * background-error state instead of failing one call.
 */
#include "cs_rocksdb_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define MiB ((size_t)1 << 20)

/* ===================================================== merge operator */

/* LIST append: the merge of operands is their concatenation, after the
 * existing value when there is one. Runs on RocksDB's threads; see the top
 * of the file for why this is malloc. */
static char *concat(const char *head, size_t hlen, const char *const *ops,
                    const size_t *lens, int n, unsigned char *success,
                    size_t *out_len) {
  size_t total = hlen;
  for (int i = 0; i < n; i++) {
    if (lens[i] > SIZE_MAX - total) goto fail;
    total += lens[i];
  }
  char *p = malloc(total ? total : 1);
  if (p == NULL) goto fail;
  size_t at = 0;
  if (hlen) memcpy(p, head, hlen);
  at = hlen;
  for (int i = 0; i < n; i++) {
    if (lens[i]) memcpy(p + at, ops[i], lens[i]);
    at += lens[i];
  }
  *success = 1;
  *out_len = total;
  return p;
fail:
  *success = 0;
  *out_len = 0;
  return NULL;
}

static char *merge_full(void *state, const char *key, size_t klen,
                        const char *existing, size_t elen,
                        const char *const *ops, const size_t *lens, int n,
                        unsigned char *success, size_t *out_len) {
  (void)state, (void)key, (void)klen;
  return concat(existing, existing ? elen : 0, ops, lens, n, success,
                out_len);
}

static char *merge_partial(void *state, const char *key, size_t klen,
                           const char *const *ops, const size_t *lens, int n,
                           unsigned char *success, size_t *out_len) {
  (void)state, (void)key, (void)klen;
  return concat(NULL, 0, ops, lens, n, success, out_len);
}

static void merge_delete(void *state, const char *value, size_t len) {
  (void)state, (void)len;
  free((void *)value);
}

static void merge_destructor(void *state) { (void)state; }

/* Stored in SST properties: never rename. */
static const char *merge_name(void *state) {
  (void)state;
  return "cstream.concat";
}

/* ============================================================ options */

/* Builds the options every column family of an instance shares: the block
 * cache, bloom filters, memtable budget, merge operator. *cache is ours to
 * destroy after the instance closes. */
static int make_options(const cs_rocksdb_options *o, rocksdb_options_t **out,
                        rocksdb_cache_t **cache, char *err, size_t errlen) {
  cs_rocksdb_options d = {0};
  if (o) d = *o;
  if (d.block_cache_bytes == 0) d.block_cache_bytes = 64 * MiB;
  if (d.write_buffer_bytes == 0) d.write_buffer_bytes = 16 * MiB;
  if (d.max_write_buffers <= 0) d.max_write_buffers = 2;
  if (d.total_write_buffer_bytes == 0)
    d.total_write_buffer_bytes =
        d.write_buffer_bytes * (size_t)d.max_write_buffers;
  if (d.max_open_files <= 0) d.max_open_files = -1;
  if (d.max_background_jobs <= 0) d.max_background_jobs = 2;

  /* avoid_flush_during_shutdown has no setter in the C API of 7.8. The
   * directory is removed after close, so a flush then is wasted work. */
  rocksdb_options_t *base = rocksdb_options_create();
  rocksdb_options_t *opts = rocksdb_options_create();
  char *rerr = NULL;
  rocksdb_get_options_from_string(base, "avoid_flush_during_shutdown=true",
                                  opts, &rerr);
  rocksdb_options_destroy(base);
  if (rerr) {
    rocksdb_options_destroy(opts);
    return cs__rocksdb_rocks_errf(err, errlen, CS_EINVAL, "options",
                                  "(avoid_flush_during_shutdown)", rerr);
  }
  rocksdb_options_set_write_buffer_size(opts, d.write_buffer_bytes);
  rocksdb_options_set_max_write_buffer_number(opts, d.max_write_buffers);
  rocksdb_options_set_db_write_buffer_size(opts, d.total_write_buffer_bytes);
  rocksdb_options_set_level_compaction_dynamic_level_bytes(opts, 1);
  rocksdb_options_set_max_background_jobs(opts, d.max_background_jobs);
  rocksdb_options_set_max_open_files(opts, d.max_open_files);
  /* A checkpoint copies the MANIFEST: keep it small by rolling it. */
  rocksdb_options_set_max_manifest_file_size(opts, 8 * MiB);
  /* The LOG goes with the working directory; keep warnings only. */
  rocksdb_options_set_info_log_level(opts, 2);
  rocksdb_options_set_max_log_file_size(opts, MiB);
  rocksdb_options_set_keep_log_file_num(opts, 2);

  rocksdb_mergeoperator_t *mo = rocksdb_mergeoperator_create(
      NULL, merge_destructor, merge_full, merge_partial, merge_delete,
      merge_name);
  rocksdb_options_set_merge_operator(opts, mo); /* opts owns mo */

  *cache = rocksdb_cache_create_lru(d.block_cache_bytes);
  rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
  rocksdb_block_based_options_set_block_cache(t, *cache);
  /* t owns the policy; the factory copies t. */
  rocksdb_block_based_options_set_filter_policy(
      t, rocksdb_filterpolicy_create_bloom_full(10));
  rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
  rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t,
                                                                          1);
  rocksdb_options_set_block_based_table_factory(opts, t);
  rocksdb_block_based_options_destroy(t);
  *out = opts;
  return 0;
}

/* ============================================================ lineage */

/* 64 random bits as 16 hex digits: from the kernel's pool, or from the
 * clock, the pid and an address when that fails. */
static void new_lineage(char out[17]) {
  uint64_t v = 0;
  if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed[3] = {(uint64_t)ts.tv_sec * 1000000000u +
                            (uint64_t)ts.tv_nsec,
                        (uint64_t)getpid(), (uint64_t)(uintptr_t)out};
    v = XXH3_64bits(seed, sizeof(seed));
  }
  snprintf(out, 17, "%016llx", (unsigned long long)v);
}

/* =========================================================== instance */

typedef struct cfent {
  uint32_t id;
  rocksdb_column_family_handle_t *cf;
  const char *cfname;
} cfent;

static int cfent_cmp(const void *pa, const void *pb) {
  const cfent *a = pa, *b = pb;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* Fills cfopts[i] with the options of column family names[i]: the
 * instance's, or for a TTL state a copy with its compaction filter.
 * Returns 0 or CS_ENOMEM; free with free_cf_options either way. */
static int cf_options(cs__rocksdb *r, char **names, size_t n,
                      const rocksdb_options_t **cfopts) {
  for (size_t i = 0; i < n; i++) {
    const char *name;
    int has_ttl = 0;
    cs_ttl_config ttl;
    int kind = cs__rocksdb_parse_cf_name(names[i], &name, &has_ttl, &ttl);
    cfopts[i] = r->opts;
    if (kind && has_ttl) {
      cfopts[i] = cs__rocksdb_ttl_options(r->opts, (cs_state_kind)kind, &ttl);
      if (cfopts[i] == NULL) return CS_ENOMEM;
    }
  }
  return 0;
}

static void free_cf_options(cs__rocksdb *r, const rocksdb_options_t **cfopts,
                            size_t n) {
  for (size_t i = 0; cfopts && i < n; i++)
    if (cfopts[i] && cfopts[i] != r->opts)
      rocksdb_options_destroy((rocksdb_options_t *)cfopts[i]);
  cs_free(cfopts);
}

/* Makes the state of the column family e (its name parsed) the next of r;
 * the handle becomes the state's. Returns 0, CS_EDECODE for a name that is
 * not ours or a state name seen twice, or CS_ENOMEM. */
static int add_state(cs__rocksdb *r, cfent *e, char *err, size_t errlen) {
  const char *name;
  int has_ttl = 0;
  cs_ttl_config ttl;
  int kind = cs__rocksdb_parse_cf_name(e->cfname, &name, &has_ttl, &ttl);
  int dup = 0;
  for (int j = 0; kind && j < r->nstates; j++)
    dup |= strcmp(r->states[j].name, name) == 0;
  if (kind == 0 || dup)
    return cs__rocksdb_errf(err, errlen, CS_EDECODE,
                            "unexpected column family '%s' in %s", e->cfname,
                            r->workdir);
  cs__rocksdb_state *s = &r->states[r->nstates];
  memset(s, 0, sizeof(*s));
  if ((s->name = cs_strdup(name)) == NULL)
    return cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
  s->kind = (cs_state_kind)kind;
  s->has_ttl = has_ttl;
  if (has_ttl) s->ttl = ttl;
  s->cf = e->cf;
  e->cf = NULL; /* now the state's */
  r->nstates++;
  return 0;
}

/* Opens the instance in r->workdir with every column family it has and
 * rebuilds the state table from their names, ids in creation order. */
static int open_existing(cs__rocksdb *r, char *err, size_t errlen) {
  const char *dir = r->workdir;
  char *rerr = NULL;
  size_t n = 0;
  int rc = 0;
  char **names = rocksdb_list_column_families(r->opts, dir, &n, &rerr);
  if (rerr) {
    rocksdb_list_column_families_destroy(names, n);
    return cs__rocksdb_rocks_errf(err, errlen, CS_EIO, "open", dir, rerr);
  }
  const rocksdb_options_t **cfopts = cs_calloc(n, sizeof(*cfopts));
  rocksdb_column_family_handle_t **handles = cs_calloc(n, sizeof(*handles));
  cfent *ents = cs_calloc(n, sizeof(*ents));
  if (cfopts == NULL || handles == NULL || ents == NULL) {
    rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
    goto fail_alloc;
  }
  if (cf_options(r, names, n, cfopts)) {
    rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
    goto fail_alloc;
  }
  if (r->readonly)
    r->db = rocksdb_open_for_read_only_column_families(
        r->opts, dir, (int)n, (const char *const *)names, cfopts, handles, 0,
        &rerr);
  else
    r->db = rocksdb_open_column_families(r->opts, dir, (int)n,
                                         (const char *const *)names, cfopts,
                                         handles, &rerr);
  if (rerr) {
    rc = cs__rocksdb_rocks_errf(err, errlen, CS_EIO, "open", dir, rerr);
    goto fail_alloc;
  }

  /* Column families in creation order; "default" holds nothing of ours. */
  size_t ns = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(names[i], "default") == 0) {
      rocksdb_column_family_handle_destroy(handles[i]);
      handles[i] = NULL;
      continue;
    }
    ents[ns].id = rocksdb_column_family_handle_get_id(handles[i]);
    ents[ns].cf = handles[i];
    ents[ns].cfname = names[i];
    ns++;
  }
  qsort(ents, ns, sizeof(*ents), cfent_cmp);
  if (ns > 0) {
    r->states = cs_calloc(ns, sizeof(cs__rocksdb_state));
    if (r->states == NULL) {
      rc = cs__rocksdb_errf(err, errlen, CS_ENOMEM, "out of memory");
      goto fail_states;
    }
    r->cap = (int)ns;
  }
  for (size_t i = 0; i < ns; i++)
    if ((rc = add_state(r, &ents[i], err, errlen)) != 0) goto fail_states;
  cs_free(ents);
  cs_free(handles);
  free_cf_options(r, cfopts, n);
  rocksdb_list_column_families_destroy(names, n);
  return 0;

fail_states:
  for (size_t i = 0; i < ns; i++)
    if (ents[i].cf) rocksdb_column_family_handle_destroy(ents[i].cf);
  for (int j = 0; j < r->nstates; j++) {
    rocksdb_column_family_handle_destroy(r->states[j].cf);
    cs_free(r->states[j].name);
  }
  cs_free(r->states);
  r->states = NULL;
  r->nstates = r->cap = 0;
  rocksdb_close(r->db);
  r->db = NULL;
fail_alloc:
  cs_free(ents);
  cs_free(handles);
  free_cf_options(r, cfopts, n);
  rocksdb_list_column_families_destroy(names, n);
  return rc;
}

/* Makes a backend on the RocksDB instance in dir (a prepared directory):
 * a new one, or the one there, read-write or read-only. */
int cs__rocksdb_open_instance(const char *dir, const cs_rocksdb_options *o,
                              int mode, cs__rocksdb **out, char *err,
                              size_t errlen) {
  int rc = CS_ENOMEM;
  cs__rocksdb *r = cs_calloc(1, sizeof(cs__rocksdb));
  if (r == NULL) goto fail_alloc;
  r->base.ops = &cs__rocksdb_ops;
  if (uv_mutex_init(&r->xlock)) goto fail_lock;
  if (uv_cond_init(&r->xcond)) goto fail_cond;
  r->readonly = mode == CS__ROCKSDB_OPEN_READONLY;
  if (!r->readonly) /* 0 would mean "the default": SIZE_MAX turns it off */
    r->climit = o == NULL || o->value_cache_bytes == 0 ? 32 * MiB
                : o->value_cache_bytes == SIZE_MAX ? 0
                                                    : o->value_cache_bytes;
  if ((r->workdir = cs_strdup(dir)) == NULL) goto fail_workdir;
  new_lineage(r->lineage);
  rc = make_options(o, &r->opts, &r->cache, err, errlen);
  if (rc) goto fail_options;
  r->ro = rocksdb_readoptions_create();
  r->wo = rocksdb_writeoptions_create();
  rocksdb_writeoptions_disable_WAL(r->wo, 1);
  if (mode == CS__ROCKSDB_OPEN_NEW) {
    char *rerr = NULL;
    rocksdb_options_set_create_if_missing(r->opts, 1);
    rocksdb_options_set_error_if_exists(r->opts, 1);
    /* Nothing to load: do not start 16 file-opening threads for it. */
    rocksdb_options_set_max_file_opening_threads(r->opts, 1);
    r->db = rocksdb_open(r->opts, dir, &rerr);
    rocksdb_options_set_create_if_missing(r->opts, 0);
    rocksdb_options_set_error_if_exists(r->opts, 0);
    if (rerr)
      rc = cs__rocksdb_rocks_errf(err, errlen, CS_EIO, "open", dir, rerr);
  } else {
    rc = open_existing(r, err, errlen);
  }
  if (rc) goto fail_db;
  *out = r;
  return 0;

fail_db:
  rocksdb_readoptions_destroy(r->ro);
  rocksdb_writeoptions_destroy(r->wo);
  rocksdb_options_destroy(r->opts);
  rocksdb_cache_destroy(r->cache);
fail_options:
  cs_free(r->workdir);
fail_workdir:
  uv_cond_destroy(&r->xcond);
fail_cond:
  uv_mutex_destroy(&r->xlock);
fail_lock:
  cs_free(r);
fail_alloc:
  if (rc == CS_ENOMEM) cs__rocksdb_errf(err, errlen, rc, "out of memory");
  return rc;
}

int cs_rocksdb_backend_open(const char *workdir, const cs_rocksdb_options *o,
                            cs_backend **out, char *err, size_t errlen) {
  cs__rocksdb_errf(err, errlen, 0, "%s", "");
  if (out == NULL) return cs__rocksdb_errf(err, errlen, CS_EINVAL, "no output");
  int rc = cs__rocksdb_prepare_dir(workdir, err, errlen);
  if (rc) return rc;
  cs__rocksdb *r;
  rc = cs__rocksdb_open_instance(workdir, o, CS__ROCKSDB_OPEN_NEW, &r, err,
                                 errlen);
  if (rc) {
    cs__rocksdb_remove_workdir(workdir);
    return rc;
  }
  *out = &r->base;
  return 0;
}
