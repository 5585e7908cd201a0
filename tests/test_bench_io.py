"""Benchmark helpers: pinning the device, capping its CPU (a device slower than its server),
and keeping server processes out of that cap."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from collab.bench_io import limit_device_cpu


def test_no_cap_and_bad_fractions():
    assert limit_device_cpu(None) == "device not throttled"
    assert limit_device_cpu(1.0) == "device not throttled"
    for bad in (0.0, 0.001, -1):
        with pytest.raises(SystemExit):
            limit_device_cpu(bad)


def test_cap_applies_to_the_device_not_its_servers():
    """In a child interpreter: capped at 0.5, its own cgroup is the device's; a process it
    starts with server_preexec is back in the parent group; the group is removed at exit."""
    if not os.access("/sys/fs/cgroup/cpu", os.W_OK) and not os.access("/sys/fs/cgroup", os.W_OK):
        pytest.skip("no write access to the cgroup filesystem (needs root): the cap cannot be set here")
    code = textwrap.dedent("""
        import os, subprocess, sys
        print("PID", os.getpid())
        from collab.bench_io import limit_device_cpu, server_preexec
        print(limit_device_cpu(0.5))
        me = open("/proc/self/cgroup").read()
        child = subprocess.run(["cat", "/proc/self/cgroup"], preexec_fn=server_preexec(), capture_output=True,
                               text=True).stdout
        print("DEVICE_IN_GROUP", "collab-bench-device" in me)
        print("SERVER_IN_GROUP", "collab-bench-device" in child)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if r.returncode != 0 and "cannot throttle" in r.stderr:
        pytest.skip(f"cgroup CPU quota not available here: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr
    assert "capped at 0.5" in r.stdout
    assert "DEVICE_IN_GROUP True" in r.stdout and "SERVER_IN_GROUP False" in r.stdout
    pid = r.stdout.split("PID ")[1].split()[0]
    for root in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup"):
        assert not os.path.exists(f"{root}/collab-bench-device-{pid}"), "the device's cgroup was left behind"
