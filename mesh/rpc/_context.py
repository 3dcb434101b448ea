"""The servicer context type every service's handlers take."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import grpc.aio

if TYPE_CHECKING:
    # Generic in the stubs only: at run time the class takes no type arguments.
    ServerContext: TypeAlias = grpc.aio.ServicerContext[Any, Any]
else:
    ServerContext = grpc.aio.ServicerContext
