/*
 * test_patch.c - the C side of the patch runtime tests, driven by fixture packs that the
 * Python reference writes: small ones checked into tests/fixtures/, which ctest runs
 * (CMakeLists.txt), and larger ones `amc runtime test` writes and passes on the command line
 * (tests/test_runtime_*.py). The same program runs natively, under qemu-user and bare-metal
 * under qemu-system-arm (files reach it through semihosting).
 *
 *   amc_patch_tests PACK...        run every case of every pack, print one line per suite
 *   amc_patch_tests --bench PACK   time verify+apply of each case (host), print throughput
 *   amc_patch_tests --dump DIR PACK...  also write each crosscheck case's files, as the apply
 *                                  left them, to DIR/case<K>-file<I>.bin and print one
 *                                  `crosscheck_case` line per case
 *
 * Suites (per case flags): crosscheck (apply == new), reject (expected error, storage
 * unchanged), powercut (cut at every operation, clean and torn; resume == new; rollback ==
 * base; a second cut during resume; a cut between the passes; a resume or rollback under
 * another journal geometry), badblob (truncation at every byte, every bit flip), mismatch
 * (the apply pass streams other bytes than the verify pass: storage only ever holds base or
 * result pages, nothing outside the files, and the genuine blob still finishes or rolls back).
 * Output lines are `suite key=value ...`, parsed by the Python tests; exit status 0 = all good.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amc_patch.h"
#include "amc_simflash.h"
#ifdef AMC_HAVE_SODIUM
#include "amc_posix.h"
#endif

#ifndef MAX_FILE_BYTES
#define MAX_FILE_BYTES (96u * 1024u)       /* all files of one case together */
#endif
#ifndef MAX_BLOB_BYTES
#define MAX_BLOB_BYTES (64u * 1024u)
#endif
/* every file rounded up to whole pages (of at most 8 KiB) and the backup pages; more is refused */
#define FLASH_BYTES (2u * MAX_FILE_BYTES + 64u * 1024u)
#ifndef BUCKET_BYTES
#define BUCKET_BYTES 4096u                 /* the largest bucket buffer a case may ask for */
#endif

#define F_POWERCUT 1u
#define F_BADBLOB 2u
#define F_SIG_TRUSTED 4u
#define F_BYTE_WRITABLE 8u
#define F_MISMATCH 16u

typedef struct test_case {
    uint8_t expect_ok, nfiles, flags, chunk_log2;   /* chunk buffer 2^chunk_log2 + link; 0: largest */
    uint32_t page_size, backup_pages, bucket_buf_size;
    int32_t expect_error;
    uint64_t min_version;
    uint32_t size[AMC_CONFIG_MAX_FILES];
    uint8_t *base[AMC_CONFIG_MAX_FILES], *new_[AMC_CONFIG_MAX_FILES];
    uint32_t blob_len;
    uint8_t *blob;
    const uint8_t *trusted_digest, *trusted_sig;   /* what the signer signed */
} test_case_t;

/* AMC_TEST_PSRAM: the large buffers go to the board's PSRAM (baremetal/mps2-an500-psram.ld) */
#ifdef AMC_TEST_PSRAM
#define LARGE_BUFFER __attribute__((section(".psram")))
#else
#define LARGE_BUFFER
#endif

static uint8_t g_files[2 * MAX_FILE_BYTES] LARGE_BUFFER;
static uint8_t g_blob[MAX_BLOB_BYTES] LARGE_BUFFER, g_mutant[MAX_BLOB_BYTES] LARGE_BUFFER;
static uint8_t g_flash[FLASH_BYTES] LARGE_BUFFER, g_snapshot[FLASH_BYTES] LARGE_BUFFER;
static uint8_t g_snapshot_progress[2][AMC_PROGRESS_SIZE];
static uint8_t g_page[8192], g_buckets[BUCKET_BYTES] LARGE_BUFFER;
static uint8_t g_chunk[AMC_CHUNK_MAX + AMC_LINK_SIZE] LARGE_BUFFER;
static uint8_t g_public_key[32];
static uint8_t g_trusted[AMC_TRAILER_SIZE];   /* digest + signature the trusted key made */
static uint32_t g_rng = 0x2545F491u;
static const char *g_dump_dir;                /* --dump DIR */

