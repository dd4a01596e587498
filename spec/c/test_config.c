/*
 * test_config.c - pins the contract of host/cs_config.h: defaults, the YAML
 * loader (flat and nested keys, every error with file and line), value
 * parsing per type, precedence in every order, printing and finding the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/config/cs_config.h"
#include "cs_test.h"

/* ---------------------------------------------------------------- helpers */

/* Writes content to a new file under /tmp; path receives its name. */
static void write_temp(char *path, size_t pathlen, const char *content) {
  snprintf(path, pathlen, "/tmp/cs_conf_XXXXXX");
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd < 0) return;
  size_t n = strlen(content);
  CHECK_EQ_INT(write(fd, content, n), (long long)n);
  close(fd);
}

/* Loads content as a configuration file. The temporary file's name in err
 * is replaced by "cstream-conf.yaml" so messages can be compared whole. */
static int load_str(cs_config *c, const char *content, char *err,
                    size_t errlen) {
  char path[64], tmp[512];
  write_temp(path, sizeof(path), content);
  int rc = cs_config_load_file(c, path, tmp, sizeof(tmp));
  unlink(path);
  size_t pl = strlen(path);
  if (strncmp(tmp, path, pl) == 0)
    snprintf(err, errlen, "cstream-conf.yaml%s", tmp + pl);
  else
    snprintf(err, errlen, "%s", tmp);
  return rc;
}

/* Checks that content fails to load with CS_EINVAL and exactly message. */
static void check_load_error(const char *content, const char *want, int line) {
  char err[512];
  cs_config *c = cs_config_create();
  int rc = load_str(c, content, err, sizeof(err));
  if (rc != CS_EINVAL || strcmp(err, want) != 0) {
    fprintf(stderr, "%s:%d: load gave %d \"%s\", want \"%s\"\n", __FILE__, line,
            rc, err, want);
    cs_test_failures++;
  }
  cs_config_destroy(c);
}
#define LOAD_ERROR(content, want) check_load_error(content, want, __LINE__)

/* Checks that content fails to load with a message starting with want. */
static void check_load_error_prefix(const char *content, const char *want,
                                    int line) {
  char err[512];
  cs_config *c = cs_config_create();
  int rc = load_str(c, content, err, sizeof(err));
  if (rc != CS_EINVAL || strncmp(err, want, strlen(want)) != 0) {
    fprintf(stderr, "%s:%d: load gave %d \"%s\", want prefix \"%s\"\n",
            __FILE__, line, rc, err, want);
    cs_test_failures++;
  }
  cs_config_destroy(c);
}
#define LOAD_ERROR_PREFIX(content, want) \
  check_load_error_prefix(content, want, __LINE__)

/* Sets key=value at CS_CONF_FLAG on a fresh config and checks the result:
 * want_rc, and on success the normalised text and number. */
static void check_value(const char *key, const char *value, int want_rc,
                        const char *want_text, long long want_num, int line) {
  char err[512] = "";
  cs_config *c = cs_config_create();
  int rc =
      cs_config_set(c, key, value, CS_CONF_FLAG, "--test", err, sizeof(err));
  if (rc != want_rc) {
    fprintf(stderr, "%s:%d: %s=\"%s\" gave %d (%s), want %d\n", __FILE__, line,
            key, value, rc, err, want_rc);
    cs_test_failures++;
  } else if (rc == 0) {
    const char *t = cs_config_str(c, key);
    long long n = cs_config_int(c, key);
    if (t == NULL || strcmp(t, want_text) != 0 || n != want_num) {
      fprintf(stderr, "%s:%d: %s=\"%s\" gave \"%s\" %lld, want \"%s\" %lld\n",
              __FILE__, line, key, value, t ? t : "(null)", n, want_text,
              want_num);
      cs_test_failures++;
    }
  } else if (strncmp(err, "--test: invalid value '", 23) != 0 ||
             strstr(err, key) == NULL) {
    fprintf(stderr, "%s:%d: %s=\"%s\": message \"%s\" does not name the key\n",
            __FILE__, line, key, value, err);
    cs_test_failures++;
  }
  cs_config_destroy(c);
}
#define GOOD(key, value, text, num) \
  check_value(key, value, 0, text, num, __LINE__)
#define BAD(key, value) check_value(key, value, CS_EINVAL, NULL, 0, __LINE__)

/* ---------------------------------------------------------------- defaults */

