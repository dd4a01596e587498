/*
 * cs_test.h - the minimal harness of our C tests: CHECK records a failure
 * with file and line and goes on; main returns the failure count.
 */
#ifndef CS_TEST_H
#define CS_TEST_H

#include <stdio.h>
#include <string.h>

static int cs_test_failures;

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) {                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,         \
              __LINE__, #cond);                                      \
      cs_test_failures++;                                            \
    }                                                                \
  } while (0)

#define CHECK_EQ_INT(a, b)                                           \
  do {                                                               \
    long long a_ = (long long)(a), b_ = (long long)(b);              \
    if (a_ != b_) {                                                  \
      fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %lld, %s == %lld\n", \
              __FILE__, __LINE__, #a, a_, #b, b_);                   \
      cs_test_failures++;                                            \
    }                                                                \
  } while (0)

#define CHECK_EQ_STR(a, b)                                           \
  do {                                                               \
    const char *a_ = (a), *b_ = (b);                                 \
    if (strcmp(a_, b_) != 0) {                                       \
      fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: \"%s\" != \"%s\"\n", \
              __FILE__, __LINE__, a_, b_);                           \
      cs_test_failures++;                                            \
    }                                                                \
  } while (0)

#define TEST_MAIN_END()                                              \
  do {                                                               \
    if (cs_test_failures) fprintf(stderr, "%d check(s) failed\n",    \
                                  cs_test_failures);                 \
    return cs_test_failures ? 1 : 0;                                 \
  } while (0)

#endif /* CS_TEST_H */
