/*
 * cs_config_file.c - the configuration file of the job configuration:
 * finding cstream-conf.yaml (DESIGN 5) and loading it with libyaml. Keys and
 * values are checked and stored through cs_config_int.h, so a key read here
 * means what it means when set by the job or a flag.
 */
#include "host/config/cs_config.h"
#include "host/config/cs_config_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

/* ============================================================ YAML loader */

/* Nested mappings deeper than this are refused (the recursion is ours). */
#define MAX_DEPTH 32
/* Files larger than this are refused. */
#define MAX_FILE_SIZE (16 << 20)

/* A value read from the file, applied only when the whole file is good. */
typedef struct pending {
  int idx;
  int via_alias; /* the file named the key by its alias */
  size_t line;
  char *text;
  long long num;
  char *where; /* "path:line" */
} pending;

typedef struct loader {
  yaml_parser_t parser;
  cs_buf text; /* the whole file */
  const char *path;
  cs_buf key; /* dotted key of the current node, NUL-terminated */
  pending *items;
  size_t n, cap;
  char *err;
  size_t errlen;
} loader;

static int fail_at(loader *ld, size_t line, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes "path:line: message" (or "path: message" for line 0), returns rc. */
static int fail_at(loader *ld, size_t line, int rc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (line > 0)
    cs__config_put_err(ld->err, ld->errlen, "%s:%zu: %s", ld->path, line, msg);
  else
    cs__config_put_err(ld->err, ld->errlen, "%s: %s", ld->path, msg);
  return rc;
}

/* The line of byte offset off of the text, for reader errors (libyaml
 * reports only an offset for those). */
static size_t line_of_offset(const cs_buf *text, size_t off) {
  size_t line = 1;
  for (size_t i = 0; i < off && i < text->len; i++)
    if (text->data[i] == '\n') line++;
  return line;
}

/* Turns the parser's error into a message. Returns CS_EINVAL or CS_ENOMEM. */
static int yaml_failure(loader *ld) {
  const yaml_parser_t *p = &ld->parser;
  const char *problem = p->problem != NULL ? p->problem : "unknown problem";
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    return fail_at(ld, 0, CS_ENOMEM, "out of memory reading YAML");
  case YAML_READER_ERROR:
    return fail_at(ld, line_of_offset(&ld->text, p->problem_offset), CS_EINVAL,
                   "YAML read error: %s", problem);
  default: {
    size_t line = p->problem_mark.line + 1, cline = p->context_mark.line + 1;
    /* A key without its ':' is found only on a later line; name its own. */
    if (p->context != NULL &&
        strcmp(p->context, "while scanning a simple key") == 0)
      line = cline;
    if (p->context != NULL && cline != line)
      return fail_at(ld, line, CS_EINVAL,
                     "YAML syntax error: %s (%s at line %zu)", problem,
                     p->context, cline);
    if (p->context != NULL)
      return fail_at(ld, line, CS_EINVAL, "YAML syntax error: %s (%s)", problem,
                     p->context);
    return fail_at(ld, line, CS_EINVAL, "YAML syntax error: %s", problem);
  }
  }
}

/* Reads the next event into ev; the caller deletes it. Returns 0 or an
 * error (ev then holds nothing). */
static int next_event(loader *ld, yaml_event_t *ev) {
  if (yaml_parser_parse(&ld->parser, ev)) return 0;
  return yaml_failure(ld);
}

/* Names the kind of node an event starts, for messages. */
static const char *node_kind(yaml_event_type_t t) {
  switch (t) {
  case YAML_SEQUENCE_START_EVENT:
    return "a sequence";
  case YAML_MAPPING_START_EVENT:
    return "a mapping";
  case YAML_ALIAS_EVENT:
    return "an alias";
  case YAML_SCALAR_EVENT:
    return "a scalar";
  default:
    return "an unexpected node";
  }
}

