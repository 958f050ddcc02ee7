/* Simulated NOR flash: see amc_simflash.h. */
#include <string.h>

#include "amc_simflash.h"

static int area(amc_simflash_t *f, unsigned file, uint32_t off, size_t len, uint32_t *at)
{
    unsigned a = file == AMC_BACKUP_FILE ? f->nfiles : file;
    if (a > f->nfiles || off > f->area_size[a] || len > f->area_size[a] - off) return -1;
    *at = f->area_off[a] + off;
    return 0;
}

/* Count a mutating operation; 1 = do it, 2 = do half of it, 0 = power is off. */
static int power(amc_simflash_t *f)
{
    if (f->powered_off) return 0;
    f->ops++;
    if (f->cut_armed && f->ops > f->cut_after) {
        f->powered_off = 1;
        return f->torn ? 2 : 0;
    }
    return 1;
}

static void program(amc_simflash_t *f, uint8_t *dst, const uint8_t *src, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) dst[i] = f->byte_writable ? src[i] : (uint8_t)(dst[i] & src[i]);
    f->bytes_written += len;
}

static int sim_read(void *ctx, unsigned file, uint32_t off, uint8_t *buf, size_t len)
{
    amc_simflash_t *f = ctx;
    uint32_t at;
    if (f->powered_off || area(f, file, off, len, &at)) return -1;
    memcpy(buf, f->mem + at, len);
    return 0;
}

static int sim_write(void *ctx, unsigned file, uint32_t off, const uint8_t *buf, size_t len)
{
    amc_simflash_t *f = ctx;
    uint32_t at;
    int on;
    if (area(f, file, off, len, &at)) return f->outside++, -1;
    if (!(on = power(f))) return -1;
    f->writes++;
    program(f, f->mem + at, buf, on == 2 ? len / 2 : len);
    return on == 2 ? -1 : 0;
}

static int sim_erase(void *ctx, unsigned file, uint32_t off, size_t len)
{
    amc_simflash_t *f = ctx;
    uint32_t at, first, last;
    int on;
    if (area(f, file, off, len, &at) || len == 0) return f->outside++, -1;
    if (!(on = power(f))) return -1;
    first = at & ~(f->page_size - 1u);
    last = (uint32_t)((at + len + f->page_size - 1u) & ~(size_t)(f->page_size - 1u));
    if (on == 2) last = first + (last - first) / 2;          /* a torn erase: half of it */
    if (last > f->capacity) last = f->capacity;
    f->erases += (last - first + f->page_size - 1u) / f->page_size;
    memset(f->mem + first, 0xFF, last - first);
    return on == 2 ? -1 : 0;
}

static int sim_progress_read(void *ctx, unsigned slot, uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_simflash_t *f = ctx;
    if (f->powered_off || slot > 1) return -1;
    memcpy(rec, f->progress[slot], AMC_PROGRESS_SIZE);
    return 0;
}

/* A progress slot is its own small erase unit: erase then program, one operation. */
static int sim_progress_write(void *ctx, unsigned slot, const uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_simflash_t *f = ctx;
    int on;
    if (slot > 1 || !(on = power(f))) return -1;
    f->progress_writes++;
    memset(f->progress[slot], 0xFF, AMC_PROGRESS_SIZE);
    memcpy(f->progress[slot], rec, on == 2 ? AMC_PROGRESS_SIZE / 2 : AMC_PROGRESS_SIZE);
    return on == 2 ? -1 : 0;
}

int amc_simflash_init(amc_simflash_t *f, uint8_t *mem, uint32_t capacity, uint32_t page_size,
                      unsigned nfiles, const uint32_t *sizes, uint32_t backup_pages)
{
    uint32_t off = 0;
    unsigned i;
    if (nfiles > AMC_CONFIG_MAX_FILES || page_size == 0) return -1;
    memset(f, 0, sizeof *f);
    f->mem = mem;
    f->capacity = capacity;
    f->page_size = page_size;
    f->nfiles = nfiles;
    for (i = 0; i <= nfiles; i++) {
        uint32_t size = i < nfiles ? sizes[i] : backup_pages * page_size;
        f->area_off[i] = off;
        f->area_size[i] = size;
        off += (size + page_size - 1u) / page_size * page_size;
        if (off > capacity) return -1;
    }
    memset(mem, 0xFF, off);
    memset(f->progress, 0xFF, sizeof f->progress);
    return 0;
}

void amc_simflash_load(amc_simflash_t *f, unsigned file, const uint8_t *data, uint32_t len)
{
    memcpy(f->mem + f->area_off[file], data, len);
}

static int sim_counter_read(void *ctx, uint64_t *value)
{
    amc_simflash_t *f = ctx;
    if (f->powered_off) return -1;
    *value = f->counter;
    return 0;
}

/* One operation; refuses to go down, as OTP fuses cannot. */
static int sim_counter_write(void *ctx, uint64_t value)
{
    amc_simflash_t *f = ctx;
    int on;
    if (value < f->counter || !(on = power(f))) return -1;
    f->counter_writes++;
    if (on == 2) return -1;
    f->counter = value;
    return 0;
}

void amc_simflash_power_on(amc_simflash_t *f)
{
    f->powered_off = 0;
    f->cut_armed = 0;
    f->cut_after = 0;
    f->torn = 0;
}

void amc_simflash_storage(amc_simflash_t *f, amc_storage_t *st, uint32_t backup_pages)
{
    memset(st, 0, sizeof *st);
    st->ctx = f;
    st->read = sim_read;
    st->write = sim_write;
    st->erase = f->byte_writable ? NULL : sim_erase;
    st->progress_read = sim_progress_read;
    st->progress_write = sim_progress_write;
    st->counter_read = sim_counter_read;
    st->counter_write = sim_counter_write;
    st->page_size = f->page_size;
    st->backup_pages = backup_pages;
}
