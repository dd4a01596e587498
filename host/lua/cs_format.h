/*
 * cs_format.h - renders Lua values the way Flink prints Java values, so a
 * Flink user's expected output carries over:
 *   nil -> null; true/false; integers plainly (-3);
 *   floats like Java's Double.toString: the shortest digits that read back
 *   exactly, always with a fraction (5.0, 3.6666666666666665, 0.1), and
 *   computerized scientific notation outside [1e-3, 1e7) (1.0E7, 1.5E-4),
 *   NaN, Infinity, -Infinity;
 *   strings as they are;
 *   an array-like table (keys 1..n, or empty) as a tuple "(a,b,c)" (nested
 *   tuples nest: "(1,(2,3))"), the empty table as "()";
 *   any other table as "{k=v, k2=v2}" with entries in the order of their
 *   rendered keys;
 *   a value whose metatable has __tostring through that metamethod (called
 *   with lua_pcall; an error there is rendered as "<__tostring error: msg>");
 *   functions, userdata and threads as "function: 0x...", like tostring.
 * Cycles render as "<cycle>".
 */
#ifndef CS_FORMAT_H
#define CS_FORMAT_H

#include <lua.h>

#include "state/cs_common.h"

/* Appends the rendering of the value at idx to out.  [-0, +0, m]
 * Returns 0 or CS_ENOMEM. */
int cs_format_value(lua_State *L, int idx, cs_buf *out);

/* Appends the rendering of an encoded value (cs_codec), the same as that
 * of the value decoded. Returns 0, CS_ENOMEM, CS_EDECODE, or 1 when the
 * value holds a map, whose rendering needs Lua (out is unchanged then). */
int cs_format_encoded(cs_slice v, cs_buf *out);

/* Appends the Java Double.toString rendering of d. Returns 0 or CS_ENOMEM. */
int cs_format_double(double d, cs_buf *out);

#endif /* CS_FORMAT_H */
