/*
 * amc-patch: apply an .amcp blob to a bundle directory on a Linux board, with the POSIX port
 * and libsodium's Ed25519.
 *
 *   amc-patch apply|install|resume|rollback|verify --dir BUNDLE (--key KEY.pub | --keyring DIR)... BLOB
 *             [--counter FILE] [--page-size N] [--backup-pages N] [--min-version V]
 *   amc-patch commit --dir BUNDLE [--counter FILE]
 *   amc-patch status --dir BUNDLE [--counter FILE]
 *
 * The trusted public keys form a keyring: `--key` names one file and may be repeated,
 * `--keyring DIR` adds every `*.pub` file in DIR (names starting with a dot are skipped); each
 * holds the 32 raw bytes of an Ed25519 public key, and a blob verifies when its signature
 * verifies with any of them (at most AMC_CONFIG_MAX_KEYS). Keys in DIR must be regular files
 * there: a symbolic link, a folder or a file of another size is refused, and so is a run with
 * no key at all. Rotating a key is adding the new one; removing a key revokes it.
 *
 * The blob's file names are paths relative to BUNDLE, opened without following a symbolic link
 * (in the bundle or its journal, a link is refused, never followed) and only when the core first
 * touches them, after the signature verified. The journal lives in BUNDLE/.amc-patch/ (backup
 * pages and the two-slot progress record, which also keeps the installed version), made on the
 * first write of a patch: `verify` and `status` never make it.
 * `--counter FILE` keeps the installed version also in FILE, outside BUNDLE (refused inside
 * it), so a blob older than the last one installed stays refused after the journal is wiped; a
 * missing FILE reads as 0, a corrupt one refuses every patch. `status` then prints it too.
 * `apply` resumes a half-applied patch of the same blob; `resume` does only that.
 *
 * Two-phase install (an OTA client's install, health check, then commit or roll back):
 *   `install` verifies and applies the blob but leaves the version uncommitted: it ends
 *     `status=installed version=N ...` with the new files in place, the backups kept and the
 *     counter as it was. A cut during it: `resume` (or `install` again) ends `status=installed`.
 *     Another blob is refused while one is installed (exit status 12, AMC_E_BUSY).
 *   `commit` keeps the install for good: the counter FILE advances to its version, then the
 *     journal says done and the backup file goes; it prints `status=committed version=N`. It
 *     needs no blob or key (the journal holds the version) and may be repeated (after a cut
 *     during it, run it again; in state done it changes nothing and prints the same line).
 *     With nothing installed it fails with exit status 17 (AMC_E_NOTINSTALLED), while a patch is
 *     half applied with 12 (AMC_E_BUSY). Without --counter only the journal advances.
 *   `rollback BLOB` from an install restores the base files (`status=rolled-back ...`), the
 *     counter untouched. `status` prints `status=installed version=N installed_version=M
 *     done_pages=P [counter=C]` while one is installed (M: the last committed version).
 * Page size and backup area: when not given, a patch the journal holds in progress (half
 * applied, half rolled back or installed) takes the journal's own; else 4096-byte pages and 4
 * backup pages, or for `install` a backup page for every page of the blob's files and one more
 * (an install is refused, exit status 16, when its backup area cannot hold every page it
 * touches and one more: it must stay revertible). The backup file grows only to the pages written.
 * Numbers are decimal: page size a power of two from 64 to 65536, backup pages at least 1 and
 * at most 4 GiB in all, min version a u64.
 * Prints one `key=value` line on success; on failure `amc-patch: error: ...` on stderr and the
 * error code (AMC_E_...) as exit status; 64 for usage errors (a missing or bad key, a bad number
 * or counter path included), 71 for system errors.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amc_patch.h"
#include "amc_posix.h"

#define CHUNK 4096
#define EXIT_USAGE 64
#define EXIT_SYSTEM 71

static const char *const state_names[] = {"idle", "applying", "rolling-back", "done", "installed"};

static int usage(void)
{
    fprintf(stderr,
            "usage: amc-patch apply|install|resume|rollback|verify --dir BUNDLE (--key KEY.pub | --keyring DIR)...\n"
            "                 BLOB [--counter FILE] [--page-size N] [--backup-pages N] [--min-version V]\n"
            "       amc-patch commit --dir BUNDLE [--counter FILE]\n"
            "       amc-patch status --dir BUNDLE [--counter FILE]\n"
            "       install: applied, not committed (commit, or rollback BLOB, decides)\n"
            "       --key may be repeated; --keyring adds every *.pub in DIR (32 raw bytes each)\n"
            "       --counter FILE: the installed version, kept outside BUNDLE (anti-rollback)\n");
    return EXIT_USAGE;
}

static int fail(int rc)
{
    fprintf(stderr, "amc-patch: error: %s\n", amc_strerror(rc));
    return rc < 0 ? -rc : rc;
}

/* A pass's failure: the port's own reason when a storage callback refused, else the core's. */
static int patch_fail(int rc, const amc_posix_t *px)
{
    if (rc == -AMC_E_IO && px->error) {
        fprintf(stderr, "amc-patch: error: %s\n", px->why);
        return px->error;
    }
    return fail(rc);
}

