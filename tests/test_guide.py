"""docs/your-own-videos.md, followed word for word: a folder of videos with the two CSV
files it describes, its shell command run in a copy of the repository, the table it
promises at the end."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from supportset.data.demo import make_demo_corpus
from tests.workflow_runs import REPO

pytestmark = pytest.mark.e2e
GUIDE = REPO / "docs/your-own-videos.md"


def blocks(language: str) -> list[str]:
    """The guide's fenced code blocks of `language`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```$", GUIDE.read_text(), re.M | re.S)


def repository_copy(root: Path) -> Path:
    """What a clone holds that the run reads, and the clone's .venv."""
    root.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("workflow", "profiles", "envs", "docs"):
        shutil.copytree(REPO / name, root / name)
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent)
    return root


def my_videos(root: Path, corpus: Path) -> None:
    """The guide's layout, with the headers of its example CSV files: videos in
    my_videos/videos/, one row per video and per caption."""
    annotations = json.loads((corpus / "annotations.json").read_text())
    video_header, caption_header = (block.splitlines()[0] for block in blocks("csv"))
    assert (video_header, caption_header) == ("video_id,file,split", "caption_id,video_id,text")
    shutil.copytree(corpus / "videos", root / "my_videos/videos")
    with open(root / "my_videos/videos.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(video_header.split(","))
        writer.writerows([v["video_id"], v["file"], v["split"]] for v in annotations["videos"])
    with open(root / "my_videos/captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(caption_header.split(","))
        writer.writerows(
            [c["caption_id"], c["video_id"], c["text"]] for c in annotations["captions"]
        )


def test_the_guide_takes_a_folder_of_videos_to_a_table(tmp_path: Path):
    root = repository_copy(tmp_path / "clone")
    make_demo_corpus(tmp_path / "corpus", num_videos=20, seed=5, min_seconds=3.0, max_seconds=4.0)
    my_videos(root, tmp_path / "corpus")
    (command,) = blocks("sh")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=root, capture_output=True, text=True,
        env={**os.environ, "PATH": os.environ["PATH"]}, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(root / "results/my_videos_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["row"] for row in rows] == [
        "Support-set, cross-captioning (my videos)",
        "Triplet only (my videos)",
    ]
    assert all(row["source"] == "this run" and float(row["T2V_MdR"]) >= 1 for row in rows)
    for pattern in promised_files():
        assert list(root.glob(pattern)), pattern


def promised_files() -> list[str]:
    """Glob patterns of the files in the first column of the guide's results table: a
    `.suffix` is the first file's with that suffix, a bare name lies in its folder."""
    patterns = []
    for cell in re.findall(r"^\| (`results/[^|]+)\|", GUIDE.read_text(), re.M):
        names = re.findall(r"`([^`]+)`", cell)
        first = Path(names[0])
        for name in names:
            if name.startswith("results/"):
                patterns.append(name.rstrip("/"))
            elif name.startswith("."):
                patterns.append(str(first.with_suffix(name)))
            else:
                patterns.append(str(first.parent / name))
    return patterns
