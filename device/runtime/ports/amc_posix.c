/* The Linux port: see amc_posix.h. Every data write is fsync'ed before the progress record that
 * relies on it, the progress record itself before the next step, and a folder after an entry is
 * created, renamed or removed in it (else a power cut may lose the entry with the data fsync'ed). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amc_posix.h"

#define BACKUP_BIT 0x80000000u
#define BACKUP_NAME "backup"
#define PROGRESS_NAME "progress"
#define ABSENT (-2)                  /* open_at: no such entry (not reported: the caller decides) */
#define SHOWN_MAX (4096 + AMC_NAME_MAX + 32)

/* Record the first refusal (later ones follow from it); returns -1, what a callback returns. */
static int refuse(amc_posix_t *px, int error, const char *format, ...)
{
    va_list args;
    if (px->error) return -1;
    px->error = error;
    va_start(args, format);
    vsnprintf(px->why, sizeof px->why, format, args);
    va_end(args);
    return -1;
}

/* px->dir "/" the first `len` bytes of `rel`: a path as messages show it */
static const char *shown(char out[SHOWN_MAX], const amc_posix_t *px, const char *rel, size_t len)
{
    snprintf(out, SHOWN_MAX, "%s/%.*s", px->dir, (int)len, rel);
    return out;
}

/* openat() that never follows a symbolic link at `name`. Returns the descriptor, ABSENT when
 * there is no such entry, or -1 with the reason (a link, or errno) in px->why. */
