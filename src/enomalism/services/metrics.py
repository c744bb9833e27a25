"""What GET /metrics reports, in the Prometheus text format.

Machines and hypervisors: read from libvirt in one bulk call per hypervisor (`Collector`),
only for the hypervisors this node owns (runtime/nodes.py), shared by every scrape and by
the stats sampler for `MAX_AGE` seconds, and never while a database session is open. The
server's own instruments (`ServerMetrics`: requests by route, jobs by kind and outcome, event
lag, the database pool, the process) are this process's; with several nodes, Prometheus
scrapes each one. Families and labels: docs/api.md, "Metrics and stats".
"""

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import func, select

from enomalism.errors import EnomalismError
from enomalism.services import access
from enomalism.services.context import Context
from enomalism.store.db import Database
from enomalism.store.models import Hypervisor, Machine, User
from enomalism.virt import driver

if TYPE_CHECKING:
    from enomalism.runtime.registry import HypervisorRegistry

MAX_AGE = 5.0  # seconds a collection serves every scrape (and the sampler) before the next
ACTIVE = ("running", "paused", "blocked", "pmsuspended", "shutdown")  # hold CPUs and memory
UNMATCHED = "unmatched"  # the route label of a request no route answered (never the raw path)


class ServerMetrics:
    """This process's own instruments, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("enomalism_http_requests", "HTTP requests answered, by route "
                                "template and status", ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "enomalism_http_request_duration_seconds", "Time to answer, by route template",
            ["method", "route"], registry=r,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.jobs = Counter("enomalism_jobs", "Transactions this node ran to their end, by kind "
                            "and outcome (done, failed, cancelled)", ["kind", "outcome"],
                            registry=r)
        self.job_seconds = Histogram(
            "enomalism_job_duration_seconds", "Time from a transaction's claim to its end",
            ["kind", "outcome"], registry=r,
            buckets=(.1, .5, 1, 5, 10, 30, 60, 300, 900, 3600))
        self.event_lag = Histogram(
            "enomalism_event_lag_seconds", "Time from a libvirt domain event reaching this "
            "node to the inventory write it caused", registry=r,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def job(self, kind: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(kind, outcome).inc()
        self.job_seconds.labels(kind, outcome).observe(seconds)

    def event(self, seconds: float) -> None:
        self.event_lag.observe(seconds)


@dataclass(frozen=True)
class Sample:
    """One hypervisor's bulk read: every domain's counters and the host's usage."""
    hypervisor: str
    at: float  # time.monotonic() of the read
    wall: float  # time.time() of the read
    took: float  # seconds the read took
    domains: tuple[driver.DomainStats, ...] = ()
    free_memory: int | None = None
    pools: tuple[driver.PoolUsage, ...] = ()
    error: str | None = None  # why the read failed (the hypervisor is then reported down)


@dataclass
class Collector:
    """Bulk reads of the hypervisors this node owns, each shared for `max_age` seconds; two
    scrapes at once wait for one read rather than making two."""
    registry: "HypervisorRegistry"
    max_age: float = MAX_AGE
    _cache: dict[str, Sample] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def owned(self) -> list[str]:
        return sorted(self.registry.ownership.owned)

    def sample(self, hv_uuid: str, max_age: float | None = None) -> Sample:
        limit = self.max_age if max_age is None else max_age
        with self._lock:
            lock = self._locks.setdefault(hv_uuid, threading.Lock())
        with lock:
            cached = self._cache.get(hv_uuid)
            if cached is not None and time.monotonic() - cached.at < limit:
                return cached
            fresh = self._read(hv_uuid)
            with self._lock:
                self._cache[hv_uuid] = fresh
                for gone in self._cache.keys() - set(self.owned()):
                    self._cache.pop(gone, None)
            return fresh

    def samples(self) -> list[Sample]:
        return [self.sample(hv) for hv in self.owned()]

    def _read(self, hv_uuid: str) -> Sample:
        started, wall = time.monotonic(), time.time()
        try:
            conn = self.registry.connection(hv_uuid)
            domains = conn.domain_stats()
            free, pools = conn.host_usage()
        except EnomalismError as e:
            return Sample(hv_uuid, started, wall, time.monotonic() - started, error=e.message)
        return Sample(hv_uuid, started, wall, time.monotonic() - started, tuple(domains), free,
                      tuple(pools))


def _esc(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**values: str) -> str:
    return ",".join(f'{k}="{_esc(str(v))}"' for k, v in values.items())


