/*
 * cs_kafka_int.h - internal to host/connectors: the librdkafka handling
 * kafka_source and kafka_sink share (cs_kafka_client.c): a connector's
 * options read from its node, creating a client with them, waiting for a
 * topic's metadata within kafka.connect-timeout, and error text that names
 * the brokers, topic and partition. Kept small and free of either
 * connector's logic so later connectors (repartition topics) can reuse it.
 */
#ifndef CS_KAFKA_INT_H
#define CS_KAFKA_INT_H

#include <librdkafka/rdkafka.h>

#include "host/connectors/cs_connectors.h"

/* librdkafka settings as key/value pairs (owned copies). */
typedef struct cs_kafka_props {
  int n;
  char **kv; /* kv[2i] = key, kv[2i + 1] = value */
} cs_kafka_props;

/* Copies the string-keyed table at idx (values: string, number, boolean)
 * into p (appending). Returns 0 or CS_ENOMEM.  [-0, +0] */
int cs__kafka_props_read(lua_State *L, int idx, cs_kafka_props *p);
/* Appends one pair. 0 or CS_ENOMEM. */
int cs__kafka_props_add(cs_kafka_props *p, const char *k, const char *v);
/* The value of key in p, or NULL. */
const char *cs__kafka_props_get(const cs_kafka_props *p, const char *k);
void cs__kafka_props_free(cs_kafka_props *p);

/* What a client's error callback saw, read on the thread that polls it. */
typedef struct cs_kafka_health {
  int all_down;          /* librdkafka said every broker is down */
  int64_t err_since_ms;  /* cs_now_ms() of the first error since the
                            client was last known to be well, or 0 */
  int fatal;             /* a fatal error: the client is unusable */
  char last[512];        /* the newest error's text */
} cs_kafka_health;

/* Whether the client's brokers have been failing for longer than
 * timeout_ms: after an error streak that long, asks the brokers for
 * metadata (waiting up to 2 s); an answer ends the streak. Returns 1 (with
 * why in err) when they are unreachable, else 0. */
int cs__kafka_unreachable(rd_kafka_t *rk, cs_kafka_health *h, long long timeout_ms,
                          char *err, size_t errlen);

/* Creates a librdkafka client of the type with bootstrap.servers set to
 * bootstrap, then the defaults in dflt (pairs, may be NULL), then the
 * user's props (which win over dflt), then the pairs in force (which win
 * over everything; may be NULL). Errors go to h (when not NULL), which is
 * also the opaque of the delivery report callback dr (NULL: none). Returns
 * the client (caller destroys with rd_kafka_destroy), or NULL with a
 * message in err naming the setting. */
rd_kafka_t *cs__kafka_new(rd_kafka_type_t type, const char *bootstrap,
                          const cs_kafka_props *dflt, const cs_kafka_props *props,
                          const cs_kafka_props *force, cs_kafka_health *h,
                          void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *),
                          char *err, size_t errlen);

/* The configuration cs__kafka_new makes (bootstrap, defaults, the user's
 * props, forced pairs; errors to h, the opaque), for a client that needs
 * more callbacks. NULL with a message in err. */
rd_kafka_conf_t *cs__kafka_conf(const char *bootstrap, const cs_kafka_props *dflt,
                                const cs_kafka_props *props, const cs_kafka_props *force,
                                cs_kafka_health *h, char *err, size_t errlen);

/* A group (cs_group.c): the partitions of topic that this process's
 * kafka_source subtasks read (*out: caller frees; none when not in a
 * group). 0 or CS_ENOMEM. */
int cs__group_source_parts(cs_job *job, const char *topic, int32_t **out, int *n);

/* Waits up to timeout_ms for the metadata of topic: sets *nparts. Returns
 * 0; CS_ENOTFOUND with "topic 'x' does not exist on brokers b" in err;
 * CS_EIO with "cannot reach the Kafka broker(s) b within N ms
 * (kafka.connect-timeout): why" in err. */
int cs__kafka_topic_partitions(rd_kafka_t *rk, const char *bootstrap,
                               const char *topic, long long timeout_ms,
                               int *nparts, char *err, size_t errlen);

/* The bootstrap servers a connector uses: the option at node table index
 * (field "bootstrap_servers" of its kafka table), else kafka.bootstrap-servers.
 * Returns a copy (caller frees with cs_free), or NULL when neither is set. */
char *cs__kafka_bootstrap(lua_State *L, int kafka_idx, const cs_job *job);

/* Pushes the kafka options table of op's node from the worker's
 * environment (env._nodes[i].kafka).  [-0, +1] */
void cs__kafka_push_options(lua_State *L, cs_opi *op);

#endif /* CS_KAFKA_INT_H */
