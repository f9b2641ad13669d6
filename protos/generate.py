"""Generate the Python wire code from protos/mssp/v1/*.proto (the only way it is made).

`python protos/generate.py` writes next to the .proto files; `--check` regenerates into a
temporary directory and fails when the committed code differs (stale or hand-edited).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent
PROTO_DIR = ROOT / "mssp" / "v1"
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *[str(p.relative_to(ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out / "mssp" / "v1").iterdir() if p.name.endswith(SUFFIXES))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args()
    if not args.check:
        generate(ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in PROTO_DIR.iterdir() if p.name.endswith(SUFFIXES)}
        problems = sorted(set(fresh) ^ set(committed))
        problems += [n for n in sorted(set(fresh) & set(committed))
                     if not filecmp.cmp(fresh[n], committed[n], shallow=False)]
        if problems:
            print("generated protobuf code is stale; run `make protos`: " + ", ".join(problems))
            return 1
    print("generated protobuf code matches the .proto files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
