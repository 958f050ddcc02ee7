"""The host amc-patch on a bundle directory, as a device runs it: no symbolic link in the bundle
or its journal is followed, target files are opened only once the signature verified (so a
forged blob neither names nor creates anything), the journal's folders are fsynced, the
anti-rollback counter outside the bundle refuses a replay after the journal is wiped, and the
numbers on the command line are parsed strictly."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from amc.patch import blob as pb
from amc.runtime.apply import apply_patch, host_cli

KEY = pb.example_signing_key()
BASE = {"fast.pte": bytes(range(256)) * 8, "slow.pte": bytes(reversed(range(256))) * 8}
# a write on each file: every page it touches goes through the backup first
RECORDS = [pb.RawRecord(0, 100, b"\x01\x02\x03"), pb.RawRecord(1, 1500, b"\x7f")]
USAGE, SIGNATURE, BASE_ERROR, VERSION, STORAGE = 64, 6, 7, 8, 10


@pytest.fixture(scope="module")
def cli() -> Path:
    return host_cli()


@pytest.fixture
def case(tmp_path):
    """A bundle holding BASE, the trusted key file, and the folder around them."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name, data in BASE.items():
        (bundle / name).write_bytes(data)
    (tmp_path / "key.pub").write_bytes(pb.public_key(KEY))
    return tmp_path, bundle


def _blob(folder: Path, name: str, base: dict[str, bytes], records, version: int, key: bytes = KEY):
    blob, new = pb.make_blob(base, records, version, key)
    (folder / name).write_bytes(blob)
    return folder / name, new


def _patch(cli: Path, command: str, bundle: Path, *options) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), command, "--dir", str(bundle), *map(str, options)],
                          capture_output=True, text=True, timeout=60)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _counter(version: int) -> bytes:
    """The counter file's 16 bytes: "AMCV", u64 LE version, first 4 bytes of sha256 of those 12."""
    head = b"AMCV" + struct.pack("<Q", version)
    return head + hashlib.sha256(head).digest()[:4]


# ---- symbolic links ----------------------------------------------------------------------------

@pytest.mark.parametrize("planted", [".amc-patch/backup", ".amc-patch/progress", ".amc-patch"])
def test_a_link_planted_in_the_journal_is_refused_not_written_through(cli, case, planted):
    tmp_path, bundle = case
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.bin").write_bytes(b"keep me" * 1000)
    (bundle / ".amc-patch").mkdir(exist_ok=planted != ".amc-patch")
    if planted == ".amc-patch":
        (bundle / ".amc-patch").rmdir()
        (bundle / planted).symlink_to(outside, target_is_directory=True)
    else:
        (bundle / planted).symlink_to(outside / "victim.bin")
    before = _files(outside)
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", blob)
    assert done.returncode == STORAGE, done.stderr
    assert done.stderr.strip() == f"amc-patch: error: {bundle / planted} is a symbolic link: refusing to follow it " \
        f"(put the {'folder' if planted == '.amc-patch' else 'file'} itself there)"
    assert _files(outside) == before                    # nothing written, nothing made there
    assert (bundle / planted).is_symlink()              # and the link is left for someone to look at
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())


def test_a_folder_link_on_the_way_to_a_target_is_not_followed(cli, case):
    tmp_path, bundle = case
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = bytes(range(256)) * 4
    (elsewhere / "x.bin").write_bytes(data)
    (bundle / "sub").symlink_to(elsewhere, target_is_directory=True)
    blob, _ = _blob(tmp_path, "update.amcp", {"sub/x.bin": data}, [pb.RawRecord(0, 0, b"\x09")], 3)
    for command in ("verify", "apply"):
        done = _patch(cli, command, bundle, "--key", tmp_path / "key.pub", blob)
        assert done.returncode == STORAGE, (command, done.stderr)
        assert f"{bundle / 'sub'} is a symbolic link: refusing to follow it" in done.stderr
    assert (elsewhere / "x.bin").read_bytes() == data


def test_a_target_that_is_a_link_is_refused(cli, case):
    tmp_path, bundle = case
    (tmp_path / "real.pte").write_bytes(BASE["fast.pte"])
    (bundle / "fast.pte").unlink()
    (bundle / "fast.pte").symlink_to(tmp_path / "real.pte")
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", blob)
    assert done.returncode == STORAGE, done.stderr
    assert f"{bundle / 'fast.pte'} is a symbolic link: refusing to follow it" in done.stderr
    assert (tmp_path / "real.pte").read_bytes() == BASE["fast.pte"]
    assert (bundle / "slow.pte").read_bytes() == BASE["slow.pte"]


