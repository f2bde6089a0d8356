"""Does this node have a usable AWS EFA device? One report, with a one-line problem when the answer is no.

What is read, and why (facts in shared/notes/field-notes.md):

- ``<root>/sys/class/infiniband/*``: a device is EFA when its ``device/driver`` link ends in ``efa`` or its PCI
  ``device/vendor`` is ``0x1d0f`` (Amazon). Names are never matched: they changed from ``efa_0`` to PCI-derived
  names such as ``rdmap16s27``.
- ``<root>/dev/infiniband/uverbs*``: user space reaches the device only through these. Inside a container they
  are often missing (``/dev/infiniband`` not passed in), and then ``fi_info -p efa`` answers -61 (no data).
  Which ``uverbsN`` belongs to which device is read from ``device/infiniband_verbs/`` or
  ``/sys/class/infiniband_verbs/uverbsN/ibdev`` when sysfs has them. The opposite mistake is noted too: non-EFA
  uverbs (an mlx5 NIC's) passed in beside EFA can make the efa provider find nothing (all of /dev/infiniband
  mounted into a pod: aws-samples/aws-do-eks#63, libfabric 12708).
- ``fi_info -p efa -t FI_EP_RDM`` (when ``fi_info`` is on PATH): exit 0 with ``provider: efa`` means libfabric's
  EFA provider works here; -61 (``ENODATA``) means it found none. No ``fi_info`` is "unknown", not a failure:
  the MPI library may carry its own libfabric.
- RDMA read: only from a capability file in sysfs if one is there (``device_caps``/``caps``, the efadv
  ``device_caps`` bit 0, or text naming ``rdma_read``). The kernel driver does not usually export it -- the
  capability comes from ``efadv_query_device`` -- so the usual answer is ``None`` (unknown), and unknown never
  turns ``FI_EFA_USE_DEVICE_RDMA=1`` on (libfabric aborts the job when that is set on a device without RDMA read).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AMAZON_PCI_VENDOR", "EfaReport", "detect_efa", "efa_devices", "probe_fi_info"]

AMAZON_PCI_VENDOR = "0x1d0f"
ENODATA = 61
_CAPS_RDMA_READ = 1 << 0  # EFADV_DEVICE_ATTR_CAPS_RDMA_READ in rdma-core's efadv.h
_CAP_FILES = ("device_caps", "caps", "device/device_caps", "device/caps")


@dataclass(frozen=True)
class EfaReport:
    """What one node has. ``usable`` is the verdict; ``problem`` says in one line why not (or what is odd)."""

    devices: tuple[str, ...] = ()
    uverbs: tuple[str, ...] = ()  # /dev/infiniband/uverbsN paths (under root) that exist
    missing_uverbs: tuple[str, ...] = ()  # the ones EFA devices need that do not exist, as paths on the node
    provider_ok: bool | None = None  # None: fi_info not on PATH (or it could not be run)
    rdma_read: bool | None = None  # None: not exposed where we can read it
    usable: bool = False
    problem: str | None = None
    details: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EfaReport:
        """The inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, e.g. for an agent's hello."""
        out = asdict(self)
        for k in ("devices", "uverbs", "missing_uverbs"):
            out[k] = list(out[k])
        return out


def _link_basename(p: Path) -> str | None:
    try:
        return os.path.basename(os.readlink(p).rstrip("/"))
    except OSError:
        return None


def _read(p: Path) -> str | None:
    try:
        return p.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _is_efa(dev: Path) -> bool:
    if _link_basename(dev / "device" / "driver") == "efa":
        return True
    vendor = _read(dev / "device" / "vendor")
    return vendor is not None and vendor.lower() == AMAZON_PCI_VENDOR


def efa_devices(root: str | Path = "/") -> tuple[list[str], list[str]]:
    """(EFA device names, other RDMA device names) under ``<root>/sys/class/infiniband``, each sorted."""
    base = Path(root) / "sys" / "class" / "infiniband"
    efa: list[str] = []
    other: list[str] = []
    try:
        entries = sorted(base.iterdir(), key=lambda p: p.name)
    except OSError:
        return [], []
    for dev in entries:
        (efa if _is_efa(dev) else other).append(dev.name)
    return efa, other


def _uverbs_of(root: Path, dev: str) -> list[str]:
    """The uverbsN names sysfs ties to ``dev`` (empty when sysfs does not say)."""
    names = []
    via_dev = root / "sys" / "class" / "infiniband" / dev / "device" / "infiniband_verbs"
    try:
        names = sorted(p.name for p in via_dev.iterdir() if p.name.startswith("uverbs"))
    except OSError:
        pass
    if names:
        return names
    verbs = root / "sys" / "class" / "infiniband_verbs"
    try:
        for p in sorted(verbs.iterdir(), key=lambda p: p.name):
            if p.name.startswith("uverbs") and _read(p / "ibdev") == dev:
                names.append(p.name)
    except OSError:
        pass
    return names


