/*
 * support.c - platform layer of the msgpipe test suite (see support.h).
 */
#include "support.h"

#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#include <process.h>
#else
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
#endif

/* ---- Start-up and skips ------------------------------------------------ */

static char sup_self[4096];
static int sup_skipped;

void sup_init(int argc, char **argv)
{
#ifdef _WIN32
    DWORD n = GetModuleFileNameA(NULL, sup_self, (DWORD)sizeof(sup_self));
    if (n == 0 || n >= sizeof(sup_self))
        sup_self[0] = '\0';
    (void)argc;
    (void)argv;
#else
    ssize_t n = -1;
#ifdef __linux__
    n = readlink("/proc/self/exe", sup_self, sizeof(sup_self) - 1);
#endif
    if (n > 0 && (size_t)n < sizeof(sup_self)) {
        sup_self[n] = '\0';
    } else if (argc > 0 && argv[0] != NULL &&
               strlen(argv[0]) < sizeof(sup_self)) {
        strcpy(sup_self, argv[0]);
    }
    /* A test for "never raises SIGPIPE" is only meaningful if SIGPIPE
     * kills: undo an inherited SIG_IGN.  No handler is installed. */
    signal(SIGPIPE, SIG_DFL);
#endif
    setvbuf(stdout, NULL, _IONBF, 0);
}

int sup_child_mode(int argc, char **argv)
{
    return argc >= 2 && strcmp(argv[1], "--child") == 0;
}

const char *sup_self_path(void)
{
    assert_true(sup_self[0] != '\0');
    return sup_self;
}

void sup_note_skip(const char *reason)
{
    sup_skipped++;
    print_message("SKIP: %s\n", reason);
}

int sup_finish(int failed)
{
    if (failed == 0 && sup_skipped > 0)
        printf("%s: %d test(s) skipped, none failed\n", SUP_SKIP_MARKER,
               sup_skipped);
    fflush(stdout);
    fflush(stderr);
    return failed;
}

/* ---- Threads ----------------------------------------------------------- */

struct sup_thread {
    sup_thread_fn fn;
    void *arg;
    void *result;
#ifdef _WIN32
    HANDLE h;
#else
    pthread_t tid;
    pthread_mutex_t mu;
    int done;
#endif
};

#ifdef _WIN32
static unsigned __stdcall sup_thread_main(void *p)
{
    sup_thread *t = (sup_thread *)p;
    t->result = t->fn(t->arg);
    return 0;
}
#else
static void *sup_thread_main(void *p)
{
    sup_thread *t = (sup_thread *)p;
    void *r = t->fn(t->arg);
    pthread_mutex_lock(&t->mu);
    t->result = r;
    t->done = 1;
    pthread_mutex_unlock(&t->mu);
    return NULL;
}
#endif

sup_thread *sup_thread_start(sup_thread_fn fn, void *arg)
{
    sup_thread *t = (sup_thread *)calloc(1, sizeof(*t));
    assert_non_null(t);
    t->fn = fn;
    t->arg = arg;
#ifdef _WIN32
    t->h = (HANDLE)_beginthreadex(NULL, 0, sup_thread_main, t, 0, NULL);
    if (t->h == NULL) {
        free(t);
        print_error("_beginthreadex failed\n");
        fail();
    }
#else
    pthread_mutex_init(&t->mu, NULL);
    if (pthread_create(&t->tid, NULL, sup_thread_main, t) != 0) {
        pthread_mutex_destroy(&t->mu);
        free(t);
        print_error("pthread_create failed\n");
        fail();
    }
#endif
    return t;
}

static void sup_thread_release(sup_thread *t, void **result)
{
#ifdef _WIN32
    CloseHandle(t->h);
#else
    pthread_join(t->tid, NULL);
    pthread_mutex_destroy(&t->mu);
#endif
    if (result != NULL)
        *result = t->result;
    free(t);
}

void *sup_thread_join(sup_thread *t)
{
    void *r;
#ifdef _WIN32
    WaitForSingleObject(t->h, INFINITE);
#endif
    sup_thread_release(t, &r);
    return r;
}

int sup_thread_join_timeout(sup_thread *t, int ms, void **result)
{
#ifdef _WIN32
    if (WaitForSingleObject(t->h, (DWORD)ms) != WAIT_OBJECT_0)
        return -1;
    sup_thread_release(t, result);
    return 0;
#else
    int64_t deadline = sup_now_ms() + ms;
    for (;;) {
        int done;
        pthread_mutex_lock(&t->mu);
        done = t->done;
        pthread_mutex_unlock(&t->mu);
        if (done) {
            sup_thread_release(t, result);
            return 0;
        }
        if (sup_now_ms() >= deadline)
            return -1;
        sup_sleep_ms(2);
    }
#endif
}

