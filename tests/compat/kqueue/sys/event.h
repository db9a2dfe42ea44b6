/*
 * sys/event.h - the kqueue interface as the BSDs' and macOS's kqueue(2)
 * manual pages describe it: declarations only, no implementation.
 *
 * The test msgpipe_kqueue_compiles (tests/CMakeLists.txt) compiles
 * posix/posix_poller.c's kqueue variant against this file on Linux, where
 * there is no kqueue, so that the code at least type-checks with warnings
 * as errors.  It proves nothing about behaviour: that needs a BSD or macOS
 * machine.  Field types follow FreeBSD 12+ (ident uintptr_t, data int64_t,
 * udata void *).
 */
#ifndef MSGPIPE_COMPAT_SYS_EVENT_H
#define MSGPIPE_COMPAT_SYS_EVENT_H

#include <stdint.h>
#include <time.h>

struct kevent {
    uintptr_t ident;
    short filter;
    unsigned short flags;
    unsigned int fflags;
    int64_t data;
    void *udata;
    uint64_t ext[4];
};

#define EVFILT_READ (-1)
#define EVFILT_WRITE (-2)

#define EV_ADD 0x0001
#define EV_DELETE 0x0002
#define EV_ERROR 0x4000
#define EV_EOF 0x8000

#define EV_SET(kevp, a, b, c, d, e, f)                                         \
    do {                                                                       \
        struct kevent *ev_ = (kevp);                                           \
        ev_->ident = (a);                                                      \
        ev_->filter = (b);                                                     \
        ev_->flags = (c);                                                      \
        ev_->fflags = (d);                                                     \
        ev_->data = (e);                                                       \
        ev_->udata = (f);                                                      \
    } while (0)

int kqueue(void);
int kevent(int kq, const struct kevent *changelist, int nchanges,
           struct kevent *eventlist, int nevents,
           const struct timespec *timeout);

#endif
