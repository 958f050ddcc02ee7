/*
 * amc_patch.h - verify and apply an amc diff-patch blob (.amcp) in place, power-loss safe.
 *
 * The one public header of the amc patch runtime. C99, no malloc, no stdio: the caller owns
 * the state struct and every buffer, and storage goes through callbacks.
 *
 * A blob is streamed twice (docs/patch-format.md, "Applying on a device"):
 *
 *   amc_patch_begin(&p, &cfg, AMC_PASS_VERIFY);   read-only: header, bounds, digest,
 *   amc_patch_process(&p, chunk, n) ...;          signature, base sha256, version
 *   rc = amc_patch_finish(&p);
 *   amc_patch_begin(&p, &cfg, AMC_PASS_APPLY);    writes, page by page, through a backup
 *   amc_patch_process(&p, chunk, n) ...;          page and a progress record
 *   rc = amc_patch_finish(&p);                    checks the result sha256
 *
 * After a power cut the same two passes resume the patch; AMC_PASS_ROLLBACK instead of
 * AMC_PASS_APPLY restores the base (when the backup area holds every touched page).
 *
 * Two-phase install (as MCUboot's test/confirm): with cfg.install_only the apply pass ends in
 * state INSTALLED (new files, backups kept, anti-rollback counter not advanced); then either
 *   amc_patch_commit(&p, &cfg);                   counter to the blob's version, then DONE
 * or a verify pass and AMC_PASS_ROLLBACK, which restore the base files and end IDLE.
 * Errors are returned negated (-AMC_E_...); amc_strerror() names them.
 */
#ifndef AMC_PATCH_H
#define AMC_PATCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AMC_PATCH_FORMAT_VERSION 2u      /* version 1 (unauthenticated apply pass) is refused */

#ifndef AMC_CONFIG_MAX_FILES
#define AMC_CONFIG_MAX_FILES 4u          /* graph files one blob may target */
#endif

#define AMC_HEADER_SIZE 32u
#define AMC_RECORD_HEADER_SIZE 16u
#define AMC_TRAILER_SIZE 96u             /* root digest (32) + Ed25519 signature (64) */
#define AMC_LINK_SIZE 32u                /* sha256 of the next chunk, at the end of every chunk but the last */
#define AMC_CHUNK_MIN 64u                /* chunk sizes: a power of two in [AMC_CHUNK_MIN, AMC_CHUNK_MAX] */
#define AMC_CHUNK_MAX 32768u
#define AMC_NAME_MAX 64u
#define AMC_PROGRESS_SIZE 64u            /* one progress slot */
#define AMC_BACKUP_FILE 0xFFu            /* file id the storage callbacks get for the backup area */

/* Record kinds and flags (docs/patch-format.md). */
#define AMC_RECORD_SPARSE 1u
#define AMC_RECORD_HASH 2u
#define AMC_RECORD_RAW 3u
#define AMC_HASH_SIGNED 1u

/*
 * Error codes, returned negated; the one list of them. Stable (a public ABI): new codes are only
 * appended. Each entry is X(name, code, text): the enum below and amc_strerror() are made from
 * it, and tests/test_runtime_errors.py holds the amc-patch exit statuses of the Python side
 * (runtime/apply.py, RUNTIME_ERRORS) to it.
 */
#define AMC_ERROR_LIST(X)                                                                          \
    X(AMC_OK, 0, "ok")                                                                             \
    X(AMC_E_ARG, 1, "bad argument or call order")                                                  \
    X(AMC_E_FORMAT, 2, "malformed blob")           /* magic, version, flags, reserved, order */    \
    X(AMC_E_BOUNDS, 3, "length, count or offset out of bounds")                                    \
    X(AMC_E_TRUNCATED, 4, "blob truncated")                                                        \
    X(AMC_E_DIGEST, 5, "integrity digest mismatch")                                                \
    X(AMC_E_SIGNATURE, 6, "signature rejected")    /* by the verifier callback */                  \
    X(AMC_E_BASE, 7, "target file is not the base of this blob")                                   \
    X(AMC_E_VERSION, 8, "model version is not newer than the installed one")  /* replay */         \
    X(AMC_E_NOMEM, 9, "caller buffer too small for this blob")                                     \
    X(AMC_E_IO, 10, "storage error")               /* a storage callback failed */                 \
    X(AMC_E_RESULT, 11, "patched file does not have the expected sha256")                          \
    X(AMC_E_BUSY, 12, "another patch is half applied: resume or roll it back first")               \
    X(AMC_E_NOROLLBACK, 13,                                                                        \
      "backup area no longer holds every touched page: rollback impossible, resume instead")       \
    X(AMC_E_STATE, 14, "no patch in progress")     /* nothing to resume or roll back */           \
    X(AMC_E_GEOMETRY, 15,                                                                          \
      "journal was written with another page size or backup area: use the same ones")            \
    X(AMC_E_NOBACKUP, 16,                                                                          \
      "backup area too small to roll an install back: it needs more slots than touched pages")     \
    X(AMC_E_NOTINSTALLED, 17, "no installed patch to commit")

