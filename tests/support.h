/*
 * support.h - the test suite's platform layer and shared helpers.
 *
 * Every piece of platform code the tests need lives in support.c, so that
 * the test sources compile unchanged on POSIX (pthreads, posix_spawn) and on
 * Windows (mingw-w64 + Wine: _beginthreadex, CreateProcessA).
 *
 * Each test executable's main():
 *
 *     sup_init(argc, argv);
 *     if (sup_child_mode(argc, argv))            // "exe --child MODE ..."
 *         return child_main(argc - 2, argv + 2);
 *     return sup_finish(cmocka_run_group_tests_name("area", tests, 0, 0));
 *
 * Skips: use SUP_SKIP("reason ...") instead of cmocka's skip().  It prints
 * the reason and counts the skip; sup_finish() then prints the ctest skip
 * marker (SUP_SKIP_MARKER) only when something was skipped AND nothing
 * failed.  (ctest's SKIP_REGULAR_EXPRESSION wins over the exit code, so
 * matching cmocka's own "[  SKIPPED ]" line would report an executable with
 * one skipped and one failed test as "Skipped" and hide the failure.)
 */
#ifndef MPT_SUPPORT_H
#define MPT_SUPPORT_H

/* cmocka.h needs these first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "msgpipe.h"

/* ---- Start-up and skips ------------------------------------------------ */

/* Record argv[0] (to spawn ourselves) and, on POSIX, reset SIGPIPE to its
 * default action so that a library raising SIGPIPE kills the test. */
void sup_init(int argc, char **argv);

/* True if argv[1] is "--child". */
int sup_child_mode(int argc, char **argv);

/* The path of this test executable, as recorded by sup_init() (to start
 * it again with msgpipe_spawn); fails the test if it is unknown. */
const char *sup_self_path(void);

/* Print the skip marker if skips happened and no test failed; returns
 * `failed` (cmocka's count of failed tests) as the exit status. */
int sup_finish(int failed);

#define SUP_SKIP_MARKER "msgpipe-tests: SKIPPED"

void sup_note_skip(const char *reason);

#define SUP_SKIP(reason)                                                       \
    do {                                                                       \
        sup_note_skip(reason);                                                 \
        skip();                                                                \
    } while (0)

/* Tests that mean nothing on this system or transport (a socket file's mode
 * on Windows, FIFO leftovers with sockets) are left out of the run rather
 * than reported as skipped on every run; SUP_SKIP is for conditions found
 * at run time (Wine, not root, no python3).  main() lists them as
 *
 *     const sup_test tests[] = {
 *         SUP_TEST(1, test_round_trip),
 *         SUP_TEST(SUP_POSIX && sup_is_fifo(), test_fifo_leftovers),
 *     };
 *     return sup_finish(SUP_RUN("area", tests));
 */
typedef struct sup_test {
    int applies;
    struct CMUnitTest test;
} sup_test;

#define SUP_TEST(applies, fn)                                                  \
    {                                                                          \
        (applies), cmocka_unit_test(fn)                                        \
    }
#define SUP_RUN(group, tests)                                                  \
    sup_run((group), (tests), sizeof(tests) / sizeof((tests)[0]))

#ifdef _WIN32
#define SUP_POSIX 0
#define SUP_WINDOWS 1
#else
#define SUP_POSIX 1
#define SUP_WINDOWS 0
#endif

/* Run the tests that apply; returns cmocka's count of failed tests. */
int sup_run(const char *group, const sup_test *tests, size_t n);

/* ---- Threads ----------------------------------------------------------- */

typedef struct sup_thread sup_thread;
typedef void *(*sup_thread_fn)(void *arg);

/* Start fn(arg) in a new thread; fails the test if it cannot. */
sup_thread *sup_thread_start(sup_thread_fn fn, void *arg);

/* Wait for the thread, release it, return fn's result. */
void *sup_thread_join(sup_thread *t);

/* Wait at most ms for the thread.  0: it ended, was released, and *result
 * (if not NULL) holds fn's result.  -1: still running (t stays valid). */
int sup_thread_join_timeout(sup_thread *t, int ms, void **result);

/* ---- Time -------------------------------------------------------------- */

void sup_sleep_ms(int ms);
int64_t sup_now_ms(void); /* monotonic, arbitrary origin */
/* Busy-wait about us microseconds, without sleeping (to hit moments
 * shorter than a sleep). */
void sup_spin_us(int us);

/* ---- This process ------------------------------------------------------ */

int64_t sup_getpid(void);
int64_t sup_getuid(void); /* effective uid on POSIX; -1 on Windows */
int64_t sup_getgid(void); /* effective gid on POSIX; -1 on Windows */
int sup_is_wine(void);    /* 1 when running under Wine */
/* 1 when the library is the POSIX FIFO transport ("posix-fifo"). */
int sup_is_fifo(void);
int64_t sup_cpu_ms(void); /* CPU time (user + system) used by this process */

/* Make sure this process may open `want` descriptors (POSIX: raise the soft
 * RLIMIT_NOFILE up to the hard limit).  1 if it may, 0 if not. */
int sup_raise_fd_limit(long want);

/* Wait up to timeout_ms for a native handle from msgpipe_native_handle()
 * to be ready for `events`; 1 ready, 0 not. */
int sup_wait_native(msgpipe_native h, unsigned events, int timeout_ms);

