"""Hostfiles, --hosts and Slurm allocations -> HostSpec lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnp.cluster.hosts import HostSpec, choose_via, load_hostfile, parse_hostfile, parse_hosts_option, slurm_hosts
from mnp.errors import UsageError

pytestmark = pytest.mark.noroot

HOSTFILES = Path(__file__).resolve().parents[2] / "hostfiles"


def H(name: str, slots: int | None = None, max_slots: int | None = None, user: str | None = None,
      port: int | None = None) -> HostSpec:
    return HostSpec(name, slots, max_slots, user, port)


# --- hostfiles: good lines --------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, want", [
    ("node01", H("node01")),
    ("  node01  ", H("node01")),
    ("node01.cluster.example.com", H("node01.cluster.example.com")),
    ("10.0.0.7", H("10.0.0.7")),
    ("node_1", H("node_1")),
    ("node01:4", H("node01", 4)),
    ("node01:1", H("node01", 1)),
    ("10.0.0.7:16", H("10.0.0.7", 16)),
    ("node01 slots=4", H("node01", 4)),
    ("node01\tslots=4", H("node01", 4)),
    ("node01 slots=4 max_slots=8", H("node01", 4, 8)),
    ("node01 max_slots=8 slots=4", H("node01", 4, 8)),
    ("node01 slots=4 max-slots=4", H("node01", 4, 4)),
    ("node01 SLOTS=4", H("node01", 4)),
    ("node01 max_slots=8", H("node01", None, 8)),
    ("node01:4 max_slots=8", H("node01", 4, 8)),
    ("alice@node01", H("node01", user="alice")),
    ("alice@node01:2", H("node01", 2, user="alice")),
    ("alice@node01 slots=2", H("node01", 2, user="alice")),
    ("svc_user.x@node01", H("node01", user="svc_user.x")),
    ("node01 port=2222", H("node01", port=2222)),
    ("bob@node01 slots=2 port=22", H("node01", 2, user="bob", port=22)),
    ("node01:3 port=65535", H("node01", 3, port=65535)),
    ("[fe80::1]", H("fe80::1")),
    ("[::1]:2", H("::1", 2)),
    ("carol@[fd00::7]:1", H("fd00::7", 1, user="carol")),
    ("[fd00::7] slots=3", H("fd00::7", 3)),
    ("node01 # trailing comment", H("node01")),
    ("node01:4# no space before the comment", H("node01", 4)),
    ("node01 slots=4 # slots=9 is a comment", H("node01", 4)),
])
def test_hostfile_line(line: str, want: HostSpec) -> None:
    assert parse_hostfile(line + "\n", "h.txt") == [want]


def test_hostfile_mixed_styles_comments_and_blank_lines() -> None:
    text = (
        "# header\n"
        "\n"
        "a\n"
        "   # indented comment\n"
        "b:2\n"
        "\t\n"
        "c slots=3 max_slots=6\n"
        "dave@d:1\n"
        "e port=2200\n"
    )
    assert parse_hostfile(text, "h.txt") == [
        H("a"), H("b", 2), H("c", 3, 6), H("d", 1, user="dave"), H("e", port=2200)]


def test_hostfile_keeps_order() -> None:
    names = [f"n{i}" for i in (5, 1, 9, 3)]
    assert [h.name for h in parse_hostfile("\n".join(names), "h")] == names


def test_hostfile_crlf_and_bom() -> None:
    assert parse_hostfile("\ufeffa:2\r\nb\r\n", "h") == [H("a", 2), H("b")]


def test_hostfile_no_trailing_newline() -> None:
    assert parse_hostfile("a\nb:2", "h") == [H("a"), H("b", 2)]


def test_same_host_on_other_ports_is_two_hosts() -> None:
    assert parse_hostfile("box port=2201\nbox port=2202\n", "h") == [H("box", port=2201), H("box", port=2202)]


def test_target() -> None:
    assert H("n1").target == "n1"
    assert H("n1", user="alice").target == "alice@n1"


def test_hostspec_is_frozen() -> None:
    with pytest.raises(AttributeError):
        H("n1").slots = 3  # type: ignore[misc]


# --- hostfiles: errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("a\nb\nc:x\n", "hosts.txt:3: slots must be a positive integer, got 'x'"),
    ("a:0", "hosts.txt:1: slots must be a positive integer, got '0'"),
    ("a:-1", "hosts.txt:1: slots must be a positive integer, got '-1'"),
    ("a:+2", "hosts.txt:1: slots must be a positive integer, got '+2'"),
    ("a:", "hosts.txt:1: slots must be a positive integer, got ''"),
    ("a:2.5", "hosts.txt:1: slots must be a positive integer, got '2.5'"),
    ("a:\u0663", "hosts.txt:1: slots must be a positive integer, got '\u0663'"),
    ("a slots=x", "hosts.txt:1: slots must be a positive integer, got 'x'"),
    ("a slots=0", "hosts.txt:1: slots must be a positive integer, got '0'"),
    ("a slots=", "hosts.txt:1: slots must be a positive integer, got ''"),
    ("a max_slots=0", "hosts.txt:1: max_slots must be a positive integer, got '0'"),
    ("a max-slots=y", "hosts.txt:1: max-slots must be a positive integer, got 'y'"),
    ("a slots=4 max_slots=2", "hosts.txt:1: max_slots (2) is less than slots (4)"),
    ("a:4 max_slots=2", "hosts.txt:1: max_slots (2) is less than slots (4)"),
    ("a:4 slots=4", "hosts.txt:1: slots given twice ('a:4' and slots=4)"),
    ("a slots=1 slots=2", "hosts.txt:1: slots is given twice"),
    ("a max_slots=3 max-slots=3", "hosts.txt:1: max-slots is given twice"),
    ("a port=0", "hosts.txt:1: port must be an integer from 1 to 65535, got '0'"),
    ("a port=65536", "hosts.txt:1: port must be an integer from 1 to 65535, got '65536'"),
    ("a port=ssh", "hosts.txt:1: port must be an integer from 1 to 65535, got 'ssh'"),
    ("a cpu=4", "hosts.txt:1: unknown key 'cpu' (use slots=N, max_slots=N or port=N)"),
    ("a 4", "hosts.txt:1: unexpected '4' (use slots=N, max_slots=N or port=N)"),
    ("a b", "hosts.txt:1: unexpected 'b' (use slots=N, max_slots=N or port=N)"),
    ("@a", "hosts.txt:1: '' is not a valid user name"),
    ("1bad@a", "hosts.txt:1: '1bad' is not a valid user name"),
    ("alice@", "hosts.txt:1: missing host name"),
    (":4", "hosts.txt:1: missing host name"),
    ("-a", "hosts.txt:1: '-a' is not a valid host name"),
    ("a-", "hosts.txt:1: 'a-' is not a valid host name"),
    ("a/b", "hosts.txt:1: 'a/b' is not a valid host name"),
    ("slots=4", "hosts.txt:1: 'slots=4' is not a valid host name"),
    ("a@b@c", "hosts.txt:1: 'b@c' is not a valid host name"),
    ("fe80::1", "hosts.txt:1: 'fe80::1': write an IPv6 address in brackets, e.g. [fe80::1]:4"),
    ("[fe80::1", "hosts.txt:1: '[fe80::1' is not a bracketed IPv6 address such as [fe80::1]"),
    ("[]", "hosts.txt:1: '[]' is not a bracketed IPv6 address such as [fe80::1]"),
    ("[node01]", "hosts.txt:1: '[node01]' is not a bracketed IPv6 address such as [fe80::1]"),
    ("[::1]4", "hosts.txt:1: unexpected '4' after '[::1]'"),
    ("[::1]:x", "hosts.txt:1: slots must be a positive integer, got 'x'"),
])
def test_hostfile_error(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_hostfile(text, "hosts.txt")
    assert str(e.value) == message
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("a\nb\na\n", "h.txt:3: host 'a' is already listed on line 1 (list each host once)"),
    ("a:2\n\n# c\nb\nA slots=4\n", "h.txt:5: host 'A' is already listed on line 1 (list each host once)"),
    ("x@a\ny@a\n", "h.txt:2: host 'a' is already listed on line 1 (list each host once)"),
    ("a port=22\nb\na port=22\n", "h.txt:3: host 'a port=22' is already listed on line 1 (list each host once)"),
])
def test_hostfile_duplicate_hosts_name_both_lines(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_hostfile(text, "h.txt")
    assert str(e.value) == message


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n# comments\n", "   \n\t# x\n", "\ufeff"])
def test_empty_hostfile_is_an_error(text: str) -> None:
    with pytest.raises(UsageError, match=r"^h\.txt: no hosts \(the hostfile is empty or has only comments\)$"):
        parse_hostfile(text, "h.txt")


def test_error_line_numbers_count_comments_and_blanks() -> None:
    with pytest.raises(UsageError, match=r"^f:5: "):
        parse_hostfile("# a\n\nn1\n  # b\nn2:zero\n", "f")


# --- hostfiles on disk ------------------------------------------------------------------------------------------

EXAMPLES = sorted(HOSTFILES.glob("*.txt"))


def test_example_hostfiles_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"plain.txt", "mpich.txt", "openmpi.txt", "mixed.txt"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_hostfile_parses(path: Path) -> None:
    assert path.read_text().startswith("#"), "each example starts with a comment header"
    hosts = load_hostfile(path)
    assert hosts and all(isinstance(h, HostSpec) for h in hosts)
    assert parse_hostfile(path.read_text(), path.name) == hosts


@pytest.mark.parametrize("name, want", [
    ("plain.txt", [H("node01"), H("node02"), H("node03"), H("node04")]),
    ("mpich.txt", [H("node01", 4), H("node02", 4), H("node03", 2), H("node04")]),
    ("openmpi.txt", [H("node01", 8, 16), H("node02", 8), H("node03", 4, 4), H("node04")]),
    ("mixed.txt", [H("head-node"), H("compute-a", 4), H("compute-b", 4, 8), H("compute-c", 2, user="alice"),
                   H("compute-d", 2, user="bob", port=2222), H("10.0.0.7", 1), H("fd00::7", 1)]),
])
def test_example_hostfile_contents(name: str, want: list[HostSpec]) -> None:
    assert load_hostfile(HOSTFILES / name) == want


def test_load_hostfile_missing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"nope\.txt: cannot read hostfile: No such file or directory$"):
        load_hostfile(tmp_path / "nope.txt")


def test_load_hostfile_not_text(tmp_path: Path) -> None:
    p = tmp_path / "bin.txt"
    p.write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(UsageError, match=r"bin\.txt: cannot read hostfile: not UTF-8 text$"):
        load_hostfile(p)


def test_load_hostfile_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A FIFO would block a plain read, /dev/zero never ends: neither is read at all."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"fifo: cannot read hostfile: not a regular file \(a FIFO\)$"):
        load_hostfile(fifo)
    with pytest.raises(UsageError, match=r"^/dev/zero: cannot read hostfile: not a regular file \(a character"):
        load_hostfile("/dev/zero")
    with pytest.raises(UsageError, match=r"cannot read hostfile: not a regular file \(a directory\)$"):
        load_hostfile(tmp_path)


def test_load_hostfile_size_bound(tmp_path: Path) -> None:
    p = tmp_path / "big"
    p.write_text("# padding\n" * 120_000)
    with pytest.raises(UsageError, match=r"big: cannot read hostfile: larger than 1 MiB$"):
        load_hostfile(p)


@pytest.mark.parametrize("text, message", [
    ("a:" + "9" * 5000, "hosts.txt:1: slots must be a positive integer, got '999"),
    ("a port=" + "1" * 5000, "hosts.txt:1: port must be an integer from 1 to 65535"),
    ("a\x00b", "hosts.txt:1: 'a\\x00b' is not a valid host name"),
])
def test_hostfile_hostile_values(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_hostfile(text, "hosts.txt")
    assert str(e.value).startswith(message)


def test_slurm_names_with_a_newline_are_refused() -> None:
    with pytest.raises(UsageError, match="is not a valid host name"):
        slurm_hosts({"SLURM_JOB_NODELIST": "a,b\nc"})
    with pytest.raises(UsageError, match="is not N or N"):
        slurm_hosts({"SLURM_JOB_NODELIST": "a", "SLURM_TASKS_PER_NODE": "1" * 5000})


def test_load_hostfile_names_the_path(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    p.write_text("a\nb:q\n")
    with pytest.raises(UsageError) as e:
        load_hostfile(p)
    assert str(e.value) == f"{p}:2: slots must be a positive integer, got 'q'"


# --- --hosts ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("h1", [H("h1")]),
    ("h1,h2:4,user@h3:2", [H("h1"), H("h2", 4), H("h3", 2, user="user")]),
    (" h1 , h2:4 ", [H("h1"), H("h2", 4)]),
    ("10.0.0.1:2,10.0.0.2:2", [H("10.0.0.1", 2), H("10.0.0.2", 2)]),
    ("[::1]:2,[fe80::2]", [H("::1", 2), H("fe80::2")]),
    ("a,b,c,d", [H("a"), H("b"), H("c"), H("d")]),
])
def test_hosts_option(text: str, want: list[HostSpec]) -> None:
    assert parse_hosts_option(text) == want


@pytest.mark.parametrize("text, message", [
    ("", "--hosts: no hosts given (use e.g. --hosts h1,h2:4,user@h3:2)"),
    ("  ", "--hosts: no hosts given (use e.g. --hosts h1,h2:4,user@h3:2)"),
    ("h1,,h2", "--hosts: empty item in 'h1,,h2'"),
    ("h1,", "--hosts: empty item in 'h1,'"),
    (",h1", "--hosts: empty item in ',h1'"),
    ("h1,h2:x", "--hosts: 'h2:x': slots must be a positive integer, got 'x'"),
    ("h1:0", "--hosts: 'h1:0': slots must be a positive integer, got '0'"),
    ("h1,h1:2", "--hosts: 'h1:2': host 'h1' is listed twice"),
    ("H1,a@h1", "--hosts: 'a@h1': host 'h1' is listed twice"),
    ("h1 slots=2", "--hosts: 'h1 slots=2': items are [user@]host[:N], with no spaces"),
    ("@h1", "--hosts: '@h1': '' is not a valid user name"),
    ("u@", "--hosts: 'u@': missing host name"),
    ("h_1!", "--hosts: 'h_1!': 'h_1!' is not a valid host name"),
    ("fe80::1", "--hosts: 'fe80::1': 'fe80::1': write an IPv6 address in brackets, e.g. [fe80::1]:4"),
])
def test_hosts_option_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_hosts_option(text)
    assert str(e.value) == message
    assert e.value.exit_code == 2


# --- Slurm ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env", [
    {},
    {"PATH": "/usr/bin"},
    {"SLURM_JOB_NODELIST": ""},
    {"SLURM_JOB_NODELIST": "  ", "SLURM_NODELIST": ""},
    {"SLURM_TASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "3"},
])
def test_slurm_outside_allocation(env: dict[str, str]) -> None:
    assert slurm_hosts(env) is None


def names(hosts: list[HostSpec] | None) -> list[str]:
    assert hosts is not None
    return [h.name for h in hosts]


@pytest.mark.parametrize("nodelist, want", [
    ("node01", ["node01"]),
    ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
    ("a[1-2]-ib,b3", ["a1-ib", "a2-ib", "b3"]),
    ("n[9-11]", ["n9", "n10", "n11"]),
    ("rack[1-2]n[1-2]", ["rack1n1", "rack1n2", "rack2n1", "rack2n2"]),
    ("x,y,z", ["x", "y", "z"]),
    ("gpu-[001-003]", ["gpu-001", "gpu-002", "gpu-003"]),
])
def test_slurm_nodelist(nodelist: str, want: list[str]) -> None:
    hosts = slurm_hosts({"SLURM_JOB_NODELIST": nodelist})
    assert names(hosts) == want
    assert hosts is not None and all(h.slots is None and h.user is None and h.port is None for h in hosts)


def test_slurm_nodelist_fallback() -> None:
    assert names(slurm_hosts({"SLURM_NODELIST": "c[1-2]"})) == ["c1", "c2"]
    assert names(slurm_hosts({"SLURM_JOB_NODELIST": "", "SLURM_NODELIST": "c[1-2]"})) == ["c1", "c2"]
    assert names(slurm_hosts({"SLURM_JOB_NODELIST": "a1", "SLURM_NODELIST": "b[1-2]"})) == ["a1"]


@pytest.mark.parametrize("env, want", [
    ({"SLURM_NTASKS_PER_NODE": "2"}, [2, 2, 2, 2]),
    ({"SLURM_TASKS_PER_NODE": "2(x3),1"}, [2, 2, 2, 1]),
    ({"SLURM_TASKS_PER_NODE": "4(x4)"}, [4, 4, 4, 4]),
    ({"SLURM_TASKS_PER_NODE": "1,2,3,4"}, [1, 2, 3, 4]),
    ({"SLURM_TASKS_PER_NODE": "3"}, [3, 3, 3, 3]),
    ({"SLURM_TASKS_PER_NODE": "1(x2),2(x2)"}, [1, 1, 2, 2]),
    ({"SLURM_NTASKS_PER_NODE": "2(x2),1(x2)"}, [2, 2, 1, 1]),
    ({"SLURM_NTASKS_PER_NODE": "8", "SLURM_TASKS_PER_NODE": "2(x3),1"}, [8, 8, 8, 8]),
    ({"SLURM_NTASKS_PER_NODE": "", "SLURM_TASKS_PER_NODE": "2(x3),1"}, [2, 2, 2, 1]),
    ({"SLURM_JOB_NUM_NODES": "4", "SLURM_TASKS_PER_NODE": "2(x4)"}, [2, 2, 2, 2]),
    ({"SLURM_NNODES": "4"}, [None, None, None, None]),
])
def test_slurm_slots(env: dict[str, str], want: list[int | None]) -> None:
    hosts = slurm_hosts({"SLURM_JOB_NODELIST": "node[01-04]", **env})
    assert hosts is not None
    assert [h.slots for h in hosts] == want
    assert names(hosts) == ["node01", "node02", "node03", "node04"]


@pytest.mark.parametrize("env, message", [
    ({"SLURM_JOB_NODELIST": "node[01-04", },
     "SLURM_JOB_NODELIST='node[01-04': not a Slurm hostlist (unbalanced brackets)"),
    ({"SLURM_JOB_NODELIST": "node[[1-2]]"}, "SLURM_JOB_NODELIST='node[[1-2]]': not a Slurm hostlist (nested brackets)"),
    ({"SLURM_NODELIST": "n[1-x]"}, "SLURM_NODELIST='n[1-x]': not a Slurm hostlist"),
    ({"SLURM_JOB_NODELIST": ","}, "SLURM_JOB_NODELIST=',': names no nodes"),
    ({"SLURM_JOB_NODELIST": "a,b,a"}, "SLURM_JOB_NODELIST='a,b,a': 'a' is listed more than once"),
    ({"SLURM_JOB_NODELIST": "ok,bad!"}, "SLURM_JOB_NODELIST='ok,bad!': 'bad!' is not a valid host name"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_NUM_NODES": "4"},
     "SLURM_JOB_NUM_NODES=4 but SLURM_JOB_NODELIST='n[1-3]' names 3 node(s)"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_NNODES": "2"},
     "SLURM_NNODES=2 but SLURM_JOB_NODELIST='n[1-3]' names 3 node(s)"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_JOB_NUM_NODES": "three"}, "SLURM_JOB_NUM_NODES='three' is not a number"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2(x2)"},
     "SLURM_TASKS_PER_NODE='2(x2)' gives task counts for 2 node(s), but SLURM_JOB_NODELIST='n[1-3]' names 3"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2(x3),1"},
     "SLURM_TASKS_PER_NODE='2(x3),1' gives task counts for 4 node(s), but SLURM_JOB_NODELIST='n[1-3]' names 3"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_NTASKS_PER_NODE": "1,2"},
     "SLURM_NTASKS_PER_NODE='1,2' gives task counts for 2 node(s), but SLURM_JOB_NODELIST='n[1-3]' names 3"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2(3)"},
     "SLURM_TASKS_PER_NODE='2(3)': '2(3)' is not N or N(xR)"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "x"}, "SLURM_TASKS_PER_NODE='x': 'x' is not N or N(xR)"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "2,,1"},
     "SLURM_TASKS_PER_NODE='2,,1': '' is not N or N(xR)"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "0(x3)"},
     "SLURM_TASKS_PER_NODE='0(x3)': task counts and repeats must be positive"),
    ({"SLURM_JOB_NODELIST": "n[1-3]", "SLURM_TASKS_PER_NODE": "1(x0),1(x3)"},
     "SLURM_TASKS_PER_NODE='1(x0),1(x3)': task counts and repeats must be positive"),
])
def test_slurm_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        slurm_hosts(env)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_slurm_huge_repeat_is_refused() -> None:
    with pytest.raises(UsageError, match="more than"):
        slurm_hosts({"SLURM_JOB_NODELIST": "n1", "SLURM_TASKS_PER_NODE": "1(x999999999)"})


def test_slurm_reads_any_mapping() -> None:
    from types import MappingProxyType
    env = MappingProxyType({"SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "3(x2)"})
    assert slurm_hosts(env) == [H("n1", 3), H("n2", 3)]


# --- how agents start: --via ------------------------------------------------------------------------------------

JOB = {"SLURM_JOB_ID": "12", "SLURM_JOB_NODELIST": "n[1-2]"}


@pytest.mark.parametrize("via, from_allocation, env, want", [
    (None, True, JOB, "srun"),  # inside an allocation: srun by default
    (None, False, JOB, "ssh"),  # --hosts/--hostfile inside an allocation: SSH
    (None, False, {}, "ssh"),
    (None, True, {"SLURM_JOB_NODELIST": "n[1-2]"}, "ssh"),  # a node list without a job id: no srun
    ("ssh", True, JOB, "ssh"),
    ("srun", True, JOB, "srun"),
])
def test_choose_via(via: str | None, from_allocation: bool, env: dict[str, str], want: str) -> None:
    assert choose_via(via, from_allocation, env) == want


@pytest.mark.parametrize("from_allocation, env, message", [
    (False, {}, "--via srun: not inside a Slurm allocation (SLURM_JOB_ID is not set)"),
    (False, JOB, "--via srun: srun starts agents on the Slurm allocation's nodes only"),
    (True, {"SLURM_JOB_NODELIST": "n1"}, "--via srun: SLURM_JOB_NODELIST is set but SLURM_JOB_ID is not"),
])
def test_via_srun_errors(from_allocation: bool, env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as e:
        choose_via("srun", from_allocation, env)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
