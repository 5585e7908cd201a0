#!/usr/bin/env python3
"""Regenerate the committed Python message stubs from proto/collab.proto.

    python scripts/gen_proto.py            # writes python/collab/transport/_proto/collab_pb2.py
    python scripts/gen_proto.py --check    # exit 1 if the committed file is stale

Needs grpcio-tools (`pip install grpcio-tools`). Only the message module is generated: the
Python server and client register the three RPCs themselves (collab/transport/_wire.py), so
no *_pb2_grpc module is needed. Other platforms generate their own stubs from the same
.proto, e.g. `protoc --java_out=... --grpc-java_out=... proto/collab.proto`.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "python" / "collab" / "transport" / "_proto" / "collab_pb2.py"


def generate(dest_root: pathlib.Path) -> pathlib.Path:
    from grpc_tools import protoc

    # Map the import path so the generated module lives at collab.transport._proto.collab_pb2.
    rc = protoc.main(["protoc", f"-Icollab/transport/_proto={ROOT / 'proto'}",
                      f"--python_out={dest_root}", str(ROOT / "proto" / "collab.proto")])
    if rc != 0:
        raise SystemExit(f"protoc failed with status {rc}")
    return dest_root / "collab" / "transport" / "_proto" / "collab_pb2.py"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(pathlib.Path(tmp)).read_text()
    if args.check:
        if OUT.read_text() != fresh:
            print(f"{OUT} is stale: run python scripts/gen_proto.py", file=sys.stderr)
            return 1
        print("collab_pb2.py is up to date")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(fresh)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
