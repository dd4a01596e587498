/*
 * cs_kafka_mock.c - a test tool around librdkafka's mock cluster, so the
 * Kafka specs need no broker. Modes:
 *
 *   cs_kafka_mock serve [--brokers N] [--topic NAME:PARTITIONS]...
 *       Hosts a mock cluster on loopback (ephemeral ports), prints
 *       "bootstrap <host:port,...>" on stdout, then reads commands from
 *       stdin, one a line, and answers each with "ok <command>":
 *         create NAME PARTITIONS    a topic
 *         down ID | up ID           a broker (ids 1..N) goes down / comes up
 *         errors API ERR COUNT      the next COUNT requests of Kafka API key
 *                                   API fail with error code ERR
 *       Exits when stdin closes (the spec ends) or on SIGTERM/SIGINT.
 *   cs_kafka_mock produce BOOTSTRAP TOPIC
 *       Produces the stdin lines "partition TAB key TAB value [TAB ts]"
 *       (partition -1: the partitioner's choice; an empty key is none);
 *       "\xNN" in a key or value is the byte NN (as dump prints it), so a
 *       value may hold a tab, a newline, a NUL or any other byte.
 *   cs_kafka_mock dump BOOTSTRAP TOPIC
 *       Prints every record of the topic (read_uncommitted: the mock does
 *       not hide aborted records anyway) as
 *       "partition TAB offset TAB key TAB value TAB ts TAB headers", headers
 *       "name=value;..."; records of a partition in offset order.
 *   cs_kafka_mock committed BOOTSTRAP GROUP TOPIC
 *       Prints "partition TAB offset" for the group's committed offsets
 *       (-1001 where none).
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

static void die(const char *what, const char *why) {
  fprintf(stderr, "cs_kafka_mock: %s: %s\n", what, why);
  exit(1);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *bootstrap,
                          const char *group) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err,
                                     sizeof(err)) != RD_KAFKA_CONF_OK)
    die("bootstrap.servers", err);
  if (group && rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)))
    die("group.id", err);
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  if (type == RD_KAFKA_CONSUMER)
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err));
  rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
  if (rk == NULL) die("rd_kafka_new", err);
  return rk;
}

/* ------------------------------------------------------------------ serve */

static void serve_command(rd_kafka_mock_cluster_t *mc, char *line) {
  char name[256];
  int a, b, c;
  line[strcspn(line, "\r\n")] = '\0';
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  if (sscanf(line, "create %255s %d", name, &a) == 2) {
    err = rd_kafka_mock_topic_create(mc, name, a, 1);
  } else if (sscanf(line, "down %d", &a) == 1) {
    err = rd_kafka_mock_broker_set_down(mc, a);
  } else if (sscanf(line, "up %d", &a) == 1) {
    err = rd_kafka_mock_broker_set_up(mc, a);
  } else if (sscanf(line, "errors %d %d %d", &a, &b, &c) == 3) {
    rd_kafka_resp_err_t *errs = calloc((size_t)c, sizeof(*errs));
    for (int i = 0; i < c; i++) errs[i] = (rd_kafka_resp_err_t)b;
    rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)c, errs);
    free(errs);
  } else if (line[0] != '\0') {
    printf("error unknown command: %s\n", line);
    fflush(stdout);
    return;
  }
  if (err)
    printf("error %s: %s\n", line, rd_kafka_err2str(err));
  else
    printf("ok %s\n", line);
  fflush(stdout);
}

static int serve(int argc, char **argv) {
  int brokers = 1;
  rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) brokers = atoi(argv[++i]);
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (mc == NULL) die("serve", "cannot create the mock cluster");
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--topic") != 0 || i + 1 >= argc) continue;
    char name[256];
    int parts = 1;
    const char *spec = argv[++i];
    const char *colon = strrchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n >= sizeof(name)) die("--topic", "name too long");
    memcpy(name, spec, n);
    name[n] = '\0';
    if (colon) parts = atoi(colon + 1);
    if (rd_kafka_mock_topic_create(mc, name, parts, 1))
      die("--topic", "cannot create the topic");
  }
  printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
  fflush(stdout);
  char line[1024];
  size_t len = 0;
  while (!stop) {
    struct pollfd p = {.fd = 0, .events = POLLIN};
    int r = poll(&p, 1, 200);
    if (r <= 0) continue;
    ssize_t k = read(0, line + len, sizeof(line) - 1 - len);
    if (k <= 0) break; /* stdin closed: the spec is over */
    len += (size_t)k;
    line[len] = '\0';
    char *nl;
    while ((nl = strchr(line, '\n')) != NULL) {
      *nl = '\0';
      serve_command(mc, line);
      size_t used = (size_t)(nl - line) + 1;
      memmove(line, nl + 1, len - used + 1);
      len -= used;
    }
    if (len == sizeof(line) - 1) len = 0; /* an overlong line: dropped */
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}

/* ---------------------------------------------------------------- produce */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (m->err) die("delivery", rd_kafka_err2str(m->err));
}

