/*
 * cs_channel.c - record batches and the SPSC ring.
 */
#include "host/runtime/cs_channel.h"

#include <string.h>

cs_batch *cs_batch_create(cs_batch_kind kind) {
  cs_batch *b = cs_calloc(1, sizeof(*b));
  if (b != NULL) b->kind = kind;
  return b;
}

void cs_batch_destroy(cs_batch *b) {
  if (b == NULL) return;
  cs_buf_free(&b->data);
  cs_free(b);
}

int cs_batch_add(cs_batch *b, int kg, int64_t ts, const char *key,
                 size_t keylen, const char *val, size_t vallen) {
  size_t tsl = ts == CS_NO_TS ? 0 : 8;
  size_t need = 2 + tsl + 4 + keylen + 4 + vallen;
  if (keylen > UINT32_MAX || vallen > UINT32_MAX) return CS_EINVAL;
  int rc = cs_buf_reserve(&b->data, need);
  if (rc) return rc;
  char *p = b->data.data + b->data.len;
  uint16_t k = (uint16_t)kg | (tsl ? 0x8000 : 0);
  uint32_t kl = (uint32_t)keylen, vl = (uint32_t)vallen;
  memcpy(p, &k, 2);
  p += 2;
  if (tsl) {
    memcpy(p, &ts, 8);
    p += 8;
  }
  memcpy(p, &kl, 4);
  if (keylen) memcpy(p + 4, key, keylen);
  memcpy(p + 4 + keylen, &vl, 4);
  memcpy(p + 8 + keylen, val, vallen);
  b->data.len += need;
  b->count++;
  return 0;
}

int cs_batch_next(const cs_batch *b, size_t *off, int *kg, int64_t *ts,
                  cs_slice *key, cs_slice *val) {
  size_t o = *off, len = b->data.len;
  const char *d = b->data.data;
  if (o >= len) return 0;
  uint16_t k;
  uint32_t kl, vl;
  if (len - o < 2) return CS_EDECODE;
  memcpy(&k, d + o, 2);
  o += 2;
  *ts = CS_NO_TS;
  if (k & 0x8000) {
    if (len - o < 8) return CS_EDECODE;
    memcpy(ts, d + o, 8);
    o += 8;
    k &= 0x7fff;
  }
  if (len - o < 4) return CS_EDECODE;
  memcpy(&kl, d + o, 4);
  o += 4;
  if (len - o < (size_t)kl + 4) return CS_EDECODE;
  key->data = d + o;
  key->len = kl;
  o += kl;
  memcpy(&vl, d + o, 4);
  o += 4;
  if (len - o < vl) return CS_EDECODE;
  val->data = d + o;
  val->len = vl;
  *off = o + vl;
  *kg = k;
  return 1;
}

cs_channel *cs_channel_create(size_t capacity) {
  size_t cap = 2;
  while (cap < capacity) cap <<= 1;
  cs_channel *ch = cs_calloc(1, sizeof(*ch));
  if (ch == NULL) return NULL;
  ch->slots = cs_calloc(cap, sizeof(*ch->slots));
  if (ch->slots == NULL) {
    cs_free(ch);
    return NULL;
  }
  ch->mask = cap - 1;
  atomic_init(&ch->head, 0);
  atomic_init(&ch->tail, 0);
  atomic_init(&ch->producer_waiting, 0);
  return ch;
}

void cs_channel_destroy(cs_channel *ch) {
  if (ch == NULL) return;
  size_t h = atomic_load(&ch->head), t = atomic_load(&ch->tail);
  for (; h != t; h++) cs_batch_destroy(ch->slots[h & ch->mask]);
  cs_free(ch->slots);
  cs_free(ch);
}

int cs_channel_push(cs_channel *ch, cs_batch *b) {
  size_t t = atomic_load_explicit(&ch->tail, memory_order_relaxed);
  size_t h = atomic_load_explicit(&ch->head, memory_order_acquire);
  if (t - h > ch->mask) {
    atomic_store_explicit(&ch->producer_waiting, 1, memory_order_seq_cst);
    /* Re-check: the consumer may have popped before seeing the flag. */
    h = atomic_load_explicit(&ch->head, memory_order_seq_cst);
    if (t - h > ch->mask) return 0;
    atomic_store_explicit(&ch->producer_waiting, 0, memory_order_relaxed);
  }
  ch->slots[t & ch->mask] = b;
  atomic_store_explicit(&ch->tail, t + 1, memory_order_release);
  return 1;
}

cs_batch *cs_channel_pop(cs_channel *ch, int *wake_producer) {
  size_t h = atomic_load_explicit(&ch->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&ch->tail, memory_order_acquire);
  *wake_producer = 0;
  if (h == t) return NULL;
  cs_batch *b = ch->slots[h & ch->mask];
  atomic_store_explicit(&ch->head, h + 1, memory_order_seq_cst);
  if (atomic_load_explicit(&ch->producer_waiting, memory_order_seq_cst) &&
      atomic_exchange(&ch->producer_waiting, 0))
    *wake_producer = 1;
  return b;
}

int cs_channel_ready(cs_channel *ch) {
  return atomic_load_explicit(&ch->head, memory_order_relaxed) !=
         atomic_load_explicit(&ch->tail, memory_order_acquire);
}
