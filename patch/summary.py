"""What a patch blob holds, without applying it (`amc inspect BLOB.amcp`): format and model
version, the files with their base and result sha256, records and bytes by kind, the payload's
share of the blob, and whether the signature verifies with the keys given, or with the
development key."""

from __future__ import annotations

from amc.patch import blob as pb
from amc.patch.keys import development_key, fingerprint

KINDS = {pb.SparseRecord: "sparse", pb.HashRecord: "hash", pb.RawRecord: "raw"}


def summarize_blob(data: bytes, keyring: dict[str, bytes] | None = None) -> dict:
    """`keyring`: name -> raw public key, the keys to check the signature against."""
    parsed = pb.read_blob(data)
    files = list(parsed.files)
    kinds: dict[str, dict] = {}
    for record in parsed.records:
        entry = kinds.setdefault(KINDS[type(record)], {"records": 0, "bytes": 0, "region_bytes": 0})
        entry["records"] += 1
        entry["bytes"] += len(pb.encode_record(record, files))
        entry["region_bytes"] += record.length
    payload = sum(entry["bytes"] for entry in kinds.values()) - pb.RECORD_HEADER_SIZE * len(parsed.records)
    signed = pb.is_signed(data)
    signature: dict = {"signed": signed}
    if signed:
        signature["development_key"] = pb.verify_signature(development_key().public, parsed.digest, parsed.signature)
        if keyring:
            good = [name for name, public in keyring.items()
                    if pb.verify_signature(public, parsed.digest, parsed.signature)]
            signature["valid"] = bool(good)
            signature["verified_by"] = [{"key": name, "fingerprint": fingerprint(keyring[name])} for name in good]
        else:
            signature["valid"] = None                 # no key given to check against
    else:
        signature["valid"] = False
    return {
        "kind": "patch-blob", "bytes": len(data), "format_version": pb.FORMAT_VERSION,
        "model_version": parsed.version, "digest": parsed.digest.hex(), "chunk_size": parsed.chunk_size,
        "files": [{"name": f.name, "size": f.size, "base_sha256": f.base_sha256.hex(),
                   "result_sha256": f.new_sha256.hex()} for f in files],
        "records": kinds, "payload_bytes": payload, "payload_share": round(payload / len(data), 4),
        "signature": signature,
    }