/* ---- Time -------------------------------------------------------------- */

void sup_sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
#endif
}

int64_t sup_now_ms(void)
{
#ifdef _WIN32
    return (int64_t)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

void sup_spin_us(int us)
{
#ifdef _WIN32
    LARGE_INTEGER f, a, b;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&a);
    do
        QueryPerformanceCounter(&b);
    while ((b.QuadPart - a.QuadPart) * 1000000 / f.QuadPart < us);
#else
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 <
           us);
#endif
}

/* ---- This process ------------------------------------------------------ */

int64_t sup_getpid(void)
{
#ifdef _WIN32
    return (int64_t)GetCurrentProcessId();
#else
    return (int64_t)getpid();
#endif
}

int64_t sup_getuid(void)
{
#ifdef _WIN32
    return -1;
#else
    return (int64_t)geteuid();
#endif
}

int64_t sup_getgid(void)
{
#ifdef _WIN32
    return -1;
#else
    return (int64_t)getegid();
#endif
}

int sup_is_wine(void)
{
#ifdef _WIN32
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll != NULL && GetProcAddress(ntdll, "wine_get_version") != NULL;
#else
    return 0;
#endif
}

int sup_run(const char *group, const sup_test *tests, size_t n)
{
    struct CMUnitTest *run =
        (struct CMUnitTest *)malloc((n ? n : 1) * sizeof(*run));
    size_t i, k = 0;
    int failed;

    if (run == NULL)
        return 1;
    for (i = 0; i < n; i++)
        if (tests[i].applies)
            run[k++] = tests[i].test;
    failed = _cmocka_run_group_tests(group, run, k, NULL, NULL);
    free(run);
    return failed;
}

int sup_is_fifo(void)
{
    return strcmp(msgpipe_backend(), "posix-fifo") == 0;
}

int64_t sup_cpu_ms(void)
{
#ifdef _WIN32
    FILETIME c, e, k, u;
    ULARGE_INTEGER kk, uu;
    if (!GetProcessTimes(GetCurrentProcess(), &c, &e, &k, &u))
        return -1;
    kk.LowPart = k.dwLowDateTime;
    kk.HighPart = k.dwHighDateTime;
    uu.LowPart = u.dwLowDateTime;
    uu.HighPart = u.dwHighDateTime;
    return (int64_t)((kk.QuadPart + uu.QuadPart) / 10000);
#else
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    return (int64_t)ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
           (int64_t)ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
#endif
}

int sup_raise_fd_limit(long want)
{
#ifdef _WIN32
    (void)want;
    return 1;
#else
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= (rlim_t)want)
        return 1;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want)
        return 0;
    rl.rlim_cur = (rlim_t)want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
#endif
}

