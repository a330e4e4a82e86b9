/* LD_PRELOAD shim for benchmarks: make every flush take longer, and count flushes.
 *
 * fsync, fdatasync and sync_file_range first run for real (libc's own, found with
 * dlsym(RTLD_NEXT)), then sleep FLUSHDELAY_US microseconds in the calling thread, as a slower
 * device would keep that thread waiting. Counts go to FLUSHDELAY_REPORT (appended, one line
 * per process: "pid fsync N fdatasync N sync_file_range N") when the process exits normally.
 * FLUSHDELAY_SERIAL=1 makes the delays of one process's threads wait for each other, as on a
 * device that completes one flush at a time (without it, concurrent flushes overlap).
 * Built by bench/flushdelay.py with the system C compiler; never used by the agent itself.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long delay_us;
static int serial;
static pthread_mutex_t device = PTHREAD_MUTEX_INITIALIZER;
static atomic_long n_fsync, n_fdatasync, n_sync_file_range;
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_sync_file_range)(int, off64_t, off64_t, unsigned int);

__attribute__((constructor)) static void flushdelay_init(void) {
    const char *us = getenv("FLUSHDELAY_US");
    delay_us = us ? atol(us) : 0;
    const char *one = getenv("FLUSHDELAY_SERIAL");
    serial = one && *one == '1';
    real_fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    real_sync_file_range =
        (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
}

__attribute__((destructor)) static void flushdelay_report(void) {
    const char *path = getenv("FLUSHDELAY_REPORT");
    if (!path || !*path) return;
    FILE *out = fopen(path, "a");
    if (!out) return;
    fprintf(out, "%ld fsync %ld fdatasync %ld sync_file_range %ld\n", (long)getpid(),
            atomic_load(&n_fsync), atomic_load(&n_fdatasync), atomic_load(&n_sync_file_range));
    fclose(out);
}

/* Flushes so far in this process, for a benchmark to read around what it measures (ctypes). */
long flushdelay_flushes(void) {
    return atomic_load(&n_fsync) + atomic_load(&n_fdatasync) + atomic_load(&n_sync_file_range);
}

static void flush_wait(void) {
    if (delay_us <= 0) return;
    struct timespec t = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    int saved = errno;
    if (serial) pthread_mutex_lock(&device);
    while (nanosleep(&t, &t) == -1 && errno == EINTR) {
    }
    if (serial) pthread_mutex_unlock(&device);
    errno = saved;
}

int fsync(int fd) {
    int rc = real_fsync(fd);
    atomic_fetch_add(&n_fsync, 1);
    flush_wait();
    return rc;
}

int fdatasync(int fd) {
    int rc = real_fdatasync(fd);
    atomic_fetch_add(&n_fdatasync, 1);
    flush_wait();
    return rc;
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    int rc = real_sync_file_range(fd, offset, nbytes, flags);
    atomic_fetch_add(&n_sync_file_range, 1);
    /* Only a range sync that waits for the write is a flush the caller waits on. */
    if (flags & SYNC_FILE_RANGE_WAIT_AFTER) flush_wait();
    return rc;
}
