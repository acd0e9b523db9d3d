"""Instruments of one rank: host and device memory samplers, phase and step timers, system description."""

from pgti_core.instruments.device import DeviceMemoryMonitor, DeviceMemoryReport, DeviceSample
from pgti_core.instruments.memory import (
    HostMemoryReport,
    HostMemorySampler,
    MemorySample,
    PhaseProbe,
)
from pgti_core.instruments.system import describe_system, write_system_json
from pgti_core.instruments.timing import (
    STEP_PARTS,
    PhaseTimer,
    StepSummary,
    StepTimes,
    device_sync,
)

__all__ = [
    "HostMemorySampler",
    "HostMemoryReport",
    "MemorySample",
    "PhaseProbe",
    "DeviceMemoryMonitor",
    "DeviceMemoryReport",
    "DeviceSample",
    "PhaseTimer",
    "StepTimes",
    "StepSummary",
    "STEP_PARTS",
    "device_sync",
    "describe_system",
    "write_system_json",
]
