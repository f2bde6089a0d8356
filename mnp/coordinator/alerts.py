"""The driver side of stuck-in-transit alerts: keep the alert with the job, show its line, run ``--notify``.

The notify command runs under ``/bin/sh -c`` (it is the user's hook: a mail, a chat webhook, ``aws sns
publish``), in its own session, with the alert as one JSON object on its stdin. It never holds the job up and
never breaks it: it runs beside the job, a failure is one warning line, and one still running after
``notify_timeout`` seconds (``$MNP_NOTIFY_TIMEOUT``, default 10) is killed, process group and all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mnp import config
from mnp.coordinator.events import EventSink, Note
from mnp.coordinator.transit import TransitWatch, make_alert

if TYPE_CHECKING:
    from mnp.records import Records

__all__ = ["Alerts"]


#: how long a job that has ended still waits for its notify commands
CLOSE_WAIT_S = 2.0

@dataclass
class _Running:
    proc: subprocess.Popen[bytes]
    deadline: float
    started: float = field(default_factory=time.monotonic)


@dataclass
class Alerts:
    watch: TransitWatch
    notify: str | None
    say: EventSink
    timeout_s: float = field(default_factory=lambda: config.setting("notify_timeout", None))
    running: list[_Running] = field(default_factory=list)

    def raise_alert(self, records: Records, job_id: str, name: str, state: str,
                    waiting_for: list[str]) -> dict[str, Any]:
        """The alert made, recorded with the job, shown and sent; returned (its ``line`` is the reason when the
        job is failed for it)."""
        alert = make_alert(self.watch, time.monotonic(), job_id, name, state, waiting_for, socket.gethostname())
        records.alert(job_id, alert)
        self.say(Note("warning", alert["line"]))
        if self.notify:
            self._send(alert)
        return alert

    def _send(self, alert: dict[str, Any]) -> None:
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", self.notify or ""], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            self.say(Note("warning", f"--notify: cannot run {self.notify!r}: {e.strerror or e}"))
            return
        assert proc.stdin is not None
        try:
            proc.stdin.write(json.dumps(alert).encode() + b"\n")  # far below a pipe's buffer: never blocks
            proc.stdin.close()
        except OSError:
            pass  # it did not read its stdin: its exit status says the rest
        self.running.append(_Running(proc, time.monotonic() + self.timeout_s))

    def poll(self, wait: bool = False) -> None:
        """Reap notify commands that ended (a failure is one warning); kill those past their deadline. ``wait``:
        until none is left."""
        while self.running:
            for r in list(self.running):
                code = r.proc.poll()
                if code is None and time.monotonic() > r.deadline:
                    try:
                        os.killpg(r.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    r.proc.wait()
                    ran = time.monotonic() - r.started
                    self.say(Note("warning", f"--notify: {self.notify!r} still ran after {ran:.1f}s; killed"))
                elif code is None:
                    continue
                elif code != 0:
                    self.say(Note("warning", f"--notify: {self.notify!r} exited with status {code}"))
                self.running.remove(r)
            if not wait or not self.running:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """The job is over: a notify command still running gets :data:`CLOSE_WAIT_S` more (never its whole
        timeout), then is killed; a signal meanwhile kills it at once. Nothing is left behind."""
        end = time.monotonic() + CLOSE_WAIT_S
        for r in self.running:
            r.deadline = min(r.deadline, end)
        try:
            self.poll(wait=True)
        except KeyboardInterrupt:
            for r in self.running:
                r.deadline = 0.0
            self.poll(wait=True)
            raise