@pytest.mark.parametrize("name", ["../outside.bin", "/abs/outside.bin", "sub//x.bin", "./fast.pte"])
def test_names_that_are_not_plain_paths_inside_the_bundle_are_refused(cli, case, name):
    tmp_path, bundle = case
    (bundle / "sub").mkdir()
    (bundle / "sub" / "x.bin").write_bytes(BASE["fast.pte"])
    (tmp_path / "outside.bin").write_bytes(BASE["fast.pte"])
    before = _files(tmp_path)
    blob, _ = _blob(tmp_path, "update.amcp", {name: BASE["fast.pte"]}, [pb.RawRecord(0, 0, b"\x09")], 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", blob)
    assert done.returncode == 2, done.stderr                                       # AMC_E_FORMAT
    assert f"the blob names the file '{name}', which is not a path inside the bundle" in done.stderr
    assert _files(tmp_path) == before | {"update.amcp": blob.read_bytes()}


# ---- nothing is opened or made before the signature verified ----------------------------------

def test_a_forged_blob_opens_no_target_and_makes_no_journal(cli, case):
    tmp_path, bundle = case
    base = dict(BASE, **{"missing.pte": bytes(512)})        # a file this bundle does not have
    forged, _ = _blob(tmp_path, "forged.amcp", base, RECORDS, 3, key=hashlib.sha256(b"not it").digest())
    for command in ("verify", "apply"):
        done = _patch(cli, command, bundle, "--key", tmp_path / "key.pub", forged)
        assert done.returncode == SIGNATURE, (command, done.stderr)
        assert "missing" not in done.stderr
    assert not (bundle / ".amc-patch").exists()
    # signed, the same blob gets to the files, and says which one is missing
    signed, _ = _blob(tmp_path, "signed.amcp", base, RECORDS, 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", signed)
    assert done.returncode == BASE_ERROR
    assert f"{bundle / 'missing.pte'} is missing" in done.stderr


def test_a_file_of_another_size_is_the_base_error_with_both_sizes(cli, case):
    tmp_path, bundle = case
    (bundle / "slow.pte").write_bytes(BASE["slow.pte"] + b"!")
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", blob)
    assert done.returncode == BASE_ERROR
    assert f"{bundle / 'slow.pte'} is 2049 bytes, the blob expects 2048" in done.stderr


def test_status_and_verify_make_no_journal(cli, case):
    tmp_path, bundle = case
    status = _patch(cli, "status", bundle)
    assert status.returncode == 0 and status.stdout == "state=idle installed_version=0 done_pages=0\n"
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    assert _patch(cli, "verify", bundle, "--key", tmp_path / "key.pub", blob).returncode == 0
    assert _patch(cli, "resume", bundle, "--key", tmp_path / "key.pub", blob).stdout.startswith("status=idle")
    assert not (bundle / ".amc-patch").exists()


def test_making_the_journal_fsyncs_the_folders_that_gained_an_entry(cli, case, tmp_path):
    """The same blob on two copies of a bundle: one without a journal, one whose journal files
    exist already. Making .amc-patch (the bundle folder fsynced) and its two files (the journal
    folder fsynced, twice) are the three fsyncs the first run has on top."""
    _, bundle = case
    ready = tmp_path / "ready"
    shutil.copytree(bundle, ready)
    (ready / ".amc-patch").mkdir()
    for name in ("backup", "progress"):
        (ready / ".amc-patch" / name).write_bytes(b"")
    blob, new = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    counts = []
    for folder in (bundle, ready):
        done = _patch(cli, "apply", folder, "--key", tmp_path / "key.pub", blob)
        assert done.returncode == 0, done.stderr
        counts.append(int(done.stdout.split("fsyncs=")[1]))
        assert all((folder / name).read_bytes() == data for name, data in new.items())
        assert not (folder / ".amc-patch" / "backup").exists()
    assert counts[0] - counts[1] == 3, counts


# ---- the anti-rollback counter -----------------------------------------------------------------

def test_the_counter_refuses_a_replay_after_the_journal_is_wiped(cli, case):
    """v1 then v2 applied with --counter; then the bundle is back to its first files with no
    journal (a restored or reflashed model partition) and v1 is offered again: the counter,
    outside the bundle, still says 2. The journal alone would take v1 again."""
    tmp_path, bundle = case
    counter = tmp_path / "state" / "installed-version"
    counter.parent.mkdir()
    key = ["--key", tmp_path / "key.pub", "--counter", counter]
    v1, first = _blob(tmp_path, "v1.amcp", BASE, RECORDS, 1)
    v2, second = _blob(tmp_path, "v2.amcp", first, [pb.RawRecord(0, 200, b"\x05")], 2)
    assert _patch(cli, "status", bundle, "--counter", counter).stdout.endswith(" counter=0\n")
    for blob, version in ((v1, 1), (v2, 2)):
        done = _patch(cli, "apply", bundle, *key, blob)
        assert done.returncode == 0, done.stderr
        assert counter.read_bytes() == _counter(version)
    assert all((bundle / name).read_bytes() == data for name, data in second.items())
    status = _patch(cli, "status", bundle, "--counter", counter)
    assert status.stdout == "state=done installed_version=2 done_pages=0 counter=2\n"
    shutil.rmtree(bundle / ".amc-patch")
    for name, data in BASE.items():
        (bundle / name).write_bytes(data)
    for command in ("verify", "apply"):
        replay = _patch(cli, command, bundle, *key, v1)
        assert replay.returncode == VERSION, (command, replay.stderr)
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())
    assert counter.read_bytes() == _counter(2)


@pytest.mark.parametrize("content", [b"", b"AMCV", _counter(5)[:-1] + bytes([_counter(5)[-1] ^ 1]),
                                     b"AMCW" + _counter(5)[4:], _counter(5) + b"\0"])
def test_a_corrupt_counter_refuses_every_patch(cli, case, content):
    tmp_path, bundle = case
    counter = tmp_path / "installed-version"
    counter.write_bytes(content)
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 9)
    message = f"amc-patch: error: {counter} is not a valid version counter"
    for command in ("status", "verify", "apply"):
        extra = [] if command == "status" else ["--key", tmp_path / "key.pub", blob]
        done = _patch(cli, command, bundle, "--counter", counter, *extra)
        assert done.returncode == STORAGE and done.stderr.startswith(message), (command, done.stderr)
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())
    assert counter.read_bytes() == content


