"""How the library reports progress: it never prints; long work calls `progress(done, total)`.

`total` is None while unknown (a video whose frame count the container does not say). The
CLI turns these calls into rich progress bars (dgn_cli/commands/progress.py).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int | None], None]
