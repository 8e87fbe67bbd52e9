from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def params(repo_root):
    from thinktune.config.params import load_params

    return load_params(repo_root / "params.yaml")


def pytest_configure(config):
    config.addinivalue_line("markers", "sandbox_needs(feature, reason): the test needs that feature of "
                                       "thinktune.grading.sandbox.isolation_report(); skipped without it, failed in CI")


def require(available: bool, reason: str) -> None:
    """Skip a test whose environment lacks something on a developer's machine, but fail it in
    CI (the variable CI set), which provides it: there a skip would hide a broken setup."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI provides it (it runs the tests as root), so this is a failure there",
                    pytrace=False)
    pytest.skip(f"{reason}; in CI this test fails instead")


@pytest.fixture(scope="module")
def private_uid_range(request):
    """The sandbox's uids from the module's ``TEST_UID_BASE`` while it runs: apart from the other
    test modules' ranges and from a real evaluation's on the same machine."""
    from thinktune.grading.sandbox import uids

    saved = uids.UID_BASE, uids._free_uids
    uids.UID_BASE, uids._free_uids = request.module.TEST_UID_BASE, None
    yield
    uids.UID_BASE, uids._free_uids = saved


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    the tiny model's ops are too small to share out, so threads only wait on each other
    (several times slower on a loaded 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def describe_cpu_kind() -> str:
    """Which of the project's two CPU kinds the tests run on, as the tests that depend on it
    see it: native bf16 or not (what ``precision: auto`` resolves to) and torch's kernels."""
    import torch

    from thinktune.models.hardware import cpu_has_native_bf16, resolve_precision

    native = "native bf16" if cpu_has_native_bf16() else "no native bf16 (torch emulates it)"
    return (f"{native}; precision auto -> {resolve_precision('auto')}; "
            f"torch CPU kernels {torch.backends.cpu.get_cpu_capability()}")


@pytest.fixture(scope="session")
def cpu_kind() -> str:
    """For a test whose numbers depend on the CPU kind: name it in the assertion's message, and
    the run's summary lists the test under the branch it took."""
    return describe_cpu_kind()


_HARDWARE_DEPENDENT: list[str] = []


def pytest_runtest_setup(item):
    if "cpu_kind" in getattr(item, "fixturenames", ()):
        item.user_properties.append(("cpu_kind", describe_cpu_kind()))


def pytest_runtest_logreport(report):
    """Runs where the summary is written (with pytest-xdist: in the controller, on the workers'
    reports), so the list holds every worker's hardware-dependent tests."""
    if report.when == "call" and any(name == "cpu_kind" for name, _ in report.user_properties):
        _HARDWARE_DEPENDENT.append(report.nodeid)


def pytest_collection_modifyitems(items):
    """The whole-pipeline modules first: with ``-n 2 --dist loadscope --no-loadscope-reorder`` (``make test``) each module
    goes whole to one worker, and starting the longest ones first keeps both workers busy to the end."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is None)


def pytest_report_header(config):
    return f"cpu: {describe_cpu_kind()}"


def pytest_terminal_summary(terminalreporter):
    if _HARDWARE_DEPENDENT:
        terminalreporter.section("hardware-dependent tests")
        terminalreporter.write_line(f"ran on: {describe_cpu_kind()}")
        for nodeid in _HARDWARE_DEPENDENT:
            terminalreporter.write_line(f"  {nodeid}")
