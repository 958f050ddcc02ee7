/*
 * libFuzzer target: the apply pass fed another stream than the verify pass, with the core's hash
 * checks on (built without FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION).
 *
 * The genuine cases (valid blobs with their base and result files) come from the file named by
 * AMC_FUZZ_GENUINE, written by runtime/fuzz.py (write_genuine_cases):
 *   "AMCG", u32 case count, then per case: u32 file count, u32 blob length, u32 size per file,
 *   the base files, the result files, the blob (all little-endian, back to back).
 * Input: byte 0 picks the case, byte 1 the options (below); the rest is what the APPLY pass reads.
 * Oracle, on a simulated flash: verify(genuine) succeeds; after apply(input) every page of every
 * file holds its base or its result content and nothing was written outside an area (apply
 * returning 0: the files are the result); then the genuine blob still finishes: verify+apply
 * gives the result exactly or, with the rollback option, verify+rollback gives the base.
 * Any violation aborts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amc_patch.h"
#include "amc_simflash.h"

#define MAX_CASES 16u
#define MAX_FILE_BYTES 4096u
#define MAX_PAGE 1024u

/* options byte */
#define OPT_PAGE(o) (64u << (((o) & 7u) % 5u))  /* page size 64..1024 */
#define OPT_BYTE_WRITABLE 0x08u                /* storage without erase, writes overwrite */
#define OPT_ROLLBACK 0x10u                     /* afterwards roll back instead of resuming */
#define OPT_ONE_BACKUP 0x20u                   /* resume: one backup page (else three) */
#define OPT_CALL(o) (call_sizes[(o) >> 6])     /* bytes per amc_patch_process() call */

typedef struct genuine_case {
    uint32_t nfiles, blob_len;
    uint32_t size[AMC_CONFIG_MAX_FILES];
    const uint8_t *base[AMC_CONFIG_MAX_FILES], *result[AMC_CONFIG_MAX_FILES], *blob;
} genuine_case_t;

static const size_t call_sizes[4] = {1, 13, 256, (size_t)-1};   /* the last: all at once */
static genuine_case_t cases[MAX_CASES];
static uint32_t ncases;
static uint8_t flash[64 * 1024];
static uint8_t page_buf[MAX_PAGE], buckets[512], chunk_buf[1024 + AMC_LINK_SIZE];

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_mismatch: %s\n", what);
    abort();
}

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The next `len` bytes of the genuine-case file `d` of `n` bytes, from *at on. */
static const uint8_t *take(const uint8_t *d, size_t n, size_t *at, size_t len)
{
    const uint8_t *out = d + *at;
    if (n - *at < len) fail("genuine-case file truncated");
    *at += len;
    return out;
}

/* Parse the genuine-case file `d` (kept for the whole run: the cases point into it). */
static void parse_cases(const uint8_t *d, size_t n)
{
    size_t at = 0;
    uint32_t c, i;
    if (memcmp(take(d, n, &at, 4), "AMCG", 4) != 0) fail("not a genuine-case file");
    ncases = le32(take(d, n, &at, 4));
    if (ncases == 0 || ncases > MAX_CASES) fail("genuine-case count out of range");
    for (c = 0; c < ncases; c++) {
        genuine_case_t *g = &cases[c];
        g->nfiles = le32(take(d, n, &at, 4));
        g->blob_len = le32(take(d, n, &at, 4));
        if (g->nfiles == 0 || g->nfiles > AMC_CONFIG_MAX_FILES) fail("genuine case: file count");
        for (i = 0; i < g->nfiles; i++)
            if ((g->size[i] = le32(take(d, n, &at, 4))) == 0 || g->size[i] > MAX_FILE_BYTES)
                fail("genuine case: file size");
        for (i = 0; i < g->nfiles; i++) g->base[i] = take(d, n, &at, g->size[i]);
        for (i = 0; i < g->nfiles; i++) g->result[i] = take(d, n, &at, g->size[i]);
        g->blob = take(d, n, &at, g->blob_len);
    }
    if (at != n) fail("genuine-case file has trailing bytes");
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static uint8_t file[256 * 1024];   /* the cases point into it for the whole run */
    const char *path = getenv("AMC_FUZZ_GENUINE");
    FILE *fp;
    size_t n;
    (void)argc, (void)argv;
    if (!path) fail("set AMC_FUZZ_GENUINE to the genuine-case file (runtime/fuzz.py writes it)");
    if (!(fp = fopen(path, "rb"))) fail("cannot open AMC_FUZZ_GENUINE");
    n = fread(file, 1, sizeof file, fp);
    if (ferror(fp) || !feof(fp)) fail("cannot read AMC_FUZZ_GENUINE whole");
    fclose(fp);
    parse_cases(file, n);
    return 0;
}

