"""What every mutating request carries besides its body: the key, the caller's Prefer, where it was
sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from app.http.prefer import prefer_wait
from app.idempotency.keys import fingerprint, parse_idempotency_key


@dataclass(frozen=True, slots=True)
class Mutation:
    key: str
    method: str
    path: str
    wait_seconds: float | None  # what `Prefer` asked for: None when it said nothing about waiting
    respond_async: bool

    def fingerprint(self, body: object, *, scope: str = "") -> str:
        return fingerprint(self.method, self.path, body, scope=scope)

    def wait(self, default: float) -> float:
        """How long to wait for this request's own command."""
        if self.respond_async:
            return 0.0
        return default if self.wait_seconds is None else self.wait_seconds

    @property
    def replay_wait(self) -> float:
        """How long to wait for a request still running under the same key: only what was asked."""
        return self.wait(0.0)


async def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            description=(
                "Required on every mutating call: a retry with the same key gets the first answer "
                'back. A quoted string (`"8e03978e-…"`) or a bare token; at most 255 characters.'
            )
        ),
    ] = None,
) -> str:
    return parse_idempotency_key(idempotency_key)


async def keyed_mutation(
    request: Request, key: Annotated[str, Depends(idempotency_key)]
) -> Mutation:
    """A mutation that answers at once (no `Prefer` to honour): operators' re-drives, settings
    changes."""
    return Mutation(
        key=key,
        method=request.method,
        path=request.url.path,
        wait_seconds=None,
        respond_async=False,
    )


async def mutation(
    request: Request,
    key: Annotated[str, Depends(idempotency_key)],
    prefer: Annotated[
        str | None,
        Header(
            description=(
                "`respond-async` answers 202 at once; `wait=N` waits up to N seconds (also for a "
                "request that is still running under the same Idempotency-Key)."
            )
        ),
    ] = None,
) -> Mutation:
    unset = -1.0
    wait, respond_async = prefer_wait(prefer, unset)
    return Mutation(
        key=key,
        method=request.method,
        path=request.url.path,
        wait_seconds=None if wait == unset else wait,
        respond_async=respond_async,
    )


MutationDep = Annotated[Mutation, Depends(mutation)]
KeyedMutationDep = Annotated[Mutation, Depends(keyed_mutation)]
