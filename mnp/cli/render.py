"""How the ``mnp`` command shows a job's events: rank lines with their ``[node N rank R]`` prefix, notes as
``mnp: ...`` lines, bring-up progress (on a terminal, one line updated in place; elsewhere at most once a second,
and only when bring-up takes more than a second)."""

from __future__ import annotations

import sys
import time

from mnp.coordinator.events import Event, Note, Progress, RankLines

__all__ = ["Renderer"]


class Renderer:
    """``quiet_stdout``: rank stdout goes to our stderr (``--json`` keeps stdout for the one JSON object)."""

    def __init__(self, quiet_stdout: bool = False, progress_after: float = 1.0) -> None:
        self.out = sys.stderr if quiet_stdout else sys.stdout
        self.after = progress_after
        self.t0 = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.shown: dict[str, tuple[int, int]] = {}
        self.last_t = 0.0
        self.open_line = False

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, RankLines):
            self._end_line()
            target = self.out if ev.stream == "stdout" else sys.stderr
            prefix = f"[node {ev.node} rank {ev.rank}] " if ev.rank >= 0 else f"[node {ev.node} launcher] "
            target.write("".join(prefix + ln + "\n" for ln in ev.lines))
            target.flush()
        elif isinstance(ev, Note):
            self._end_line()
            word = {"warning": "warning: ", "security": "refused: "}.get(ev.kind, "")
            sys.stderr.write(f"mnp: {word}{ev.text}\n")
            sys.stderr.flush()
        elif isinstance(ev, Progress):
            self._progress(ev)

    def _end_line(self) -> None:
        if self.open_line:
            sys.stderr.write("\n")
            self.open_line = False

    def _progress(self, ev: Progress) -> None:
        now = time.monotonic()
        state = (ev.done, ev.wanted)
        if ev.final:
            if ev.what in self.shown and self.shown[ev.what] != state:
                self._write(ev, now)
            self._end_line()
            return
        if now - self.t0 < self.after or self.shown.get(ev.what) == state and now - self.last_t < 5:
            return
        if not self.tty and now - self.last_t < 1:
            return
        self._write(ev, now)

    def _write(self, ev: Progress, now: float) -> None:
        self.shown[ev.what], self.last_t = (ev.done, ev.wanted), now
        more = f" ({ev.detail})" if ev.detail and ev.done < ev.wanted else ""
        line = f"mnp: {ev.what} {ev.done}/{ev.wanted}{more}"
        if self.tty:
            sys.stderr.write(f"\r{line}\033[K")
            self.open_line = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
