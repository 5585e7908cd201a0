"""JSON file helpers shared by profile and calibration files."""
from __future__ import annotations

import json
import os


def read_json(path, error_cls, what):
    """(parsed JSON, base name); unreadable or non-JSON files raise error_cls (a ValueError)."""
    p = os.fspath(path)
    try:
        with open(p) as f:
            return json.load(f), os.path.basename(p)
    except OSError as e:
        raise error_cls(f"cannot read {what} {p!r}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise error_cls(f"{p}: not JSON ({e})") from None


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
