"""`collab profile` (see commands.py)."""
from .commands import profile as _c

add_arguments = _c.add_arguments
run = _c.run
