/*
 * latency - end-to-end latency of a job fed through a loopback socket at a
 * fixed rate.
 *
 *   bench_latency [--rate N] [--seconds S] [--warmup S] [--keys K]
 *                 [--timeout S] -- CMD [ARGS...]
 *
 * Listens on 127.0.0.1 on an ephemeral port, starts CMD ARGS... 127.0.0.1
 * PORT (a cstream-lua job whose socket_text_stream connects to us) with
 * its stdout piped back, and sends it lines "k<n>,<t>" at N lines per
 * second (default 100000) for S seconds (default 4), paced every
 * millisecond. <t> is the CLOCK_MONOTONIC time, in ns, at which the line
 * was due to be sent (not when it was: a sender held up by a slow receiver
 * does not hide the wait). The job writes each record's <t> back as the
 * last thing on a line of its stdout; on reading a line we take now - <t>.
 * After S seconds we close the socket (the job's source ends), read the
 * job's output to the end and wait for it.
 *
 * Prints one line: "sent N received N rate R p50_us X p99_us Y max_us Z"
 * over the lines due after the warm-up (default 1 s). Exits 1 when the job
 * fails, loses or adds lines, or does not end within the timeout (default
 * 60 s after sending stops); the job is killed then, so nothing is left
 * behind.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child = -1;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints the error, kills and reaps the job if it runs, exits 1. */
