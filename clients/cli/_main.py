"""`tidemesh`: its arguments, the dispatch to each command's module, and what a failure says
(errors mapped by class at this boundary; exit codes in `clients.cli._exit`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys

import argcomplete

from clients.cli._audit import add_audit_commands, audit_command
from clients.cli._auth import add_auth_commands, auth_command
from clients.cli._complete import SHELLS, shell_hook
from clients.cli._complete import attach as attach_completers
from clients.cli._config import add_config_commands, add_file_arg, config_command, explicit_options
from clients.cli._connect import client_for, connection_notes, credential_for, credential_of, transport_for
from clients.cli._dash import add_dash_command, dash_command
from clients.cli._desktop import add_desktop_command, desktop_command
from clients.cli._exit import EXIT_FAILED, EXIT_INVALID, EXIT_OK, EXIT_UNAVAILABLE
from clients.cli._help import START_THE_MESH, attach_examples
from clients.cli._init import add_init_command, init_command
from clients.cli._load import add_load_command, load_command
from clients.cli._models import add_model_commands, infer_command, model_command
from clients.cli._ops import ca_command, dlq_command, plan_command, probe_command, status_command
from clients.cli._output import Declined, Output, add_output_args
from clients.cli._plan import CHANGE_ACTIONS, change_command
from clients.cli._schema import add_schema_commands, schema_command
from clients.cli._style import THEME_CHOICES
from clients.cli._tasks import cancel_command, get_command, list_command, stream_events, submit_command
from clients.cli._up import up
from clients.cli._worker import add_worker_commands, kinds_command, run_worker
from clients.sdk._credentials import calls_log
from mesh.errors import InvalidArgument, MeshError, NotFound, PermissionDenied, Unauthenticated, Unavailable
from mesh.priority import CLASS_NAMES
from mesh.supervisor import CREDENTIAL_LIMIT, TENANT_LIMIT
from mesh.telemetry import quiet_ssl_eof_noise

DEFAULT_ENDPOINT = os.environ.get("TIDEMESH_ENDPOINT", "127.0.0.1:8080")


def _submits(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:  # NaN would compare false everywhere: no limit at all
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0 (0: no limit), got {text}")
    return value


def rate_limit_args(p: argparse.ArgumentParser) -> None:
    """Every gateway's submit limits: token buckets per tenant and per credential (auth on)."""
    (tenant_rate, tenant_burst), (credential_rate, credential_burst) = TENANT_LIMIT, CREDENTIAL_LIMIT
    p.add_argument(
        "--tenant-rate", type=_submits, default=tenant_rate, help="submits/s per tenant, per gateway (0: no limit)"
    )
    p.add_argument("--tenant-burst", type=_submits, default=tenant_burst, help="submits a tenant may send at once")
    p.add_argument(
        "--credential-rate",
        type=_submits,
        default=credential_rate,
        help="submits/s per credential, per gateway (0: no limit)",
    )
    p.add_argument(
        "--credential-burst", type=_submits, default=credential_burst, help="submits a credential may send at once"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidemesh", description="gRPC-first mesh on NATS JetStream + Envoy")
    sub = parser.add_subparsers(dest="command", required=True)

    def mesh_args(p: argparse.ArgumentParser) -> None:
        add_file_arg(p)
        p.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
        p.add_argument("--port", type=int, default=8080, help="public Envoy port (0: pick free ports)")
        p.add_argument("--workers", type=int, default=1, help="worker processes serving every pool")
        p.add_argument("--pool-workers", default="", help="dedicated workers per pool, e.g. inference=2,ingestion=1")
        p.add_argument("--pool-concurrency", default="", help="concurrency of dedicated workers, e.g. inference=4")
        p.add_argument("--cluster", type=int, default=1, choices=[1, 3, 5], help="nats-server nodes (R3 streams)")
        p.add_argument(
            "--join",
            default="",
            metavar="HOSTS",
            help="run this host's share of a mesh over these hosts (3 or 5, comma-separated, the same list on "
            "each): a NATS node of their cluster and a full set of the services",
        )
        p.add_argument(
            "--host",
            default="",
            help="this host's name or address: which of the --join hosts it is (default: the one whose address "
            "it has); on one host, a name its leaves answer to (clients reaching it from elsewhere)",
        )
        p.add_argument("--gateways", type=int, default=1, help="gateway replicas behind Envoy (sticky sessions)")
        p.add_argument(
            "--fsync",
            default="always",
            choices=["always", "interval"],
            help="JetStream sync_interval: always (no acknowledged write lost) or the server's 2-min default",
        )
        p.add_argument("--ack-wait", type=float, default=30.0, help="seconds before un-acked work is redelivered")
        p.add_argument("--tenant-weights", default="", help="fair-share weights, e.g. acme=3,globex=1 (others 1)")
        p.add_argument("--tenant-concurrency", default="", help="in-flight caps per tenant, e.g. acme=4")
        p.add_argument("--no-auth", action="store_true", help="let every caller in without a credential (dev only)")
        p.add_argument(
            "--insecure",
            action="store_true",
            help="EXPERIMENTS ONLY: plaintext on every hop, NATS without users, internal ports open to the host",
        )
        rate_limit_args(p)
        p.add_argument(
            "--triton",
            action="store_true",
            default=os.environ.get("TIDEMESH_TRITON", "") not in ("", "0"),
            help="also run tritonserver (nvidia-pytriton) on the model repository; CPU stays the fallback",
        )
        p.add_argument(
            "--inference",
            type=int,
            default=1,
            dest="inference_replicas",
            metavar="N",
            help="inference service replicas (workers place each call by model residency and load)",
        )
        p.add_argument(
            "--model-repository",
            action="append",
            default=[],
            metavar="DIR",
            dest="model_repositories",
            help="serve your Triton model repository beside the project's (repeatable; implies --triton)",
        )
        p.add_argument(
            "--otlp",
            default="",
            metavar="ENDPOINT",
            help="send every process's spans over OTLP, e.g. http://localhost:4317 (a collector, Jaeger, Tempo)",
        )
        p.add_argument("--otlp-protocol", default="grpc", choices=["grpc", "http/protobuf"], help="OTLP's transport")
        p.add_argument(
            "--trace-sampling",
            type=float,
            default=1.0,
            metavar="RATIO",
            help="share of tasks traced (0-1); failing, retried and dead-lettered attempts are always kept",
        )

    def client_args(p: argparse.ArgumentParser, *, streams: bool = False, destructive: bool = False) -> None:
        p.add_argument(
            "--endpoint", default=DEFAULT_ENDPOINT, help="the mesh's front door (default: $TIDEMESH_ENDPOINT)"
        )
        p.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
        p.add_argument(
            "--api-key",
            default=None,
            help="an API key or JWT (default: $TIDEMESH_API_KEY, else the local mesh's admin key)",
        )
        p.add_argument(
            "--cacert",
            default="",
            help="the root to verify the mesh with (default: <state-dir>/pki/ca.crt, else $TIDEMESH_CA)",
        )
        p.add_argument("--insecure", action="store_true", help="plaintext, to a mesh started with --insecure")
        p.add_argument(
            "--theme",
            choices=THEME_CHOICES,
            default=None,
            help="colours: auto (the terminal's background), light, dark, high-contrast (default: $TIDEMESH_THEME, "
            "else auto); NO_COLOR, CLICOLOR, CLICOLOR_FORCE, FORCE_COLOR and TERM=dumb are honoured",
        )
        add_output_args(p, streams=streams, destructive=destructive)

    p_up = sub.add_parser("up", help="start the whole mesh locally and supervise it")
    mesh_args(p_up)
    p_up.add_argument("--demo", action="store_true", help="run a short demo workload once healthy")
    p_up.add_argument(
        "--autoscale", default="", help="act on scale recommendations for these pools, e.g. inference=1:4"
    )
    add_output_args(p_up, formats=False)

    p_plan = sub.add_parser("plan", help="print the process table `up` would start")
    mesh_args(p_plan)
    add_output_args(p_plan)

    p_submit = sub.add_parser("submit", help="submit a task and stream its events")
    p_submit.add_argument("kind")
    p_submit.add_argument("--payload", default="{}", help="JSON fields of the kind's payload")
    p_submit.add_argument("--text", default=None, help="shorthand for --payload '{\"text\": TEXT}'")
    p_submit.add_argument("--priority", default="standard", choices=CLASS_NAMES)
    p_submit.add_argument("--tenant", default="default")
    p_submit.add_argument("--idempotency-key", default="")
    client_args(p_submit, streams=True)
    p_submit.add_argument("--no-wait", action="store_true", help="print the task id and return")

    p_watch = sub.add_parser("watch", help="stream a task's events")
    p_watch.add_argument("task_id")
    p_watch.add_argument("--after", type=int, default=0, help="resume after this sequence number")
    client_args(p_watch, streams=True)
    p_get = sub.add_parser("get", help="show a task")
    p_get.add_argument("task_id")
    client_args(p_get)
    p_cancel = sub.add_parser("cancel", help="cancel tasks: one, several, or every unfinished task of a tenant")
    p_cancel.add_argument("task_ids", nargs="*", metavar="task_id")
    p_cancel.add_argument("--tenant", default="", help="every unfinished task of this tenant")
    p_cancel.add_argument("--reason", default="cancelled from the CLI")
    client_args(p_cancel, destructive=True)

    p_completion = sub.add_parser(
        "completion",
        help="print the shell hook that completes tidemesh (commands, flags, and from the live mesh: kinds, "
        "tenants, task ids)",
        description='bash: eval "$(tidemesh completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc; '
        "fish: tidemesh completion fish > ~/.config/fish/completions/tidemesh.fish",
    )
    p_completion.add_argument("shell", choices=SHELLS)

    p_list = sub.add_parser(
        "list",
        help="a tenant's tasks, newest first (the mesh filters by kind, state and creation time)",
        description="A filtered page may hold fewer tasks than --limit, even none, and still say where more "
        "may follow (--page-token): each call looks at a bounded number of tasks.",
    )
    p_list.add_argument("--tenant", default="", help="default: the credential's tenant")
    p_list.add_argument("--limit", type=int, default=20)
    p_list.add_argument("--page-token", default="")
    p_list.add_argument("--kind", default="", help="only tasks of this kind")
    p_list.add_argument(
        "--state",
        action="append",
        default=[],
        help="only tasks in these states: queued, running, retrying, succeeded, failed, cancelled, "
        "dead-lettered (repeat the flag or separate with commas)",
    )
    p_list.add_argument(
        "--since", default="", help="only tasks created at or after: a time (2026-12-03T17:05, local) or an age (2h)"
    )
    p_list.add_argument("--until", default="", help="only tasks created before: a time or an age, as --since")
    client_args(p_list)

    add_auth_commands(sub, client_args)

    p_dlq = sub.add_parser("dlq", help="dead-lettered tasks: list, show, replay, purge")
    p_dlq.add_argument("action", choices=["list", "show", "replay", "purge"])
    p_dlq.add_argument("task_id", nargs="?", default="")
    p_dlq.add_argument("--tenant", default="", help="list, replay or purge every dead letter of this tenant")
    client_args(p_dlq, destructive=True)

    add_schema_commands(sub, client_args)
    add_audit_commands(sub, client_args)
    add_config_commands(sub, add_output_args, os.environ.get("TIDEMESH_STATE_DIR", "state"), client_args)
    add_init_command(sub)

    p_ca = sub.add_parser(
        "ca",
        help="print the path of the local mesh's root certificate (for clients); export or import the mesh's "
        "identity (root, NATS users, keys) for its other hosts",
    )
    p_ca.add_argument(
        "action",
        nargs="?",
        default="path",
        choices=["path", "export", "import"],
        help="path (default): the root's path; export FOLDER: the identity into a new folder; import FOLDER: "
        "an exported identity into --state-dir",
    )
    p_ca.add_argument("folder", nargs="?", default="", help="where export writes, or import reads, the identity")
    p_ca.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))
    add_output_args(p_ca)

    p_probe = sub.add_parser("probe", help="exit 0 when a process of the running mesh is healthy (Tilt)")
    p_probe.add_argument("name")
    p_probe.add_argument("--state-dir", default=os.environ.get("TIDEMESH_STATE_DIR", "state"))

    add_worker_commands(sub, client_args)
    add_dash_command(sub, client_args)
    add_desktop_command(sub, client_args)
    add_model_commands(sub, client_args)
    p_status = sub.add_parser("status", help="components, health and queue depths")
    client_args(p_status)
    add_load_command(sub, client_args)
    attach_examples(parser)
    return parser


