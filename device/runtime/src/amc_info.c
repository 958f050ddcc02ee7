/* Error names and the blob file table reader for hosts; neither is on the apply path. */
#include <string.h>

#include "amc_patch.h"

const char *amc_strerror(int error)
{
#define AMC_ERROR_NAME_(name, code, text) [code] = text,
    static const char *const names[] = { AMC_ERROR_LIST(AMC_ERROR_NAME_) };
#undef AMC_ERROR_NAME_
    unsigned code = (unsigned)(error < 0 ? -error : error);
    return code < sizeof names / sizeof names[0] && names[code] ? names[code] : "unknown error";
}

static uint32_t rd32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* Content byte `pos` of a blob whose chunks of `chunk` bytes are each followed by a link. */
static const uint8_t *content_at(const uint8_t *blob, size_t len, uint32_t chunk, size_t pos)
{
    size_t at = pos + (pos / chunk) * AMC_LINK_SIZE;
    return at < len ? blob + at : NULL;
}

int amc_blob_info(const uint8_t *blob, size_t len, uint64_t *version, unsigned *file_count,
                  amc_file_info_t files[AMC_CONFIG_MAX_FILES])
{
    size_t pos = AMC_HEADER_SIZE;
    const uint8_t *b;
    uint32_t chunk;
    unsigned i, n, k;
    if (!blob || !version || !file_count || !files) return -AMC_E_ARG;
    if (len < AMC_HEADER_SIZE) return -AMC_E_TRUNCATED;
    chunk = rd32(blob + 28);
    if (memcmp(blob, "AMCP", 4) != 0 || (blob[4] | blob[5] << 8) != AMC_PATCH_FORMAT_VERSION ||
        chunk < AMC_CHUNK_MIN || chunk > AMC_CHUNK_MAX || (chunk & (chunk - 1u)))
        return -AMC_E_FORMAT;
    n = (unsigned)(blob[20] | blob[21] << 8);
    if (n == 0 || n > AMC_CONFIG_MAX_FILES) return -AMC_E_BOUNDS;
    *version = (uint64_t)rd32(blob + 12) << 32 | rd32(blob + 8);
    *file_count = n;
    for (i = 0; i < n; i++) {        /* byte by byte: fields may straddle a link */
        uint8_t field[4 + 64];
        unsigned name_len;
        if (!(b = content_at(blob, len, chunk, pos++))) return -AMC_E_TRUNCATED;
        name_len = *b;
        if (name_len == 0 || name_len > AMC_NAME_MAX) return -AMC_E_BOUNDS;
        for (k = 0; k < name_len + sizeof field; k++, pos++) {
            if (!(b = content_at(blob, len, chunk, pos))) return -AMC_E_TRUNCATED;
            if (k < name_len) files[i].name[k] = (char)*b;
            else field[k - name_len] = *b;
        }
        files[i].name[name_len] = '\0';
        files[i].size = rd32(field);
        memcpy(files[i].base_sha256, field + 4, 32);
        memcpy(files[i].new_sha256, field + 36, 32);
    }
    return 0;
}
