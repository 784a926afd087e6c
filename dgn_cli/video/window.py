"""The sliding window over a stream of frames (pure Python, no ffmpeg, no torch needed).

Frame t of the video model is restored from frames t-r .. t+r (r = 2 for the paper's
five-frame DGN). Past the ends the window is padded by reflection about the end frame, not
repeating it: with n frames, index -1 -> 1, -2 -> 2, n -> n-2, n+1 -> n-3. So t = 0 sees
frames (2, 1, 0, 1, 2) and t = n-1 sees (n-3, n-2, n-1, n-2, n-3): real neighbouring motion on
both sides, never a frozen copy of the centre. Clips shorter than r + 1 frames reflect as far
as they can and then clamp (a one-frame clip gives five copies of it).

`SlidingWindow` holds at most 2r + 1 items whatever the stream's length: push frames in order
and it hands back each centre index as soon as its window is complete.

Scene cuts: `push(item, cut=True)` says the frame starts a new shot (video.scenes). Each shot
is then its own sequence: the window of a frame is reflected about the ends of its shot
exactly as about the ends of the clip, so no window mixes frames of two shots, and every frame
of a shot is restored from the same frames as if that shot were a clip of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dgn_cli.tensors import reflect_index


def window_indices(t: int, n: int, radius: int) -> list[int]:
    """The source frames restoring frame t of n, in time order (t-r .. t+r, reflected)."""
    return [reflect_index(t + k, n) for k in range(-radius, radius + 1)]


class SlidingWindow:
    """Streaming window: `push(item)` for each frame in order, then `finish()`; both yield the
    centre indices whose windows are complete. `items(t)` gives that window's items while
    they are held; older items are dropped as the window moves on."""

    def __init__(self, radius: int):
        self.radius = radius
        self.held: dict[int, Any] = {}
        self.count = 0  # frames pushed
        self.total: int | None = None  # known after finish()
        self.next = 0  # next centre to hand out
        self.cuts: list[int] = []  # frames that start a new shot (0 is implied)

    def push(self, item: Any, cut: bool = False) -> Iterator[int]:
        if cut and self.count > 0:
            self.cuts.append(self.count)
            while self.next < self.count:  # the shot before the cut is complete
                yield from self._emit()
        self.held[self.count] = item
        self.count += 1
        while self.next + self.radius < self.count:
            yield from self._emit()

    def finish(self) -> Iterator[int]:
        self.total = self.count
        while self.next < self.count:
            yield from self._emit()

    def _emit(self) -> Iterator[int]:
        t = self.next
        yield t
        self.next += 1
        for old in [i for i in self.held if i < self.next - self.radius]:
            del self.held[old]

    def shot(self, t: int) -> tuple[int, int]:
        """[first, end) of the shot holding frame t (end unknown yet: a very large number)."""
        first = max((c for c in self.cuts if c <= t), default=0)
        end = min((c for c in self.cuts if c > t), default=None)
        if end is None:
            end = self.total if self.total is not None else 1 << 62  # not at the end yet
        return first, end

    def indices(self, t: int) -> list[int]:
        first, end = self.shot(t)
        return [first + i for i in window_indices(t - first, end - first, self.radius)]

    def items(self, t: int) -> list[Any]:
        return [self.held[i] for i in self.indices(t)]

    def __getitem__(self, i: int) -> Any:
        return self.held[i]
