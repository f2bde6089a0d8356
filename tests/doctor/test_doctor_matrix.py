"""The doctor's latency matrix at scale: a summary and the slowest pairs above 16 nodes (rendered from a synthetic
40-node result), the whole grid below, and ``--matrix FILE`` (CSV or JSON) through the real command."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_doctor import run_doctor

from mnp.doctor import Check, DoctorReport, render
from mnp.doctor.matrix import GRID_MAX_NODES, matrix_csv, matrix_json


def _result(n: int) -> DoctorReport:
    """n nodes of one machine: node 0's shared-memory pair on the diagonal, every other pair TCP; three pairs
    over the tcp-host band, one pair whose ranks shared a CPU."""
    matrix: list[list[float | None]] = [[None] * n for _ in range(n)]
    pairs: list[dict[str, Any]] = []
    matrix[0][0] = 0.8
    pairs.append({"nodes": [0, 0], "us": 0.8, "p10_us": 0.7, "band": "shm", "ceiling_us": 20.0, "judged": True,
                  "slow": False})
    for i in range(n):
        for j in range(i + 1, n):
            us = 5.0 + (i * 7 + j * 3) % 11  # 5-15 us
            p10 = us - 1
            if (i, j) in ((3, 17), (5, 30), (12, 39)):
                us, p10 = {(3, 17): 900.0, (5, 30): 450.0, (12, 39): 300.0}[(i, j)], 250.0
            if (i, j) == (2, 9):
                us, p10 = 4000.0, 3900.0
            matrix[i][j] = matrix[j][i] = us
            pairs.append({"nodes": [i, j], "us": us, "p10_us": p10, "band": "tcp-host", "ceiling_us": 100.0,
                          "judged": (i, j) != (2, 9), "slow": p10 > 100 and (i, j) != (2, 9)})
    probe = {"nodes": [{"hostname": f"node{i}"} for i in range(n)], "latency_us": matrix}
    latency = Check("latency", False, "3 of 780 pair(s) slower than the tcp-host band ...", data={"pairs": pairs})
    return DoctorReport([Check("reachability", True, f"{n} node(s) ran the probe"), latency], probe=probe,
                        job_id="0123456789", wall_s=1.5)


@pytest.mark.noroot
def test_forty_nodes_are_a_summary_and_the_slowest_pairs() -> None:
    report = _result(40)
    text = render(report)
    lines = text.splitlines()
    assert len(lines) < 30, text  # not a 40-row grid
    assert max(len(x) for x in lines) < 140
    assert "40 nodes, 781 pair(s) measured; the full matrix is in --json and --matrix FILE" in text
    shm = next(x for x in lines if x.strip().startswith("shm "))
    tcp = next(x for x in lines if x.strip().startswith("tcp-host "))
    assert shm.split()[1:5] == ["1", "0.8", "0.8", "0.8"] and "0 (band <= 20 us)" in shm
    # over band: the three slow pairs and the crowded one (its fastest tenth is over too; it is not judged)
    assert tcp.split()[1] == "780" and tcp.split()[3] == "5.0" and tcp.split()[4] == "4000.0"
    assert "4 (band <= 100 us; 1 not judged)" in tcp
    i = lines.index("slowest 10 pair(s):")
    worst = lines[i + 1:i + 11]
    assert len(worst) == 10 and i + 11 == len(lines) - 1 and lines[-1].startswith("result: FAIL")
    assert [float(x.split()[0]) for x in worst][:4] == [4000.0, 900.0, 450.0, 300.0]
    assert "node 2-9 (node2, node9)" in worst[0] and "not judged: its ranks shared a CPU" in worst[0]
    assert "node 3-17 (node3, node17)" in worst[1] and "over its band: fastest tenth 250.0 us" in worst[1]
    assert not any(re.match(r"\d+ node\d+ ", x) for x in lines)  # no grid rows


@pytest.mark.noroot
@pytest.mark.parametrize("n", [2, GRID_MAX_NODES])
def test_up_to_sixteen_nodes_the_whole_grid(n: int) -> None:
    lines = render(_result(n)).splitlines()
    i = lines.index("latency, half round trip (us):")
    grid = lines[i + 2:i + 2 + n]
    assert [x.split()[:2] for x in grid] == [[str(k), f"node{k}"] for k in range(n)]
    assert all(len(x.split()) == n + 2 for x in grid)
    assert grid[0].split()[2] == "0.8" and grid[1].split()[3] == "-"  # node 0's pair; node 1's not measured


@pytest.mark.noroot
def test_matrix_files_hold_every_pair() -> None:
    report = _result(40)
    assert report.probe is not None
    rows = list(csv.reader(io.StringIO(matrix_csv(report.probe))))
    assert rows[0] == ["node", "hostname", *map(str, range(40))] and len(rows) == 41
    assert rows[3][0:2] == ["2", "node2"] and float(rows[3][2 + 9]) == 4000.0 and rows[2][3] == ""
    doc = json.loads(json.dumps(matrix_json(report.probe, report.latency_pairs)))
    assert doc["nodes"][39] == "node39" and doc["latency_us"][17][3] == 900.0 and len(doc["pairs"]) == 781


@pytest.mark.namespaces
@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_doctor_on_local_nodes_shows_the_grid_and_writes_the_matrix(tmp_path: Path, mnp_home: Path,
                                                                    no_leftovers: None, suffix: str) -> None:
    out = tmp_path / f"matrix{suffix}"
    p = run_doctor(["--nodes", "3", "--matrix", str(out)], mnp_home)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    lines = p.stdout.splitlines()
    i = lines.index("latency, half round trip (us):")
    assert [x.split()[0] for x in lines[i + 2:i + 5]] == ["0", "1", "2"]
    if suffix == ".csv":
        rows = list(csv.reader(out.open()))
        assert rows[0] == ["node", "hostname", "0", "1", "2"] and len(rows) == 4
        assert float(rows[1][3]) > 0 and rows[1][3] == rows[2][2] and rows[2][3] == ""  # symmetric; 1-1 unmeasured
    else:
        doc = json.loads(out.read_text())
        assert len(doc["latency_us"]) == 3 and doc["latency_us"][0][1] > 0 and len(doc["nodes"]) == 3
        assert {tuple(x["nodes"]) for x in doc["pairs"]} == {(0, 0), (0, 1), (0, 2), (1, 2)}


@pytest.mark.noroot
def test_matrix_to_an_unwritable_place_is_a_usage_error(tmp_path: Path) -> None:
    from mnp.cli.doctor import _write_matrix
    from mnp.errors import UsageError

    with pytest.raises(UsageError, match=r"^--matrix: cannot write .*m\.csv: No such file or directory$"):
        _write_matrix(_result(3), str(tmp_path / "no" / "such" / "m.csv"))
    _write_matrix(_result(3), str(tmp_path / "m.csv"))
    assert (tmp_path / "m.csv").read_text().startswith("node,hostname,0,1,2\n0,node0,0.800,")