static int open_at(amc_posix_t *px, int at, const char *name, int flags, const char *path)
{
    struct stat sb;
    int fd = openat(at, name, flags | O_NOFOLLOW | O_NOCTTY, 0644), err = errno;
    if (fd >= 0) return fd;
    if (err == ENOENT) return ABSENT;
    if (fstatat(at, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(sb.st_mode))
        return refuse(px, AMC_E_IO, "%s is a symbolic link: refusing to follow it (put the %s itself there)",
                      path, (flags & O_DIRECTORY) ? "folder" : "file");
    if (err == EISDIR)
        return refuse(px, AMC_E_BASE, "%s is a folder, not a regular file", path);
    return refuse(px, AMC_E_IO, "%s: %s", path, strerror(err));
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

/* ---- graph files ------------------------------------------------------------------------- */

/* Open graph file i, BUNDLE/name[i], one component at a time with O_NOFOLLOW (folders also
 * O_DIRECTORY), and check it is a regular file of the size the blob states. Names come from the
 * blob: "", ".", "..", an absolute name or an empty component would leave the bundle. */
static int open_target(amc_posix_t *px, unsigned i)
{
    const char *name = px->name[i], *part, *slash;
    char component[AMC_NAME_MAX + 1], path[SHOWN_MAX];
    int at = px->dir_fd, fd;
    struct stat sb;
    for (part = name;; part = slash + 1) {
        size_t len;
        slash = strchr(part, '/');
        len = slash ? (size_t)(slash - part) : strlen(part);
        memcpy(component, part, len);
        component[len] = '\0';
        shown(path, px, name, (size_t)(part - name) + len);
        if (len == 0 || strcmp(component, ".") == 0 || strcmp(component, "..") == 0)
            fd = refuse(px, AMC_E_FORMAT, "the blob names the file '%s', which is not a path inside the "
                        "bundle (no '.', '..' or empty parts): refusing it", name);
        else if ((fd = open_at(px, at, component, slash ? O_RDONLY | O_DIRECTORY : O_RDWR | O_NONBLOCK,
                               path)) == ABSENT)
            fd = refuse(px, AMC_E_BASE, "%s is missing: the blob patches it in place (is this the bundle "
                        "the blob was made for?)", path);
        if (at != px->dir_fd) close(at);
        if (fd < 0 || !slash) break;
        at = fd;
    }
    if (fd < 0) return -1;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return refuse(px, AMC_E_IO, "%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return refuse(px, AMC_E_BASE, "%s is not a regular file: the blob patches a file there", path);
    }
    if ((unsigned long long)sb.st_size != px->size[i]) {
        close(fd);
        return refuse(px, AMC_E_BASE, "%s is %lld bytes, the blob expects %lu: not the base of this blob "
                      "(is this the bundle the blob was made for?)", path, (long long)sb.st_size,
                      (unsigned long)px->size[i]);
    }
    return px->fd[i] = fd;
}

/* ---- the journal ------------------------------------------------------------------------- */

/* BUNDLE/.amc-patch, made when missing and `create` (then the bundle folder is fsync'ed, so the
 * new entry survives a power cut). 0, ABSENT (missing, not to be made), or -1. */
static int open_journal(amc_posix_t *px, int create)
{
    char path[SHOWN_MAX];
    int fd;
    if (px->journal_fd >= 0) return 0;
    shown(path, px, AMC_POSIX_JOURNAL, strlen(AMC_POSIX_JOURNAL));
    if (create) {
        if (mkdirat(px->dir_fd, AMC_POSIX_JOURNAL, 0755) == 0) {
            if (fsync(px->dir_fd) != 0) return refuse(px, AMC_E_IO, "%s: %s", px->dir, strerror(errno));
            px->fsyncs++;
        } else if (errno != EEXIST) {
            return refuse(px, AMC_E_IO, "%s: %s", path, strerror(errno));
        }
    }
    fd = open_at(px, px->dir_fd, AMC_POSIX_JOURNAL, O_RDONLY | O_DIRECTORY, path);
    if (fd == ABSENT && create) return refuse(px, AMC_E_IO, "%s: %s", path, strerror(ENOENT));
    if (fd < 0) return fd;
    px->journal_fd = fd;
    return 0;
}

/* The journal file `name`, made when missing and `create` (O_EXCL: a planted link or file is
 * never opened in its place; then the journal folder is fsync'ed). fd, ABSENT, or -1. */
static int open_journal_file(amc_posix_t *px, const char *name, int create)
{
    char path[SHOWN_MAX];
    struct stat sb;
    int fd = open_journal(px, create);
    if (fd != 0) return fd;
    snprintf(path, sizeof path, "%s/%s/%s", px->dir, AMC_POSIX_JOURNAL, name);
    fd = open_at(px, px->journal_fd, name, O_RDWR | O_NONBLOCK, path);
    if (fd == ABSENT && create) {
        fd = open_at(px, px->journal_fd, name, O_RDWR | O_CREAT | O_EXCL, path);
        if (fd == ABSENT) return refuse(px, AMC_E_IO, "%s: %s", path, strerror(ENOENT));
        if (fd >= 0 && fsync(px->journal_fd) != 0) {
            close(fd);
            return refuse(px, AMC_E_IO, "%s/%s: %s", px->dir, AMC_POSIX_JOURNAL, strerror(errno));
        }
        px->fsyncs++;
    }
    if (fd < 0) return fd;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return refuse(px, AMC_E_IO, "%s is not a regular file: remove it (the journal keeps its own "
                      "files there)", path);
    }
    return fd;
}

/* Both journal files, made when missing: what the first write of a patch needs. */
static int open_journal_for_write(amc_posix_t *px)
{
    int fd;
    if (px->backup_fd < 0) {
        if ((fd = open_journal_file(px, BACKUP_NAME, 1)) < 0) return -1;
        px->backup_fd = fd;
    }
    if (px->progress_fd < 0) {
        if ((fd = open_journal_file(px, PROGRESS_NAME, 1)) < 0) return -1;
        px->progress_fd = fd;
    }
    return 0;
}

/* ---- storage callbacks ------------------------------------------------------------------- */

static int fd_of(amc_posix_t *px, unsigned file, unsigned *bit)
{
    if (file == AMC_BACKUP_FILE) {
        *bit = BACKUP_BIT;
        return open_journal_for_write(px) == 0 ? px->backup_fd : -1;
    }
    if (file >= px->nfiles) return -1;
    *bit = 1u << file;
    return px->fd[file] >= 0 ? px->fd[file] : open_target(px, file);
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
    if (px->progress_fd < 0) {
        int fd = open_journal_file(px, PROGRESS_NAME, 0);
        if (fd == ABSENT) {                  /* no journal yet: a slot never written */
            memset(rec, 0, AMC_PROGRESS_SIZE);
            return 0;
        }
        if (fd < 0) return -1;
        px->progress_fd = fd;
    }
    return full_pread(px->progress_fd, rec, AMC_PROGRESS_SIZE, (off_t)slot * AMC_PROGRESS_SIZE, 1);
}

static int px_progress_write(void *ctx, unsigned slot, const uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_posix_t *px = ctx;
    unsigned i;
    if (open_journal_for_write(px) != 0) return -1;
    /* what the record vouches for must be on disk before the record */
    for (i = 0; i < px->nfiles; i++) {
        if (!(px->dirty & (1u << i))) continue;
        if (fsync(px->fd[i]) != 0) return -1;
        px->fsyncs++;
    }
    if (px->dirty & BACKUP_BIT) {
        if (fsync(px->backup_fd) != 0) return -1;
        px->fsyncs++;
    }
    px->dirty = 0;
    if (full_pwrite(px->progress_fd, rec, AMC_PROGRESS_SIZE, (off_t)slot * AMC_PROGRESS_SIZE) != 0 ||
        fsync(px->progress_fd) != 0)
        return -1;
    px->fsyncs++;
    px->writes++;
    return 0;
}

/* ---- the anti-rollback counter ----------------------------------------------------------- */

static void counter_check(const uint8_t rec[12], uint8_t check[4])
{
    amc_sha256_t sha;
    uint8_t digest[32];
    amc_sha256_init(&sha);
    amc_sha256_update(&sha, rec, 12);
    amc_sha256_final(&sha, digest);
    memcpy(check, digest, 4);
}

static int px_counter_read(void *ctx, uint64_t *value)
{
    amc_posix_t *px = ctx;
    uint8_t rec[AMC_POSIX_COUNTER_SIZE], check[4];
    struct stat sb;
    unsigned i;
    int fd = open_at(px, px->counter_dir_fd, px->counter_name, O_RDONLY | O_NONBLOCK, px->counter_path);
    if (fd == ABSENT) {
        px->counter = 0;                     /* never written: no patch completed with it yet */
    } else if (fd < 0) {
        return -1;
    } else {
        int bad = fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size != AMC_POSIX_COUNTER_SIZE ||
                  full_pread(fd, rec, sizeof rec, 0, 0) != 0;
        close(fd);
        if (!bad) counter_check(rec, check);
        if (bad || memcmp(rec, "AMCV", 4) != 0 || memcmp(rec + 12, check, 4) != 0)
            /* failing closed: reading it as 0 would let an old blob back in */
            return refuse(px, AMC_E_IO, "%s is not a valid version counter (16 bytes: AMCV, version, "
                          "check): refusing to patch; restore it from a good copy", px->counter_path);
        for (px->counter = 0, i = 0; i < 8; i++) px->counter |= (uint64_t)rec[4 + i] << (8 * i);
    }
    px->counter_known = 1;
    *value = px->counter;
    return 0;
}

/* FILE.tmp, fsync, rename over FILE, fsync the folder: a power cut leaves the old or the new
 * counter, never a torn one. */
static int px_counter_write(void *ctx, uint64_t value)
{
    amc_posix_t *px = ctx;
    char tmp[AMC_POSIX_COUNTER_NAME_MAX + 5], path[SHOWN_MAX];
    uint8_t rec[AMC_POSIX_COUNTER_SIZE];
    uint64_t old;
    unsigned i;
    int fd, bad;
    if (!px->counter_known && px_counter_read(px, &old) != 0) return -1;
    if (value < px->counter)
        return refuse(px, AMC_E_VERSION, "%s holds version %llu: refusing to lower it to %llu",
                      px->counter_path, (unsigned long long)px->counter, (unsigned long long)value);
    if (value == px->counter) return 0;
    memcpy(rec, "AMCV", 4);
    for (i = 0; i < 8; i++) rec[4 + i] = (uint8_t)(value >> (8 * i));
    counter_check(rec, rec + 12);
    snprintf(tmp, sizeof tmp, "%s.tmp", px->counter_name);
    snprintf(path, sizeof path, "%s.tmp", px->counter_path);
    /* a leftover FILE.tmp may be a hard link to another file: remove it rather than truncate */
    if (unlinkat(px->counter_dir_fd, tmp, 0) != 0 && errno != ENOENT)
        return refuse(px, AMC_E_IO, "%s: %s", path, strerror(errno));
    fd = open_at(px, px->counter_dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL, path);
    if (fd == ABSENT) return refuse(px, AMC_E_IO, "%s: %s", path, strerror(ENOENT));
    if (fd < 0) return -1;
    bad = full_pwrite(fd, rec, sizeof rec, 0) != 0 || fsync(fd) != 0;
    if (close(fd) != 0) bad = 1;
    if (bad || renameat(px->counter_dir_fd, tmp, px->counter_dir_fd, px->counter_name) != 0 ||
        fsync(px->counter_dir_fd) != 0)
        return refuse(px, AMC_E_IO, "%s: %s (the version counter was not advanced)", px->counter_path,
                      strerror(errno));
    px->counter = value;
    px->writes++;
    px->fsyncs += 2;
    return 0;
}

/* Whether the folder `fd` is the bundle folder or lies below it: compare each folder from `fd`
 * up to the root (by device and inode, so links and odd spellings of a path change nothing). */
static int below_bundle(const amc_posix_t *px, int fd, int *inside)
{
    struct stat bundle, here, up;
    int cur = fd, next, rc = 0;
    *inside = 0;
    if (fstat(px->dir_fd, &bundle) != 0 || fstat(fd, &here) != 0) return -1;
    for (;;) {
        if (here.st_dev == bundle.st_dev && here.st_ino == bundle.st_ino) {
            *inside = 1;
            break;
        }
        next = openat(cur, "..", O_RDONLY | O_DIRECTORY);
        if (cur != fd) close(cur);
        cur = next;
        if (cur < 0 || fstat(cur, &up) != 0) {
            rc = -1;
            break;
        }
        if (up.st_dev == here.st_dev && up.st_ino == here.st_ino) break;   /* the root */
        here = up;
    }
    if (cur >= 0 && cur != fd) close(cur);
    return rc;
}

/* ---- set-up ------------------------------------------------------------------------------ */

int amc_posix_open(amc_posix_t *px, const char *dir)
{
    unsigned i;
    memset(px, 0, sizeof *px);
    px->dir = dir;
    px->journal_fd = px->backup_fd = px->progress_fd = px->counter_dir_fd = -1;
    for (i = 0; i < AMC_CONFIG_MAX_FILES; i++) px->fd[i] = -1;
    if ((px->dir_fd = open(dir, O_RDONLY | O_DIRECTORY)) < 0)
        return refuse(px, AMC_E_IO, "%s: %s (the bundle folder)", dir, strerror(errno));
    return 0;
}

int amc_posix_files(amc_posix_t *px, const amc_file_info_t files[], unsigned nfiles)
{
    unsigned i;
    if (nfiles > AMC_CONFIG_MAX_FILES) return -1;
    for (i = 0; i < nfiles; i++) {
        memcpy(px->name[i], files[i].name, sizeof px->name[i]);
        px->name[i][AMC_NAME_MAX] = '\0';
        px->size[i] = files[i].size;
    }
    px->nfiles = nfiles;
    return 0;
}

int amc_posix_counter(amc_posix_t *px, const char *path)
{
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char folder[4096];
    int inside;
    px->counter_path = path;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
        strlen(base) > AMC_POSIX_COUNTER_NAME_MAX)
        return refuse(px, AMC_E_ARG, "%s: not a file name for the version counter", path);
    if (!slash) strcpy(folder, ".");
    else if (slash == path) strcpy(folder, "/");
    else if ((size_t)(slash - path) >= sizeof folder)
        return refuse(px, AMC_E_ARG, "%s: path too long", path);
    else snprintf(folder, sizeof folder, "%.*s", (int)(slash - path), path);
    if ((px->counter_dir_fd = open(folder, O_RDONLY | O_DIRECTORY)) < 0)
        return refuse(px, AMC_E_ARG, "%s: %s (the version counter's folder must exist)", folder,
                      strerror(errno));
    if (below_bundle(px, px->counter_dir_fd, &inside) != 0)
        return refuse(px, AMC_E_ARG, "%s: %s", folder, strerror(errno));
    if (inside)
        return refuse(px, AMC_E_ARG, "%s lies inside the bundle %s: the version counter must be kept "
                      "outside it, where wiping the bundle or its journal cannot reset it", path, px->dir);
    strcpy(px->counter_name, base);
    return 0;
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
    if (px->counter_path) {
        st->counter_read = px_counter_read;
        st->counter_write = px_counter_write;
    }
    st->page_size = page_size;
    st->backup_pages = backup_pages;
}