/* A plain scalar YAML reads as null: "", "~", "null". */
static int is_null(const yaml_event_t *ev) {
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  return n == 0 || (n == 1 && s[0] == '~') ||
         (n == 4 && (memcmp(s, "null", 4) == 0 || memcmp(s, "Null", 4) == 0 ||
                     memcmp(s, "NULL", 4) == 0));
}

/* Records the scalar value ev of the current key, read at line. */
static int load_leaf(loader *ld, size_t line, const yaml_event_t *ev) {
  const char *name = ld->key.data;
  char msg[512];
  pending it = {0};
  int idx = cs__config_find_key(name), rc;

  if (idx < 0) {
    cs__config_unknown_key(msg, sizeof(msg), name);
    return fail_at(ld, line, CS_EINVAL, "%s", msg);
  }
  if (is_null(ev))
    return fail_at(ld, line, CS_EINVAL, "missing value for '%s'", name);
  rc = cs__config_parse_value(idx, name, (const char *)ev->data.scalar.value,
                              ev->data.scalar.length, &it.text, &it.num, msg,
                              sizeof(msg));
  if (rc == CS_EINVAL) return fail_at(ld, line, rc, "%s", msg);
  if (rc != 0) goto fail_oom;
  for (size_t i = 0; i < ld->n; i++) {
    const pending *o = &ld->items[i];
    if (o->idx != idx) continue;
    cs_free(it.text);
    const char *first =
        o->via_alias ? cs__config_key_alias(idx) : cs__config_key_name(idx);
    if (strcmp(first, name) == 0)
      return fail_at(ld, line, CS_EINVAL,
                     "duplicate key '%s' (first set at line %zu)", name,
                     o->line);
    return fail_at(ld, line, CS_EINVAL,
                   "duplicate key '%s' (same key as '%s' at line %zu)", name,
                   first, o->line);
  }
  it.idx = idx;
  it.via_alias = strcmp(cs__config_key_name(idx), name) != 0;
  it.line = line;
  if ((it.where = cs__config_dup_printf("%s:%zu", ld->path, line)) == NULL)
    goto fail_oom;
  if (ld->n == ld->cap) {
    size_t cap = ld->cap ? ld->cap * 2 : 8;
    pending *items = cs_realloc(ld->items, cap * sizeof(*items));
    if (items == NULL) goto fail_oom;
    ld->items = items;
    ld->cap = cap;
  }
  ld->items[ld->n++] = it;
  return 0;

fail_oom:
  cs_free(it.text);
  cs_free(it.where);
  return fail_at(ld, line, CS_ENOMEM, "out of memory");
}

/* Sets ld->key to its first base bytes plus "." and the key s[0..n). */
static int push_key(loader *ld, size_t base, const char *s, size_t n,
                    size_t line) {
  if (n == 0) return fail_at(ld, line, CS_EINVAL, "empty key");
  if (memchr(s, '\0', n) != NULL)
    return fail_at(ld, line, CS_EINVAL, "key contains a NUL byte");
  ld->key.len = base;
  if ((base > 0 && cs_buf_append(&ld->key, ".", 1) != 0) ||
      cs_buf_append(&ld->key, s, n) != 0 || cs_buf_reserve(&ld->key, 1) != 0)
    return fail_at(ld, line, CS_ENOMEM, "out of memory");
  ld->key.data[ld->key.len] = '\0';
  return 0;
}

static int load_mapping(loader *ld, int depth);

/* Reads the value of the current key, which was read at line. */
static int load_value(loader *ld, size_t line, int depth) {
  yaml_event_t ev;
  int rc = next_event(ld, &ev);
  if (rc) return rc;
  yaml_event_type_t type = ev.type;
  if (type == YAML_SCALAR_EVENT) rc = load_leaf(ld, line, &ev);
  yaml_event_delete(&ev);
  if (type == YAML_SCALAR_EVENT) return rc;
  if (type == YAML_MAPPING_START_EVENT) {
    if (depth >= MAX_DEPTH)
      return fail_at(ld, line, CS_EINVAL, "mappings nested too deeply");
    return load_mapping(ld, depth + 1);
  }
  if (cs__config_find_key(ld->key.data) < 0) {
    char msg[512];
    cs__config_unknown_key(msg, sizeof(msg), ld->key.data);
    return fail_at(ld, line, CS_EINVAL, "%s", msg);
  }
  if (type == YAML_ALIAS_EVENT)
    return fail_at(ld, line, CS_EINVAL,
                   "'%s' is a YAML alias; aliases are not supported",
                   ld->key.data);
  return fail_at(ld, line, CS_EINVAL, "'%s' takes a single value, not %s",
                 ld->key.data, node_kind(type));
}

