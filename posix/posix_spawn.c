/*
 * posix_spawn.c - pairs, child processes and the child's side of their
 * pipe (msgpipe_pair, msgpipe_spawn, msgpipe_from_parent,
 * msgpipe_process_*), for both POSIX transports; the transport makes the
 * descriptors (msgpipe__t_pair_fds) and wraps them (msgpipe__t_wrap).
 *
 * What the child inherits: posix_spawnp() with file actions that put the
 * child's end at descriptor 3 (and 4 for the FIFO transport's second
 * one) and close every descriptor above it ("close from", glibc 2.34 and
 * FreeBSD 13.1; on macOS POSIX_SPAWN_CLOEXEC_DEFAULT does the same).  So a
 * descriptor another thread opens without close-on-exec while the child
 * starts stays out of it too.  Where neither exists, only close-on-exec
 * keeps descriptors out, as it keeps all of msgpipe's.
 *
 * Reaping: msgpipe_process_wait() first waits without reaping (waitid
 * with WNOWAIT), then reaps holding the process's lock, and
 * msgpipe_process_kill() signals only holding that lock and only a child
 * not yet reaped: a pid that may already belong to another process is
 * never signalled.
 */
#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* The descriptor numbers of the child's end in the child. */
#define MSGPIPE__CHILD_FD 3

struct msgpipe_process {
    pid_t pid;
    pthread_mutex_t lock; /* reaped and code */
    int reaped;
    int code;
};

/* ---- Pairs --------------------------------------------------------------- */

/* Wrap both ends of a fresh pair, or close everything. */
int msgpipe__b_pair(const msgpipe__opts *o, msgpipe **a, msgpipe **b)
{
    int mine[2], theirs[2], rc;

    rc = msgpipe__t_pair_fds(mine, theirs);
    if (rc != MSGPIPE_OK)
        return rc;
    rc = msgpipe__t_wrap(mine[0], mine[1], o, a);
    if (rc != MSGPIPE_OK) {
        close(theirs[0]);
        if (theirs[1] != theirs[0])
            close(theirs[1]);
        return rc;
    }
    rc = msgpipe__t_wrap(theirs[0], theirs[1], o, b);
    if (rc != MSGPIPE_OK) {
        msgpipe__b_close(*a);
        *a = NULL;
        return rc;
    }
    /* Both ends belong to this process. */
    (*a)->peer_pid = (*b)->peer_pid = (int64_t)getpid();
    (*a)->peer_uid = (*b)->peer_uid = (int64_t)geteuid();
    (*a)->peer_gid = (*b)->peer_gid = (int64_t)getegid();
    return MSGPIPE_OK;
}

/* ---- Spawning ------------------------------------------------------------ */

/* Does environment entry e ("NAME=...") set the variable named by n
 * ("NAME=...", or "NAME")? */
static int msgpipe__env_same(const char *e, const char *n)
{
    size_t k = strcspn(n, "=");

    return strncmp(e, n, k) == 0 && e[k] == '=';
}

/* The child's environment: this process's, without the variables that
 * `add` replaces and without MSGPIPE_PARENT, then `add`, then
 * MSGPIPE_PARENT=parent.  One allocation; NULL if there is no memory. */
static char **msgpipe__child_env(const char *const *add, const char *parent)
{
    size_t n = 0, na = 0, i, j, k = 0;
    char **env;

    while (environ != NULL && environ[n] != NULL)
        n++;
    while (add != NULL && add[na] != NULL)
        na++;
    env = (char **)msgpipe__malloc((n + na + 2) * sizeof(char *));
    if (env == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        int drop = msgpipe__env_same(environ[i], MSGPIPE__PARENT_VAR);
        for (j = 0; j < na && !drop; j++)
            drop = msgpipe__env_same(environ[i], add[j]);
        if (!drop)
            env[k++] = environ[i];
    }
    for (j = 0; j < na; j++) {
        /* A later entry for the same name wins, as with setenv. */
        size_t l;
        int later = 0;
        for (l = j + 1; l < na && !later; l++)
            later = msgpipe__env_same(add[l], add[j]);
        if (!later)
            env[k++] = (char *)add[j];
    }
    env[k++] = (char *)parent;
    env[k] = NULL;
    return env;
}

/* Move fd to a number of at least `min`, close-on-exec; the original is
 * closed.  Returns the new descriptor or -1 with errno (fd then closed). */
