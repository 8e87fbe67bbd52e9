"""LiveCodeBench ``code_generation_lite`` problems: decoding, filtering, loading.

Rows carry ``public_test_cases`` as JSON and ``private_test_cases`` either as JSON or as
base64 -> zlib -> pickle -> JSON string. Pickle can run arbitrary code, so the unpickler
here accepts only a plain ``str`` payload and refuses everything else.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from thinktune.atomic import read_jsonl
from thinktune.benchmarks.base import Benchmark, Problem, PromptStyle
from thinktune.errors import InputError, SourceError
from thinktune.logs import get_logger

if TYPE_CHECKING:
    from thinktune.config.params import EvalParams

__all__ = ["LIVECODEBENCH", "LiveCodeBench", "Problem", "UnsafePickleError", "decode_private_tests",
           "download_release", "load_rows", "problem_from_row", "release_files", "select_problems"]

log = get_logger("livecodebench")

# release_vN of code_generation_lite is test.jsonl plus test2.jsonl ... testN.jsonl.
RELEASE_FILES = {f"release_v{n}": ["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)] for n in range(1, 7)}


class UnsafePickleError(ValueError):
    """A private-test payload held something other than a plain string."""


class _StringOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # pickle hook
        raise UnsafePickleError(
            f"private_test_cases pickle refers to {module}.{name}; only a plain string is accepted"
        )


def decode_private_tests(value: str) -> list[dict]:
    """Private tests as a list of {input, output, testtype}, from either encoding."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(value.encode("ascii"), validate=True))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"private_test_cases is neither JSON nor base64+zlib ({exc})") from None
    payload = _StringOnlyUnpickler(io.BytesIO(raw)).load()
    if not isinstance(payload, str):
        raise UnsafePickleError(f"private_test_cases pickle holds a {type(payload).__name__}, not a string")
    return json.loads(payload)


_REQUIRED = ("question_id", "question_title", "question_content", "platform", "contest_date",
             "difficulty", "public_test_cases", "private_test_cases")


def problem_from_row(row: dict) -> Problem:
    """Parse one raw LiveCodeBench row; a bad row raises naming its id and field."""
    qid = row.get("question_id", "<no question_id>")
    for name in _REQUIRED:
        if name not in row:
            raise ValueError(f"LiveCodeBench row {qid}: missing field `{name}`")
    metadata = row.get("metadata") or "{}"
    metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    try:
        datetime.fromisoformat(row["contest_date"])
    except ValueError:
        raise ValueError(f"LiveCodeBench row {qid}: contest_date {row['contest_date']!r} is not ISO") from None
    return Problem(
        question_id=str(row["question_id"]),
        question_title=row["question_title"],
        question_content=row["question_content"],
        platform=row["platform"],
        contest_id=str(row.get("contest_id", "")),
        contest_date=row["contest_date"],
        difficulty=row["difficulty"],
        starter_code=row.get("starter_code") or "",
        func_name=metadata.get("func_name"),
        public_tests=json.loads(row["public_test_cases"]),
        private_tests=decode_private_tests(row["private_test_cases"]),
    )


def select_problems(
    problems: list[Problem],
    platforms: list[str],
    difficulties: list[str],
    date_from: date | None = None,
    date_to: date | None = None,
    max_problems: int | None = None,
) -> list[Problem]:
    """Filter by platforms, difficulty and contest date (inclusive); stable order by date, id."""
    def keep(p: Problem) -> bool:
        day = datetime.fromisoformat(p.contest_date).date()
        return (
            p.platform in platforms
            and p.difficulty in difficulties
            and (date_from is None or day >= date_from)
            and (date_to is None or day <= date_to)
        )

    chosen = sorted(filter(keep, problems), key=lambda p: (p.contest_date, p.question_id))
    return chosen[:max_problems] if max_problems else chosen


def load_rows(files: list[Path]) -> list[Problem]:
    """Problems from LiveCodeBench JSONL files; a question id seen twice is kept once."""
    seen: dict[str, Problem] = {}
    for path in files:
        for row in read_jsonl(path):
            problem = problem_from_row(row)
            seen.setdefault(problem.question_id, problem)
    return list(seen.values())