/* Reads the pairs of a mapping whose start event was consumed, up to and
 * including its end event. Keys are joined to the enclosing ones by dots. */
static int load_mapping(loader *ld, int depth) {
  size_t base = ld->key.len;
  for (;;) {
    yaml_event_t ev;
    int rc = next_event(ld, &ev);
    if (rc) return rc;
    size_t line = ev.start_mark.line + 1;
    if (ev.type == YAML_MAPPING_END_EVENT) {
      yaml_event_delete(&ev);
      ld->key.len = base;
      if (ld->key.data != NULL) ld->key.data[base] = '\0';
      return 0;
    }
    if (ev.type != YAML_SCALAR_EVENT) {
      const char *kind = node_kind(ev.type);
      yaml_event_delete(&ev);
      return fail_at(ld, line, CS_EINVAL, "a key must be a string, not %s",
                     kind);
    }
    rc = push_key(ld, base, (const char *)ev.data.scalar.value,
                  ev.data.scalar.length, line);
    yaml_event_delete(&ev);
    if (rc) return rc;
    rc = load_value(ld, line, depth);
    if (rc) return rc;
  }
}

/* Reads the whole stream: nothing, or one document whose root is a mapping
 * (or empty). */
static int load_stream(loader *ld) {
  yaml_event_t ev;
  int rc, docs = 0;
  if ((rc = next_event(ld, &ev)) != 0) return rc;
  yaml_event_delete(&ev); /* STREAM-START */
  for (;;) {
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    yaml_event_type_t type = ev.type;
    size_t line = ev.start_mark.line + 1;
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT) return 0;
    if (docs++ > 0)
      return fail_at(ld, line, CS_EINVAL,
                     "more than one YAML document (remove the second '---')");
    /* The root node. */
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    type = ev.type;
    line = ev.start_mark.line + 1;
    int empty = type == YAML_SCALAR_EVENT && is_null(&ev);
    yaml_event_delete(&ev);
    if (type == YAML_MAPPING_START_EVENT) {
      if ((rc = load_mapping(ld, 0)) != 0) return rc;
    } else if (!empty) {
      return fail_at(ld, line, CS_EINVAL,
                     "expected a mapping of configuration keys, not %s",
                     node_kind(type));
    }
    if ((rc = next_event(ld, &ev)) != 0) return rc;
    yaml_event_delete(&ev); /* DOCUMENT-END */
  }
}

/* Reads the whole stream once for its syntax alone, so that a syntax error
 * anywhere is reported before any error in the meaning of the keys. */
static int check_syntax(loader *ld) {
  for (;;) {
    yaml_event_t ev;
    int rc = next_event(ld, &ev);
    if (rc) return rc;
    yaml_event_type_t type = ev.type;
    yaml_event_delete(&ev);
    if (type == YAML_STREAM_END_EVENT) return 0;
  }
}

