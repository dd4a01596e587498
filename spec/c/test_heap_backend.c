/*
 * test_heap_backend.c - the state backend contract (cs_backend.h), pinned on
 * the heap backend, and snapshot/restore (cs_snapshot.c).
 *
 * The contract lives in backend_contract.h: it takes a factory and uses
 * nothing but the vtable, so the same tests run unchanged against another
 * backend (test_rocksdb_backend.c).
 */
#include "backend_contract.h"
#include "state/cs_ttl.h"

static cs_backend *make_heap(void) { return cs_heap_backend_create(); }

/* cs_heap_backend_clone: the copy holds what the original held, snapshots
 * to the same bytes, and stays as it was while the original changes (and
 * the other way round); failing any allocation leaks nothing. */
static void test_clone(void) {
  cs_backend *be = make_heap();
  populate(be, 2000);
  int ttl_id;
  cs_ttl_config ttl = {.ttl_ms = 60000, .update = CS_TTL_ON_CREATE_AND_WRITE,
                       .visibility = CS_TTL_NEVER_RETURN_EXPIRED};
  ttl_id = be->ops->register_ttl_state(be, "pop.ttl", CS_STATE_VALUE, &ttl);
  CHECK(ttl_id >= 0);
  digest before = digest_of(be);
  cs_backend *c = cs_heap_backend_clone(be);
  CHECK(c != NULL);
  CHECK(digest_eq(digest_of(c), before));
  CHECK_EQ_INT(c->ops->state_ttl(c, ttl_id, NULL), 1);
  cs_buf a = {0}, b = {0};
  CHECK_EQ_INT(cs_backend_snapshot(be, 0, 65535, &a), 0);
  CHECK_EQ_INT(cs_backend_snapshot(c, 0, 65535, &b), 0);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  /* change the original in every way: the copy does not move */
  char kb[5];
  cs_slice u = S("u0");
  for (int i = 0; i < 2000; i += 3) {
    cs_slice k = key_of(i, kb);
    CHECK_EQ_INT(be->ops->put(be, 0, i % NKG, k, NULL, S("a much longer value than before, in a node")), 0);
    CHECK_EQ_INT(be->ops->append(be, 1, i % NKG, k, S("more;")), 0);
    CHECK_EQ_INT(be->ops->del(be, 2, i % NKG, k, i % 2 ? &u : NULL), 0);
  }
  populate(be, 3000); /* rehashes */
  CHECK(digest_eq(digest_of(c), before));
  cs_buf_reset(&b);
  CHECK_EQ_INT(cs_backend_snapshot(c, 0, 65535, &b), 0);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  /* and the copy changes alone */
  digest now = digest_of(be);
  CHECK_EQ_INT(c->ops->del(c, 0, 1, key_of(1, kb), NULL), 0);
  CHECK(digest_eq(digest_of(be), now));
  c->ops->destroy(c);
  CHECK(cs_heap_backend_clone(NULL) == NULL);
  /* a copy's memory goes back to the original and serves the next copy */
  for (int round = 0; round < 3; round++) {
    digest d = digest_of(be);
    c = cs_heap_backend_clone(be);
    CHECK(c != NULL && digest_eq(digest_of(c), d));
    if (round == 1) cs_heap_clone_strip(c); /* as the snapshot thread does */
    cs_heap_backend_recycle(be, c);
    CHECK(digest_eq(digest_of(be), d));
    CHECK_EQ_INT(be->ops->put(be, 0, 3, key_of(3, kb), NULL, S("changed")), 0);
  }
  /* out of memory at every allocation of a clone */
  size_t base = cs_allocated_bytes();
  int failed = 0;
  for (long n = 1; n < 100000; n += n < 200 ? 1 : 97) {
    cs_fail_nth_alloc(n);
    cs_backend *x = cs_heap_backend_clone(be);
    cs_fail_nth_alloc(0);
    if (x == NULL) {
      failed++; /* a failed copy frees the spare memory it took */
      CHECK(cs_allocated_bytes() <= base);
      base = cs_allocated_bytes();
    } else {
      x->ops->destroy(x);
      break;
    }
  }
  CHECK(failed > 0);
  be->ops->destroy(be);
  cs_buf_free(&a);
  cs_buf_free(&b);
}

int main(void) {
  backend_contract(make_heap, CONTRACT_OPS_USE_CS_ALLOC);
  test_clone();
  CHECK_EQ_INT(cs_allocated_bytes(), 0); /* clones and spares too */
  CHECK_EQ_INT(cs_allocated_bytes(), 0); /* the backends freed everything */
  timing(make_heap, "heap");
  TEST_MAIN_END();
}
