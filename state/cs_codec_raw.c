/*
 * cs_codec_raw.c - encoded values without Lua (see cs_codec.h): the size of
 * an encoded value (cs_codec_skip, which agrees with the decoder on every
 * input, and the leaner cs_codec_skip_lean), an array's element or a map's
 * field by position or name, numbers, key scalars, and key groups. These
 * are the engine's fast paths for records that only pass through built-in
 * operators; cs_codec_put_number, the one writer among them, is with the
 * encoder in cs_codec.c, whose forms it writes.
 */
#include "cs_codec.h"
#include "cs_codec_int.h"

#include <math.h>
#include <string.h>
#include <xxhash.h>

/* ================================================================= skip */

/* Steps over one value at *pp, with the same checks as decode_value
 * (including nil and NaN map keys), so that skip and decode agree on every
 * input. Returns 0 or CS_EDECODE. */
static int skip_value(const unsigned char **pp, const unsigned char *end,
                      int depth) {
  const unsigned char *p = *pp;
  if (p >= end) return CS_EDECODE;
  unsigned c = *p++;
  int64_t n = 0, avail = end - p;
  int container = 0; /* 1 array, 2 map */
  if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
    *pp = p;
    return 0;
  }
  if (c >= 0xa0 && c <= 0xbf) {
    n = c & 0x1f;
  } else if (c <= 0x8f) {
    n = c & 0x0f, container = 2;
  } else if (c <= 0x9f) {
    n = c & 0x0f, container = 1;
  } else {
    int w, len = 0;
    switch (c) {
    case 0xca: case 0xce: case 0xd2: w = 4; break;
    case 0xcb: case 0xcf: case 0xd3: w = 8; break;
    case 0xcc: case 0xd0: w = 1; break;
    case 0xcd: case 0xd1: w = 2; break;
    case 0xc4: case 0xd9: w = 1, len = 1; break;
    case 0xc5: case 0xda: w = 2, len = 1; break;
    case 0xc6: case 0xdb: w = 4, len = 1; break;
    case 0xdc: w = 2, container = 1; break;
    case 0xdd: w = 4, container = 1; break;
    case 0xde: w = 2, container = 2; break;
    case 0xdf: w = 4, container = 2; break;
    default: return CS_EDECODE; /* c1 and the ext family */
    }
    if (avail < w) return CS_EDECODE;
    if (!len && !container) {
      *pp = p + w;
      return 0;
    }
    n = w == 1   ? p[0]
        : w == 2 ? cs__codec_get_be16(p)
                 : (int64_t)cs__codec_get_be32(p);
    p += w;
    avail -= w;
  }
  if (!container) {
    if (n > avail) return CS_EDECODE;
    *pp = p + n;
    return 0;
  }
  if (depth >= CS_CODEC_MAX_DEPTH) return CS_EDECODE;
  if (container == 1) {
    if (n > avail) return CS_EDECODE;
    for (int64_t i = 0; i < n; i++)
      if (skip_value(&p, end, depth + 1)) return CS_EDECODE;
  } else {
    if (n > avail / 2) return CS_EDECODE;
    for (int64_t i = 0; i < n; i++) {
      const unsigned char *k = p;
      if (skip_value(&p, end, depth + 1)) return CS_EDECODE;
      if (k[0] == 0xc0) return CS_EDECODE;
      if (k[0] == 0xca) {
        uint32_t bits = cs__codec_get_be32(k + 1);
        float f;
        memcpy(&f, &bits, sizeof(f));
        if (isnan(f)) return CS_EDECODE;
      } else if (k[0] == 0xcb) {
        uint64_t bits = cs__codec_get_be64(k + 1);
        double f;
        memcpy(&f, &bits, sizeof(f));
        if (isnan(f)) return CS_EDECODE;
      }
      if (skip_value(&p, end, depth + 1)) return CS_EDECODE;
    }
  }
  *pp = p;
  return 0;
}

long cs_codec_skip(const char *data, size_t len) {
  if (len == 0) return CS_EDECODE;
  const unsigned char *p = (const unsigned char *)data;
  if (skip_value(&p, p + len, 0)) return CS_EDECODE;
  return (long)(p - (const unsigned char *)data);
}

/* ============================================= encoded values, no Lua */

/* The length of the str/bin/array/map header at p (type byte included)
 * and its count, or 0 when p does not start one or the bytes end first. */