/* Reads the file at ld->path into ld->text. Returns 0 or an error. */
static int read_file(loader *ld) {
  struct stat st;
  int rc = 0;
  FILE *f = fopen(ld->path, "rb");
  if (f == NULL) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR)
      return fail_at(ld, 0, CS_ENOTFOUND, "no such file");
    if (e == EISDIR)
      return fail_at(ld, 0, CS_EINVAL, "is a directory, not a file");
    return fail_at(ld, 0, CS_EIO, "%s", strerror(e));
  }
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    rc = fail_at(ld, 0, CS_EINVAL, "is a directory, not a file");
    goto close_file;
  }
  for (;;) {
    if (cs_buf_reserve(&ld->text, 4096) != 0) {
      rc = fail_at(ld, 0, CS_ENOMEM, "out of memory");
      goto close_file;
    }
    size_t got =
        fread(ld->text.data + ld->text.len, 1, ld->text.cap - ld->text.len, f);
    ld->text.len += got;
    if (ld->text.len > MAX_FILE_SIZE) {
      rc = fail_at(ld, 0, CS_EINVAL,
                   "larger than %d MiB; not a "
                   "configuration file",
                   MAX_FILE_SIZE >> 20);
      goto close_file;
    }
    if (got > 0) continue;
    if (ferror(f)) rc = fail_at(ld, 0, CS_EIO, "%s", strerror(errno));
    break;
  }
close_file:
  fclose(f);
  return rc;
}

/* Points a freshly initialised parser at the text read. */
static int start_parser(loader *ld) {
  if (!yaml_parser_initialize(&ld->parser))
    return fail_at(ld, 0, CS_ENOMEM, "out of memory");
  yaml_parser_set_input_string(
      &ld->parser, (const unsigned char *)ld->text.data, ld->text.len);
  return 0;
}

/* Reads and checks the whole file first and applies its values only when
 * every one is good, so a failed load leaves c as it was. */
int cs_config_load_file(cs_config *c, const char *path, char *err,
                        size_t errlen) {
  loader ld;
  int rc;

  if (err != NULL && errlen > 0) err[0] = '\0';
  if (c == NULL || path == NULL) {
    cs__config_put_err(err, errlen, "no configuration file given");
    return CS_EINVAL;
  }
  memset(&ld, 0, sizeof(ld));
  ld.path = path;
  ld.err = err;
  ld.errlen = errlen;
  if ((rc = read_file(&ld)) != 0) goto fail_read;
  if ((rc = start_parser(&ld)) != 0) goto fail_read;
  rc = check_syntax(&ld);
  yaml_parser_delete(&ld.parser);
  if (rc != 0) goto fail_read;
  if ((rc = start_parser(&ld)) != 0) goto fail_read;

  rc = load_stream(&ld);
  for (size_t i = 0; i < ld.n; i++) {
    pending *it = &ld.items[i];
    if (rc == 0)
      cs__config_apply(c, it->idx, it->text, it->num, CS_CONF_FILE, it->where);
    else {
      cs_free(it->text);
      cs_free(it->where);
    }
  }
  cs_free(ld.items);
  cs_buf_free(&ld.key);
  yaml_parser_delete(&ld.parser);
fail_read:
  cs_buf_free(&ld.text);
  return rc;
}

/* ================================================================ finding */

/* Returns dir/name (cs_malloc'd), or NULL when out of memory. */
static char *join_path(const char *dir, const char *name) {
  size_t n = strlen(dir);
  int slash = n > 0 && dir[n - 1] == '/';
  return cs__config_dup_printf("%s%s%s", dir, slash ? "" : "/", name);
}

/* 1 when path exists and is not a directory. */
static int is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

char *cs_config_find(const char *explicit_path) {
  struct stat st;
  if (explicit_path != NULL && explicit_path[0] != '\0') {
    if (stat(explicit_path, &st) == 0 && S_ISDIR(st.st_mode))
      return join_path(explicit_path, CS_CONFIG_FILE_NAME);
    return cs_strdup(explicit_path);
  }
  const char *dir = getenv("CSTREAM_CONF_DIR");
  if (dir != NULL && dir[0] != '\0') {
    char *p = join_path(dir, CS_CONFIG_FILE_NAME);
    if (p != NULL && is_file(p)) return p;
    cs_free(p);
  }
  if (is_file(CS_CONFIG_FILE_NAME)) return cs_strdup(CS_CONFIG_FILE_NAME);
  return NULL;
}