static int accept_all(void *ctx, const uint8_t digest[32], const uint8_t sig[64])
{
    (void)ctx, (void)digest, (void)sig;
    return 0;
}

static int stream(amc_patch_t *p, const amc_config_t *cfg, int pass, const uint8_t *b, size_t n,
                  size_t call)
{
    size_t off = 0;
    int rc = amc_patch_begin(p, cfg, pass), frc;
    while (rc == 0 && off < n) {
        size_t k = n - off < call ? n - off : call;
        rc = amc_patch_process(p, b + off, k);
        off += k;
    }
    frc = amc_patch_finish(p);
    return rc ? rc : frc;
}

/* Every page of every file is its base or its result content; nothing went outside an area. */
static void check_pages(const amc_simflash_t *f, const genuine_case_t *g)
{
    uint32_t i, off;
    if (f->outside) fail("a write or erase reached outside its area");
    for (i = 0; i < g->nfiles; i++) {
        const uint8_t *mem = f->mem + f->area_off[i];
        for (off = 0; off < g->size[i]; off += f->page_size) {
            uint32_t n = g->size[i] - off < f->page_size ? g->size[i] - off : f->page_size;
            if (memcmp(mem + off, g->base[i] + off, n) && memcmp(mem + off, g->result[i] + off, n))
                fail("a page holds neither its base nor its result content");
        }
    }
}

static void check_files(const amc_simflash_t *f, const genuine_case_t *g, int result,
                        const char *what)
{
    uint32_t i;
    if (f->outside) fail("a write or erase reached outside its area");
    for (i = 0; i < g->nfiles; i++)
        if (memcmp(f->mem + f->area_off[i], result ? g->result[i] : g->base[i], g->size[i]))
            fail(what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const genuine_case_t *g;
    amc_simflash_t f;
    amc_storage_t st;
    amc_config_t cfg;
    amc_patch_t p;
    uint32_t page_size, pages = 0, backup_pages, i;
    size_t call;
    uint8_t opt;
    int rc;
    if (size < 2) return 0;
    g = &cases[data[0] % ncases];
    opt = data[1];
    page_size = OPT_PAGE(opt);
    call = OPT_CALL(opt);
    data += 2;
    size -= 2;
    for (i = 0; i < g->nfiles; i++) pages += (g->size[i] + page_size - 1u) / page_size;
    /* rollback needs a backup slot for every page the walk may touch */
    backup_pages = opt & OPT_ROLLBACK ? pages + 2u : opt & OPT_ONE_BACKUP ? 1u : 3u;
    if (amc_simflash_init(&f, flash, sizeof flash, page_size, g->nfiles, g->size, backup_pages))
        fail("flash too small for a genuine case");
    f.byte_writable = (opt & OPT_BYTE_WRITABLE) != 0;
    for (i = 0; i < g->nfiles; i++) amc_simflash_load(&f, i, g->base[i], g->size[i]);
    amc_simflash_storage(&f, &st, backup_pages);
    memset(&cfg, 0, sizeof cfg);
    cfg.storage = &st;
    cfg.verify = accept_all;
    cfg.page_buf = page_buf;
    cfg.chunk_buf = chunk_buf;
    cfg.chunk_buf_size = sizeof chunk_buf;
    cfg.bucket_buf = buckets;
    cfg.bucket_buf_size = sizeof buckets;

    /* 1. verify the genuine blob, then apply what the input holds */
    if (stream(&p, &cfg, AMC_PASS_VERIFY, g->blob, g->blob_len, call) != 0)
        fail("the verify pass refused a genuine blob");
    rc = stream(&p, &cfg, AMC_PASS_APPLY, data, size, call);
    check_pages(&f, g);
    if (rc == 0) {
        check_files(&f, g, 1, "apply succeeded but the files are not the result");
        return 0;
    }

    /* 2. the genuine blob still finishes: resumed to the result, or rolled back to the base */
    if (stream(&p, &cfg, AMC_PASS_VERIFY, g->blob, g->blob_len, call) != 0)
        fail("the verify pass refused the genuine blob after a failed apply");
    if (opt & OPT_ROLLBACK) {
        rc = stream(&p, &cfg, AMC_PASS_ROLLBACK, g->blob, g->blob_len, call);
        if (rc != 0 && rc != -AMC_E_STATE) fail("rollback after a failed apply failed");
        check_files(&f, g, 0, "rollback did not restore the base");
    } else {
        if (stream(&p, &cfg, AMC_PASS_APPLY, g->blob, g->blob_len, call) != 0)
            fail("resuming with the genuine blob failed");
        check_files(&f, g, 1, "resuming did not give the result");
    }
    return 0;
}