def _rdma_read(root: Path, devices: Sequence[str]) -> bool | None:
    """True/False only when every EFA device exposes a capability file that answers; else None."""
    answers: list[bool] = []
    for dev in devices:
        answer: bool | None = None
        for rel in _CAP_FILES:
            text = _read(root / "sys" / "class" / "infiniband" / dev / rel)
            if text is None:
                continue
            low = text.lower()
            if re.fullmatch(r"(0x)?[0-9a-f]+", low):
                answer = bool(int(low, 16 if low.startswith("0x") else 10) & _CAPS_RDMA_READ)
            elif "rdma_read" in low or "rdma-read" in low or "rdma read" in low:
                answer = True
            else:
                answer = False
            break
        if answer is None:
            return None
        answers.append(answer)
    return all(answers) if answers else None


def probe_fi_info(fi_info: str | None = None, timeout: float = 10.0) -> tuple[bool | None, str]:
    """Run ``fi_info -p efa -t FI_EP_RDM``: (True|False|None, one-line note). None: could not tell."""
    import shutil  # only on a node with EFA devices: every agent imports this module

    exe = fi_info or shutil.which("fi_info")
    if not exe:
        return None, "fi_info not on PATH"
    try:
        r = subprocess.run([exe, "-p", "efa", "-t", "FI_EP_RDM"], capture_output=True, text=True, check=False,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, f"fi_info -p efa did not answer within {timeout:g}s"
    except OSError as e:
        return None, f"fi_info could not be run: {e.strerror or e}"
    out = (r.stdout or "") + (r.stderr or "")
    if r.returncode == 0 and re.search(r"provider:\s*efa\b", out):
        return True, "fi_info -p efa -t FI_EP_RDM found the efa provider"
    if r.returncode in (-ENODATA, 256 - ENODATA) or "-61" in out or "No data available" in out:
        return False, "fi_info -p efa -t FI_EP_RDM exited -61 (no data: libfabric found no EFA device)"
    last = next((ln.strip() for ln in reversed(out.splitlines()) if ln.strip()), "")
    return False, f"fi_info -p efa -t FI_EP_RDM exited {r.returncode}" + (f": {last}" if last else "")


def detect_efa(root: str | Path = "/", run_fi_info: bool = True, fi_info: str | None = None,
               timeout: float = 10.0) -> EfaReport:
    """Look for EFA under ``root`` (``/`` on a node; a fake tree in tests).

    ``run_fi_info``: also ask libfabric (only where ``fi_info`` is on PATH, or given as ``fi_info``).
    """
    rootp = Path(root)
    devices, others = efa_devices(rootp)
    dev_dir = rootp / "dev" / "infiniband"
    try:
        present = sorted(p.name for p in dev_dir.iterdir() if p.name.startswith("uverbs"))
    except OSError:
        present = []
    uverbs = tuple(f"/dev/infiniband/{n}" for n in present)
    details: dict[str, str] = {}
    if not devices:
        where = "/sys/class/infiniband"
        extra = f" (RDMA devices there: {', '.join(others)}; none is EFA)" if others else ""
        return EfaReport((), uverbs, (), None, None, False, f"no EFA device in {where}{extra}", details)

    missing: list[str] = []
    for dev in devices:
        wanted = _uverbs_of(rootp, dev)
        details[dev] = ",".join(wanted) or "?"
        missing += [f"/dev/infiniband/{w}" for w in wanted if w not in present]
    if any(details[d] == "?" for d in devices):
        # sysfs does not say which uverbsN is whose: every RDMA device has one, so name the lowest absent ones.
        short = len(devices) + len(others) - len(present) - len(missing)
        i = 0
        while short > 0 and i < 256:
            cand = f"uverbs{i}"
            if cand not in present and f"/dev/infiniband/{cand}" not in missing:
                missing.append(f"/dev/infiniband/{cand}")
                short -= 1
            i += 1
    missing = sorted(set(missing), key=lambda m: (len(m), m))
    # Non-EFA uverbs passed into a container beside the EFA ones: libfabric's efa provider opens every device
    # and, when one fails to open, finds none (-61) -- seen with mlx5 NICs beside EFA (aws-samples/aws-do-eks#63).
    foreign = [f"/dev/infiniband/{w} ({o})" for o in others for w in _uverbs_of(rootp, o) if w in present]

    provider_ok: bool | None = None
    if run_fi_info:
        provider_ok, note = probe_fi_info(fi_info, timeout)
        details["fi_info"] = note
    rdma = _rdma_read(rootp, devices)
    names = ", ".join(devices)
    problem: str | None = None
    if missing:
        flags = " ".join(f"--device {m}" for m in missing)
        problem = (f"EFA device {names} present but {', '.join(missing)} missing: pass {flags} to the container "
                   "(only the EFA uverbs devices, not all of /dev/infiniband)")
    elif provider_ok is False and foreign:
        problem = (f"EFA device {names} present but libfabric cannot use it ({details['fi_info']}); non-EFA "
                   f"{', '.join(foreign)} is passed in too: pass only the EFA uverbs devices to the container")
    elif provider_ok is False:
        problem = f"EFA device {names} present but libfabric cannot use it: {details['fi_info']}"
    elif foreign:
        details["warning"] = (f"non-EFA {', '.join(foreign)} is visible beside EFA; in a container that can make "
                              "libfabric's efa provider find no device (-61)")
    usable = not missing and provider_ok is not False
    return EfaReport(tuple(devices), uverbs, tuple(missing), provider_ok, rdma, usable, problem, details)
