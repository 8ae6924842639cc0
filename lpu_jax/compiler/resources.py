"""What the scheduler reserves, cycle by cycle: queue slots, SRAM banks, output ports and stream flights.

A value put on a stream moves one position per cycle, so in space-time it is a diagonal: an eastward value at
position p in cycle c has `diag = c - p`, a westward one `diag = c + p`, the same all along its flight. Two values
on one stream collide only if they are on the same diagonal and their flights (from the position where each
lands to the position where it is last read, both ends included) overlap: the later one would overwrite the
earlier before it is read (docs/isa.md §5: a landing result replaces whatever passes). `Resources` keeps, per
(stream id, diagonal), the position intervals already in flight, and refuses an overlapping one.
"""

from __future__ import annotations

from collections import defaultdict

from ..config import ChipConfig
from ..kernels.timeline import Timeline

__all__ = ["Resources", "diagonal"]


def diagonal(direction: int, position: int, cycle: int) -> int:
    """The space-time diagonal of a value at `position` in `cycle` moving east (0) or west (1)."""
    return cycle - position if direction == 0 else cycle + position


class Resources:
    """Queue slots and SRAM banks (a `Timeline`), output ports per due cycle, and stream flights."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.tl = Timeline(cfg)
        self._flights: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        self._ports: set[tuple[str, int]] = set()
        self._log: list[tuple[int, int]] = []  # flights reserved, in order (for undo)

    def diag(self, direction: int, position: int, cycle: int) -> int:
        return diagonal(direction, position, cycle)

    def mark(self) -> int:
        """A point to `undo` back to: flights reserved after it are released."""
        return len(self._log)

    def undo(self, mark: int) -> None:
        while len(self._log) > mark:
            self._flights[self._log.pop()].pop()

    # ------------------------------------------------------------------ streams
    def flight_free(self, sid: int, diag: int, lo: int, hi: int) -> bool:
        """Whether stream `sid` is free on diagonal `diag` over positions lo..hi (inclusive)."""
        return all(b < lo or a > hi for a, b in self._flights.get((sid, diag), ()))

    def reserve_flight(self, sid: int, diag: int, lo: int, hi: int) -> None:
        self._flights[(sid, diag)].append((lo, hi))
        self._log.append((sid, diag))

    def claim(self, sid0: int, diag: int, spans: list[tuple[int, int]], step: int) -> int | None:
        """Reserve flights for a stream group on `diag`: the lowest base in 0, step, 2 step, ... (the group inside
        the direction's streams sid0 .. sid0 + n_streams - 1) such that every stream sid0 + base + b is free over
        spans[b] = (lo, hi). Returns the base, or None if there is none."""
        flights, w = self._flights, len(spans)
        for base in range(0, self.cfg.n_streams - w + 1, step):
            sid = sid0 + base
            for b, (lo, hi) in enumerate(spans):
                taken = flights.get((sid + b, diag))
                if taken and any(not (y < lo or x > hi) for x, y in taken):
                    break
            else:
                for b, (lo, hi) in enumerate(spans):
                    self.reserve_flight(sid + b, diag, lo, hi)
                return base
        return None

    # ------------------------------------------------------------------ ports
    def port_free(self, port: str, due: int) -> bool:
        return (port, due) not in self._ports

    def reserve_port(self, port: str, due: int) -> None:
        self._ports.add((port, due))