static size_t header(const unsigned char *p, const unsigned char *end,
                     unsigned *kind, int64_t *n) {
  unsigned c = *p;
  if (c >= 0xa0 && c <= 0xbf) return *kind = 's', *n = c & 0x1f, 1;
  if (c >= 0x80 && c <= 0x8f) return *kind = 'm', *n = c & 0x0f, 1;
  if (c >= 0x90 && c <= 0x9f) return *kind = 'a', *n = c & 0x0f, 1;
  int w;
  switch (c) {
  case 0xc4: case 0xd9: w = 1, *kind = 's'; break;
  case 0xc5: case 0xda: w = 2, *kind = 's'; break;
  case 0xc6: case 0xdb: w = 4, *kind = 's'; break;
  case 0xdc: w = 2, *kind = 'a'; break;
  case 0xdd: w = 4, *kind = 'a'; break;
  case 0xde: w = 2, *kind = 'm'; break;
  case 0xdf: w = 4, *kind = 'm'; break;
  default: return 0;
  }
  if (end - p - 1 < w) return 0;
  *n = w == 1   ? p[1]
       : w == 2 ? cs__codec_get_be16(p + 1)
                : (int64_t)cs__codec_get_be32(p + 1);
  return (size_t)w + 1;
}

/* Steps over one value at *pp, checking bounds and depth only (the
 * no-Lua readers work on bytes cs_codec wrote; a map key that decode would
 * refuse is left for the Lua path to find). Returns 0 or CS_EDECODE. */
static int skip_lean(const unsigned char **pp, const unsigned char *end,
                     int depth) {
  const unsigned char *p = *pp;
  if (p >= end) return CS_EDECODE;
  unsigned c = *p;
  if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
    *pp = p + 1;
    return 0;
  }
  static const unsigned char fixed[] = {/* ca..d3 */ 4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
  if (c >= 0xca && c <= 0xd3) {
    if (end - p - 1 < fixed[c - 0xca]) return CS_EDECODE;
    *pp = p + 1 + fixed[c - 0xca];
    return 0;
  }
  unsigned kind;
  int64_t n;
  size_t h = header(p, end, &kind, &n);
  if (h == 0) return CS_EDECODE;
  p += h;
  if (kind == 's') {
    if (n > end - p) return CS_EDECODE;
    *pp = p + n;
    return 0;
  }
  if (depth >= CS_CODEC_MAX_DEPTH || n > end - p) return CS_EDECODE;
  if (kind == 'm') n *= 2;
  for (int64_t i = 0; i < n; i++)
    if (skip_lean(&p, end, depth + 1)) return CS_EDECODE;
  *pp = p;
  return 0;
}

/* skip_lean with the common one-byte-header scalars inline. */
static inline int skip_one(const unsigned char **pp, const unsigned char *end) {
  const unsigned char *p = *pp;
  if (p < end) {
    unsigned c = *p;
    if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      *pp = p + 1;
      return 0;
    }
    if (c >= 0xa0 && c <= 0xbf && (size_t)(end - p) > (c & 0x1fu)) {
      *pp = p + 1 + (c & 0x1f);
      return 0;
    }
  }
  return skip_lean(pp, end, 1);
}

int cs_codec_array_elem(cs_slice v, int64_t pos, cs_slice *out) {
  const unsigned char *p = (const unsigned char *)v.data, *end = p + v.len;
  unsigned kind;
  int64_t n;
  size_t h = v.len ? header(p, end, &kind, &n) : 0;
  if (h == 0 || kind != 'a' || pos < 1 || pos > n) return 0;
  p += h;
  for (int64_t i = 1; i < pos; i++)
    if (skip_one(&p, end)) return 0;
  const unsigned char *start = p;
  if (skip_one(&p, end)) return 0;
  out->data = (const char *)start;
  out->len = (size_t)(p - start);
  return 1;
}

int cs_codec_map_field(cs_slice v, const char *name, size_t namelen,
                       cs_slice *out) {
  const unsigned char *p = (const unsigned char *)v.data, *end = p + v.len;
  unsigned kind;
  int64_t n;
  size_t h = v.len ? header(p, end, &kind, &n) : 0;
  if (h == 0 || kind != 'm') return 0;
  p += h;
  for (int64_t i = 0; i < n; i++) {
    const unsigned char *k = p;
    if (skip_one(&p, end)) return 0;
    unsigned kk;
    int64_t kn;
    size_t kh = header(k, end, &kk, &kn);
    int match = kh && kk == 's' && *k != 0xc4 && *k != 0xc5 && *k != 0xc6 &&
                (size_t)kn == namelen && memcmp(k + kh, name, namelen) == 0;
    const unsigned char *val = p;
    if (skip_one(&p, end)) return 0;
    if (match) {
      out->data = (const char *)val;
      out->len = (size_t)(p - val);
      return 1;
    }
  }
  return 0;
}

