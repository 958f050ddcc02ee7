/*
 * amc_posix.h - the Linux port: graph files, a backup file and a progress file on a POSIX
 * file system, with fsync where the journal needs it (docs/patch-format.md, "POSIX port").
 */
#ifndef AMC_POSIX_H
#define AMC_POSIX_H

#include "amc_patch.h"

typedef struct amc_posix {
    int fd[AMC_CONFIG_MAX_FILES];
    unsigned nfiles;
    int backup_fd, progress_fd;
    unsigned dirty;              /* bit i: file i written since the last fsync; bit 31: backup */
    uint32_t writes, fsyncs;
} amc_posix_t;

/* Open the files (read-write), the backup file and the progress file (created if missing).
 * Returns 0, or -1 with errno set; on failure nothing stays open. */
int amc_posix_open(amc_posix_t *px, const char *const paths[], unsigned nfiles,
                   const char *backup_path, const char *progress_path);
void amc_posix_storage(amc_posix_t *px, amc_storage_t *st, uint32_t page_size,
                       uint32_t backup_pages);
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