static void test_defaults(void) {
  cs_config *c = cs_config_create();
  CHECK(c != NULL);
  CHECK_EQ_STR(cs_config_backend(c), "memory");
  CHECK_EQ_STR(cs_config_str(c, "state.backend"), "memory");
  CHECK_EQ_STR(cs_config_str(c, "state.backend.type"), "memory");
  CHECK(cs_config_str(c, "state.checkpoints.dir") == NULL);
  CHECK(cs_config_str(c, "state.savepoints.dir") == NULL);
  CHECK(cs_config_str(c, "state.backend.rocksdb.localdir") == NULL);
  CHECK_EQ_STR(cs_config_str(c, "state.backend.incremental"), "false");
  CHECK_EQ_INT(cs_config_int(c, "state.backend.incremental"), 0);
  CHECK_EQ_INT(cs_config_int(c, "state.checkpoints.num-retained"), 1);
  CHECK_EQ_INT(cs_config_int(c, "state.backend.memory.max-state-size"),
               5 * 1024 * 1024);
  CHECK_EQ_STR(cs_config_str(c, "state.backend.memory.max-state-size"), "5 mb");
  CHECK_EQ_INT(cs_config_int(c, "state.backend.rocksdb.block.cache-size"),
               64LL << 20);
  CHECK_EQ_INT(cs_config_int(c, "state.backend.rocksdb.writebuffer.size"),
               16LL << 20);
  CHECK(!cs_config_is_set(c, "execution.checkpointing.interval"));
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.interval"), 0);
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.timeout"), 600000);
  CHECK_EQ_STR(cs_config_str(c, "execution.checkpointing.timeout"), "10 min");
  CHECK_EQ_INT(
      cs_config_int(c, "execution.checkpointing.tolerable-failed-checkpoints"),
      0);
  CHECK(!cs_config_is_set(c, "parallelism.default"));
  CHECK_EQ_INT(cs_config_int(c, "parallelism.default"), 0);
  CHECK_EQ_INT(cs_config_int(c, "pipeline.max-parallelism"), 128);
  CHECK(cs_config_str(c, "restart-strategy") == NULL);
  CHECK_EQ_INT(cs_config_int(c, "restart-strategy.fixed-delay.attempts"), 3);
  CHECK_EQ_INT(cs_config_int(c, "restart-strategy.fixed-delay.delay"), 1000);
  CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_DEFAULT);
  CHECK(cs_config_where(c, "state.backend") == NULL);
  /* Unknown keys read as unset. */
  CHECK(cs_config_str(c, "no.such.key") == NULL);
  CHECK_EQ_INT(cs_config_int(c, "no.such.key"), 0);
  CHECK(!cs_config_is_set(c, "no.such.key"));
  cs_config_destroy(c);
  cs_config_destroy(NULL);
}

/* ------------------------------------------------------------------ files */

static void test_flat_file(void) {
  char err[512];
  cs_config *c = cs_config_create();
  int rc = load_str(c,
                    "# a Flink-style file\n"
                    "state.backend: rocksdb\n"
                    "state.checkpoints.dir: file:///tmp/ckpt\n"
                    "state.backend.incremental: true\n"
                    "execution.checkpointing.interval: 10s\n"
                    "state.checkpoints.num-retained: 3\n"
                    "parallelism.default: 4\n"
                    "restart-strategy: fixed-delay\n"
                    "restart-strategy.fixed-delay.delay: 500 ms\n"
                    "state.backend.rocksdb.block.cache-size: 128m\n",
                    err, sizeof(err));
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
  CHECK_EQ_STR(cs_config_str(c, "state.checkpoints.dir"), "/tmp/ckpt");
  CHECK_EQ_INT(cs_config_int(c, "state.backend.incremental"), 1);
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.interval"), 10000);
  CHECK_EQ_INT(cs_config_int(c, "state.checkpoints.num-retained"), 3);
  CHECK_EQ_INT(cs_config_int(c, "parallelism.default"), 4);
  CHECK_EQ_STR(cs_config_str(c, "restart-strategy"), "fixed-delay");
  CHECK_EQ_INT(cs_config_int(c, "restart-strategy.fixed-delay.delay"), 500);
  CHECK_EQ_INT(cs_config_int(c, "state.backend.rocksdb.block.cache-size"),
               128LL << 20);
  CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_FILE);
  const char *w = cs_config_where(c, "state.backend");
  CHECK(w != NULL && strncmp(w, "/tmp/cs_conf_", 13) == 0 &&
        strcmp(w + strlen(w) - 2, ":2") == 0);
  /* Keys the file leaves alone keep their defaults. */
  CHECK_EQ_INT(cs_config_origin(c, "pipeline.max-parallelism"),
               CS_CONF_DEFAULT);
  CHECK_EQ_INT(cs_config_int(c, "pipeline.max-parallelism"), 128);
  cs_config_destroy(c);
}

static void test_nested_file(void) {
  char err[512];
  cs_config *c = cs_config_create();
  int rc = load_str(c,
                    "state:\n"
                    "  backend:\n"
                    "    type: hashmap\n"
                    "    incremental: true\n"
                    "    memory.max-state-size: 10 mb\n"
                    "  checkpoints:\n"
                    "    dir: /var/ckpt\n"
                    "    num-retained: 2\n"
                    "execution.checkpointing:\n"
                    "  interval: 1 min\n"
                    "  timeout: '30 s'\n"
                    "pipeline: {max-parallelism: 256}\n"
                    "restart-strategy:\n"
                    "  type: none\n"
                    "  fixed-delay:\n"
                    "    attempts: 5\n",
                    err, sizeof(err));
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_STR(cs_config_backend(c), "filesystem");
  CHECK_EQ_INT(cs_config_int(c, "state.backend.incremental"), 1);
  CHECK_EQ_INT(cs_config_int(c, "state.backend.memory.max-state-size"),
               10LL << 20);
  CHECK_EQ_STR(cs_config_str(c, "state.checkpoints.dir"), "/var/ckpt");
  CHECK_EQ_INT(cs_config_int(c, "state.checkpoints.num-retained"), 2);
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.interval"), 60000);
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.timeout"), 30000);
  CHECK_EQ_INT(cs_config_int(c, "pipeline.max-parallelism"), 256);
  CHECK_EQ_STR(cs_config_str(c, "restart-strategy"), "none");
  CHECK_EQ_INT(cs_config_int(c, "restart-strategy.fixed-delay.attempts"), 5);
  /* The line of a nested key is the line of its last part. */
  const char *w = cs_config_where(c, "state.checkpoints.num-retained");
  CHECK(w != NULL && strcmp(w + strlen(w) - 2, ":8") == 0);
  cs_config_destroy(c);
}

