"""``python -m mesh.kube probe|stage|triton|credentials``: the steps a rendering runs.

In a pod: ``probe TARGET`` (exit 0 healthy, 1 not, the reason on stderr), ``stage SOURCE TARGET``
(the init container), ``triton`` (the Triton container). On the operator's machine:
``credentials --state-dir S --out DIR --leaf COMPONENT=HOST,…`` (what `create-secrets.sh` runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path


def _leaf(text: str) -> tuple[str, list[str]]:
    component, sep, hosts = text.partition("=")
    if not sep or not component:
        raise argparse.ArgumentTypeError(f"expected COMPONENT=HOST,HOST…, got {text!r}")
    return component, [host for host in hosts.split(",") if host]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mesh.kube", description=__doc__)
    steps = parser.add_subparsers(dest="step", required=True)
    probe = steps.add_parser("probe", help="check a process of this pod, as the supervisor would")
    probe.add_argument("target", help="https://127.0.0.1:PORT/healthz, http://…, grpc://HOST:PORT")
    probe.add_argument("--pki", default="", help="the pod's pki folder (its leaf is presented)")
    probe.add_argument("--component", default="", help="whose leaf: scheduler, worker, …")
    probe.add_argument("--socket", default="", help="GET over this unix socket instead of TCP")
    probe.add_argument("--timeout", type=float, default=4.0)
    stage = steps.add_parser("stage", help="copy the pod's Secret and ConfigMap owner-only into its state dir")
    stage.add_argument("source", type=Path)
    stage.add_argument("target", type=Path)
    stage.add_argument("--envoy-sds", action="store_true", help="also write Envoy's SDS files from its leaf")
    triton = steps.add_parser("triton", help="become tritonserver on this pod's state dir and leaf")
    triton.add_argument("--state-dir", type=Path, required=True)
    triton.add_argument("--grpc-port", type=int, default=8001)
    triton.add_argument("--config-name", default="", help="each model's configs/NAME.pbtxt where it has one (gpu)")
    triton.add_argument("--model-repository", type=Path, action="append", default=[])
    triton.add_argument("extra", nargs="*", help="after --: more tritonserver arguments (the plan's trace settings)")
    credentials = steps.add_parser("credentials", help="make the files create-secrets.sh hands kubectl")
    credentials.add_argument("--state-dir", type=Path, required=True)
    credentials.add_argument("--out", type=Path, required=True)
    credentials.add_argument("--leaf", type=_leaf, action="append", default=[], metavar="COMPONENT=HOST,…")
    credentials.add_argument("--leaf-days", type=int, default=30)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.step == "probe":
        from mesh.kube._probe import check

        problem = check(args.target, args.pki, args.component, args.socket, args.timeout)
        if problem:
            print(problem, file=sys.stderr)
        return 1 if problem else 0
    if args.step == "stage":
        from mesh.kube._stage import stage, write_envoy_sds

        copied = stage(args.source, args.target)
        if args.envoy_sds:
            write_envoy_sds(args.target)
        print(f"staged {len(copied)} files into {args.target}", file=sys.stderr)  # names only, never contents
        return 0
    if args.step == "triton":
        from mesh.kube._triton import exec_triton

        exec_triton(args.state_dir, args.grpc_port, args.config_name, args.model_repository, args.extra)
        return 1  # exec_triton does not return
    from mesh.kube._credentials import issue

    written = issue(args.state_dir, args.out, dict(args.leaf), dt.timedelta(days=args.leaf_days))
    print(f"{len(written)} files under {args.out} (owner-only)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