static int msgpipe__fd_above(int fd, int min)
{
    int nfd;

    if (fd >= min)
        return fd;
    nfd = fcntl(fd, F_DUPFD_CLOEXEC, min);
    if (nfd < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return nfd;
}

static int msgpipe__spawn_error(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        msgpipe__set_os_error(e);
        return MSGPIPE_ENOENT;
    case EACCES:
    case EPERM:
    case ENOEXEC:
        msgpipe__set_os_error(e);
        return MSGPIPE_EACCES;
    default:
        return msgpipe__from_errno(e);
    }
}

/* Is `dir`/`name` (dir may be NULL or empty: name alone; a relative
 * result is taken in cwd when cwd is set) an executable file?  0 yes, or
 * the errno that says why not. */
static int msgpipe__exec_check(const char *cwd, const char *dir, size_t dlen,
                               const char *name)
{
    size_t clen = cwd != NULL ? strlen(cwd) : 0, nlen = strlen(name);
    char *path;
    struct stat st;
    int e = 0, rel;

    rel = dlen > 0 ? dir[0] != '/' : name[0] != '/';
    path = (char *)msgpipe__malloc(clen + dlen + nlen + 3);
    if (path == NULL)
        return ENOMEM;
    path[0] = '\0';
    if (rel && cwd != NULL) {
        memcpy(path, cwd, clen);
        path[clen] = '/';
        path[clen + 1] = '\0';
    }
    if (dlen > 0) {
        strncat(path, dir, dlen);
        strcat(path, "/");
    }
    strcat(path, name);
    if (stat(path, &st) != 0)
        e = errno;
    else if (!S_ISREG(st.st_mode))
        e = EACCES;
    else if (access(path, X_OK) != 0)
        e = errno;
    msgpipe__free(path);
    return e;
}

/* What posix_spawnp() would find out in the child, looked at first: the
 * working directory and the program.  A C library that starts the child
 * as fork() does (or valgrind, which makes posix_spawn one) cannot report
 * a failed chdir or exec; then the child would exit 127 and the call
 * would seem to have worked.  (Racy by nature, as any such check: the
 * child's own failure is still reported where the system can.) */
static int msgpipe__spawn_precheck(const msgpipe__spawn *sp)
{
    const char *name = sp->argv[0], *path, *p, *colon;
    struct stat st;
    int e, first = ENOENT;

    if (sp->cwd != NULL) {
        if (stat(sp->cwd, &st) != 0)
            return errno;
        if (!S_ISDIR(st.st_mode))
            return ENOTDIR;
    }
    if (strchr(name, '/') != NULL)
        return msgpipe__exec_check(sp->cwd, NULL, 0, name);
    path = getenv("PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    for (p = path;; p = colon + 1) {
        colon = strchr(p, ':');
        e = msgpipe__exec_check(
            sp->cwd, p, colon != NULL ? (size_t)(colon - p) : strlen(p), name);
        if (e == 0)
            return 0;
        if (e == ENOMEM)
            return e;
        if (e == EACCES)
            first = EACCES; /* found, but not runnable: as execvp says */
        if (colon == NULL)
            return first;
    }
}

/* Start the child with theirs[0..nfd) at MSGPIPE__CHILD_FD upwards. */
static int msgpipe__spawn_child(const msgpipe__spawn *sp, const int *theirs,
                                int nfd, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char parent[64];
    char **env;
    sigset_t none;
    short flags = POSIX_SPAWN_SETSIGMASK;
    int i, e;

    if (nfd == 1)
        snprintf(parent, sizeof(parent), "%s=%d", MSGPIPE__PARENT_VAR,
                 MSGPIPE__CHILD_FD);
    else
        snprintf(parent, sizeof(parent), "%s=%d,%d", MSGPIPE__PARENT_VAR,
                 MSGPIPE__CHILD_FD, MSGPIPE__CHILD_FD + 1);
#if !defined(MSGPIPE_HAVE_ADDCHDIR)
    if (sp->cwd != NULL)
        return MSGPIPE_ENOTSUP;
#endif
    env = msgpipe__child_env(sp->env, parent);
    if (env == NULL)
        return MSGPIPE_ENOMEM;
    if (posix_spawn_file_actions_init(&fa) != 0) {
        msgpipe__free(env);
        return MSGPIPE_ENOMEM;
    }
    if (posix_spawnattr_init(&attr) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        msgpipe__free(env);
        return MSGPIPE_ENOMEM;
    }
    e = msgpipe__spawn_precheck(sp);
#if defined(MSGPIPE_HAVE_ADDCHDIR)
    if (e == 0 && sp->cwd != NULL)
        e = posix_spawn_file_actions_addchdir_np(&fa, sp->cwd);
#endif
    /* The sources are above the targets (msgpipe__fd_above), so no
     * dup2 overwrites a descriptor another still needs; dup2 to another
     * number clears close-on-exec on the copy. */
    for (i = 0; i < nfd && e == 0; i++)
        e = posix_spawn_file_actions_adddup2(&fa, theirs[i],
                                             MSGPIPE__CHILD_FD + i);
#if defined(MSGPIPE_HAVE_ADDCLOSEFROM)
    if (e == 0)
        e = posix_spawn_file_actions_addclosefrom_np(&fa,
                                                     MSGPIPE__CHILD_FD + nfd);
#endif
#if defined(POSIX_SPAWN_CLOEXEC_DEFAULT)
    flags |= POSIX_SPAWN_CLOEXEC_DEFAULT;
#endif
    /* The child starts with no signal blocked, whatever this thread has
     * blocked. */
    sigemptyset(&none);
    if (e == 0)
        e = posix_spawnattr_setsigmask(&attr, &none);
    if (e == 0)
        e = posix_spawnattr_setflags(&attr, flags);
    if (e == 0)
        e = posix_spawnp(pid, sp->argv[0], &fa, &attr, (char *const *)sp->argv,
                         env);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    msgpipe__free(env);
    return e == 0 ? MSGPIPE_OK : msgpipe__spawn_error(e);
}

