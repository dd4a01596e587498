/*
 * cs_lineserver.c - a loopback TCP server for specs: listens on 127.0.0.1
 * on an ephemeral port, writes the port number to a file, accepts one
 * client, sends it the lines of a file and closes the connection.
 *
 *   cs_lineserver --file PATH --port-file PATH [--interval-ms N]
 *                 [--keep-open] [--timeout S]
 *
 * --interval-ms pauses between lines; --keep-open keeps the connection open
 * after the file has been sent, until the client closes it or the server is
 * signalled. --timeout (default 60 s) bounds the whole run so a spec that
 * goes wrong never leaves the server behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

int main(int argc, char **argv) {
  const char *file = NULL, *port_file = NULL;
  long interval_ms = 0, timeout_s = 60;
  int keep_open = 0;
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
    else {
      fprintf(stderr, "usage: cs_lineserver --file PATH --port-file PATH "
                      "[--interval-ms N] [--keep-open] [--timeout S]\n");
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
  while ((n = getline(&line, &cap, in)) > 0) {
    if (send_all(fd, line, (size_t)n) != 0) break;
    if (interval_ms > 0) sleep_ms(interval_ms);
  }
  free(line);
  fclose(in);
  if (keep_open) {
    char buf[256];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
  }
  close(fd);
  return 0;
}
