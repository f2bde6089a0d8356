"""The agent pool's requests and answers (``mnp pool``), as typed msgspec structs: one JSON frame each.

A pool agent (:mod:`mnp.node.poold`) is one host's agent that stays between jobs: ``mnp pool start`` starts it over
SSH with the usual preflight, and ``mnp launch --via pool`` asks it to fork the job's agent instead of opening an
SSH session and starting an interpreter on every host. The client reaches it over a CURVE socket whose keys were
exchanged on the SSH channel (the pool agent's public key comes back on it, the client's public key goes down it):
only the holder of the client key that started the pool is heard, and the client knows it talks to that host's agent.

The exchange::

    client (mnp launch, mnp pool)       pool agent
    Ping               ------->     <-------  Ready      (who it is, what it runs)
    Run(node, handoff) ------->     <-------  Running    (the job's agent for that node is forked)  | Refused
                                    <-------  Ended      (that agent exited, with its status)
    Kill(node)         ------->                           (that agent is told to stop: the job's teardown)
    Stop               ------->     <-------  Stopping   (its agents are told to stop; it exits after them)

Whoever sends something else, or something malformed, gets :class:`Refused` with the reason.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

from mnp.control.messages import InvalidMessage, decode_frame

__all__ = ["Ping", "Run", "Kill", "Stop", "Ready", "Running", "Ended", "Refused", "Stopping", "ToPool", "FromPool",
           "encode", "decode_to_pool", "decode_from_pool", "MAX_FRAME"]

#: the largest request a pool agent decodes (a handoff is a few KiB; its children's keys at width 32, ~10 KiB)
MAX_FRAME = 1 << 20


class _Msg(msgspec.Struct, frozen=True, tag_field="t", forbid_unknown_fields=True):
    pass


class _Answer(msgspec.Struct, frozen=True, tag_field="t"):
    """What a pool agent says: a field this client does not know yet (a pool agent of a newer mnp) is skipped, so
    its Ready still arrives and the version check can say what to do (requests stay strict)."""


class Ping(_Msg, frozen=True, tag="ping"):
    pass


class Run(_Msg, frozen=True, tag="run"):
    node: int
    handoff: dict[str, Any]


class Kill(_Msg, frozen=True, tag="kill"):
    node: int  # that node's agent, of this client's job: SIGTERM (it stops its ranks and says goodbye)


class Stop(_Msg, frozen=True, tag="stop"):
    pass


class Ready(_Answer, frozen=True, tag="ready"):
    hostname: str
    python: str
    mnp: str
    mpi: str
    pid: int
    agents: int  # the jobs' agents it runs now
    idle_s: float  # it exits after this long with no request and no agent
    started: float  # its start, seconds since the epoch
    served: int = 0  # the jobs' agents it has forked since


class Running(_Answer, frozen=True, tag="running"):
    node: int
    pid: int


class Ended(_Answer, frozen=True, tag="ended"):
    node: int
    pid: int
    status: int  # the agent's exit code; 128 + N when signal N ended it


class Refused(_Answer, frozen=True, tag="refused"):
    reason: str
    node: int | None = None


class Stopping(_Answer, frozen=True, tag="stopping"):
    agents: int


ToPool: TypeAlias = Ping | Run | Kill | Stop
FromPool: TypeAlias = Ready | Running | Ended | Refused | Stopping

_encoder = msgspec.json.Encoder()
_to_pool = msgspec.json.Decoder(ToPool)  # type: ignore[arg-type]
_from_pool = msgspec.json.Decoder(FromPool)  # type: ignore[arg-type]


def encode(msg: ToPool | FromPool) -> bytes:
    return _encoder.encode(msg)


def _decode(decoder: msgspec.json.Decoder, frame: bytes) -> object:
    got = decode_frame(decoder, frame, MAX_FRAME)  # the control plane's own rule: never an exception
    return got.why if isinstance(got, InvalidMessage) else got


def decode_to_pool(frame: bytes) -> ToPool | str:
    """A request, or why it is not one (a string)."""
    return _decode(_to_pool, frame)  # type: ignore[return-value]


def decode_from_pool(frame: bytes) -> FromPool | str:
    """An answer, or why it is not one (a string)."""
    return _decode(_from_pool, frame)  # type: ignore[return-value]