async def _dispatch(args: argparse.Namespace, out: Output) -> int:
    if args.command == "up":
        return await up(args)
    if args.command == "plan":
        return plan_command(args, out)
    if args.command == "ca":
        return ca_command(args, out)
    if args.command == "probe":
        return await probe_command(args)
    if args.command == "config" and args.config_action in CHANGE_ACTIONS:
        return await change_command(args, transport_for(args), credential_for(args), out)
    if args.command == "config":
        return await config_command(args, out)
    if hasattr(args, "endpoint"):
        for note in connection_notes(args):
            out.detail(note)
    if args.command == "submit":
        return await submit_command(args, out)
    if args.command == "status":
        return await status_command(args, out)
    if args.command == "load":
        return await load_command(args, out)
    if args.command == "dlq":
        return await dlq_command(args, out)
    if args.command == "auth":
        return await auth_command(args, out)
    if args.command == "worker":
        return await run_worker(args, transport_for(args), credential_for(args))
    if args.command == "dash":
        return await dash_command(args, transport_for(args), credential_for(args))
    if args.command == "desktop":
        return await desktop_command(args, transport_for(args), credential_for(args))
    if args.command == "kinds":
        return await kinds_command(args, transport_for(args), credential_for(args))
    if args.command == "schema":
        return await schema_command(args, transport_for(args), credential_for(args))
    if args.command == "audit":
        return await audit_command(args, transport_for(args), credential_for(args))
    async with client_for(args) as client:
        if args.command == "model":
            return await model_command(args, client)
        if args.command == "infer":
            return await infer_command(args, client)
        if args.command == "watch":
            return await stream_events(client, args.task_id, args.after, out)
        if args.command == "get":
            return await get_command(client, args, out)
        if args.command == "list":
            return await list_command(client, args, out)
        return await cancel_command(client, args, out)


