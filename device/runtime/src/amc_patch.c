/*
 * amc_patch.c - the streaming parser and the in-place, power-loss safe applier.
 *
 * The blob arrives in chunks, each buffered whole and hashed before the parser sees a byte of
 * it: the first against the root digest the signature covers, every next one against the link
 * (sha256) that ends the chunk before. So in every pass the parser reads only bytes the verify
 * pass authenticated, whatever the stream holds the second time. The parser takes one byte at
 * a time (a small state machine); every length is checked before it is used.
 * Region operations land in one page buffer; a page is written back through the journal:
 *   backup: copy the old page to backup slot (seq % backup_pages), persist (APPLYING, seq, 1)
 *   write:  erase the page, write the new content
 * so after a cut the page is rebuilt from its backup (resume) or restored from it (rollback).
 * An install (cfg.install_only) ends INSTALLED instead of DONE, the backups kept: the counter
 * waits for amc_patch_commit, and a rollback can still restore the base.
 * docs/patch-format.md describes the format and this protocol.
 */
#include "amc_internal.h"

/* Fuzz builds skip the sha256 comparisons so that random inputs reach the apply path. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CHECK_HASHES 0
#else
#define CHECK_HASHES 1
#endif

enum parse_state {
    ST_HEADER, ST_NAME_LEN, ST_NAME, ST_FSIZE, ST_FBASE, ST_FNEW,
    ST_RHEAD, ST_SCOUNT, ST_SGAP, ST_SVAL, ST_HPARAM, ST_HBUCKETS, ST_RAW,
    ST_DIGEST, ST_SIG, ST_END
};

static uint32_t le32(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void put32(uint8_t *b, uint32_t v)
{
    unsigned i;
    for (i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
}

/* ---- hash of hash records ---------------------------------------------------------------- */

uint32_t amc_hash_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

uint32_t amc_hash_index(uint32_t index, uint32_t seed)
{
    return amc_hash_mix32(index ^ amc_hash_mix32(seed));
}

/* ---- progress record --------------------------------------------------------------------- */

/* The check word of a progress record: the first bytes of its sha256, left in s->buf. */
static const uint8_t *record_check(amc_sha256_t *s, const uint8_t rec[AMC_PROGRESS_SIZE])
{
    amc_sha256_init(s);
    amc_sha256_update(s, rec, AMC_PROGRESS_SIZE - 4);
    amc_sha256_final(s, s->buf);
    return s->buf;
}

#define PROGRESS_MAGIC 0x4A434D41u   /* "AMCJ" */
#define INSTALL_DIGEST 24u           /* an install's record: 24 digest bytes, then its version */

static int load_progress(const amc_config_t *cfg, amc_progress_t *out, uint8_t *rec,
                         amc_sha256_t *sha)
{
    const amc_storage_t *st = cfg->storage;
    uint32_t w[6];
    unsigned slot, i;
    int found = 0;
    amc__fill(out, 0, sizeof *out);
    for (slot = 0; slot < 2; slot++) {
        if (st->progress_read(st->ctx, slot, rec) < 0) return -AMC_E_IO;
        for (i = 0; i < 6; i++) w[i] = le32(rec + 4 * i);
        if (w[0] != PROGRESS_MAGIC || amc__differ(rec + 60, record_check(sha, rec), 4)) continue;
        if (found && (int32_t)(w[1] - out->seq) <= 0) continue;
        found = 1;
        out->seq = w[1];
        out->state = (uint8_t)w[2];
        out->backup_valid = (uint8_t)(w[2] >> 8);
        out->install = rec[11] & 1u;
        out->page_size = rec[10] < 32 ? 1u << rec[10] : 0;
        out->backup_pages = le32(rec + 56);
        out->done_pages = w[3];
        out->installed_version = (uint64_t)w[5] << 32 | w[4];
        amc__copy(out->digest, rec + 24, 32);
        out->version = out->install ? (uint64_t)le32(rec + 52) << 32 | le32(rec + 48) : 0;
    }
    return 0;
}

