#ifndef COTO_CSYS_H
#define COTO_CSYS_H

/// Starts write-back of a file range's dirty pages without waiting for it (Linux sync_file_range with
/// SYNC_FILE_RANGE_WRITE). Returns 0, or -1 with errno set; a no-op returning 0 where unsupported.
int coto_start_writeback(int fd, long long offset, long long length);

/// Copies up to `length` bytes from `in_fd` at `in_offset` to `out_fd` at its current position inside the
/// kernel (Linux copy_file_range). Returns the bytes copied (0 at end of input), or -1 with errno set
/// (ENOSYS where unsupported: the caller falls back to read and write).
long long coto_copy_range(int in_fd, long long in_offset, int out_fd, long long length);

/// Whether the calling thread runs a body of a parallel region (a thread-local flag; Parallel.forEach runs
/// nested regions inline instead of putting more threads on cores already taken).
int coto_in_parallel(void);
void coto_set_in_parallel(int value);

#endif
