/*
 * cs_codec.h - the one mapping between Lua values and bytes.
 *
 * Values (records on the wire, state values) are MessagePack:
 *   nil -> nil; boolean -> bool; integer -> int (any width); float -> float64
 *   (always, so 5.0 stays a float and 5 an integer, as in Java);
 *   string -> str (the bytes as they are; Lua strings need not be UTF-8);
 *   table -> array when its keys are exactly 1..n (n >= 1), otherwise map
 *   (an empty table encodes as an empty array and decodes as {}).
 * Functions, userdata, threads, light userdata and cyclic tables cannot be
 * encoded; the error text names the path inside the value ("[2].name").
 * Metatables are not encoded.
 *
 * Keys (key_by results, map-state user keys) use the canonical form: the same
 * mapping, except that a float with an integral value in int64 range encodes
 * as that integer (Lua table-key equality: 1.0 and 1 are one key), NaN is an
 * error, and map entries are written in the byte order of their encoded keys,
 * so equal tables give equal bytes. Canonical bytes decode to a Lua value with
 * the ordinary decoder.
 */
#ifndef CS_CODEC_H
#define CS_CODEC_H

#include <lua.h>

#include "cs_common.h"

/* Appends the encoding of the value at idx to out.  [-0, +0, m]
 * Returns 0, or CS_EENCODE with a message in err (always NUL-terminated),
 * or CS_ENOMEM. On error, out->len is restored to what it was. */
int cs_codec_encode(lua_State *L, int idx, cs_buf *out, char *err,
                    size_t errlen);

/* Same, in canonical key form. */
int cs_codec_encode_key(lua_State *L, int idx, cs_buf *out, char *err,
                        size_t errlen);

/* Appends the encoding of the array { v1, ..., vn } of the n values at
 * first .. first + n - 1 (none nil), exactly as cs_codec_encode writes
 * that table, without making it.  [-0, +0, m]  Returns as cs_codec_encode.
 * When 1 <= mark <= n, *mark_off and *mark_len get where element mark's
 * bytes are in out (an offset: out may move as it grows). */
int cs_codec_encode_tuple(lua_State *L, int first, int n, cs_buf *out,
                          char *err, size_t errlen, int mark,
                          size_t *mark_off, size_t *mark_len);

/* Counts the entries of the table at absolute index t and returns whether
 * its keys are exactly the integers 1..count (an empty table counts as
 * one): the test for rendering or encoding it as a sequence. Needs one
 * free stack slot.  [-0, +0, -] */
int cs_codec_table_is_sequence(lua_State *L, int t, size_t *count);

/* Decodes one value from data[0, len) and pushes it.  [-0, +1, m]
 * On success returns 0 and, when used is not NULL, stores the bytes consumed.
 * On error returns CS_EDECODE and pushes nothing. Never reads past len, never
 * recurses deeper than CS_CODEC_MAX_DEPTH. */
int cs_codec_decode(lua_State *L, const char *data, size_t len, size_t *used);

/* Returns the size of the single encoded value at data[0, len), or
 * CS_EDECODE (negative) when it is not one complete well-formed value. */
long cs_codec_skip(const char *data, size_t len);

#define CS_CODEC_MAX_DEPTH 200

/* Encoded values read and written without Lua, for the engine's fast paths
 * (records that only pass through built-in operators are never decoded).
 * Each answers 0 when the value is not of the form asked for; the caller
 * then takes the Lua path, which has the exact semantics and the errors. */

/* Element pos (1-based) of an encoded array: stores its bytes in *out and
 * returns 1. */
int cs_codec_array_elem(cs_slice v, int64_t pos, cs_slice *out);
/* The value under string key name of an encoded map. */
int cs_codec_map_field(cs_slice v, const char *name, size_t namelen,
                       cs_slice *out);

typedef struct cs_num {
  int is_int;
  int64_t i;
  double d;
} cs_num;
/* Reads a whole encoded value that is a number (an integer or a float). */
int cs_codec_number(cs_slice v, cs_num *num);
/* Appends a number as cs_codec_encode writes it. Returns 0 or CS_ENOMEM. */
int cs_codec_put_number(cs_buf *out, const cs_num *num);
/* The size of the value at data[0, len) checking its framing only (not the
 * map keys decode refuses), or CS_EDECODE. */
long cs_codec_skip_lean(const char *data, size_t len);
/* Whether the encoded value is a nil, boolean, integer or string: values
 * whose record encoding is also their canonical key encoding, as
 * cs_codec_encode writes them (shortest forms; other writers' padded forms
 * are not canonical). */
int cs_codec_is_key_scalar(cs_slice v);

/* Key groups: XXH3_64 of the canonical key bytes modulo max_parallelism. */
int cs_key_group(const void *key, size_t len, int max_parallelism);

/* The subtask (0-based) that owns a key group: contiguous ranges, as Flink:
 * kg * parallelism / max_parallelism. */
int cs_key_group_owner(int key_group, int max_parallelism, int parallelism);

/* The first and last key group (inclusive) owned by a subtask. */
void cs_key_group_range(int subtask, int max_parallelism, int parallelism,
                        int *first, int *last);

#endif /* CS_CODEC_H */
