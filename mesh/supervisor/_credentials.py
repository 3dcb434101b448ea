"""The local mesh's own credentials: a JWT signing secret and a bootstrap admin API key; and for
step-up (`services.gateway._stepup`), the key sealing TOTP seeds and the step-up token secret.

`tidemesh up` creates them once under ``<state>/auth`` (files readable by the owner only);
the gateway reads them (`--auth-dir`), and the CLI uses the admin key when given no other
credential. Production meshes bring their own: a ``jwt.pub`` from their identity provider
instead of ``jwt.secret``, and API keys created through CreateApiKey.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

ADMIN_KEY_FILE = "admin.key"
JWT_SECRET_FILE = "jwt.secret"
TOTP_KEY_FILE = "totp.key"  # the gateway's _stepup reads these two by the same names
STEP_UP_SECRET_FILE = "step-up.secret"


def ensure_credentials(auth_dir: Path) -> Path:
    auth_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, make in (
        (JWT_SECRET_FILE, lambda: secrets.token_urlsafe(48)),
        (ADMIN_KEY_FILE, lambda: f"tmk_admin_{secrets.token_urlsafe(32)}"),
        (TOTP_KEY_FILE, lambda: base64.b64encode(secrets.token_bytes(32)).decode()),
        (STEP_UP_SECRET_FILE, lambda: secrets.token_urlsafe(48)),
    ):
        path = auth_dir / name
        if not path.exists():
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(make() + "\n")
    return auth_dir


def admin_key(state_dir: Path) -> str:
    """The bootstrap admin key of the mesh in `state_dir`, or "" if it runs without auth."""
    path = state_dir / "auth" / ADMIN_KEY_FILE
    return path.read_text().strip() if path.exists() else ""
