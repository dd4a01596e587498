/*
 * cs_config_int.h - INTERNAL to the job configuration; not part of its
 * contract. Include it only from host/cs_config.c (the key table, values,
 * precedence, printing and help) and host/cs_config_file.c (finding and
 * loading cstream-conf.yaml), which share what is declared here. Everything
 * else uses cs_config.h.
 *
 * Keys are named by their index in the key table, as returned by
 * cs__config_find_key; an index is valid for the life of the program.
 */
#ifndef CS_CONFIG_INT_H
#define CS_CONFIG_INT_H

#include <stddef.h>

#include "host/config/cs_config.h"

/* Returns the index of the key whose name or alias is name, or -1 (also for
 * a NULL name). */
int cs__config_find_key(const char *name);

/* The name of key idx, and its alias (NULL when it has none). Both are
 * static strings. */
const char *cs__config_key_name(int idx);
const char *cs__config_key_alias(int idx);

/* Writes "unknown key 'name'" into msg, with the closest known key suggested
 * when one is within a few edits. msg is NUL-terminated and truncated to
 * msglen. */
void cs__config_unknown_key(char *msg, size_t msglen, const char *name);

/* Parses the value s[0..n) of key idx, named keyname in messages. On success
 * sets *text (cs_malloc'd, the caller owns it) and *num and returns 0; else
 * returns CS_EINVAL with msg set, or CS_ENOMEM. */
int cs__config_parse_value(int idx, const char *keyname, const char *s,
                           size_t n, char **text, long long *num, char *msg,
                           size_t msglen);

/* Stores a parsed value of key idx at origin unless the key holds one of
 * higher origin. Takes ownership of text and where (where may be NULL)
 * either way. */
void cs__config_apply(cs_config *c, int idx, char *text, long long num,
                      cs_conf_origin origin, char *where);

/* Formats into err when err is not NULL and errlen > 0. */
void cs__config_put_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns a cs_malloc'd formatted string the caller frees with cs_free, or
 * NULL when out of memory. */
char *cs__config_dup_printf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#endif /* CS_CONFIG_INT_H */
