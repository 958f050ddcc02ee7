/* SHA-256 (FIPS 180-4), small rather than fast: a rolling 16-word message schedule. */
#include "amc_internal.h"

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, unsigned n) { return (x >> n) | (x << (32u - n)); }

static void compress(uint32_t h[8], const uint8_t block[64])
{
    uint32_t w[16], s[8];
    unsigned i;
    amc__copy(s, h, sizeof s);
    for (i = 0; i < 64; i++) {
        uint32_t t1, t2;
        if (i < 16) {
            const uint8_t *b = block + 4 * i;
            w[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        } else {
            uint32_t a = w[(i + 1) & 15], c = w[(i + 14) & 15];
            w[i & 15] += (ror(a, 7) ^ ror(a, 18) ^ (a >> 3)) + w[(i + 9) & 15] +
                         (ror(c, 17) ^ ror(c, 19) ^ (c >> 10));
        }
        t1 = s[7] + (ror(s[4], 6) ^ ror(s[4], 11) ^ ror(s[4], 25)) +
             ((s[4] & s[5]) ^ (~s[4] & s[6])) + K[i] + w[i & 15];
        t2 = (ror(s[0], 2) ^ ror(s[0], 13) ^ ror(s[0], 22)) +
             ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        {
            unsigned j;
            for (j = 7; j; j--) s[j] = s[j - 1];
        }
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (i = 0; i < 8; i++) h[i] += s[i];
}

void amc_sha256_init(amc_sha256_t *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    amc__copy(s->h, iv, sizeof iv);
    s->len_lo = s->len_hi = 0;
}

void amc_sha256_update(amc_sha256_t *s, const uint8_t *data, size_t len)
{
    while (len) {
        uint32_t used = s->len_lo & 63u, take = 64u - used;
        if (take > len) take = (uint32_t)len;
        amc__copy(s->buf + used, data, take);
        s->len_lo += take;
        if (s->len_lo < take) s->len_hi++;
        data += take;
        len -= take;
        if ((s->len_lo & 63u) == 0) compress(s->h, s->buf);
    }
}

void amc_sha256_final(amc_sha256_t *s, uint8_t out[32])
{
    uint32_t hi = s->len_hi << 3 | s->len_lo >> 29, lo = s->len_lo << 3;
    uint8_t b[8];
    unsigned i;
    /* padding through update keeps compress() at one call site: 0x80, zeros, bit length */
    b[0] = 0x80;
    amc_sha256_update(s, b, 1);
    b[0] = 0;
    while ((s->len_lo & 63u) != 56) amc_sha256_update(s, b, 1);
    for (i = 0; i < 4; i++) {
        b[i] = (uint8_t)(hi >> (24 - 8 * i));
        b[4 + i] = (uint8_t)(lo >> (24 - 8 * i));
    }
    amc_sha256_update(s, b, 8);
    /* only s->h is read from here on, so `out` may be s->buf */
    for (i = 0; i < 32; i++) out[i] = (uint8_t)(s->h[i >> 2] >> (24 - 8 * (i & 3)));
}

void amc__copy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
}

void amc__fill(void *dst, uint8_t value, size_t n)
{
    uint8_t *d = dst;
    while (n--) *d++ = value;
}

int amc__differ(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t x = 0;
    while (n--) x |= (uint8_t)(*a++ ^ *b++);
    return x != 0;
}
