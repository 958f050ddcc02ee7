/* The apply path and nothing else, linked with --gc-sections, so `arm-none-eabi-size` of this
 * image is the flash the patch runtime costs on a Cortex-M (without the signature verifier,
 * which the product supplies as a callback): the passes and the commit of an install. */
#include "amc_patch.h"

int amc_size_probe(amc_patch_t *p, const amc_config_t *cfg, const uint8_t *chunk, size_t n);

int amc_size_probe(amc_patch_t *p, const amc_config_t *cfg, const uint8_t *chunk, size_t n)
{
    int rc;
    if (n & 4) return amc_patch_commit(p, cfg);
    rc = amc_patch_begin(p, cfg, (int)n & 3);
    if (rc == 0) rc = amc_patch_process(p, chunk, n);
    return rc ? rc : amc_patch_finish(p);
}
