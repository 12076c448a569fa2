#!/usr/bin/env python3
"""Independent validator for safetensors files (stdlib only, no numpy/torch).

Usage: check_safetensors.py FILE [--expect-names a,b,...] [--quiet]

Exit status 0 if the file is well formed, 1 on any problem (each printed as "error: ...").
It reimplements the format from the spec rather than sharing code with the C++ writer,
so the two can catch each other's mistakes.
"""
import argparse
import json
import os
import struct
import sys

DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}
MAX_HEADER = 100 * 1024 * 1024


def check(path, expect_names):
    """Returns (errors, rows, metadata); rows are (name, dtype, shape, begin, end)."""
    errors = []
    size = os.path.getsize(path)
    if size < 8:
        return [f"file has {size} bytes, fewer than the 8-byte header length"], [], {}
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            return [f"header length {header_len} exceeds the file size {size}"], [], {}
        if header_len > MAX_HEADER:
            return [f"header length {header_len} exceeds the 100 MB limit"], [], {}
        raw = f.read(header_len)
    if (8 + header_len) % 8 != 0:
        errors.append(f"data buffer starts at byte {8 + header_len}, not 8-byte aligned")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return [f"header is not valid UTF-8 JSON: {e}"], [], {}
    if not isinstance(header, dict):
        return [f"header is a JSON {type(header).__name__}, expected an object"], [], {}

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        errors.append("__metadata__ must map strings to strings")
        metadata = {}

    buffer_len = size - 8 - header_len
    rows = []
    for name, entry in header.items():
        where = f"tensor '{name}'"
        if not isinstance(entry, dict):
            errors.append(f"{where}: entry is not an object")
            continue
        extra = set(entry) - {"dtype", "shape", "data_offsets"}
        if extra:
            errors.append(f"{where}: unexpected keys {sorted(extra)}")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            errors.append(f"{where}: unknown dtype {dtype!r}")
            continue
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            errors.append(f"{where}: shape {shape!r} is not a list of non-negative integers")
            continue
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(
                isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
            errors.append(f"{where}: data_offsets {offsets!r} is not [begin, end]")
            continue
        begin, end = offsets
        numel = 1
        for d in shape:
            numel *= d
        want = numel * DTYPE_SIZES[dtype]
        if end < begin or end - begin != want:
            errors.append(f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes, "
                          f"shape {shape} of {dtype} needs {want}")
        if end > buffer_len:
            errors.append(f"{where}: ends at data offset {end} beyond the buffer of "
                          f"{buffer_len} bytes (file truncated?)")
        rows.append((name, dtype, shape, begin, end))

    cursor = 0
    for name, _, _, begin, end in sorted(rows, key=lambda r: (r[3], r[4])):
        if begin < cursor:
            errors.append(f"tensor '{name}' at [{begin}, {end}] overlaps the previous tensor")
        elif begin > cursor:
            errors.append(f"gap of {begin - cursor} bytes before tensor '{name}'")
        cursor = max(cursor, end)
    if rows and cursor != buffer_len:
        errors.append(f"tensors cover {cursor} bytes but the data buffer has {buffer_len}")
    if not rows and buffer_len != 0:
        errors.append(f"no tensors but {buffer_len} data bytes")

    if expect_names is not None:
        have = {r[0] for r in rows}
        missing = sorted(set(expect_names) - have)
        unexpected = sorted(have - set(expect_names))
        if missing:
            errors.append(f"missing expected tensors: {', '.join(missing)}")
        if unexpected:
            errors.append(f"tensors not in --expect-names: {', '.join(unexpected)}")
    return errors, rows, metadata


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--expect-names", help="comma-separated list of exactly the tensor names")
    ap.add_argument("--quiet", action="store_true", help="print only errors")
    args = ap.parse_args()
    expect = None
    if args.expect_names is not None:
        expect = [n for n in args.expect_names.split(",") if n]
    try:
        errors, rows, metadata = check(args.file, expect)
    except OSError as e:
        print(f"error: {args.file}: {e}", file=sys.stderr)
        return 1

    if not args.quiet:
        width = max([len(r[0]) for r in rows] + [4])
        print(f"{args.file}: {len(rows)} tensors, {len(metadata)} metadata keys")
        print(f"{'name':<{width}}  {'dtype':<7} {'shape':<20} {'bytes':>12}")
        for name, dtype, shape, begin, end in sorted(rows, key=lambda r: r[3]):
            print(f"{name:<{width}}  {dtype:<7} {str(shape):<20} {end - begin:>12}")
        for k, v in sorted(metadata.items()):
            print(f"metadata {k} = {v}")
    for e in errors:
        print(f"error: {args.file}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
