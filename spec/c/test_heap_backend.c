/*
 * test_heap_backend.c - the state backend contract (cs_backend.h), pinned on
 * the heap backend, and snapshot/restore (cs_snapshot.c).
 *
 * The contract lives in backend_contract.h: it takes a factory and uses
 * nothing but the vtable, so the same tests run unchanged against another
 * backend (test_rocksdb_backend.c).
 */
#include "backend_contract.h"

static cs_backend *make_heap(void) { return cs_heap_backend_create(); }

int main(void) {
  backend_contract(make_heap, CONTRACT_OPS_USE_CS_ALLOC);
  CHECK_EQ_INT(cs_allocated_bytes(), 0); /* the backends freed everything */
  timing(make_heap, "heap");
  TEST_MAIN_END();
}