static uint32_t rng(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

/* ---- fixture pack ------------------------------------------------------------------------ */

static int rd(FILE *fp, void *dst, size_t n) { return fread(dst, 1, n, fp) == n ? 0 : -1; }

static int rd32(FILE *fp, uint32_t *v)
{
    uint8_t b[4];
    if (rd(fp, b, 4)) return -1;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return 0;
}

static int read_case(FILE *fp, test_case_t *c)
{
    uint8_t head[4];
    uint32_t lo, hi, err, i, used = 0;
    memset(c, 0, sizeof *c);
    if (rd(fp, head, 4) || rd32(fp, &c->page_size) || rd32(fp, &c->backup_pages) ||
        rd32(fp, &c->bucket_buf_size) || rd32(fp, &err) || rd32(fp, &lo) || rd32(fp, &hi))
        return -1;
    c->expect_ok = head[0];
    c->nfiles = head[1];
    c->flags = head[2];
    c->chunk_log2 = head[3];
    c->expect_error = (int32_t)err;
    c->min_version = (uint64_t)hi << 32 | lo;
    if (c->nfiles == 0 || c->nfiles > AMC_CONFIG_MAX_FILES || c->page_size > sizeof g_page ||
        c->bucket_buf_size > BUCKET_BYTES)
        return -1;
    for (i = 0; i < c->nfiles; i++) {
        if (rd32(fp, &c->size[i]) || c->size[i] > MAX_FILE_BYTES - used) return -1;
        c->base[i] = g_files + used;
        c->new_[i] = g_files + MAX_FILE_BYTES + used;
        if (rd(fp, c->base[i], c->size[i]) || rd(fp, c->new_[i], c->size[i])) return -1;
        used += c->size[i];
    }
    if (rd32(fp, &c->blob_len) || c->blob_len > MAX_BLOB_BYTES) return -1;
    c->blob = g_blob;
    if (rd(fp, c->blob, c->blob_len) || rd(fp, g_trusted, sizeof g_trusted)) return -1;
    c->trusted_digest = g_trusted;
    c->trusted_sig = g_trusted + 32;
    return 0;
}

typedef struct totals {
    unsigned long cross_cases, cross_failed, reject_cases, reject_failed;
    unsigned long cuts, torn_cuts, nested_cuts, corrupted, rollbacks, rollback_bad;
    unsigned long rolled_back, rollback_refused, rollback_untouched;
    unsigned long truncations, flips, accepted, storage_changed;
    unsigned long between_cuts, geometry_refused, geometry_bad;
    unsigned long mismatches, mismatch_detected, mismatch_unauthentic, mismatch_unrecovered;
    unsigned long install_cases, install_cuts, install_nested, commit_cuts, install_rollback_cuts;
    unsigned long install_bad;
    unsigned long long file_bytes, erases, writes, progress_writes, patched_pages;
} totals_t;

static totals_t T;

/* ---- running a patch --------------------------------------------------------------------- */

#ifndef AMC_HAVE_SODIUM
/* Without libsodium (cross builds), the verifier knows which (digest, signature) pair the
 * trusted key produced, as computed by the Python side: the same yes/no Ed25519 would give. */
static int fixture_verify(void *ctx, const uint8_t digest[32], const uint8_t sig[64])
{
    const test_case_t *c = ctx;
    if (!(c->flags & F_SIG_TRUSTED)) return -1;
    return memcmp(digest, c->trusted_digest, 32) == 0 && memcmp(sig, c->trusted_sig, 64) == 0 ? 0 : -1;
}
#endif

typedef struct rig {
    amc_simflash_t flash;
    amc_storage_t storage;
    amc_config_t cfg;
    uint32_t used;
} rig_t;

static int rig_init(rig_t *r, const test_case_t *c, uint32_t backup_pages)
{
    unsigned i;
    if (amc_simflash_init(&r->flash, g_flash, sizeof g_flash, c->page_size, c->nfiles, c->size,
                          backup_pages) != 0)
        return -1;
    r->flash.byte_writable = (c->flags & F_BYTE_WRITABLE) != 0;
    for (i = 0; i < c->nfiles; i++) amc_simflash_load(&r->flash, i, c->base[i], c->size[i]);
    r->used = r->flash.area_off[c->nfiles] + backup_pages * c->page_size;
    amc_simflash_storage(&r->flash, &r->storage, backup_pages);
    memset(&r->cfg, 0, sizeof r->cfg);
    r->cfg.storage = &r->storage;
#ifdef AMC_HAVE_SODIUM
    r->cfg.verify = amc_verify_ed25519;
    r->cfg.verify_ctx = g_public_key;
#else
    r->cfg.verify = fixture_verify;
    r->cfg.verify_ctx = (void *)c;
#endif
    r->cfg.page_buf = g_page;
    r->cfg.bucket_buf = g_buckets;
    r->cfg.bucket_buf_size = c->bucket_buf_size ? c->bucket_buf_size : BUCKET_BYTES;
    r->cfg.min_version = c->min_version;
    r->cfg.chunk_buf = g_chunk;
    r->cfg.chunk_buf_size = c->chunk_log2 ? (1u << c->chunk_log2) + AMC_LINK_SIZE : sizeof g_chunk;
    return 0;
}

static int stream(amc_patch_t *p, const amc_config_t *cfg, int pass, const uint8_t *blob,
                  uint32_t len)
{
    uint32_t off = 0;
    int rc = amc_patch_begin(p, cfg, pass);
    while (rc == 0 && off < len) {
        uint32_t n = 1 + rng() % 97u;
        if (n > len - off) n = len - off;
        rc = amc_patch_process(p, blob + off, n);
        off += n;
    }
    /* finish is always called */
    {
        int frc = amc_patch_finish(p);
        return rc ? rc : frc;
    }
}

/* verify, then apply (or roll back) */
static int run(rig_t *r, int pass, const uint8_t *blob, uint32_t len)
{
    amc_patch_t p;
    int rc = stream(&p, &r->cfg, AMC_PASS_VERIFY, blob, len);
    if (rc) return rc;
    return stream(&p, &r->cfg, pass, blob, len);
}

static int files_equal(const rig_t *r, const test_case_t *c, int want_new)
{
    unsigned i;
    for (i = 0; i < c->nfiles; i++)
        if (memcmp(r->flash.mem + r->flash.area_off[i], want_new ? c->new_[i] : c->base[i],
                   c->size[i]) != 0)
            return 0;
    return 1;
}

static void snapshot(const rig_t *r)
{
    memcpy(g_snapshot, r->flash.mem, r->used);
    memcpy(g_snapshot_progress, r->flash.progress, sizeof g_snapshot_progress);
}

static int unchanged(const rig_t *r)
{
    return memcmp(g_snapshot, r->flash.mem, r->used) == 0 &&
           memcmp(g_snapshot_progress, r->flash.progress, sizeof g_snapshot_progress) == 0 &&
           r->flash.erases == 0 && r->flash.writes == 0 && r->flash.progress_writes == 0;
}

/* The files of crosscheck case `index` as the apply left them, to DIR/case<K>-file<I>.bin
 * (through semihosting on bare metal). 0 = written. */
static int dump_files(const rig_t *r, const test_case_t *c, unsigned long index)
{
    char path[512];
    unsigned i;
    for (i = 0; i < c->nfiles; i++) {
        FILE *fp;
        size_t written = 0;
        snprintf(path, sizeof path, "%s/case%lu-file%u.bin", g_dump_dir, index, i);
        fp = fopen(path, "wb");
        if (fp) {
            written = fwrite(r->flash.mem + r->flash.area_off[i], 1, c->size[i], fp);
            if (fclose(fp) != 0) written = 0;
        }
        if (written != c->size[i]) {
            printf("FAIL cannot write %s\n", path);
            return -1;
        }
    }
    return 0;
}

/* ---- suites ------------------------------------------------------------------------------ */


static void crosscheck(const test_case_t *c)
{
    rig_t r;
    int rc, equal;
    clock_t t0;
    T.cross_cases++;
    if (rig_init(&r, c, c->backup_pages) != 0) {
        T.cross_failed++;
        return;
    }
    t0 = clock();
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    equal = rc == 0 && files_equal(&r, c, 1);
    if (g_dump_dir) {
        printf("crosscheck_case index=%lu rc=%d files_equal=%d seconds=%.2f\n", T.cross_cases - 1, rc,
               equal, (double)(clock() - t0) / CLOCKS_PER_SEC);
        if (rc == 0 && dump_files(&r, c, T.cross_cases - 1) != 0) equal = 0;
    }
    if (!equal) {
        T.cross_failed++;
        printf("FAIL crosscheck case rc=%d (%s)\n", rc, amc_strerror(rc));
        return;
    }
    /* the same blob again is a replay, also once the journal is erased (the counter holds) */
    {
        amc_patch_t p;
        int wiped;
        for (wiped = 0; wiped <= 1; wiped++) {
            if (wiped) memset(r.flash.progress, 0xFF, sizeof r.flash.progress);
            r.flash.erases = r.flash.writes = r.flash.progress_writes = 0;
            snapshot(&r);
            rc = stream(&p, &r.cfg, AMC_PASS_VERIFY, c->blob, c->blob_len);
            if (rc != -AMC_E_VERSION || !unchanged(&r)) {
                T.cross_failed++;
                printf("FAIL replay accepted (journal %s) rc=%d\n", wiped ? "erased" : "kept", rc);
            }
        }
    }
}

static void reject(const test_case_t *c)
{
    rig_t r;
    int rc;
    T.reject_cases++;
    if (rig_init(&r, c, c->backup_pages) != 0) {
        T.reject_failed++;
        return;
    }
    snapshot(&r);
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    if (rc == 0 || (c->expect_error && rc != c->expect_error) || !unchanged(&r)) {
        T.reject_failed++;
        printf("FAIL reject: rc=%d (%s) expected %d (%s) unchanged=%d\n", rc, amc_strerror(rc),
               (int)c->expect_error, amc_strerror(c->expect_error), unchanged(&r));
    }
}

/* Cut power after `cut` operations (tearing the next one if `torn`); then reboot and finish
 * (or roll back). `nested`: cut once more during the first resume. 1 = outcome exact. */
static int cut_and_recover(const test_case_t *c, uint32_t backup_pages, uint32_t cut, int torn,
                           int rollback, uint32_t nested)
{
    rig_t r;
    int rc;
    if (rig_init(&r, c, backup_pages) != 0) return 0;
    r.flash.cut_armed = 1;
    r.flash.cut_after = cut;
    r.flash.torn = torn;
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    amc_simflash_power_on(&r.flash);
    if (rc == 0) return files_equal(&r, c, 1);     /* the cut came after the last operation */
    if (nested) {
        r.flash.ops = 0;
        r.flash.cut_armed = 1;
        r.flash.cut_after = nested;
        r.flash.torn = 1;
        rc = run(&r, rollback ? AMC_PASS_ROLLBACK : AMC_PASS_APPLY, c->blob, c->blob_len);
        amc_simflash_power_on(&r.flash);
        if (rc == 0) return files_equal(&r, c, !rollback);   /* the second cut came too late */
    }
    if (rollback) {
        amc_progress_t pr;
        if (getenv("AMC_TEST_DEBUG") && amc_patch_status(&r.cfg, &pr) == 0)
            printf("debug: page %lu bp %lu flags %u cut %lu ops %lu state %u done %lu backup %u\n", (unsigned long)c->page_size, (unsigned long)backup_pages, c->flags, (unsigned long)cut,
                   (unsigned long)r.flash.ops, pr.state, (unsigned long)pr.done_pages, pr.backup_valid);
        rc = run(&r, AMC_PASS_ROLLBACK, c->blob, c->blob_len);
        if (rc == -AMC_E_STATE) {           /* cut before the first write: base untouched */
            if (amc_patch_status(&r.cfg, &pr) != 0 || pr.state == AMC_STATE_APPLYING) return 0;
            T.rollback_untouched++;
            return files_equal(&r, c, 0);
        }
        if (rc == -AMC_E_NOROLLBACK) {      /* not enough backup pages: resume must still work */
            T.rollback_refused++;
            rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
            if (rc != 0) printf("FAIL resume after refused rollback rc=%d (%s)\n", rc, amc_strerror(rc));
            return rc == 0 && files_equal(&r, c, 1);
        }
        if (rc != 0) printf("FAIL rollback rc=%d (%s)\n", rc, amc_strerror(rc));
        T.rolled_back += rc == 0;
        return rc == 0 && files_equal(&r, c, 0);
    }
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    if (rc != 0) printf("FAIL resume after cut %lu torn=%d: rc=%d (%s)\n", (unsigned long)cut,
                        torn, rc, amc_strerror(rc));
    return rc == 0 && files_equal(&r, c, 1);
}

/* Cut power after `cut` operations, then resume (and roll back) under another page size and
 * backup area than the journal was written with: refused before any write; then the right
 * geometry finishes. 1 = held. */
static int wrong_geometry(const test_case_t *c, uint32_t cut)
{
    rig_t r;
    amc_progress_t pr;
    int rc, k;
    if (rig_init(&r, c, c->backup_pages) != 0) return 0;
    r.flash.cut_armed = 1;
    r.flash.cut_after = cut;
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    amc_simflash_power_on(&r.flash);
    if (rc == 0 || amc_patch_status(&r.cfg, &pr) != 0 || pr.state != AMC_STATE_APPLYING) return 1;
    for (k = 0; k < 2; k++) {
        amc_storage_t saved = r.storage;
        if (k == 0) r.storage.page_size *= 2;
        else r.storage.backup_pages += 1;
        r.flash.erases = r.flash.writes = r.flash.progress_writes = 0;
        snapshot(&r);
        rc = run(&r, k ? AMC_PASS_ROLLBACK : AMC_PASS_APPLY, c->blob, c->blob_len);
        r.storage = saved;
        if (rc != -AMC_E_GEOMETRY || !unchanged(&r)) {
            printf("FAIL %s under another geometry after cut %lu: rc=%d (%s)\n", k ? "rollback" : "resume",
                   (unsigned long)cut, rc, amc_strerror(rc));
            return 0;
        }
        T.geometry_refused++;
    }
    return run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) == 0 && files_equal(&r, c, 1);
}

