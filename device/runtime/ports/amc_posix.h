/*
 * amc_posix.h - the Linux port: graph files, a backup file and a progress file on a POSIX
 * file system, with fsync where the journal needs it (docs/patch-format.md, "POSIX port"), and
 * the anti-rollback counter in a file outside the bundle.
 *
 * Every file is reached from the bundle folder's descriptor, one path component at a time,
 * without following a symbolic link: a link planted in the bundle or its journal cannot send
 * writes elsewhere. Nothing is opened before the core asks for it: a graph file on its first
 * read or write (which the core does only once the blob's signature verified); the journal
 * (BUNDLE/.amc-patch/) is read when it exists and made on the first write. When a callback
 * fails, `why` says which path and what is wrong with it, and `error` is the AMC_E_... code
 * that fits the refusal.
 */
#ifndef AMC_POSIX_H
#define AMC_POSIX_H

#include "amc_patch.h"

#define AMC_POSIX_JOURNAL ".amc-patch"       /* the journal folder, inside the bundle */
#define AMC_POSIX_COUNTER_SIZE 16u           /* "AMCV", u64 LE version, sha256(first 12)[0..4) */
#define AMC_POSIX_COUNTER_NAME_MAX 251       /* the counter's file name, room left for ".tmp" */

typedef struct amc_posix {
    const char *dir;             /* the bundle folder as given (for messages); not copied */
    int dir_fd, journal_fd;
    int fd[AMC_CONFIG_MAX_FILES];            /* -1 until the core first reads or writes file i */
    char name[AMC_CONFIG_MAX_FILES][AMC_NAME_MAX + 1];   /* the blob's names, relative to dir */
    uint32_t size[AMC_CONFIG_MAX_FILES];     /* the sizes the blob states */
    unsigned nfiles;
    int backup_fd, progress_fd;
    const char *counter_path;    /* NULL: no counter; else as given (for messages); not copied */
    int counter_dir_fd;
    char counter_name[AMC_POSIX_COUNTER_NAME_MAX + 1];
    uint64_t counter;            /* the value read, once counter_known */
    int counter_known;
    unsigned dirty;              /* bit i: file i written since the last fsync; bit 31: backup */
    uint32_t writes, fsyncs;
    int error;                   /* AMC_E_... of the first refusal; 0: none */
    char why[640];               /* that refusal in one line: the path, what is wrong, what to do */
} amc_posix_t;

/* Open the bundle folder `dir` (kept for messages: it must outlive px). Nothing else is opened
 * or created yet. Returns 0, or -1 with px->why set; amc_posix_close is then still to be called. */
int amc_posix_open(amc_posix_t *px, const char *dir);

/* The blob's graph files (from amc_blob_info): their names and sizes are kept; the files are
 * checked and opened when the core first touches them. Returns 0, or -1 (too many). */
int amc_posix_files(amc_posix_t *px, const amc_file_info_t files[], unsigned nfiles);

/* Keep the anti-rollback counter in the file `path` (kept for messages), which must lie outside
 * the bundle folder; its folder is opened now. Returns 0, or -1 with px->why set. */
int amc_posix_counter(amc_posix_t *px, const char *path);

/* The storage callbacks over px; counter_read/counter_write only after amc_posix_counter. */
void amc_posix_storage(amc_posix_t *px, amc_storage_t *st, uint32_t page_size,
                       uint32_t backup_pages);

/* Remove the backup file once a patch completed (its pages are no longer needed), durably.
 * Returns 0 (also when there is none), or -1 with px->why set. */
int amc_posix_remove_backup(amc_posix_t *px);

void amc_posix_close(amc_posix_t *px);

#ifndef AMC_CONFIG_MAX_KEYS
#define AMC_CONFIG_MAX_KEYS 16       /* public keys a device trusts at once (a rotation's old and new) */
#endif

/* The public keys a device trusts; the caller fills `keys[0..count)`. Removing a key revokes it. */
typedef struct amc_keyring {
    uint8_t keys[AMC_CONFIG_MAX_KEYS][32];
    unsigned count;
} amc_keyring_t;

/* Ed25519 verifier through libsodium; ctx is the 32-byte public key. */
int amc_verify_ed25519(void *ctx, const uint8_t digest[32], const uint8_t signature[64]);

/* The same for a keyring: ctx is an amc_keyring_t; the signature verifies if it verifies with
 * any key of the ring (none: it never does). */
int amc_verify_ed25519_keyring(void *ctx, const uint8_t digest[32], const uint8_t signature[64]);

#endif
