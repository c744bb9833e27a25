"""A machine's current rates and last hour, for GET /rest/machine/<UUID>/stats/ and
`enomalism machine top`.

A sampler thread takes one bulk read per hypervisor this node owns every `INTERVAL` seconds
(through the metrics `Collector`, so a scrape at the same moment shares it) and turns each
running machine's counters into rates against its previous read. Each machine keeps its last
`KEEP` points in a ring buffer of fixed size; machines gone from their hypervisor, and
hypervisors this node no longer owns, are dropped. Memory is bounded: about 20 KB a machine.
"""

import logging
import math
import threading
import time
from array import array
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from enomalism.errors import Conflict, InvalidInput, StatsElsewhere
from enomalism.services import access, machines
from enomalism.services.context import Context
from enomalism.services.lookup import parse_uuid
from enomalism.services.metrics import Collector, Sample
from enomalism.store.models import Machine
from enomalism.virt.driver import DomainStats

log = logging.getLogger(__name__)

INTERVAL = 10.0  # seconds between reads
KEEP = 360  # points kept per machine: an hour at 10 s
# One point: time (epoch seconds), CPU %, memory used and total (bytes), disk read and write,
# network receive and transmit (bytes per second). NaN: not known.
FIELDS = ("t", "cpu", "mem_used", "mem_total", "disk_read", "disk_write", "net_rx", "net_tx")
RUNNING = ("running", "blocked")
STALE = 3  # intervals after which the last point is no longer current (hypervisor unreachable)


def _memory(d: DomainStats) -> tuple[float, float]:
    """(used, total) bytes: what the guest says it uses where its balloon driver tells,
    else the resident memory of its process on the host; total is what it has now."""
    total = d.balloon_kib if d.balloon_kib is not None else d.max_memory_kib
    used: int | None
    if d.available_kib is not None and d.unused_kib is not None:
        used = d.available_kib - d.unused_kib
    else:
        used = d.rss_kib
    return (math.nan if used is None else used * 1024.0,
            math.nan if total is None else total * 1024.0)


def _total(devices: tuple, attr: str) -> int | None:
    values = [getattr(v, attr) for v in devices]
    return None if not values or None in values else sum(values)


def _rate(now: int | None, before: int | None, seconds: float) -> float:
    if now is None or before is None or now < before:  # a counter reset: it restarted
        return math.nan
    return (now - before) / seconds


class _Ring:
    """One machine's points, oldest first, in fixed storage."""

    def __init__(self, keep: int) -> None:
        self.keep, self.next, self.count = keep, 0, 0
        self.data = array("d", [math.nan]) * (keep * len(FIELDS))

    def add(self, point: tuple[float, ...]) -> None:
        n = len(FIELDS)
        self.data[self.next * n:(self.next + 1) * n] = array("d", point)
        self.next = (self.next + 1) % self.keep
        self.count = min(self.count + 1, self.keep)

    def last(self) -> tuple[float, ...] | None:
        if not self.count:
            return None
        n, i = len(FIELDS), (self.next - 1) % self.keep
        return tuple(self.data[i * n:(i + 1) * n])

    def points(self) -> list[tuple[float, ...]]:
        n, start = len(FIELDS), (self.next - self.count) % self.keep
        return [tuple(self.data[((start + i) % self.keep) * n:((start + i) % self.keep + 1) * n])
                for i in range(self.count)]


@dataclass
class _Machine:
    hypervisor: str
    last: DomainStats
    at: float  # monotonic time of `last`
    state: str
    ring: _Ring


