"""The PMI-1 engine, driven line by line as MPICH 5 drives it (no processes, no sockets)."""

from __future__ import annotations

import pytest

from mnp.node.pmi import PmiEvent, PmiServer, parse_line, process_mapping

pytestmark = pytest.mark.noroot


def test_parse_line() -> None:
    assert parse_line("cmd=put kvsname=k key=a value=b\n") == {"cmd": "put", "kvsname": "k", "key": "a", "value": "b"}
    assert parse_line("cmd=abort exitcode=3 message=it went wrong")["message"] == "it went wrong"


def test_process_mapping() -> None:
    assert process_mapping([2, 2, 2, 2]) == "(vector,(0,4,2))"
    assert process_mapping([2, 2, 1, 3, 3]) == "(vector,(0,2,2),(2,1,1),(3,2,3))"


def test_mpich_init_sequence_and_barrier_exchange() -> None:
    exchanged = []
    events: list[PmiEvent] = []
    a = PmiServer("kvs_1", size=4, local_ranks=[0, 1], universe_size=4, kvs={"PMI_process_mapping": "(vector,(0,2,2))"},
                  on_barrier=exchanged.append, on_event=events.append)
    assert a.handle(0, "cmd=init pmi_version=1 pmi_subversion=1") == [
        "cmd=response_to_init rc=0 pmi_version=1 pmi_subversion=1\n"]
    assert "kvsname_max=256" in a.handle(0, "cmd=get_maxes")[0]
    assert a.handle(0, "cmd=get_appnum") == ["cmd=appnum rc=0 appnum=0\n"]
    assert a.handle(0, "cmd=get_my_kvsname") == ["cmd=my_kvsname rc=0 kvsname=kvs_1\n"]
    assert a.handle(0, "cmd=get_universe_size") == ["cmd=universe_size rc=0 size=4\n"]
    assert a.handle(0, "cmd=get kvsname=kvs_1 key=PMI_process_mapping") == [
        "cmd=get_result rc=0 value=(vector,(0,2,2))\n"]
    assert a.handle(0, "cmd=get kvsname=kvs_1 key=PMI_hwloc_xmlfile") == ["cmd=get_result rc=1 msg=key_not_found\n"]
    assert a.handle(0, "cmd=put kvsname=kvs_1 key=bc-0 value=addr0") == ["cmd=put_result rc=0\n"]
    assert a.handle(0, "cmd=barrier_in") == [] and not exchanged  # rank 1 not there yet
    a.handle(1, "cmd=put kvsname=kvs_1 key=bc-1 value=addr1")
    assert a.handle(1, "cmd=barrier_in") == []
    assert exchanged == [{"bc-0": "addr0", "bc-1": "addr1"}]
    # the other node's puts arrive through the coordinator; both local ranks are released
    out = a.barrier_done({"bc-0": "addr0", "bc-1": "addr1", "bc-2": "addr2", "bc-3": "addr3"})
    assert out == [(0, "cmd=barrier_out rc=0\n"), (1, "cmd=barrier_out rc=0\n")]
    assert a.handle(1, "cmd=get kvsname=kvs_1 key=bc-3") == ["cmd=get_result rc=0 value=addr3\n"]
    # a second barrier only carries the new puts
    a.handle(0, "cmd=put kvsname=kvs_1 key=late value=1")
    a.handle(0, "cmd=barrier_in")
    a.handle(1, "cmd=barrier_in")
    assert exchanged[-1] == {"late": "1"}
    assert a.handle(0, "cmd=finalize") == ["cmd=finalize_ack rc=0\n"]
    assert a.handle(1, "cmd=abort exitcode=5 message=bad input") == []
    assert events[-1] == PmiEvent("abort", 1, 5, "bad input")


def test_errors_are_answered_not_raised() -> None:
    s = PmiServer("k", 1, [0], 1)
    assert s.handle(0, "cmd=init pmi_version=2 pmi_subversion=0")[0].startswith("cmd=response_to_init rc=-1")
    assert "rc=1" in s.handle(0, "cmd=frobnicate")[0]
    assert "rc=1" in s.handle(0, "cmd=put kvsname=other key=a value=b")[0]
    assert "rc=1" in s.handle(0, "cmd=put kvsname=k key=" + "x" * 65 + " value=b")[0]
