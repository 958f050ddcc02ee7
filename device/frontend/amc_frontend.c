/* amc speech front end; see amc_frontend.h for what it computes and the table file. */
#include "amc_frontend.h"

#include <float.h>

/* Bit-identical results need every float32 operation rounded to float32, as on x86-64 (SSE),
 * aarch64 and the Cortex-M FPUs; x87 or a wider evaluation would give other bits. */
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "amc_frontend needs FLT_EVAL_METHOD == 0 (float32 arithmetic in float32)"
#endif

/* ---- table reading: little-endian, any alignment ------------------------------------------ */

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t le32(const uint8_t *p)
{
    return le16(p) | le16(p + 2) << 16;
}

static float float_of_bits(uint32_t bits)
{
    union { uint32_t u; float f; } v;
    v.u = bits;
    return v.f;
}

static float le_f32(const uint8_t *p)
{
    return float_of_bits(le32(p));
}

static int finite_floats(const uint8_t *p, uint32_t count)
{
    uint32_t i;
    for (i = 0; i < count; i++)
        if ((le32(p + 4u * i) & 0x7f800000u) == 0x7f800000u) return 0;
    return 1;
}

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t crc = 0xffffffffu, i, bit;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        for (bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- natural log ---------------------------------------------------------------------------- */

float amc_frontend_log(float x)
{
    /* x = 2^k * m with m in [sqrt(1/2), sqrt(2)); log(m) = log(1 + f) = 2 atanh(s), s = f / (2 + f),
     * written as f - f^2/2 + s (f^2/2 + R) so the large terms are exact and the series, R(z = s^2)
     * = 2/3 z + 2/5 z^2 + 2/7 z^3 + 2/9 z^4 (|s| <= 0.172: the next term is below 1e-9), only
     * corrects them. ln 2 is split so that k * LN2_HI is exact. */
    const float LN2_HI = 0x1.62ep-1f, LN2_LO = 0x1.0bfbe8p-15f;
    union { float f; uint32_t u; } v;
    uint32_t bits;
    int32_t k;
    float f, s, z, r, half_f2, dk;

    v.f = x;
    bits = v.u + (0x3f800000u - 0x3f3504f3u);          /* m >= sqrt(1/2) moves up an octave */
    k = (int32_t)(bits >> 23) - 127;
    v.u = (bits & 0x007fffffu) + 0x3f3504f3u;
    f = v.f - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
    r = z * (0.6666666666666666f + z * (0.4f + z * (0.2857142857142857f + z * 0.2222222222222222f)));
    half_f2 = 0.5f * f * f;
    dk = (float)k;
    return s * (half_f2 + r) + dk * LN2_LO - half_f2 + f + dk * LN2_HI;
}

/* ---- tables --------------------------------------------------------------------------------- */

int amc_frontend_init(amc_frontend_t *fe, const uint8_t *t, size_t size,
                      amc_frontend_frame_fn on_frame, void *ctx)
{
    uint32_t total, n_fft, bins, window_length, weight_count, m, spanned = 0, floor_bits;

    if (!fe || !t || !on_frame) return -AMC_FE_EARG;
    if (size < AMC_FE_HEADER_BYTES + 4u) return -AMC_FE_ETRUNCATED;
    if (t[0] != 'A' || t[1] != 'M' || t[2] != 'F' || t[3] != 'E') return -AMC_FE_EMAGIC;
    if (le16(t + 4) != AMC_FE_VERSION) return -AMC_FE_EVERSION;
    total = le32(t + 28);
    if (size < total) return -AMC_FE_ETRUNCATED;
    if (size > total || total < AMC_FE_HEADER_BYTES + 4u) return -AMC_FE_ETABLE;
    if (crc32(t, total - 4u) != le32(t + total - 4u)) return -AMC_FE_ECRC;

    /* the config: within the state's bounds */
    n_fft = le16(t + 6);
    fe->hop = le16(t + 8);
    fe->n_mels = le16(t + 10);
    fe->stack = le16(t + 12);
    window_length = le16(t + 14);
    floor_bits = le32(t + 20);
    if (n_fft < 4u || n_fft > AMC_FE_MAX_NFFT || (n_fft & (n_fft - 1u))) return -AMC_FE_ECONFIG;
    if (fe->hop < 1u || fe->hop > n_fft || window_length < 1u || window_length > n_fft)
        return -AMC_FE_ECONFIG;
    if (fe->n_mels < 1u || fe->n_mels > AMC_FE_MAX_MELS || fe->stack < 1u ||
        fe->n_mels * fe->stack > AMC_FE_MAX_FRAME)
        return -AMC_FE_ECONFIG;
    /* a positive normal float, so the log of any clamped sum is defined */
    if (floor_bits >> 31 || (floor_bits & 0x7f800000u) == 0u || (floor_bits & 0x7f800000u) == 0x7f800000u)
        return -AMC_FE_ECONFIG;
    fe->n_fft = n_fft;
    fe->log_floor = float_of_bits(floor_bits);
    for (fe->log2_n = 0; (1u << fe->log2_n) < n_fft; fe->log2_n++) {
    }

    /* the sections: lengths agree with the config and the file's size */
    bins = n_fft / 2u + 1u;
    weight_count = le32(t + 24);
    if (weight_count > fe->n_mels * bins) return -AMC_FE_ETABLE;
    if (total != AMC_FE_HEADER_BYTES + 4u * n_fft + 4u * n_fft + 4u * fe->n_mels + 4u * weight_count + 4u)
        return -AMC_FE_ETABLE;
    fe->window = t + AMC_FE_HEADER_BYTES;
    fe->twiddles = fe->window + 4u * n_fft;
    fe->spans = fe->twiddles + 4u * n_fft;
    fe->weights = fe->spans + 4u * fe->n_mels;
    for (m = 0; m < fe->n_mels; m++) {
        uint32_t first = le16(fe->spans + 4u * m), count = le16(fe->spans + 4u * m + 2u);
        if (first + count > bins) return -AMC_FE_ETABLE;
        spanned += count;
    }
    if (spanned != weight_count) return -AMC_FE_ETABLE;
    if (!finite_floats(fe->window, 2u * n_fft) || !finite_floats(fe->weights, weight_count))
        return -AMC_FE_ETABLE;

    fe->on_frame = on_frame;
    fe->ctx = ctx;
    amc_frontend_reset(fe);
    return AMC_FE_OK;
}

void amc_frontend_reset(amc_frontend_t *fe)
{
    fe->filled = 0;
    fe->rows = 0;
}

size_t amc_frontend_frame_dim(const amc_frontend_t *fe)
{
    return (size_t)fe->n_mels * fe->stack;
}

size_t amc_frontend_state_size(void)
{
    return sizeof(amc_frontend_t);
}

/* ---- one row -------------------------------------------------------------------------------- */

static uint32_t reverse_bits(uint32_t i, uint32_t bits)
{
    uint32_t r = 0;
    while (bits--) {
        r = r << 1 | (i & 1u);
        i >>= 1;
    }
    return r;
}

/* Windowed samples in bit-reversed order, then radix-2 decimation-in-time butterflies: the
 * textbook order, each twiddle taken from the table (stage `len` uses every n/len-th one). */
static void fft(amc_frontend_t *fe)
{
    uint32_t n = fe->n_fft, i, len, start, k, shift;
    float *re = fe->re, *im = fe->im;

    for (i = 0; i < n; i++) {
        uint32_t j = reverse_bits(i, fe->log2_n);
        re[j] = (float)fe->pcm[i] * (1.0f / 32768.0f) * le_f32(fe->window + 4u * i);
        im[j] = 0.0f;
    }
    for (len = 2, shift = fe->log2_n - 1u; len <= n; len <<= 1, shift--) {
        uint32_t half = len / 2u;
        for (start = 0; start < n; start += len) {
            for (k = 0; k < half; k++) {
                const uint8_t *w = fe->twiddles + 8u * (k << shift);
                float wr = le_f32(w), wi = le_f32(w + 4);
                uint32_t a = start + k, b = a + half;
                float tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] = re[a] + tr;
                im[a] = im[a] + ti;
            }
        }
    }
}

