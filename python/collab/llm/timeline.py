"""Re-time a recorded message log on another network (trace-driven links).

A device records, at RTT 0 on real sockets, when it sent and received each message and how
big it was. ``replay`` keeps every compute gap of that log (device between its messages,
server between a request and its replies) and lets the transfers take the time the given
links need (collab.net Trace / FixedRateLink, anything with ``delivery_times(nbytes,
start_ms)``), plus rtt/2 each way. A reply is ready on the server as long after its request
arrived as it was in the recording; a streamed reply (several downs after one up) keeps the
server's pace between tokens.
"""
from __future__ import annotations

__all__ = ["replay", "replay_arrivals", "retime"]


def replay_arrivals(events, up_link, down_link, rtt_ms: float, *, shifts: list | None = None) -> list:
    """events: [("up" | "down", t_s, nbytes)] in time order, from the start of the request.
    Returns the simulated arrival time (s) of every "down" message on the device. shifts, when
    given, receives (recorded t_s, delay of the device timeline in s) after each down."""
    shift = 0.0          # ms the device timeline is delayed by the network so far
    up_free = down_free = 0.0
    last_up_arrival = last_up_t = 0.0
    out = []
    for d, t, nb in events:
        t_ms = t * 1e3
        if d == "up":
            depart = max(t_ms + shift, up_free)
            done = float(up_link.delivery_times(nb, depart))
            up_free = done
            last_up_arrival, last_up_t = done + rtt_ms / 2, t_ms
        else:
            ready = max(last_up_arrival + max(0.0, t_ms - last_up_t), down_free)
            done = float(down_link.delivery_times(nb, ready))
            down_free = done
            recv = done + rtt_ms / 2
            shift = max(shift, recv - t_ms)
            out.append(recv / 1e3)
            if shifts is not None:
                shifts.append((t, shift / 1e3))
    return out


def replay(events, up_link, down_link, rtt_ms: float) -> tuple:
    """(time of the first reply, time of the last reply) in seconds, as replay_arrivals."""
    a = replay_arrivals(events, up_link, down_link, rtt_ms)
    return (a[0] if a else 0.0), (a[-1] if a else 0.0)


def retime(events, marks, up_link, down_link, rtt_ms: float) -> list:
    """Simulated times of device-side marks (recorded seconds, e.g. when each token was known):
    each mark moves by the delay the network had put on the device timeline at its last
    received message (a mark before any reply moves by nothing)."""
    shifts: list = []
    replay_arrivals(events, up_link, down_link, rtt_ms, shifts=shifts)
    out, j, cur = [], 0, 0.0
    for m in marks:
        while j < len(shifts) and shifts[j][0] <= m + 1e-9:
            cur = shifts[j][1]
            j += 1
        out.append(m + cur)
    return out
