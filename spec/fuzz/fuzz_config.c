/*
 * fuzz_config.c - the configuration reader (host/config) on arbitrary
 * bytes. The first byte chooses the source: bit 0 clear, the rest is a
 * cstream-conf.yaml loaded with cs_config_load_file; set, the rest is one
 * "-D KEY=VALUE" flag a line, each given to cs_config_set as the command
 * line does. Properties: every refusal has a message; a refused file or
 * flag leaves the configuration as it was (the load is all or nothing);
 * an accepted value prints, and its normalised text (cs_config_str) is
 * accepted again with the same result.
 */
#include "host/config/cs_config.h"
#include "fuzz_util.h"

/* cs_config_print into a heap string (caller frees). */
static char *printed(const cs_config *c) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  FUZZ_CHECK(f != NULL);
  cs_config_print(c, f);
  FUZZ_CHECK(fclose(f) == 0);
  return s;
}

/* Sets key=value as a flag; on success, sets the normalised text again
 * and checks nothing changes. */
static void set_flag(cs_config *c, const char *key, const char *value) {
  char err[600];
  err[0] = '\0';
  char *before = printed(c);
  int rc = cs_config_set(c, key, value, CS_CONF_FLAG, "-D", err, sizeof(err));
  char *after = printed(c);
  if (rc != 0) {
    FUZZ_CHECK(rc == CS_EINVAL && err[0] != '\0');
    FUZZ_CHECK(strcmp(before, after) == 0);
  } else {
    const char *norm = cs_config_str(c, key);
    if (norm) {
      char *copy = strdup(norm);
      FUZZ_CHECK(copy != NULL);
      rc = cs_config_set(c, key, copy, CS_CONF_FLAG, "-D", err, sizeof(err));
      if (rc) fprintf(stderr, "%s=%s normalised to '%s', refused: %s\n", key,
                      value, copy, err);
      FUZZ_CHECK(rc == 0);
      char *again = printed(c);
      FUZZ_CHECK(strcmp(after, again) == 0);
      free(again);
      free(copy);
    }
  }
  free(before);
  free(after);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  int flags = data[0] & 1;
  data++, size--;
  cs_config *c = cs_config_create();
  FUZZ_CHECK(c != NULL);
  if (!flags) {
    char path[600], err[1200];
    snprintf(path, sizeof(path), "%s/cstream-conf.yaml", fuzz_scratch_dir());
    fuzz_write_file(path, data, size);
    char *before = printed(c);
    err[0] = '\0';
    int rc = cs_config_load_file(c, path, err, sizeof(err));
    char *after = printed(c);
    if (rc != 0) {
      FUZZ_CHECK(err[0] != '\0');
      FUZZ_CHECK(strcmp(before, after) == 0);
    }
    free(before);
    free(after);
  } else {
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    for (char *line = text, *next; line; line = next) {
      char *nl = strchr(line, '\n');
      next = nl ? nl + 1 : NULL;
      if (nl) *nl = '\0';
      char *eq = strchr(line, '=');
      if (eq == NULL) continue; /* the command line refuses it before */
      *eq = '\0';
      set_flag(c, line, eq + 1);
    }
    free(text);
  }
  cs_config_destroy(c);
  return 0;
}
