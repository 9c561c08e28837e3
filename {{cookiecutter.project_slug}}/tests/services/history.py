"""The history of a run of concurrent reads and writes, and the check that no read was stale.

Every operation records when it started and ended (the machine's monotonic clock, shared by
its processes) and the names it saw or wrote. "Older" is judged only where the order is
certain: a write that ended before another began came first. Overlapping writes may commit
in either order, so neither is called older.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Write:
    item_id: int
    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Read:
    path: str
    seen: dict[int, str]  # item id -> name
    start: float
    end: float


@dataclass
class History:
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)

    def stale_reads(self, grace: float = 0.0) -> list[str]:
        """Every read that saw a name some write it came after had certainly replaced.

        A read "came after" a write when it started more than `grace` seconds after the
        write completed (across processes, the promise leaves Redis that long to tell).
        """
        by_name = {(write.item_id, write.name): write for write in self.writes}
        problems = []
        for read in self.reads:
            for item_id, name in read.seen.items():
                seen = by_name.get((item_id, name))
                if seen is None:
                    problems.append(f"{read.path} saw {name!r}, which nobody wrote")
                    continue
                for newer in self.writes:
                    if (
                        newer.item_id == item_id
                        and newer.end + grace < read.start
                        and seen.end < newer.start
                    ):
                        problems.append(
                            f"{read.path} [{read.start:.4f}-{read.end:.4f}] saw {name!r}"
                            f" (written by {newer.end - seen.end:.4f}s older write) after"
                            f" {newer.name!r} had completed at {newer.end:.4f}"
                        )
                        break
        return problems