static int sys_fail(const char *what)
{
    fprintf(stderr, "amc-patch: error: %s: %s\n", what, strerror(errno));
    return EXIT_SYSTEM;
}

/* The decimal number `text` given to option `opt`, in [lo, hi]: digits only (no sign, base
 * prefix or blank), no overflow. 0, or EXIT_USAGE after saying what is wrong. */
static int parse_number(const char *opt, const char *text, uint64_t lo, uint64_t hi, uint64_t *out)
{
    const char *c;
    uint64_t v = 0;
    for (c = text; *c >= '0' && *c <= '9'; c++) {
        unsigned digit = (unsigned)(*c - '0');
        if (v > (UINT64_MAX - digit) / 10) break;
        v = v * 10 + digit;
    }
    if (c == text || *c || v < lo || v > hi) {
        fprintf(stderr, "amc-patch: error: %s %s: expected a whole number from %llu to %llu\n", opt, text,
                (unsigned long long)lo, (unsigned long long)hi);
        return EXIT_USAGE;
    }
    *out = v;
    return 0;
}

/* dst = a "/" b, or -1 when it does not fit */
static int join(char *dst, size_t size, const char *a, const char *b)
{
    int n = snprintf(dst, size, "%s/%s", a, b);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Add the key held by the open file `fd` (named `shown` in messages) to the ring; closes fd.
 * Returns 0, or the exit status after printing why. */
static int add_key(amc_keyring_t *ring, int fd, const char *shown)
{
    uint8_t extra;
    struct stat sb;
    ssize_t n;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return sys_fail(shown);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        fprintf(stderr, "amc-patch: error: %s: not a regular file; a public key file holds 32 raw bytes\n", shown);
        return EXIT_USAGE;
    }
    if (ring->count >= AMC_CONFIG_MAX_KEYS) {
        close(fd);
        fprintf(stderr, "amc-patch: error: %s: more than %u trusted keys (AMC_CONFIG_MAX_KEYS)\n", shown,
                (unsigned)AMC_CONFIG_MAX_KEYS);
        return EXIT_USAGE;
    }
    n = read(fd, ring->keys[ring->count], 32);
    if (n == 32 && read(fd, &extra, 1) == 0) {
        close(fd);
        ring->count++;
        return 0;
    }
    close(fd);
    fprintf(stderr, "amc-patch: error: %s: a public key file holds exactly 32 raw bytes\n", shown);
    return EXIT_USAGE;
}

static int load_key(amc_keyring_t *ring, const char *path)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return sys_fail(path);
    return add_key(ring, fd, path);
}

/* Every DIR/NAME.pub (NAME not starting with a dot), opened without following links. */
static int load_keyring(amc_keyring_t *ring, const char *dir)
{
    char shown[4096];
    struct dirent *entry;
    DIR *d = opendir(dir);
    int rc = 0;
    if (!d) return sys_fail(dir);
    while (rc == 0 && (errno = 0, entry = readdir(d)) != NULL) {
        size_t len = strlen(entry->d_name);
        int fd;
        if (entry->d_name[0] == '.' || len < 5 || strcmp(entry->d_name + len - 4, ".pub") != 0) continue;
        if (join(shown, sizeof shown, dir, entry->d_name)) {
            rc = usage();
            break;
        }
        fd = openat(dirfd(d), entry->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0 && errno == ELOOP) {
            fprintf(stderr, "amc-patch: error: %s: a symbolic link; a keyring holds the key files themselves\n",
                    shown);
            rc = EXIT_USAGE;
        } else if (fd < 0) {
            rc = sys_fail(shown);
        } else {
            rc = add_key(ring, fd, shown);
        }
    }
    if (rc == 0 && errno != 0) rc = sys_fail(dir);
    closedir(d);
    return rc;
}

/* One pass over the blob: first `head`, the bytes whose file table named the files to the port
 * (so the names used are those of the blob the core verifies), then the rest of the file. */
