/*
 * cs_lineserver.c - a loopback TCP server for specs: listens on 127.0.0.1
 * on an ephemeral port, writes the port number to a file, accepts one
 * client, sends it the lines of a file and closes the connection.
 *
 *   cs_lineserver --file PATH --port-file PATH [--interval-ms N]
 *                 [--keep-open] [--timeout S] [--repeat] [--burst N]
 *                 [--stop-file PATH] [--sent-file PATH]
 *
 * --interval-ms pauses between lines; --keep-open keeps the connection open
 * after the file has been sent, until the client closes it or the server is
 * signalled. --timeout (default 60 s) bounds the whole run so a spec that
 * goes wrong never leaves the server behind.
 *
 * For specs and benchmarks that must control how long a stream lasts:
 * --repeat sends the file again and again (until --stop-file or the
 * timeout); --burst N sends the first N lines without the --interval-ms
 * pause; --stop-file stops sending (after a whole line) as soon as that
 * file exists; --sent-file receives the number of lines sent when the
 * server stops sending (written to a temporary name and renamed).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
  fprintf(stderr, "cs_lineserver: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

static void write_atomically(const char *path, long long value) {
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) die(tmp);
  fprintf(f, "%lld\n", value);
  if (fclose(f) != 0 || rename(tmp, path) != 0) die(path);
}

static int exists(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0;
}

int main(int argc, char **argv) {
  const char *file = NULL, *port_file = NULL, *stop_file = NULL, *sent_file = NULL;
  long interval_ms = 0, timeout_s = 60;
  long long burst = 0;
  int keep_open = 0, repeat = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
      file = argv[++i];
    else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
      port_file = argv[++i];
    else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
      interval_ms = atol(argv[++i]);
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      timeout_s = atol(argv[++i]);
    else if (strcmp(argv[i], "--keep-open") == 0)
      keep_open = 1;
    else if (strcmp(argv[i], "--repeat") == 0)
      repeat = 1;
    else if (strcmp(argv[i], "--burst") == 0 && i + 1 < argc)
      burst = atoll(argv[++i]);
    else if (strcmp(argv[i], "--stop-file") == 0 && i + 1 < argc)
      stop_file = argv[++i];
    else if (strcmp(argv[i], "--sent-file") == 0 && i + 1 < argc)
      sent_file = argv[++i];
    else {
      fprintf(stderr, "usage: cs_lineserver --file PATH --port-file PATH "
                      "[--interval-ms N] [--keep-open] [--timeout S] [--repeat] "
                      "[--burst N] [--stop-file PATH] [--sent-file PATH]\n");
      return 2;
    }
  }
  if (!file || !port_file) {
    fprintf(stderr, "cs_lineserver: --file and --port-file are required\n");
    return 2;
  }
  alarm((unsigned)timeout_s);
  FILE *in = fopen(file, "rb");
  if (!in) die(file);

  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0) die("socket");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) != 0) die("bind");
  if (listen(ls, 1) != 0) die("listen");
  socklen_t alen = sizeof(addr);
  if (getsockname(ls, (struct sockaddr *)&addr, &alen) != 0) die("getsockname");

  /* Written to a temporary name and renamed, so a reader never sees half. */
  char tmp[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
  FILE *pf = fopen(tmp, "w");
  if (!pf) die(tmp);
  fprintf(pf, "%d\n", ntohs(addr.sin_port));
  if (fclose(pf) != 0 || rename(tmp, port_file) != 0) die(port_file);

  int fd;
  do fd = accept(ls, NULL, NULL);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) die("accept");
  close(ls);

  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long long sent = 0;
  int ok = 1;
  while (ok && !exists(stop_file)) {
    n = getline(&line, &cap, in);
    if (n <= 0) {
      /* end of the file: again from the start with --repeat (unless the
       * file is empty), else done */
      if (!repeat || sent == 0 || fseek(in, 0, SEEK_SET) != 0) break;
      continue;
    }
    if (send_all(fd, line, (size_t)n) != 0) {
      ok = 0;
      break;
    }
    sent++;
    if (interval_ms > 0 && sent >= burst) sleep_ms(interval_ms);
  }
  free(line);
  fclose(in);
  if (sent_file) write_atomically(sent_file, sent);
  if (keep_open) {
    char buf[256];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
  }
  close(fd);
  return 0;
}
