"""Outbound HTTP for the `webhook` kind: allow-listed, idempotency-keyed, errors classified."""

from __future__ import annotations

import aiohttp

from services.worker._steps import StepFailed

MAX_RESPONSE = 64 * 1024


class WebhookClient:
    """POSTs task bodies to allow-listed URLs.

    The allow-list (URL prefixes) keeps tasks from making the worker call arbitrary
    internal services. A 2xx answer is success; 408/429/5xx and connection errors are
    retried; other 4xx answers are fatal (the request itself is wrong).
    """

    def __init__(self, allow: tuple[str, ...], timeout_s: float = 10.0) -> None:
        self._allow = allow
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: str, idempotency_key: str, task_id: str, traceparent: str) -> str:
        if not any(url.startswith(prefix) for prefix in self._allow):
            raise StepFailed("invalid_input", f"{url} is not on this worker's webhook allow-list", retryable=False)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Idempotency-Key": idempotency_key, "Tidemesh-Task-Id": task_id, "content-type": "text/plain"}
        if traceparent:
            headers["traceparent"] = traceparent
        try:
            async with self._session.post(url, data=body.encode(), headers=headers) as response:
                text = (await response.content.read(MAX_RESPONSE)).decode(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepFailed("dependency_down", f"POST {url}: {exc!r}", retryable=True) from exc
        if 200 <= status < 300:
            return text
        if status == 429:
            raise StepFailed("resource_exhausted", f"POST {url}: 429 {text[:200]}", retryable=True)
        if status == 408 or status >= 500:
            raise StepFailed("dependency_down", f"POST {url}: {status} {text[:200]}", retryable=True)
        raise StepFailed("invalid_input", f"POST {url}: {status} {text[:200]}", retryable=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
