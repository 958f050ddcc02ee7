/* amc-frontend TABLES IN.pcm|IN.wav OUT.f32 [--chunk N] [--bench]
 *
 * 16 kHz int16 PCM (raw little-endian, or a 16-bit mono WAV at the tables' sample rate) through
 * the front end in chunks of N samples (default 4096); the frames go to OUT as raw little-endian
 * float32, frame after frame; stdout says `frames=F dim=D`. --bench (Linux) then pushes the input
 * again, timing each push of one frame's samples, and prints `bench pushes=P median_us=M`.
 * Runs natively, under qemu-user, and bare-metal under qemu-system-arm (files by semihosting).
 * Exit status: 0, 1 for a bad input or table file (one line on stderr), 64 for bad usage. */
#define _POSIX_C_SOURCE 200112L       /* clock_gettime, for --bench */
#include "amc_frontend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__unix__)
#include <time.h>
#define AMC_FE_BENCH 1
#endif

#define MAX_TABLE_BYTES (1u << 17)
#define MAX_CHUNK 4096u

static uint8_t tables[MAX_TABLE_BYTES];
static uint8_t bytes[2u * MAX_CHUNK];
static int16_t samples[MAX_CHUNK];

struct sink {
    FILE *out;
    unsigned long frames;
    int failed;
};

static void write_frame(void *ctx, const float *frame, size_t dim)
{
    struct sink *sink = ctx;
    size_t i;
    if (!sink->out) return;                       /* --bench pushes the input again */
    for (i = 0; i < dim; i++) {
        union { float f; uint32_t u; } v;
        uint8_t le[4];
        v.f = frame[i];
        le[0] = (uint8_t)v.u;
        le[1] = (uint8_t)(v.u >> 8);
        le[2] = (uint8_t)(v.u >> 16);
        le[3] = (uint8_t)(v.u >> 24);
        if (fwrite(le, 1, 4, sink->out) != 4) sink->failed = 1;
    }
    sink->frames++;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A little-endian int16, without relying on how the C implementation narrows 0x8000.. */
static int16_t pcm_of(const uint8_t b[2])
{
    int32_t v = (int32_t)b[0] | (int32_t)b[1] << 8;
    return (int16_t)(v >= 0x8000 ? v - 0x10000 : v);
}

static int fail(const char *path, const char *why)
{
    fprintf(stderr, "amc-frontend: %s: %s\n", path, why);
    return 1;
}

/* Leave `in` at the first sample, past a WAV header (checked) or at the start of raw PCM, and
 * bound the samples to read: a WAV file's data chunk, else the whole file. */
static const char *skip_header(FILE *in, uint32_t sample_rate, size_t *samples_left)
{
    uint8_t head[24];
    *samples_left = (size_t)-1;
    if (fread(head, 1, 12, in) != 12 || memcmp(head, "RIFF", 4) || memcmp(head + 8, "WAVE", 4)) {
        rewind(in);
        return NULL;
    }
    for (;;) {
        uint32_t size;
        if (fread(head, 1, 8, in) != 8) return "WAV file without a data chunk";
        size = le32(head + 4);
        if (!memcmp(head, "data", 4)) {
            *samples_left = size / 2u;
            return NULL;
        }
        if (!memcmp(head, "fmt ", 4)) {
            if (size < 16 || fread(head + 8, 1, 16, in) != 16) return "WAV fmt chunk truncated";
            if (head[8] != 1 || head[9] || head[10] != 1 || head[11] || le32(head + 12) != sample_rate ||
                head[22] != 16 || head[23])
                return "WAV file is not 16-bit PCM mono at the tables' sample rate";
            size -= 16;
        }
        if (fseek(in, (long)(size + (size & 1u)), SEEK_CUR)) return "WAV file truncated";
    }
}

#ifdef AMC_FE_BENCH
static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Time each push of one frame's samples (hop * stack), the input held in memory. */
static const char *bench(amc_frontend_t *fe, FILE *in, size_t n)
{
    size_t step = (size_t)fe->hop * fe->stack, pushes = 0, i;
    long start = ftell(in), end;
    int16_t *pcm;
    double *us;
    if (start < 0 || fseek(in, 0, SEEK_END) || (end = ftell(in)) < start || fseek(in, start, SEEK_SET))
        return "cannot seek";
    if (n > (size_t)(end - start) / 2) n = (size_t)(end - start) / 2;
    pcm = malloc(n * sizeof *pcm + 1);
    us = malloc((n / step + 1) * sizeof *us);
    if (!pcm || !us || fread(pcm, 2, n, in) != n) return "cannot read for --bench";
    for (i = 0; i < n; i++) pcm[i] = pcm_of((const uint8_t *)(pcm + i));
    amc_frontend_reset(fe);
    for (i = 0; i + step <= n; i += step) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        amc_frontend_push(fe, pcm + i, step);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        us[pushes++] = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
    }
    qsort(us, pushes, sizeof *us, by_value);
    printf("bench pushes=%lu median_us=%.3f\n", (unsigned long)pushes, pushes ? us[pushes / 2] : 0.0);
    free(pcm);
    free(us);
    return NULL;
}
#endif

