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
    fe->oldest = 0;
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

/* The n real samples as m = n/2 complex ones, z[j] = y[2j] + i y[2j+1], through an m-point
 * complex FFT (decimation in time: bit-reversed input, radix-4 butterflies in place), then the
 * split step that turns its Z into the power of X at bins 0 .. m. The twiddles of the m-point
 * transform are every other table value; where a twiddle is exactly 1 or -i there is no multiply.
 *
 * The transform runs on y = pcm * window, 2^15 times x = pcm / 32768 * window, and the split step
 * leaves out its two halvings, so the powers come out as |2 Y|^2 = 2^32 |X|^2 (Y, X the spectra
 * of y, x); row() scales each mel sum back by 2^-32. These scalings are powers of two, which
 * float32 applies without rounding. */

/* The value after r of a counter that counts in bit-reversed order, top being its highest bit:
 * the carry runs from the top bit down. */
static size_t next_reversed(size_t r, size_t top)
{
    while (r & top) {
        r ^= top;
        top >>= 1;
    }
    return r | top;
}

/* y[j]: the j-th sample of the row (pcm[] is a ring), windowed. */
static inline float windowed(const amc_frontend_t *fe, size_t j)
{
    return (float)fe->pcm[(fe->oldest + j) & (fe->n_fft - 1u)] * le_f32(fe->window + 4u * j);
}

/* One radix-4 butterfly on a and the already twiddled b, c, d: two radix-2 stages in one,
 * written to r[0], r[len], r[2 len], r[3 len] (and i[...]):
 *   (a + b) + (c + d),  (a - b) - i (c - d),  (a + b) - (c + d),  (a - b) + i (c - d). */
static inline void butterfly4(float *r, float *i, size_t len, float ar, float ai, float br, float bi,
                              float cr, float ci, float dr, float di)
{
    float sr = ar + br, si = ai + bi, tr = ar - br, ti = ai - bi;
    float ur = cr + dr, ui = ci + di, vr = cr - dr, vi = ci - di;
    r[0] = sr + ur;
    i[0] = si + ui;
    r[len] = tr + vi;
    i[len] = ti - vr;
    r[2u * len] = sr - ur;
    i[2u * len] = si - ui;
    r[3u * len] = tr - vi;
    i[3u * len] = ti + vr;
}

/* Window the samples into re/im in bit-reversed order and run the first stage on them, whose
 * twiddles are 1 (and -i, a swap): one radix-4 stage when log2(m) is even, else one radix-2
 * stage. Returns the length of the transforms it leaves, 4 or 2. */
static size_t first_stage(amc_frontend_t *fe)
{
    size_t m = fe->n_fft / 2u, g, r;
    float *re = fe->re, *im = fe->im;

    if (fe->log2_n & 1u) {
        /* position 4g + p takes z[r + q m/4]: r is g with its log2(m/4) bits reversed, q is p
         * with its 2 bits reversed */
        for (g = 0, r = 0; g < m / 4u; g++, r = next_reversed(r, m / 8u)) {
            size_t a = 2u * r, b = a + m, c = a + m / 2u, d = c + m;       /* y index of z */
            butterfly4(re + 4u * g, im + 4u * g, 1u, windowed(fe, a), windowed(fe, a + 1u),
                       windowed(fe, b), windowed(fe, b + 1u), windowed(fe, c), windowed(fe, c + 1u),
                       windowed(fe, d), windowed(fe, d + 1u));
        }
        return 4u;
    }
    /* position 2g + p takes z[r + p m/2]: r is g with its log2(m/2) bits reversed */
    for (g = 0, r = 0; g < m / 2u; g++, r = next_reversed(r, m / 4u)) {
        size_t a = 2u * r, b = a + m;
        float ar = windowed(fe, a), ai = windowed(fe, a + 1u);
        float br = windowed(fe, b), bi = windowed(fe, b + 1u);
        re[2u * g] = ar + br;
        im[2u * g] = ai + bi;
        re[2u * g + 1u] = ar - br;
        im[2u * g + 1u] = ai - bi;
    }
    return 2u;
}

/* Radix-4 butterflies: every 4 transforms of length len, side by side, into one of 4 len. With
 * a, b, c, d the k-th values of the 4 and w = W^(k n / (4 len)), W = exp(-2 pi i / n), the
 * butterfly takes a, w^2 b, w c, w^3 d. At k = 0 the twiddles are 1; w^3 may lie past the table's
 * half circle: W^(j + n/2) = -W^j. */