int amc_posix_remove_backup(amc_posix_t *px)
{
    int rc = open_journal(px, 0);
    if (rc == ABSENT) return 0;
    if (rc != 0) return -1;
    if (px->backup_fd >= 0) close(px->backup_fd), px->backup_fd = -1;
    /* unlinkat removes the entry itself: a link there would go, never what it points to */
    if (unlinkat(px->journal_fd, BACKUP_NAME, 0) != 0)
        return errno == ENOENT ? 0 : refuse(px, AMC_E_IO, "%s/%s/%s: %s", px->dir, AMC_POSIX_JOURNAL,
                                            BACKUP_NAME, strerror(errno));
    if (fsync(px->journal_fd) != 0)
        return refuse(px, AMC_E_IO, "%s/%s: %s", px->dir, AMC_POSIX_JOURNAL, strerror(errno));
    px->fsyncs++;
    return 0;
}

void amc_posix_close(amc_posix_t *px)
{
    int *fds[] = {&px->backup_fd, &px->progress_fd, &px->journal_fd, &px->dir_fd, &px->counter_dir_fd};
    unsigned i;
    for (i = 0; i < AMC_CONFIG_MAX_FILES; i++)
        if (px->fd[i] >= 0) close(px->fd[i]), px->fd[i] = -1;
    for (i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (*fds[i] >= 0) close(*fds[i]), *fds[i] = -1;
}
