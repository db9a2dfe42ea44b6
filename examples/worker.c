/*
 * worker.c - a parent hands an open file to a worker process it started.
 *
 *     worker
 *
 * Run without arguments, this is the parent: it starts itself again as a
 * worker ("worker --worker") with msgpipe_spawn(), creates a temporary
 * file and sends the open file - a descriptor on POSIX, a HANDLE on
 * Windows - with the message "write" (msgpipe_send_handles).  The worker
 * takes its pipe with msgpipe_from_parent(), receives the message with its
 * copy of the file (msgpipe_recv_handles), writes a line into it and
 * answers "done".  The parent then reads the file back and prints it.
 * The same source on both systems.  (The POSIX FIFO transport cannot carry
 * handles: there the send returns MSGPIPE_ENOTSUP.)
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* mkstemp, pread */
#endif
#include "msgpipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <unistd.h>
#endif

/* ---- The little that differs between the systems ------------------------ */

#ifdef _WIN32
/* A temporary file, open for reading and writing, deleted when the last
 * handle to it - ours or the worker's copy - is closed. */
static msgpipe_native temp_file(void)
{
    char dir[MAX_PATH], path[MAX_PATH];
    HANDLE h;
    if (GetTempPathA(sizeof(dir), dir) == 0 ||
        GetTempFileNameA(dir, "mpw", 0, path) == 0)
        return NULL;
    h = CreateFileA(path, GENERIC_READ | GENERIC_WRITE,
                    FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                    NULL, CREATE_ALWAYS, FILE_FLAG_DELETE_ON_CLOSE, NULL);
    return h == INVALID_HANDLE_VALUE ? NULL : h;
}

static int file_write(msgpipe_native f, const char *text)
{
    DWORD n = 0;
    return WriteFile(f, text, (DWORD)strlen(text), &n, NULL) &&
                   n == (DWORD)strlen(text)
               ? 0
               : -1;
}

/* Read from the start of the file; bytes read or -1. */
static long file_read(msgpipe_native f, char *buf, size_t cap)
{
    DWORD n = 0;
    if (SetFilePointer(f, 0, NULL, FILE_BEGIN) == INVALID_SET_FILE_POINTER ||
        !ReadFile(f, buf, (DWORD)cap, &n, NULL))
        return -1;
    return (long)n;
}

static void file_close(msgpipe_native f)
{
    CloseHandle(f);
}

static long my_pid(void)
{
    return (long)GetCurrentProcessId();
}

#define NO_FILE NULL
#else
static msgpipe_native temp_file(void)
{
    char path[512];
    const char *dir = getenv("TMPDIR");
    int fd;
    snprintf(path, sizeof(path), "%s/msgpipe-worker-XXXXXX",
             dir != NULL && dir[0] != '\0' ? dir : "/tmp");
    fd = mkstemp(path);
    if (fd >= 0)
        unlink(path); /* gone when the last descriptor is closed */
    return fd;
}

static int file_write(msgpipe_native f, const char *text)
{
    size_t n = strlen(text);
    return write(f, text, n) == (ssize_t)n ? 0 : -1;
}

static long file_read(msgpipe_native f, char *buf, size_t cap)
{
    return (long)pread(f, buf, cap, 0);
}

static void file_close(msgpipe_native f)
{
    close(f);
}

static long my_pid(void)
{
    return (long)getpid();
}

#define NO_FILE (-1)
#endif

/* This program's own path, to start it again. */
static const char *self_path(const char *argv0)
{
#ifdef _WIN32
    static char path[MAX_PATH];
    DWORD n = GetModuleFileNameA(NULL, path, sizeof(path));
    if (n > 0 && n < sizeof(path))
        return path;
#endif
    return argv0; /* POSIX: found as the shell found it (PATH or a path) */
}

/* ---- The worker ------------------------------------------------------- */

static int worker(void)
{
    msgpipe *p = NULL;
    msgpipe_native h[MSGPIPE_MAX_HANDLES];
    char msg[64], line[128];
    size_t len = 0, nh = 0;
    int rc = msgpipe_from_parent(NULL, &p);

    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "worker: not started by msgpipe_spawn: %s\n",
                msgpipe_strerror(rc));
        return 1;
    }
    rc = msgpipe_recv_handles(p, msg, sizeof(msg), &len, h, MSGPIPE_MAX_HANDLES,
                              &nh, MSGPIPE_INFINITE);
    if (rc != MSGPIPE_OK || nh != 1) {
        fprintf(stderr, "worker: expected a file: %s, %lu handle(s)\n",
                msgpipe_strerror(rc), (unsigned long)nh);
        while (nh > 0)
            file_close(h[--nh]);
        msgpipe_close(p);
        return 1;
    }
    snprintf(line, sizeof(line), "written by worker %ld after \"%.*s\"\n",
             my_pid(), (int)len, msg);
    rc = file_write(h[0], line) == 0 ? MSGPIPE_OK : MSGPIPE_EIO;
    file_close(h[0]); /* our copy; the parent keeps its own */
    if (rc == MSGPIPE_OK)
        rc = msgpipe_send(p, "done", 4, MSGPIPE_INFINITE);
    msgpipe_close(p);
    return rc == MSGPIPE_OK ? 0 : 1;
}

/* ---- The parent ------------------------------------------------------- */

int main(int argc, char **argv)
{
    const char *child_argv[3];
    msgpipe *p = NULL;
    msgpipe_process *child = NULL;
    msgpipe_native f;
    char answer[16], text[512];
    size_t len = 0;
    long n;
    int rc, code = -1;

    if (argc == 2 && strcmp(argv[1], "--worker") == 0)
        return worker();

    child_argv[0] = self_path(argv[0]);
    child_argv[1] = "--worker";
    child_argv[2] = NULL;
    rc = msgpipe_spawn(child_argv, NULL, &p, &child);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "cannot start the worker: %s\n", msgpipe_strerror(rc));
        return 1;
    }
    f = temp_file();
    if (f == NO_FILE) {
        fprintf(stderr, "cannot create a temporary file\n");
        msgpipe_close(p);
        msgpipe_process_close(child);
        return 1;
    }

    /* The worker receives its own copy of f; ours stays ours. */
    rc = msgpipe_send_handles(p, "write", 5, &f, 1, MSGPIPE_INFINITE);
    if (rc == MSGPIPE_OK)
        rc = msgpipe_recv(p, answer, sizeof(answer), &len, MSGPIPE_INFINITE);
    if (rc != MSGPIPE_OK) {
        fprintf(stderr, "worker: %s\n", msgpipe_strerror(rc));
    } else {
        printf("worker answered \"%.*s\"; the file now holds:\n", (int)len,
               answer);
        n = file_read(f, text, sizeof(text) - 1);
        if (n >= 0) {
            text[n] = '\0';
            fputs(text, stdout);
        }
    }
    file_close(f);
    msgpipe_close(p); /* the worker has ended, or now sees MSGPIPE_ECLOSED */
    if (msgpipe_process_wait(child, MSGPIPE_INFINITE, &code) == MSGPIPE_OK)
        printf("worker exit code %d\n", code);
    msgpipe_process_close(child);
    return rc == MSGPIPE_OK && code == 0 ? 0 : 1;
}
