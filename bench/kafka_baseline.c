/*
 * kafka_baseline.c - the plain librdkafka loops bench/kafka.sh sets the
 * engine's kafka_source and kafka_sink against, through the same mock
 * cluster in the same run:
 *
 *   bench_kafka_baseline produce BOOTSTRAP TOPIC N   N records "w<i % 1000>"
 *   bench_kafka_baseline consume BOOTSTRAP TOPIC N   reads N records
 *
 * Each prints "<records> <seconds>" for its loop (client creation and the
 * wait for the brokers included, as the engine's figures include them).
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_common.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
  rd_kafka_conf_set(conf, "log_level", "2", err, sizeof(err));
  if (type == RD_KAFKA_CONSUMER) {
    rd_kafka_conf_set(conf, "group.id", "bench-baseline", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  }
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
  if (rk == NULL) bench_die(err);
  return rk;
}

static void produce(const char *bootstrap, const char *topic, long n) {
  double t0 = now();
  rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, bootstrap);
  char v[32];
  for (long i = 0; i < n; i++) {
    int len = snprintf(v, sizeof(v), "w%ld", i % 1000);
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(v, (size_t)len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 1);
    if ((i & 255) == 0) rd_kafka_poll(rk, 0); /* delivery reports, as kafka_sink */
  }
  if (rd_kafka_flush(rk, 60000)) bench_die("flush timed out");
  rd_kafka_destroy(rk);
  printf("%ld %.3f\n", n, now() - t0);
}

static void consume(const char *bootstrap, const char *topic, long n) {
  double t0 = now();
  rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap);
  rd_kafka_poll_set_consumer(rk);
  const struct rd_kafka_metadata *md;
  if (rd_kafka_metadata(rk, 1, NULL, &md, 10000)) bench_die("metadata");
  int parts = 0;
  for (int i = 0; i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, topic) == 0) parts = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
  for (int p = 0; p < parts; p++)
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  long got = 0, bytes = 0;
  while (got < n) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 10000);
    if (m == NULL) bench_die("consume timed out");
    if (!m->err) {
      got++;
      bytes += (long)m->len;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  printf("%ld %.3f\n", got, now() - t0);
  (void)bytes;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bench_kafka_baseline produce|consume BOOTSTRAP TOPIC N\n");
    return 2;
  }
  long n = atol(argv[4]);
  if (strcmp(argv[1], "produce") == 0) produce(argv[2], argv[3], n);
  else consume(argv[2], argv[3], n);
  return 0;
}
