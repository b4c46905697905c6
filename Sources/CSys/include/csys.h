#ifndef COTO_CSYS_H
#define COTO_CSYS_H

/// Starts write-back of a file range's dirty pages without waiting for it (Linux sync_file_range with
/// SYNC_FILE_RANGE_WRITE). Returns 0, or -1 with errno set; a no-op returning 0 where unsupported.
int coto_start_writeback(int fd, long long offset, long long length);

#endif
