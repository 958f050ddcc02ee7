/* The Linux port: see amc_posix.h. Every data write is fsync'ed before the progress record that
 * relies on it, and the progress record itself is fsync'ed before the next step. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "amc_posix.h"

#define BACKUP_BIT 0x80000000u

static int fd_of(amc_posix_t *px, unsigned file, unsigned *bit)
{
    if (file == AMC_BACKUP_FILE) {
        *bit = BACKUP_BIT;
        return px->backup_fd;
    }
    if (file >= px->nfiles) return -1;
    *bit = 1u << file;
    return px->fd[file];
}

static int full_pread(int fd, uint8_t *buf, size_t len, off_t off, int zero_fill)
{
    while (len) {
        ssize_t n = pread(fd, buf, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) {
            if (!zero_fill) return -1;
            memset(buf, 0, len);
            return 0;
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int full_pwrite(int fd, const uint8_t *buf, size_t len, off_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

static int px_read(void *ctx, unsigned file, uint32_t off, uint8_t *buf, size_t len)
{
    unsigned bit;
    int fd = fd_of(ctx, file, &bit);
    return fd < 0 ? -1 : full_pread(fd, buf, len, (off_t)off, 0);
}

static int px_write(void *ctx, unsigned file, uint32_t off, const uint8_t *buf, size_t len)
{
    amc_posix_t *px = ctx;
    unsigned bit;
    int fd = fd_of(px, file, &bit);
    if (fd < 0 || full_pwrite(fd, buf, len, (off_t)off) != 0) return -1;
    px->dirty |= bit;
    px->writes++;
    return 0;
}

static int px_progress_read(void *ctx, unsigned slot, uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_posix_t *px = ctx;
    return full_pread(px->progress_fd, rec, AMC_PROGRESS_SIZE, (off_t)slot * AMC_PROGRESS_SIZE, 1);
}

static int px_progress_write(void *ctx, unsigned slot, const uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_posix_t *px = ctx;
    unsigned i;
    /* what the record vouches for must be on disk before the record */
    for (i = 0; i < px->nfiles; i++)
        if ((px->dirty & (1u << i)) && fsync(px->fd[i]) != 0) return -1;
    if ((px->dirty & BACKUP_BIT) && fsync(px->backup_fd) != 0) return -1;
    px->fsyncs += (unsigned)__builtin_popcount(px->dirty);
    px->dirty = 0;
    if (full_pwrite(px->progress_fd, rec, AMC_PROGRESS_SIZE, (off_t)slot * AMC_PROGRESS_SIZE) != 0 ||
        fsync(px->progress_fd) != 0)
        return -1;
    px->fsyncs++;
    px->writes++;
    return 0;
}

int amc_posix_open(amc_posix_t *px, const char *const paths[], unsigned nfiles,
                   const char *backup_path, const char *progress_path)
{
    unsigned i;
    int saved;
    memset(px, 0, sizeof *px);
    px->backup_fd = px->progress_fd = -1;
    for (i = 0; i < AMC_CONFIG_MAX_FILES; i++) px->fd[i] = -1;
    if (nfiles > AMC_CONFIG_MAX_FILES) {
        errno = EINVAL;
        return -1;
    }
    px->nfiles = nfiles;
    for (i = 0; i < nfiles; i++)
        if ((px->fd[i] = open(paths[i], O_RDWR)) < 0) goto fail;
    if ((px->backup_fd = open(backup_path, O_RDWR | O_CREAT, 0644)) < 0) goto fail;
    if ((px->progress_fd = open(progress_path, O_RDWR | O_CREAT, 0644)) < 0) goto fail;
    return 0;
fail:
    saved = errno;
    amc_posix_close(px);
    errno = saved;
    return -1;
}

void amc_posix_storage(amc_posix_t *px, amc_storage_t *st, uint32_t page_size,
                       uint32_t backup_pages)
{
    memset(st, 0, sizeof *st);
    st->ctx = px;
    st->read = px_read;
    st->write = px_write;
    st->erase = NULL;                    /* files are byte-writable */
    st->progress_read = px_progress_read;
    st->progress_write = px_progress_write;
    st->page_size = page_size;
    st->backup_pages = backup_pages;
}

void amc_posix_close(amc_posix_t *px)
{
    unsigned i;
    for (i = 0; i < AMC_CONFIG_MAX_FILES; i++)
        if (px->fd[i] >= 0) close(px->fd[i]), px->fd[i] = -1;
    if (px->backup_fd >= 0) close(px->backup_fd), px->backup_fd = -1;
    if (px->progress_fd >= 0) close(px->progress_fd), px->progress_fd = -1;
}