static void fail(const char *what) {
  fprintf(stderr, "bench_latency: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }
  exit(1);
}

/* A growable byte buffer (output to the socket, input from the pipe). */
typedef struct buf {
  char *data;
  size_t len, cap;
} buf;

static void buf_reserve(buf *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 1 << 16;
  while (cap < b->len + more) cap *= 2;
  char *d = realloc(b->data, cap);
  if (d == NULL) fail("out of memory");
  b->data = d;
  b->cap = cap;
}

static void buf_consume(buf *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Latencies of the measured lines, in ns. */
static int64_t *lat;
static size_t nlat, caplat;
static uint64_t received;

/* Takes the complete lines of in: each ends with a due time. */
static void take_lines(buf *in, int64_t measure_from) {
  size_t off = 0;
  for (;;) {
    char *nl = memchr(in->data + off, '\n', in->len - off);
    if (nl == NULL) break;
    int64_t now = now_ns();
    char *p = nl;
    while (p > in->data + off && p[-1] >= '0' && p[-1] <= '9') p--;
    if (p == nl) {
      *nl = '\0';
      fprintf(stderr, "bench_latency: the job printed a line without a time: '%s'\n", in->data + off);
      errno = 0;
      fail("unexpected output");
    }
    int64_t t = strtoll(p, NULL, 10);
    received++;
    if (t >= measure_from) {
      if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        int64_t *l = realloc(lat, caplat * sizeof(int64_t));
        if (l == NULL) fail("out of memory");
        lat = l;
      }
      lat[nlat++] = now - t;
    }
    off = (size_t)(nl - in->data) + 1;
  }
  buf_consume(in, off);
}

int main(int argc, char **argv) {
  double rate = 100000, seconds = 4, warmup = 1, timeout = 60;
  long keys = 10000;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    }
    if (i + 1 >= argc) break;
    if (strcmp(argv[i], "--rate") == 0) rate = atof(argv[++i]);
    else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--warmup") == 0) warmup = atof(argv[++i]);
    else if (strcmp(argv[i], "--keys") == 0) keys = atol(argv[++i]);
    else if (strcmp(argv[i], "--timeout") == 0) timeout = atof(argv[++i]);
    else break;
  }
  if (i >= argc || rate <= 0 || seconds <= 0 || keys < 1 || warmup < 0 || warmup >= seconds) {
    fprintf(stderr, "usage: bench_latency [--rate N] [--seconds S] [--warmup S] [--keys K] "
                    "[--timeout S] -- CMD [ARGS...]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  /* the server socket */
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0) fail("socket");
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(addr);
  if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) || listen(ls, 1) ||
      getsockname(ls, (struct sockaddr *)&addr, &alen))
    fail("cannot listen on 127.0.0.1");
  char port[16];
  snprintf(port, sizeof(port), "%d", ntohs(addr.sin_port));

  /* the job, with "127.0.0.1 PORT" appended and its stdout piped to us */
  int nargs = argc - i;
  char **cargv = calloc((size_t)nargs + 3, sizeof(char *));
  if (cargv == NULL) fail("out of memory");
  for (int k = 0; k < nargs; k++) cargv[k] = argv[i + k];
  cargv[nargs] = "127.0.0.1";
  cargv[nargs + 1] = port;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC)) fail("pipe");
  child = fork();
  if (child < 0) fail("fork");
  if (child == 0) {
    dup2(pfd[1], 1);
    execvp(cargv[0], cargv);
    fprintf(stderr, "bench_latency: cannot run '%s': %s\n", cargv[0], strerror(errno));
    _exit(127);
  }
  close(pfd[1]);
  int out_fd = pfd[0];
  fcntl(out_fd, F_SETFL, O_NONBLOCK);

  /* wait for the job to connect (or to fail first) */
  int sock = -1;
  int64_t give_up = now_ns() + (int64_t)(timeout * 1e9);
  buf in = {0}, out = {0};
  while (sock < 0) {
    struct pollfd pf[1] = {{ls, POLLIN, 0}};
    if (poll(pf, 1, 100) < 0 && errno != EINTR) fail("poll");
    if (pf[0].revents & POLLIN) {
      sock = accept(ls, NULL, NULL);
      if (sock < 0) fail("accept");
    }
    int st;
    if (waitpid(child, &st, WNOHANG) == child) {
      child = -1;
      errno = 0;
      fail("the job ended before it connected");
    }
    if (now_ns() > give_up) {
      errno = 0;
      fail("the job did not connect in time");
    }
  }
  close(ls);
  int one = 1;
  setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fcntl(sock, F_SETFL, O_NONBLOCK);

  /* send at the rate, read what comes back */
  uint64_t total = (uint64_t)(rate * seconds), sent = 0;
  int64_t t0 = now_ns() + 1000000;
  int64_t measure_from = t0 + (int64_t)(warmup * 1e9);
  double ns_per = 1e9 / rate;
  int out_open = 1;
  uint64_t seed = 1;
  for (;;) {
    int64_t now = now_ns();
    /* every line due by now goes into the send buffer */
    while (sent < total) {
      int64_t due = t0 + (int64_t)((double)sent * ns_per);
      if (due > now) break;
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      buf_reserve(&out, 48);
      out.len += (size_t)snprintf(out.data + out.len, 48, "k%ld,%" PRId64 "\n",
                                  (long)((seed >> 33) % (uint64_t)keys), due);
      sent++;
    }
    if (sock >= 0 && out.len) {
      ssize_t n = write(sock, out.data, out.len);
      if (n > 0) buf_consume(&out, (size_t)n);
      else if (n < 0 && errno != EAGAIN && errno != EINTR) fail("writing to the job");
    }
    if (sock >= 0 && sent == total && out.len == 0) {
      close(sock); /* the job's source ends */
      sock = -1;
      give_up = now_ns() + (int64_t)(timeout * 1e9);
    }
    /* what the job wrote */
    for (;;) {
      buf_reserve(&in, 1 << 16);
      ssize_t n = read(out_fd, in.data + in.len, in.cap - in.len);
      if (n > 0) {
        in.len += (size_t)n;
        take_lines(&in, measure_from);
        continue;
      }
      if (n == 0) out_open = 0;
      else if (errno != EAGAIN && errno != EINTR) fail("reading the job's output");
      break;
    }
    if (!out_open) break;
    if (now_ns() > give_up) {
      errno = 0;
      fail(sock >= 0 ? "the job stopped taking lines" : "the job did not end in time");
    }
    /* sleep until the next millisecond's lines, the socket or the output */
    struct pollfd pf[2] = {{out_fd, POLLIN, 0}, {sock, POLLOUT, 0}};
    int npf = (sock >= 0 && out.len) ? 2 : 1;
    int wait_ms = 1;
    if (sent == total) wait_ms = 100;
    if (poll(pf, (nfds_t)npf, wait_ms) < 0 && errno != EINTR) fail("poll");
  }
  if (sock >= 0) {
    errno = 0;
    fail("the job closed its output before the input ended");
  }
  int st;
  if (waitpid(child, &st, 0) != child) fail("waitpid");
  child = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    errno = 0;
    fprintf(stderr, "bench_latency: the job exited with status %d\n",
            WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return 1;
  }
  if (received != sent) {
    fprintf(stderr, "bench_latency: sent %" PRIu64 " lines, the job wrote %" PRIu64 "\n",
            sent, received);
    return 1;
  }
  if (nlat == 0) {
    fprintf(stderr, "bench_latency: no line was measured\n");
    return 1;
  }
  qsort(lat, nlat, sizeof(int64_t), cmp_i64);
  printf("sent %" PRIu64 " received %" PRIu64 " rate %.0f p50_us %.0f p99_us %.0f max_us %.0f\n",
         sent, received, rate, lat[nlat / 2] / 1e3, lat[nlat * 99 / 100] / 1e3,
         lat[nlat - 1] / 1e3);
  free(lat);
  free(in.data);
  free(out.data);
  free(cargv);
  return 0;
}