def test_a_counter_inside_the_bundle_is_a_usage_error(cli, case):
    tmp_path, bundle = case
    (bundle / "sub").mkdir()
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    for path in (bundle / "installed-version", bundle / "sub" / "v", tmp_path / "bundle" / "sub" / ".." / "v"):
        done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", "--counter", path, blob)
        assert done.returncode == USAGE, (path, done.stderr)
        assert f"{path} lies inside the bundle" in done.stderr
    assert not (bundle / ".amc-patch").exists() and not (bundle / "installed-version").exists()
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())


def test_apply_patch_keeps_the_counter(case):
    tmp_path, bundle = case
    blob, new = _blob(tmp_path, "update.amcp", BASE, RECORDS, 4)
    result = apply_patch(bundle, blob, pb.public_key(KEY), counter=tmp_path / "installed-version")
    assert result.version == 4 and (bundle / "fast.pte").read_bytes() == new["fast.pte"]
    assert (tmp_path / "installed-version").read_bytes() == _counter(4)


# ---- numbers on the command line ---------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--backup-pages", "4294967297"), ("--backup-pages", "0"), ("--backup-pages", "-1"),
    ("--backup-pages", "65537"),                     # with 64 KiB pages: over 4 GiB of backup
    ("--page-size", "0x1000"), ("--page-size", "4096abc"), ("--page-size", "100"),
    ("--page-size", "131072"), ("--page-size", ""),
    ("--min-version", "18446744073709551616"), ("--min-version", " 1"),
])
def test_numbers_are_parsed_strictly(cli, case, option, value):
    tmp_path, bundle = case
    blob, _ = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    pages = ["--page-size", "65536"] if value == "65537" else []
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", *pages, option, value, blob)
    assert done.returncode == USAGE, done.stderr
    assert done.stderr.startswith(f"amc-patch: error: {option} {value}: ") and done.stderr.count("\n") == 1
    assert not (bundle / ".amc-patch").exists()
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())