static int save_progress(amc_patch_t *p, uint8_t state, uint32_t done, uint8_t backup_valid)
{
    const amc_storage_t *st = p->cfg->storage;
    uint8_t *rec = p->fld;
    amc_progress_t *g = &p->prog;
    uint32_t w[6];
    unsigned i, log2 = 0;
    while ((1u << log2) < st->page_size) log2++;
    g->seq++;
    g->state = state;
    g->done_pages = done;
    g->backup_valid = backup_valid;
    w[0] = PROGRESS_MAGIC;
    w[1] = g->seq;
    w[2] = (uint32_t)state | (uint32_t)backup_valid << 8 | log2 << 16 | (uint32_t)g->install << 24;
    w[3] = done;
    w[4] = (uint32_t)g->installed_version;
    w[5] = (uint32_t)(g->installed_version >> 32);
    amc__fill(rec, 0, AMC_PROGRESS_SIZE);
    for (i = 0; i < 6; i++) put32(rec + 4 * i, w[i]);
    amc__copy(rec + 24, g->digest, 32);
    if (g->install) {                    /* the version commit installs, over the digest's tail */
        put32(rec + 24 + INSTALL_DIGEST, (uint32_t)g->version);
        put32(rec + 28 + INSTALL_DIGEST, (uint32_t)(g->version >> 32));
    }
    put32(rec + 56, st->backup_pages);
    amc__copy(rec + 60, record_check(&p->sha, rec), 4);
    return st->progress_write(st->ctx, g->seq & 1u, rec) < 0 ? -AMC_E_IO : 0;
}

int amc_patch_status(const amc_config_t *cfg, amc_progress_t *out)
{
    uint8_t rec[AMC_PROGRESS_SIZE];
    amc_sha256_t sha;
    if (!cfg || !cfg->storage || !out) return -AMC_E_ARG;
    return load_progress(cfg, out, rec, &sha);
}

/* ---- storage helpers --------------------------------------------------------------------- */

static int io(int rc) { return rc < 0 ? -AMC_E_IO : 0; }

static int copy_page(amc_patch_t *p, unsigned file, uint32_t off, const uint8_t *buf)
{
    const amc_storage_t *st = p->cfg->storage;
    if (st->erase && st->erase(st->ctx, file, off, p->cur_len) < 0) return -AMC_E_IO;
    return io(st->write(st->ctx, file, off, buf, p->cur_len));
}

/* sha256 of file `file` (its first `size` bytes) into p->sha.buf, read through the page buffer. */
static int hash_file(amc_patch_t *p, unsigned file, uint32_t size)
{
    const amc_storage_t *st = p->cfg->storage;
    uint32_t off = 0;
    amc_sha256_init(&p->sha);
    while (off < size) {
        uint32_t n = size - off < st->page_size ? size - off : st->page_size;
        if (st->read(st->ctx, file, off, p->cfg->page_buf, n) < 0) return -AMC_E_IO;
        amc_sha256_update(&p->sha, p->cfg->page_buf, n);
        off += n;
    }
    amc_sha256_final(&p->sha, p->sha.buf);
    return 0;
}

/* ---- the page walk ----------------------------------------------------------------------- */

/* Write back the page in the buffer (apply pass only; resumed and rollback pages are skipped). */
static int write_back(amc_patch_t *p)
{
    if (p->pass != AMC_PASS_APPLY || p->skip || !p->cur_valid) return 0;
    return copy_page(p, p->cur_file, p->cur_page, p->cfg->page_buf);
}

/* Make the page holding (file, off) the current page: write back the previous one, then load this
 * one (apply), restore it from its backup (rollback) or skip it (already done). */
