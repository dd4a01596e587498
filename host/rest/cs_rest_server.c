/*
 * cs_rest_server.c - the HTTP endpoint on the main thread's loop. The
 * socket is bound once, before the job's first attempt, so a port in use
 * stops the job before it starts and a chosen port stays the same across
 * restarts; each attempt's loop serves it through a dup of that socket.
 *
 * Requests are parsed by Debian's http-parser. Every connection is
 * non-blocking on the loop and bounded: its request head is at most
 * CS__REST_MAX_REQUEST bytes, it is answered and closed within
 * CS__REST_TIMEOUT_MS whatever the client does (a half-open or slow client
 * only holds its own connection), and at most CS__REST_MAX_CONNS are open.
 * One request per connection (Connection: close): a connection holds one
 * response at most, so a client that never reads costs one response's
 * bytes for at most the timeout.
 *
 * The close lingers, as a web server's must: once the response is written
 * the connection is shut down for writing and what the client still sends
 * (pipelined requests, a body) is read and dropped, up to
 * CS__REST_MAX_DISCARD bytes, until it closes its side or the timeout
 * strikes. Closing with unread input would make the kernel reset the
 * connection and throw away the response it had not sent yet.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host/rest/cs_rest_int.h"
#include "host/runtime/cs_handle.h"

typedef struct cs__conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sd;
  http_parser parser;
  cs__observer *o;
  char url[1024];
  size_t urllen;
  int url_too_long;
  size_t nread;
  int answered;
  int written;     /* the response is with the kernel */
  int peer_done;   /* the client closed its side */
  size_t discarded; /* bytes read after the request */
  int closing;
  int open_handles;
  cs_buf resp;
  char rbuf[4096];
  struct cs__conn *prev, *next;
} cs__conn;

/* ------------------------------------------------------------ connections */

static void conn_closed(uv_handle_t *h) {
  cs__conn *c = h->data;
  if (--c->open_handles > 0) return;
  cs_buf_free(&c->resp);
  cs_free(c);
}

static void conn_close(cs__conn *c) {
  if (c->closing) return;
  c->closing = 1;
  cs__observer *o = c->o;
  if (c->prev) c->prev->next = c->next; else o->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  o->nconns--;
  cs_handle_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  if (status < 0) conn_close(req->data);
  /* else wait for the client's end (on_read) or the timeout */
}

static void on_written(uv_write_t *req, int status) {
  cs__conn *c = req->data;
  if (c->closing) return;
  c->written = 1;
  if (status < 0 || c->peer_done) {
    conn_close(c);
    return;
  }
  c->sd.data = c;
  if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown)) conn_close(c);
}

/* Sends the response with the given status and closes the connection once
 * it is written (or the timeout strikes first). */
static void respond(cs__conn *c, int code, const char *type, const char *body,
                    size_t len) {
  const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found"
                     : code == 400 ? "Bad Request" : code == 405 ? "Method Not Allowed"
                     : code == 431 ? "Request Header Fields Too Large"
                     : code == 503 ? "Service Unavailable" : "Internal Server Error";
  c->answered = 1;
  cs_buf_reset(&c->resp);
  if (cs_buf_printf(&c->resp, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    code, reason, type, len) ||
      (len && cs_buf_append(&c->resp, body, len))) {
    conn_close(c);
    return;
  }
  uv_buf_t b = uv_buf_init(c->resp.data, (unsigned)c->resp.len);
  c->wr.data = c;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written)) conn_close(c);
}

static void respond_text(cs__conn *c, int code, const char *msg) {
  respond(c, code, "text/plain; charset=utf-8", msg, strlen(msg));
}

static int on_url(http_parser *p, const char *at, size_t len) {
  cs__conn *c = p->data;
  if (c->urllen + len >= sizeof(c->url)) {
    c->url_too_long = 1;
    return 0;
  }
  memcpy(c->url + c->urllen, at, len);
  c->urllen += len;
  c->url[c->urllen] = '\0';
  return 0;
}

