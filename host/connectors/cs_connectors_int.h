/*
 * cs_connectors_int.h - internal to host/connectors: the state a source
 * keeps (one struct for every kind, each using its own part) and the line
 * rendering the text sinks share. Not for other folders.
 */
#ifndef CS_CONNECTORS_INT_H
#define CS_CONNECTORS_INT_H

#include <sys/types.h>
#include <uv.h>

#include "host/connectors/cs_connectors.h"

#define CS__LINES_PER_STEP 1024
#define CS__FILE_CHUNK (64 * 1024)

typedef struct cs_source {
  cs_tinst *t;
  cs_opi *op;
  /* elements */
  int elems_ref;
  lua_Integer pos, count;
  /* file: the byte ranges still to read, the first one being read now */
  int fd;
  char *buf;
  size_t len, off, cap;
  int eof;
  off_t buf_pos; /* file offset of buf[0] */
  off_t hi;      /* lines starting at or after hi belong to the next split */
  struct frange {
    off_t start, end;
    int aligned; /* start is a line start; else skip to the next line */
  } *ranges;
  int nranges, cur; /* cur: the range being read, -1 before the first */
  /* socket */
  uv_tcp_t tcp;
  uv_connect_t conn;
  struct addrinfo *ai, *ai_cur;
  int tcp_open, tcp_closed, reading, connected;
  long long nlines; /* lines emitted so far */
  cs_buf line;
  char rbuf[CS__FILE_CHUNK];
  /* custom */
  lua_State *co;
  int co_ref;
  int started;
  uv_timer_t timer;
  int timer_open, timer_closed;
  uint64_t sleep_until;
} cs_source;

/* Fails the source t because a line is longer than source.max-line-length:
 * what names the source and where the line is ("line 3 of 'in.txt'"), line
 * its first bytes (n of them, or fewer). Returns -1. */
int cs__source_line_too_long(cs_tinst *t, const char *what, const char *line,
                             size_t n);
/* The job's source.max-line-length, in bytes. */
size_t cs__source_max_line(const cs_tinst *t);

/* Creates t's source state (t->src). Returns it, or NULL after failing. */
cs_source *cs__source_new(cs_tinst *t);
/* Fails the source with msg (the job fails); returns -1. */
int cs__source_fail(cs_tinst *t, const char *msg);
/* Frees t's source state: closes its handles and files. */
void cs__source_destroy(lua_State *L, cs_tinst *t);

/* A write_as_text sink's file, written under a temporary name. */
typedef struct cs_file_sink {
  FILE *file;
  char *path;
  cs_buf buf;
} cs_file_sink;

/* Renders the value on top of L (popped), or the encoded record v, as a
 * line into b, with the print sink's prefix; then flushes when enough is
 * buffered. Return 0 or -1; the encoded form returns 1 when the record
 * needs the Lua path (it holds a map). */
int cs__sink_write_line(lua_State *L, cs_opi *op, cs_buf *b);
int cs__sink_write_line_encoded(cs_opi *op, cs_buf *b, cs_slice v);
/* Writes a file sink's buffered lines. Returns 0 or -1. */
int cs__file_sink_flush(cs_opi *op);

#endif /* CS_CONNECTORS_INT_H */
