/*
 * amc-patch: apply an .amcp blob to a bundle directory on a Linux board, with the POSIX port
 * and libsodium's Ed25519.
 *
 *   amc-patch apply|resume|rollback|verify --dir BUNDLE (--key KEY.pub | --keyring DIR)... BLOB
 *             [--page-size N] [--backup-pages N] [--min-version V]
 *   amc-patch status --dir BUNDLE
 *
 * The trusted public keys form a keyring: `--key` names one file and may be repeated,
 * `--keyring DIR` adds every `*.pub` file in DIR (names starting with a dot are skipped); each
 * holds the 32 raw bytes of an Ed25519 public key, and a blob verifies when its signature
 * verifies with any of them (at most AMC_CONFIG_MAX_KEYS). Keys in DIR must be regular files
 * there: a symbolic link, a folder or a file of another size is refused, and so is a run with
 * no key at all. Rotating a key is adding the new one; removing a key revokes it.
 *
 * The blob's file names are paths relative to BUNDLE. The journal lives in BUNDLE/.amc-patch/
 * (backup pages and the two-slot progress record, which also keeps the installed version).
 * `apply` resumes a half-applied patch of the same blob; `resume` does only that.
 * Prints one `key=value` line on success; on failure `amc-patch: error: ...` on stderr and the
 * error code (AMC_E_...) as exit status; 64 for usage errors (a missing or bad key included),
 * 71 for system errors.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "amc_patch.h"
#include "amc_posix.h"

#define CHUNK 4096
#define EXIT_USAGE 64
#define EXIT_SYSTEM 71

static const char *const state_names[] = {"idle", "applying", "rolling-back", "done"};

static int usage(void)
{
    fprintf(stderr,
            "usage: amc-patch apply|resume|rollback|verify --dir BUNDLE (--key KEY.pub | --keyring DIR)... BLOB\n"
            "                 [--page-size N] [--backup-pages N] [--min-version V]\n"
            "       --key may be repeated; --keyring adds every *.pub in DIR (32 raw bytes each)\n"
            "       amc-patch status --dir BUNDLE\n");
    return EXIT_USAGE;
}

static int fail(int rc)
{
    fprintf(stderr, "amc-patch: error: %s\n", amc_strerror(rc));
    return rc < 0 ? -rc : rc;
}

static int sys_fail(const char *what)
{
    fprintf(stderr, "amc-patch: error: %s: %s\n", what, strerror(errno));
    return EXIT_SYSTEM;
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

static int stream(amc_patch_t *p, const amc_config_t *cfg, int pass, FILE *blob)
{
    static uint8_t chunk[CHUNK];
    size_t n;
    int rc = amc_patch_begin(p, cfg, pass);
    rewind(blob);
    while (rc == 0 && (n = fread(chunk, 1, sizeof chunk, blob)) > 0)
        rc = amc_patch_process(p, chunk, n);
    if (rc == 0 && ferror(blob)) rc = -AMC_E_IO;
    {
        int frc = amc_patch_finish(p);
        return rc ? rc : frc;
    }
}

int main(int argc, char **argv)
{
    const char *cmd, *dir = NULL, *blob_path = NULL;
    const char *key_sources[AMC_CONFIG_MAX_KEYS];
    int key_is_ring[AMC_CONFIG_MAX_KEYS];
    unsigned nsources = 0;
    unsigned long page_size = 4096, backup_pages = 4;
    unsigned long long min_version = 0;
    char paths[AMC_CONFIG_MAX_FILES][4096], backup[4096], progress[4096], journal[4096];
    const char *path_list[AMC_CONFIG_MAX_FILES];
    uint8_t head[CHUNK];
    static amc_keyring_t ring;
    static uint8_t page_buf[1u << 16], buckets[1u << 16];
    amc_file_info_t files[AMC_CONFIG_MAX_FILES];
    amc_posix_t px;
    amc_storage_t storage;
    amc_config_t cfg;
    amc_progress_t prog;
    amc_patch_t p;
    uint64_t version;
    unsigned nfiles, i;
    FILE *fp;
    size_t n;
    int rc, pass, a;

    if (argc < 2) return usage();
    cmd = argv[1];
    for (a = 2; a < argc; a++) {
        const char *opt = argv[a];
        if (a + 1 < argc && strcmp(opt, "--dir") == 0) dir = argv[++a];
        else if (a + 1 < argc && (strcmp(opt, "--key") == 0 || strcmp(opt, "--keyring") == 0)) {
            if (nsources == AMC_CONFIG_MAX_KEYS) {
                fprintf(stderr, "amc-patch: error: more than %u --key/--keyring options\n",
                        (unsigned)AMC_CONFIG_MAX_KEYS);
                return EXIT_USAGE;
            }
            key_is_ring[nsources] = strcmp(opt, "--keyring") == 0;
            key_sources[nsources++] = argv[++a];
        }
        else if (a + 1 < argc && strcmp(opt, "--page-size") == 0) page_size = strtoul(argv[++a], NULL, 0);
        else if (a + 1 < argc && strcmp(opt, "--backup-pages") == 0) backup_pages = strtoul(argv[++a], NULL, 0);
        else if (a + 1 < argc && strcmp(opt, "--min-version") == 0) min_version = strtoull(argv[++a], NULL, 0);
        else if (opt[0] != '-' && !blob_path) blob_path = opt;
        else return usage();
    }
    if (!dir || page_size < 64 || page_size > sizeof page_buf || (page_size & (page_size - 1)) ||
        backup_pages == 0)
        return usage();
    if (join(journal, sizeof journal, dir, ".amc-patch") || join(backup, sizeof backup, journal, "backup") ||
        join(progress, sizeof progress, journal, "progress"))
        return usage();
    if (mkdir(journal, 0755) != 0 && errno != EEXIST) return sys_fail(journal);

    memset(&cfg, 0, sizeof cfg);
    cfg.storage = &storage;
    cfg.verify = amc_verify_ed25519_keyring;
    cfg.verify_ctx = &ring;
    cfg.page_buf = page_buf;
    cfg.bucket_buf = buckets;
    cfg.bucket_buf_size = sizeof buckets;
    cfg.min_version = min_version;

    if (strcmp(cmd, "status") == 0) {
        if (amc_posix_open(&px, NULL, 0, backup, progress) != 0) return sys_fail(journal);
        amc_posix_storage(&px, &storage, (uint32_t)page_size, (uint32_t)backup_pages);
        rc = amc_patch_status(&cfg, &prog);
        amc_posix_close(&px);
        if (rc) return fail(rc);
        printf("state=%s installed_version=%llu done_pages=%lu\n",
               state_names[prog.state & 3], (unsigned long long)prog.installed_version,
               (unsigned long)prog.done_pages);
        return 0;
    }
    if (strcmp(cmd, "apply") == 0 || strcmp(cmd, "resume") == 0) pass = AMC_PASS_APPLY;
    else if (strcmp(cmd, "rollback") == 0) pass = AMC_PASS_ROLLBACK;
    else if (strcmp(cmd, "verify") == 0) pass = AMC_PASS_VERIFY;
    else return usage();
    if (!blob_path) return usage();

    for (i = 0; i < nsources; i++) {
        rc = key_is_ring[i] ? load_keyring(&ring, key_sources[i]) : load_key(&ring, key_sources[i]);
        if (rc) return rc;
    }
    if (ring.count == 0) {
        if (nsources == 0)
            fprintf(stderr, "amc-patch: error: no trusted public key: give --key KEY.pub (repeatable) "
                            "or --keyring DIR\n");
        for (i = 0; i < nsources; i++)      /* only keyrings, all of them empty */
            fprintf(stderr, "amc-patch: error: no trusted keys in %s (no *.pub file): refusing to verify\n",
                    key_sources[i]);
        return EXIT_USAGE;
    }
    if (!(fp = fopen(blob_path, "rb"))) return sys_fail(blob_path);
    n = fread(head, 1, sizeof head, fp);
    if ((rc = amc_blob_info(head, n, &version, &nfiles, files)) != 0) {
        fclose(fp);
        return fail(rc);
    }
    for (i = 0; i < nfiles; i++) {
        struct stat sb;
        if (strstr(files[i].name, "..") || files[i].name[0] == '/') {
            fclose(fp);
            fprintf(stderr, "amc-patch: error: blob names a file outside the bundle: %s\n", files[i].name);
            return AMC_E_FORMAT;
        }
        if (join(paths[i], sizeof paths[i], dir, files[i].name)) {
            fclose(fp);
            return usage();
        }
        path_list[i] = paths[i];
        if (stat(paths[i], &sb) != 0) {
            fclose(fp);
            return sys_fail(paths[i]);
        }
        if ((unsigned long long)sb.st_size != files[i].size) {
            fclose(fp);
            fprintf(stderr, "amc-patch: error: %s is %lld bytes, the blob expects %lu\n", paths[i],
                    (long long)sb.st_size, (unsigned long)files[i].size);
            return AMC_E_BASE;
        }
    }
    if (amc_posix_open(&px, path_list, nfiles, backup, progress) != 0) {
        fclose(fp);
        return sys_fail(dir);
    }
    amc_posix_storage(&px, &storage, (uint32_t)page_size, (uint32_t)backup_pages);

    if (strcmp(cmd, "resume") == 0 || pass == AMC_PASS_ROLLBACK) {
        if ((rc = amc_patch_status(&cfg, &prog)) == 0 && prog.state != AMC_STATE_APPLYING &&
            prog.state != AMC_STATE_ROLLING_BACK) {
            amc_posix_close(&px);
            fclose(fp);
            if (pass == AMC_PASS_ROLLBACK) return fail(-AMC_E_STATE);
            printf("status=idle installed_version=%llu\n", (unsigned long long)prog.installed_version);
            return 0;
        }
    }
    rc = stream(&p, &cfg, AMC_PASS_VERIFY, fp);
    if (rc == 0 && pass != AMC_PASS_VERIFY) rc = stream(&p, &cfg, pass, fp);
    fclose(fp);
    amc_posix_close(&px);
    if (rc) return fail(rc);
    if (pass != AMC_PASS_VERIFY) unlink(backup);
    printf("status=%s version=%llu files=%u writes=%lu fsyncs=%lu\n",
           pass == AMC_PASS_VERIFY ? "verified" : pass == AMC_PASS_APPLY ? "applied" : "rolled-back",
           (unsigned long long)version, nfiles, (unsigned long)px.writes, (unsigned long)px.fsyncs);
    return 0;
}
