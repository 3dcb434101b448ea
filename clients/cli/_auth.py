"""`tidemesh auth key|revoke|token|can-i|roles|enroll|confirm|step-up` — credentials, what they may
do, and the second factor of sensitive actions.

``key`` and ``revoke`` ask the gateway (CreateApiKey, RevokeCredential: a key never gets more than
the credential that mints it; a tenant-admin mints and revokes its own tenant's keys). ``token``
mints a JWT locally with the mesh's own signing secret (``<state>/auth/jwt.secret``). ``can-i
ACTION`` asks the gateway for the caller's own decision (AccessService.CheckAccess): exit 0 when
allowed, 1 when refused, saying which role allows it or what is missing. ``roles`` lists the
built-in roles, the mesh's own (``<state>/auth/roles.json``, written from the manifest) and every
action, without a mesh.

Step-up (a mesh with ``endpoints.public.auth.stepUp: required``): ``enroll`` makes the caller's
TOTP secret (shown once, with its otpauth:// URI) and, on a terminal, confirms it with a first code;
``confirm`` does that later; ``step-up ACTION --resource R`` trades a fresh code for a token
approving that one call (``key`` and ``revoke`` do it by themselves when challenged, as do ``dlq
purge`` and ``audit export``). Codes come from the terminal or ``$TIDEMESH_OTP`` (`_stepup`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.cli._connect import client_for
from clients.cli._exit import EXIT_FAILED, EXIT_OK
from clients.cli._output import Output
from clients.cli._stepup import otp_code, step_up_of, with_step_up
from clients.sdk import Client
from mesh.access import ACTIONS, ANY_TENANT, ROLES_FILE, RoleCatalog, RoleError, read_roles
from mesh.errors import InvalidArgument

__all__ = ["add_auth_commands", "auth_command"]

DEFAULT_ROLES = "submitter,viewer"


def add_auth_commands(
    subparsers: argparse._SubParsersAction,  # type: ignore[type-arg]
    client_args: Callable[..., None],
) -> None:
    """``tidemesh auth ...``; `client_args` adds --endpoint, --api-key, --state-dir and the rest."""
    p_auth = subparsers.add_parser("auth", help="API keys, tokens, revocation, and what a credential may do")
    actions = p_auth.add_subparsers(dest="auth_action", required=True)
    roles_help = (
        "comma-separated roles: viewer, submitter, operator, tenant-admin (one tenant); policy-admin, auditor, "
        "worker, admin (tenant '*'); the mesh's own (`tidemesh auth roles`)"
    )
    p_key = actions.add_parser("key", help="create an API key (shown once)")
    p_key.add_argument("--tenant", default="", help="the key's tenant, or '*' for every tenant")
    p_key.add_argument("--roles", default=DEFAULT_ROLES, help=roles_help)
    p_key.add_argument("--name", default="", help="a label for people (in the audit)")
    p_revoke = actions.add_parser("revoke", help="revoke an API key or a token: refused from now on, its streams end")
    p_revoke.add_argument("credential_id", nargs="?", default="", help="an API key id or a token's jti")
    p_revoke.add_argument("--reason", default="")
    p_token = actions.add_parser("token", help="mint a JWT with the local mesh's signing secret")
    p_token.add_argument("--tenant", default="", help="the token's tenant, or '*' for every tenant")
    p_token.add_argument("--roles", default=DEFAULT_ROLES, help=roles_help)
    p_token.add_argument("--ttl", type=float, default=3600.0, help="token lifetime, seconds")
    p_token.add_argument("--audience", default="tidemesh")
    p_can = actions.add_parser(
        "can-i", help="may my credential take ACTION? exit 0 yes, 1 no; says which role, or what is missing"
    )
    p_can.add_argument("action_name", metavar="ACTION", help="an action, e.g. dlq.purge (`tidemesh auth roles`)")
    p_can.add_argument("--tenant", default="", help="in this tenant ('*': every tenant; default: the credential's)")
    p_roles = actions.add_parser("roles", help="the roles (built-in and the mesh's own) and every action")
    p_enroll = actions.add_parser(
        "enroll", help="enrol a TOTP authenticator for this credential (for sensitive actions' step-up)"
    )
    p_enroll.add_argument("--replace", action="store_true", help="replace the active one (asks a code of it first)")
    actions.add_parser("confirm", help="activate the enrolled authenticator with its first code")
    p_step = actions.add_parser(
        "step-up", help="a short-lived token approving ACTION on RESOURCE once, for a fresh one-time code"
    )
    p_step.add_argument("action_name", metavar="ACTION", help="as the challenge named it, e.g. dlq.purge")
    p_step.add_argument("--resource", required=True, help="as the challenge named it, e.g. dlq:tenant=acme")
    for p in (p_key, p_token, p_can, p_roles, p_enroll, p_step, actions.choices["confirm"]):
        client_args(p)
    client_args(p_revoke, destructive=True)


async def auth_command(args: argparse.Namespace, out: Output) -> int:
    if args.auth_action == "roles":
        return _roles(_catalog(args.state_dir), out)
    if args.auth_action == "token":
        return _token(args, out)
    async with client_for(args) as client:
        if args.auth_action == "can-i":
            return _answer(await client.check_access(args.action_name, args.tenant), out)
        if args.auth_action in ("enroll", "confirm", "step-up"):
            return await _second_factor(args, client, out)
        if args.auth_action == "key":
            if not args.tenant:
                raise InvalidArgument("tenant", "auth key needs --tenant (or '*' for a key for every tenant)")
            roles = _roles_of(args.roles)
            created = await with_step_up(
                out, step_up_of(client), lambda token: client.create_api_key(args.tenant, roles, args.name, token)
            )
            out.data(
                {"key_id": created.key_id, "api_key": created.api_key},
                table=lambda: out.lines([f"key id {created.key_id}", created.api_key]),
            )
            return EXIT_OK
        if not args.credential_id:
            raise InvalidArgument("credential_id", "auth revoke needs the key id or the token's jti")
        out.confirm(
            f"revoke credential {args.credential_id} (its holders are refused from now on)", [args.credential_id]
        )
        await with_step_up(
            out, step_up_of(client), lambda token: client.revoke_credential(args.credential_id, args.reason, token)
        )
        out.data({"revoked": args.credential_id}, table=lambda: out.line(f"revoked {args.credential_id}"))
    return EXIT_OK


async def _second_factor(args: argparse.Namespace, client: Client, out: Output) -> int:
    if args.auth_action == "enroll":
        current = otp_code("a code of the authenticator now active: ") if args.replace else ""
        enrolment = await client.enroll_totp(current)
        shown = {"operator": enrolment.operator, "secret": enrolment.secret, "uri": enrolment.provisioning_uri}
        out.data(
            shown,
            table=lambda: out.lines(
                [f"TOTP secret for {enrolment.operator} (shown once): {enrolment.secret}", enrolment.provisioning_uri]
            ),
        )
        if not sys.stdin.isatty():  # its first code cannot have been known before the secret
            out.note("add it to your authenticator app, then: tidemesh auth confirm")
            return EXIT_OK
        await client.confirm_totp(otp_code("the authenticator's first code: "))
        out.note(f"second factor of {enrolment.operator} is active")
        return EXIT_OK
    if args.auth_action == "confirm":
        await client.confirm_totp(otp_code("the authenticator's code: "))
        out.data({"confirmed": True}, table=lambda: out.line("second factor active"))
        return EXIT_OK
    reply = await client.step_up(args.action_name, args.resource, otp_code("one-time code: "))
    expires = reply.expires_at.ToDatetime().isoformat() + "Z"
    out.data(
        {"token": reply.token, "expires_at": expires, "amr": list(reply.amr)},
        table=lambda: out.line(reply.token),
    )
    out.note(f"approves {args.action_name} on {args.resource} once, until {expires}")
    return EXIT_OK


def _roles_of(text: str) -> list[str]:
    roles = [role.strip() for role in text.split(",") if role.strip()]
    if not roles:
        raise InvalidArgument("roles", "name one or more roles (`tidemesh auth roles` lists them)")
    return roles


def _catalog(state_dir: str) -> RoleCatalog:
    """The built-in roles and the local mesh's own, if it has a roles file."""
    path = Path(state_dir) / "auth" / ROLES_FILE
    if not path.exists():
        return RoleCatalog()
    try:
        return read_roles(path)
    except RoleError as exc:
        raise InvalidArgument("--state-dir", str(exc)) from exc


