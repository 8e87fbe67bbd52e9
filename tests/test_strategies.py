"""Strategies are data: a strategy's rows (thinktune.data.codegen.select_rows) and the dvc.yaml block
each strategy needs (stages.check_params), checked on constructed rows and files."""

from __future__ import annotations

import yaml

from stages.check_params import untrained_strategies
from thinktune.data.codegen import select_rows


def rows(layout: list[tuple[str, int]]) -> list[dict]:
    """Rows in file order: (problem id, solution index)."""
    return [{"id": problem, "input": f"statement {problem}", "output": f"{problem}/{k}", "solution": "pass"}
            for problem, k in layout]


# Three problems, interleaved in the file as a real dump may be: a has 3 rows, b 2, c 1.
FILE = rows([("a", 0), ("b", 0), ("a", 1), ("c", 0), ("a", 2), ("b", 1)])


def outputs(kept: list[dict]) -> list[str]:
    return [r["output"] for r in kept]


def test_no_filter_keeps_every_row_in_file_order():
    assert outputs(select_rows(FILE)) == ["a/0", "b/0", "a/1", "c/0", "a/2", "b/1"]


def test_first_problems_in_order_of_first_appearance():
    assert outputs(select_rows(FILE, problems=2)) == ["a/0", "b/0", "a/1", "a/2", "b/1"]
    assert outputs(select_rows(FILE, problems=1)) == ["a/0", "a/1", "a/2"]


def test_solutions_per_problem_keeps_the_first_rows_of_each():
    assert outputs(select_rows(FILE, solutions_per_problem=1)) == ["a/0", "b/0", "c/0"]
    assert outputs(select_rows(FILE, problems=2, solutions_per_problem=2)) == ["a/0", "b/0", "a/1", "b/1"]


def test_problems_without_an_id_are_told_apart_by_their_statement():
    anonymous = [{k: v for k, v in r.items() if k != "id"} for r in FILE]
    assert outputs(select_rows(anonymous, problems=1)) == ["a/0", "a/1", "a/2"]


def test_a_strategy_without_its_training_stage_is_named(tmp_path):
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(yaml.safe_dump({"stages": {"train_deep": {}, "train_diverse": {}}}))
    assert untrained_strategies(["deep", "diverse"], dvc_yaml) == []
    [line] = untrained_strategies(["deep", "diverse", "mixed"], dvc_yaml)
    assert line.startswith("strategies.mixed: dvc.yaml has no stage train_mixed; copy the train_deep block")
    assert untrained_strategies(["mixed"], tmp_path / "absent.yaml") == []  # params checked outside a pipeline
    # ... and a training block left behind when a strategy leaves params.yaml
    [line] = untrained_strategies(["deep"], dvc_yaml)
    assert line == ("strategies: dvc.yaml trains 'diverse' (stage train_diverse) but strategies does not list it; "
                    "list it, or remove the train_diverse block from dvc.yaml")