/* Power lost after the verify pass: the next boot's apply pass needs a verify pass of its own
 * (a fresh state struct is refused), and a full run then finishes. 1 = held. */
static int cut_between_passes(const test_case_t *c)
{
    rig_t r;
    amc_patch_t p, rebooted;
    if (rig_init(&r, c, c->backup_pages) != 0) return 0;
    snapshot(&r);
    if (stream(&p, &r.cfg, AMC_PASS_VERIFY, c->blob, c->blob_len) != 0) return 0;
    memset(&rebooted, 0, sizeof rebooted);
    if (stream(&rebooted, &r.cfg, AMC_PASS_APPLY, c->blob, c->blob_len) != -AMC_E_ARG || !unchanged(&r))
        return 0;
    /* a pass whose begin() failed leaves nothing verified: nothing to roll back, then no apply
     * without a verify pass of its own */
    if (stream(&p, &r.cfg, AMC_PASS_VERIFY, c->blob, c->blob_len) != 0 ||
        amc_patch_begin(&p, &r.cfg, AMC_PASS_ROLLBACK) != -AMC_E_STATE ||
        stream(&p, &r.cfg, AMC_PASS_APPLY, c->blob, c->blob_len) != -AMC_E_ARG || !unchanged(&r))
        return 0;
    return run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) == 0 && files_equal(&r, c, 1);
}