#define AMC_ERROR_ENUM_(name, code, text) name = code,
enum amc_error { AMC_ERROR_LIST(AMC_ERROR_ENUM_) };
#undef AMC_ERROR_ENUM_

/* Progress states kept in the persistent record. */
enum amc_progress_state {
    AMC_STATE_IDLE = 0,
    AMC_STATE_APPLYING = 1,
    AMC_STATE_ROLLING_BACK = 2,
    AMC_STATE_DONE = 3,
    AMC_STATE_INSTALLED = 4     /* an install completed: commit or roll back */
};

enum amc_pass { AMC_PASS_VERIFY = 0, AMC_PASS_APPLY = 1, AMC_PASS_ROLLBACK = 2 };

/*
 * Storage. Files are numbered by their index in the blob's file table; the backup area is
 * file AMC_BACKUP_FILE and holds backup_pages pages. All callbacks return 0 or a negative
 * value (any negative value becomes -AMC_E_IO).
 * erase: make [offset, offset+len) writable (flash: erase the pages covering it, to 0xFF).
 *   NULL for byte-writable storage (files), where write simply overwrites.
 * progress_read/progress_write: two slots of AMC_PROGRESS_SIZE bytes; a write to one slot
 *   must not disturb the other (the core alternates slots, so a torn write loses nothing).
 *   A never-written or erased slot may read back as anything.
 * counter_read/counter_write: the anti-rollback counter, kept where erasing the journal cannot
 *   reach it (OTP fuses or a secure counter on an MCU, a file outside the bundle on Linux). It
 *   holds the installed model version: read before any verify, advanced (never lowered) when a
 *   patch completes. counter_read of a counter never written gives 0. Both NULL: no counter
 *   (the journal's record and cfg.min_version are then all that stops a downgrade).
 */
typedef struct amc_storage {
    void *ctx;
    int (*read)(void *ctx, unsigned file, uint32_t offset, uint8_t *buf, size_t len);
    int (*write)(void *ctx, unsigned file, uint32_t offset, const uint8_t *buf, size_t len);
    int (*erase)(void *ctx, unsigned file, uint32_t offset, size_t len);
    int (*progress_read)(void *ctx, unsigned slot, uint8_t rec[AMC_PROGRESS_SIZE]);
    int (*progress_write)(void *ctx, unsigned slot, const uint8_t rec[AMC_PROGRESS_SIZE]);
    int (*counter_read)(void *ctx, uint64_t *value);
    int (*counter_write)(void *ctx, uint64_t value);
    uint32_t page_size;     /* erase unit; a power of two, 64..65536 */
    uint32_t backup_pages;  /* pages in the backup area, at least 1, at most 4 GiB of them in all */
} amc_storage_t;

/* Signature check: 0 when `signature` is a valid signature of `digest` by the trusted key. */
typedef int (*amc_verify_fn)(void *ctx, const uint8_t digest[32], const uint8_t signature[64]);

typedef struct amc_config {
    const amc_storage_t *storage;
    amc_verify_fn verify;
    void *verify_ctx;
    uint8_t *page_buf;          /* storage->page_size bytes */
    uint8_t *chunk_buf;         /* one blob chunk and its link: chunk size + AMC_LINK_SIZE bytes */
    uint32_t chunk_buf_size;    /* a blob with larger chunks is refused (AMC_E_NOMEM) */
    uint8_t *bucket_buf;        /* hash-record bucket values; may be NULL when size is 0 */
    uint32_t bucket_buf_size;
    uint64_t min_version;       /* a blob must be newer than this (e.g. from an OTP counter) */
    uint8_t install_only;       /* 1: install (the apply pass ends INSTALLED, the counter waits
                                 * for amc_patch_commit); the backup area must have more slots
                                 * than the patch touches pages (else AMC_E_NOBACKUP, before
                                 * any write) */
} amc_config_t;

