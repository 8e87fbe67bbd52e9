"""Isolation tiers: which one this machine gives (probed once), what it covers, and what a
weaker one cannot promise (logged when it is the one in use)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass

from thinktune.sandbox.limits import Limits, SandboxError

log = logging.getLogger("thinktune.sandbox")


@dataclass(frozen=True)
class Tier:
    name: str
    drop_uid: bool  # programs run as a per-program unprivileged uid
    contained: bool  # namespaces, allowlist root, seccomp, memory cgroup, init


CONTAINED = Tier("contained", drop_uid=True, contained=True)
UID_ONLY = Tier("uid", drop_uid=True, contained=False)
PLAIN = Tier("plain", drop_uid=False, contained=False)

# What a weaker tier cannot promise, logged when it is the one in use.
GAPS = {
    "uid": ("sandbox tier 'uid' (root, but no namespaces here) cannot promise isolation: programs run as "
            "their own uid under rlimits, but see the host's file system (every world-readable file, the "
            "repository and its data included), the host network and Unix sockets and the other "
            "processes; no seccomp filter, no memory cgroup, no private /tmp"),
    "plain": ("sandbox tier 'plain' (not root) cannot promise isolation: programs run as the evaluator's "
              "own user under rlimits and the timeout only: they can read and write its file system "
              "(results and expected outputs included), signal it and use the network; grade untrusted "
              "code as root"),
}

_tier_lock = threading.Lock()
_tier: Tier | None = None


def selected_tier() -> Tier:
    """The strongest tier whose probe run behaves; probed once per process."""
    global _tier
    with _tier_lock:
        if _tier is None:
            candidates = [CONTAINED, UID_ONLY] if os.geteuid() == 0 else []
            _tier = next((t for t in candidates if _probe(t)), PLAIN)
            log_tier(_tier)
        return _tier


def isolation_report() -> dict[str, bool]:
    """Which isolation features runs get on this machine (probed once), for logs and the README."""
    tier = selected_tier()
    from thinktune.sandbox.launcher import fork_server_features

    features = fork_server_features(tier) if tier.contained else {}
    contained = tier.contained
    return {
        "rlimits": True,
        "new_session": True,
        "subreaper_cleanup": True,
        "no_new_privs": True,
        "unprivileged_uid": tier.drop_uid,
        "pid_namespace": contained,
        "init_process": contained,
        "network_namespace": contained,
        "ipc_namespace": contained,
        "mount_namespace": contained,
        "allowlist_root": contained,
        "private_tmp": contained,
        "seccomp": bool(features.get("seccomp")),
        "memory_cgroup": bool(features.get("memory_cgroup")),
    }


def log_tier(tier: Tier) -> None:
    log.info("sandbox tier: %s", tier.name)
    if tier.name in GAPS:
        log.warning(GAPS[tier.name])
    from thinktune.sandbox.launcher import fork_server_features

    features = fork_server_features(tier)
    if tier.contained:
        for note in features.get("notes", []):
            log.warning("sandbox tier 'contained' without one layer here: %s", note)
    for note in features.get("package_notes", []):
        log.warning("sandbox: %s", note)


_PROBE = """\
import os, sys
with open("probe", "w") as f:
    f.write(sys.stdin.read())
print(sys.version, sys.prefix, os.getuid() != 0, open("probe").read())
"""


def _probe(tier: Tier) -> bool:
    """True when a trivial program runs correctly (same interpreter, uid, stdin, cwd) in ``tier``."""
    expected = f"{sys.version} {sys.prefix} {tier.drop_uid or os.getuid() != 0} ok\n"
    from thinktune.sandbox.client import Program

    try:
        with Program(_PROBE, Limits(timeout_s=20), _tier=tier) as program:
            result = program.run("ok")
    except (OSError, SandboxError) as exc:
        log.info("sandbox tier %s unavailable: %s", tier.name, exc)
        return False
    if result.ok and result.stdout == expected:
        return True
    log.info("sandbox tier %s unavailable: probe gave %r / %r", tier.name, result.stdout, result.stderr[-500:])
    return False
