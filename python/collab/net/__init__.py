"""Networks for collab: everything that models, emulates or shapes a link.

    trace       mahimahi traces, fixed-rate links, the deterministic transfer simulator
    synthetic   seeded synthetic cellular-like traces (no recorded trace needed)
    estimator   bandwidth estimator (EWMA of measured transfers) used for re-planning
    link        an emulated link (RTT + bandwidth) and its in-process client (LinkClient)
    proxy       the delaying TCP proxy (RTT for sockets collab does not control)
    netns       Linux network namespaces + veth + tc shaping that follows a trace (root)

    from collab import net
    tr = net.load_trace("ATT-LTE-driving.up")       # any mahimahi trace file
    net.transfer_time(200_000, 1234.0, tr, rtt_ms=40)  # ms until 200 kB sent at t=1234 ms + RTT
"""
from __future__ import annotations

from .estimator import BandwidthEstimator
from .link import EmulatedLink, LinkClient
from .proxy import DelayProxy
from .synthetic import synthetic_trace, write_trace
from .trace import (PACKET_BYTES, FixedRateLink, Trace, TraceFormatError, load_trace, parse_link,
                    parse_trace)

__all__ = ["PACKET_BYTES", "Trace", "FixedRateLink", "TraceFormatError", "load_trace", "parse_trace",
           "parse_link", "transfer_time", "BandwidthEstimator", "as_link", "synthetic_trace", "write_trace",
           "EmulatedLink", "LinkClient", "DelayProxy"]


def as_link(link):
    """A Trace / FixedRateLink as is; a str is a link spec or trace path (see parse_link)."""
    if isinstance(link, (Trace, FixedRateLink)) or hasattr(link, "transfer_time"):
        return link
    import os

    if isinstance(link, (str, os.PathLike)):
        return parse_link(os.fspath(link))
    from ..errors import InvalidArgument

    raise InvalidArgument(f"not a link: {link!r} (use a Trace, FixedRateLink or a link spec string)")


def transfer_time(nbytes, start_ms, trace, rtt_ms=0.0):
    """Deterministic transfer time (ms) of nbytes starting at start_ms on `trace` (a Trace, a
    FixedRateLink, or a spec/path), plus rtt_ms. The trace loops when it ends, as in mahimahi.
    nbytes and start_ms may be numpy arrays (broadcast)."""
    return as_link(trace).transfer_time(nbytes, start_ms, rtt_ms)