/* Decodes the "\xNN" escapes of s in place; returns the decoded length. */
static size_t unescape(char *s) {
  char *o = s;
  for (char *p = s; *p; p++) {
    unsigned v;
    if (p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) &&
        isxdigit((unsigned char)p[3]) && sscanf(p + 2, "%2x", &v) == 1) {
      *o++ = (char)v;
      p += 3;
    } else {
      *o++ = *p;
    }
  }
  return (size_t)(o - s);
}

static int produce(const char *bootstrap, const char *topic) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
  rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (rk == NULL) die("rd_kafka_new", err);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, stdin)) > 0) {
    line[strcspn(line, "\n")] = '\0';
    char *f[4] = {NULL, NULL, NULL, NULL};
    char *p = line;
    for (int i = 0; i < 4 && p; i++) {
      f[i] = p;
      p = strchr(p, '\t');
      if (p) *p++ = '\0';
    }
    if (f[2] == NULL) continue;
    int32_t part = atoi(f[0]);
    long long ts = f[3] ? atoll(f[3]) : 0;
    int has_key = f[1][0] != '\0';
    size_t klen = unescape(f[1]), vlen = unescape(f[2]);
    rd_kafka_resp_err_t e;
    do {
      e = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic),
          RD_KAFKA_V_PARTITION(part < 0 ? RD_KAFKA_PARTITION_UA : part),
          RD_KAFKA_V_KEY(has_key ? f[1] : NULL, klen),
          RD_KAFKA_V_VALUE(f[2], vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_END);
      if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) rd_kafka_poll(rk, 10);
    } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    if (e) die("produce", rd_kafka_err2str(e));
    rd_kafka_poll(rk, 0);
  }
  free(line);
  if (rd_kafka_flush(rk, 30000)) die("flush", "timed out");
  rd_kafka_destroy(rk);
  return 0;
}

/* ------------------------------------------------------------ dump, offsets */

static int partition_count(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  if (e) die("metadata", rd_kafka_err2str(e));
  int n = md->topic_cnt == 1 && !md->topics[0].err ? md->topics[0].partition_cnt : -1;
  rd_kafka_metadata_destroy(md);
  if (n < 0) die(topic, "no such topic");
  return n;
}

static void print_escaped(const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\t' || s[i] == '\n' || s[i] == '\\') printf("\\x%02x", s[i]);
    else putchar(s[i]);
  }
}

static void dump_message(const rd_kafka_message_t *m) {
  printf("%d\t%lld\t", (int)m->partition, (long long)m->offset);
  if (m->key) print_escaped(m->key, m->key_len);
  putchar('\t');
  if (m->payload) print_escaped(m->payload, m->len);
  rd_kafka_timestamp_type_t tt;
  printf("\t%lld\t", (long long)rd_kafka_message_timestamp(m, &tt));
  rd_kafka_headers_t *h = NULL;
  if (rd_kafka_message_headers(m, &h) == 0 && h) {
    const char *name;
    const void *val;
    size_t len;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &len) == 0; i++) {
      printf("%s%s=", i ? ";" : "", name);
      if (val) print_escaped(val, len);
    }
  }
  putchar('\n');
}

static int dump(const char *bootstrap, const char *topic) {
  rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap, "cs_kafka_mock-dump");
  int n = partition_count(rk, topic);
  for (int p = 0; p < n; p++) {
    int64_t lo, hi;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
    if (e) die("watermarks", rd_kafka_err2str(e));
    if (hi <= lo) continue;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, p)->offset = lo;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int64_t next = lo;
    while (next < hi) {
      rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 10000);
      if (m == NULL) die("dump", "timed out");
      if (m->partition != p) { /* left from the previous assignment */
        rd_kafka_message_destroy(m);
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        rd_kafka_message_destroy(m);
        break;
      }
      if (m->err) die("dump", rd_kafka_message_errstr(m));
      dump_message(m);
      next = m->offset + 1;
      rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return 0;
}

static int committed(const char *bootstrap, const char *group, const char *topic) {
  rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, bootstrap, group);
  int n = partition_count(rk, topic);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int p = 0; p < n; p++) rd_kafka_topic_partition_list_add(l, topic, p);
  rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
  if (e) die("committed", rd_kafka_err2str(e));
  for (int i = 0; i < l->cnt; i++)
    printf("%d\t%lld\n", (int)l->elems[i].partition, (long long)l->elems[i].offset);
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(rk);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);
  if (argc >= 2 && strcmp(argv[1], "serve") == 0) return serve(argc - 2, argv + 2);
  if (argc == 4 && strcmp(argv[1], "produce") == 0) return produce(argv[2], argv[3]);
  if (argc == 4 && strcmp(argv[1], "dump") == 0) return dump(argv[2], argv[3]);
  if (argc == 5 && strcmp(argv[1], "committed") == 0)
    return committed(argv[2], argv[3], argv[4]);
  fprintf(stderr, "usage: cs_kafka_mock serve [--brokers N] [--topic NAME:PARTS]... |\n"
                  "       produce BOOTSTRAP TOPIC | dump BOOTSTRAP TOPIC |\n"
                  "       committed BOOTSTRAP GROUP TOPIC\n");
  return 2;
}