static void powercut(const test_case_t *c)
{
    rig_t r;
    uint32_t ops, cut, pages = 0, bp;
    unsigned i;
    if (rig_init(&r, c, c->backup_pages) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len)) {
        T.corrupted++;
        return;
    }
    ops = r.flash.ops;
    for (i = 0; i < c->nfiles; i++) pages += (c->size[i] + c->page_size - 1) / c->page_size;
    T.between_cuts++;
    if (!cut_between_passes(c)) {
        T.corrupted++;
        printf("FAIL cut between the passes\n");
    }
    for (cut = 0; cut < ops; cut++) {   /* operation cut+1 fails */
        if (cut % 3u == 1u && !wrong_geometry(c, cut)) T.geometry_bad++;
        int torn;
        for (torn = 0; torn <= 1; torn++) {
            T.cuts++;
            T.torn_cuts += (unsigned long)torn;
            if (!cut_and_recover(c, c->backup_pages, cut, torn, 0, 0)) {
                T.corrupted++;
                printf("FAIL powercut at op %lu/%lu torn=%d\n", (unsigned long)cut,
                       (unsigned long)ops, torn);
            }
        }
        /* a second cut during the resume */
        T.nested_cuts++;
        if (!cut_and_recover(c, c->backup_pages, cut, 1, 0, rng() % ops)) {
            T.corrupted++;
            printf("FAIL nested powercut at op %lu\n", (unsigned long)cut);
        }
        /* rollback with a backup area larger than the pages touched, and with the case's own */
        for (bp = 0; bp < 2; bp++) {
            T.rollbacks++;
            if (!cut_and_recover(c, bp ? c->backup_pages : pages + 1, cut, (int)(cut & 1u), 1,
                                 (cut % 3u) == 0 ? rng() % ops : 0)) {
                T.rollback_bad++;
                printf("FAIL rollback after cut %lu (backup pages %lu)\n", (unsigned long)cut,
                       (unsigned long)(bp ? c->backup_pages : pages + 1));
            }
        }
    }
}

/* ---- two-phase install: install, then commit or roll back ---------------------------------- */

static uint32_t touched_pages(const test_case_t *c)
{
    uint32_t pages = 0;
    unsigned i;
    for (i = 0; i < c->nfiles; i++) pages += (c->size[i] + c->page_size - 1) / c->page_size;
    return pages;
}

static uint64_t blob_version(const uint8_t *blob)
{
    uint64_t v = 0;
    unsigned k;
    for (k = 0; k < 8; k++) v |= (uint64_t)blob[8 + k] << (8 * k);
    return v;
}