/* ---- Child processes --------------------------------------------------- */

typedef struct sup_proc sup_proc;

/* Run this test executable as "<self> --child args[0] args[1] ...";
 * args is NULL-terminated.  Fails the test if it cannot start. */
sup_proc *sup_spawn_self(const char *const *args);

/* Run program `path` with argv (argv[0] included, NULL-terminated). */
sup_proc *sup_spawn(const char *path, const char *const *argv);

int64_t sup_proc_pid(const sup_proc *p);

/* Kill hard: SIGKILL / TerminateProcess. */
void sup_proc_kill(sup_proc *p);

/* Wait for the child to end and release it.  Returns its exit code
 * (128 + signal number if a signal killed it on POSIX), -1 on error. */
int sup_proc_wait(sup_proc *p);

/* ---- Names ------------------------------------------------------------- */

/* A pipe name unique to this process and call: "mpt-AREA-PID-N". */
void sup_name(char *buf, size_t cap, const char *area);

/* The system form of a msgpipe name as this library maps it (POSIX: the
 * socket path; Windows: \\.\pipe\...).  Fails the test if it does not
 * parse. */
void sup_sys_name(const char *name, char *buf, size_t cap);

/* ---- Data -------------------------------------------------------------- */

/* A reproducible byte pattern for (seed, offset). */
void sup_fill(void *buf, size_t len, uint32_t seed);

/* Index of the first byte that differs from sup_fill(seed), or (size_t)-1
 * if all len bytes match. */
size_t sup_check(const void *buf, size_t len, uint32_t seed);

/* Little-endian 32-bit helpers for sequence numbers inside messages. */
void sup_put32(void *p, uint32_t v);
uint32_t sup_get32(const void *p);

/* ---- Assertions -------------------------------------------------------- */

/* Assert a msgpipe call's exact return code, printing the code names. */
#define assert_rc(expr, expected)                                              \
    do {                                                                       \
        int sup_rc_ = (expr);                                                  \
        int sup_ex_ = (expected);                                              \
        if (sup_rc_ != sup_ex_) {                                              \
            print_error("%s:%d: %s returned %s (%d), expected %s (%d)\n",      \
                        __FILE__, __LINE__, #expr, msgpipe_errname(sup_rc_),   \
                        sup_rc_, msgpipe_errname(sup_ex_), sup_ex_);           \
            fail();                                                            \
        }                                                                      \
    } while (0)

/* Assert that buf holds exactly len bytes of sup_fill(seed). */
#define assert_pattern(buf, len, seed)                                         \
    do {                                                                       \
        size_t sup_at_ = sup_check((buf), (len), (seed));                      \
        if (sup_at_ != (size_t)-1) {                                           \
            print_error("%s:%d: byte %lu of %lu differs from the pattern\n",   \
                        __FILE__, __LINE__, (unsigned long)sup_at_,            \
                        (unsigned long)(len));                                 \
            fail();                                                            \
        }                                                                      \
    } while (0)

/* ---- msgpipe helpers --------------------------------------------------- */

/* A server with one connected pipe pair: s (server end), c (client end). */
typedef struct sup_pair {
    char name[96];
    msgpipe_server *srv;
    msgpipe *s;
    msgpipe *c;
} sup_pair;

/* listen + connect + accept (10 s bounds); asserts on failure.  sopt/copt
 * may be NULL. */
void sup_pair_open(sup_pair *pr, const char *area, const msgpipe_options *sopt,
                   const msgpipe_options *copt);
void sup_pair_close(sup_pair *pr); /* closes whatever is not NULL */

/* An echo peer in a thread: receives each message (msgpipe_recv_alloc) and
 * sends it back, until a receive or send fails. */
typedef struct sup_echo sup_echo;
sup_echo *sup_echo_start(msgpipe *p);
/* Join the echo thread; returns the number of messages echoed and stores
 * the code that ended it (normally MSGPIPE_ECLOSED) in *end_rc. */
long sup_echo_join(sup_echo *e, int *end_rc);

/* Timeouts used for operations that are expected to succeed: long enough
 * for sanitizers and Wine, short enough that a hang becomes a failure. */
#define SUP_T 10000
#define SUP_T_LONG 60000

/* ---- Shared counters and memory (added for test_hostile / test_load) ---- */

/* Sequentially consistent loads, stores and additions on a long shared
 * between threads (no lock, no data race for ThreadSanitizer). */
long sup_atomic_get(const volatile long *p);
void sup_atomic_set(volatile long *p, long v);
long sup_atomic_add(volatile long *p, long delta); /* returns the new value */

/* This process's memory in KiB: resident set (*rss) and virtual size
 * (*vsz), from /proc/self/statm.  Returns 0, or -1 where the system does
 * not tell (then both are -1). */
int sup_memory_kib(long *rss, long *vsz);

/* Heap memory this process has allocated and not freed, in KiB, as the
 * allocator counts it (live blocks only: freed memory that a sanitizer or
 * valgrind keeps out of reuse is not counted, unlike in the resident
 * size).  -1 where unknown. */
long sup_heap_kib(void);

/* An unsigned integer from the environment variable `name`, or `dflt` if
 * it is unset, empty or not a number. */
long sup_env_long(const char *name, long dflt);

#endif /* MPT_SUPPORT_H */
