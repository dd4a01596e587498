/*
 * cs_group.c - a process's membership of its group (cluster.group,
 * docs/scale-out.md): one librdkafka consumer in the consumer group
 * <group>, made once per process and kept across attempts, so that a local
 * restart is not a rebalance of its own. It subscribes to the first
 * repartition topic (the "tasks" topic: partition r is logical subtask r)
 * and to the job's kafka_source topics; Kafka's group protocol deals them
 * out. The member reads no records: what it is assigned it pauses; the
 * subtasks read with consumers of their own.
 *
 * A thread polls the consumer (heartbeats, rebalances). The rebalance
 * callback reports each assignment and revocation to the runtime
 * (cs_job_group_assigned / _revoked), which restarts the local attempt
 * with the new share. kafka_source asks cs__group_source_parts which of
 * its topics' partitions this process reads.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "host/connectors/cs_kafka_int.h"

typedef struct gpart {
  char *topic;
  int32_t partition;
} gpart;

typedef struct cs_group {
  cs_kafka_health h; /* first: the client's opaque */
  cs_job *job;
  rd_kafka_t *rk;
  char *tasks; /* the tasks topic, or NULL (no key_by) */
  uv_thread_t thread;
  int thread_started;
  atomic_int stop;
  uv_mutex_t lock; /* src */
  int nsrc;
  gpart *src; /* kafka_source partitions this process reads */
} cs_group;

static void free_parts(gpart *p, int n) {
  for (int i = 0; i < n; i++) cs_free(p[i].topic);
  cs_free(p);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  cs_group *g = opaque;
  cs_job *job = g->job;
  if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    rd_kafka_assign(rk, NULL);
    cs_job_group_revoked(job);
    return;
  }
  rd_kafka_assign(rk, parts);
  rd_kafka_pause_partitions(rk, parts);
  unsigned char *mine = cs_calloc((size_t)job->group_n, 1);
  gpart *src = cs_calloc((size_t)parts->cnt + 1, sizeof(*src));
  int nsrc = 0;
  if (mine == NULL || src == NULL) {
    cs_free(mine);
    cs_free(src);
    cs_job_group_revoked(job); /* out of memory: run nothing */
    return;
  }
  for (int r = 0; g->tasks == NULL && r < job->group_n; r++) mine[r] = 1;
  for (int i = 0; i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *p = &parts->elems[i];
    if (g->tasks && strcmp(p->topic, g->tasks) == 0) {
      if (p->partition >= 0 && p->partition < job->group_n) mine[p->partition] = 1;
      continue;
    }
    src[nsrc].topic = cs_strdup(p->topic);
    src[nsrc++].partition = p->partition;
  }
  uv_mutex_lock(&g->lock);
  free_parts(g->src, g->nsrc);
  g->src = src;
  g->nsrc = nsrc;
  uv_mutex_unlock(&g->lock);
  cs_job_group_assigned(job, mine, job->group_n);
  cs_free(mine);
}

static void member_main(void *arg) {
  cs_group *g = arg;
  while (!atomic_load(&g->stop)) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(g->rk, 100);
    if (m) rd_kafka_message_destroy(m); /* paused: errors and stray fetches */
  }
}

/* The topics the member subscribes to: the tasks topic, then every
 * kafka_source topic (node paths, comma-separated). */
static int subscription(cs_group *g, rd_kafka_topic_partition_list_t *l) {
  const cs_plan *p = g->job->plan;
  for (int k = 0; k < p->nnodes; k++) {
    const cs_node *n = &p->nodes[k];
    if (n->kind == CS_OP_SRC_REPARTITION && g->tasks == NULL && n->path) {
      g->tasks = cs_strdup(n->path);
      if (g->tasks == NULL) return CS_ENOMEM;
      rd_kafka_topic_partition_list_add(l, g->tasks, RD_KAFKA_PARTITION_UA);
    }
  }
  for (int k = 0; k < p->nnodes; k++) {
    const cs_node *n = &p->nodes[k];
    if (n->kind != CS_OP_SRC_KAFKA || n->path == NULL) continue;
    char *topics = cs_strdup(n->path), *save = NULL;
    if (topics == NULL) return CS_ENOMEM;
    for (char *t = strtok_r(topics, ",", &save); t; t = strtok_r(NULL, ",", &save))
      rd_kafka_topic_partition_list_add(l, t, RD_KAFKA_PARTITION_UA);
    cs_free(topics);
  }
  return 0;
}

/* Every repartition topic must exist with cluster.partitions partitions:
 * the count is the job's logical parallelism for its whole life. */
