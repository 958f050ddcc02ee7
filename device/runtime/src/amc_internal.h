/* Helpers shared by the core's sources; not part of the API. Byte loops instead of the C
 * library's mem* functions: they are a few bytes each and keep the core free of libc. */
#ifndef AMC_INTERNAL_H
#define AMC_INTERNAL_H

#include <stddef.h>

#include "amc_patch.h"

#if defined(__GNUC__) || defined(__clang__)
#define AMC_NOINLINE __attribute__((noinline))
#else
#define AMC_NOINLINE
#endif

void amc__copy(void *dst, const void *src, size_t n);
void amc__fill(void *dst, uint8_t value, size_t n);
int amc__differ(const uint8_t *a, const uint8_t *b, size_t n);   /* constant time */

#endif
