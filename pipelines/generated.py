"""Everything generated from the shared schema, in one place: `sdmi schema generate` writes it, a test
fails when the committed copies drift."""

from __future__ import annotations

from pathlib import Path

from pipelines import validate


def artefacts() -> dict[Path, str]:
    from pipelines import dictionary

    return {validate.SUITE_PATH: validate.suite_json(), **dictionary.generated_artefacts()}