int sup_wait_native(msgpipe_native h, unsigned events, int timeout_ms)
{
#ifdef _WIN32
    DWORD rc;
    (void)events;
    rc = WaitForSingleObject((HANDLE)h,
                             timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms);
    return rc == WAIT_OBJECT_0;
#else
    struct pollfd pf;
    int rc;
    pf.fd = h;
    pf.events = events == MSGPIPE_POLLOUT ? POLLOUT : POLLIN;
    pf.revents = 0;
    do {
        rc = poll(&pf, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0;
#endif
}

/* ---- Child processes --------------------------------------------------- */

struct sup_proc {
#ifdef _WIN32
    HANDLE h;
    DWORD pid;
#else
    pid_t pid;
#endif
};

#ifdef _WIN32
/* Append one argument quoted by the rules of CommandLineToArgvW / the C
 * runtime: backslashes are literal unless they precede a quote. */
static void sup_quote_arg(char *out, size_t cap, const char *arg)
{
    size_t o = strlen(out);
    const char *s;

    if (o + 1 < cap && o > 0)
        out[o++] = ' ';
    if (o + 1 < cap)
        out[o++] = '"';
    for (s = arg;; s++) {
        size_t bs = 0, i;
        while (*s == '\\') {
            bs++;
            s++;
        }
        if (*s == '\0') {
            for (i = 0; i < bs * 2 && o + 1 < cap; i++)
                out[o++] = '\\';
            break;
        }
        if (*s == '"') {
            for (i = 0; i < bs * 2 + 1 && o + 1 < cap; i++)
                out[o++] = '\\';
        } else {
            for (i = 0; i < bs && o + 1 < cap; i++)
                out[o++] = '\\';
        }
        if (o + 1 < cap)
            out[o++] = *s;
    }
    if (o + 1 < cap)
        out[o++] = '"';
    out[o] = '\0';
}
#endif

sup_proc *sup_spawn(const char *path, const char *const *argv)
{
    sup_proc *p = (sup_proc *)calloc(1, sizeof(*p));
    assert_non_null(p);
#ifdef _WIN32
    {
        static char cmd[32768];
        STARTUPINFOA si;
        PROCESS_INFORMATION pi;
        size_t i;

        cmd[0] = '\0';
        for (i = 0; argv[i] != NULL; i++)
            sup_quote_arg(cmd, sizeof(cmd), argv[i]);
        memset(&si, 0, sizeof(si));
        si.cb = sizeof(si);
        memset(&pi, 0, sizeof(pi));
        if (!CreateProcessA(path, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si,
                            &pi)) {
            print_error("CreateProcessA(%s) failed: %lu\n", path,
                        (unsigned long)GetLastError());
            free(p);
            fail();
        }
        CloseHandle(pi.hThread);
        p->h = pi.hProcess;
        p->pid = pi.dwProcessId;
    }
#else
    {
        int err = posix_spawn(&p->pid, path, NULL, NULL, (char *const *)argv,
                              environ);
        if (err != 0) {
            print_error("posix_spawn(%s) failed: %s\n", path, strerror(err));
            free(p);
            fail();
        }
    }
#endif
    return p;
}

sup_proc *sup_spawn_self(const char *const *args)
{
    const char *argv[32];
    size_t n = 0, i;

    assert_true(sup_self[0] != '\0');
    argv[n++] = sup_self;
    argv[n++] = "--child";
    for (i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return sup_spawn(sup_self, argv);
}

int64_t sup_proc_pid(const sup_proc *p)
{
    return (int64_t)p->pid;
}

void sup_proc_kill(sup_proc *p)
{
#ifdef _WIN32
    TerminateProcess(p->h, 137);
#else
    kill(p->pid, SIGKILL);
#endif
}

int sup_proc_wait(sup_proc *p)
{
    int code = -1;
#ifdef _WIN32
    DWORD st;
    if (WaitForSingleObject(p->h, INFINITE) == WAIT_OBJECT_0 &&
        GetExitCodeProcess(p->h, &st))
        code = (int)st;
    CloseHandle(p->h);
#else
    int st;
    pid_t r;
    do {
        r = waitpid(p->pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r == p->pid) {
        if (WIFEXITED(st))
            code = WEXITSTATUS(st);
        else if (WIFSIGNALED(st))
            code = 128 + WTERMSIG(st);
    }
#endif
    free(p);
    return code;
}

/* ---- Names ------------------------------------------------------------- */

#ifdef _WIN32
static volatile LONG sup_counter;
#else
static pthread_mutex_t sup_counter_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long sup_counter;
#endif

void sup_name(char *buf, size_t cap, const char *area)
{
    unsigned long n;
#ifdef _WIN32
    n = (unsigned long)InterlockedIncrement(&sup_counter);
#else
    pthread_mutex_lock(&sup_counter_mu);
    n = ++sup_counter;
    pthread_mutex_unlock(&sup_counter_mu);
#endif
    snprintf(buf, cap, "mpt-%s-%ld-%lu", area, (long)sup_getpid(), n);
}

void sup_sys_name(const char *name, char *buf, size_t cap)
{
    msgpipe__name n;
    const char *dir = NULL;
    int rc;

    if (msgpipe__backend.style == MSGPIPE__STYLE_POSIX)
        dir = getenv("XDG_RUNTIME_DIR");
    rc = msgpipe__name_parse(name, &msgpipe__backend, dir, &n);
    assert_rc(rc, MSGPIPE_OK);
    assert_true(n.len < cap);
    memcpy(buf, n.sys, n.len + 1);
}

/* ---- Data -------------------------------------------------------------- */

void sup_fill(void *buf, size_t len, uint32_t seed)
{
    unsigned char *b = (unsigned char *)buf;
    uint32_t x = seed * 2654435761u + 0x9e3779b9u;
    size_t i;

    for (i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (unsigned char)(x >> 24);
    }
}

size_t sup_check(const void *buf, size_t len, uint32_t seed)
{
    const unsigned char *b = (const unsigned char *)buf;
    uint32_t x = seed * 2654435761u + 0x9e3779b9u;
    size_t i;

    for (i = 0; i < len; i++) {
        x = x * 1664525u + 1013904223u;
        if (b[i] != (unsigned char)(x >> 24))
            return i;
    }
    return (size_t)-1;
}

void sup_put32(void *p, uint32_t v)
{
    unsigned char *b = (unsigned char *)p;
    b[0] = (unsigned char)v;
    b[1] = (unsigned char)(v >> 8);
    b[2] = (unsigned char)(v >> 16);
    b[3] = (unsigned char)(v >> 24);
}

uint32_t sup_get32(const void *p)
{
    const unsigned char *b = (const unsigned char *)p;
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
           ((uint32_t)b[3] << 24);
}

/* ---- msgpipe helpers --------------------------------------------------- */

void sup_pair_open(sup_pair *pr, const char *area, const msgpipe_options *sopt,
                   const msgpipe_options *copt)
{
    memset(pr, 0, sizeof(*pr));
    sup_name(pr->name, sizeof(pr->name), area);
    assert_rc(msgpipe_listen(pr->name, sopt, &pr->srv), MSGPIPE_OK);
    assert_non_null(pr->srv);
    assert_rc(msgpipe_connect(pr->name, copt, SUP_T, &pr->c), MSGPIPE_OK);
    assert_non_null(pr->c);
    assert_rc(msgpipe_accept(pr->srv, SUP_T, &pr->s), MSGPIPE_OK);
    assert_non_null(pr->s);
}

void sup_pair_close(sup_pair *pr)
{
    msgpipe_close(pr->c);
    msgpipe_close(pr->s);
    msgpipe_server_close(pr->srv);
    pr->c = pr->s = NULL;
    pr->srv = NULL;
}

struct sup_echo {
    msgpipe *p;
    long count;
    int end_rc;
    sup_thread *t;
};

static void *sup_echo_main(void *arg)
{
    sup_echo *e = (sup_echo *)arg;
    for (;;) {
        void *m;
        size_t n;
        int rc = msgpipe_recv_alloc(e->p, &m, &n, SUP_T_LONG);
        if (rc != MSGPIPE_OK) {
            e->end_rc = rc;
            break;
        }
        rc = msgpipe_send(e->p, m, n, SUP_T_LONG);
        msgpipe_free(m);
        if (rc != MSGPIPE_OK) {
            e->end_rc = rc;
            break;
        }
        e->count++;
    }
    return NULL;
}

sup_echo *sup_echo_start(msgpipe *p)
{
    /* On the heap: a failing test longjmps away while the thread runs. */
    sup_echo *e = (sup_echo *)calloc(1, sizeof(*e));
    assert_non_null(e);
    e->p = p;
    e->t = sup_thread_start(sup_echo_main, e);
    return e;
}

long sup_echo_join(sup_echo *e, int *end_rc)
{
    long n;
    sup_thread_join(e->t);
    n = e->count;
    if (end_rc != NULL)
        *end_rc = e->end_rc;
    free(e);
    return n;
}

/* ---- Shared counters and memory ------------------------------------------ */

long sup_atomic_get(const volatile long *p)
{
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

void sup_atomic_set(volatile long *p, long v)
{
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

long sup_atomic_add(volatile long *p, long delta)
{
    return __atomic_add_fetch(p, delta, __ATOMIC_SEQ_CST);
}

int sup_memory_kib(long *rss, long *vsz)
{
#if defined(__linux__)
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    long page = sysconf(_SC_PAGESIZE);
    int n = 0;

    if (f != NULL) {
        n = fscanf(f, "%lu %lu", &size, &res);
        fclose(f);
    }
    if (n == 2 && page > 0) {
        *vsz = (long)(size * (unsigned long)(page / 1024));
        *rss = (long)(res * (unsigned long)(page / 1024));
        return 0;
    }
#endif
    *rss = *vsz = -1;
    return -1;
}

long sup_env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    char *end = NULL;
    long n;

    if (v == NULL || v[0] == '\0')
        return dflt;
    n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || n < 0)
        return dflt;
    return n;
}

/* Which allocator counts the heap: a sanitizer's, or glibc's. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SUP_SANITIZER_HEAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SUP_SANITIZER_HEAP 1
#endif
#endif

#if defined(SUP_SANITIZER_HEAP)
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
#include <malloc.h>
#define SUP_GLIBC_HEAP 1
#endif

long sup_heap_kib(void)
{
#if defined(SUP_SANITIZER_HEAP)
    return (long)(__sanitizer_get_current_allocated_bytes() / 1024);
#elif defined(SUP_GLIBC_HEAP)
    struct mallinfo2 mi = mallinfo2();
    return (long)((mi.uordblks + mi.hblkhd) / 1024);
#else
    return -1;
#endif
}
