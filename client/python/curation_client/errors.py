"""The exceptions of a call the server refused or that failed.

Every one is a CurationError carrying the gRPC status code, the server's message and, for
INVALID_ARGUMENT, the path of the offending field: the server words those messages
"<field path>: <reason>" (common/status.h), e.g. "select.budget.fraction: must be in (0, 1]"
or "examples[3].pair.chosen_embedding[7]: must be finite (not NaN or infinity)". The common
codes have their own subclass, so a caller can write `except NotFound:`.
"""
from __future__ import annotations

import re

import grpc

# "<path>: <reason>", a path being dotted names with optional [index] parts.
_FIELD_MESSAGE = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)*): (.+)\Z", re.S)


class CurationError(Exception):
    """A call the server refused or that failed.

    method: the RPC ("GetDataset") or, for a job's failure, the operation's name.
    code: the grpc.StatusCode. details: the server's message. field: for INVALID_ARGUMENT and
    OUT_OF_RANGE, the offending field's path as the server names it ("budget.fraction",
    "examples[3].pair.prompt"), else None; reason: the message without that path."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str | None) -> None:
        # The three arguments as args, so that the error pickles (multiprocessing, Ray...).
        super().__init__(method, code, details)
        self.method = method
        self.code = code
        self.details = details or ""
        self.field: str | None = None
        self.reason = self.details
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
            match = _FIELD_MESSAGE.match(self.details)
            if match:
                self.field, self.reason = match.group(1), match.group(2)

    def __str__(self) -> str:
        return f"{self.method}: {self.code.name}: {self.details}"


class InvalidArgument(CurationError, ValueError):
    """INVALID_ARGUMENT: the request itself is wrong; .field names the field."""


class OutOfRange(CurationError, ValueError):
    """OUT_OF_RANGE, e.g. a page token past the end."""


class NotFound(CurationError, LookupError):
    """NOT_FOUND: no such dataset, selection or operation (or another tenant's)."""


class AlreadyExists(CurationError):
    """ALREADY_EXISTS: the name is taken, or a request_id was used by another request."""


class FailedPrecondition(CurationError):
    """FAILED_PRECONDITION: the request is valid but not in the dataset's state."""


class Unauthenticated(CurationError):
    """UNAUTHENTICATED: no token, or one the server does not know."""


class PermissionDenied(CurationError):
    """PERMISSION_DENIED: the token's role may not make this call."""


class ResourceExhausted(CurationError):
    """RESOURCE_EXHAUSTED: a quota, rate or size limit, named in the message."""


class Unavailable(CurationError):
    """UNAVAILABLE: the server cannot be reached, is starting or is draining."""


class DeadlineExceeded(CurationError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's timeout passed first."""


class Cancelled(CurationError):
    """CANCELLED: the job (or call) was cancelled."""


_BY_CODE: dict[grpc.StatusCode, type[CurationError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
}


def error(method: str, code: grpc.StatusCode, details: str | None) -> CurationError:
    """The CurationError (of the code's subclass, if it has one) for a failed call."""
    return _BY_CODE.get(code, CurationError)(method, code, details)


def from_rpc(method: str, e: grpc.RpcError) -> CurationError:
    # grpc.RpcError raised by a call is also a grpc.Call; the base class declares neither.
    return error(method, e.code(), e.details())
