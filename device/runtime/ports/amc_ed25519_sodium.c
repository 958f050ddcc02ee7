/* Ed25519 signature check of the blob digest through libsodium (the Linux port's verifier). */
#include <sodium.h>

#include "amc_posix.h"

int amc_verify_ed25519(void *ctx, const uint8_t digest[32], const uint8_t signature[64])
{
    if (sodium_init() < 0) return -1;
    return crypto_sign_verify_detached(signature, digest, 32, (const unsigned char *)ctx) == 0 ? 0 : -1;
}