def test_the_largest_numbers_are_taken(cli, case):
    tmp_path, bundle = case
    blob, new = _blob(tmp_path, "update.amcp", BASE, RECORDS, 3)
    done = _patch(cli, "apply", bundle, "--key", tmp_path / "key.pub", "--page-size", "65536",
                  "--backup-pages", "65536", "--min-version", "2", blob)
    assert done.returncode == 0, done.stderr
    assert all((bundle / name).read_bytes() == data for name, data in new.items())


# ---- two-phase install: install, then commit or roll back ---------------------------------------

INSTALLED, COMMIT_NOTHING, BUSY = "status=installed", 17, 12


def _journal_record(seq: int, state: int, backup_valid: int, page_log2: int, flags: int, done: int,
                    installed: int, digest: bytes, version: int, backup_pages: int) -> bytes:
    """One progress record as docs/patch-format.md lays it out (an install's: 24 digest bytes,
    then its version), with its check word."""
    head = b"AMCJ" + struct.pack("<IBBBBIQ", seq, state, backup_valid, page_log2, flags, done, installed)
    head += digest[:24] + struct.pack("<QI", version, backup_pages)
    return head + hashlib.sha256(head).digest()[:4]


def test_install_then_commit_advances_the_counter(cli, case):
    tmp_path, bundle = case
    counter = tmp_path / "installed-version"
    key = ["--key", tmp_path / "key.pub", "--counter", counter]
    blob, new = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)
    done = _patch(cli, "install", bundle, *key, blob)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("status=installed version=3 files=2 "), done.stdout
    assert all((bundle / name).read_bytes() == data for name, data in new.items())
    assert not counter.exists()                                 # not advanced: still reads 0
    assert (bundle / ".amc-patch" / "backup").is_file()         # kept for a rollback
    status = _patch(cli, "status", bundle, "--counter", counter)
    assert status.stdout == "status=installed version=3 installed_version=0 done_pages=2 counter=0\n"
    for _ in range(2):                                          # and again: idempotent
        commit = _patch(cli, "commit", bundle, "--counter", counter)
        assert commit.returncode == 0, commit.stderr
        assert commit.stdout == "status=committed version=3\n"
        assert counter.read_bytes() == _counter(3)
    assert not (bundle / ".amc-patch" / "backup").exists()
    status = _patch(cli, "status", bundle, "--counter", counter)
    assert status.stdout == "state=done installed_version=3 done_pages=0 counter=3\n"
    assert all((bundle / name).read_bytes() == data for name, data in new.items())
    assert _patch(cli, "apply", bundle, *key, blob).returncode == VERSION      # now a replay


def test_install_then_rollback_restores_the_base_and_keeps_the_counter(cli, case):
    tmp_path, bundle = case
    counter = tmp_path / "installed-version"
    counter.write_bytes(_counter(2))                            # version 2 committed earlier
    blob, new = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)
    install = _patch(cli, "install", bundle, "--key", tmp_path / "key.pub", "--counter", counter, blob)
    assert install.returncode == 0 and install.stdout.startswith(INSTALLED), install.stderr
    assert (bundle / "fast.pte").read_bytes() == new["fast.pte"]
    # as an OTA client rolls back: the blob and the keys, no counter, no geometry
    back = _patch(cli, "rollback", bundle, "--key", tmp_path / "key.pub", blob)
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith("status=rolled-back version=3 "), back.stdout
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())
    assert counter.read_bytes() == _counter(2)
    assert _patch(cli, "status", bundle).stdout == "state=idle installed_version=0 done_pages=0\n"
    assert not (bundle / ".amc-patch" / "backup").exists()
    # nothing to roll back any more; the same blob can be installed again
    again = _patch(cli, "rollback", bundle, "--key", tmp_path / "key.pub", blob)
    assert again.returncode == 14, again.stderr                                  # AMC_E_STATE
    install = _patch(cli, "install", bundle, "--key", tmp_path / "key.pub", "--counter", counter, blob)
    assert install.returncode == 0 and install.stdout.startswith(INSTALLED), install.stderr