typedef struct amc_sha256 {
    uint32_t h[8];
    uint32_t len_lo, len_hi;
    uint8_t buf[64];
} amc_sha256_t;

typedef struct amc_progress {
    uint32_t seq;
    uint8_t state;              /* enum amc_progress_state */
    uint8_t backup_valid;       /* backup slot of page `done_pages` holds its old content */
    uint8_t install;            /* the patch in progress is an install: its apply ends INSTALLED */
    uint32_t done_pages;        /* pages of the page walk fully written (INSTALLED: all of them) */
    uint32_t page_size;         /* the journal's geometry: resume and rollback need the same */
    uint32_t backup_pages;
    uint64_t installed_version; /* model version of the last completed (committed) patch */
    uint64_t version;           /* when `install`: the blob's version, which commit installs */
    uint8_t digest[32];         /* root digest of the blob in progress (when `install`: only
                                 * the first 24 bytes, then the record's version bytes) */
} amc_progress_t;

/* Patch state: caller-owned, opaque in spirit; sizeof() is what it costs. */
typedef struct amc_patch {
    /* hot fields first: small offsets make short instructions on Thumb */
    uint8_t pass, verified, resuming, st;
    uint8_t first, kind, file, esz, rflags, cur_valid, skip, shift;
    const amc_config_t *cfg;
    int error;                   /* sticky: first error of this pass */
    uint32_t pos, hash_end, need, got;
    uint8_t *dst;
    uint32_t nfiles, nrecords, fi, ri, count, idx, gap;
    uint32_t roff, rlen, pleft, seed, nbuckets, prev_file, prev_end;
    uint32_t seq, cur_page, cur_len, cur_file, limit;
    uint32_t csize, cfill, clen, cdata;   /* chunk size; bytes buffered, expected, of content */
    uint64_t version, counter, floor;     /* blob's; the counter's; the lowest it may not reach */
    uint32_t file_size[AMC_CONFIG_MAX_FILES];
    uint8_t fld[64];
    uint8_t link[32];            /* sha256 the next chunk must have */
    uint8_t digest[32];          /* root digest: found by the verify pass, kept for the next one */
    amc_progress_t prog;
    uint8_t file_sha[AMC_CONFIG_MAX_FILES][32];  /* base sha (verify, rollback) or result sha (apply) */
    amc_sha256_t sha;            /* chunk and file digests, progress check words: one at a time */
} amc_patch_t;

int amc_patch_begin(amc_patch_t *p, const amc_config_t *cfg, int pass);
int amc_patch_process(amc_patch_t *p, const uint8_t *data, size_t len);
int amc_patch_finish(amc_patch_t *p);

/* The persistent progress record (state IDLE with zeros when none was ever written). */
int amc_patch_status(const amc_config_t *cfg, amc_progress_t *out);

/* Commit an install: from INSTALLED, advance the counter to the blob's version (counter_write),
 * then write DONE. No blob is needed: the journal holds the version. Idempotent: after a cut,
 * call it again; in state DONE it writes nothing and returns 0. `p` is workspace (the caller's
 * state struct; no process/finish follows). -AMC_E_NOTINSTALLED in state IDLE, -AMC_E_BUSY
 * while a patch is half applied or half rolled back. */
int amc_patch_commit(amc_patch_t *p, const amc_config_t *cfg);

const char *amc_strerror(int error);

/* The bucket hash of hash records (docs/patch-format.md, "Hash function"). */
uint32_t amc_hash_mix32(uint32_t x);
uint32_t amc_hash_index(uint32_t index, uint32_t seed);

/* SHA-256 (FIPS 180-4), the core's own. */
void amc_sha256_init(amc_sha256_t *s);
void amc_sha256_update(amc_sha256_t *s, const uint8_t *data, size_t len);
void amc_sha256_final(amc_sha256_t *s, uint8_t out[32]);

/* Blob file table, for hosts that map file names to paths (not on the apply path).
 * Parses the in-memory prefix `blob` of `len` bytes; 0 or -AMC_E_... */
typedef struct amc_file_info {
    char name[AMC_NAME_MAX + 1];
    uint32_t size;
    uint8_t base_sha256[32];
    uint8_t new_sha256[32];
} amc_file_info_t;
int amc_blob_info(const uint8_t *blob, size_t len, uint64_t *version, unsigned *file_count,
                  amc_file_info_t files[AMC_CONFIG_MAX_FILES]);

#ifdef __cplusplus
}
#endif
#endif /* AMC_PATCH_H */