static int stream(amc_patch_t *p, const amc_config_t *cfg, int pass, FILE *blob, const uint8_t *head,
                  size_t head_len)
{
    static uint8_t chunk[CHUNK];
    size_t n;
    int rc = amc_patch_begin(p, cfg, pass), frc;
    if (rc == 0) rc = amc_patch_process(p, head, head_len);
    if (rc == 0 && fseek(blob, (long)head_len, SEEK_SET) != 0) rc = -AMC_E_IO;
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, blob)) > 0)
        rc = amc_patch_process(p, chunk, n);
    if (rc == 0 && ferror(blob)) rc = -AMC_E_IO;
    frc = amc_patch_finish(p);
    return rc ? rc : frc;
}

/* The options after the command. */
typedef struct options {
    const char *dir, *blob, *counter;
    const char *key_sources[AMC_CONFIG_MAX_KEYS];
    int key_is_ring[AMC_CONFIG_MAX_KEYS];
    unsigned nsources;
    uint64_t page_size, backup_pages, min_version;
    int page_size_given, backup_pages_given;
} options_t;

/* 0, or the exit status after saying what is wrong. */
static int parse_options(options_t *o, int argc, char **argv)
{
    const char *page_size = NULL, *backup_pages = NULL;
    int a, rc;
    memset(o, 0, sizeof *o);
    o->page_size = 4096;
    o->backup_pages = 4;
    for (a = 2; a < argc; a++) {
        const char *opt = argv[a];
        if (a + 1 < argc && strcmp(opt, "--dir") == 0) o->dir = argv[++a];
        else if (a + 1 < argc && (strcmp(opt, "--key") == 0 || strcmp(opt, "--keyring") == 0)) {
            if (o->nsources == AMC_CONFIG_MAX_KEYS) {
                fprintf(stderr, "amc-patch: error: more than %u --key/--keyring options\n",
                        (unsigned)AMC_CONFIG_MAX_KEYS);
                return EXIT_USAGE;
            }
            o->key_is_ring[o->nsources] = strcmp(opt, "--keyring") == 0;
            o->key_sources[o->nsources++] = argv[++a];
        }
        else if (a + 1 < argc && strcmp(opt, "--counter") == 0) o->counter = argv[++a];
        else if (a + 1 < argc && strcmp(opt, "--page-size") == 0) page_size = argv[++a];
        else if (a + 1 < argc && strcmp(opt, "--backup-pages") == 0) backup_pages = argv[++a];
        else if (a + 1 < argc && strcmp(opt, "--min-version") == 0) {
            if ((rc = parse_number(opt, argv[++a], 0, UINT64_MAX, &o->min_version)) != 0) return rc;
        }
        else if (opt[0] != '-' && !o->blob) o->blob = opt;
        else return usage();
    }
    if (!o->dir) return usage();
    o->page_size_given = page_size != NULL;
    o->backup_pages_given = backup_pages != NULL;
    if (page_size && (rc = parse_number("--page-size", page_size, 64, 65536, &o->page_size)) != 0) return rc;
    if (o->page_size & (o->page_size - 1)) {
        fprintf(stderr, "amc-patch: error: --page-size %s: expected a power of two from 64 to 65536\n", page_size);
        return EXIT_USAGE;
    }
    if (backup_pages &&
        (rc = parse_number("--backup-pages", backup_pages, 1, UINT32_MAX, &o->backup_pages)) != 0)
        return rc;
    if (o->backup_pages * o->page_size > (uint64_t)1 << 32) {      /* both below 2^32: no overflow */
        fprintf(stderr, "amc-patch: error: --backup-pages %llu: %llu pages of %llu bytes are over the 4 GiB "
                "a backup area may hold\n", (unsigned long long)o->backup_pages,
                (unsigned long long)o->backup_pages, (unsigned long long)o->page_size);
        return EXIT_USAGE;
    }
    return 0;
}

/* The keyring from --key and --keyring; 0, or the exit status after saying what is wrong. */
static int load_keys(amc_keyring_t *ring, const options_t *o)
{
    unsigned i;
    int rc;
    for (i = 0; i < o->nsources; i++) {
        rc = o->key_is_ring[i] ? load_keyring(ring, o->key_sources[i]) : load_key(ring, o->key_sources[i]);
        if (rc) return rc;
    }
    if (ring->count) return 0;
    if (o->nsources == 0)
        fprintf(stderr, "amc-patch: error: no trusted public key: give --key KEY.pub (repeatable) "
                        "or --keyring DIR\n");
    for (i = 0; i < o->nsources; i++)      /* only keyrings, all of them empty */
        fprintf(stderr, "amc-patch: error: no trusted keys in %s (no *.pub file): refusing to verify\n",
                o->key_sources[i]);
    return EXIT_USAGE;
}

