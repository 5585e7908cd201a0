"""`collab calibrate` (see commands.py)."""
from .commands import calibrate as _c

add_arguments = _c.add_arguments
run = _c.run