static int on_message_complete(http_parser *p) {
  cs__conn *c = p->data;
  if (c->answered) return 1;
  if (c->url_too_long) {
    respond_text(c, 431, "the request's path is too long\n");
    return 1;
  }
  if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
    respond_text(c, 405, "only GET is served here\n");
    return 1;
  }
  struct http_parser_url u;
  http_parser_url_init(&u);
  char path[1024] = "/";
  if (http_parser_parse_url(c->url, c->urllen, 0, &u) == 0 && (u.field_set & (1 << UF_PATH)))
    snprintf(path, sizeof(path), "%.*s", (int)u.field_data[UF_PATH].len,
             c->url + u.field_data[UF_PATH].off);
  cs_buf body = {0};
  const char *type = "text/plain; charset=utf-8";
  int code = cs__rest_render(c->o, path, &body, &type);
  if (code == 500) {
    cs_buf_free(&body);
    respond_text(c, 500, "out of memory\n");
    return 1;
  }
  respond(c, code, type, p->method == HTTP_HEAD ? "" : (body.data ? body.data : ""),
          p->method == HTTP_HEAD ? 0 : body.len);
  cs_buf_free(&body);
  return 1; /* one request per connection: stop parsing */
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_message_complete = on_message_complete,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  cs__conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  cs__conn *c = s->data;
  if (n == UV_EOF && c->answered && !c->written) {
    /* the client is done sending; the response is still on its way */
    c->peer_done = 1;
    uv_read_stop(s);
    return;
  }
  if (n < 0) {
    conn_close(c);
    return;
  }
  if (n == 0) return;
  if (c->answered) {
    c->discarded += (size_t)n;
    if (c->discarded > CS__REST_MAX_DISCARD) conn_close(c);
    return;
  }
  c->nread += (size_t)n;
  size_t used = http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)n);
  if (c->answered || c->closing) return;
  if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != (size_t)n) {
    respond_text(c, 400, "malformed request\n");
    return;
  }
  if (c->nread > CS__REST_MAX_REQUEST) respond_text(c, 431, "the request is too large\n");
}

static void on_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_connection(uv_stream_t *server, int status) {
  cs__observer *o = container_of((uv_tcp_t *)server, cs__observer, server);
  if (status < 0) return;
  cs__conn *c = cs_calloc(1, sizeof(*c));
  if (c == NULL) return;
  c->o = o;
  uv_tcp_init(o->loop, &c->tcp);
  uv_timer_init(o->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = o->conns;
  if (o->conns) o->conns->prev = c;
  o->conns = c;
  o->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, CS__REST_TIMEOUT_MS, 0);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
    conn_close(c);
    return;
  }
  if (o->nconns > CS__REST_MAX_CONNS) respond_text(c, 503, "too many connections\n");
}

/* -------------------------------------------------------------- lifecycle */

/* Binds and listens on address:port. Returns the socket, or -1 with the
 * reason in err. */
static int bind_endpoint(const char *address, int port, char *shown, size_t shownlen,
                         char *err, size_t errlen) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  int v6 = strchr(address, ':') != NULL;
  if ((v6 ? uv_ip6_addr(address, port, (struct sockaddr_in6 *)&ss)
          : uv_ip4_addr(address, port, (struct sockaddr_in *)&ss)) != 0) {
    snprintf(err, errlen, "rest.address '%s' is not an IP address", address);
    return -1;
  }
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, errlen, "cannot make a socket: %s", strerror(errno));
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  socklen_t sl = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
    snprintf(err, errlen, "cannot listen on %s%s%s:%d for the REST endpoint "
             "(--rest-port, rest.port): %s", v6 ? "[" : "", address, v6 ? "]" : "",
             port, errno == EADDRINUSE ? "the port is already in use" : strerror(errno));
    close(fd);
    return -1;
  }
  sl = sizeof(ss);
  getsockname(fd, (struct sockaddr *)&ss, &sl);
  int got = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                     : ((struct sockaddr_in *)&ss)->sin_port);
  snprintf(shown, shownlen, "%s%s%s:%d", v6 ? "[" : "", address, v6 ? "]" : "", got);
  return fd;
}

