/*
 * libFuzzer target: the streaming parser and the apply path on a simulated flash.
 * Built with FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION, which makes the core skip its sha256
 * comparisons (digest, base, result) and with a verifier that accepts every signature, so
 * mutated blobs get past verification into the page walk. Checked: no crash, no sanitizer
 * report, and a blob the verify pass rejects leaves the storage byte-identical.
 * The first input byte picks page size and chunking; the rest is the blob.
 */
#include <stdlib.h>
#include <string.h>

#include "amc_patch.h"
#include "amc_simflash.h"

#define FILE_BYTES 4096u

static uint8_t flash[6 * FILE_BYTES + 8 * 1024], before[sizeof flash];
static uint8_t page[1024], buckets[512], chunk_buf[1024 + AMC_LINK_SIZE];

static int accept_all(void *ctx, const uint8_t digest[32], const uint8_t sig[64])
{
    (void)ctx, (void)digest, (void)sig;
    return 0;
}

static int stream(amc_patch_t *p, const amc_config_t *cfg, int pass, const uint8_t *b, size_t n,
                  size_t chunk)
{
    size_t off = 0;
    int rc = amc_patch_begin(p, cfg, pass), frc;
    while (rc == 0 && off < n) {
        size_t k = n - off < chunk ? n - off : chunk;
        rc = amc_patch_process(p, b + off, k);
        off += k;
    }
    frc = amc_patch_finish(p);
    return rc ? rc : frc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint32_t sizes[4] = {FILE_BYTES, FILE_BYTES, FILE_BYTES, FILE_BYTES};
    amc_simflash_t f;
    amc_storage_t st;
    amc_config_t cfg;
    amc_patch_t p;
    uint32_t page_size, i;
    size_t chunk;
    int rc;
    uint8_t mode;
    if (size < 1) return 0;
    mode = data[0];
    page_size = 64u << (mode & 3);                 /* 64..512 */
    chunk = 1u + ((mode >> 2) & 31u) * 7u;
    data++;
    size--;
    if (amc_simflash_init(&f, flash, sizeof flash, page_size, 4, sizes, 4) != 0) abort();
    f.byte_writable = (mode & 0x80) != 0;
    for (i = 0; i < 4 * FILE_BYTES; i++) flash[i] = (uint8_t)(i * 31u + (i >> 8));
    amc_simflash_storage(&f, &st, 4);
    memset(&cfg, 0, sizeof cfg);
    cfg.storage = &st;
    cfg.verify = accept_all;
    cfg.page_buf = page;
    cfg.bucket_buf = buckets;
    cfg.bucket_buf_size = sizeof buckets;
    cfg.chunk_buf = chunk_buf;
    cfg.chunk_buf_size = sizeof chunk_buf;
    memcpy(before, flash, sizeof flash);
    rc = stream(&p, &cfg, AMC_PASS_VERIFY, data, size, chunk);
    if (rc != 0) {
        if (memcmp(before, flash, sizeof flash) != 0 || f.writes || f.erases || f.progress_writes)
            abort();                               /* a rejected blob changed the storage */
        return 0;
    }
    (void)stream(&p, &cfg, AMC_PASS_APPLY, data, size, chunk);
    return 0;
}
