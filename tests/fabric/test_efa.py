from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mnp.fabric.efa import EfaReport, detect_efa, efa_devices, probe_fi_info


def add_device(root: Path, name: str, driver: str | None = "efa", vendor: str | None = None,
               uverbs: str | None = None, caps: str | None = None) -> None:
    """A fake /sys/class/infiniband/<name> the way the kernel lays it out (device and driver are links)."""
    bus = root / "sys" / "devices" / "pci0000:00"
    bus.mkdir(parents=True, exist_ok=True)
    pci = bus / f"0000:00:{len(list(bus.iterdir())) + 16:02x}.0"
    pci.mkdir()
    if vendor:
        (pci / "vendor").write_text(vendor + "\n")
    if driver:
        drv = root / "sys" / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(drv, pci), pci / "driver")
    if uverbs:
        (pci / "infiniband_verbs" / uverbs).mkdir(parents=True)
    ib = root / "sys" / "class" / "infiniband" / name
    ib.mkdir(parents=True)
    os.symlink(os.path.relpath(pci, ib), ib / "device")
    if caps is not None:
        (ib / "device_caps").write_text(caps + "\n")


def add_uverbs(root: Path, *names: str) -> None:
    d = root / "dev" / "infiniband"
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).touch()


def test_no_infiniband_at_all(tmp_path: Path) -> None:
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r == EfaReport(problem="no EFA device in /sys/class/infiniband")
    assert not r.usable


