/*
 * cs_channel.h - batches of encoded records and the bounded single-producer
 * single-consumer channels that carry them between subtasks.
 *
 * A batch holds records framed as:
 *   u16 key group [| i64 timestamp] | u32 key length | key bytes
 *   | u32 value length | value
 * (native byte order: batches never leave the process). The top bit of the
 * key group says a timestamp follows (key groups are below 32768). Control messages
 * (end of input, barriers) are batches of their own kind, so they stay
 * in order with the records around them.
 *
 * Part of host/runtime's contract: cs_runtime.h includes it; other folders
 * include cs_runtime.h.
 */
#ifndef CS_CHANNEL_H
#define CS_CHANNEL_H

#include <stdatomic.h>
#include <stdint.h>

#include "state/cs_common.h"

/* A record without a timestamp; also the watermark before the first. */
#define CS_NO_TS INT64_MIN
/* The watermark at the end of input: every event-time timer fires. */
#define CS_MAX_WATERMARK INT64_MAX

typedef enum cs_batch_kind {
  CS_BATCH_RECORDS = 0,
  CS_BATCH_END = 1,       /* the producer subtask has finished */
  CS_BATCH_BARRIER = 2,   /* checkpoint barrier `ckpt` */
  CS_BATCH_WATERMARK = 3, /* event time has reached `ckpt` (the watermark) */
  CS_BATCH_IDLE = 4       /* the producer is idle until its next record */
} cs_batch_kind;

typedef struct cs_batch {
  cs_batch_kind kind;
  uint32_t count;  /* records in data */
  uint64_t born;   /* uv_hrtime() of the first record, for flush timeouts */
  int64_t ckpt;    /* BARRIER: the checkpoint id; WATERMARK: the watermark */
  cs_buf data;
  struct cs_batch *next; /* producer-side overflow list link */
} cs_batch;

/* Records per batch and bytes per batch before a batch is sent. */
#define CS_BATCH_RECORDS_MAX 512
#define CS_BATCH_BYTES_MAX (64 * 1024)

/* Returns a new empty batch of the given kind, or NULL. */
cs_batch *cs_batch_create(cs_batch_kind kind);
void cs_batch_destroy(cs_batch *b); /* accepts NULL */

/* Appends one record with its timestamp (CS_NO_TS: none). Returns 0 or
 * CS_ENOMEM. */
int cs_batch_add(cs_batch *b, int kg, int64_t ts, const char *key,
                 size_t keylen, const char *val, size_t vallen);

/* Reads the record at *off and advances *off. Returns 1, or 0 at the end,
 * or CS_EDECODE if the framing is broken. */
int cs_batch_next(const cs_batch *b, size_t *off, int *kg, int64_t *ts,
                  cs_slice *key, cs_slice *val);

/* A bounded SPSC ring of batch pointers. */
/* head and tail are kept a cache line apart (padding rather than _Alignas,
 * since our allocator guarantees only max_align_t alignment). */
#define CS__CACHE_LINE 64
typedef struct cs_channel {
  atomic_size_t head; /* consumer position */
  char pad0_[CS__CACHE_LINE - sizeof(atomic_size_t)];
  atomic_size_t tail; /* producer position */
  char pad1_[CS__CACHE_LINE - sizeof(atomic_size_t)];
  atomic_int producer_waiting;
  char pad2_[CS__CACHE_LINE - sizeof(atomic_int)];
  size_t mask;
  cs_batch **slots;
  /* Set by the runtime: who to wake. */
  void *consumer;
  void *producer;
} cs_channel;

/* capacity is rounded up to a power of two. Returns NULL when out of memory.
 * cs_channel_destroy frees batches still queued; accepts NULL. */
cs_channel *cs_channel_create(size_t capacity);
void cs_channel_destroy(cs_channel *ch);

/* Producer: enqueues b and returns 1, or returns 0 when full (then sets
 * producer_waiting so the consumer wakes the producer after a pop). */
int cs_channel_push(cs_channel *ch, cs_batch *b);

/* Consumer: returns the oldest batch or NULL when empty. *wake_producer is
 * set when the producer was waiting for room. */
cs_batch *cs_channel_pop(cs_channel *ch, int *wake_producer);

/* Consumer: whether a batch is queued. */
int cs_channel_ready(cs_channel *ch);

#endif /* CS_CHANNEL_H */