int msgpipe__b_spawn(const msgpipe__spawn *sp, msgpipe **pipe,
                     msgpipe_process **proc)
{
    int mine[2], theirs[2], nfd = msgpipe__t_end_fds, rc, i;
    msgpipe_process *pr;
    pid_t pid = -1;

    pr = (msgpipe_process *)msgpipe__calloc(1, sizeof(*pr));
    if (pr == NULL)
        return MSGPIPE_ENOMEM;
    if (pthread_mutex_init(&pr->lock, NULL) != 0) {
        msgpipe__free(pr);
        return MSGPIPE_ENOMEM;
    }
    rc = msgpipe__t_pair_fds(mine, theirs);
    if (rc != MSGPIPE_OK)
        goto fail_proc;
    /* Above the numbers they get in the child. */
    for (i = 0; i < nfd; i++) {
        theirs[i] = msgpipe__fd_above(theirs[i], MSGPIPE__CHILD_FD + nfd);
        if (theirs[i] < 0) {
            rc = msgpipe__from_errno(errno);
            if (i == 0 && nfd == 2)
                close(theirs[1]);
            if (i == 1)
                close(theirs[0]);
            theirs[0] = theirs[1] = -1;
            break;
        }
    }
    if (nfd == 1)
        theirs[1] = theirs[0];
    if (rc != MSGPIPE_OK) {
        close(mine[0]);
        if (mine[1] != mine[0])
            close(mine[1]);
        goto fail_proc;
    }
    rc = msgpipe__t_wrap(mine[0], mine[1], &sp->po, pipe);
    if (rc == MSGPIPE_OK)
        rc = msgpipe__spawn_child(sp, theirs, nfd, &pid);
    /* The child has its copy (or there is no child): this process must
     * not keep one, or the end of the child would never be seen. */
    close(theirs[0]);
    if (theirs[1] != theirs[0])
        close(theirs[1]);
    if (rc != MSGPIPE_OK) {
        if (*pipe != NULL)
            msgpipe__b_close(*pipe);
        *pipe = NULL;
        goto fail_proc;
    }
    (*pipe)->peer_pid = (int64_t)pid;
    (*pipe)->peer_uid = (int64_t)geteuid();
    (*pipe)->peer_gid = (int64_t)getegid();
    pr->pid = pid;
    *proc = pr;
    return MSGPIPE_OK;
fail_proc:
    pthread_mutex_destroy(&pr->lock);
    msgpipe__free(pr);
    return rc;
}

/* ---- The child's side ---------------------------------------------------- */

/* A descriptor number in decimal, exactly: digits only, no sign, no
 * spaces, within int.  *end is set past it.  -1 if not. */
static int msgpipe__parse_fd(const char *s, const char **end)
{
    long v = 0;

    if (*s < '0' || *s > '9')
        return -1;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s - '0');
        if (v > INT_MAX)
            return -1;
        s++;
    }
    *end = s;
    return (int)v;
}