static int check_topics(cs_group *g, char *err, size_t errlen) {
  const cs_job *job = g->job;
  const cs_plan *p = job->plan;
  for (int k = 0; k < p->nnodes; k++) {
    const cs_node *n = &p->nodes[k];
    if (n->kind != CS_OP_SRC_REPARTITION || n->path == NULL) continue;
    int parts = 0;
    char why[900];
    int rc = cs__kafka_topic_partitions(g->rk, job->cfg->kafka_bootstrap, n->path,
                                        job->cfg->kafka_connect_timeout_ms, &parts, why,
                                        sizeof(why));
    if (rc == CS_ENOTFOUND || (rc == 0 && parts != job->group_n)) {
      snprintf(err, errlen, "the group's repartition topic '%s' must exist with "
               "cluster.partitions = %d partitions (it %s%.0d%s); create it, e.g. "
               "kafka-topics.sh --bootstrap-server %s --create --topic %s --partitions %d",
               n->path, job->group_n, rc ? "does not exist" : "has ", rc ? 0 : parts,
               rc ? "" : " partitions", job->cfg->kafka_bootstrap, n->path, job->group_n);
      return CS_EINVAL;
    }
    if (rc) {
      snprintf(err, errlen, "%s", why);
      return rc;
    }
  }
  return 0;
}

int cs_group_open(cs_job *job, char **errmsg) {
  const cs_run_config *cfg = job->cfg;
  cs_group *g = cs_calloc(1, sizeof(*g));
  if (g == NULL) {
    *errmsg = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  g->job = job;
  uv_mutex_init(&g->lock);
  job->group = g;
  char err[1500], sess[32], hb[32];
  snprintf(sess, sizeof(sess), "%lld", cfg->group_session_ms);
  snprintf(hb, sizeof(hb), "%lld", cfg->group_session_ms / 10 > 0 ? cfg->group_session_ms / 10 : 1);
  cs_kafka_props force = {0};
  int rc = cs__kafka_props_add(&force, "group.id", cfg->group);
  if (rc == 0) rc = cs__kafka_props_add(&force, "session.timeout.ms", sess);
  if (rc == 0) rc = cs__kafka_props_add(&force, "heartbeat.interval.ms", hb);
  if (rc == 0) rc = cs__kafka_props_add(&force, "enable.auto.commit", "false");
  if (rc == 0) rc = cs__kafka_props_add(&force, "partition.assignment.strategy", "range");
  if (rc) {
    cs__kafka_props_free(&force);
    *errmsg = cs_strdup("out of memory");
    return rc;
  }
  rd_kafka_conf_t *conf = cs__kafka_conf(cfg->kafka_bootstrap, NULL, NULL, &force, &g->h,
                                         err, sizeof(err));
  cs__kafka_props_free(&force);
  if (conf) {
    char why[512];
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    g->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (g->rk == NULL) snprintf(err, sizeof(err), "cannot create a Kafka client: %s", why);
  }
  if (g->rk == NULL) {
    cs_buf b = {0};
    cs_buf_printf(&b, "--group %s: %s", cfg->group, err);
    *errmsg = b.data;
    return CS_EINVAL;
  }
  rd_kafka_poll_set_consumer(g->rk);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  rc = subscription(g, l);
  if (rc == 0) rc = check_topics(g, err, sizeof(err));
  else snprintf(err, sizeof(err), "out of memory");
  if (rc == 0) {
    rd_kafka_resp_err_t e = rd_kafka_subscribe(g->rk, l);
    if (e) {
      snprintf(err, sizeof(err), "cannot join the group on %s: %s", cfg->kafka_bootstrap,
               rd_kafka_err2str(e));
      rc = CS_EIO;
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
  if (rc == 0 && uv_thread_create(&g->thread, member_main, g) == 0) g->thread_started = 1;
  else if (rc == 0) {
    snprintf(err, sizeof(err), "cannot start the group member's thread");
    rc = CS_EIO;
  }
  if (rc) {
    cs_buf b = {0};
    cs_buf_printf(&b, "--group %s: %s", cfg->group, err);
    *errmsg = b.data;
  }
  return rc;
}

void cs_group_close(cs_job *job) {
  cs_group *g = job->group;
  if (g == NULL) return;
  if (g->thread_started) {
    atomic_store(&g->stop, 1);
    uv_thread_join(&g->thread);
  }
  if (g->rk) {
    rd_kafka_consumer_close(g->rk); /* leaves the group: the others rebalance now */
    rd_kafka_destroy(g->rk);
  }
  free_parts(g->src, g->nsrc);
  cs_free(g->tasks);
  uv_mutex_destroy(&g->lock);
  cs_free(g);
  job->group = NULL;
}

int cs__group_source_parts(cs_job *job, const char *topic, int32_t **out, int *n) {
  cs_group *g = job->group;
  *out = NULL;
  *n = 0;
  if (g == NULL) return 0;
  uv_mutex_lock(&g->lock);
  int32_t *a = cs_calloc((size_t)g->nsrc + 1, sizeof(*a));
  for (int i = 0; a && i < g->nsrc; i++)
    if (strcmp(g->src[i].topic, topic) == 0) a[(*n)++] = g->src[i].partition;
  uv_mutex_unlock(&g->lock);
  if (a == NULL) return CS_ENOMEM;
  *out = a;
  return 0;
}