static void test_scalar_styles(void) {
  char err[512];
  cs_config *c = cs_config_create();
  int rc = load_str(c,
                    "state.backend: 'RocksDB'\n"
                    "state.backend.incremental: \"TRUE\"\n"
                    "state.checkpoints.dir: \"file://localhost/tmp/a%20b/\"\n"
                    "state.savepoints.dir: |\n"
                    "  /tmp/save\n"
                    "execution.checkpointing.interval: >-\n"
                    "  2 s\n"
                    "pipeline.max-parallelism: \"64\"\n",
                    err, sizeof(err));
  CHECK_EQ_INT(rc, 0);
  CHECK_EQ_STR(err, "");
  CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
  CHECK_EQ_INT(cs_config_int(c, "state.backend.incremental"), 1);
  CHECK_EQ_STR(cs_config_str(c, "state.checkpoints.dir"), "/tmp/a b");
  CHECK_EQ_STR(cs_config_str(c, "state.savepoints.dir"), "/tmp/save");
  CHECK_EQ_INT(cs_config_int(c, "execution.checkpointing.interval"), 2000);
  CHECK_EQ_INT(cs_config_int(c, "pipeline.max-parallelism"), 64);
  cs_config_destroy(c);
}

static void test_empty_files(void) {
  const char *contents[] = {
      "", "\n\n", "# only comments\n  # here\n", "---\n", "---\n...\n", "~\n"};
  for (size_t i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
    char err[512];
    cs_config *c = cs_config_create();
    CHECK_EQ_INT(load_str(c, contents[i], err, sizeof(err)), 0);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_DEFAULT);
    cs_config_destroy(c);
  }
}

static void test_aliases(void) {
  GOOD("state.backend", "jobmanager", "memory", 0);
  GOOD("state.backend", "memory", "memory", 0);
  GOOD("state.backend", "filesystem", "filesystem", 0);
  GOOD("state.backend", "hashmap", "filesystem", 0);
  GOOD("state.backend", "fs", "filesystem", 0);
  GOOD("state.backend", "ROCKSDB", "rocksdb", 0);
  GOOD("state.backend.type", "HashMap", "filesystem", 0);
  GOOD("restart-strategy", "none", "none", 0);
  GOOD("restart-strategy", "off", "none", 0);
  GOOD("restart-strategy", "disable", "none", 0);
  GOOD("restart-strategy", "fixed-delay", "fixed-delay", 0);
  GOOD("restart-strategy.type", "FixedDelay", "fixed-delay", 0);

  /* The alias key and the key are one entry. */
  cs_config *c = cs_config_create();
  CHECK_EQ_INT(cs_config_set(c, "state.backend.type", "rocksdb", CS_CONF_JOB,
                             "job.lua", NULL, 0),
               0);
  CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
  CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_JOB);
  CHECK_EQ_STR(cs_config_where(c, "state.backend"), "job.lua");
  cs_config_destroy(c);
}

/* ------------------------------------------------------------------ types */

