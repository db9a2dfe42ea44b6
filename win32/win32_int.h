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

#endif /* MSGPIPE_WIN32_INT_H */
