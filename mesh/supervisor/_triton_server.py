"""A tritonserver of its own, for tests and benchmarks: the same process `tidemesh up --triton`
supervises (`triton_spec`), run by one `Child` on free ports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mesh.model_repository import MODEL_REPOSITORY
from mesh.supervisor._child import Child
from mesh.supervisor._plan import free_port, triton_spec
from mesh.supervisor._security import MeshSecurity


class TritonServer:
    """Stopping it — even with SIGKILL, which Triton cannot pass on — also ends its Python-backend
    stubs (the child's process group goes with it). `start()` after `stop()` reuses the ports:
    clients see the same endpoint go away and come back."""

    def __init__(
        self,
        state_dir: Path,
        config_name: str | None = None,
        secure: bool = True,
        model_repositories: Sequence[Path] = (),
        model_repository: Path = MODEL_REPOSITORY,
        traces_url: str = "",
    ) -> None:
        """`secure` (the default): gRPC only, mutual TLS under a mesh CA in ``state_dir/pki``
        (adopting `TIDEMESH_CA_DIR`'s root when set); `pki` is that folder for its callers.
        `traces_url`: an OTLP/HTTP ``.../v1/traces`` Triton sends a span per request to."""
        self._log_dir = state_dir / "logs"
        self._log_dir.mkdir(parents=True, exist_ok=True)
        security = MeshSecurity.prepare(state_dir) if secure else None
        self.pki = security.pki_dir if security else None
        self.spec = triton_spec(
            state_dir,
            free_port(),
            free_port(),
            free_port(),
            config_name,
            tls=security.leaf("triton") if security else None,
            model_repositories=model_repositories,
            model_repository=model_repository,
            traces_url=traces_url,
        )
        self._backends = state_dir / "triton" / "backends"
        self._child: Child | None = None

    @property
    def address(self) -> str:
        return self.spec.address

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def log(self) -> str:
        path = self._log_dir / f"{self.spec.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stub_pids(self) -> list[int]:
        """Its Python-backend stub processes (they run from its own backend directory)."""
        marker = str(self._backends)
        pids = []
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                continue  # gone meanwhile
        return pids

    async def start(self, timeout_s: float = 60.0) -> None:
        self._child = Child(self.spec, self._log_dir)
        await self._child.start()
        try:
            await self._child.wait_healthy(timeout_s)
        except TimeoutError:
            await self.stop(kill=True)
            raise

    async def stop(self, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with `kill`), then whatever is left of its process group."""
        child, self._child = self._child, None
        if child is None:
            return
        if kill:
            child.kill_now()
        await child.stop(grace_s=30.0)

    async def __aenter__(self) -> TritonServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