static int touch(amc_patch_t *p, unsigned file, uint32_t off)
{
    const amc_config_t *cfg = p->cfg;
    const amc_storage_t *st = cfg->storage;
    uint32_t page = off & ~(st->page_size - 1u), slot_off;
    int rc;
    if (p->cur_valid && p->cur_file == file && p->cur_page == page) return 0;
    if (p->cur_valid) {
        if ((rc = write_back(p)) != 0) return rc;
        p->seq++;
    }
    p->cur_valid = 1;
    p->cur_file = file;
    p->cur_page = page;
    p->cur_len = p->file_size[file] - page < st->page_size ? p->file_size[file] - page
                                                             : st->page_size;
    slot_off = (p->seq % st->backup_pages) * st->page_size;
    p->skip = 1;
    if (p->pass == AMC_PASS_ROLLBACK) {
        if (p->seq >= p->limit) return 0;
        if (st->read(st->ctx, AMC_BACKUP_FILE, slot_off, cfg->page_buf, p->cur_len) < 0)
            return -AMC_E_IO;
        return copy_page(p, file, page, cfg->page_buf);
    }
    if (p->pass != AMC_PASS_APPLY || p->seq < p->prog.done_pages) return 0;
    p->skip = 0;
    if (p->seq == p->prog.done_pages && p->prog.backup_valid)
        return io(st->read(st->ctx, AMC_BACKUP_FILE, slot_off, cfg->page_buf, p->cur_len));
    if (st->read(st->ctx, file, page, cfg->page_buf, p->cur_len) < 0) return -AMC_E_IO;
    /* never overwrite the backup the progress record still points at */
    if (p->prog.backup_valid && p->prog.done_pages != p->seq &&
        p->prog.done_pages % st->backup_pages == p->seq % st->backup_pages &&
        (rc = save_progress(p, AMC_STATE_APPLYING, p->seq, 0)) != 0)
        return rc;
    if ((rc = copy_page(p, AMC_BACKUP_FILE, slot_off, cfg->page_buf)) != 0) return rc;
    return save_progress(p, AMC_STATE_APPLYING, p->seq, 1);
}

static int32_t load_elem(const uint8_t *s, unsigned esz)
{
    uint32_t u = 0, sign = 1u << (8 * esz - 1);
    unsigned k = esz;
    while (k--) u = u << 8 | s[k];
    return (int32_t)((u ^ sign) - sign);
}

/* Add each element of the region its bucket's value, saturating. 32-bit arithmetic only:
 * a signed int32 record may not hold INT32_MIN buckets (the format forbids it: refused here). */
static int apply_hash(amc_patch_t *p)
{
    uint32_t n = p->rlen >> p->shift, ms = amc_hash_mix32(p->seed), i = 0;
    int32_t hi = (int32_t)(0x7fffffffu >> (32 - 8 * p->esz)), lo = -hi - 1;
    while (i < n) {
        uint32_t off = p->roff + (i << p->shift), h, b;
        int32_t v, old;
        uint8_t *e;
        int rc = touch(p, p->file, off);
        unsigned k;
        if (rc) return rc;
        if (p->skip) {
            i = (p->cur_page + p->cur_len - p->roff) >> p->shift;
            continue;
        }
        h = amc_hash_mix32(i ^ ms);
        b = (uint32_t)(((uint64_t)h * p->nbuckets) >> 32);
        v = load_elem(p->cfg->bucket_buf + (b << p->shift), p->esz);
        if ((p->rflags & AMC_HASH_SIGNED) && (h & 1u)) v = (int32_t)(0u - (uint32_t)v);
        e = p->cfg->page_buf + (off - p->cur_page);
        old = load_elem(e, p->esz);
        if (v > 0 && old > hi - v) old = hi;
        else if (v < 0 && old < lo - v) old = lo;
        else old += v;
        for (k = 0; k < p->esz; k++) e[k] = (uint8_t)((uint32_t)old >> (8 * k));
        i++;
    }
    return 0;
}

/* Store `n` bytes of new content at (current record's file, off). */
static int put_bytes(amc_patch_t *p, uint32_t off, const uint8_t *src, unsigned n)
{
    uint8_t v[4];   /* src is p->fld, which touch() reuses for the progress record */
    int rc;
    amc__copy(v, src, n);
    rc = touch(p, p->file, off);
    if (rc == 0 && !p->skip) amc__copy(p->cfg->page_buf + (off - p->cur_page), v, n);
    return rc;
}

