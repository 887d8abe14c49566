"""Which stages a params change reruns, read from the DVC pipeline itself (dvc.yaml, resolved by DVC's own API).

``params_reruns`` lists every params key a stage declares (``params:`` of dvc.yaml, per data set for the foreach
stages) with the stages that read it and the stages downstream of them (whose inputs those stages write), i.e.
what ``dvc repro`` reruns after that key changes. ``params_markdown`` renders it as the README's table, between
``START`` and ``END``; ``python -m recsys.reporting.stages`` rewrites that block (``recsys.reporting.readme``)
and ``tests/test_reporting.py`` checks the README against dvc.yaml.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys import config
from recsys.reporting.readme import replace_block

START = "<!-- params-stages:start (generated from dvc.yaml by python -m recsys.reporting.stages) -->"
END = "<!-- params-stages:end -->"


@dataclass(frozen=True)
class ParamsRerun:
    """One params key, the stages that declare it and the stages downstream of them."""

    file: str
    key: str
    stages: tuple[str, ...]
    downstream: tuple[str, ...]


def downstream_of(graph: Any, node: Any) -> set[Any]:
    """Every stage that depends, directly or not, on `node` (DVC's graph points from a stage to what it needs)."""
    seen: set[Any] = set()
    todo = [node]
    while todo:
        for parent in graph.predecessors(todo.pop()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def params_reruns(root: Path | None = None) -> list[ParamsRerun]:
    """Every (params file, key) a stage of the pipeline at `root` declares, with what a change of it reruns."""
    from dvc.repo import Repo

    with Repo(str(root or config.PROJ_ROOT)) as repo:
        index = repo.index
        readers: dict[tuple[str, str], list[Any]] = {}
        for stage in index.stages:
            for dep in stage.params:
                file = Path(dep.def_path).as_posix()
                for key in dep.params:
                    readers.setdefault((file, str(key)), []).append(stage)
        rows = []
        for (file, key), stages in sorted(readers.items()):
            names = sorted(str(s.addressing) for s in stages)
            after = {str(a.addressing) for s in stages for a in downstream_of(index.graph, s)} - set(names)
            rows.append(ParamsRerun(file, key, tuple(names), tuple(sorted(after))))
    return rows


def params_markdown(rows: list[ParamsRerun]) -> str:
    """The table: params key, the stages that read it, the stages downstream of them."""
    lines = [
        "| params key | stages that read it | then reruns downstream |",
        "| --- | --- | --- |",
    ]
    for r in rows:
        downstream = ", ".join(f"`{s}`" for s in r.downstream) or "—"
        lines.append(f"| `{r.file}: {r.key}` | {', '.join(f'`{s}`' for s in r.stages)} | {downstream} |")
    return "\n".join(lines)


def main() -> int:
    """Rewrite the README's params table from dvc.yaml."""
    readme = config.PROJ_ROOT / "README.md"
    if not replace_block(readme, START, END, params_markdown(params_reruns())):
        print(f"{readme}: markers {START!r} … {END!r} not found", file=sys.stderr)
        return 1
    print(f"rewrote the params table of {config.relative(readme)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
