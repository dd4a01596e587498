/*
 * cs_handle.h - closing a libuv handle that owns a descriptor (a TCP
 * connection, a listening socket), so that ThreadSanitizer sees the close.
 *
 * libuv 1.44 on Linux closes descriptors with syscall(SYS_close) unless it
 * was itself built with TSan (Debian's is not), so TSan never learns that
 * the descriptor was closed. When the kernel hands the same number to
 * another thread (a REST connection closed on the main thread, then a
 * directory RocksDB opens on a worker), TSan reports a race on the
 * descriptor between the accept and the new open. cs_handle_close tells
 * TSan of the close, as libuv does when it is built with TSan; in other
 * builds it is uv_close.
 */
#ifndef CS_HANDLE_H
#define CS_HANDLE_H

#include <uv.h>

#if defined(__SANITIZE_THREAD__)
/* The sanitizer's syscall hook (sanitizer/linux_syscall_hooks.h, which
 * GCC does not install): the descriptor fd is about to be closed. */
void __sanitizer_syscall_pre_impl_close(long fd);
#endif

/* uv_close(h, cb), for a stream handle whose descriptor uv_close closes
 * before it returns (TCP). TSan hears of the close after uv_close, which
 * still stops watching the descriptor (epoll_ctl) before closing it. */
static inline void cs_handle_close(uv_handle_t *h, uv_close_cb cb) {
#if defined(__SANITIZE_THREAD__)
  uv_os_fd_t fd;
  int open = !uv_is_closing(h) && uv_fileno(h, &fd) == 0;
  uv_close(h, cb);
  if (open) __sanitizer_syscall_pre_impl_close(fd);
#else
  uv_close(h, cb);
#endif
}

#endif /* CS_HANDLE_H */