/* ---- the parser -------------------------------------------------------------------------- */

/* The next field: `need` bytes into dst (NULL: the field buffer), then state `st` acts. */
static AMC_NOINLINE int expect(amc_patch_t *p, uint8_t st, uint32_t need, uint8_t *dst)
{
    p->st = st;
    p->need = need;
    p->got = 0;
    p->dst = dst ? dst : p->fld;
    return 0;
}

static int next_record(amc_patch_t *p)
{
    if (p->ri++ < p->nrecords) {
        return expect(p, ST_RHEAD, AMC_RECORD_HEADER_SIZE, NULL);
    }
    if (p->pos != p->hash_end) return -AMC_E_FORMAT;   /* bytes left over before the digest */
    return expect(p, ST_DIGEST, 32, NULL);
}

static int end_record(amc_patch_t *p)
{
    if (p->pleft != 0) return -AMC_E_FORMAT;
    return next_record(p);
}

static int parse_header(amc_patch_t *p)
{
    const uint8_t *h = p->fld;
    uint64_t v = (uint64_t)le32(h + 12) << 32 | le32(h + 8);
    uint32_t len = le32(h + 16);
    if (le32(h) != 0x50434D41u || (h[4] | h[5] << 8) != AMC_PATCH_FORMAT_VERSION ||
        (h[6] | h[7]) != 0)
        return -AMC_E_FORMAT;
    p->nfiles = (uint32_t)(h[20] | h[21] << 8);
    p->nrecords = le32(h + 24);
    if (p->nfiles == 0 || p->nfiles > AMC_CONFIG_MAX_FILES || (h[22] | h[23]) != 0)
        return -AMC_E_BOUNDS;
    if (len < AMC_HEADER_SIZE + 70u * p->nfiles || len > 0x7fffffffUL) return -AMC_E_BOUNDS;
    p->hash_end = len;
    /* replay and downgrade: only a newer version, or the one whose apply is being finished */
    if (p->pass == AMC_PASS_VERIFY && (v < p->floor || (v == p->floor && !p->resuming)))
        return -AMC_E_VERSION;
    p->version = p->prog.version = v;
    return expect(p, ST_NAME_LEN, 1, NULL);
}

static int parse_record_header(amc_patch_t *p)
{
    const uint8_t *h = p->fld;
    uint32_t size;
    p->kind = h[0];
    p->file = h[1];
    p->esz = h[2];
    p->rflags = h[3];
    p->roff = le32(h + 4);
    p->rlen = le32(h + 8);
    p->pleft = le32(h + 12);
    p->shift = (uint8_t)(p->esz >> 1);
    if (p->file >= p->nfiles) return -AMC_E_BOUNDS;
    size = p->file_size[p->file];
    if (p->kind < AMC_RECORD_SPARSE || p->kind > AMC_RECORD_RAW) return -AMC_E_FORMAT;
    if (p->esz != 1 && p->esz != 2 && p->esz != 4) return -AMC_E_FORMAT;
    if ((p->kind == AMC_RECORD_RAW && p->esz != 1) ||
        p->rflags & ~(p->kind == AMC_RECORD_HASH ? AMC_HASH_SIGNED : 0u))
        return -AMC_E_FORMAT;
    if (p->rlen == 0 || p->rlen > size || p->roff > size - p->rlen ||
        ((p->roff | p->rlen) & (p->esz - 1u)))
        return -AMC_E_BOUNDS;
    /* records are sorted by file then offset and never overlap */
    if (p->file < p->prev_file || (p->file == p->prev_file && p->roff < p->prev_end))
        return -AMC_E_FORMAT;
    p->prev_file = p->file;
    p->prev_end = p->roff + p->rlen;
    if (p->pleft > p->hash_end - p->pos) return -AMC_E_BOUNDS;
    p->first = 1;
    if (p->kind == AMC_RECORD_SPARSE) {
        expect(p, ST_SCOUNT, 4, NULL);
    } else if (p->kind == AMC_RECORD_HASH) {
        expect(p, ST_HPARAM, 8, NULL);
    } else {
        if (p->pleft != p->rlen) return -AMC_E_BOUNDS;
        p->idx = 0;
        expect(p, ST_RAW, 1, NULL);
    }
    return 0;
}

