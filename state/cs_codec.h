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

/* Decodes one value from data[0, len) and pushes it.  [-0, +1, m]
 * On success returns 0 and, when used is not NULL, stores the bytes consumed.
 * On error returns CS_EDECODE and pushes nothing. Never reads past len, never
 * recurses deeper than CS_CODEC_MAX_DEPTH. */
int cs_codec_decode(lua_State *L, const char *data, size_t len, size_t *used);

/* Returns the size of the single encoded value at data[0, len), or
 * CS_EDECODE (negative) when it is not one complete well-formed value. */
long cs_codec_skip(const char *data, size_t len);

#define CS_CODEC_MAX_DEPTH 200

/* Key groups: XXH3_64 of the canonical key bytes modulo max_parallelism. */
int cs_key_group(const void *key, size_t len, int max_parallelism);

/* The subtask (0-based) that owns a key group: contiguous ranges, as Flink:
 * kg * parallelism / max_parallelism. */
int cs_key_group_owner(int key_group, int max_parallelism, int parallelism);

/* The first and last key group (inclusive) owned by a subtask. */
void cs_key_group_range(int subtask, int max_parallelism, int parallelism,
                        int *first, int *last);

#endif /* CS_CODEC_H */
