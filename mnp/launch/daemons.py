"""Which remote commands a launcher may have run on another node: its own daemons, nothing else.

``mpirun`` (Open MPI 4's ORTE, Open MPI 5's PRRTE) and ``mpiexec`` (Hydra) start one daemon per node through their
remote shell, which mnp gives them (``mnp-rsh``). What they hand it is a small shell line: variable assignments and
``export``s, then the daemon, for example (PRRTE)::

    PRTE_PREFIX=/opt/ompi;export PRTE_PREFIX;LD_LIBRARY_PATH=/opt/ompi/lib:$LD_LIBRARY_PATH;export LD_LIBRARY_PATH;
    /opt/ompi/bin/prted --prtemca ess "env" --prtemca ess_base_nspace "prte-host-123@0" ...

:func:`check_daemon_command` accepts exactly that shape -- assignments, ``export``/``unset`` of names, and one
final command whose program is ``prted``, ``orted`` or ``hydra_pmi_proxy`` -- and refuses anything else: other
programs, pipes, redirections, ``&&``/``||``, background jobs, command substitution, newlines. Both the coordinator
(before it forwards a request) and the agent (before it runs one) apply it.
"""

from __future__ import annotations

import os
import re
import shlex

__all__ = ["DAEMONS", "check_daemon_command"]

#: the programs a launcher starts on other nodes
DAEMONS = ("prted", "orted", "hydra_pmi_proxy", "hydra_bstrap_proxy")  # the last: Intel MPI's Hydra

_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX = 64 << 10


def check_daemon_command(command: str) -> str | None:
    """None when ``command`` is a launcher daemon's command line; otherwise why it is refused (one line)."""
    if len(command) > _MAX:
        return f"command of {len(command)} characters is too long"
    for bad, what in (("`", "command substitution"), ("$(", "command substitution"), ("\n", "a newline"),
                      ("\0", "a NUL byte"), ("<(", "process substitution"), (">(", "process substitution")):
        if bad in command:
            return f"{what} is not allowed"
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as e:
        return f"cannot parse it: {e}"
    simple: list[list[str]] = [[]]
    for tok in tokens:
        if tok == ";":
            simple.append([])
        elif tok and set(tok) <= set(";&|<>()"):
            return f"shell operator {tok!r} is not allowed"
        else:
            simple[-1].append(tok)
    simple = [s for s in simple if s]
    if not simple:
        return "empty command"
    *setup, run = simple
    for words in setup:
        if words[0] in ("export", "unset"):
            if not all(_NAME.fullmatch(w) or _ASSIGN.fullmatch(w) for w in words[1:]):
                return f"{words[0]} of something other than variables is not allowed"
        elif not all(_ASSIGN.fullmatch(w) for w in words):
            return f"{words[0]!r} is not a launcher daemon (only {', '.join(DAEMONS)} may run)"
    while run and _ASSIGN.fullmatch(run[0]):  # VAR=value prted ...
        run = run[1:]
    if not run:
        return "no daemon in the command"
    program = os.path.basename(run[0])
    if program not in DAEMONS:
        return f"{run[0]!r} is not a launcher daemon (only {', '.join(DAEMONS)} may run)"
    return None