static int status(amc_posix_t *px, const amc_config_t *cfg, const options_t *o)
{
    const amc_storage_t *st = cfg->storage;
    amc_progress_t prog;
    uint64_t counter;
    int rc = amc_patch_status(cfg, &prog);
    if (rc) return patch_fail(rc, px);
    if (o->counter && st->counter_read(st->ctx, &counter) != 0) return patch_fail(-AMC_E_IO, px);
    if (prog.state == AMC_STATE_INSTALLED)
        printf("status=installed version=%llu", (unsigned long long)prog.version);
    else
        printf("state=%s", prog.state <= AMC_STATE_DONE ? state_names[prog.state] : "unknown");
    printf(" installed_version=%llu done_pages=%lu", (unsigned long long)prog.installed_version,
           (unsigned long)prog.done_pages);
    if (o->counter) printf(" counter=%llu", (unsigned long long)counter);
    printf("\n");
    return 0;
}

/* A patch the journal names: half applied, half rolled back, or installed. */
static int in_progress(const amc_progress_t *prog)
{
    return prog->state == AMC_STATE_APPLYING || prog->state == AMC_STATE_ROLLING_BACK ||
           prog->state == AMC_STATE_INSTALLED;
}

/* The page size and backup area of the storage: as given; else, for a patch the journal holds in
 * progress, the journal's own (so resume, rollback and commit need no options); else 4096-byte
 * pages and 4 backup pages, or for an install a slot for every page of the blob's files and one
 * more (the backup file grows only to the pages written). */
static void pick_geometry(amc_storage_t *st, const options_t *o, const amc_progress_t *prog, int install,
                          const amc_file_info_t *files, unsigned nfiles)
{
    uint64_t page = o->page_size, backup = o->backup_pages, pages = 1;
    unsigned i;
    int journal = in_progress(prog) && prog->page_size >= 64 && prog->page_size <= 65536 &&
                  prog->backup_pages >= 1;
    if (!o->page_size_given && journal) page = prog->page_size;
    if (!o->backup_pages_given && journal) {
        backup = prog->backup_pages;
    } else if (!o->backup_pages_given && install) {
        for (i = 0; i < nfiles; i++) pages += (files[i].size + page - 1) / page;
        backup = pages < ((uint64_t)1 << 32) / page ? pages : ((uint64_t)1 << 32) / page;
    }
    st->page_size = (uint32_t)page;
    st->backup_pages = (uint32_t)backup;
}

/* verify, apply, install, resume or rollback the blob; the files are opened by the port as the
 * core touches them */
static int patch(const char *cmd, int pass, amc_posix_t *px, amc_storage_t *st, amc_config_t *cfg,
                 const options_t *o)
{
    static uint8_t head[CHUNK];
    static amc_patch_t p;
    amc_file_info_t files[AMC_CONFIG_MAX_FILES];
    amc_progress_t prog;
    uint64_t version;
    unsigned nfiles;
    size_t n;
    FILE *fp;
    int rc, installed;

    if (!(fp = fopen(o->blob, "rb"))) return sys_fail(o->blob);
    n = fread(head, 1, sizeof head, fp);
    if (ferror(fp)) {
        fclose(fp);
        return sys_fail(o->blob);
    }
    if ((rc = amc_blob_info(head, n, &version, &nfiles, files)) != 0) {
        fclose(fp);
        return fail(rc);
    }
    amc_posix_files(px, files, nfiles);      /* nfiles <= AMC_CONFIG_MAX_FILES: it cannot fail */
    if ((rc = amc_patch_status(cfg, &prog)) != 0) {
        fclose(fp);
        return patch_fail(rc, px);
    }
    cfg->install_only = strcmp(cmd, "install") == 0;
    pick_geometry(st, o, &prog, cfg->install_only, files, nfiles);
    if ((strcmp(cmd, "resume") == 0 || pass == AMC_PASS_ROLLBACK) && !in_progress(&prog)) {
        fclose(fp);
        if (pass == AMC_PASS_ROLLBACK) return fail(-AMC_E_STATE);
        printf("status=idle installed_version=%llu\n", (unsigned long long)prog.installed_version);
        return 0;
    }
    rc = stream(&p, cfg, AMC_PASS_VERIFY, fp, head, n);
    if (rc == 0 && pass != AMC_PASS_VERIFY) rc = stream(&p, cfg, pass, fp, head, n);
    fclose(fp);
    if (rc) return patch_fail(rc, px);
    /* an install (asked for, or the one a resume finished) keeps its backups for a rollback */
    if (pass != AMC_PASS_VERIFY && (rc = amc_patch_status(cfg, &prog)) != 0) return patch_fail(rc, px);
    installed = pass == AMC_PASS_APPLY && prog.state == AMC_STATE_INSTALLED;
    if (pass != AMC_PASS_VERIFY && !installed && amc_posix_remove_backup(px) != 0)   /* done all the same */
        fprintf(stderr, "amc-patch: warning: %s\n", px->why);
    printf("status=%s version=%llu files=%u writes=%lu fsyncs=%lu\n",
           pass == AMC_PASS_VERIFY ? "verified" : installed ? "installed" :
           pass == AMC_PASS_APPLY ? "applied" : "rolled-back",
           (unsigned long long)version, nfiles, (unsigned long)px->writes, (unsigned long)px->fsyncs);
    return 0;
}

