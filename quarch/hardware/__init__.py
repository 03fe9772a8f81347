"""quarch.hardware: devices as sourced numbers, the YAML catalog, and a parametric template.

>>> from quarch.hardware import load_hardware
>>> hw = load_hardware("h100-sxm")
>>> hw.memory_bytes_per_s
3350000000000.0
"""

from quarch.hardware._loader import (
    CATALOG_DIR,
    hardware_from_dict,
    is_catalog_name,
    list_hardware,
    load_hardware,
    load_memory_tech,
)
from quarch.hardware._spec import (
    EFFICIENCY_FIELDS,
    MATRIX_FORMATS,
    DeviceClass,
    Efficiency,
    Hardware,
    Interconnect,
    MemoryLevel,
    Topology,
)
from quarch.hardware._template import DEFAULT_FORMAT_MULTIPLIERS, accelerator

__all__ = [
    "CATALOG_DIR",
    "DEFAULT_FORMAT_MULTIPLIERS",
    "EFFICIENCY_FIELDS",
    "MATRIX_FORMATS",
    "DeviceClass",
    "Efficiency",
    "Hardware",
    "Interconnect",
    "MemoryLevel",
    "Topology",
    "accelerator",
    "hardware_from_dict",
    "is_catalog_name",
    "list_hardware",
    "load_hardware",
    "load_memory_tech",
]
