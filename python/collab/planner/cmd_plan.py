"""`collab plan` (see commands.py)."""
from .commands import plan as _c

add_arguments = _c.add_arguments
run = _c.run
