#!/usr/bin/env python3
"""Gives the .rpm its %description: `describe.py RPM CARGO_TOML`.

cargo-generate-rpm (0.21) writes the Summary into the Description tag too and has no
option for it. This takes `description` from [package.metadata.generate-rpm] in
CARGO_TOML, rewrites the Description tag of the RPM's main header in place, and
recomputes what covers that header in the signature header (its SHA-1 and SHA-256, and
the header+payload size). The payload and its digest are untouched. Check the result with
`rpm -K --nosignature` (packaging/check does).
"""

import hashlib
import os
import struct
import sys
import tomllib

MAGIC = b"\x8e\xad\xe8\x01"
LEAD = 96
REGION_SIG, REGION_MAIN = 62, 63
TAG_DESCRIPTION = 1005
SIG_SHA1, SIG_SHA256, SIG_SIZE = 269, 273, 1000
ALIGN = {3: 2, 4: 4, 5: 8}  # INT16, INT32, INT64


class RpmError(Exception):
    pass


def read_header(data, off):
    if data[off : off + 4] != MAGIC:
        raise RpmError(f"no header magic at offset {off}")
    count, size = struct.unpack(">II", data[off + 8 : off + 16])
    index = [struct.unpack(">IIiI", data[off + 16 + 16 * i : off + 32 + 16 * i]) for i in range(count)]
    store = off + 16 + 16 * count
    return index, store, size


def entry_len(store, tag_type, offset, count):
    """Bytes of an entry's data, from its type and count."""
    if tag_type in (0,):
        return 0
    if tag_type in (1, 2, 7):  # CHAR, INT8, BIN
        return count
    if tag_type in (3, 4, 5):
        return count * {3: 2, 4: 4, 5: 8}[tag_type]
    if tag_type in (6, 8, 9):  # STRING, STRING_ARRAY, I18NSTRING: NUL-terminated strings
        end = offset
        for _ in range(count):
            end = store.index(b"\0", end) + 1
        return end - offset
    raise RpmError(f"unknown tag type {tag_type}")


def rebuilt_main_header(data, off, description):
    index, store_at, size = read_header(data, off)
    store = data[store_at : store_at + size]
    if not index or index[0][0] != REGION_MAIN:
        raise RpmError("the main header does not start with its immutable region")
    if not any(tag == TAG_DESCRIPTION and tag_type == 9 for tag, tag_type, _, _ in index):
        raise RpmError("the main header has no I18N Description tag")
    new_index, new_store = [], bytearray()
    # Data in the original order, each aligned for its type; the region trailer goes last.
    for tag, tag_type, offset, count in sorted(index[1:], key=lambda e: e[2]):
        if tag == TAG_DESCRIPTION:
            blob = description.encode() + b"\0"
        else:
            blob = store[offset : offset + entry_len(store, tag_type, offset, count)]
        align = ALIGN.get(tag_type, 1)
        new_store += b"\0" * (-len(new_store) % align)
        new_index.append((tag, tag_type, len(new_store), count))
        new_store += blob
    count = len(index)
    trailer_at = len(new_store)
    new_store += struct.pack(">IIiI", REGION_MAIN, 7, -16 * count, 16)
    new_index = [(REGION_MAIN, 7, trailer_at, 16)] + sorted(new_index)
    head = MAGIC + b"\0" * 4 + struct.pack(">II", count, len(new_store))
    body = b"".join(struct.pack(">IIiI", *e) for e in new_index)
    return head + body + bytes(new_store), store_at + size


def describe(path, description):
    data = open(path, "rb").read()
    sig_index, sig_store_at, sig_size = read_header(data, LEAD)
    main_at = sig_store_at + sig_size
    main_at += -main_at % 8
    header, main_end = rebuilt_main_header(data, main_at, description)
    payload = data[main_end:]
    sig = bytearray(data[LEAD:main_at])
    store = sig_store_at - LEAD
    found = set()
    for tag, tag_type, offset, _ in sig_index:
        at = store + offset
        if tag == SIG_SHA1 and tag_type == 6:
            sig[at : at + 41] = hashlib.sha1(header).hexdigest().encode() + b"\0"
        elif tag == SIG_SHA256 and tag_type == 6:
            sig[at : at + 65] = hashlib.sha256(header).hexdigest().encode() + b"\0"
        elif tag == SIG_SIZE and tag_type == 4:
            sig[at : at + 4] = struct.pack(">I", len(header) + len(payload))
        elif tag in (REGION_SIG, 1008):  # the region and the reserved space stay
            continue
        else:
            raise RpmError(f"signature tag {tag} covers the header and is not handled")
        found.add(tag)
    if found != {SIG_SHA1, SIG_SHA256, SIG_SIZE}:
        raise RpmError(f"expected SHA-1, SHA-256 and size in the signature header, found {sorted(found)}")
    with open(path + ".tmp", "wb") as out:
        out.write(data[:LEAD] + bytes(sig) + header + payload)
    os.replace(path + ".tmp", path)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: describe.py RPM CARGO_TOML")
    rpm, manifest = sys.argv[1:]
    with open(manifest, "rb") as f:
        meta = tomllib.load(f)["package"]["metadata"]["generate-rpm"]
    description = meta.get("description", "").strip()
    if not description or description == meta.get("summary", "").strip():
        sys.exit(f"{manifest}: [package.metadata.generate-rpm] needs a description other than its summary")
    try:
        describe(rpm, description)
    except (RpmError, OSError, ValueError, struct.error) as e:
        sys.exit(f"describe.py: {rpm}: {e}")


if __name__ == "__main__":
    main()