/* An install with a backup slot for every page of the files and one more. */
static int install_rig(rig_t *r, const test_case_t *c)
{
    if (rig_init(r, c, touched_pages(c) + 1) != 0) return -1;
    r->cfg.install_only = 1;
    return 0;
}

/* The journal says INSTALLED for this blob; the files are the new ones, the counter is still
 * `counter`, the committed version `installed`. */
static int is_installed(rig_t *r, const test_case_t *c, uint64_t counter, uint64_t installed)
{
    amc_progress_t pr;
    if (amc_patch_status(&r->cfg, &pr) != 0 || pr.state != AMC_STATE_INSTALLED || !pr.install ||
        pr.version != blob_version(c->blob) || pr.installed_version != installed)
        return 0;
    return files_equal(r, c, 1) && r->flash.counter == counter;
}

/* Another blob of the same files, one version newer: its root digest fixed up so that the
 * verify pass gets as far as comparing it with the journal's (its signature is not valid). */
static void other_blob(const test_case_t *c)
{
    amc_sha256_t sha;
    uint32_t csize, len, first;
    uint64_t v = blob_version(c->blob) + 1;
    unsigned k;
    memcpy(g_mutant, c->blob, c->blob_len);
    for (k = 0; k < 8; k++) g_mutant[8 + k] = (uint8_t)(v >> (8 * k));
    csize = (uint32_t)g_mutant[28] | (uint32_t)g_mutant[29] << 8 | (uint32_t)g_mutant[30] << 16 |
            (uint32_t)g_mutant[31] << 24;
    len = (uint32_t)g_mutant[16] | (uint32_t)g_mutant[17] << 8 | (uint32_t)g_mutant[18] << 16 |
          (uint32_t)g_mutant[19] << 24;
    first = len > csize ? csize + AMC_LINK_SIZE : len;
    amc_sha256_init(&sha);
    amc_sha256_update(&sha, g_mutant, first);
    amc_sha256_final(&sha, g_mutant + c->blob_len - AMC_TRAILER_SIZE);
}

/* Install with a cut after `cut` operations (torn or not, and `nested`: a second cut during the
 * first resume), then reboot and resume: INSTALLED with the new files, counter untouched. The
 * resume is a plain apply when the journal already says install (`plain_resume`), else the
 * install again (a cut before the first journal write leaves nothing to resume). 1 = held. */
static int install_cut(const test_case_t *c, uint32_t cut, int torn, uint32_t nested, int plain_resume)
{
    rig_t r;
    amc_progress_t pr;
    int rc, round;
    if (install_rig(&r, c) != 0) return 0;
    r.flash.cut_armed = 1;
    r.flash.cut_after = cut;
    r.flash.torn = torn;
    rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
    amc_simflash_power_on(&r.flash);
    for (round = 0; rc != 0 && round < 2; round++) {
        if (amc_patch_status(&r.cfg, &pr) != 0) return 0;
        if (pr.state == AMC_STATE_APPLYING) {
            /* the journal records the install: a commit now is refused, a plain resume ends
             * INSTALLED as the install would */
            amc_patch_t p;
            if (amc_patch_commit(&p, &r.cfg) != -AMC_E_BUSY || !pr.install) {
                printf("FAIL install cut %lu: journal state %u install=%u\n", (unsigned long)cut,
                       pr.state, pr.install);
                return 0;
            }
            r.cfg.install_only = (uint8_t)!plain_resume;
        } else {
            r.cfg.install_only = 1;
        }
        if (round == 0 && nested) {
            r.flash.ops = 0;
            r.flash.cut_armed = 1;
            r.flash.cut_after = nested;
            r.flash.torn = 1;
        }
        rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
        amc_simflash_power_on(&r.flash);
    }
    if (rc != 0 || !is_installed(&r, c, 0, 0)) {
        printf("FAIL resume of an install cut at %lu torn=%d: rc=%d (%s)\n", (unsigned long)cut,
               torn, rc, amc_strerror(rc));
        return 0;
    }
    return 1;
}

/* Install, then commit with a cut after `cut` operations; commit again until it returns 0:
 * DONE, counter and installed version equal the blob's; one more commit writes nothing, and
 * the blob is then a replay. 1 = held. */
static int commit_cut(const test_case_t *c, uint32_t cut, int torn)
{
    rig_t r;
    amc_patch_t p;
    amc_progress_t pr;
    uint64_t v = blob_version(c->blob);
    int rc;
    if (install_rig(&r, c) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0) return 0;
    r.flash.ops = 0;
    r.flash.cut_armed = 1;
    r.flash.cut_after = cut;
    r.flash.torn = torn;
    rc = amc_patch_commit(&p, &r.cfg);
    amc_simflash_power_on(&r.flash);
    if (rc != 0 && (rc = amc_patch_commit(&p, &r.cfg)) != 0) {
        printf("FAIL commit after a cut at %lu torn=%d: rc=%d (%s)\n", (unsigned long)cut, torn, rc,
               amc_strerror(rc));
        return 0;
    }
    if (amc_patch_status(&r.cfg, &pr) != 0 || pr.state != AMC_STATE_DONE || pr.installed_version != v ||
        r.flash.counter != v || !files_equal(&r, c, 1))
        return 0;
    r.flash.erases = r.flash.writes = r.flash.progress_writes = r.flash.counter_writes = 0;
    snapshot(&r);
    if (amc_patch_commit(&p, &r.cfg) != 0 || !unchanged(&r) || r.flash.counter_writes) return 0;
    r.cfg.install_only = 0;
    return stream(&p, &r.cfg, AMC_PASS_VERIFY, c->blob, c->blob_len) == -AMC_E_VERSION && unchanged(&r);
}