static void test_types(void) {
  /* enums */
  BAD("state.backend", "heap");
  BAD("state.backend", "");
  BAD("state.backend", "rocks db");
  BAD("restart-strategy", "failure-rate");
  BAD("restart-strategy", "fixed_delay");

  /* bools: true/false in any case, nothing else */
  GOOD("state.backend.incremental", "true", "true", 1);
  GOOD("state.backend.incremental", "False", "false", 0);
  GOOD("state.backend.incremental", " TRUE ", "true", 1);
  BAD("state.backend.incremental", "yes");
  BAD("state.backend.incremental", "1");
  BAD("state.backend.incremental", "truee");
  BAD("state.backend.incremental", "");

  /* ints and their ranges */
  GOOD("state.checkpoints.num-retained", "1", "1", 1);
  GOOD("state.checkpoints.num-retained", "+7", "7", 7);
  GOOD("state.checkpoints.num-retained", "2147483647", "2147483647",
       2147483647);
  BAD("state.checkpoints.num-retained", "0");
  BAD("state.checkpoints.num-retained", "-1");
  BAD("state.checkpoints.num-retained", "2147483648");
  BAD("state.checkpoints.num-retained", "1.5");
  BAD("state.checkpoints.num-retained", "0x10");
  BAD("state.checkpoints.num-retained", "three");
  BAD("state.checkpoints.num-retained", "99999999999999999999999");
  GOOD("parallelism.default", "1", "1", 1);
  GOOD("parallelism.default", "32768", "32768", 32768);
  BAD("parallelism.default", "0");
  BAD("parallelism.default", "32769");
  GOOD("pipeline.max-parallelism", "32768", "32768", 32768);
  BAD("pipeline.max-parallelism", "0");
  BAD("pipeline.max-parallelism", "100000");
  GOOD("execution.checkpointing.tolerable-failed-checkpoints", "0", "0", 0);
  BAD("execution.checkpointing.tolerable-failed-checkpoints", "-1");
  GOOD("restart-strategy.fixed-delay.attempts", "0", "0", 0);
  BAD("restart-strategy.fixed-delay.attempts", "-3");

  /* durations, Flink style, in ms */
  const char *iv = "execution.checkpointing.interval";
  GOOD(iv, "1000", "1 s", 1000);
  GOOD(iv, "0", "0 ms", 0);
  GOOD(iv, "100ms", "100 ms", 100);
  GOOD(iv, "1 s", "1 s", 1000);
  GOOD(iv, "10s", "10 s", 10000);
  GOOD(iv, "90s", "90 s", 90000);
  GOOD(iv, "1min", "1 min", 60000);
  GOOD(iv, "2m", "2 min", 120000);
  GOOD(iv, "1 h", "1 h", 3600000);
  GOOD(iv, "2d", "2 d", 172800000);
  GOOD(iv, "3 SECONDS", "3 s", 3000);
  GOOD(iv, "5 millis", "5 ms", 5);
  GOOD(iv, "1 hours", "1 h", 3600000);
  BAD(iv, "");
  BAD(iv, "s");
  BAD(iv, "-1s");
  BAD(iv, "1.5s");
  BAD(iv, "10 parsecs");
  BAD(iv, "10us");
  BAD(iv, "1 mins");
  BAD(iv, "10 s s");
  BAD(iv, "9223372036854775807d");
  BAD(iv, "99999999999999999999");
  GOOD(iv, "9223372036854775807", "9223372036854775807 ms",
       9223372036854775807LL);
  BAD("execution.checkpointing.timeout", "0");
  GOOD("execution.checkpointing.timeout", "1ms", "1 ms", 1);
  GOOD("restart-strategy.fixed-delay.delay", "0 s", "0 ms", 0);

  /* sizes, Flink style, in bytes (binary units) */
  const char *ms = "state.backend.memory.max-state-size";
  GOOD(ms, "5mb", "5 mb", 5LL << 20);
  GOOD(ms, "5 mb", "5 mb", 5LL << 20);
  GOOD(ms, "5242880", "5 mb", 5LL << 20);
  GOOD(ms, "1000", "1000 bytes", 1000);
  GOOD(ms, "1000 b", "1000 bytes", 1000);
  GOOD(ms, "2048 bytes", "2 kb", 2048);
  GOOD(ms, "512k", "512 kb", 512LL << 10);
  GOOD(ms, "512 KiB", "512 kb", 512LL << 10);
  GOOD(ms, "64m", "64 mb", 64LL << 20);
  GOOD(ms, "3 MiB", "3 mb", 3LL << 20);
  GOOD(ms, "1g", "1 gb", 1LL << 30);
  GOOD(ms, "2 GB", "2 gb", 2LL << 30);
  GOOD(ms, "1 gib", "1 gb", 1LL << 30);
  GOOD(ms, "1536 mb", "1536 mb", 1536LL << 20);
  GOOD(ms, "1 tb", "1 tb", 1LL << 40);
  BAD(ms, "0");
  BAD(ms, "5 zb");
  BAD(ms, "mb");
  BAD(ms, "-5mb");
  BAD(ms, "1.5gb");
  BAD(ms, "9999999999 tb");
  GOOD("state.backend.rocksdb.block.cache-size", "256mb", "256 mb",
       256LL << 20);
  GOOD("state.backend.rocksdb.writebuffer.size", "4 mib", "4 mb", 4LL << 20);

  /* paths and file:// URIs */
  const char *cd = "state.checkpoints.dir";
  GOOD(cd, "/tmp/ckpt", "/tmp/ckpt", 0);
  GOOD(cd, "/tmp/ckpt/", "/tmp/ckpt", 0);
  GOOD(cd, "relative/dir", "relative/dir", 0);
  GOOD(cd, "/", "/", 0);
  GOOD(cd, "file:///tmp/ckpt", "/tmp/ckpt", 0);
  GOOD(cd, "FILE:///tmp/ckpt", "/tmp/ckpt", 0);
  GOOD(cd, "file:/tmp/ckpt", "/tmp/ckpt", 0);
  GOOD(cd, "file://localhost/tmp/ckpt", "/tmp/ckpt", 0);
  GOOD(cd, "file:///tmp/my%20dir", "/tmp/my dir", 0);
  GOOD(cd, "c:weird", "c:weird", 0);
  /* whitespace a trailing slash hid goes too, so the normalised text reads
   * back as itself (found by spec/fuzz/fuzz_config.c) */
  GOOD(cd, "/tmp/ckpt \r/", "/tmp/ckpt", 0);
  GOOD(cd, "file:///tmp/ckpt%20/", "/tmp/ckpt", 0);
  GOOD(cd, "/tmp/a b", "/tmp/a b", 0);
  BAD(cd, "");
  BAD(cd, "hdfs://namenode:9000/ckpt");
  BAD(cd, "s3://bucket/ckpt");
  BAD(cd, "file://otherhost/tmp");
  BAD(cd, "file:relative");
  BAD(cd, "file://");
  BAD(cd, "file:///tmp/bad%2");
  BAD(cd, "file:///tmp/bad%zz");
  BAD(cd, "file:///tmp/nul%00");
  GOOD("state.savepoints.dir", "file:///sp", "/sp", 0);
  BAD("state.savepoints.dir", "s3://b/sp");
  GOOD("state.backend.rocksdb.localdir", "/scratch", "/scratch", 0);
}

