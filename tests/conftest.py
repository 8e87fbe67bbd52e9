from __future__ import annotations

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
        _HARDWARE_DEPENDENT.append(item.nodeid)


def pytest_report_header(config):
    return f"cpu: {describe_cpu_kind()}"


def pytest_terminal_summary(terminalreporter):
    if _HARDWARE_DEPENDENT:
        terminalreporter.section("hardware-dependent tests")
        terminalreporter.write_line(f"ran on: {describe_cpu_kind()}")
        for nodeid in _HARDWARE_DEPENDENT:
            terminalreporter.write_line(f"  {nodeid}")