/* Install, then roll back with a cut after `cut` operations (and `nested`: a second one during
 * the next rollback), and roll back until it returns 0: the base files, IDLE, the counter and
 * the committed version untouched. 1 = held. */
static int rollback_installed_cut(const test_case_t *c, uint32_t cut, int torn, uint32_t nested)
{
    rig_t r;
    amc_progress_t pr;
    int rc, round;
    if (install_rig(&r, c) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0) return 0;
    r.flash.ops = 0;
    r.flash.cut_armed = 1;
    r.flash.cut_after = cut;
    r.flash.torn = torn;
    rc = run(&r, AMC_PASS_ROLLBACK, c->blob, c->blob_len);
    amc_simflash_power_on(&r.flash);
    for (round = 0; rc != 0 && round < 2; round++) {
        if (round == 0 && nested) {
            r.flash.ops = 0;
            r.flash.cut_armed = 1;
            r.flash.cut_after = nested;
            r.flash.torn = 1;
        }
        rc = run(&r, AMC_PASS_ROLLBACK, c->blob, c->blob_len);
        amc_simflash_power_on(&r.flash);
    }
    if (rc != 0 || amc_patch_status(&r.cfg, &pr) != 0 || pr.state != AMC_STATE_IDLE ||
        pr.installed_version != 0 || r.flash.counter != 0 || !files_equal(&r, c, 0)) {
        printf("FAIL rollback of an install cut at %lu torn=%d: rc=%d (%s)\n", (unsigned long)cut,
               torn, rc, amc_strerror(rc));
        return 0;
    }
    return 1;
}

/* What an install refuses, each before any write: a backup area without a slot per touched
 * page and one more; a commit with nothing installed; another blob while one is installed
 * (plain apply and install alike); a rollback under another geometry. And what it takes: the
 * installed blob again (it stays INSTALLED). 1 = held. */
static int install_refusals(const test_case_t *c, uint32_t touched)
{
    rig_t r;
    amc_patch_t p;
    amc_storage_t saved;
    int k, rc;
    for (k = touched ? 0 : 1; k < 2; k++) {     /* one slot short, then just enough */
        if (rig_init(&r, c, touched + (uint32_t)k) != 0) return 0;
        r.cfg.install_only = 1;
        snapshot(&r);
        rc = run(&r, AMC_PASS_APPLY, c->blob, c->blob_len);
        if (k ? rc != 0 || !is_installed(&r, c, 0, 0) : rc != -AMC_E_NOBACKUP || !unchanged(&r)) {
            printf("FAIL install with %lu backup pages for %lu touched pages: rc=%d (%s)\n",
                   (unsigned long)(touched + (uint32_t)k), (unsigned long)touched, rc, amc_strerror(rc));
            return 0;
        }
    }
    if (install_rig(&r, c) != 0) return 0;
    snapshot(&r);
    if ((rc = amc_patch_commit(&p, &r.cfg)) != -AMC_E_NOTINSTALLED || !unchanged(&r)) {
        printf("FAIL commit with nothing installed: rc=%d (%s)\n", rc, amc_strerror(rc));
        return 0;
    }
    if (run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0 || !is_installed(&r, c, 0, 0)) return 0;
    other_blob(c);
    for (k = 0; k < 2; k++) {
        r.cfg.install_only = (uint8_t)k;
        r.flash.erases = r.flash.writes = r.flash.progress_writes = 0;
        snapshot(&r);
        if ((rc = run(&r, AMC_PASS_APPLY, g_mutant, c->blob_len)) != -AMC_E_BUSY || !unchanged(&r)) {
            printf("FAIL %s of another blob while installed: rc=%d (%s)\n", k ? "install" : "apply", rc,
                   amc_strerror(rc));
            return 0;
        }
    }
    saved = r.storage;
    r.storage.page_size *= 2;
    rc = run(&r, AMC_PASS_ROLLBACK, c->blob, c->blob_len);
    r.storage = saved;
    if (rc != -AMC_E_GEOMETRY || !unchanged(&r)) {
        printf("FAIL rollback of an install under another geometry: rc=%d (%s)\n", rc, amc_strerror(rc));
        return 0;
    }
    r.cfg.install_only = 0;
    return run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) == 0 && is_installed(&r, c, 0, 0);
}

/* Operations of a clean install, commit and rollback of an install; the pages it touched. */
static int install_ops(const test_case_t *c, uint32_t *install, uint32_t *commit, uint32_t *rollback,
                       uint32_t *touched)
{
    rig_t r;
    amc_patch_t p;
    amc_progress_t pr;
    if (install_rig(&r, c) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0 ||
        amc_patch_status(&r.cfg, &pr) != 0)
        return -1;
    *install = r.flash.ops;
    *touched = pr.done_pages;
    r.flash.ops = 0;
    if (amc_patch_commit(&p, &r.cfg) != 0) return -1;
    *commit = r.flash.ops;
    if (install_rig(&r, c) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0) return -1;
    r.flash.ops = 0;
    if (run(&r, AMC_PASS_ROLLBACK, c->blob, c->blob_len) != 0) return -1;
    *rollback = r.flash.ops;
    return 0;
}