int cs_codec_number(cs_slice v, cs_num *num) {
  const unsigned char *p = (const unsigned char *)v.data;
  if (v.len == 0) return 0;
  unsigned c = p[0];
  num->is_int = 1;
  if (c < 0x80 || c >= 0xe0) {
    num->i = c < 0x80 ? (int64_t)c : (int64_t)c - 0x100;
    return v.len == 1;
  }
  static const unsigned char width[] = {4, 8, 1, 2, 4, 8, 1, 2, 4, 8};
  if (c < 0xca || c > 0xd3 || v.len != 1u + width[c - 0xca]) return 0;
  switch (c) {
  case 0xca: {
    uint32_t bits = cs__codec_get_be32(p + 1);
    float f;
    memcpy(&f, &bits, sizeof(f));
    num->is_int = 0, num->d = f;
    return 1;
  }
  case 0xcb: {
    uint64_t bits = cs__codec_get_be64(p + 1);
    memcpy(&num->d, &bits, sizeof(num->d));
    num->is_int = 0;
    return 1;
  }
  case 0xcc: num->i = p[1]; return 1;
  case 0xcd: num->i = cs__codec_get_be16(p + 1); return 1;
  case 0xce: num->i = cs__codec_get_be32(p + 1); return 1;
  case 0xcf: {
    uint64_t u = cs__codec_get_be64(p + 1);
    if (u > INT64_MAX) return 0;
    num->i = (int64_t)u;
    return 1;
  }
  case 0xd0: num->i = (int8_t)p[1]; return 1;
  case 0xd1: num->i = (int16_t)cs__codec_get_be16(p + 1); return 1;
  case 0xd2: num->i = (int32_t)cs__codec_get_be32(p + 1); return 1;
  default: num->i = (int64_t)cs__codec_get_be64(p + 1); return 1;
  }
}

long cs_codec_skip_lean(const char *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  if (skip_lean(&p, p + len, 0)) return CS_EDECODE;
  return (long)(p - (const unsigned char *)data);
}

/* Only the shortest form of each integer and string is the encoder's: a
 * padded one (5 as uint8, a 3-byte string as str8) decodes to the same
 * value but is not its key encoding, and used as a key it would put equal
 * keys into different key groups. */
int cs_codec_is_key_scalar(cs_slice v) {
  if (v.len == 0) return 0;
  const unsigned char *p = (const unsigned char *)v.data;
  unsigned c = p[0];
  if (c < 0x80 || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
    return v.len == 1;
  if (c >= 0xa0 && c <= 0xbf) return v.len == 1 + (c & 0x1f);
  switch (c) {
  case 0xcc: return v.len == 2 && p[1] >= 0x80;
  case 0xcd: return v.len == 3 && cs__codec_get_be16(p + 1) > 0xff;
  case 0xce: return v.len == 5 && cs__codec_get_be32(p + 1) > 0xffff;
  case 0xcf:
    return v.len == 9 && p[1] < 0x80 && cs__codec_get_be64(p + 1) > 0xffffffffu;
  case 0xd0: return v.len == 2 && (int8_t)p[1] < -32;
  case 0xd1: return v.len == 3 && (int16_t)cs__codec_get_be16(p + 1) < INT8_MIN;
  case 0xd2: return v.len == 5 && (int32_t)cs__codec_get_be32(p + 1) < INT16_MIN;
  case 0xd3:
    return v.len == 9 && (int64_t)cs__codec_get_be64(p + 1) < INT32_MIN;
  case 0xd9: return v.len >= 2 && p[1] >= 32 && v.len == 2 + (size_t)p[1];
  case 0xda: {
    if (v.len < 3) return 0;
    uint32_t n = cs__codec_get_be16(p + 1);
    return n > 0xff && v.len == 3 + (size_t)n;
  }
  case 0xdb: {
    if (v.len < 5) return 0;
    uint32_t n = cs__codec_get_be32(p + 1);
    return n > 0xffff && v.len == 5 + (size_t)n;
  }
  default: return 0;
  }
}

/* =========================================================== key groups */

int cs_key_group(const void *key, size_t len, int max_parallelism) {
  if (max_parallelism <= 0) return 0;
  return (int)(XXH3_64bits(key, len) % (uint64_t)max_parallelism);
}

int cs_key_group_owner(int key_group, int max_parallelism, int parallelism) {
  if (max_parallelism <= 0) return 0;
  return (int)((int64_t)key_group * parallelism / max_parallelism);
}

/* The key groups kg with subtask * maxp <= kg * p < (subtask + 1) * maxp,
 * which is exactly the set cs_key_group_owner maps to subtask: from
 * ceil(subtask * maxp / p) to floor(((subtask + 1) * maxp - 1) / p). When
 * parallelism exceeds max_parallelism some subtasks own nothing, and then
 * first == last + 1. */
void cs_key_group_range(int subtask, int max_parallelism, int parallelism,
                        int *first, int *last) {
  if (parallelism <= 0) {
    *first = 0, *last = -1;
    return;
  }
  int64_t i = subtask, m = max_parallelism, p = parallelism;
  *first = (int)((i * m + p - 1) / p);
  *last = (int)(((i + 1) * m - 1) / p);
}
