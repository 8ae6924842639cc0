"""What the scheduler reserves, cycle by cycle: queue slots, SRAM banks, output ports and stream flights.

A value put on a stream moves one position per cycle, so in space-time it is a diagonal: an eastward value at
position p in cycle c has `diag = c - p`, a westward one `diag = c + p`, the same all along its flight. Two values
on one stream collide only if they are on the same diagonal and their flights (from the position where each
lands to the position where it is last read, both ends included) overlap: the later one would overwrite the
earlier before it is read (docs/isa.md §5: a landing result replaces whatever passes). `Resources` keeps, per
(stream id, diagonal), the position intervals already in flight, and refuses an overlapping one.
"""

from __future__ import annotations

from ..config import ChipConfig
from ..kernels.timeline import Timeline

__all__ = ["Resources", "diagonal"]


def diagonal(direction: int, position: int, cycle: int) -> int:
    """The space-time diagonal of a value at `position` in `cycle` moving east (0) or west (1)."""
    return cycle - position if direction == 0 else cycle + position


def _overlaps(taken: tuple[tuple[int, int], ...], lo: int, hi: int) -> bool:
    """Whether any interval in `taken` overlaps lo..hi."""
    for x, y in taken:
        if y >= lo and x <= hi:
            return True
    return False


class Resources:
    """Queue slots and SRAM banks (a `Timeline`), output ports per due cycle, and stream flights.

    The flights are kept per (direction, diagonal): a list with, for each stream index of that direction, the
    position intervals ((lo, hi), ...) already in flight on it (None if there are none), so a stream group's
    streams on one diagonal are consecutive entries of one list. The intervals are tuples of ints and the undo
    log holds ints, which the garbage collector need not scan."""

    def __init__(self, cfg: ChipConfig):
        self.cfg = cfg
        self.tl = Timeline(cfg)
        self._S = cfg.n_streams
        self._flights: dict[tuple[int, int], list[tuple[tuple[int, int], ...] | None]] = {}
        self._ports: set[tuple[str, int]] = set()
        self._log: list[tuple[int, int, int]] = []  # flights reserved, in order (for undo): (direction, diag, index)

    def diag(self, direction: int, position: int, cycle: int) -> int:
        return diagonal(direction, position, cycle)

    def mark(self) -> int:
        """A point to `undo` back to: flights reserved after it are released."""
        return len(self._log)

    def undo(self, mark: int) -> None:
        while len(self._log) > mark:
            direction, diag, i = self._log.pop()
            row = self._flights[(direction, diag)]
            row[i] = row[i][:-1] or None

    # ------------------------------------------------------------------ streams
    def _row(self, direction: int, diag: int) -> list:
        row = self._flights.get((direction, diag))
        if row is None:
            row = self._flights[(direction, diag)] = [None] * self._S
        return row

    def flight_free(self, sid: int, diag: int, lo: int, hi: int) -> bool:
        """Whether stream `sid` is free on diagonal `diag` over positions lo..hi (inclusive)."""
        row = self._flights.get((sid // self._S, diag))
        taken = row[sid % self._S] if row is not None else None
        return not (taken and _overlaps(taken, lo, hi))

    def reserve_flight(self, sid: int, diag: int, lo: int, hi: int) -> None:
        direction, i = divmod(sid, self._S)
        self._reserve(direction, diag, self._row(direction, diag), i, lo, hi)

    def _reserve(self, direction: int, diag: int, row: list, i: int, lo: int, hi: int) -> None:
        row[i] = (row[i] or ()) + ((lo, hi),)
        self._log.append((direction, diag, i))

    def claim(self, direction: int, diag: int, spans: list[tuple[int, int]], step: int) -> int | None:
        """Reserve flights for a stream group of `direction` on `diag`: the lowest base in 0, step, 2 step, ...
        such that every stream base + b is free over spans[b] = (lo, hi). Returns the base, or None if there is
        none."""
        row, w = self._row(direction, diag), len(spans)
        for base in range(0, self._S - w + 1, step):
            for b, (lo, hi) in enumerate(spans):
                taken = row[base + b]
                if taken and _overlaps(taken, lo, hi):
                    break
            else:
                log = self._log
                for i, span in enumerate(spans, base):  # `_reserve`, inline
                    row[i] = (row[i] or ()) + (span,)
                    log.append((direction, diag, i))
                return base
        return None

    # ------------------------------------------------------------------ ports
    def port_free(self, port: str, due: int) -> bool:
        return (port, due) not in self._ports

    def reserve_port(self, port: str, due: int) -> None:
        self._ports.add((port, due))