/* A field is complete: act on it and say what comes next. */
static int step(amc_patch_t *p)
{
    uint8_t *f = p->fld;
    int rc;
    switch (p->st) {
    case ST_HEADER:
        return parse_header(p);
    case ST_NAME_LEN:
        if (f[0] == 0 || f[0] > AMC_NAME_MAX) return -AMC_E_BOUNDS;
        return expect(p, ST_NAME, f[0], NULL);
    case ST_NAME:
        return expect(p, ST_FSIZE, 4, NULL);
    case ST_FSIZE:
        p->file_size[p->fi] = le32(f);
        if (p->file_size[p->fi] == 0 || p->file_size[p->fi] > 0x7fffffffUL) return -AMC_E_BOUNDS;
        /* the sha256 a pass checks at its end: base (verify, rollback) or result (apply) */
        return expect(p, ST_FBASE, 32, p->pass != AMC_PASS_APPLY ? p->file_sha[p->fi] : NULL);
    case ST_FBASE:
        return expect(p, ST_FNEW, 32, p->pass == AMC_PASS_APPLY ? p->file_sha[p->fi] : NULL);
    case ST_FNEW:
        if (++p->fi < p->nfiles) {
            return expect(p, ST_NAME_LEN, 1, NULL);
        }
        return next_record(p);
    case ST_RHEAD:
        return parse_record_header(p);
    case ST_SCOUNT:
        p->count = le32(f);
        if (p->count == 0 || p->count > (p->rlen >> p->shift)) return -AMC_E_BOUNDS;
        p->gap = 0;
        return expect(p, ST_SGAP, 1, NULL);
    case ST_SVAL:
        if ((rc = put_bytes(p, p->roff + (p->idx << p->shift), f, p->esz)) != 0) return rc;
        if (--p->count) {
            p->gap = 0;
            return expect(p, ST_SGAP, 1, NULL);
        }
        return end_record(p);
    case ST_HPARAM:
        p->seed = le32(f);
        p->nbuckets = le32(f + 4);
        if (p->nbuckets == 0 || p->nbuckets > (p->cfg->bucket_buf_size >> p->shift))
            return p->nbuckets == 0 ? -AMC_E_BOUNDS : -AMC_E_NOMEM;
        if (p->pleft != p->nbuckets << p->shift) return -AMC_E_BOUNDS;
        return expect(p, ST_HBUCKETS, p->pleft, p->cfg->bucket_buf);
    case ST_HBUCKETS:
        if ((p->rflags & AMC_HASH_SIGNED) && p->esz == 4) {   /* -2^31 has no int32 negation: */
            uint32_t b;                                       /* refused, used or not, as in Python */
            for (b = 0; b < p->nbuckets; b++)
                if (le32(p->cfg->bucket_buf + 4u * b) == 0x80000000u) return -AMC_E_FORMAT;
        }
        if ((rc = apply_hash(p)) != 0) return rc;
        return end_record(p);
    case ST_RAW:
        if ((rc = put_bytes(p, p->roff + p->idx, f, 1)) != 0) return rc;
        if (++p->idx < p->rlen) {
            return expect(p, ST_RAW, 1, NULL);
        }
        return end_record(p);
    case ST_DIGEST:
        if (CHECK_HASHES && amc__differ(f, p->digest, 32)) return -AMC_E_DIGEST;
        if (p->pass == AMC_PASS_VERIFY && p->resuming &&
            amc__differ(p->prog.digest, p->digest, p->prog.install ? INSTALL_DIGEST : 32))
            return -AMC_E_BUSY;
        return expect(p, ST_SIG, 64, NULL);
    case ST_SIG:
        if (p->pass == AMC_PASS_VERIFY &&
            p->cfg->verify(p->cfg->verify_ctx, p->digest, f) != 0)
            return -AMC_E_SIGNATURE;
        p->st = ST_END;
        return 0;
    default:
        return -AMC_E_FORMAT;
    }
}