/* Commit the installed patch: the counter, then the journal's DONE (amc_patch_commit). */
static int commit(amc_posix_t *px, amc_storage_t *st, const amc_config_t *cfg, const options_t *o)
{
    static amc_patch_t p;
    amc_progress_t prog;
    int rc = amc_patch_status(cfg, &prog);
    if (rc) return patch_fail(rc, px);
    pick_geometry(st, o, &prog, 0, NULL, 0);
    if ((rc = amc_patch_commit(&p, cfg)) != 0 || (rc = amc_patch_status(cfg, &prog)) != 0)
        return patch_fail(rc, px);
    if (amc_posix_remove_backup(px) != 0)    /* committed all the same */
        fprintf(stderr, "amc-patch: warning: %s\n", px->why);
    printf("status=committed version=%llu\n", (unsigned long long)prog.installed_version);
    return 0;
}

int main(int argc, char **argv)
{
    static uint8_t page_buf[1u << 16], chunk_buf[AMC_CHUNK_MAX + AMC_LINK_SIZE], buckets[1u << 16];
    static amc_keyring_t ring;
    const char *cmd;
    options_t o;
    amc_posix_t px;
    amc_storage_t storage;
    amc_config_t cfg;
    int rc, pass = -1;

    if (argc < 2) return usage();
    cmd = argv[1];
    if (strcmp(cmd, "apply") == 0 || strcmp(cmd, "install") == 0 || strcmp(cmd, "resume") == 0)
        pass = AMC_PASS_APPLY;
    else if (strcmp(cmd, "rollback") == 0) pass = AMC_PASS_ROLLBACK;
    else if (strcmp(cmd, "verify") == 0) pass = AMC_PASS_VERIFY;
    else if (strcmp(cmd, "status") != 0 && strcmp(cmd, "commit") != 0) return usage();
    if ((rc = parse_options(&o, argc, argv)) != 0) return rc;
    if (pass >= 0) {
        if (!o.blob) return usage();
        if ((rc = load_keys(&ring, &o)) != 0) return rc;
    } else if (strcmp(cmd, "commit") == 0 && o.blob) {
        return usage();         /* the journal holds what a commit needs */
    }

    if (amc_posix_open(&px, o.dir) != 0) {
        fprintf(stderr, "amc-patch: error: %s\n", px.why);
        amc_posix_close(&px);
        return EXIT_SYSTEM;
    }
    if (o.counter && amc_posix_counter(&px, o.counter) != 0) {
        fprintf(stderr, "amc-patch: error: --counter %s\n", px.why);
        amc_posix_close(&px);
        return EXIT_USAGE;
    }
    amc_posix_storage(&px, &storage, (uint32_t)o.page_size, (uint32_t)o.backup_pages);
    memset(&cfg, 0, sizeof cfg);
    cfg.storage = &storage;
    cfg.verify = amc_verify_ed25519_keyring;
    cfg.verify_ctx = &ring;
    cfg.page_buf = page_buf;
    cfg.chunk_buf = chunk_buf;
    cfg.chunk_buf_size = sizeof chunk_buf;
    cfg.bucket_buf = buckets;
    cfg.bucket_buf_size = sizeof buckets;
    cfg.min_version = o.min_version;

    if (pass >= 0) rc = patch(cmd, pass, &px, &storage, &cfg, &o);
    else if (strcmp(cmd, "commit") == 0) rc = commit(&px, &storage, &cfg, &o);
    else rc = status(&px, &cfg, &o);
    amc_posix_close(&px);
    return rc;
}
