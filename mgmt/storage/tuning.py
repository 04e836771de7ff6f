"""How a disk is made and driven, as offerings declare it: the provisioning type (qcow2 preallocation), the
cache mode and the I/O limits libvirt applies (``<iotune>``). An offering keeps them; a volume copies them
from its offering when it is made; the agent gets them in the volume's ``DiskTO``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidParameter

# CloudStack's provisioning types -> qcow2 preallocation (as CloudStack's KVM agent maps them)
PROVISIONING = {"thin": "off", "sparse": "metadata", "fat": "full"}
CACHE_MODES = ("none", "writeback", "writethrough")

# the API's I/O parameter -> (libvirt's <iotune> element, the response field that shows it)
IOTUNE: dict[str, tuple[str, str]] = {
    "bytesreadrate": ("read_bytes_sec", "diskBytesReadRate"),
    "bytesreadratemax": ("read_bytes_sec_max", "diskBytesReadRateMax"),
    "bytesreadratemaxlength": ("read_bytes_sec_max_length", "diskBytesReadRateMaxLength"),
    "byteswriterate": ("write_bytes_sec", "diskBytesWriteRate"),
    "byteswriteratemax": ("write_bytes_sec_max", "diskBytesWriteRateMax"),
    "byteswriteratemaxlength": ("write_bytes_sec_max_length", "diskBytesWriteRateMaxLength"),
    "iopsreadrate": ("read_iops_sec", "diskIopsReadRate"),
    "iopsreadratemax": ("read_iops_sec_max", "diskIopsReadRateMax"),
    "iopsreadratemaxlength": ("read_iops_sec_max_length", "diskIopsReadRateMaxLength"),
    "iopswriterate": ("write_iops_sec", "diskIopsWriteRate"),
    "iopswriteratemax": ("write_iops_sec_max", "diskIopsWriteRateMax"),
    "iopswriteratemaxlength": ("write_iops_sec_max_length", "diskIopsWriteRateMaxLength"),
}
LIBVIRT_IOTUNE = frozenset(element for element, _ in IOTUNE.values())
MAX_RATE = 2**53  # bytes or operations per second, or seconds: far beyond any disk, well inside a long


def iotune_of(args: Mapping[str, Any]) -> dict[str, int]:
    """The ``<iotune>`` limits the I/O parameters in ``args`` ask for (checked as CloudStack checks them:
    a burst needs its rate and a length, and is not below it)."""
    tune: dict[str, int] = {}
    for param, (element, _) in IOTUNE.items():
        if param in args:
            value = int(args[param])
            if not 0 <= value <= MAX_RATE:
                raise InvalidParameter(f"{param} must be between 0 and {MAX_RATE}")
            if value:
                tune[element] = value
    for rate in ("read_bytes_sec", "write_bytes_sec", "read_iops_sec", "write_iops_sec"):
        burst, length = tune.get(rate + "_max"), tune.get(rate + "_max_length")
        if burst is not None and burst < tune.get(rate, 0):
            raise InvalidParameter(f"the burst limit {rate}_max is below its rate")
        if (burst is None) != (length is None):
            raise InvalidParameter(f"a burst ({rate}_max) and its length in seconds go together")
        if burst is not None and rate not in tune:
            raise InvalidParameter(f"a burst ({rate}_max) needs its rate too")
    return tune


def provisioning(value: str) -> str:
    v = value.lower()
    if v not in PROVISIONING:
        raise InvalidParameter(f"provisioningtype must be one of {', '.join(PROVISIONING)}")
    return v


def cache_mode(value: str) -> str:
    v = value.lower()
    if v not in CACHE_MODES:
        raise InvalidParameter(f"cachemode must be one of {', '.join(CACHE_MODES)}")
    return v


def loads(text: str | None) -> dict[str, int]:
    """A stored ``iotune`` column (JSON) as a dict; only known elements with whole values survive."""
    raw = orjson.loads(text or "{}")
    return {k: int(v) for k, v in raw.items() if k in LIBVIRT_IOTUNE and isinstance(v, int)} \
        if isinstance(raw, dict) else {}


VOLUME_FIELDS = ("diskBytesReadRate", "diskBytesWriteRate", "diskIopsReadRate", "diskIopsWriteRate")


def view(row: Any, *, volume: bool = False) -> dict[str, Any]:
    """The tuning fields of an offering's row (or, ``volume``, a volume's: no cache mode, only the four
    rates), as CloudStack's responses name them."""
    tune = loads(row.iotune)
    shown: dict[str, Any] = {"provisioningtype": row.provisioning_type}
    if not volume:
        shown["cacheMode"] = row.cache_mode
    for element, field in IOTUNE.values():
        if element in tune and (not volume or field in VOLUME_FIELDS):
            shown[field] = tune[element]
    return shown


def preallocation(volume: Any) -> str:
    """The qcow2 preallocation of a volume row (its provisioning type)."""
    return PROVISIONING.get(getattr(volume, "provisioning_type", "thin") or "thin", "off")


def disk_args(volume: Any) -> dict[str, Any]:
    """What a volume row's ``DiskTO`` carries of its tuning."""
    return {"cache_mode": getattr(volume, "cache_mode", "none") or "none",
            "iotune": loads(getattr(volume, "iotune", "{}"))}


def columns_of(offering: Any) -> dict[str, Any]:
    """The tuning columns a new volume copies from its offering's row (None: the defaults)."""
    if offering is None:
        return {"provisioning_type": "thin", "cache_mode": "none", "iotune": "{}"}
    return {"provisioning_type": offering.provisioning_type, "cache_mode": offering.cache_mode,
            "iotune": offering.iotune}