def _failure(exc: BaseException, args: argparse.Namespace) -> tuple[str, int]:
    """What a failed command says — the error, then what to do next — and its exit code."""
    endpoint = getattr(args, "endpoint", "")
    if isinstance(exc, Declined):
        return str(exc), EXIT_INVALID
    if isinstance(exc, InvalidArgument):
        hint = ""
        if "kind" in exc.message and getattr(args, "command", "") == "submit":
            hint = "\n  the kinds this mesh knows: `tidemesh kinds`"
        return f"invalid argument: {exc.message}{hint}", EXIT_INVALID
    if isinstance(exc, NotFound):
        return f"not found: {exc.message}", EXIT_INVALID
    if isinstance(exc, Unavailable):
        where = f" at {endpoint}" if endpoint else ""
        return f"mesh unavailable{where}: {exc.message}\n  {START_THE_MESH}", EXIT_UNAVAILABLE
    if isinstance(exc, Unauthenticated | PermissionDenied):
        source = credential_of(args)[1] if hasattr(args, "api_key") else "none"
        verb = "refused the credential" if isinstance(exc, Unauthenticated) else "denied the credential"
        return (
            f"{exc.error_class}: {exc.message}\n  the mesh {verb} from {source}; pass another with --api-key "
            "or $TIDEMESH_API_KEY (`tidemesh auth key --tenant T` makes one)",
            EXIT_FAILED,
        )
    assert isinstance(exc, MeshError)
    return f"{exc.error_class}: {exc.message}", EXIT_FAILED


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    attach_completers(parser)
    argcomplete.autocomplete(parser)  # answers the shell's completion request (and exits) when it is one
    args = parser.parse_args(argv)
    args.explicit = explicit_options(parser, sys.argv[1:] if argv is None else argv)  # `up -f`: flags override
    if args.command == "completion":
        print(shell_hook(args.shell))
        sys.exit(EXIT_OK)
    quiet_ssl_eof_noise()  # asyncio's note on each TLS connection nats-py closes (status probes NATS)
    out = Output.from_args(args)
    if out.verbosity >= 2:  # every call the client makes, when it ends
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s call %(message)s"))
        calls_log.addHandler(handler)
        calls_log.setLevel(logging.DEBUG)
    try:  # init outside asyncio: Ctrl-C at its prompts must stop a blocking read at once
        code = init_command(args, out) if args.command == "init" else asyncio.run(_dispatch(args, out))
    except (MeshError, Declined) as exc:
        message, code = _failure(exc, args)
        print(f"tidemesh: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