int cs_rest_open(cs_job *job, char **errmsg) {
  const cs_run_config *cfg = job->cfg;
  int progress = cfg->progress > 0 || (cfg->progress == 0 && isatty(STDERR_FILENO));
  if (cfg->rest_port < 0 && !progress) return 0;
  cs__observer *o = cs_calloc(1, sizeof(*o));
  size_t nop = (size_t)job->metrics->nnodes * (size_t)job->metrics->maxpar;
  size_t nt = (size_t)job->metrics->ntasks * (size_t)job->metrics->maxpar;
  if (o) {
    o->in = cs_calloc(nop ? nop : 1, sizeof(cs__rate));
    o->out = cs_calloc(nop ? nop : 1, sizeof(cs__rate));
    o->busy = cs_calloc(nt ? nt : 1, sizeof(cs__rate));
    o->bp = cs_calloc(nt ? nt : 1, sizeof(cs__rate));
  }
  if (!o || !o->in || !o->out || !o->busy || !o->bp) {
    job->observer = o;
    cs_rest_close(job);
    *errmsg = cs_strdup("out of memory");
    return CS_ENOMEM;
  }
  o->job = job;
  o->fd = -1;
  o->progress = progress;
  job->observer = o;
  if (cfg->rest_port >= 0) {
    char err[512];
    const char *address = cfg->rest_address ? cfg->rest_address : "127.0.0.1";
    o->fd = bind_endpoint(address, cfg->rest_port, o->addr, sizeof(o->addr), err, sizeof(err));
    if (o->fd < 0) {
      cs_rest_close(job);
      *errmsg = cs_strdup(err);
      return CS_EIO;
    }
    fprintf(stderr, "cstream-lua: REST endpoint on http://%s/\n", o->addr);
  }
  return 0;
}

static void on_tick(uv_timer_t *t) {
  cs__observer *o = t->data;
  cs__rest_sample(o);
  if (o->progress) cs__progress_draw(o);
}

void cs_rest_start(cs_job *job, uv_loop_t *loop) {
  cs__observer *o = job->observer;
  o->loop = loop;
  o->running = 1;
  o->last_ns = 0;
  uv_timer_init(loop, &o->tick);
  o->tick.data = o;
  uv_timer_start(&o->tick, on_tick, 0, CS__REST_TICK_MS);
  uv_tcp_init(loop, &o->server);
  if (o->fd >= 0) {
    /* the handle owns the dup once uv_tcp_open took it */
    int fd = dup(o->fd), rc = fd < 0 ? UV_EMFILE : uv_tcp_open(&o->server, fd);
    if (rc && fd >= 0) close(fd);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&o->server, 128, on_connection);
    if (rc)
      fprintf(stderr, "cstream-lua: the REST endpoint cannot serve this attempt: %s\n",
              uv_strerror(rc));
  }
}

static void noop_close(uv_handle_t *h) { (void)h; }

void cs_rest_stop(cs_job *job) {
  cs__observer *o = job->observer;
  if (!o->running) return;
  o->running = 0;
  while (o->conns) conn_close(o->conns);
  cs_handle_close((uv_handle_t *)&o->server, noop_close);
  uv_close((uv_handle_t *)&o->tick, noop_close);
  if (o->progress) cs__progress_clear(o);
}

void cs_rest_close(cs_job *job) {
  cs__observer *o = job->observer;
  if (o == NULL) return;
  if (o->fd >= 0) close(o->fd);
  cs_free(o->in);
  cs_free(o->out);
  cs_free(o->busy);
  cs_free(o->bp);
  cs_free(o);
  job->observer = NULL;
}
