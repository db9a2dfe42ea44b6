/*
 * win32_int.h - what the files of the Win32 backend share.
 *
 * Not a public header and not part of the backend contract (api/backend.h):
 * only the .c files of win32/ include it.
 */
#ifndef MSGPIPE_WIN32_INT_H
#define MSGPIPE_WIN32_INT_H

#include "backend.h"

#include <windows.h>

/*
 * The access mask granted to users other than the server's own user (the
 * GROUP and WORLD options), and the one msgpipe's client asks for.
 *
 * It is FILE_GENERIC_READ | FILE_GENERIC_WRITE without FILE_APPEND_DATA,
 * which for a named pipe is FILE_CREATE_PIPE_INSTANCE (both are 0x0004).
 * GENERIC_WRITE would include that right, and whoever holds it may create
 * further instances of our pipe and so receive some of our clients.  This
 * is the mask Windows itself grants Everyone on its own pipes (eventlog).
 * A client therefore has to ask for exactly this instead of GENERIC_WRITE
 * to get in through such an entry; msgpipe_connect() does.  Clients of the
 * server's own user are granted everything (GENERIC_ALL), so a foreign
 * client (pywin32, Python's multiprocessing) that asks for GENERIC_WRITE
 * works for the same user.
 */
#define MSGPIPE__W_RW_ACCESS 0x0012019Bu

/* msgpipe__w_sd_create - build the security descriptor of a new server for
 * the access option (msgpipe_access); release it with LocalFree().  Returns
 * MSGPIPE_OK, ENOMEM or EIO (the OS error recorded). */
int msgpipe__w_sd_create(int access, PSECURITY_DESCRIPTOR *out);

/* msgpipe__w_error - record the Windows error e as the last OS error and
 * return the msgpipe code it maps to. */
int msgpipe__w_error(DWORD e);

/* ---- Readiness (win32_pipe.c), used by msgpipe__b_poll (win32_poll.c) ---
 * None of these blocks.  Each returns 1 if the object is ready. */

/* MSGPIPE_POLLIN on a pipe.  If not ready, the pipe is armed and *wait is
 * the event that is signalled when it becomes ready. */
int msgpipe__w_pipe_in_ready(msgpipe *p, HANDLE *wait);

/* MSGPIPE_POLLIN on a server: a client waits, or it was shut down.  If not
 * ready, wait[0..1] are the events to wait on. */
int msgpipe__w_srv_ready(msgpipe_server *srv, HANDLE wait[2]);

/* MSGPIPE_POLLOUT on a pipe: an estimate (see win32_pipe.c), with no event
 * to wait on; now is msgpipe__now_ms().  If not ready, check again every
 * MSGPIPE__W_OUT_TICK_MS. */
int msgpipe__w_pipe_out_ready(msgpipe *p, int64_t now);

/* How often a poll re-checks a pipe waiting for MSGPIPE_POLLOUT (see
 * msgpipe__w_pipe_out_ready). */
#define MSGPIPE__W_OUT_TICK_MS 10

/* ---- System calls --------------------------------------------------------
 * The backend makes the calls that move data and wait through this table,
 * as the POSIX backend does through msgpipe__sys, so that tests can make
 * them fail, come back short, be cancelled or report what a racing client
 * would (tests/test_faults.c).  Programs never touch it; by default it
 * holds the system's functions. */
typedef struct msgpipe__w32_calls {
    BOOL(WINAPI *ReadFile)(HANDLE, LPVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL(WINAPI *WriteFile)(HANDLE, LPCVOID, DWORD, LPDWORD, LPOVERLAPPED);
    BOOL(WINAPI *ConnectNamedPipe)(HANDLE, LPOVERLAPPED);
    BOOL(WINAPI *GetOverlappedResult)(HANDLE, LPOVERLAPPED, LPDWORD, BOOL);
    BOOL(WINAPI *GetQueuedCompletionStatus)
    (HANDLE, LPDWORD, PULONG_PTR, LPOVERLAPPED *, DWORD);
    DWORD(WINAPI *WaitForSingleObject)(HANDLE, DWORD);
    DWORD(WINAPI *WaitForMultipleObjects)(DWORD, const HANDLE *, BOOL, DWORD);
    BOOL(WINAPI *CancelIoEx)(HANDLE, LPOVERLAPPED);
    BOOL(WINAPI *PeekNamedPipe)
    (HANDLE, LPVOID, DWORD, LPDWORD, LPDWORD, LPDWORD);
} msgpipe__w32_calls;

extern msgpipe__w32_calls msgpipe__w32;

#endif /* MSGPIPE_WIN32_INT_H */
