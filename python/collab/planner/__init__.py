"""SLICER split planner: Eq. 1 epsilon-outage latency, trace-based latency, Eq. 3 single-shot
split, Eq. 5-6 autoregressive (w, l), the three-tier hierarchical search, calibration tables of
codec time, layer profile files, per-request re-planning, and measured quality tables with the
row-policy chooser (raw / SLICER / trained codec by bytes and measured quality loss).

    from collab import planner, net
    prof = planner.load_profile("vit_s.profile.json")        # `collab profile`
    cal = planner.load_calibration("codec.calib.json")       # `collab calibrate`
    p = planner.Planner(prof, cal, net.FixedRateLink(20e6), rtt_ms=30,
                        budget=planner.Budget(deadline_ms=80, memory_bytes=64 << 20))
    print(p.search().describe())
"""
from __future__ import annotations

from .calibration import CalibrationError, CalibrationTable, load_calibration, measure_calibration
from .quality import QualityError, QualityTable, choose, load_quality_table
from .outage import OutageLink, best_rate, db_to_linear, outage_latency_ms, outage_probability, transmissions
from .profile import Layer, Profile, ProfileError, load_profile, per_layer_from_prefixes
from .replan import Replanner
from .search import Budget, Plan, Planner, SearchSpace

__all__ = ["CalibrationError", "CalibrationTable", "load_calibration", "measure_calibration", "OutageLink",
           "best_rate", "db_to_linear", "outage_latency_ms", "outage_probability", "transmissions", "Layer",
           "Profile", "ProfileError", "load_profile", "per_layer_from_prefixes", "Replanner", "Budget", "Plan",
           "Planner", "SearchSpace", "parse_link", "QualityError", "QualityTable", "choose", "load_quality_table"]


def parse_link(spec: str):
    """"fixed:MBPS", "trace:PATH" (or a path), "synthetic:MBPS[,SEED]", or
    "outage:W_MHZ,SNR_DB,EPS[,RATE_MBPS]"."""
    from .. import net

    if isinstance(spec, str) and spec.startswith("outage:"):
        return OutageLink.parse(spec[len("outage:"):])
    return net.parse_link(spec)