/* One varint byte of a sparse gap; on its last byte, the entry's index is known. */
static int sparse_gap(amc_patch_t *p, uint8_t b)
{
    uint32_t n = p->rlen >> p->shift, base;
    if (p->got >= 5 || (p->got == 4 && b > 0x0f)) return -AMC_E_BOUNDS;
    p->gap |= (uint32_t)(b & 0x7f) << (7 * p->got);
    p->got++;
    if (b & 0x80) return 0;
    base = p->first ? 0 : p->idx + 1;
    if (base >= n || p->gap >= n - base) return -AMC_E_BOUNDS;
    p->idx = base + p->gap;
    p->first = 0;
    return expect(p, ST_SVAL, p->esz, NULL);
}

static int feed(amc_patch_t *p, uint8_t b)
{
    if (p->st == ST_END) return -AMC_E_FORMAT;                     /* bytes past the end */
    if (p->st < ST_DIGEST && p->pos >= p->hash_end) return -AMC_E_BOUNDS;
    if (p->st >= ST_SCOUNT && p->st <= ST_RAW) {                   /* inside a payload */
        if (p->pleft == 0) return -AMC_E_BOUNDS;
        p->pleft--;
    }
    p->pos++;
    if (p->st == ST_SGAP) return sparse_gap(p, b);
    p->dst[p->got++] = b;
    return p->got == p->need ? step(p) : 0;
}

/* ---- chunks ------------------------------------------------------------------------------ */

/* The first 32 bytes of the first chunk hold the header: its chunk size and content length say
 * how long that chunk is. Read before they are authenticated, so they only size the buffering:
 * the chunk's digest is checked before anything in it is acted on. */
static int first_chunk(amc_patch_t *p)
{
    const uint8_t *h = p->cfg->chunk_buf;
    uint32_t size = le32(h + 28), len = le32(h + 16);
    if (size < AMC_CHUNK_MIN || size > AMC_CHUNK_MAX || (size & (size - 1u))) return -AMC_E_FORMAT;
    if (size + AMC_LINK_SIZE > p->cfg->chunk_buf_size) return -AMC_E_NOMEM;
    if (len < AMC_HEADER_SIZE) return -AMC_E_BOUNDS;
    p->csize = size;
    p->hash_end = len;
    return 0;
}

/* Size the chunk that starts at content position p->pos: csize bytes and a link, or the rest. */
static void next_chunk(amc_patch_t *p)
{
    uint32_t left = p->hash_end - p->pos;
    p->cfill = 0;
    p->cdata = left < p->csize ? left : p->csize;
    p->clen = p->cdata + (left > p->csize ? AMC_LINK_SIZE : 0);
}

/* A whole chunk is buffered: authenticate it, keep its link, then parse its content. */
static int chunk_ready(amc_patch_t *p)
{
    const uint8_t *c = p->cfg->chunk_buf;
    uint32_t i;
    int rc;
    amc_sha256_init(&p->sha);
    amc_sha256_update(&p->sha, c, p->clen);
    amc_sha256_final(&p->sha, p->sha.buf);
    if (p->pos == 0 && p->pass == AMC_PASS_VERIFY)
        amc__copy(p->digest, p->sha.buf, 32);    /* the root: the signature is checked on it */
    else if (CHECK_HASHES && amc__differ(p->sha.buf, p->pos ? p->link : p->digest, 32))
        return -AMC_E_DIGEST;
    amc__copy(p->link, c + p->cdata, p->clen - p->cdata);
    for (i = 0; i < p->cdata; i++)
        if ((rc = feed(p, c[i])) != 0) return rc;
    next_chunk(p);
    return 0;
}

