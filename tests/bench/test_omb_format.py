"""bench.osu's text against real OMB 7.4 output (tests/bench/omb/), without MPI: the header lines byte for byte,
the rows read with OMB's rules and rebuilt with OMB's widths, and mnp's metadata only in '#' lines after the
table. Also the -m syntax OMB accepts, and the spread every figure carries."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.osu.omb import parse_omb
from bench.osu.report import meta_lines, omb_header, omb_row, text_lines
from bench.osu.suite import BENCHMARKS, Options, Result, Row, parse_size_range
from bench.spread import Figure, wide_note

pytestmark = pytest.mark.noroot

OMB = Path(__file__).parent / "omb"
SAMPLES = {"latency": "osu_latency.txt", "bw": "osu_bw.txt", "bibw": "osu_bibw.txt", "allreduce": "osu_allreduce.txt"}


def _sample(name: str) -> list[str]:
    return (OMB / name).read_text().splitlines()


@pytest.mark.parametrize("bench,file", [*SAMPLES.items(), ("allreduce", "osu_allreduce-f.txt")])
def test_header_lines_are_ombs_byte_for_byte(bench: str, file: str) -> None:
    omb = parse_omb(_sample(file))
    full = file.endswith("-f.txt")
    assert omb_header(BENCHMARKS[bench], full) == omb.header
    assert omb.header[0] == "" and omb.header[2] == "# Datatype: MPI_CHAR."


@pytest.mark.parametrize("bench,file", [*SAMPLES.items(), ("allreduce", "osu_allreduce-f.txt")])
def test_rows_rebuilt_with_our_format_are_ombs_lines(bench: str, file: str) -> None:
    lines = _sample(file)
    omb = parse_omb(lines)
    full = file.endswith("-f.txt")
    ours = [omb_row(size, v[0], full, *(v[1:3] if full else ()), *([int(v[3])] if full else []))
            for size, v in omb.rows]
    assert ours == [ln for ln in lines if ln and not ln.startswith("#")]


@pytest.mark.parametrize("bench", list(SAMPLES))
def test_sizes_are_ombs(bench: str) -> None:
    """The same -m gives the same sizes as OMB: 0 is skipped (zero elements), then doubling."""
    omb = parse_omb(_sample(SAMPLES[bench]))
    lo, hi = omb.rows[0][0], omb.rows[-1][0]
    asked = Options(min_size=0 if bench == "latency" else lo, max_size=hi)
    assert BENCHMARKS[bench].sizes(asked) == [s for s, _ in omb.rows]


def test_our_whole_text_reads_as_omb_and_metadata_follows_the_table() -> None:
    spec = BENCHMARKS["latency"]
    env = {"mpi_library": "MPICH Version: 5.0.2", "transport": "shm", "fi_provider": "tcp", "nodes": 1, "ranks": 2,
           "mnp_job_id": "abc123", "cpu": "Some CPU", "cpus": 2, "kernel": "6.1", "thp": "madvise"}
    rows = [Row(s, 1.234 * s, 100, 10) for s in (1, 2, 4, 8)]
    lines = text_lines(Result("latency", "numba", "us", rows, env), spec)
    t = parse_omb(lines)
    assert t.header == _sample("osu_latency.txt")[:4]
    assert [s for s, _ in t.rows] == [1, 2, 4, 8] and [v[0] for _, v in t.rows] == [1.23, 2.47, 4.94, 9.87]
    assert t.trailer == meta_lines(env, "numba") and all(ln.startswith("# mnp: ") for ln in t.trailer)
    assert "transport shm" in t.trailer[1] and "FI_PROVIDER" not in "\n".join(lines)  # the provider is not the path
    assert not any("mnp" in ln for ln in t.header)


def test_omb_rules_reject_what_is_not_omb() -> None:
    with pytest.raises(ValueError, match="not an OMB row"):
        parse_omb(["# OSU MPI Latency Test v7.4", "OSU-JSON {}"])
    with pytest.raises(ValueError, match="after the comments"):
        parse_omb(["# x", "1 2.0", "# trailer", "2 3.0"])


@pytest.mark.parametrize("text,expected", [("64", (None, 64)), ("2:128", (2, 128)), ("2:", (2, None)),
                                           (":128", (None, 128)), ("0:64", (0, 64))])
def test_size_ranges_omb_accepts(text: str, expected: tuple[int | None, int | None]) -> None:
    assert parse_size_range(text) == expected


@pytest.mark.parametrize("text", ["", ":", "a", "8:4", "-1", "1:2:3"])
def test_size_ranges_refused(text: str) -> None:
    with pytest.raises(ValueError, match="-m"):
        parse_size_range(text)


def test_every_figure_carries_its_spread_and_a_note_when_wide() -> None:
    tight, wide = Figure.of([1.0, 1.1, 1.05]), Figure.of([7.7, 13.8, 8.0])
    assert (tight.min, tight.median, tight.max) == (1.0, 1.05, 1.1) and not tight.wide
    assert wide.wide and wide.spread == pytest.approx(13.8 / 7.7)
    assert wide.to_json() == {"median": 8.0, "min": 7.7, "max": 13.8, "spread": round(13.8 / 7.7, 4),
                              "values": [7.7, 13.8, 8.0]}
    assert wide_note([("8 B", tight)]) is None
    note = wide_note([("8 B", tight), ("64 KiB", wide)], "osu latency")
    assert note is not None and "\n" not in note
    assert note.startswith("note: osu latency: spread wide") and "1 of 2" in note and "64 KiB" in note
