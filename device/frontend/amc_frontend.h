/* amc speech front end: 16 kHz int16 PCM -> the log-mel encoder frames the model was trained on
 * (model/features.py LogMel), bit-identical on every machine that runs it.
 *
 * One C99 source, no malloc, no libc, no libm: every number comes from IEEE-754 float32 + - * /
 * in a fixed order (build with -ffp-contract=off so no compiler fuses a multiply-add), and the
 * only transcendental, the natural log, is computed here. x86-64, aarch64 and Cortex-M4F/M7
 * therefore give the same bits for the same PCM, however it is chunked.
 *
 * Per 10 ms row (hop samples), over the last n_fft samples:
 *   x = pcm / 32768 * window   (the hann window, zero-padded to n_fft as torch.stft does)
 *   X = FFT(x)                 (n_fft a power of two: an n_fft/2-point complex radix-4 FFT of
 *                               the sample pairs x[2j] + i x[2j+1], then the split step to X)
 *   power[b] = re^2 + im^2     (b < n_fft/2 + 1)
 *   mel[m] = log(max(sum_b power[b] * weight[m][b], log_floor))
 * `stack` rows are concatenated into one frame of n_mels * stack floats; rows that do not fill a
 * frame at the end of a stream are dropped, as the model drops them, so there is nothing to
 * flush: a stream ends by simply not pushing more, and the next utterance starts with
 * amc_frontend_reset().
 *
 * Tables are computed by the Python side (amc.runtime.frontend.write_tables), never here, so the
 * window and filter weights are the training ones to the bit. The table file, all little-endian,
 * read in place (no alignment needed: an MCU can embed it as a byte array, e.g. `xxd -i`):
 *
 *   offset  size  field
 *    0      4     magic "AMFE"
 *    4      2     version (1)
 *    6      2     n_fft          power of two, 4 .. AMC_FE_MAX_NFFT
 *    8      2     hop            samples between rows, 1 .. n_fft
 *   10      2     n_mels         1 .. AMC_FE_MAX_MELS
 *   12      2     stack          rows a frame, n_mels * stack <= AMC_FE_MAX_FRAME
 *   14      2     window_length  the hann window's length before padding, 1 .. n_fft (informative)
 *   16      4     sample_rate    Hz (informative: the caller's PCM must have it)
 *   20      4     log_floor      float32, > 0
 *   24      4     weight_count   float32 weights in the filterbank section
 *   28      4     total_bytes    the file's length, this CRC-32 included
 *   32            window         n_fft float32
 *                 twiddles       n_fft/2 pairs (re, im) float32: exp(-2 pi i k / n_fft)
 *                 mel spans      n_mels pairs (first_bin, bin_count) uint16, within n_fft/2 + 1
 *                 mel weights    weight_count float32, mel by mel, each span's weights in order
 *   total-4 4     CRC-32 (IEEE 802.3, as zlib.crc32) of every byte before it
 *
 * Use:
 *   amc_frontend_t fe;                        caller-owned, about 4 KB with the default bounds
 *   rc = amc_frontend_init(&fe, tables, tables_size, on_frame, ctx);
 *   rc = amc_frontend_push(&fe, pcm, n);      any chunking; on_frame runs per complete frame
 * A row needs n_fft samples although the window covers only window_length of them: torch.stft
 * frames n_fft samples and pads the window, and the model was trained on exactly that.
 * Errors are negative AMC_FE_E* codes; amc_frontend_strerror() names them.
 */
#ifndef AMC_FRONTEND_H
#define AMC_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

/* Bounds of the state struct; -D overrides them. */
#ifndef AMC_FE_MAX_NFFT
#define AMC_FE_MAX_NFFT 512u
#endif
#ifndef AMC_FE_MAX_MELS
#define AMC_FE_MAX_MELS 80u
#endif
#ifndef AMC_FE_MAX_FRAME
#define AMC_FE_MAX_FRAME 240u
#endif

#define AMC_FE_VERSION 1u
#define AMC_FE_HEADER_BYTES 32u

enum {
    AMC_FE_OK = 0,
    AMC_FE_EARG = 1,        /* a NULL pointer */
    AMC_FE_ETRUNCATED = 2,  /* the table file is shorter than it says */
    AMC_FE_EMAGIC = 3,      /* not a front-end table file */
    AMC_FE_EVERSION = 4,    /* a table version this front end does not read */
    AMC_FE_ECRC = 5,        /* the table file is corrupt */
    AMC_FE_ECONFIG = 6,     /* a config number out of its bounds */
    AMC_FE_ETABLE = 7       /* a table length or value out of its bounds */
};

/* One complete frame: n_mels * stack floats, valid only during the call. */
typedef void (*amc_frontend_frame_fn)(void *ctx, const float *frame, size_t frame_dim);

typedef struct {
    /* the tables, read in place */
    const uint8_t *window, *twiddles, *spans, *weights;
    uint32_t n_fft, hop, n_mels, stack, log2_n;
    float log_floor;
    amc_frontend_frame_fn on_frame;
    void *ctx;
    /* the stream */
    uint32_t filled;                       /* samples in pcm[] */
    uint32_t oldest;                       /* pcm[] is a ring: where the first of them is */
    uint32_t rows;                         /* rows in frame[] */
    int16_t pcm[AMC_FE_MAX_NFFT];
    float re[AMC_FE_MAX_NFFT / 2u + 1u], im[AMC_FE_MAX_NFFT / 2u];   /* the FFT, then the power */
    float frame[AMC_FE_MAX_FRAME];
} amc_frontend_t;

/* Check the table file and start a stream. The tables must outlive the front end. */
int amc_frontend_init(amc_frontend_t *fe, const uint8_t *tables, size_t tables_size,
                      amc_frontend_frame_fn on_frame, void *ctx);

/* Feed n samples; on_frame runs for every frame they complete. 0 or a negative error. */
int amc_frontend_push(amc_frontend_t *fe, const int16_t *pcm, size_t n);

/* Forget the stream (a new utterance); the tables stay. */
void amc_frontend_reset(amc_frontend_t *fe);

/* Frame width (n_mels * stack) of an initialized front end. */
size_t amc_frontend_frame_dim(const amc_frontend_t *fe);

/* The natural log the front end uses, for positive normal floats: within 1 ulp, the same on
 * every machine. */
float amc_frontend_log(float x);

/* sizeof(amc_frontend_t), for bindings that allocate the state themselves. */
size_t amc_frontend_state_size(void);

/* A short stable name of an error code (negative or positive). */
const char *amc_frontend_strerror(int code);

#endif