def release_files(directory: Path, release: str) -> list[Path]:
    if release not in RELEASE_FILES:
        raise InputError(f"eval.lcb_release {release!r} unknown; choose from {sorted(RELEASE_FILES)}")
    files = [directory / name for name in RELEASE_FILES[release]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SourceError(f"eval.local_dir: {directory} lacks {missing} of LiveCodeBench {release}; copy them there "
                          "from the hub's livecodebench/code_generation_lite")
    return files


def download_release(repo_id: str, release: str) -> list[Path]:
    """The release's JSONL files from the hub (cached by huggingface_hub)."""
    from huggingface_hub import hf_hub_download

    if release not in RELEASE_FILES:
        raise InputError(f"eval.lcb_release {release!r} unknown; choose from {sorted(RELEASE_FILES)}")
    return [Path(hf_hub_download(repo_id=repo_id, filename=name, repo_type="dataset"))
            for name in RELEASE_FILES[release]]


# The two ways of asking a problem (eval.prompt_style), see LiveCodeBench.user_prompt.
STDIN_FORMAT = (
    "### Format: Read the inputs from stdin, solve the problem and write the answer to stdout "
    "(do not directly test on the sample inputs). Enclose your code within delimiters as follows. "
    "Ensure that when the python program runs, it reads the inputs, runs the algorithm and "
    "writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```"
)
FUNCTIONAL_FORMAT = (
    "### Format: You will use the following starter code to write the solution to the problem "
    "and enclose your code within delimiters.\n```python\n{starter_code}\n```"
)
STUDY_STDIN = ("Write a Python program that reads the input from standard input and prints the answer "
               "to standard output.")
STUDY_FUNCTIONAL = "Complete this starter code and give the whole solution:\n```python\n{starter_code}\n```"


class LiveCodeBench(Benchmark):
    """LiveCodeBench code generation: stdin (AtCoder, Codeforces) and functional (LeetCode) problems.

    Prompt styles:

    - ``study`` (default): the problem statement as the user turn, as in training, then one
      sentence on the input/output convention (stdin/stdout, or the starter code to complete).
      The fine-tuned models are asked in the form they were trained on.
    - ``livecodebench``: LiveCodeBench's own template (``### Question:``, ``### Format:`` with
      a ``# YOUR CODE HERE`` code block, ``### Answer:``), for comparison with published numbers.
      Measured on the default's 0.5B model: it answers that template by repeating the empty
      ``# YOUR CODE HERE`` block (0/12 on the sample), hence not the default.

    The program graded is the answer's code as it stands.
    """

    name = "livecodebench"

    def load_problems(self, params: EvalParams) -> list[Problem]:
        """The release (hub, a local folder, or the sample file), filtered by platform, difficulty, date."""
        if params.source == "hub":
            files = download_release(params.lcb_repo, params.lcb_release)
        elif params.source == "local":
            files = release_files(Path(params.local_dir or ""), params.lcb_release)
        else:
            files = [Path(params.sample_file)]
        problems = load_rows(files)
        chosen = select_problems(problems, params.platforms, params.difficulties,
                                 params.date_from, params.date_to, params.max_problems)
        if not chosen:
            raise InputError(
                f"no problem of {len(problems)} matches eval.platforms={params.platforms}, "
                f"eval.difficulties={params.difficulties}, dates {params.date_from}..{params.date_to}; "
                "widen the filters"
            )
        by_platform = {name: sum(p.platform == name for p in chosen) for name in params.platforms}
        log.info("selected %d of %d LiveCodeBench problems (%s)", len(chosen), len(problems),
                 ", ".join(f"{name} {n}" for name, n in by_platform.items()))
        return chosen

    def user_prompt(self, problem: Problem, style: PromptStyle) -> str:
        if style == "study":
            fmt = (STUDY_FUNCTIONAL.format(starter_code=problem.starter_code.rstrip()) if problem.is_functional
                   else STUDY_STDIN)
            return f"{problem.question_content.strip()}\n\n{fmt}"
        fmt = FUNCTIONAL_FORMAT.format(starter_code=problem.starter_code) if problem.is_functional else STDIN_FORMAT
        return (
            f"### Question:\n{problem.question_content.strip()}\n\n{fmt}\n\n"
            "### Answer: (use the provided format with backticks)\n\n"
        )


LIVECODEBENCH = LiveCodeBench()
