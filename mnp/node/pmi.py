"""PMI-1 as MPICH speaks it: a protocol engine that does no I/O.

:class:`PmiServer` takes one line from one local rank and returns what to send back. Puts go to the node's
pending set; a barrier completes when every local rank has entered it, at which point the engine calls
``on_barrier(puts)``; the caller exchanges the puts with the other nodes and calls :meth:`PmiServer.barrier_done`
with every node's puts, which returns the ``barrier_out`` replies. Gets are answered from the local copy of the
key-value space. Wire format and the call sequence are in shared/notes/launch-and-pmi.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["PmiServer", "PmiEvent", "parse_line", "format_line", "process_mapping"]

KVSNAME_MAX = 256
KEYLEN_MAX = 64
VALLEN_MAX = 1024


def parse_line(line: str) -> dict[str, str]:
    """``cmd=put kvsname=k key=a value=b`` -> dict. Values may not contain spaces, except ``msg``/``message``."""
    out: dict[str, str] = {}
    words = line.strip().split(" ")
    i = 0
    while i < len(words):
        w = words[i]
        if "=" not in w:
            i += 1
            continue
        k, v = w.split("=", 1)
        if k in ("msg", "message", "mesg"):  # free text runs to the end of the line
            v = " ".join([v, *words[i + 1:]]).strip()
            out[k] = v
            break
        out[k] = v
        i += 1
    return out


def format_line(**kv: object) -> str:
    return " ".join(f"{k}={v}" for k, v in kv.items()) + "\n"


def process_mapping(ranks_per_node: list[int]) -> str:
    """MPICH's block mapping: ``(vector,(firstnode,nnodes,ppn),...)``, runs of equal ppn folded."""
    blocks: list[list[int]] = []
    for node, ppn in enumerate(ranks_per_node):
        if blocks and blocks[-1][2] == ppn:
            blocks[-1][1] += 1
        else:
            blocks.append([node, 1, ppn])
    return "(vector," + ",".join(f"({a},{b},{c})" for a, b, c in blocks) + ")"


@dataclass
class PmiEvent:
    """Something a rank did that the node must act on (besides replying)."""

    kind: str  # "abort" | "finalize"
    rank: int
    exit_code: int = 0
    message: str = ""


@dataclass
class PmiServer:
    """PMI-1 server state for the ranks of one node."""

    kvsname: str
    size: int
    local_ranks: list[int]
    universe_size: int
    kvs: dict[str, str] = field(default_factory=dict)
    on_barrier: Callable[[dict[str, str]], None] | None = None
    on_event: Callable[[PmiEvent], None] | None = None
    _pending: dict[str, str] = field(default_factory=dict)
    _in_barrier: set[int] = field(default_factory=set)

    def handle(self, rank: int, line: str) -> list[str]:
        """One request line from ``rank``; returns the reply lines (possibly none)."""
        msg = parse_line(line)
        cmd = msg.get("cmd", "")
        if cmd == "init":
            ver = msg.get("pmi_version", "1")
            if ver != "1":
                return [format_line(cmd="response_to_init", rc=-1, pmi_version=1, pmi_subversion=1)]
            return [format_line(cmd="response_to_init", rc=0, pmi_version=1, pmi_subversion=1)]
        if cmd == "get_maxes":
            return [format_line(cmd="maxes", rc=0, kvsname_max=KVSNAME_MAX, keylen_max=KEYLEN_MAX,
                                vallen_max=VALLEN_MAX)]
        if cmd == "get_appnum":
            return [format_line(cmd="appnum", rc=0, appnum=0)]
        if cmd == "get_my_kvsname":
            return [format_line(cmd="my_kvsname", rc=0, kvsname=self.kvsname)]
        if cmd == "get_universe_size":
            return [format_line(cmd="universe_size", rc=0, size=self.universe_size)]
        if cmd == "put":
            key, value = msg.get("key", ""), msg.get("value", "")
            if not key or len(key) > KEYLEN_MAX or len(value) > VALLEN_MAX:
                return [format_line(cmd="put_result", rc=1, msg="invalid_key_or_value")]
            if msg.get("kvsname", self.kvsname) != self.kvsname:
                return [format_line(cmd="put_result", rc=1, msg="unknown_kvsname")]
            self._pending[key] = value
            self.kvs[key] = value
            return [format_line(cmd="put_result", rc=0)]
        if cmd == "get":
            key = msg.get("key", "")
            if key in self.kvs:
                return [format_line(cmd="get_result", rc=0, value=self.kvs[key])]
            return [format_line(cmd="get_result", rc=1, msg="key_not_found")]
        if cmd == "barrier_in":
            self._in_barrier.add(rank)
            if self._in_barrier >= set(self.local_ranks):
                puts, self._pending = self._pending, {}
                if self.on_barrier is not None:
                    self.on_barrier(puts)
            return []
        if cmd == "finalize":
            if self.on_event:
                self.on_event(PmiEvent("finalize", rank))
            return [format_line(cmd="finalize_ack", rc=0)]
        if cmd == "abort":
            code = msg.get("exitcode", "1")
            if self.on_event:
                self.on_event(PmiEvent("abort", rank, int(code) if code.lstrip("-").isdigit() else 1,
                                       msg.get("message", msg.get("msg", ""))))
            return []
        return [format_line(cmd=cmd or "unknown", rc=1, msg=f"unknown_command_{cmd or 'none'}")]

    def barrier_done(self, all_puts: dict[str, str]) -> list[tuple[int, str]]:
        """Every node reached the barrier; merge their puts and release the local ranks."""
        self.kvs.update(all_puts)
        ranks, self._in_barrier = sorted(self._in_barrier), set()
        return [(r, format_line(cmd="barrier_out", rc=0)) for r in ranks]