def _token(args: argparse.Namespace, out: Output) -> int:
    from services.gateway._auth import mint_token

    secret = Path(args.state_dir) / "auth" / "jwt.secret"
    if not args.tenant or not secret.exists():
        raise InvalidArgument("tenant", f"auth token needs --tenant and {secret} (a mesh started with auth)")
    catalog = _catalog(args.state_dir)
    roles = sorted(catalog.check_credential(args.tenant, _roles_of(args.roles)))
    token = mint_token(secret.read_text().strip(), args.tenant, roles, args.audience, args.ttl, catalog=catalog)
    out.data({"token": token}, table=lambda: out.line(token))
    return EXIT_OK


def _answer(reply: Any, out: Output) -> int:
    where = "" if not reply.tenant else " in every tenant" if reply.tenant == ANY_TENANT else f" in {reply.tenant}"
    who, tenant, roles = reply.credential_id or "anonymous", reply.credential_tenant or "-", ", ".join(reply.roles)
    out.detail(f"credential {who} (tenant {tenant}; roles {roles or 'none'})")
    answer = {
        "allowed": reply.allowed,
        "action": reply.action,
        "tenant": reply.tenant,
        "role": reply.role,
        "reason": reply.reason,
        "credential_id": reply.credential_id,
        "credential_tenant": reply.credential_tenant,
        "roles": list(reply.roles),
    }
    verdict = "yes" if reply.allowed else "no"
    out.data(answer, table=lambda: out.line(f"{verdict}: {reply.action}{where} — {reply.reason}"))
    return EXIT_OK if reply.allowed else EXIT_FAILED


def _roles(catalog: RoleCatalog, out: Output) -> int:
    roles: list[dict[str, Any]] = [
        {
            "name": role.name,
            "builtin": role.builtin,
            "tenants": "every" if role.builtin and role.every_tenant else sorted(role.tenants or ()) or "one",
            "actions": sorted(role.actions),
            "summary": role.summary,
        }
        for role in catalog.roles
    ]
    actions = [{"name": a.name, "scope": a.scope, "reserved": a.reserved, "summary": a.summary} for a in ACTIONS]

    def table() -> None:
        width = max(len(role["name"]) for role in roles)
        out.line("ROLES (one: the credential's tenant; every: a credential for '*')")
        for role in roles:
            tenants = role["tenants"] if isinstance(role["tenants"], str) else ",".join(role["tenants"])
            out.line(f"  {role['name']:<{width}}  {tenants:<6}  {role['summary'] or ''}")
            out.line(f"  {'':<{width}}          {' '.join(role['actions'])}")
        out.line("ACTIONS")
        for action in actions:
            later = " (reserved: no call is guarded by it yet)" if action["reserved"] else ""
            out.line(f"  {action['name']:<16}  {action['scope']:<6}  {action['summary']}{later}")

    out.data({"roles": roles, "actions": actions}, table=table)
    return EXIT_OK
