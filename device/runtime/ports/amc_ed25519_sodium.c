/* Ed25519 signature check of the blob digest through libsodium (the Linux port's verifier),
 * with one public key or a keyring of several. */
#include <sodium.h>

#include "amc_posix.h"

int amc_verify_ed25519(void *ctx, const uint8_t digest[32], const uint8_t signature[64])
{
    if (sodium_init() < 0) return -1;
    return crypto_sign_verify_detached(signature, digest, 32, (const unsigned char *)ctx) == 0 ? 0 : -1;
}

int amc_verify_ed25519_keyring(void *ctx, const uint8_t digest[32], const uint8_t signature[64])
{
    const amc_keyring_t *ring = (const amc_keyring_t *)ctx;
    unsigned i;
    for (i = 0; i < ring->count && i < AMC_CONFIG_MAX_KEYS; i++)
        if (amc_verify_ed25519((void *)ring->keys[i], digest, signature) == 0) return 0;
    return -1;
}
