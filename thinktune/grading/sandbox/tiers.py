"""Isolation tiers: what each covers, and what a weaker one cannot promise. Which one this
machine gives is probed once, by running a program (``client.selected_tier``)."""

from __future__ import annotations

from dataclasses import dataclass


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