static void row(amc_frontend_t *fe)
{
    uint32_t bins = fe->n_fft / 2u + 1u, b, m, j;
    const uint8_t *weight = fe->weights;
    float *mel = fe->frame + fe->rows * fe->n_mels;

    fft(fe);
    for (b = 0; b < bins; b++) fe->re[b] = fe->re[b] * fe->re[b] + fe->im[b] * fe->im[b];
    for (m = 0; m < fe->n_mels; m++) {
        uint32_t first = le16(fe->spans + 4u * m), count = le16(fe->spans + 4u * m + 2u);
        float sum = 0.0f;
        for (j = 0; j < count; j++, weight += 4) sum = sum + fe->re[first + j] * le_f32(weight);
        mel[m] = amc_frontend_log(sum > fe->log_floor ? sum : fe->log_floor);
    }
    if (++fe->rows == fe->stack) {
        fe->rows = 0;
        fe->on_frame(fe->ctx, fe->frame, amc_frontend_frame_dim(fe));
    }
}

/* ---- the stream ----------------------------------------------------------------------------- */

int amc_frontend_push(amc_frontend_t *fe, const int16_t *pcm, size_t n)
{
    if (!fe || (!pcm && n)) return -AMC_FE_EARG;
    while (n) {
        uint32_t take = fe->n_fft - fe->filled, i;
        if (take > n) take = (uint32_t)n;
        for (i = 0; i < take; i++) fe->pcm[fe->filled + i] = pcm[i];
        fe->filled += take;
        pcm += take;
        n -= take;
        if (fe->filled == fe->n_fft) {
            row(fe);
            fe->filled = fe->n_fft - fe->hop;
            for (i = 0; i < fe->filled; i++) fe->pcm[i] = fe->pcm[i + fe->hop];
        }
    }
    return AMC_FE_OK;
}

const char *amc_frontend_strerror(int code)
{
    switch (code < 0 ? -code : code) {
    case AMC_FE_OK: return "ok";
    case AMC_FE_EARG: return "bad argument";
    case AMC_FE_ETRUNCATED: return "front-end tables truncated";
    case AMC_FE_EMAGIC: return "not a front-end table file";
    case AMC_FE_EVERSION: return "unsupported front-end table version";
    case AMC_FE_ECRC: return "front-end tables corrupt (CRC mismatch)";
    case AMC_FE_ECONFIG: return "front-end config out of bounds";
    case AMC_FE_ETABLE: return "front-end table length or value out of bounds";
    default: return "unknown error";
    }
}
