"""The alert rules: pure functions of a probe (`state.health`), the previous one, and what the
database says of the target and its environments. No I/O here, so each rule is tested on its own.

Every alert has a message for platform engineers (it may name nodes) and, when the teams on the
target should know, a short one for their home page that names no host ("evictions happening";
the page adds "Redis for <env>: "). An alert about one environment is shown to its team alone.
"""

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from pipelinehub.environments.validators import canonical_host, is_private_host
from pipelinehub.state.vocabulary import meta_time

MEMORY_HIGH = 0.80
MEMORY_FULL = 0.95
CERT_WARNING = timedelta(days=21)
REPLICA_LAG_BYTES = 1024 * 1024
REPLICA_LAG_SECONDS = 10
RECONCILE_INTERVALS = 3

CRITICAL, WARNING, INFO = "critical", "warning", "info"


@dataclass(frozen=True)
class Alert:
    code: str
    message: str  # for platform engineers
    team_message: str = ""  # for the teams on the target; "" when only the admin shows it
    environment: str = ""  # the key of the one environment it concerns; "" for all
    severity: str = WARNING

    def as_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class TargetFacts:
    """What the database says of a target: its hosts and whether its clients use TLS."""

    hosts: tuple
    tls: bool
    failed_rotations: tuple = ()  # (Redis user, the step it reached) of each failed rotation


@dataclass(frozen=True)
class EnvironmentFacts:
    """What the database says of an environment on the target."""

    key: str
    name: str
    enabled: bool
    reconcile_every: timedelta  # the interval of its reconcile schedule
    watched_since: datetime  # when the watch first saw it (it has existed at least that long)


def evaluate(probe, previous, target, environments, now):
    """Every alert of `probe`, in the order the admin shows them. `previous` is the probe of
    the previous snapshot (None for the first)."""
    alerts = [*tls_alerts(target), *rotation_alerts(target), *certificate_alerts(probe, now)]
    if not probe["reachable"]:
        return [_unreachable(probe), *alerts]
    primary = probe["nodes"][0]
    alerts += memory_alerts(primary, probe["environments"])
    if growth := evictions(primary, primary_of(previous)):
        alerts.append(
            Alert(
                "evictions",
                f"{growth} keys evicted since the previous snapshot (policy "
                f"{primary['policy']}): run state may be lost. Raise maxmemory or free memory.",
                "evictions happening",
                severity=CRITICAL,
            )
        )
    alerts += replica_alerts(probe["nodes"])
    alerts += reconcile_alerts(probe["environments"], environments, now)
    alerts += _notes(probe)
    return alerts


def _unreachable(probe):
    return Alert(
        "unreachable",
        f"The primary does not answer: unreachable ({probe['error']}).",
        "unreachable",
        severity=CRITICAL,
    )


def primary_of(probe):
    """The primary's entry of a probe (None for no probe, or a primary that did not answer)."""
    return probe["nodes"][0] if probe and probe.get("reachable") else None


def evictions(primary, previous_primary):
    """Keys evicted since the previous snapshot; all of `evicted_keys` after a restart (another
    run_id), None with no previous snapshot to compare with."""
    if previous_primary is None:
        return None
    if previous_primary.get("run_id") != primary["run_id"]:
        return primary["evicted_keys"]
    return max(primary["evicted_keys"] - previous_primary["evicted_keys"], 0)


def memory_alerts(primary, environment_usage):
    alerts = []
    inflight = sum(usage.get("inflight_flow") or 0 for usage in environment_usage.values())
    policy = primary["policy"]
    if policy.startswith("allkeys-") and inflight:
        alerts.append(
            Alert(
                "allkeys_policy",
                f"Eviction policy {policy} may evict keys without a TTL, and {inflight} flow "
                "runs are in flight here: their state would vanish. Set maxmemory-policy to "
                "noeviction or a volatile-* policy.",
                "its eviction policy can drop runs in flight",
                severity=CRITICAL,
            )
        )
    maxmemory, used = primary["maxmemory"], primary["used_memory"]
    share = used / maxmemory if maxmemory else 0
    if policy == "noeviction" and share > MEMORY_FULL:
        alerts.append(
            Alert(
                "memory_full",
                f"Memory at {share:.0%} of maxmemory with policy noeviction: writes fail once "
                "it is full. Raise maxmemory or free memory.",
                "memory nearly full: writes will fail",
                severity=CRITICAL,
            )
        )
    elif share > MEMORY_HIGH:
        alerts.append(
            Alert(
                "memory_high",
                f"Memory at {share:.0%} of maxmemory ({used} of {maxmemory} bytes).",
                f"memory above {MEMORY_HIGH:.0%}",
            )
        )
    return alerts