class _Family:
    """One family in the Prometheus text format (0.0.4), each machine's label text made once
    and reused by its series: prometheus_client's own rendering costs ~15 us a sample, too
    much for 1,000 machines of fifteen series each (bench/metrics.py)."""

    def __init__(self, name: str, kind: str, doc: str) -> None:
        self.sample = f"{name}_total" if kind == "counter" else name
        self.head = f"# HELP {self.sample} {doc}\n# TYPE {self.sample} {kind}\n"
        self.lines: list[str] = []

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.sample}{{{labels}}} {value}\n")

    def text(self) -> str:
        return self.head + "".join(self.lines)


def _gauge(name: str, doc: str) -> _Family:
    return _Family(name, "gauge", doc)


def _counter(name: str, doc: str) -> _Family:
    return _Family(name, "counter", doc)




def _machine_families(samples: list[Sample], inventory: dict[str, tuple], *,
                      everyone: bool) -> list[_Family]:
    """Per machine: info, state, CPU time, memory, block and network I/O, labelled by uuid
    and name. `inventory`: uuid -> (owner, managed) of the machines the caller may read;
    with `everyone` (an administrator) domains not in the inventory yet are reported too."""
    info = _gauge("enomalism_machine_info", "A machine's hypervisor and owner (always 1)")
    state = _gauge("enomalism_machine_state", "1 for the machine's current state (libvirt's)")
    cpu = _counter("enomalism_machine_cpu_seconds", "CPU time the machine used since it "
                   "started")
    vcpus = _gauge("enomalism_machine_vcpus", "Virtual CPUs the machine has now")
    mem = {
        "balloon_kib": _gauge("enomalism_machine_memory_balloon_bytes",
                              "Memory the machine has now (balloon current)"),
        "max_memory_kib": _gauge("enomalism_machine_memory_max_bytes",
                                 "Memory the machine may grow to (balloon maximum)"),
        "rss_kib": _gauge("enomalism_machine_memory_rss_bytes",
                          "Resident memory of the machine's process on its host"),
        "available_kib": _gauge("enomalism_machine_memory_available_bytes",
                                "Memory the guest sees (needs its balloon driver)"),
        "unused_kib": _gauge("enomalism_machine_memory_unused_bytes",
                             "Memory the guest leaves unused (needs its balloon driver)"),
    }
    disk = [(_counter(f"enomalism_machine_block_{n}", d), f)
            for n, d, f in (("read_bytes", "Bytes read from the disk", "read_bytes"),
                            ("write_bytes", "Bytes written to the disk", "write_bytes"),
                            ("read_requests", "Read requests of the disk", "read_ops"),
                            ("write_requests", "Write requests of the disk", "write_ops"))]
    net = [(_counter(f"enomalism_machine_network_{n}", d), f)
           for n, d, f in (("receive_bytes", "Bytes received", "read_bytes"),
                           ("transmit_bytes", "Bytes sent", "write_bytes"),
                           ("receive_packets", "Packets received", "read_ops"),
                           ("transmit_packets", "Packets sent", "write_ops"))]
    for sample in samples:
        for d in sample.domains:
            known = inventory.get(d.uuid)
            if known is None and not everyone:
                continue
            owner, managed = known or ("", False)
            ids = _labels(uuid=d.uuid, name=d.name)
            info.add(_labels(uuid=d.uuid, name=d.name, hypervisor=sample.hypervisor,
                             owner=owner or "", managed="true" if managed else "false"), 1)
            state.add(f'{ids},state="{d.state}"', 1)
            if d.cpu_ns is not None:
                cpu.add(ids, d.cpu_ns / 1e9)
            if d.vcpus is not None:
                vcpus.add(ids, d.vcpus)
            for attr, family in mem.items():
                value = getattr(d, attr)
                if value is not None:
                    family.add(ids, value * 1024)
            for devices, families, label in ((d.disks, disk, "device"),
                                             (d.nics, net, "interface")):
                for dev in devices:
                    dev_ids = f'{ids},{label}="{_esc(dev.name)}"'
                    for family, attr in families:
                        value = getattr(dev, attr)
                        if value is not None:
                            family.add(dev_ids, value)
    return [info, state, cpu, vcpus, *mem.values(), *(f for f, _ in disk), *(f for f, _ in net)]