int msgpipe__b_from_parent(const msgpipe__opts *o, msgpipe **out)
{
    const char *v = getenv(MSGPIPE__PARENT_VAR), *end = NULL;
    int fd[2] = {-1, -1}, rc, i;

    if (v == NULL)
        return MSGPIPE_ENOENT;
    fd[0] = msgpipe__parse_fd(v, &end);
    if (fd[0] < 0)
        return MSGPIPE_EBADNAME;
    if (msgpipe__t_end_fds == 2) {
        if (*end != ',')
            return MSGPIPE_EBADNAME;
        fd[1] = msgpipe__parse_fd(end + 1, &end);
        if (fd[1] < 0)
            return MSGPIPE_EBADNAME;
    } else {
        fd[1] = fd[0];
    }
    if (*end != '\0')
        return MSGPIPE_EBADNAME;
    for (i = 0; i < 2; i++)
        if (fcntl(fd[i], F_GETFD) < 0)
            return MSGPIPE_EBADNAME;
    if (!msgpipe__t_end_check(fd[0], fd[1]))
        return MSGPIPE_EBADNAME;
    /* Ours now: not for programs this one starts. */
    for (i = 0; i < 2; i++)
        if (fcntl(fd[i], F_SETFD, FD_CLOEXEC) != 0)
            return msgpipe__from_errno(errno);
    rc = msgpipe__t_wrap(fd[0], fd[1], o, out);
    if (rc != MSGPIPE_OK)
        return rc;
    (*out)->peer_pid = (int64_t)getppid();
    (*out)->peer_uid = (int64_t)geteuid();
    (*out)->peer_gid = (int64_t)getegid();
    unsetenv(MSGPIPE__PARENT_VAR);
    return MSGPIPE_OK;
}

/* ---- Processes ----------------------------------------------------------- */

/* Reap the child if it has exited (lock held): 1 reaped (now or before),
 * 0 still running, or a negative msgpipe error. */
static int msgpipe__reap_locked(msgpipe_process *pr)
{
    int st = 0;
    pid_t r;

    if (pr->reaped)
        return 1;
    do
        r = waitpid(pr->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 0;
    if (r < 0)
        return msgpipe__from_errno(errno);
    pr->reaped = 1;
    if (WIFEXITED(st))
        pr->code = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
        pr->code = -WTERMSIG(st);
    else
        pr->code = -1;
    return 1;
}

static int msgpipe__reap(msgpipe_process *pr, int *code)
{
    int rc;

    pthread_mutex_lock(&pr->lock);
    rc = msgpipe__reap_locked(pr);
    if (rc == 1)
        *code = pr->code;
    pthread_mutex_unlock(&pr->lock);
    return rc;
}

int msgpipe__b_process_wait(msgpipe_process *pr, int timeout_ms, int *exit_code)
{
    int64_t deadline = msgpipe__deadline(timeout_ms);
    int pause = 1, rc, left;
    siginfo_t si;
    struct timespec ts;

    for (;;) {
        rc = msgpipe__reap(pr, exit_code);
        if (rc == 1)
            return MSGPIPE_OK;
        if (rc < 0)
            return rc;
        left = msgpipe__remaining(deadline);
        if (left == 0)
            return MSGPIPE_ETIMEDOUT;
        if (left < 0) {
            /* No deadline: wait for the exit without reaping, then reap
             * under the lock (see the top of this file). */
            memset(&si, 0, sizeof(si));
            if (waitid(P_PID, (id_t)pr->pid, &si, WEXITED | WNOWAIT) != 0 &&
                errno != EINTR)
                return msgpipe__from_errno(errno);
            continue;
        }
        /* A deadline: look again after a pause that grows to 16 ms. */
        if (pause > left)
            pause = left;
        ts.tv_sec = pause / 1000;
        ts.tv_nsec = (long)(pause % 1000) * 1000000L;
        nanosleep(&ts, NULL);
        if (pause < 16)
            pause *= 2;
    }
}

int msgpipe__b_process_kill(msgpipe_process *pr)
{
    int rc = MSGPIPE_OK;

    pthread_mutex_lock(&pr->lock);
    if (!pr->reaped && kill(pr->pid, SIGKILL) != 0 && errno != ESRCH)
        rc = msgpipe__from_errno(errno);
    pthread_mutex_unlock(&pr->lock);
    return rc;
}

int64_t msgpipe__b_process_pid(const msgpipe_process *pr)
{
    return (int64_t)pr->pid;
}

void msgpipe__b_process_close(msgpipe_process *pr)
{
    pthread_mutex_lock(&pr->lock);
    (void)msgpipe__reap_locked(pr);
    pthread_mutex_unlock(&pr->lock);
    pthread_mutex_destroy(&pr->lock);
    msgpipe__free(pr);
}