/* ---- the API ----------------------------------------------------------------------------- */

/* The blob's version becomes the installed one: the counter first, so that a cut before the
 * DONE record finishes on the next try (the same version is then accepted), then DONE. */
static int complete(amc_patch_t *p)
{
    const amc_storage_t *st = p->cfg->storage;
    if (st->counter_write && p->version > p->counter && st->counter_write(st->ctx, p->version) < 0)
        return -AMC_E_IO;
    p->prog.installed_version = p->version;
    return save_progress(p, AMC_STATE_DONE, 0, 0);
}

int amc_patch_begin(amc_patch_t *p, const amc_config_t *cfg, int pass)
{
    const amc_storage_t *st;
    uint8_t verified;
    int rc;
    if (!p) return -AMC_E_ARG;
    /* the apply and rollback passes need a verify pass of the same state and config; the
     * root digest it found stays in p->digest, everything before it is reset */
    verified = pass != AMC_PASS_VERIFY && p->cfg == cfg && p->verified;
    amc__fill(p, 0, offsetof(amc_patch_t, digest));
    p->cfg = cfg;
    p->error = -AMC_E_ARG;
    if (!cfg || !(st = cfg->storage) || !st->read || !st->write || !st->progress_read ||
        !st->progress_write || !cfg->verify || !cfg->page_buf || st->page_size < 64 ||
        st->page_size > 65536u || (st->page_size & (st->page_size - 1u)) ||
        st->backup_pages == 0 || st->backup_pages > 0xffffffffu / st->page_size + 1u ||
        !cfg->chunk_buf || cfg->chunk_buf_size < AMC_CHUNK_MIN + AMC_LINK_SIZE ||
        !st->counter_read != !st->counter_write ||
        (pass != AMC_PASS_VERIFY && !verified) || pass < 0 || pass > AMC_PASS_ROLLBACK)
        return p->error;
    p->pass = (uint8_t)pass;
    p->hash_end = AMC_HEADER_SIZE;
    p->clen = AMC_HEADER_SIZE;              /* until first_chunk() knows the first chunk */
    expect(p, ST_HEADER, AMC_HEADER_SIZE, NULL);
    if ((rc = load_progress(cfg, &p->prog, p->fld, &p->sha)) != 0) return p->error = rc;
    if (st->counter_read && st->counter_read(st->ctx, &p->counter) < 0) return p->error = -AMC_E_IO;
    p->floor = p->prog.installed_version;
    if (p->floor < p->counter) p->floor = p->counter;
    if (p->floor < cfg->min_version) p->floor = cfg->min_version;
    /* a patch the journal names (half applied, half rolled back or installed): only its blob */
    p->resuming = p->prog.state != AMC_STATE_IDLE && p->prog.state != AMC_STATE_DONE;
    /* an install, asked for or found half done in the journal, ends INSTALLED */
    p->prog.install = cfg->install_only || (p->resuming && p->prog.install);
    /* resume and rollback walk the pages as the journal numbered them: same geometry only */
    if (p->resuming && (p->prog.page_size != st->page_size || p->prog.backup_pages != st->backup_pages))
        return p->error = -AMC_E_GEOMETRY;
    p->error = 0;
    if (pass == AMC_PASS_VERIFY) return 0;
    /* verify passed with this progress record, so a half-applied patch here is this blob */
    if (pass == AMC_PASS_ROLLBACK) {
        if (!p->resuming) return p->error = -AMC_E_STATE;
        /* pages below limit have backups, and the backup of page `limit` may have been
         * mid-write: all of them must sit in distinct slots */
        p->limit = p->prog.done_pages + p->prog.backup_valid;
        if (p->limit >= st->backup_pages) return p->error = -AMC_E_NOROLLBACK;
        if (p->prog.state != AMC_STATE_ROLLING_BACK)
            p->error = save_progress(p, AMC_STATE_ROLLING_BACK, p->prog.done_pages,
                                     p->prog.backup_valid);
        return p->error;
    }
    if (p->prog.state == AMC_STATE_ROLLING_BACK) return p->error = -AMC_E_BUSY;
    /* the first progress record is written with the first backup (touch) */
    if (!p->resuming) amc__copy(p->prog.digest, p->digest, 32);
    return 0;
}