def test_commit_with_nothing_installed_is_refused(cli, case):
    tmp_path, bundle = case
    counter = tmp_path / "installed-version"
    done = _patch(cli, "commit", bundle, "--counter", counter)
    assert done.returncode == COMMIT_NOTHING, done.stderr
    assert done.stderr == "amc-patch: error: no installed patch to commit\n" and done.stdout == ""
    assert not (bundle / ".amc-patch").exists() and not counter.exists()
    blob, _ = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)
    assert _patch(cli, "commit", bundle, blob).returncode == USAGE          # commit takes no blob
    # installed and rolled back: nothing installed again
    key = ["--key", tmp_path / "key.pub"]
    assert _patch(cli, "install", bundle, *key, blob).returncode == 0
    assert _patch(cli, "rollback", bundle, *key, blob).returncode == 0
    assert _patch(cli, "commit", bundle, "--counter", counter).returncode == COMMIT_NOTHING
    assert not counter.exists()


def test_a_second_blob_while_installed_is_refused(cli, case):
    tmp_path, bundle = case
    key = ["--key", tmp_path / "key.pub"]
    v3, new = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)
    assert _patch(cli, "install", bundle, *key, v3).returncode == 0
    v4, _ = _blob(tmp_path, "v4.amcp", new, [pb.RawRecord(0, 200, b"\x05")], 4)
    for command in ("apply", "install"):
        done = _patch(cli, command, bundle, *key, v4)
        assert done.returncode == BUSY, (command, done.stderr)
        assert "another patch is half applied" in done.stderr
    assert all((bundle / name).read_bytes() == data for name, data in new.items())
    assert _patch(cli, "status", bundle).stdout.startswith("status=installed version=3 ")
    # the installed blob itself is taken: it stays installed
    done = _patch(cli, "apply", bundle, *key, v3)
    assert done.returncode == 0 and done.stdout.startswith(INSTALLED), done.stderr


def test_resume_of_an_interrupted_install_ends_installed(cli, case):
    """The journal an install leaves when the power goes after its first page was written (a
    record as docs/patch-format.md lays it out, its backup slot holding the page's old content):
    `resume`, with no geometry given, finishes it as an install, not a plain apply."""
    tmp_path, bundle = case
    counter = tmp_path / "installed-version"
    blob, new = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)
    digest = pb.read_blob(blob.read_bytes()).digest
    journal = bundle / ".amc-patch"
    journal.mkdir()
    (journal / "backup").write_bytes(BASE["fast.pte"])                   # slot 0: page 0's old content
    (bundle / "fast.pte").write_bytes(new["fast.pte"])                   # page 0 written
    backup_pages = 3                       # an install's default: the files' two pages and one more
    record = _journal_record(1, 1, 1, 12, 1, 0, 0, digest, 3, backup_pages)   # APPLYING, install
    (journal / "progress").write_bytes(bytes(64) + record)
    status = _patch(cli, "status", bundle)
    assert status.stdout == "state=applying installed_version=0 done_pages=0\n"
    assert _patch(cli, "commit", bundle).returncode == BUSY               # resume or roll back first
    done = _patch(cli, "resume", bundle, "--key", tmp_path / "key.pub", "--counter", counter, blob)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("status=installed version=3 "), done.stdout
    assert all((bundle / name).read_bytes() == data for name, data in new.items())
    assert not counter.exists()
    assert _patch(cli, "status", bundle).stdout == \
        "status=installed version=3 installed_version=0 done_pages=2\n"
    commit = _patch(cli, "commit", bundle, "--counter", counter)
    assert commit.stdout == "status=committed version=3\n" and counter.read_bytes() == _counter(3)


def test_an_install_needs_a_backup_slot_for_every_page_and_one_more(cli, case):
    tmp_path, bundle = case
    blob, new = _blob(tmp_path, "v3.amcp", BASE, RECORDS, 3)              # touches 2 pages
    key = ["--key", tmp_path / "key.pub"]
    done = _patch(cli, "install", bundle, *key, "--backup-pages", "2", blob)
    assert done.returncode == 16, done.stderr                             # AMC_E_NOBACKUP
    assert "backup area too small to roll an install back" in done.stderr
    assert not (bundle / ".amc-patch").exists()
    assert all((bundle / name).read_bytes() == data for name, data in BASE.items())
    done = _patch(cli, "install", bundle, *key, "--backup-pages", "3", blob)
    assert done.returncode == 0 and done.stdout.startswith(INSTALLED), done.stderr