/* The messages name the key, the value and what was expected. */
static void test_messages(void) {
  char err[512];
  cs_config *c = cs_config_create();
  CHECK_EQ_INT(
      cs_config_set(c, "execution.checkpointing.interval", "5x", CS_CONF_FLAG,
                    "--checkpoint-interval", err, sizeof(err)),
      CS_EINVAL);
  CHECK_EQ_STR(err,
               "--checkpoint-interval: invalid value '5x' for "
               "'execution.checkpointing.interval': expected a duration "
               "such as 1000 (ms), 100ms, 10 s, 1min, 1h or 2d");
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "heap", CS_CONF_JOB,
                             "job.lua:3", err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(err,
               "job.lua:3: invalid value 'heap' for 'state.backend': "
               "expected one of memory, jobmanager, filesystem, hashmap, "
               "fs, rocksdb");
  CHECK_EQ_INT(cs_config_set(c, "parallelism.default", "0", CS_CONF_FLAG, "-p",
                             err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(err,
               "-p: invalid value '0' for 'parallelism.default': "
               "expected an integer from 1 to 32768");
  CHECK_EQ_INT(cs_config_set(c, "state.checkpoints.dir", "hdfs://nn/ckpt",
                             CS_CONF_FLAG, NULL, err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(err,
               "invalid value 'hdfs://nn/ckpt' for "
               "'state.checkpoints.dir': the hdfs:// scheme is not "
               "supported (use a local path or a file:// URI)");
  CHECK_EQ_INT(cs_config_set(c, "state.backend.incremantal", "true",
                             CS_CONF_FLAG, "-D", err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(err,
               "-D: unknown key 'state.backend.incremantal' (did you "
               "mean 'state.backend.incremental'?)");
  CHECK_EQ_INT(cs_config_set(c, "state.backend", NULL, CS_CONF_FLAG, "-D", err,
                             sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(err, "-D: missing value for 'state.backend'");
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "rocksdb", (cs_conf_origin)7,
                             NULL, err, sizeof(err)),
               CS_EINVAL);
  /* A tiny or absent error buffer is fine. */
  CHECK_EQ_INT(
      cs_config_set(c, "state.backend", "x", CS_CONF_FLAG, NULL, NULL, 0),
      CS_EINVAL);
  CHECK_EQ_INT(
      cs_config_set(c, "state.backend", "x", CS_CONF_FLAG, NULL, err, 4),
      CS_EINVAL);
  CHECK_EQ_STR(err, "inv");
  /* Long values are cut short in messages. */
  char longv[300];
  memset(longv, 'x', sizeof(longv) - 1);
  longv[sizeof(longv) - 1] = '\0';
  CHECK_EQ_INT(cs_config_set(c, "state.backend", longv, CS_CONF_FLAG, NULL, err,
                             sizeof(err)),
               CS_EINVAL);
  CHECK(strstr(err, "xxx...' for 'state.backend'") != NULL);
  /* Failed sets change nothing. */
  CHECK_EQ_STR(cs_config_backend(c), "memory");
  CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_DEFAULT);
  cs_config_destroy(c);
}

/* ------------------------------------------------------------- precedence */

/* Applies every subset of the four origins in every order to one key and
 * checks that the highest origin applied wins. The file origin is applied by
 * loading a file, the others by cs_config_set. */
static void test_precedence(void) {
  static const char *vals[] = {"100", "200", "300", "400"};
  static const char *wheres[] = {"defaults", NULL, "job.lua", "-D"};
  char path[64];
  write_temp(path, sizeof(path), "pipeline.max-parallelism: 200\n");
  int perm[4] = {0, 1, 2, 3};
  int perms = 0;
  for (;;) {
    for (int subset = 0; subset < 16; subset++) {
      char err[512];
      cs_config *c = cs_config_create();
      int top = -1;
      for (int i = 0; i < 4; i++) {
        int o = perm[i];
        if (!(subset & (1 << o))) continue;
        if (o > top) top = o;
        int rc =
            o == CS_CONF_FILE
                ? cs_config_load_file(c, path, err, sizeof(err))
                : cs_config_set(c, "pipeline.max-parallelism", vals[o],
                                (cs_conf_origin)o, wheres[o], err, sizeof(err));
        CHECK_EQ_INT(rc, 0);
      }
      long long want = top < 0 ? 128 : (top + 1) * 100;
      CHECK_EQ_INT(cs_config_int(c, "pipeline.max-parallelism"), want);
      CHECK_EQ_INT(cs_config_origin(c, "pipeline.max-parallelism"),
                   top < 0 ? CS_CONF_DEFAULT : top);
      cs_config_destroy(c);
    }
    perms++;
    /* next permutation */
    int i = 2;
    while (i >= 0 && perm[i] > perm[i + 1]) i--;
    if (i < 0) break;
    int j = 3;
    while (perm[j] < perm[i]) j--;
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
    for (int a = i + 1, b = 3; a < b; a++, b--) {
      t = perm[a];
      perm[a] = perm[b];
      perm[b] = t;
    }
  }
  CHECK_EQ_INT(perms, 24);
  unlink(path);

  /* A flag set before the file is loaded still wins; the file's other keys
   * apply; at equal origin the later value wins. */
  char err[512];
  cs_config *c = cs_config_create();
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "rocksdb", CS_CONF_FLAG,
                             "--state-backend", err, sizeof(err)),
               0);
  CHECK_EQ_INT(load_str(c,
                        "state.backend: hashmap\n"
                        "state.checkpoints.dir: /tmp/x\n",
                        err, sizeof(err)),
               0);
  CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
  CHECK_EQ_STR(cs_config_where(c, "state.backend"), "--state-backend");
  CHECK_EQ_STR(cs_config_str(c, "state.checkpoints.dir"), "/tmp/x");
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "fs", CS_CONF_FLAG,
                             "--state-backend", err, sizeof(err)),
               0);
  CHECK_EQ_STR(cs_config_backend(c), "filesystem");
  /* A bad value from a lower origin is still an error. */
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "bogus", CS_CONF_JOB,
                             "job.lua", err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_INT(load_str(c, "state.backend: bogus\n", err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(cs_config_backend(c), "filesystem");
  cs_config_destroy(c);
}

/* ------------------------------------------------------------ file errors */

static void test_file_errors(void) {
  LOAD_ERROR(
      "state.backend: rocksdb\n"
      "state.checkpoints.dir: /tmp/ckpt\n"
      "state.backend.incremantal: true\n",
      "cstream-conf.yaml:3: unknown key 'state.backend.incremantal' "
      "(did you mean 'state.backend.incremental'?)");
  LOAD_ERROR("state.backned: rocksdb\n",
             "cstream-conf.yaml:1: unknown key 'state.backned' (did you mean "
             "'state.backend'?)");
  LOAD_ERROR("state:\n  backend:\n    typ: rocksdb\n",
             "cstream-conf.yaml:3: unknown key 'state.backend.typ' (did you "
             "mean 'state.backend.type'?)");
  LOAD_ERROR(
      "\n\ntaskmanager.numberOfTaskSlots: 4\n",
      "cstream-conf.yaml:3: unknown key 'taskmanager.numberOfTaskSlots'");
  LOAD_ERROR("foo: [1, 2]\n", "cstream-conf.yaml:1: unknown key 'foo'");

  /* bad values name file, line, key, value and what was expected */
  LOAD_ERROR(
      "state.backend: rocksdb\n"
      "execution.checkpointing.interval: soon\n",
      "cstream-conf.yaml:2: invalid value 'soon' for "
      "'execution.checkpointing.interval': expected a duration such as "
      "1000 (ms), 100ms, 10 s, 1min, 1h or 2d");
  LOAD_ERROR("state:\n  backend:\n    incremental: yes\n",
             "cstream-conf.yaml:3: invalid value 'yes' for "
             "'state.backend.incremental': expected true or false");
  LOAD_ERROR("pipeline.max-parallelism: 0\n",
             "cstream-conf.yaml:1: invalid value '0' for "
             "'pipeline.max-parallelism': expected an integer from 1 to 32768");
  LOAD_ERROR("state.checkpoints.dir: s3://bucket/ckpt\n",
             "cstream-conf.yaml:1: invalid value 's3://bucket/ckpt' for "
             "'state.checkpoints.dir': the s3:// scheme is not supported (use "
             "a local path or a file:// URI)");
  LOAD_ERROR("state.backend.memory.max-state-size: 5 zb\n",
             "cstream-conf.yaml:1: invalid value '5 zb' for "
             "'state.backend.memory.max-state-size': expected a size such as "
             "5242880 (bytes), 512kb, 5 mb, 64m or 1 gib");
  LOAD_ERROR("state.backend:\n",
             "cstream-conf.yaml:1: missing value for "
             "'state.backend'");
  LOAD_ERROR("state.checkpoints.dir: ~\n",
             "cstream-conf.yaml:1: missing value for 'state.checkpoints.dir'");
  LOAD_ERROR("state.checkpoints.dir: \"\"\n",
             "cstream-conf.yaml:1: invalid value '' for "
             "'state.checkpoints.dir': expected a path or file:// URI");
  LOAD_ERROR("state.backend: \"rocks\\0db\"\n",
             "cstream-conf.yaml:1: invalid value 'rocks?db' for "
             "'state.backend': it contains a NUL byte");

  /* YAML syntax errors name the line */
  LOAD_ERROR_PREFIX(
      "state.backend: rocksdb\n"
      "state.checkpoints.dir: /tmp\n"
      "  bad: indent\n",
      "cstream-conf.yaml:3: YAML syntax error: mapping values "
      "are not allowed in this context");
  LOAD_ERROR_PREFIX(
      "state.backend: rocksdb\n"
      "state.checkpoints.dir: \"/tmp\n",
      "cstream-conf.yaml:3: YAML syntax error: found unexpected "
      "end of stream (while scanning a quoted scalar at line 2)");
  LOAD_ERROR_PREFIX("state.backend: {type: rocksdb\n",
                    "cstream-conf.yaml:2: YAML syntax error:");
  /* A key without its ':' is reported on its own line, not the next. */
  LOAD_ERROR(
      "state.backend: rocksdb\n"
      "state.backend.incremental true\n"
      "parallelism.default: 2\n",
      "cstream-conf.yaml:2: YAML syntax error: could not find expected "
      "':' (while scanning a simple key)");
  /* A syntax error anywhere comes before errors in the keys. */
  LOAD_ERROR_PREFIX(
      "no.such.key: 1\n"
      "state.backend: rocksdb\n"
      "state.checkpoints.dir: '/tmp\n",
      "cstream-conf.yaml:4: YAML syntax error: found unexpected "
      "end of stream (while scanning a quoted scalar at line 3)");
  LOAD_ERROR_PREFIX("a: 1\n\tb: 2\n",
                    "cstream-conf.yaml:2: YAML syntax error:");
  LOAD_ERROR_PREFIX("state.backend: rocksdb\nbad\x01 byte: 1\n",
                    "cstream-conf.yaml:2: YAML read error: control characters "
                    "are not allowed");
  LOAD_ERROR_PREFIX("state.backend: \xff\xfe\n",
                    "cstream-conf.yaml:1: YAML read error:");

  /* duplicates, also through an alias key or nesting */
  LOAD_ERROR(
      "state.backend: rocksdb\n"
      "parallelism.default: 2\n"
      "state.backend: hashmap\n",
      "cstream-conf.yaml:3: duplicate key 'state.backend' (first set "
      "at line 1)");
  LOAD_ERROR(
      "state.backend: rocksdb\n"
      "state.backend.type: hashmap\n",
      "cstream-conf.yaml:2: duplicate key 'state.backend.type' (same "
      "key as 'state.backend' at line 1)");
  LOAD_ERROR(
      "state.checkpoints.dir: /a\n"
      "state:\n"
      "  checkpoints:\n"
      "    dir: /b\n",
      "cstream-conf.yaml:4: duplicate key 'state.checkpoints.dir' "
      "(first set at line 1)");

  /* structures where a single value is expected */
  LOAD_ERROR("state.backend:\n  - rocksdb\n  - memory\n",
             "cstream-conf.yaml:1: 'state.backend' takes a single value, not "
             "a sequence");
  LOAD_ERROR("parallelism.default: [1, 2]\n",
             "cstream-conf.yaml:1: 'parallelism.default' takes a single "
             "value, not a sequence");
  LOAD_ERROR("- state.backend: rocksdb\n",
             "cstream-conf.yaml:1: expected a mapping of configuration keys, "
             "not a sequence");
  LOAD_ERROR("just a string\n",
             "cstream-conf.yaml:1: expected a mapping of configuration keys, "
             "not a scalar");
  LOAD_ERROR("? [a, b]\n: 1\n",
             "cstream-conf.yaml:1: a key must be a string, not a sequence");
  LOAD_ERROR("\"\": 1\n", "cstream-conf.yaml:1: empty key");
  LOAD_ERROR("x: &b rocksdb\nstate.backend: *b\n",
             "cstream-conf.yaml:1: unknown key 'x'");
  LOAD_ERROR("state.backend: &b rocksdb\nstate.backend.type: *b\n",
             "cstream-conf.yaml:2: 'state.backend.type' is a YAML alias; "
             "aliases are not supported");
  LOAD_ERROR("state.backend: rocksdb\n---\nstate.backend: memory\n",
             "cstream-conf.yaml:2: more than one YAML document (remove the "
             "second '---')");

  /* deep nesting is refused, not recursed into without limit */
  char deep[512] = "";
  for (int i = 0; i < 40; i++) strcat(deep, "a: {");
  for (int i = 0; i < 40; i++) strcat(deep, "}");
  strcat(deep, "\n");
  LOAD_ERROR(deep, "cstream-conf.yaml:1: mappings nested too deeply");
}

/* A failed load changes nothing, even for the keys read before the error. */
static void test_load_is_atomic(void) {
  char err[512];
  cs_config *c = cs_config_create();
  CHECK_EQ_INT(load_str(c,
                        "state.backend: rocksdb\n"
                        "parallelism.default: 8\n"
                        "pipeline.max-parallelism: lots\n",
                        err, sizeof(err)),
               CS_EINVAL);
  CHECK_EQ_STR(cs_config_backend(c), "memory");
  CHECK(!cs_config_is_set(c, "parallelism.default"));
  CHECK_EQ_INT(cs_config_origin(c, "state.backend"), CS_CONF_DEFAULT);
  cs_config_destroy(c);
}

static void test_missing_and_directory(void) {
  char err[512], dir[64];
  cs_config *c = cs_config_create();
  CHECK_EQ_INT(cs_config_load_file(c, "/tmp/cs_conf_no_such_file.yaml", err,
                                   sizeof(err)),
               CS_ENOTFOUND);
  CHECK_EQ_STR(err, "/tmp/cs_conf_no_such_file.yaml: no such file");
  snprintf(dir, sizeof(dir), "/tmp/cs_conf_dir_XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  CHECK_EQ_INT(cs_config_load_file(c, dir, err, sizeof(err)), CS_EINVAL);
  CHECK(strstr(err, dir) == err);
  CHECK(strstr(err, ": is a directory, not a file") != NULL);
  rmdir(dir);
  CHECK_EQ_INT(cs_config_load_file(c, NULL, err, sizeof(err)), CS_EINVAL);
  cs_config_destroy(c);
}

/* ------------------------------------------------------------------ print */

static void test_print(void) {
  char err[512], path[64];
  cs_config *c = cs_config_create();
  write_temp(path, sizeof(path),
             "# comment\nstate.checkpoints.dir: file:///tmp/ckpt\n");
  CHECK_EQ_INT(cs_config_load_file(c, path, err, sizeof(err)), 0);
  CHECK_EQ_INT(cs_config_set(c, "state.backend", "rocksdb", CS_CONF_FLAG,
                             "--state-backend", err, sizeof(err)),
               0);
  CHECK_EQ_INT(cs_config_set(c, "parallelism.default", "4", CS_CONF_JOB,
                             "job.lua", err, sizeof(err)),
               0);
  CHECK_EQ_INT(cs_config_set(c, "execution.checkpointing.interval", "1000",
                             CS_CONF_FLAG, NULL, err, sizeof(err)),
               0);

  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  CHECK(out != NULL);
  cs_config_print(c, out);
  fclose(out);
  char want[256];
  CHECK(strstr(buf, "state.backend: rocksdb    ") != NULL);
  CHECK(strstr(buf, "(flag --state-backend)\n") != NULL);
  snprintf(want, sizeof(want), "state.checkpoints.dir: /tmp/ckpt");
  CHECK(strstr(buf, want) != NULL);
  snprintf(want, sizeof(want), "(file %s:2)\n", path);
  CHECK(strstr(buf, want) != NULL);
  CHECK(strstr(buf, "parallelism.default: 4 ") != NULL);
  CHECK(strstr(buf, "(job job.lua)\n") != NULL);
  CHECK(strstr(buf, "execution.checkpointing.interval: 1 s ") != NULL);
  CHECK(strstr(buf, "(flag)\n") != NULL);
  CHECK(strstr(buf, "pipeline.max-parallelism: 128 ") != NULL);
  CHECK(strstr(buf, "(default)\n") != NULL);
  CHECK(strstr(buf, "state.savepoints.dir: (unset) ") != NULL);
  CHECK(strstr(buf, "restart-strategy: (unset) ") != NULL);
  CHECK(strstr(buf, "(default: fixed-delay with checkpointing, else none)\n") !=
        NULL);
  /* One line per key, origins aligned in one column. */
  int lines = 0;
  long col = -1;
  for (char *l = buf; *l != '\0';) {
    char *nl = strchr(l, '\n');
    CHECK(nl != NULL);
    if (nl == NULL) break;
    char *paren = strstr(l, "    (");
    CHECK(paren != NULL && paren < nl);
    if (paren != NULL) {
      long at = (long)(paren - l);
      if (col < 0) col = at;
      CHECK_EQ_INT(at, col);
    }
    lines++;
    l = nl + 1;
  }
  CHECK_EQ_INT(lines, 30); /* every key: the limits, cluster.*, kafka.* and rest.* included */
  free(buf);

  buf = NULL;
  out = open_memstream(&buf, &len);
  cs_config_print_help(out);
  fclose(out);
  CHECK(strstr(buf, "state.backend (or state.backend.type)\n") != NULL);
  CHECK(strstr(buf, "integer 1..32768, default 128\n") != NULL);
  CHECK(strstr(buf, "kafka.bootstrap-servers\n    string, default unset") != NULL);
  CHECK(strstr(buf, "kafka.connect-timeout\n    duration, default 30 s\n") != NULL);
  free(buf);
  unlink(path);
  cs_config_destroy(c);
}

/* -------------------------------------------------------------------- find */

static void test_find(void) {
  char dir[64], file[128], cwd[4096];
  snprintf(dir, sizeof(dir), "/tmp/cs_conf_find_XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(file, sizeof(file), "%s/%s", dir, CS_CONFIG_FILE_NAME);
  CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
  char *old_env = getenv("CSTREAM_CONF_DIR");
  char *saved = old_env ? strdup(old_env) : NULL;
  unsetenv("CSTREAM_CONF_DIR");

  /* An explicit path is returned as is, even when missing. */
  char *p = cs_config_find("/tmp/elsewhere.yaml");
  CHECK(p != NULL && strcmp(p, "/tmp/elsewhere.yaml") == 0);
  cs_free(p);
  /* An explicit directory gets the file name appended. */
  p = cs_config_find(dir);
  CHECK(p != NULL && strcmp(p, file) == 0);
  cs_free(p);

  /* Nothing in the environment or the working directory: none. */
  CHECK_EQ_INT(chdir(dir), 0);
  CHECK(cs_config_find(NULL) == NULL);
  CHECK(cs_config_find("") == NULL);
  setenv("CSTREAM_CONF_DIR", dir, 1);
  CHECK(cs_config_find(NULL) == NULL);

  /* The file in the working directory. */
  FILE *f = fopen(CS_CONFIG_FILE_NAME, "w");
  CHECK(f != NULL);
  if (f) fclose(f);
  unsetenv("CSTREAM_CONF_DIR");
  p = cs_config_find(NULL);
  CHECK(p != NULL && strcmp(p, CS_CONFIG_FILE_NAME) == 0);
  cs_free(p);
  /* $CSTREAM_CONF_DIR comes before the working directory. */
  CHECK_EQ_INT(chdir("/"), 0);
  setenv("CSTREAM_CONF_DIR", dir, 1);
  p = cs_config_find(NULL);
  CHECK(p != NULL && strcmp(p, file) == 0);
  cs_free(p);
  /* An explicit path comes before $CSTREAM_CONF_DIR. */
  p = cs_config_find("mine.yaml");
  CHECK(p != NULL && strcmp(p, "mine.yaml") == 0);
  cs_free(p);

  unlink(file);
  rmdir(dir);
  if (saved) {
    setenv("CSTREAM_CONF_DIR", saved, 1);
    free(saved);
  } else {
    unsetenv("CSTREAM_CONF_DIR");
  }
  CHECK_EQ_INT(chdir(cwd), 0);
}

/* -------------------------------------------------------- out of memory */

/* Fails each allocation in turn during create, load, set and print: every
 * call fails cleanly with CS_ENOMEM or succeeds, and nothing leaks. */
static void test_out_of_memory(void) {
  char path[64], err[512];
  write_temp(path, sizeof(path),
             "state:\n  backend: rocksdb\n  checkpoints.dir: /tmp/ckpt\n"
             "execution.checkpointing.interval: 10 s\n"
             "parallelism.default: 3\n");
  size_t base = cs_allocated_bytes();
  int done = 0;
  for (long n = 1; n < 500 && !done; n++) {
    cs_fail_nth_alloc(n);
    cs_config *c = cs_config_create();
    if (c == NULL) {
      CHECK_EQ_INT(cs_allocated_bytes(), base);
      continue;
    }
    int rc = cs_config_load_file(c, path, err, sizeof(err));
    CHECK(rc == 0 || rc == CS_ENOMEM);
    if (rc == 0) {
      CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
      rc = cs_config_set(c, "state.backend", "fs", CS_CONF_FLAG, "--x", err,
                         sizeof(err));
      CHECK(rc == 0 || rc == CS_ENOMEM);
      if (rc == CS_ENOMEM) {
        CHECK_EQ_STR(cs_config_backend(c), "rocksdb");
      } else {
        CHECK_EQ_STR(cs_config_backend(c), "filesystem");
        done = 1;
      }
    } else {
      CHECK_EQ_STR(cs_config_backend(c), "memory");
    }
    cs_config_destroy(c);
    CHECK_EQ_INT(cs_allocated_bytes(), base);
  }
  cs_fail_nth_alloc(0);
  CHECK(done);
  unlink(path);
}

int main(void) {
  test_defaults();
  test_flat_file();
  test_nested_file();
  test_scalar_styles();
  test_empty_files();
  test_aliases();
  test_types();
  test_messages();
  test_precedence();
  test_file_errors();
  test_load_is_atomic();
  test_missing_and_directory();
  test_print();
  test_find();
  test_out_of_memory();
  TEST_MAIN_END();
}
