"""``python -m mesh.manifest render [-o FILE]`` and ``python -m mesh.manifest check [FILE]``.

``check`` exits 0 when FILE (default docs/manifest.schema.json) is the schema the model generates,
else prints a unified diff and exits 1 — `make check` uses it to catch a stale published schema.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from mesh.manifest._schema import SCHEMA_PATH, schema_text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesh.manifest", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print (or write with -o) the manifest's JSON Schema")
    render.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    check = sub.add_parser("check", help="exit 1 with a diff if FILE differs from the generated schema")
    check.add_argument("file", type=Path, nargs="?", default=SCHEMA_PATH)
    args = parser.parse_args(argv)
    text = schema_text()
    if args.command == "render":
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text)
        return 0
    try:
        current = args.file.read_text()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    if current == text:
        print(f"{args.file}: the manifest schema has no drift")
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        str(args.file),
        "python -m mesh.manifest render",
    )
    sys.stdout.writelines(diff)
    print(f"{args.file} is stale: regenerate it with `make schema`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
