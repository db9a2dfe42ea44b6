/*
 * example_util.h - the little the examples need beyond msgpipe itself, for
 * both POSIX and Windows: sleeping, threads, a mutex, and stop signals.
 * Not part of the library.
 */
#ifndef MSGPIPE_EXAMPLE_UTIL_H
#define MSGPIPE_EXAMPLE_UTIL_H

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef _WIN32
#include <windows.h>
#include <process.h>

static inline void ex_sleep_ms(int ms)
{
    Sleep((DWORD)ms);
}

typedef CRITICAL_SECTION ex_mutex;
static inline void ex_mutex_init(ex_mutex *m)
{
    InitializeCriticalSection(m);
}
static inline void ex_mutex_lock(ex_mutex *m)
{
    EnterCriticalSection(m);
}
static inline void ex_mutex_unlock(ex_mutex *m)
{
    LeaveCriticalSection(m);
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} ex_thread_start;

static inline unsigned __stdcall ex_thread_main(void *a)
{
    ex_thread_start st = *(ex_thread_start *)a;
    free(a);
    st.fn(st.arg);
    return 0;
}

/* Start a detached thread; returns 0 on success. */
static inline int ex_thread_detached(void (*fn)(void *), void *arg)
{
    ex_thread_start *st = (ex_thread_start *)malloc(sizeof(*st));
    uintptr_t h;

    if (st == NULL)
        return -1;
    st->fn = fn;
    st->arg = arg;
    h = _beginthreadex(NULL, 0, ex_thread_main, st, 0, NULL);
    if (h == 0) {
        free(st);
        return -1;
    }
    CloseHandle((HANDLE)h);
    return 0;
}
#else
#include <pthread.h>
#include <time.h>

static inline void ex_sleep_ms(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0) {
    }
}

typedef pthread_mutex_t ex_mutex;
static inline void ex_mutex_init(ex_mutex *m)
{
    pthread_mutex_init(m, NULL);
}
static inline void ex_mutex_lock(ex_mutex *m)
{
    pthread_mutex_lock(m);
}
static inline void ex_mutex_unlock(ex_mutex *m)
{
    pthread_mutex_unlock(m);
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} ex_thread_start;

static inline void *ex_thread_main(void *a)
{
    ex_thread_start st = *(ex_thread_start *)a;
    free(a);
    st.fn(st.arg);
    return NULL;
}

/* Start a detached thread; returns 0 on success. */
static inline int ex_thread_detached(void (*fn)(void *), void *arg)
{
    ex_thread_start *st = (ex_thread_start *)malloc(sizeof(*st));
    pthread_attr_t at;
    pthread_t t;
    int rc;

    if (st == NULL)
        return -1;
    st->fn = fn;
    st->arg = arg;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &at, ex_thread_main, st);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        free(st);
        return -1;
    }
    return 0;
}
#endif

#endif /* MSGPIPE_EXAMPLE_UTIL_H */
