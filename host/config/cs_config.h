/*
 * cs_config.h - the job configuration: Flink's keys, read from
 * cstream-conf.yaml, set by the job and by command-line flags (DESIGN 5).
 *
 * Every key has one value and remembers where it came from. Precedence,
 * highest first: flag > job > file > default. A value offered by a source of
 * lower precedence than the current one is validated and then ignored, so the
 * sources can be applied in any order with the same result.
 *
 * Values are validated and normalised when they are set:
 *   enum      case-insensitive, aliases mapped to one canonical name
 *             (state.backend: jobmanager -> memory, hashmap/fs -> filesystem)
 *   bool      true/false, case-insensitive
 *   int       decimal, range-checked per key
 *   duration  Flink style: "1000" (ms), "100ms", "1 s", "10s", "1min", "1 h",
 *             "2d"; held in milliseconds
 *   size      Flink style: "5242880", "5mb", "5 mb", "64m", "1 gib"; units are
 *             binary (1 kb = 1024 bytes); held in bytes
 *   path      a local path or a file:// URI (file:// is stripped, %XX
 *             decoded); other schemes such as hdfs:// or s3:// are rejected
 */
#ifndef CS_CONFIG_H
#define CS_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "state/cs_common.h"

/* Where a value came from, lowest precedence first. */
typedef enum cs_conf_origin {
  CS_CONF_DEFAULT = 0,
  CS_CONF_FILE,
  CS_CONF_JOB,
  CS_CONF_FLAG
} cs_conf_origin;

/* The name of the configuration file looked for in a directory. */
#define CS_CONFIG_FILE_NAME "cstream-conf.yaml"

typedef struct cs_config cs_config; /* opaque, heap */

/* Returns a configuration holding every key's default, or NULL when out of
 * memory. The caller frees it with cs_config_destroy, which accepts NULL. */
cs_config *cs_config_create(void);
void cs_config_destroy(cs_config *c);

/* Loads the YAML file at path at origin CS_CONF_FILE. Flink's flat keys
 * ("state.backend: rocksdb"), nested maps ("state:\n  backend: ...") and
 * mixes of both are read; values may be scalars of any style. An empty
 * file (or one of comments only) sets nothing. The load is all or nothing:
 * on error c is left as it was. A syntax error anywhere in the file is
 * reported before any error in its keys. The file is read whole (so pipes
 * work); files over 16 MiB are refused.
 *
 * Returns 0; CS_ENOTFOUND when the file does not exist; CS_EINVAL for an
 * unknown key (with the closest known key suggested when one is within edit
 * distance 3), a bad value, a YAML syntax error, a duplicate key, a missing
 * value ("key:" or "key: ~"), a sequence, alias or second document where a
 * single value is expected, or a path that is a directory; CS_EIO when the
 * file cannot be read; CS_ENOMEM. On error err (when not NULL) receives
 * "<path>:<line>: <message>", or "<path>: <message>" when there is no line
 * to name; it is always NUL-terminated and truncated to errlen. */
int cs_config_load_file(cs_config *c, const char *path, char *err,
                        size_t errlen);

/* Sets key (a known key or an alias key) from the string value at origin.
 * where names the source for messages and for cs_config_print, e.g.
 * "--state-backend" or "job.lua:12"; it may be NULL and is copied.
 * The value is validated even when origin is below the key's current origin;
 * a valid value from a lower origin is then ignored and 0 returned. At equal
 * origin the later value wins.
 *
 * Returns 0, CS_EINVAL (unknown key, bad value, NULL key or value, bad origin)
 * with err = "<where>: <message>" naming the key, or CS_ENOMEM. */
int cs_config_set(cs_config *c, const char *key, const char *value,
                  cs_conf_origin origin, const char *where, char *err,
                  size_t errlen);

/* ---------------------------------------------------------------- getters
 * Keys may be given by their name or alias. The strings returned are owned
 * by c and stay valid until the key is set again or c is destroyed. */

/* The state backend: "memory", "filesystem" or "rocksdb". */
const char *cs_config_backend(const cs_config *c);

/* The normalised value as text: the canonical enum name, "true"/"false",
 * decimal integers, durations and sizes in their largest exact unit
 * ("10 s", "64 mb"), paths with file:// stripped. NULL when the key is unset
 * (and has no default) or unknown. */
const char *cs_config_str(const cs_config *c, const char *key);

/* The value as a number: ints as such, durations in milliseconds, sizes in
 * bytes, bools 0/1. 0 when the key is unset, unknown, or an enum or path. */
long long cs_config_int(const cs_config *c, const char *key);

/* 1 when the key has a value (from any origin, defaults included), else 0. */
int cs_config_is_set(const cs_config *c, const char *key);

/* The origin of the key's current value (CS_CONF_DEFAULT for unknown keys)
 * and the where text it was set with (NULL for defaults). */
cs_conf_origin cs_config_origin(const cs_config *c, const char *key);
const char *cs_config_where(const cs_config *c, const char *key);

/* Static name of an origin: "default", "file", "job", "flag". */
const char *cs_config_origin_name(cs_conf_origin origin);

/* Writes every key, one a line in table order, with its value and origin:
 *   state.backend: rocksdb    (flag --state-backend)
 *   state.checkpoints.dir: /tmp/ckpt    (file cstream-conf.yaml:2)
 *   parallelism.default: (unset)    (default: number of CPU cores)
 */
void cs_config_print(const cs_config *c, FILE *out);

/* Writes every known key with its type, default and a help line. */
void cs_config_print_help(FILE *out);

/* Finds the configuration file (DESIGN 5): explicit_path when given and not
 * empty (with CS_CONFIG_FILE_NAME appended when it names a directory; the
 * path is returned even when it does not exist, so loading it reports the
 * missing file), else $CSTREAM_CONF_DIR/cstream-conf.yaml when that exists,
 * else ./cstream-conf.yaml (returned as "cstream-conf.yaml") when that
 * exists. Returns a path the caller frees with cs_free, or NULL when there is
 * none (or when out of memory). */
char *cs_config_find(const char *explicit_path);

#endif /* CS_CONFIG_H */