int amc_patch_process(amc_patch_t *p, const uint8_t *data, size_t len)
{
    if (!p || (!data && len)) return -AMC_E_ARG;
    while (len && !p->error) {
        size_t take;
        if (p->clen == 0) {                 /* past the chunks: the trailer */
            p->error = feed(p, *data++);
            len--;
            continue;
        }
        take = p->clen - p->cfill < len ? p->clen - p->cfill : len;
        amc__copy(p->cfg->chunk_buf + p->cfill, data, take);
        p->cfill += (uint32_t)take;
        data += take;
        len -= take;
        if (p->cfill < p->clen) continue;
        if (p->csize == 0) {
            if ((p->error = first_chunk(p)) != 0) break;
            next_chunk(p);
            p->cfill = AMC_HEADER_SIZE;     /* the header is already in the buffer */
            if (p->cfill < p->clen) continue;
        }
        p->error = chunk_ready(p);
    }
    return p->error;
}

int amc_patch_finish(amc_patch_t *p)
{
    const amc_storage_t *st;
    uint32_t i;
    int rc;
    if (!p) return -AMC_E_ARG;
    if (p->error) goto out;
    if (p->st != ST_END) {
        p->error = -AMC_E_TRUNCATED;
        goto out;
    }
    st = p->cfg->storage;
    /* the last page: no progress write after it (redoing it from its backup is harmless) */
    if ((rc = write_back(p)) != 0) goto fail;
    /* an install must stay revertible: every touched page in its own slot, and one more (the
     * rollback rule: the backup of the page after `done` may be mid-write) */
    if (p->pass == AMC_PASS_VERIFY && p->prog.install &&
        p->seq + p->cur_valid >= st->backup_pages) {
        rc = -AMC_E_NOBACKUP;
        goto fail;
    }
    /* the files: base (verify: only now, after the signature; rollback) or result (apply) */
    for (i = 0; i < p->nfiles && !(p->pass == AMC_PASS_VERIFY && p->resuming); i++) {
        if ((rc = hash_file(p, i, p->file_size[i])) != 0) goto fail;
        if (CHECK_HASHES && amc__differ(p->sha.buf, p->file_sha[i], 32)) {
            rc = p->pass == AMC_PASS_APPLY ? -AMC_E_RESULT : -AMC_E_BASE;
            goto fail;
        }
    }
    if (p->pass == AMC_PASS_VERIFY) {
        p->verified = 1;
        return 0;
    }
    if (p->pass == AMC_PASS_ROLLBACK) rc = save_progress(p, AMC_STATE_IDLE, 0, 0);
    /* an install keeps its backups (done = every page, for a rollback) and the counter */
    else if (p->prog.install) rc = save_progress(p, AMC_STATE_INSTALLED, p->seq + p->cur_valid, 0);
    else rc = complete(p);
fail:
    p->error = rc;
out:
    p->verified = 0;
    return p->error;
}

int amc_patch_commit(amc_patch_t *p, const amc_config_t *cfg)
{
    /* the checks, the journal and the counter as a verify pass reads them; nothing verified */
    int rc = amc_patch_begin(p, cfg, AMC_PASS_VERIFY);
    if (rc) return rc;
    if (p->prog.state == AMC_STATE_DONE) return 0;       /* committed already: nothing to do */
    if (p->prog.state != AMC_STATE_INSTALLED)
        return p->prog.state == AMC_STATE_IDLE ? -AMC_E_NOTINSTALLED : -AMC_E_BUSY;
    p->version = p->prog.version;
    return complete(p);
}
