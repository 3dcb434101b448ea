"""CLI: ``python -m mesh.edge render [opts] [-o FILE]`` and ``python -m mesh.edge check FILE [opts]``.

``check`` exits 0 when FILE equals the rendering of the given options (defaults unless passed),
else prints a unified diff and exits 1 -- CI uses it to catch hand edits and stale files.
``check --validate`` also runs ``envoy --mode validate`` on FILE. Envoy refuses a TLS rendering
whose SDS files do not exist yet (``--tls-sds-dir`` before `write_sds` ran): then the check
validates the same rendering pointed at a throwaway SDS directory (a scratch CA's secrets),
which proves the config sound without touching the real one, and says so on stderr. Envoy's
validation only checks that SDS files exist, so when they do the check also reads them
(`check_sds`: one secret of the right name and kind per file).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mesh.edge._bootstrap import GATEWAY_IDENTITY, EdgeConfig, EdgeTls, render_yaml
from mesh.edge._sds import CA_SECRET, CERT_SECRET, check_sds, sds_path, write_sds

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
    p.add_argument("--tls-sds-dir", metavar="DIR", help="terminate TLS and use mTLS upstream; secrets in DIR (SDS)")
    p.add_argument("--upstream-identity", default=GATEWAY_IDENTITY, help="URI SAN the gateway must present")
    p.add_argument("--admin-socket", default="", metavar="PATH", help="admin API on this unix socket (mode 600)")


def _config(args: argparse.Namespace) -> EdgeConfig:
    return EdgeConfig(
        listen_port=args.listen_port,
        admin_port=args.admin_port,
        grpc_upstreams=tuple(args.grpc_upstream or _DEFAULTS.grpc_upstreams),
        http_upstreams=tuple(args.http_upstream or _DEFAULTS.http_upstreams),
        tls=EdgeTls(args.tls_sds_dir, args.upstream_identity) if args.tls_sds_dir else None,
        admin_socket=args.admin_socket,
    )


def _envoy_validate(path: Path) -> subprocess.CompletedProcess[str]:
    from mesh.supervisor import find_binary  # the supervisor imports mesh.edge: import it only when needed

    command = [find_binary("envoy"), "--mode", "validate", "-c", str(path), "--log-level", "error"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def _validate(path: Path, cfg: EdgeConfig) -> int:
    """0 when Envoy accepts the config in `path` (rendered from `cfg`), else print why and return 1."""
    tls = cfg.tls
    missing = tls is not None and not all(sds_path(tls.sds_dir, s).exists() for s in (CERT_SECRET, CA_SECRET))
    if tls is None or not missing:
        if tls is not None:
            try:
                check_sds(tls.sds_dir)  # Envoy's validation checks only that the files exist
            except ValueError as exc:
                print(f"envoy --mode validate rejected {path}: {exc}", file=sys.stderr)
                return 1
        result = _envoy_validate(path)
    else:
        from mesh.security import CertificateAuthority

        with tempfile.TemporaryDirectory(prefix="tidemesh-sds-check-") as scratch:
            print(
                f"{tls.sds_dir} has no SDS secrets yet; validating the same rendering with a scratch CA's secrets",
                file=sys.stderr,
            )
            write_sds(Path(scratch) / "sds", CertificateAuthority(Path(scratch) / "pki").ensure().issue("envoy"))
            stand_in = dataclasses.replace(cfg, tls=dataclasses.replace(tls, sds_dir=str(Path(scratch) / "sds")))
            scratch_config = Path(scratch) / "envoy.yaml"
            scratch_config.write_text(render_yaml(stand_in))
            result = _envoy_validate(scratch_config)
    if result.returncode == 0:
        return 0
    sys.stdout.write(result.stdout + result.stderr)
    print(f"envoy --mode validate rejected {path}", file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mesh.edge", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print (or write with -o) the Envoy bootstrap YAML")
    _add_config_options(render)
    render.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    check = sub.add_parser("check", help="exit 1 with a diff if FILE differs from the rendering")
    check.add_argument("file", type=Path)
    check.add_argument("--validate", action="store_true", help="also run `envoy --mode validate` on FILE")
    _add_config_options(check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = _config(args)
        text = render_yaml(cfg)
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
        return _validate(args.file, cfg) if args.validate else 0
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
