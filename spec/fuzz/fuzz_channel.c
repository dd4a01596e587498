/*
 * fuzz_channel.c - the record framing of a channel batch
 * (host/runtime/cs_channel.h) read from arbitrary bytes, and the SPSC ring
 * that carries batches. Properties: cs_batch_next never reads past the
 * batch, hands out slices inside it, advances on every record and stops
 * with 0 at the end or CS_EDECODE; the records it reads, written again
 * with cs_batch_add, read back the same; batches pushed through a channel
 * come out in order, each once, and a full channel refuses a push.
 */
#include "host/runtime/cs_channel.h"
#include "fuzz_util.h"

typedef struct rec {
  int kg;
  int64_t ts;
  cs_slice key, val;
} rec;

/* Reads every record of b into *out (caller frees). Returns the count, or
 * -1 when the framing broke (after the records before it). */
static long read_all(const cs_batch *b, rec **out, size_t *nout) {
  size_t off = 0, n = 0, cap = 0;
  rec *v = NULL;
  int rc;
  for (;;) {
    size_t before = off;
    rec r;
    rc = cs_batch_next(b, &off, &r.kg, &r.ts, &r.key, &r.val);
    if (rc != 1) {
      FUZZ_CHECK(off == before);
      break;
    }
    FUZZ_CHECK(off > before && off <= b->data.len);
    FUZZ_CHECK(r.kg >= 0 && r.kg < 32768);
    FUZZ_CHECK(r.key.data >= b->data.data && r.val.data >= r.key.data + r.key.len);
    FUZZ_CHECK(r.val.data + r.val.len == b->data.data + off);
    if (n == cap) {
      cap = cap ? cap * 2 : 16;
      rec *nv = realloc(v, cap * sizeof(*v));
      FUZZ_CHECK(nv != NULL);
      v = nv;
    }
    v[n++] = r;
  }
  FUZZ_CHECK(rc == 0 || rc == CS_EDECODE);
  FUZZ_CHECK(rc != 0 || off == b->data.len);
  *out = v;
  *nout = n;
  return rc == 0 ? (long)n : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cs_batch *b = cs_batch_create(CS_BATCH_RECORDS);
  FUZZ_CHECK(b != NULL);
  if (size) FUZZ_CHECK(cs_buf_append(&b->data, data, size) == 0);
  rec *v = NULL;
  size_t n = 0;
  read_all(b, &v, &n);

  /* what the producer side writes for those records reads back the same */
  cs_batch *w = cs_batch_create(CS_BATCH_RECORDS);
  FUZZ_CHECK(w != NULL);
  for (size_t i = 0; i < n; i++)
    FUZZ_CHECK(cs_batch_add(w, v[i].kg, v[i].ts, v[i].key.data, v[i].key.len,
                            v[i].val.data, v[i].val.len) == 0);
  FUZZ_CHECK(w->count == n);
  rec *v2 = NULL;
  size_t n2 = 0;
  FUZZ_CHECK(read_all(w, &v2, &n2) == (long)n);
  for (size_t i = 0; i < n; i++) {
    FUZZ_CHECK(v2[i].kg == v[i].kg && v2[i].ts == v[i].ts);
    FUZZ_CHECK(v2[i].key.len == v[i].key.len && v2[i].val.len == v[i].val.len);
    FUZZ_CHECK(v[i].key.len == 0 ||
               memcmp(v2[i].key.data, v[i].key.data, v[i].key.len) == 0);
    FUZZ_CHECK(v[i].val.len == 0 ||
               memcmp(v2[i].val.data, v[i].val.data, v[i].val.len) == 0);
  }
  free(v2);

  /* the ring: one batch per record, pushed and popped as the bytes say */
  cs_channel *ch = cs_channel_create(1 + (size ? data[0] % 8 : 0));
  FUZZ_CHECK(ch != NULL);
  size_t pushed = 0, popped = 0, queued = 0;
  for (size_t i = 0; i < n; i++) {
    int pop = size > i + 1 && (data[i + 1] & 1);
    if (!pop) {
      cs_batch *x = cs_batch_create(CS_BATCH_RECORDS);
      FUZZ_CHECK(x != NULL);
      x->ckpt = (int64_t)pushed;
      if (cs_channel_push(ch, x)) {
        pushed++, queued++;
      } else {
        FUZZ_CHECK(queued >= 2 && atomic_load(&ch->producer_waiting));
        cs_batch_destroy(x);
      }
    } else {
      int wake = 0;
      cs_batch *x = cs_channel_pop(ch, &wake);
      FUZZ_CHECK((x != NULL) == (queued > 0));
      if (x) {
        FUZZ_CHECK(x->ckpt == (int64_t)popped);
        popped++, queued--;
        cs_batch_destroy(x);
      }
    }
    FUZZ_CHECK(cs_channel_ready(ch) == (queued > 0));
  }
  cs_channel_destroy(ch); /* frees what is still queued */
  free(v);
  cs_batch_destroy(w);
  cs_batch_destroy(b);
  return 0;
}
