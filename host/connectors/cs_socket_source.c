/*
 * cs_socket_source.c - socket_text_stream: a libuv TCP client that splits
 * what it reads into lines (or records at another delimiter). Reading
 * stops while the task's outputs are full (backpressure) and resumes when
 * they drain. A socket cannot rewind: its position is "none" (at-most-once
 * input, as in Flink).
 */
#include <string.h>

#include "host/connectors/cs_connectors_int.h"
#include "host/runtime/cs_handle.h"

#define fail cs__source_fail


static void sock_closed(uv_handle_t *h) {
  cs_source *s = h->data;
  s->tcp_closed = 1;
}

static void sock_try_next(cs_source *s);

static void sock_retry(uv_handle_t *h) {
  cs_source *s = h->data;
  s->tcp_open = 0;
  if (!s->t->src_done) sock_try_next(s);
}

static void sock_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  cs_source *s = h->data;
  (void)suggested;
  buf->base = s->rbuf;
  buf->len = sizeof(s->rbuf);
}

/* Fails the source on its next line (n bytes of it at line). */
static void sock_line_too_long(cs_source *s, const char *line, size_t n) {
  char what[400];
  snprintf(what, sizeof(what), "socket_text_stream: line %lld from %s:%d",
           s->nlines + 1, s->op->node->host, s->op->node->port);
  cs__source_line_too_long(s->t, what, line, n);
}

/* Emits complete lines from s->line. */
static void sock_emit_lines(cs_source *s, int final) {
  cs_tinst *t = s->t;
  lua_State *L = t->w->L;
  char delim = s->op->node->delim;
  size_t off = 0;
  for (;;) {
    char *d = memchr(s->line.data + off, delim, s->line.len - off);
    if (d == NULL) break;
    size_t l = (size_t)(d - (s->line.data + off));
    if (delim == '\n' && l > 0 && s->line.data[off + l - 1] == '\r') l--;
    if (l > cs__source_max_line(t)) {
      sock_line_too_long(s, s->line.data + off, l);
      return;
    }
    lua_pushlstring(L, s->line.data + off, l);
    off = (size_t)(d - s->line.data) + 1;
    s->nlines++;
    if (cs_emit(L, s->op)) return;
  }
  if (final && off < s->line.len) {
    lua_pushlstring(L, s->line.data + off, s->line.len - off);
    off = s->line.len;
    if (cs_emit(L, s->op)) return;
  }
  memmove(s->line.data, s->line.data + off, s->line.len - off);
  s->line.len -= off;
}

static void sock_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  cs_source *s = st->data;
  cs_tinst *t = s->t;
  if (nread > 0) {
    if (cs_buf_append(&s->line, buf->base, (size_t)nread)) {
      fail(t, "out of memory");
      return;
    }
    sock_emit_lines(s, 0);
    int too_long = !t->src_done && s->line.len > cs__source_max_line(t);
    if (too_long) sock_line_too_long(s, s->line.data, s->line.len);
    if (too_long || atomic_load(&t->w->job->failed)) {
      /* failed: stop reading */
      uv_read_stop(st);
      s->reading = 0;
      if (!uv_is_closing((uv_handle_t *)&s->tcp))
        cs_handle_close((uv_handle_t *)&s->tcp, sock_closed);
    } else if (cs_tinst_blocked(t) && s->reading) {
      uv_read_stop(st);
      s->reading = 0;
    }
  } else if (nread < 0) {
    if (nread != UV_EOF) {
      char msg[300];
      snprintf(msg, sizeof(msg), "socket_text_stream: reading from %s:%d failed: %s",
               s->op->node->host, s->op->node->port, uv_strerror((int)nread));
      fail(t, msg);
    } else {
      sock_emit_lines(s, 1);
    }
    uv_read_stop(st);
    s->reading = 0;
    t->src_done = 1;
    if (!uv_is_closing((uv_handle_t *)&s->tcp))
      cs_handle_close((uv_handle_t *)&s->tcp, sock_closed);
  }
  cs_worker_kick(t->w);
}

static void sock_connected(uv_connect_t *req, int status) {
  cs_source *s = req->data;
  if (s->t->src_done) return;
  if (status < 0) {
    if (s->ai_cur && s->ai_cur->ai_next) {
      /* Try the next address once this handle has closed. */
      s->ai_cur = s->ai_cur->ai_next;
      cs_handle_close((uv_handle_t *)&s->tcp, sock_retry);
      return;
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "socket_text_stream: cannot connect to %s:%d: %s",
             s->op->node->host, s->op->node->port, uv_strerror(status));
    fail(s->t, msg);
    cs_worker_kick(s->t->w);
    return;
  }
  s->connected = 1;
  uv_read_start((uv_stream_t *)&s->tcp, sock_alloc, sock_read);
  s->reading = 1;
}

static void sock_try_next(cs_source *s) {
  cs_worker *w = s->t->w;
  uv_tcp_init(&w->loop, &s->tcp);
  s->tcp.data = s;
  s->tcp_open = 1;
  s->tcp_closed = 0;
  s->conn.data = s;
  int rc = uv_tcp_connect(&s->conn, &s->tcp, s->ai_cur->ai_addr, sock_connected);
  if (rc) sock_connected(&s->conn, rc);
}

static int socket_start(cs_tinst *t, cs_source *s) {
  cs_node *n = t->ops[0]->node;
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  char port[16];
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", n->port);
  int rc = uv_getaddrinfo(&t->w->loop, &req, NULL, n->host, port, &hints);
  if (rc) {
    char msg[300];
    snprintf(msg, sizeof(msg), "socket_text_stream: cannot resolve '%s': %s",
             n->host, uv_strerror(rc));
    return fail(t, msg);
  }
  s->ai = s->ai_cur = req.addrinfo;
  sock_try_next(s);
  return atomic_load(&t->w->job->failed) ? -1 : 0;
}

static int socket_src_start(lua_State *L, cs_tinst *t) {
  (void)L;
  cs_source *s = cs__source_new(t);
  return s ? socket_start(t, s) : -1;
}

/* Resumes reading once the outputs have room again. */
static void socket_unblocked(cs_tinst *t) {
  cs_source *s = t->src;
  if (s && s->connected && !s->reading && !t->src_done) {
    uv_read_start((uv_stream_t *)&s->tcp, sock_alloc, sock_read);
    s->reading = 1;
  }
}

static void socket_cancel(lua_State *L, cs_tinst *t) {
  (void)L;
  cs_source *s = t->src;
  if (s && s->tcp_open && !uv_is_closing((uv_handle_t *)&s->tcp))
    cs_handle_close((uv_handle_t *)&s->tcp, sock_closed);
}

/* The socket is driven by its read callbacks, not by steps. */
const cs_op_type cs_src_socket = {
    .name = "source_socket",
    .src_start = socket_src_start,
    .src_unblocked = socket_unblocked,
    .src_cancel = socket_cancel,
    .src_destroy = cs__source_destroy,
};
