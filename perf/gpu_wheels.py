"""The wheels the GPU runbook carries, and a check that they meet every import-time requirement.

    python -m perf.gpu_wheels                 # the pip download commands for .gpu-wheels/ (this venv's pins)
    python -m perf.gpu_wheels --check         # would the lent machine plus these wheels import the check?

The lent GPU machine has no network; its packages are listed in ``DEVICE`` (versions as its
description states them, ``None`` where it names a package without a version). The runbook
installs ``CARRY`` there with ``pip install --no-deps``, so pip checks nothing: transformers
checks its own requirements at import (huggingface-hub, tokenizers, safetensors, regex,
accelerate, ...) and fails there if one is unmet. :func:`unmet` walks the ``Requires-Dist`` of
every distribution the check imports (``ROOTS``) and of every carried wheel, as this
environment's metadata gives them at the carried versions, and names each requirement that
neither a carried wheel nor the machine's own version meets. A package whose version on the
machine is unknown meets a requirement without a version bound only. ``perf.gpu_check``'s
preflight runs the same walk over what is really installed, so a box that differs from its
description fails in seconds with the wheel to carry named.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import metadata

# What the lent machine has (its description: Python 3.12, torch 2.11 with CUDA, ...).
DEVICE: dict[str, str | None] = {
    "torch": "2.11.0", "transformers": "5.17.0", "accelerate": "1.15.0", "huggingface-hub": "1.33.0",
    "tokenizers": "0.23.2", "safetensors": "0.8.0", "numpy": "2.5.2", "peft": None, "pandas": None,
    "pyarrow": None, "matplotlib": None, "seaborn": None, "pyyaml": None, "tqdm": None, "psutil": None,
    "pytest": None, "rich": None, "requests": None, "fsspec": None, "filelock": None, "jinja2": None,
    "regex": None, "packaging": None, "typer": None, "click": None, "httpx": None, "hf-xet": None,
    "typing-extensions": None, "sympy": None, "networkx": None, "markupsafe": None, "setuptools": None,
    "nvidia-ml-py": None, "triton": None,
}
DEVICE_PYTHON = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
# The distributions perf.gpu_check (and the gpu_throughput child it runs) import, directly or
# through thinktune; tests/test_gpu_check.py checks this against what a --tiny run imported.
ROOTS = ("torch", "transformers", "peft", "accelerate", "safetensors", "tokenizers", "huggingface-hub", "pydantic",
         "pyyaml", "tqdm", "numpy", "regex")
# Carried as wheels, at this environment's versions: newer than the machine's or of unknown version there.
CARRY = ("transformers", "peft", "regex", "packaging", "pyyaml", "tqdm", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
         "typing-extensions")
# Imported when installed, skipped when not (accelerate and peft probe for them): not carried.
OPTIONAL_IMPORTS = ("scipy", "dill", "pydot", "colorama")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def local_requires(name: str) -> list[str]:
    return metadata.requires(name) or []


def unmet(roots=ROOTS, carry=CARRY, device=DEVICE, version_of: Callable[[str], str | None] | None = None,
          requires: Callable[[str], list[str]] = local_requires, env: dict | None = None) -> list[str]:
    """Each requirement reachable from ``roots`` that the carried wheels (at ``version_of``'s
    version, default this environment's) and ``device`` together leave unmet, as a sentence
    naming the wheel to carry. Empty: the check imports there."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    env = DEVICE_PYTHON if env is None else env
    version_of = version_of or (lambda name: metadata.version(name))
    carried = {canonical(n): version_of(n) for n in carry}
    device = {canonical(k): v for k, v in device.items()}
    problems, seen, todo = [], set(), [canonical(r) for r in roots]

    def available(name: str) -> tuple[str, str | None] | None:
        if name in carried:
            return "a carried wheel", carried[name]
        if name in device:
            return "the machine", device[name]
        return None

    for name in todo:
        if name in seen:
            continue
        seen.add(name)
        found = available(name)
        if found is None:
            problems.append(f"{name}: neither carried nor on the machine; carry its wheel")
            continue
        if found[0] != "a carried wheel":
            continue  # the machine's own package: its requirements are the machine's business
        for text in requires(name):
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = canonical(req.name)
            todo.append(dep)
            have = available(dep)
            if have is None:
                continue  # reported when its turn comes
            where, version = have
            if version is None:
                if str(req.specifier):
                    problems.append(f"{name} {carried[name]} needs {req}; {where} has it at an unknown version: "
                                    f"carry {dep}")
            elif not req.specifier.contains(Version(version), prereleases=True):
                problems.append(f"{name} {carried[name]} needs {req}; {where} has {version}: carry {dep}")
    return problems


def closure(names) -> set[str]:
    """``names`` and everything their ``Requires-Dist`` reach, by this environment's metadata."""
    from packaging.requirements import Requirement

    seen, todo = set(), [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requirements = local_requires(name)
        except metadata.PackageNotFoundError:
            continue
        for text in requirements:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(DEVICE_PYTHON):
                todo.append(canonical(req.name))
    return seen


def installed_unmet(roots=ROOTS) -> list[str]:
    """:func:`unmet` over what this Python really has installed (the GPU preflight's check)."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    problems = []
    for name in roots:
        try:
            requirements = local_requires(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed: carry its wheel (python -m perf.gpu_wheels)")
            continue
        for text in requirements:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate():
                continue
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                problems.append(f"{name} needs {req}, not installed: carry {canonical(req.name)}")
                continue
            if not req.specifier.contains(Version(version), prereleases=True):
                problems.append(f"{name} needs {req}, installed {version}: carry {canonical(req.name)}")
    return problems


def download_commands(carry=CARRY) -> list[str]:
    platforms = " ".join(f"--platform {p}" for p in PLATFORMS)
    return [f"python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
            f"{platforms} -d .gpu-wheels {canonical(n)}=={metadata.version(n)}" for n in carry]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="check the carried set against the machine's packages")
    args = p.parse_args(argv)
    if not args.check:
        print("\n".join(download_commands()))
        return 0
    problems = unmet()
    print("\n".join(problems) if problems else f"ok: {len(CARRY)} carried wheels and the machine's packages meet "
                                               f"every requirement of {', '.join(ROOTS)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