def _hypervisor_families(samples: list[Sample], hvs: dict[str, Hypervisor],
                         allocated: dict[str, tuple[int, int]]) -> list[_Family]:
    up = _gauge("enomalism_hypervisor_up", "1 when this node's bulk read of the hypervisor "
                "succeeded")
    took = _gauge("enomalism_hypervisor_collection_seconds",
                  "How long the bulk read of the hypervisor took")
    cpus = _gauge("enomalism_hypervisor_cpus", "The host's CPUs")
    memory = _gauge("enomalism_hypervisor_memory_bytes", "The host's memory")
    free = _gauge("enomalism_hypervisor_memory_free_bytes", "The host's free memory")
    vcpus = _gauge("enomalism_hypervisor_allocated_vcpus",
                   "Virtual CPUs of the machines running on the hypervisor")
    alloc = _gauge("enomalism_hypervisor_allocated_memory_bytes",
                   "Memory of the machines running on the hypervisor")
    machines = _gauge("enomalism_hypervisor_machines", "Domains on the hypervisor by state")
    pool_cap = _gauge("enomalism_storage_pool_capacity_bytes", "A storage pool's size")
    pool_alloc = _gauge("enomalism_storage_pool_allocation_bytes",
                        "A storage pool's bytes in use")
    pool_avail = _gauge("enomalism_storage_pool_available_bytes",
                        "A storage pool's free bytes")
    for s in samples:
        hv = hvs.get(s.hypervisor)
        if hv is None:
            continue
        h = _labels(hypervisor=s.hypervisor)
        up.add(_labels(hypervisor=s.hypervisor, uri=hv.virt_url), 0 if s.error else 1)
        took.add(h, s.took)
        if hv.cpus is not None:
            cpus.add(h, hv.cpus)
        if hv.memory_kib is not None:
            memory.add(h, hv.memory_kib * 1024)
        if s.error:
            continue
        if s.free_memory is not None:
            free.add(h, s.free_memory)
        n_vcpus, n_kib = allocated.get(s.hypervisor, (0, 0))
        vcpus.add(h, n_vcpus)
        alloc.add(h, n_kib * 1024)
        counts: dict[str, int] = {}
        for d in s.domains:
            counts[d.state] = counts.get(d.state, 0) + 1
        for state_name, n in sorted(counts.items()):
            machines.add(f'{h},state="{state_name}"', n)
        for p in s.pools:
            pool = f'{h},pool="{_esc(p.name)}"'
            pool_cap.add(pool, p.capacity)
            pool_alloc.add(pool, p.allocation)
            pool_avail.add(pool, p.available)
    return [up, took, cpus, memory, free, vcpus, alloc, machines, pool_cap, pool_alloc,
            pool_avail]


def _pool_families(db: Database) -> list[_Family]:
    status = db.pool_status()
    g = _gauge("enomalism_db_pool_connections", "This process's database connections by "
               "state (in use, idle, over the pool's size)")
    for name in ("in_use", "idle", "overflow"):
        g.add(f'state="{name}"', status[name])
    size = _gauge("enomalism_db_pool_size", "The size of this process's database pool")
    size.lines.append(f"enomalism_db_pool_size {status['size']}\n")
    return [g, size]


def exposition(ctx: Context, *, collector: Collector, server: ServerMetrics,
               db: Database) -> bytes:
    """The text of GET /metrics for the caller: an administrator gets every machine and
    hypervisor this node owns and the server's own families; anyone else only the machines
    and hypervisors they may read."""
    samples = collector.samples()  # libvirt first, with no database session open
    hv_uuids = [s.hypervisor for s in samples]
    q = (select(Machine.uuid, User.username, Machine.managed)
         .outerjoin(User, User.uuid == Machine.owner_uuid)
         .where(Machine.parent_uuid.in_(hv_uuids)))
    if (clause := access.readable(ctx, Machine)) is not None:
        q = q.where(clause)
    inventory = {u: (owner, managed) for u, owner, managed in ctx.db.execute(q)}
    hq = select(Hypervisor).where(Hypervisor.uuid.in_(hv_uuids))
    if (clause := access.readable(ctx, Hypervisor)) is not None:
        hq = hq.where(clause)
    hvs = {hv.uuid: hv for hv in ctx.db.scalars(hq)}
    allocated = {hv: (int(v or 0), int(m or 0)) for hv, v, m in ctx.db.execute(
        select(Machine.parent_uuid, func.sum(Machine.vcpus), func.sum(Machine.memory_kib))
        .where(Machine.parent_uuid.in_(list(hvs)), Machine.state.in_(ACTIVE))
        .group_by(Machine.parent_uuid)) if hv is not None}
    admin = ctx.user.is_admin
    families = _machine_families(samples, inventory, everyone=admin) + \
        _hypervisor_families(samples, hvs, allocated)
    if admin:
        families += _pool_families(db)
    text = "".join(f.text() for f in families).encode()
    return text + generate_latest(server.registry) if admin else text