int main(int argc, char **argv)
{
    static amc_frontend_t fe;
    const char *paths[3], *why;
    size_t chunk = MAX_CHUNK, size, n, count = 0, left;
    int i, rc, timed = 0, usage = 0;
    struct sink sink = {NULL, 0, 0};
    FILE *f, *in;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--chunk") && i + 1 < argc) {
            chunk = strtoul(argv[++i], NULL, 10);
            usage |= chunk < 1 || chunk > MAX_CHUNK;
        } else if (!strcmp(argv[i], "--bench")) {
            timed = 1;
        } else if (count < 3) {
            paths[count++] = argv[i];
        } else {
            usage = 1;
        }
    }
    if (usage || count != 3) {
        fprintf(stderr, "usage: amc-frontend TABLES IN.pcm|IN.wav OUT.f32 [--chunk N<=%u] [--bench]\n",
                MAX_CHUNK);
        return 64;
    }
    if (!(f = fopen(paths[0], "rb"))) return fail(paths[0], "cannot open");
    size = fread(tables, 1, sizeof tables, f);
    rc = size == sizeof tables && fgetc(f) != EOF;
    fclose(f);
    if (rc) return fail(paths[0], "larger than this program's table buffer");
    rc = amc_frontend_init(&fe, tables, size, write_frame, &sink);
    if (rc) return fail(paths[0], amc_frontend_strerror(rc));
    if (!(in = fopen(paths[1], "rb"))) return fail(paths[1], "cannot open");
    if ((why = skip_header(in, le32(tables + 16), &left))) return fail(paths[1], why);
    if (!(sink.out = fopen(paths[2], "wb"))) return fail(paths[2], "cannot create");
    while (left && (n = fread(bytes, 2, chunk < left ? chunk : left, in)) > 0) {
        size_t k;
        for (k = 0; k < n; k++) samples[k] = pcm_of(bytes + 2 * k);
        amc_frontend_push(&fe, samples, n);
        left -= n;
    }
    if (fclose(sink.out) || sink.failed) return fail(paths[2], "write failed");
    sink.out = NULL;
    printf("frames=%lu dim=%lu\n", sink.frames, (unsigned long)amc_frontend_frame_dim(&fe));
    if (timed) {
#ifdef AMC_FE_BENCH
        rewind(in);
        if ((why = skip_header(in, le32(tables + 16), &left)) || (why = bench(&fe, in, left)))
            return fail(paths[1], why);
#else
        fprintf(stderr, "amc-frontend: --bench needs a Linux build\n");
#endif
    }
    fclose(in);
    return 0;
}