def test_found_by_driver_link_not_by_name(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", driver="efa", uverbs="uverbs0")
    add_uverbs(tmp_path, "uverbs0")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.devices == ("rdmap16s27",)
    assert r.uverbs == ("/dev/infiniband/uverbs0",)
    assert r.usable and r.problem is None
    assert r.provider_ok is None and r.rdma_read is None


def test_found_by_pci_vendor_when_driver_link_missing(tmp_path: Path) -> None:
    add_device(tmp_path, "weird0", driver=None, vendor="0x1d0f")
    add_device(tmp_path, "mlx5_0", driver="mlx5_core", vendor="0x15b3")
    assert efa_devices(tmp_path) == (["weird0"], ["mlx5_0"])


def test_other_rdma_devices_are_not_efa(tmp_path: Path) -> None:
    add_device(tmp_path, "mlx5_0", driver="mlx5_core", vendor="0x15b3")
    add_device(tmp_path, "efa_lookalike", driver="mlx5_core", vendor="0x15b3")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.devices == () and not r.usable
    assert r.problem == ("no EFA device in /sys/class/infiniband (RDMA devices there: efa_lookalike, mlx5_0; "
                         "none is EFA)")


def test_uverbs_missing_in_container(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert not r.usable
    assert r.missing_uverbs == ("/dev/infiniband/uverbs0",)
    assert r.problem == ("EFA device rdmap16s27 present but /dev/infiniband/uverbs0 missing: pass --device "
                         "/dev/infiniband/uverbs0 to the container (only the EFA uverbs devices, not all of "
                         "/dev/infiniband)")
    assert "\n" not in r.problem


def test_multi_rail_one_missing(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    add_device(tmp_path, "rdmap32s27", uverbs="uverbs1")
    add_uverbs(tmp_path, "uverbs0")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.devices == ("rdmap16s27", "rdmap32s27")
    assert r.missing_uverbs == ("/dev/infiniband/uverbs1",)
    assert "--device /dev/infiniband/uverbs1 " in (r.problem or "")


def test_uverbs_mapping_from_class_infiniband_verbs(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27")
    v = tmp_path / "sys" / "class" / "infiniband_verbs" / "uverbs3"
    v.mkdir(parents=True)
    (v / "ibdev").write_text("rdmap16s27\n")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.missing_uverbs == ("/dev/infiniband/uverbs3",)
    add_uverbs(tmp_path, "uverbs3")
    assert detect_efa(tmp_path, run_fi_info=False).usable


def test_no_mapping_in_sysfs_guesses_first_absent(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.missing_uverbs == ("/dev/infiniband/uverbs0",)
    add_uverbs(tmp_path, "uverbs0")
    assert detect_efa(tmp_path, run_fi_info=False).usable


@pytest.mark.parametrize("caps,want", [("0x1", True), ("0x9", True), ("0x2", False), ("8", False),
                                       ("rdma_read rnr_retry", True), ("rnr_retry", False)])
def test_rdma_read_from_caps_file(tmp_path: Path, caps: str, want: bool) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0", caps=caps)
    add_uverbs(tmp_path, "uverbs0")
    assert detect_efa(tmp_path, run_fi_info=False).rdma_read is want


def test_rdma_read_unknown_when_one_rail_silent(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0", caps="0x1")
    add_device(tmp_path, "rdmap32s27", uverbs="uverbs1")
    add_uverbs(tmp_path, "uverbs0", "uverbs1")
    assert detect_efa(tmp_path, run_fi_info=False).rdma_read is None


def fake_fi_info(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "bin" / "fi_info"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_fi_info_absent_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert probe_fi_info() == (None, "fi_info not on PATH")
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    add_uverbs(tmp_path, "uverbs0")
    r = detect_efa(tmp_path)
    assert r.provider_ok is None and r.usable


def test_fi_info_enodata_means_no_provider(tmp_path: Path) -> None:
    exe = fake_fi_info(tmp_path, 'echo "fi_getinfo: -61 (No data available)" >&2; exit 195')
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    add_uverbs(tmp_path, "uverbs0")
    r = detect_efa(tmp_path, fi_info=exe)
    assert r.provider_ok is False and not r.usable
    assert r.problem == ("EFA device rdmap16s27 present but libfabric cannot use it: fi_info -p efa -t FI_EP_RDM "
                         "exited -61 (no data: libfabric found no EFA device)")


def test_fi_info_finds_efa(tmp_path: Path) -> None:
    exe = fake_fi_info(tmp_path, 'echo "provider: efa"; echo "    fabric: efa"; exit 0')
    assert probe_fi_info(exe)[0] is True
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    add_uverbs(tmp_path, "uverbs0")
    r = detect_efa(tmp_path, fi_info=exe)
    assert r.usable and r.provider_ok is True


def test_fi_info_other_failure_and_timeout(tmp_path: Path) -> None:
    exe = fake_fi_info(tmp_path, 'echo "something broke" >&2; exit 3')
    assert probe_fi_info(exe) == (False, "fi_info -p efa -t FI_EP_RDM exited 3: something broke")
    slow = fake_fi_info(tmp_path, "sleep 5")
    ok, note = probe_fi_info(slow, timeout=0.2)
    assert ok is None and "did not answer" in note


def test_fi_info_not_run_without_devices(tmp_path: Path) -> None:
    exe = fake_fi_info(tmp_path, 'touch "$0.ran"; echo "provider: efa"')
    r = detect_efa(tmp_path, fi_info=exe)
    assert not r.usable and not Path(exe + ".ran").exists()


def test_non_efa_uverbs_passed_in_beside_efa(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    add_device(tmp_path, "mlx5_0", driver="mlx5_core", vendor="0x15b3", uverbs="uverbs1")
    add_uverbs(tmp_path, "uverbs0", "uverbs1")
    r = detect_efa(tmp_path, run_fi_info=False)
    assert r.usable and r.problem is None and "mlx5_0" in r.details["warning"]
    exe = fake_fi_info(tmp_path, 'echo "fi_getinfo: -61 (No data available)" >&2; exit 195')
    r = detect_efa(tmp_path, fi_info=exe)
    assert not r.usable
    assert r.problem is not None and r.problem.endswith(
        "non-EFA /dev/infiniband/uverbs1 (mlx5_0) is passed in too: pass only the EFA uverbs devices to the container")


def test_report_to_dict_is_json_ready(tmp_path: Path) -> None:
    add_device(tmp_path, "rdmap16s27", uverbs="uverbs0")
    d = detect_efa(tmp_path, run_fi_info=False).to_dict()
    assert d["devices"] == ["rdmap16s27"] and d["missing_uverbs"] == ["/dev/infiniband/uverbs0"]
    assert d["usable"] is False


def test_this_machine_does_not_crash() -> None:
    r = detect_efa("/", run_fi_info=False)
    assert isinstance(r, EfaReport)
    assert r.usable == (bool(r.devices) and not r.missing_uverbs)
