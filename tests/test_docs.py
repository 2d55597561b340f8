"""What the repository tells its users holds: links lead somewhere inside it, errors point
at README sections that exist, and docs/data-contracts.md names every column the code
writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from supportset.data.manifest import CAPTIONS_SCHEMA, VIDEOS_SCHEMA
from supportset.features.store import text_schema, visual_schema
from supportset.model.checkpoint import CHECKPOINT_KEYS
from supportset.retrieval.embeddings import CAPTION_COLUMNS, VIDEO_COLUMNS
from supportset.retrieval.table import RUNS_COLUMNS_PREFIX, TABLE_COLUMNS, std_columns
from supportset.train.loop import LOG_COLUMNS
from tests.workflow_runs import REPO

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CONTRACTS = REPO / "docs/data-contracts.md"


def sections(path: Path) -> dict[str, str]:
    """Heading -> text under it, for every heading of a Markdown file."""
    parts = re.split(r"^#+ (.+)$", path.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_links_lead_to_files_of_the_repository(document: Path):
    text = document.read_text()
    assert "../shared" not in text and "DESIGN.md" not in text
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (document.parent / target).exists(), f"{document.name} links {target}"


def test_readme_sections_that_messages_name_exist():
    headings = list(sections(REPO / "README.md"))
    sources = [*(REPO / "src").rglob("*.py"), *(REPO / "workflow").rglob("*.smk")]
    sources += [REPO / "config.yaml", REPO / "workflow/schemas/config.schema.yaml"]
    named = {
        name
        for path in sources
        for name in re.findall(r"README, ['\"]([^'\"]+)['\"]", path.read_text())
    }
    assert named, "no message names a README section"
    for name in named:
        assert any(heading.startswith(name) for heading in headings), name


@pytest.mark.parametrize(
    ("section", "columns"),
    [
        ("Manifest", VIDEOS_SCHEMA.names + CAPTIONS_SCHEMA.names),
        ("Visual shards", ("video_id", *(c.name for c in visual_schema(8, "float16").sequences))),
        ("Text shards", text_schema(8, "float16").ids
         + tuple(c.name for c in text_schema(8, "float16").sequences)
         + text_schema(8, "float16").scalars),
        ("Training", CHECKPOINT_KEYS + LOG_COLUMNS),
        ("Embeddings", VIDEO_COLUMNS + CAPTION_COLUMNS),
        ("Tables", TABLE_COLUMNS + std_columns(10) + RUNS_COLUMNS_PREFIX),
    ],
)  # fmt: skip
def test_data_contracts_name_every_column_the_code_writes(section: str, columns: tuple):
    (text,) = [body for heading, body in sections(CONTRACTS).items() if heading.startswith(section)]
    missing = [column for column in columns if column not in text]
    assert not missing, f"docs/data-contracts.md, {section}, lacks {missing}"
