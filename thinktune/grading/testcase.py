"""What a program is run against: one test case, as every benchmark states it.

Kept apart from the grader (``thinktune.grading.verdicts``), which runs programs in the sandbox, so
that loading a benchmark's problems (the fetch stage) runs none of the sandbox's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TestCase:
    input: str
    output: str
    testtype: Literal["stdin", "functional", "assertion"] = "stdin"

    __test__ = False  # not a pytest test class


def assertion_test(prompt: str, test_code: str) -> TestCase:
    """HumanEval's test of one problem: its ``test`` code followed by ``check(entry_point)``,
    run in a namespace where the problem's ``prompt`` (trusted: helpers some checks use)
    was executed and ``entry_point`` calls the candidate's function in another process."""
    return TestCase(json.dumps({"prompt": prompt, "test": test_code}), "", "assertion")