static void install(const test_case_t *c)
{
    uint32_t ops, commit_ops, rollback_ops, touched, cut;
    int torn;
    T.install_cases++;
    if (install_ops(c, &ops, &commit_ops, &rollback_ops, &touched) != 0 || !install_refusals(c, touched)) {
        T.install_bad++;
        printf("FAIL install: a clean install, commit or rollback\n");
        return;
    }
    for (cut = 0; cut < ops; cut++) {
        for (torn = 0; torn <= 1; torn++) {
            T.install_cuts++;
            T.install_bad += !install_cut(c, cut, torn, 0, torn);
        }
        T.install_nested++;
        T.install_bad += !install_cut(c, cut, 1, rng() % ops, (int)(cut & 1u));
    }
    for (cut = 0; cut <= commit_ops; cut++)
        for (torn = 0; torn <= 1; torn++) {
            T.commit_cuts++;
            T.install_bad += !commit_cut(c, cut, torn);
        }
    for (cut = 0; cut < rollback_ops; cut++)
        for (torn = 0; torn <= 1; torn++) {
            T.install_rollback_cuts++;
            T.install_bad += !rollback_installed_cut(c, cut, torn, torn ? rng() % rollback_ops : 0);
        }
}

/* Every page of every file holds its base or its result content, and nothing was written
 * outside a file or the backup area. */
static int pages_authentic(const rig_t *r, const test_case_t *c)
{
    unsigned i;
    uint32_t off;
    if (r->flash.outside) return 0;
    for (i = 0; i < c->nfiles; i++)
        for (off = 0; off < c->size[i]; off += c->page_size) {
            uint32_t n = c->size[i] - off < c->page_size ? c->size[i] - off : c->page_size;
            const uint8_t *page = r->flash.mem + r->flash.area_off[i] + off;
            if (memcmp(page, c->base[i] + off, n) != 0 && memcmp(page, c->new_[i] + off, n) != 0)
                return 0;
        }
    return 1;
}

/* Verify the genuine blob, then apply a stream with one byte changed at `at`: nothing but
 * authenticated content may reach storage; afterwards the genuine blob resumes to the result
 * or (`rollback`, with a backup area for every page) restores the base. 1 = all held. */
static int mismatched(const test_case_t *c, uint32_t at, uint8_t flip, int rollback)
{
    rig_t r;
    amc_patch_t p;
    uint32_t pages = 0, i;
    int rc;
    for (i = 0; i < c->nfiles; i++) pages += (c->size[i] + c->page_size - 1) / c->page_size;
    if (rig_init(&r, c, rollback ? pages + 1 : c->backup_pages) != 0) return 0;
    memcpy(g_mutant, c->blob, c->blob_len);
    g_mutant[at] ^= flip;
    if (stream(&p, &r.cfg, AMC_PASS_VERIFY, c->blob, c->blob_len) != 0) return 0;
    rc = stream(&p, &r.cfg, AMC_PASS_APPLY, g_mutant, c->blob_len);
    if (rc != 0) T.mismatch_detected++;
    if (!pages_authentic(&r, c)) {
        T.mismatch_unauthentic++;
        printf("FAIL mismatch at byte %lu: storage holds bytes the verify pass did not see (rc=%d)\n",
               (unsigned long)at, rc);
        return 0;
    }
    if (rc == 0) return files_equal(&r, c, 1);    /* the byte was one the apply pass ignores */
    rc = run(&r, rollback ? AMC_PASS_ROLLBACK : AMC_PASS_APPLY, c->blob, c->blob_len);
    if (rc == -AMC_E_STATE && rollback) rc = 0;    /* detected before the first write */
    if (rc != 0 || !files_equal(&r, c, !rollback)) {
        T.mismatch_unrecovered++;
        printf("FAIL mismatch at byte %lu: the genuine blob %s gave rc=%d (%s)\n", (unsigned long)at,
               rollback ? "rollback" : "resume", rc, amc_strerror(rc));
        return 0;
    }
    return 1;
}

static void mismatch(const test_case_t *c)
{
    uint32_t at;
    for (at = 0; at < c->blob_len; at++) {
        T.mismatches++;
        mismatched(c, at, (uint8_t)(1u + rng() % 255u), (int)(at & 1u));
    }
}

static void badblob(const test_case_t *c)
{
    rig_t r;
    uint32_t n, bit;
    int rc;
    memcpy(g_mutant, c->blob, c->blob_len);
    if (rig_init(&r, c, c->backup_pages) != 0) return;
    snapshot(&r);
    for (n = 0; n < c->blob_len; n++) {               /* truncated at every byte */
        T.truncations++;
        rc = run(&r, AMC_PASS_APPLY, g_mutant, n);
        if (rc == 0) T.accepted++;
        if (!unchanged(&r)) {
            T.storage_changed++;
            rig_init(&r, c, c->backup_pages);
        }
    }
    for (bit = 0; bit < c->blob_len * 8u; bit++) {    /* every single-bit flip */
        T.flips++;
        g_mutant[bit >> 3] ^= (uint8_t)(1u << (bit & 7));
        rc = run(&r, AMC_PASS_APPLY, g_mutant, c->blob_len);
        g_mutant[bit >> 3] ^= (uint8_t)(1u << (bit & 7));
        if (rc == 0) {
            T.accepted++;
            printf("FAIL bit flip %lu accepted\n", (unsigned long)bit);
        }
        if (!unchanged(&r)) {
            T.storage_changed++;
            rig_init(&r, c, c->backup_pages);
        }
    }
}

static void account(const test_case_t *c)
{
    rig_t r;
    unsigned i;
    if (rig_init(&r, c, c->backup_pages) != 0 || run(&r, AMC_PASS_APPLY, c->blob, c->blob_len))
        return;
    for (i = 0; i < c->nfiles; i++) T.file_bytes += c->size[i];
    T.erases += r.flash.erases;
    T.writes += r.flash.writes;
    T.progress_writes += r.flash.progress_writes;
}