static void radix4_stage(amc_frontend_t *fe, size_t len)
{
    size_t m = fe->n_fft / 2u, span = 4u * len, step = fe->n_fft / span, k, a;
    float *re = fe->re, *im = fe->im;

    for (a = 0; a < m; a += span)
        butterfly4(re + a, im + a, len, re[a], im[a], re[a + len], im[a + len], re[a + 2u * len],
                   im[a + 2u * len], re[a + 3u * len], im[a + 3u * len]);
    for (k = 1; k < len; k++) {
        const uint8_t *w1 = fe->twiddles + 8u * k * step, *w2 = fe->twiddles + 16u * k * step;
        size_t j3 = 3u * k * step;
        float w1r = le_f32(w1), w1i = le_f32(w1 + 4), w2r = le_f32(w2), w2i = le_f32(w2 + 4), w3r, w3i;
        if (j3 < m) {
            w3r = le_f32(fe->twiddles + 8u * j3);
            w3i = le_f32(fe->twiddles + 8u * j3 + 4u);
        } else {
            w3r = -le_f32(fe->twiddles + 8u * (j3 - m));
            w3i = -le_f32(fe->twiddles + 8u * (j3 - m) + 4u);
        }
        for (a = k; a < m; a += span) {
            float *r = re + a, *i = im + a;
            float br = r[len], bi = i[len], cr = r[2u * len], ci = i[2u * len];
            float dr = r[3u * len], di = i[3u * len];
            butterfly4(r, i, len, r[0], i[0], w2r * br - w2i * bi, w2r * bi + w2i * br,
                       w1r * cr - w1i * ci, w1r * ci + w1i * cr, w3r * dr - w3i * di, w3r * di + w3i * dr);
        }
    }
}

/* The split step, in place: re[0 .. m] = |2 Y[k]|^2 from Z (see above), pairing k with m - k:
 *   2 Y[k] = E + W^k O,  2 Y[m-k] = conj(E - W^k O),  E = Z[k] + conj Z[m-k],  O = -i (Z[k] - conj Z[m-k])
 * and, W^0 being 1 and W^(m/2) being -i, 2 Y[0] = 2 (Re + Im) Z[0], 2 Y[m] = 2 (Re - Im) Z[0],
 * 2 Y[m/2] = 2 conj Z[m/2]. */
static void power_spectrum(amc_frontend_t *fe)
{
    size_t m = fe->n_fft / 2u, k;
    float *re = fe->re, *im = fe->im;
    float dc = re[0] + im[0], nyquist = re[0] - im[0];
    float mid_r = re[m / 2u] + re[m / 2u], mid_i = im[m / 2u] + im[m / 2u];

    for (k = 1; k < m / 2u; k++) {
        float even_r = re[k] + re[m - k], even_i = im[k] - im[m - k];
        float odd_r = im[k] + im[m - k], odd_i = re[m - k] - re[k];
        float wr = le_f32(fe->twiddles + 8u * k), wi = le_f32(fe->twiddles + 8u * k + 4u);
        float tr = wr * odd_r - wi * odd_i, ti = wr * odd_i + wi * odd_r;
        float xr = even_r + tr, xi = even_i + ti, yr = even_r - tr, yi = even_i - ti;
        re[k] = xr * xr + xi * xi;
        re[m - k] = yr * yr + yi * yi;
    }
    dc = dc + dc;
    nyquist = nyquist + nyquist;
    re[0] = dc * dc;
    re[m / 2u] = mid_r * mid_r + mid_i * mid_i;
    re[m] = nyquist * nyquist;
}

static void row(amc_frontend_t *fe)
{
    size_t len;
    uint32_t m, j;
    const uint8_t *weight = fe->weights;
    float *mel = fe->frame + fe->rows * fe->n_mels;

    for (len = first_stage(fe); len < fe->n_fft / 2u; len *= 4u) radix4_stage(fe, len);
    power_spectrum(fe);
    for (m = 0; m < fe->n_mels; m++) {
        uint32_t first = le16(fe->spans + 4u * m), count = le16(fe->spans + 4u * m + 2u);
        float sum = 0.0f;
        for (j = 0; j < count; j++, weight += 4) sum = sum + fe->re[first + j] * le_f32(weight);
        sum = sum * 0x1p-32f;                  /* the powers' 2^32 (see above) */
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
        uint32_t take = fe->n_fft - fe->filled, at = fe->oldest + fe->filled, i;
        if (take > n) take = (uint32_t)n;
        for (i = 0; i < take; i++) fe->pcm[(at + i) & (fe->n_fft - 1u)] = pcm[i];
        fe->filled += take;
        pcm += take;
        n -= take;
        if (fe->filled == fe->n_fft) {
            row(fe);
            fe->oldest = (fe->oldest + fe->hop) & (fe->n_fft - 1u);
            fe->filled = fe->n_fft - fe->hop;
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
