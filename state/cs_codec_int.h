/*
 * cs_codec_int.h - internal to the codec (cs_codec.c, cs_codec_raw.c): the
 * big-endian fields of MessagePack, read and written by the encoder, the
 * decoder and the readers of encoded values without Lua. Inline: they are
 * on the path of every record. Not a public interface; see cs_codec.h.
 */
#ifndef CS_CODEC_INT_H
#define CS_CODEC_INT_H

#include <stdint.h>

/* =========================================================== byte order */

static inline void cs__codec_put_be16(unsigned char *p, uint16_t v) {
  p[0] = (unsigned char)(v >> 8);
  p[1] = (unsigned char)v;
}

static inline void cs__codec_put_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static inline void cs__codec_put_be64(unsigned char *p, uint64_t v) {
  cs__codec_put_be32(p, (uint32_t)(v >> 32));
  cs__codec_put_be32(p + 4, (uint32_t)v);
}

static inline uint16_t cs__codec_get_be16(const unsigned char *p) {
  return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t cs__codec_get_be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

static inline uint64_t cs__codec_get_be64(const unsigned char *p) {
  return (uint64_t)cs__codec_get_be32(p) << 32 | cs__codec_get_be32(p + 4);
}

#endif /* CS_CODEC_INT_H */
