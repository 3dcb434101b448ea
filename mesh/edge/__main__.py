"""CLI: ``python -m mesh.edge render [opts] [-o FILE]`` and ``python -m mesh.edge check FILE [opts]``.

``check`` exits 0 when FILE equals the rendering of the given options (defaults unless passed),
else prints a unified diff and exits 1 -- CI uses it to catch hand edits and stale files.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from mesh.edge._bootstrap import EdgeConfig, render_yaml

_DEFAULTS = EdgeConfig()


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen-port", type=int, default=_DEFAULTS.listen_port)
    p.add_argument("--admin-port", type=int, default=_DEFAULTS.admin_port)
    p.add_argument(
        "--grpc-upstream",
        type=_host_port,
        action="append",
        metavar="HOST:PORT",
        help="gateway gRPC (h2c) replica; repeat for several",
    )
    p.add_argument(
        "--http-upstream",
        type=_host_port,
        action="append",
        metavar="HOST:PORT",
        help="gateway aiohttp replica; repeat for several",
    )


def _config(args: argparse.Namespace) -> EdgeConfig:
    return EdgeConfig(
        listen_port=args.listen_port,
        admin_port=args.admin_port,
        grpc_upstreams=tuple(args.grpc_upstream or _DEFAULTS.grpc_upstreams),
        http_upstreams=tuple(args.http_upstream or _DEFAULTS.http_upstreams),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mesh.edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print (or write with -o) the Envoy bootstrap YAML")
    _add_config_options(render)
    render.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    check = sub.add_parser("check", help="exit 1 with a diff if FILE differs from the rendering")
    check.add_argument("file", type=Path)
    _add_config_options(check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        text = render_yaml(_config(args))
    except ValueError as exc:
        parser.error(str(exc))
    if args.command == "render":
        if args.output is None:
            sys.stdout.write(text)
        else:
            args.output.write_text(text)
        return 0
    try:
        current = args.file.read_text()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 1
    if current == text:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=str(args.file),
        tofile="python -m mesh.edge render",
    )
    sys.stdout.writelines(diff)
    print(
        f"{args.file} is stale or hand-edited; regenerate: python -m mesh.edge render -o {args.file}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