def replica_alerts(nodes):
    primary, alerts = nodes[0], []
    for node in nodes[1:]:
        if problem := replica_problem(node, primary):
            code, detail = problem
            alerts.append(
                Alert(
                    code,
                    f"Replica {node['address']}: {detail}.",
                    "a replica is down" if code == "replica_down" else "a replica is lagging",
                )
            )
    return alerts


def replica_problem(node, primary):
    """("replica_down" | "replica_lagging", why) or None."""
    if not node["reachable"]:
        return "replica_down", f"unreachable ({node['error']})"
    replication = node["replication"]
    if replication["role"] != "slave":
        return "replica_down", "not replicating (it says it is a primary)"
    if replication["master_link_status"] != "up":
        return "replica_down", "its link to the primary is down"
    if not primary["reachable"]:
        return None
    behind = primary["replication"]["master_repl_offset"] - replication["slave_repl_offset"]
    if behind > REPLICA_LAG_BYTES:
        return "replica_lagging", f"{behind} bytes behind the primary"
    seen = _as_seen_by_primary(node["address"], primary["replication"].get("replicas", []))
    if seen and seen["lag"] > REPLICA_LAG_SECONDS:
        return "replica_lagging", f"last acknowledged {seen['lag']} s ago"
    return None


def _as_seen_by_primary(address, replicas):
    host, _, port = address.rpartition(":")
    for replica in replicas:
        other_host, _, other_port = replica["address"].rpartition(":")
        if (canonical_host(other_host), other_port) == (canonical_host(host), port):
            return replica
    return None


def tls_off_on_public_host(host, tls):
    """True when a client talks to `host` in clear although it is neither loopback nor a
    private address (names other than localhost count as public: nothing is resolved)."""
    return not tls and not is_private_host(host)


def tls_alerts(target):
    return [
        Alert(
            "tls_off",
            f"TLS is off for {host}, which is not a loopback or private address: passwords and "
            "run state cross the network in clear. Turn TLS on for this target.",
            "its connection is not encrypted",
        )
        for host in dict.fromkeys(target.hosts)
        if tls_off_on_public_host(host, target.tls)
    ]


def rotation_alerts(target):
    return [
        Alert(
            "rotation_failed",
            f"The password rotation of {username} failed at step {step!r}: the password it had "
            "still works. See Password rotations for the error; the next rotation continues it.",
        )
        for username, step in target.failed_rotations
    ]


def certificate_alerts(probe, now):
    alerts = []
    for node in probe["nodes"]:
        not_after = (node.get("tls") or {}).get("not_after")
        if not_after is None:
            continue
        left = datetime.fromisoformat(not_after) - now
        if left < CERT_WARNING:
            when = f"expires in {left.days} days" if left.total_seconds() > 0 else "has expired"
            alerts.append(
                Alert(
                    "certificate_expiring",
                    f"The TLS certificate of {node['address']} {when} ({not_after}). "
                    "Renew it before clients refuse the connection.",
                    f"its TLS certificate {when}",
                    severity=CRITICAL if left.total_seconds() <= 0 else WARNING,
                )
            )
    return alerts


def reconcile_alerts(usage, environments, now):
    """An enabled environment not reconciled for RECONCILE_INTERVALS of its schedule (or never,
    once it has been watched that long): its finished runs expire only through reconcile."""
    alerts = []
    for facts in environments:
        held = usage.get(facts.key, {})
        if not facts.enabled or held.get("error", ""):
            continue
        limit = facts.reconcile_every * RECONCILE_INTERVALS
        last = meta_time(held.get("last_reconcile"))
        since = last or facts.watched_since
        if now - since <= limit:
            continue
        minutes = int((now - since).total_seconds() // 60)
        when = f"has not run for {minutes} minutes" if last else "has never run"
        alerts.append(
            Alert(
                "reconcile_late",
                f"Reconcile of {facts.name} {when} (its schedule runs every "
                f"{_minutes(facts.reconcile_every)}): is beat running, and its worker? Finished "
                "runs expire only through reconcile.",
                f"reconcile {when}",
                environment=facts.key,
            )
        )
    return alerts


def _minutes(interval):
    return f"{interval.total_seconds() / 60:g} minutes"


def _notes(probe):
    """What the probe could not read, for the admin only."""
    notes = [
        Alert(
            "config_denied",
            f"CONFIG GET is refused on {node['address']} ({node['config_error']}): the policy "
            "shown is INFO's.",
            severity=INFO,
        )
        for node in probe["nodes"]
        if node.get("config_error")
    ]
    notes += [
        Alert("usage_unavailable", f"Key counts unavailable: {usage['error']}.", "", key, INFO)
        for key, usage in probe["environments"].items()
        if usage.get("error")
    ]
    return notes
