#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include "csys.h"

int coto_start_writeback(int fd, long long offset, long long length) {
#ifdef __linux__
    return sync_file_range(fd, (off_t)offset, (off_t)length, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)offset; (void)length;
    return 0;
#endif
}

long long coto_copy_range(int in_fd, long long in_offset, int out_fd, long long length) {
#ifdef __linux__
    off_t off = (off_t)in_offset;
    return (long long)copy_file_range(in_fd, &off, out_fd, NULL, (size_t)length, 0);
#else
    (void)in_fd; (void)in_offset; (void)out_fd; (void)length;
    errno = ENOSYS;
    return -1;
#endif
}

static _Thread_local int in_parallel = 0;

int coto_in_parallel(void) { return in_parallel; }

void coto_set_in_parallel(int value) { in_parallel = value; }