static int bench(const test_case_t *c)
{
    rig_t r;
    unsigned i, reps = 0;
    unsigned long long bytes = 0, patched = 0;
    clock_t t0 = clock(), t;
    double secs;
    do {
        if (rig_init(&r, c, c->backup_pages) != 0 ||
            run(&r, AMC_PASS_APPLY, c->blob, c->blob_len) != 0 || !files_equal(&r, c, 1))
            return 1;
        for (i = 0; i < c->nfiles; i++) bytes += c->size[i];
        reps++;
        t = clock();
    } while ((t - t0) < CLOCKS_PER_SEC / 2 || reps < 3);
    secs = (double)(t - t0) / CLOCKS_PER_SEC;
    for (i = 0; i < c->nfiles; i++) {
        uint32_t k;
        for (k = 0; k < c->size[i]; k++) patched += c->base[i][k] != c->new_[i][k];
    }
    printf("bench file_bytes=%llu reps=%u seconds=%.4f bytes_per_second=%.0f erases=%lu "
           "writes=%lu progress_writes=%lu bytes_written=%llu changed_bytes=%llu blob_bytes=%lu\n",
           bytes / reps, reps, secs, (double)bytes / secs, (unsigned long)r.flash.erases,
           (unsigned long)r.flash.writes, (unsigned long)r.flash.progress_writes,
           (unsigned long long)r.flash.bytes_written, patched, (unsigned long)c->blob_len);
    return 0;
}

static int run_pack(const char *path, int bench_mode)
{
    FILE *fp = fopen(path, "rb");
    uint8_t magic[4];
    uint32_t version, count, i;
    test_case_t c;
    int bad = 0;
    if (!fp) {
        printf("FAIL cannot open %s\n", path);
        return 1;
    }
    if (rd(fp, magic, 4) || memcmp(magic, "AMCT", 4) || rd32(fp, &version) || version != 1 ||
        rd32(fp, &count) || rd(fp, g_public_key, 32)) {
        printf("FAIL bad pack %s\n", path);
        fclose(fp);
        return 1;
    }
    for (i = 0; i < count && !bad; i++) {
        if (read_case(fp, &c) != 0) {
            printf("FAIL bad case %lu in %s\n", (unsigned long)i, path);
            bad = 1;
            break;
        }
        if (bench_mode) {
            bad |= bench(&c);
            continue;
        }
        if (c.expect_ok) {
            crosscheck(&c);
            account(&c);
        } else {
            reject(&c);
        }
        if (c.flags & F_POWERCUT) {
            powercut(&c);
            install(&c);
        }
        if (c.flags & F_BADBLOB) badblob(&c);
        if (c.flags & F_MISMATCH) mismatch(&c);
    }
    fclose(fp);
    return bad;
}

int main(int argc, char **argv)
{
    int i, bad = 0, bench_mode = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hash-vectors") == 0) {   /* shared with the Python tests */
            static const uint32_t seeds[] = {0u, 1u, 0xdeadbeefu, 0xffffffffu};
            static const uint32_t indices[] = {0u, 1u, 2u, 1000u, 0x7fffffffu, 0xffffffffu};
            unsigned a, b;
            for (a = 0; a < 4; a++)
                for (b = 0; b < 6; b++)
                    printf("hash index=%lu seed=%lu value=%lu\n", (unsigned long)indices[b],
                           (unsigned long)seeds[a], (unsigned long)amc_hash_index(indices[b], seeds[a]));
            return 0;
        }
        if (strcmp(argv[i], "--bench") == 0) {
            bench_mode = 1;
            continue;
        }
        if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
            g_dump_dir = argv[++i];
            continue;
        }
        bad |= run_pack(argv[i], bench_mode);
    }
    if (argc < 2) {
        printf("usage: amc_patch_tests [--bench] [--dump DIR] PACK...\n");
        return 2;
    }
    if (!bench_mode) {
        printf("crosscheck cases=%lu failed=%lu\n", T.cross_cases, T.cross_failed);
        printf("reject cases=%lu failed=%lu\n", T.reject_cases, T.reject_failed);
        printf("powercut cuts=%lu torn=%lu nested=%lu corrupted=%lu\n", T.cuts, T.torn_cuts,
               T.nested_cuts, T.corrupted);
        printf("rollback tries=%lu to_base=%lu before_first_write=%lu refused_then_resumed=%lu "
               "bad=%lu\n", T.rollbacks, T.rolled_back, T.rollback_untouched, T.rollback_refused,
               T.rollback_bad);
        printf("badblob truncations=%lu flips=%lu accepted=%lu storage_changed=%lu\n",
               T.truncations, T.flips, T.accepted, T.storage_changed);
        printf("geometry between_passes=%lu refused=%lu bad=%lu\n", T.between_cuts,
               T.geometry_refused, T.geometry_bad);
        printf("mismatch streams=%lu detected=%lu unauthentic=%lu unrecovered=%lu\n", T.mismatches,
               T.mismatch_detected, T.mismatch_unauthentic, T.mismatch_unrecovered);
        printf("install cases=%lu cuts=%lu nested=%lu commit_cuts=%lu rollback_cuts=%lu bad=%lu\n",
               T.install_cases, T.install_cuts, T.install_nested, T.commit_cuts,
               T.install_rollback_cuts, T.install_bad);
#ifdef AMC_HAVE_SODIUM
        printf("signature check=ed25519-libsodium\n");
#else
        printf("signature check=trusted-fixture\n");
#endif
        printf("wear file_bytes=%llu erases=%llu writes=%llu progress_writes=%llu\n", T.file_bytes,
               T.erases, T.writes, T.progress_writes);
        bad |= T.cross_failed || T.reject_failed || T.corrupted || T.rollback_bad || T.accepted ||
               T.storage_changed || T.geometry_bad || T.mismatch_unauthentic || T.mismatch_unrecovered ||
               T.install_bad;
    }
    printf("RESULT %s\n", bad ? "fail" : "ok");
    return bad ? 1 : 0;
}
