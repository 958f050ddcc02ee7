/*
 * amc_simflash.h - a simulated NOR flash for tests and the template of MCU ports.
 *
 * Erase-before-write at page granularity (erased = 0xFF, a write can only clear bits, as on
 * NOR flash), operation counting, and fault injection: a power cut after N mutating
 * operations (erase, write, progress write), optionally tearing operation N+1 half-way.
 * After the cut every callback fails until amc_simflash_power_on(). The anti-rollback counter
 * is a simulated OTP counter: it only goes up, and a torn write of it does not take.
 * Layout: files 0..n-1 and the backup area each start on a page boundary of one array.
 */
#ifndef AMC_SIMFLASH_H
#define AMC_SIMFLASH_H

#include "amc_patch.h"

#define AMC_SIMFLASH_MAX_AREAS (AMC_CONFIG_MAX_FILES + 1u)

typedef struct amc_simflash {
    uint8_t *mem;                   /* caller-owned, `capacity` bytes */
    uint32_t capacity;
    uint32_t page_size;
    int byte_writable;              /* 1: behave like a file (no erase, writes overwrite) */
    uint32_t area_off[AMC_SIMFLASH_MAX_AREAS], area_size[AMC_SIMFLASH_MAX_AREAS];
    unsigned nfiles;
    uint8_t progress[2][AMC_PROGRESS_SIZE];
    uint64_t counter;               /* the anti-rollback counter (OTP) */
    /* counters */
    uint32_t erases, writes, progress_writes, counter_writes, ops;
    uint32_t outside;               /* writes and erases refused for reaching outside an area */
    uint64_t bytes_written;
    /* faults */
    int cut_armed;                  /* 1: cut power after cut_after operations */
    uint32_t cut_after;             /* operations that complete before the cut */
    int torn;                       /* the cut operation is half done */
    int powered_off;
} amc_simflash_t;

/* Lay out `nfiles` files of the given sizes plus `backup_pages` backup pages; all erased. */
int amc_simflash_init(amc_simflash_t *f, uint8_t *mem, uint32_t capacity, uint32_t page_size,
                      unsigned nfiles, const uint32_t *sizes, uint32_t backup_pages);
/* Program file content directly (test setup; not counted, no fault). */
void amc_simflash_load(amc_simflash_t *f, unsigned file, const uint8_t *data, uint32_t len);
void amc_simflash_power_on(amc_simflash_t *f);      /* clears the cut, keeps the counters */
void amc_simflash_storage(amc_simflash_t *f, amc_storage_t *st, uint32_t backup_pages);

#endif
