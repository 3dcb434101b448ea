"""Every command's examples, in one table, attached to the parsers' help as an "examples:" epilog;
and the lines that say what to do next when a command fails."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

# The command's path after `tidemesh` → example invocations (with a comment where it helps).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "up": (
        "tidemesh up --demo                      # the whole mesh, secure, and a short demo workload",
        "tidemesh up --port 0 --workers 2        # free ports, two workers",
        "tidemesh up --model-repository ./models  # your Triton models beside the project's",
        "tidemesh up -f tidemesh.yaml -v         # from a manifest; flags given override it (-v says which)",
        "tidemesh up --join 10.0.0.1,10.0.0.2,10.0.0.3   # this host's share of a mesh over three hosts",
    ),
    "plan": ("tidemesh plan", "tidemesh plan --gateways 2 -o json", "tidemesh plan -f tidemesh.yaml"),
    "config": (
        "tidemesh config validate -f tidemesh.yaml",
        "tidemesh config export > tidemesh.yaml   # the running mesh's manifest",
        "tidemesh config explain durability.fsync",
    ),
    "init": (
        "tidemesh init                                   # asks, writes tidemesh.yaml, ends with its plan",
        "tidemesh init --answers answers.yaml -o mesh.yaml   # no questions: the answers from a file",
        "tidemesh init --print-answers answers.yaml      # also keep the answers that reproduce it",
        "tidemesh init --answers - --force                # the answers on stdin, over an existing file",
    ),
    "config validate": ("tidemesh config validate -f tidemesh.yaml", "tidemesh config validate -f mesh.json -o json"),
    "config plan": (
        "tidemesh config plan -f tidemesh.yaml          # diff, steps and their cost, policy verdicts, simulation",
        "tidemesh config plan -f tidemesh.yaml --out change.json -o json",
    ),
    "config apply": (
        "tidemesh config apply tidemesh.plan.json      # roll out, bake 30 s behind the health gate",
        "tidemesh config apply change.json --bake 120   # Ctrl-C rolls it back",
    ),
    "config history": ("tidemesh config history", "tidemesh config history --limit 5 -o json"),
    "config policy": (
        "tidemesh config policy                        # the running mesh's manifest and live figures",
        "tidemesh config policy -f tidemesh.yaml --no-live -o json",
        "tidemesh config policy --rules                # every rule: built-in and yours, with its mode here",
    ),
    "config rollback": (
        "tidemesh config rollback                      # the revision before the current one",
        "tidemesh config rollback 3 --bake 60",
    ),
    "config export": (
        "tidemesh config export > tidemesh.yaml   # what `tidemesh up -f tidemesh.yaml` runs again",
        "tidemesh config export --full -o json   # every field, not only what differs from the preset",
    ),
    "config presets": ("tidemesh config presets", "tidemesh config presets -o yaml"),
    "config explain": (
        "tidemesh config explain durability.fsync",
        "tidemesh config explain tenants.named.acme.weight -o json",
    ),
    "config diff-presets": (
        "tidemesh config diff-presets dev prod",
        "tidemesh config diff-presets base staging -o json",
    ),
    "config schema": ("tidemesh config schema -o json > tidemesh.schema.json",),
    "config render": (
        "tidemesh config render kubernetes -f tidemesh.yaml -o deploy/k8s   # then deploy/k8s/create-secrets.sh state",
        "tidemesh config render kubernetes -f tidemesh.yaml --namespace mesh --public-host mesh.example.com",
        "tidemesh config render kubernetes -f tidemesh.yaml | kubectl apply --dry-run=server -f -",
    ),
    "submit": (
        'tidemesh submit embed --text "tide pools at dawn"',
        'tidemesh submit summarize --payload \'{"text": "…"}\' --priority interactive --tenant acme',
        "tidemesh submit embed --text hi --no-wait              # print the task id and return",
        "tidemesh submit embed --text hi -o jsonl --timestamps utc",
    ),
    "watch": ("tidemesh watch TASK_ID", "tidemesh watch TASK_ID --after 3 -o jsonl"),
    "get": ("tidemesh get TASK_ID", "tidemesh get TASK_ID -o yaml"),
    "cancel": (
        "tidemesh cancel TASK_ID",
        "tidemesh cancel ID1 ID2 ID3 --yes       # several: asks first on a terminal, --yes in scripts",
        "tidemesh cancel --tenant acme --yes     # every unfinished task of a tenant",
    ),
    "completion": (
        'eval "$(tidemesh completion bash)"     # in ~/.bashrc',
        'eval "$(tidemesh completion zsh)"      # in ~/.zshrc',
        "tidemesh completion fish > ~/.config/fish/completions/tidemesh.fish",
    ),
    "list": (
        "tidemesh list",
        "tidemesh list --tenant acme --limit 50 -o json",
        "tidemesh list --kind stream --state failed,dead-lettered --since 2h",
        "tidemesh list --since 2026-12-03T09:00 --until 2026-12-03T17:00   # local times",
    ),
    "auth": (
        "tidemesh auth key --tenant acme --roles submitter,viewer --name ci",
        "tidemesh auth can-i dlq.purge --tenant acme",
        "tidemesh auth roles",
    ),
    "auth key": (
        "tidemesh auth key --tenant acme --roles operator --name on-call",
        "tidemesh auth key --tenant '*' --roles auditor -o json",
        "tidemesh auth key --tenant '*' --roles worker --name gpu-workers   # for `tidemesh worker run`",
    ),
    "auth revoke": ("tidemesh auth revoke KEY_ID --reason rotated --yes",),
    "auth token": ("tidemesh auth token --tenant acme --roles viewer --ttl 600",),
    "auth can-i": (
        "tidemesh auth can-i dlq.purge                 # in the credential's own tenant; exit 0 yes, 1 no",
        "tidemesh auth can-i task.read --tenant globex -o json",
        "tidemesh auth can-i worker.attach --tenant '*' -v   # -v: which credential ($TIDEMESH_API_KEY) asked",
    ),
    "auth enroll": (
        "tidemesh auth enroll                   # the TOTP secret and its otpauth:// URI, then the first code",
        "tidemesh auth enroll --replace -o json",
    ),
    "auth confirm": ("tidemesh auth confirm                  # the code from $TIDEMESH_OTP, else asked",),
    "auth step-up": (
        "tidemesh auth step-up dlq.purge --resource dlq:tenant=acme   # a token for that one call",
        "tidemesh auth step-up audit.export --resource audit -o json",
    ),
    "auth roles": ("tidemesh auth roles", "tidemesh auth roles -o json | jq '.roles[].name'"),
    "dlq": (
        "tidemesh dlq list --tenant acme",
        "tidemesh dlq show TASK_ID -o yaml",
        "tidemesh dlq replay TASK_ID",
        "tidemesh dlq replay --tenant acme      # every dead letter of a tenant, after asking",
        "tidemesh dlq purge --tenant acme --yes",
    ),
    "schema": ("tidemesh schema list", "tidemesh schema register acme.proto --subject acme.v1.ResizeRequest"),
    "schema register": ("tidemesh schema register acme.proto --subject acme.v1.ResizeRequest -I proto/",),
    "schema check": ("tidemesh schema check acme.proto --subject acme.v1.ResizeRequest",),
    "schema list": ("tidemesh schema list", "tidemesh schema list -o json"),
    "schema show": ("tidemesh schema show acme.v1.ResizeRequest --version 2",),
    "schema export": ("tidemesh schema export acme.v1.ResizeRequest --file acme.binpb",),
    "audit": ("tidemesh audit list", "tidemesh audit verify", "tidemesh audit export --file audit.jsonl"),
    "audit list": (
        "tidemesh audit list",
        "tidemesh audit list --action dlq. --limit 50",
        "tidemesh audit list --credential KEY_ID -o json",
        "tidemesh audit list --before 120           # the page before record 120",
    ),
    "audit show": ("tidemesh audit show 42", "tidemesh audit show 42 -o yaml"),
    "audit verify": (
        "tidemesh audit verify                         # the live audit; exit 1 names the first bad record",
        "tidemesh audit verify --against audit-monday.jsonl   # and nothing kept then was cut off since",
        "tidemesh audit verify --file audit.jsonl --public-key signing.pub   # off the mesh",
    ),
    "audit export": ("tidemesh audit export --file audit.jsonl",),
    "ca": (
        "tidemesh ca",
        'curl --cacert "$(tidemesh ca)" https://127.0.0.1:8080/v1/status',
        "tidemesh ca export mesh-identity/      # the first host's root, NATS users and keys, for the others",
        "tidemesh ca import mesh-identity/ --state-dir state   # on another host, before its first up --join",
    ),
    "probe": ("tidemesh probe gateway && echo healthy",),
    "worker": ("tidemesh worker run textpipe_worker:worker --register",),
    "worker run": (
        "tidemesh worker run textpipe_worker:worker --register",
        "tidemesh worker run mymod:worker --capacity 8 --label gpu=a100",
    ),
    "kinds": ("tidemesh kinds", "tidemesh kinds -o json"),
    "kinds register": (
        "tidemesh kinds register acme.resize --input-type acme.v1.ResizeRequest "
        "--output-type acme.v1.ResizeResult --step fetch --step resize",
    ),
    "model": ("tidemesh model list", "tidemesh model load scaler"),
    "model list": ("tidemesh model list", "tidemesh model list -o yaml"),
    "model status": ("tidemesh model status scaler",),
    "model load": ("tidemesh model load scaler --backend triton",),
    "model unload": ("tidemesh model unload scaler",),
    "infer": (
        "tidemesh infer scaler --input 'X=[[1.5],[2.0]]'",
        "tidemesh infer detector --input 'IMAGE=[…]' --only BOXES -o json",
    ),
    "status": ("tidemesh status", "tidemesh status -o json | jq .queues"),
    "load": (
        "tidemesh load                           # the last 5 minutes, pools and classes with load",
        "tidemesh load --window 60 --all",
        "tidemesh load -o json | jq '.loads[] | {pool, priorityClass, arrivalPerS, serviceSSamples}'",
    ),
    "dash": (
        "tidemesh dash",
        "tidemesh dash --task TASK_ID   # follow one task's partial outputs",
        "tidemesh dash --dlq TASK_ID    # a dead letter's diagnosis, ready to replay",
        "tidemesh dash --accessible     # one column, no box drawing, changes announced as lines",
    ),
    "desktop": (
        "tidemesh desktop                        # Flet's window (falls back to --web without its client)",
        "tidemesh desktop --web --port 8550      # serve the app to a browser, print its URL",
        "tidemesh desktop --web --tenant acme --theme high-contrast",
        "tidemesh desktop --open dlq/TASK_ID     # straight to a dead letter (tasks/TASK_ID: a task's stream)",
    ),
}

START_THE_MESH = (
    "start one with `tidemesh up` (or `make run`), or point the CLI at a running one "
    "with --endpoint HOST:PORT / $TIDEMESH_ENDPOINT"
)


def commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command under `parser` as (path, parser): "submit", "schema", "schema register", …"""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                child_path = f"{path} {name}".strip()
                yield child_path, child
                yield from commands(child, child_path)


def attach_examples(parser: argparse.ArgumentParser) -> None:
    """Each command's help ends with its examples (kept as written, one per line)."""
    for path, child in commands(parser):
        examples = EXAMPLES.get(path)
        if not examples:
            continue
        child.formatter_class = argparse.RawDescriptionHelpFormatter
        lines = "\n".join(f"  {line}" for line in examples)
        child.epilog = f"{child.epilog}\n\n" if child.epilog else ""
        child.epilog += f"examples:\n{lines}"
