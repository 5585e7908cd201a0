"""The stated power model behind every energy number of the expert system.

Energy of one batch on the device:
    E_dev = P_active * t_compute + P_idle * t_wait + e_tx * bytes_up + e_rx * bytes_down
and on the near-edge server:
    E_srv = P_active * t_compute + P_idle * (time it waits for the device within the batch)
Compute times are measured (this machine's cores stand in for the devices; the watts are the
profiles' assumptions, not measurements). Radio energy per byte follows the linear throughput
power model of Huang et al., MobiSys 2012 (alpha_up / alpha_down in mW per Mbit/s), i.e.
J/byte = alpha * 1e-3 W / 1e6 bit/s * 8 bit.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import InvalidArgument


@dataclass(frozen=True)
class PowerProfile:
    name: str
    active_w: float
    idle_w: float
    note: str = ""


@dataclass(frozen=True)
class RadioProfile:
    name: str
    tx_j_per_byte: float
    rx_j_per_byte: float
    note: str = ""


def _per_byte(mw_per_mbps: float) -> float:
    return mw_per_mbps * 1e-3 / 1e6 * 8


DEVICES = {
    # Jetson Orin Nano 8GB in its 15 W mode; idle as jetson-stats shows it with the GPU clocked down
    "orin-nano": PowerProfile("orin-nano", 10.0, 3.5, "assumed: Orin Nano 8GB, 15 W mode"),
    # Jetson AGX Orin 64GB, 30 W mode (the paper's near-edge accelerator)
    "agx-orin": PowerProfile("agx-orin", 30.0, 9.0, "assumed: AGX Orin 64GB, 30 W mode"),
    "phone": PowerProfile("phone", 3.0, 0.6, "assumed: phone SoC, big cores busy vs screen-on idle"),
}
RADIOS = {
    "wifi": RadioProfile("wifi", _per_byte(283.17), _per_byte(137.01), "Huang et al. 2012, WiFi"),
    "lte": RadioProfile("lte", _per_byte(438.39), _per_byte(51.97), "Huang et al. 2012, LTE"),
}


def profile(name: str, table=DEVICES):
    try:
        return table[name]
    except KeyError:
        raise InvalidArgument(f"unknown profile {name!r}; known: {', '.join(table)}") from None


def device_energy(dev: PowerProfile, radio: RadioProfile, *, compute_s: float, wait_s: float,
                  bytes_up: float, bytes_down: float) -> float:
    """Joules the device spends on one batch."""
    if min(compute_s, wait_s, bytes_up, bytes_down) < 0:
        raise InvalidArgument("times and byte counts must be >= 0")
    return (dev.active_w * compute_s + dev.idle_w * wait_s + radio.tx_j_per_byte * bytes_up
            + radio.rx_j_per_byte * bytes_down)


def server_energy(srv: PowerProfile, *, compute_s: float, idle_s: float) -> float:
    if min(compute_s, idle_s) < 0:
        raise InvalidArgument("times must be >= 0")
    return srv.active_w * compute_s + srv.idle_w * idle_s


def describe() -> dict:
    return {"devices": {k: asdict(v) for k, v in DEVICES.items()}, "radios": {k: asdict(v) for k, v in RADIOS.items()},
            "formula": "E_dev = P_active t_compute + P_idle t_wait + e_tx bytes_up + e_rx bytes_down; "
                       "E_srv = P_active t_compute + P_idle t_idle"}