class Sampler:
    def __init__(self, collector: Collector, *, interval: float = INTERVAL,
                 keep: int = KEEP) -> None:
        self.collector, self.interval, self.keep = collector, interval, keep
        self._machines: dict[str, _Machine] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="stats-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample_now()
            except Exception:
                log.exception("sampling the machines' statistics failed")

    def sample_now(self) -> None:
        """Read every hypervisor this node owns and record a point per running machine."""
        owned = self.collector.owned()
        for hv in owned:
            self.record(self.collector.sample(hv, max_age=self.interval / 2))
        with self._lock:
            for uuid in [u for u, m in self._machines.items() if m.hypervisor not in owned]:
                del self._machines[uuid]

    def record(self, sample: Sample) -> None:
        if sample.error:
            return  # unreachable: keep what we have; its machines may come back
        seen = set()
        with self._lock:
            for d in sample.domains:
                seen.add(d.uuid)
                m = self._machines.get(d.uuid)
                if m is None or m.hypervisor != sample.hypervisor:
                    m = self._machines[d.uuid] = _Machine(sample.hypervisor, d, sample.at,
                                                          d.state, _Ring(self.keep))
                    continue
                if sample.at > m.at and d.state in RUNNING and m.state in RUNNING:
                    m.ring.add(self._point(m.last, d, sample.at - m.at, sample.wall))
                m.last, m.at, m.state = d, sample.at, d.state
            for uuid in [u for u, m in self._machines.items()
                         if m.hypervisor == sample.hypervisor and u not in seen]:
                del self._machines[uuid]  # gone from its hypervisor

    @staticmethod
    def _point(before: DomainStats, now: DomainStats, seconds: float,
               wall: float) -> tuple[float, ...]:
        cpu = _rate(now.cpu_ns, before.cpu_ns, seconds)
        vcpus = now.vcpus or 1
        used, total = _memory(now)
        return (wall, cpu / 1e9 / vcpus * 100, used, total,
                _rate(_total(now.disks, "read_bytes"), _total(before.disks, "read_bytes"),
                      seconds),
                _rate(_total(now.disks, "write_bytes"), _total(before.disks, "write_bytes"),
                      seconds),
                _rate(_total(now.nics, "read_bytes"), _total(before.nics, "read_bytes"),
                      seconds),
                _rate(_total(now.nics, "write_bytes"), _total(before.nics, "write_bytes"),
                      seconds))

    def latest(self, uuid: str) -> tuple[str, tuple[float, ...] | None] | None:
        """(state, last point or None) of a machine this node samples; None when it samples
        none. Cheaper than `history` for a list of machines."""
        with self._lock:
            m = self._machines.get(uuid)
            if m is None:
                return None
            return m.state, m.ring.last()

    def history(self, uuid: str) -> tuple[str | None, list[dict]] | None:
        """(state, points) of a machine this node samples; None when it samples none."""
        with self._lock:
            m = self._machines.get(uuid)
            if m is None:
                return None
            state, points = m.state, m.ring.points()
        return state, [{k: None if math.isnan(v) else round(v, 3)
                        for k, v in zip(FIELDS, p, strict=True)} for p in points]


def machine_stats(ctx: Context, uuid: str, *, sampler: Sampler) -> dict:
    """The machine's current rates (its latest point, unless it stopped or that point is
    stale) and its history, oldest first. A machine whose hypervisor another node owns is
    sampled there: StatsElsewhere."""
    m = machines.get(ctx, uuid)
    found = sampler.history(m.uuid)
    state: str | None
    points: list[dict[str, Any]]
    if found is None:
        hv = m.parent_uuid
        if m.kind != "vm" or hv is None:
            raise Conflict(f"machine {m.name} is a host: statistics are kept for virtual "
                           "machines")
        if not ctx.registry.ownership.owns(hv):
            raise StatsElsewhere(
                f"the statistics of machine {m.name} are kept by the API node that owns its "
                f"hypervisor {hv}, not by this one; ask that node (GET /rest/nodes/ lists "
                "which node owns it)")
        state, points = m.state, []  # not sampled yet (just defined, or the first read)
    else:
        state, points = found
    fresh = points and time.time() - points[-1]["t"] < STALE * sampler.interval
    current = dict(points[-1]) if fresh and state in RUNNING else dict.fromkeys(FIELDS)
    return {"errno": 0, "message": "", "machine": m.uuid, "state": state,
            "interval": sampler.interval, "stats": current, "history": points}


LIST_MAX = 100  # machines one `current_stats` answers for (the dashboard asks for a page: 50)


def current_stats(ctx: Context, uuids: list[str], *, sampler: Sampler
                  ) -> dict[str, dict[str, Any] | None]:
    """The current point of each machine named that the caller may read (the others are left
    out: nothing is revealed about them), None when it does not run, its point is stale or
    another node samples it. For a list's CPU and memory columns: no history."""
    if len(uuids) > LIST_MAX:
        raise InvalidInput(f"ask for at most {LIST_MAX} machines at once")
    ids = [parse_uuid(u, "machine") for u in uuids]
    q = select(Machine.uuid).where(Machine.uuid.in_(ids), Machine.kind == "vm")
    if (clause := access.readable(ctx, Machine)) is not None:
        q = q.where(clause)
    out: dict[str, dict[str, Any] | None] = {}
    now = time.time()
    for uuid in ctx.db.scalars(q):
        found = sampler.latest(uuid)
        point = found[1] if found is not None and found[0] in RUNNING else None
        fresh = point is not None and now - point[0] < STALE * sampler.interval
        out[uuid] = {k: None if math.isnan(v) else round(v, 3)
                     for k, v in zip(FIELDS, point, strict=True)} if fresh and point else None
    return out
