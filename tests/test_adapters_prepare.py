"""`prepare`'s checks on any adapter's rows: split names, empty train or val, how many
missing videos `skip` may drop, small test galleries; and `supportset prepare --help`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from supportset.cli import main
from supportset.data.adapters import ADAPTERS
from supportset.data.manifest import ManifestError, read_videos
from supportset.data.prepare import DEFAULT_MAX_MISSING, GALLERY_K, prepare


def manifest_dataset(
    root: Path, counts: dict[str, int], absent: dict[str, int] | None = None
) -> Path:
    """videos.csv and captions.csv with `counts` videos per split (one caption each), and
    a file for each but the first `absent[split]` videos of a split."""
    absent = absent or {}
    videos, captions = ["video_id,file,split"], ["caption_id,video_id,text"]
    (root / "clips").mkdir(parents=True)
    for split, count in counts.items():
        for index in range(count):
            video_id = f"{split}{index}"
            videos.append(f"{video_id},clips/{video_id}.mp4,{split}")
            captions.append(f"c_{video_id},{video_id},a clip of {split}")
            if index >= absent.get(split, 0):
                (root / "clips" / f"{video_id}.mp4").touch()
    (root / "videos.csv").write_text("\n".join(videos) + "\n")
    (root / "captions.csv").write_text("\n".join(captions) + "\n")
    return root


def test_the_largest_k_is_the_metrics_largest() -> None:
    from supportset.retrieval.metrics import DEFAULT_KS

    assert max(DEFAULT_KS) == GALLERY_K


def test_splits_other_than_train_val_test_are_named_before_any_work(tmp_path: Path) -> None:
    annotations = {
        "videos": [{"video_id": f"v{i}", "file": f"v{i}.mp4", "split": split}
                   for i, split in enumerate(["train", "val", "testing", "test", "Train"])],
        "captions": [{"caption_id": "c0", "video_id": "v0", "text": "a dog"}],
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    with pytest.raises(
        ManifestError,
        match=r"2 video\(s\) have a split other than train, val, test: v2 \('testing'\), "
        r"v4 \('Train'\)",
    ):
        prepare("demo", tmp_path, tmp_path / "out")


@pytest.mark.parametrize("empty", ["train", "val"])
def test_a_manifest_without_train_or_val_is_refused(tmp_path: Path, empty: str) -> None:
    counts = {"train": 8, "val": 2, "test": 60, empty: 0}
    root = manifest_dataset(tmp_path / "data", counts)
    with pytest.raises(ManifestError, match=f"no {empty} videos .* hold out some training"):
        prepare("manifest", root, tmp_path / "out")
    assert not (tmp_path / "out" / "videos.parquet").exists()


@pytest.mark.parametrize(("test", "warned"), [(GALLERY_K, True), (GALLERY_K + 1, False)])
def test_a_test_gallery_no_larger_than_k_is_a_warning(
    tmp_path: Path, caplog, test: int, warned: bool
) -> None:
    root = manifest_dataset(tmp_path / "data", {"train": 8, "val": 2, "test": test})
    with caplog.at_level(logging.WARNING):
        assert prepare("manifest", root, tmp_path / "out") == (10 + test, 10 + test)
    message = f"the test gallery has {test} videos, not more than K = 50: R@50 is 100%"
    assert (message in caplog.text) is warned


def test_skip_drops_at_most_max_missing_of_each_split(tmp_path: Path) -> None:
    """10 train, 5 val, 60 test videos; 1 train (10%), 2 val (40%) and 6 test (10%) gone."""
    root = manifest_dataset(
        tmp_path / "data", {"train": 10, "val": 5, "test": 60}, {"train": 1, "val": 2, "test": 6}
    )
    out = tmp_path / "out"
    with pytest.raises(
        ManifestError,
        match=rf"2 of the 5 val videos are missing on disk \(40%, more than max_missing 20%.*"
        rf"listed in {out / 'missing_videos.csv'}",
    ):
        prepare("manifest", root, out, missing_videos="skip")
    assert len((out / "missing_videos.csv").read_text().splitlines()) == 1 + 9
    assert not (out / "videos.parquet").exists()
    assert prepare("manifest", root, out, missing_videos="skip", max_missing=0.4) == (66, 66)


def test_skip_never_empties_a_split(tmp_path: Path) -> None:
    root = manifest_dataset(tmp_path / "data", {"train": 10, "val": 1, "test": 60}, {"val": 1})
    with pytest.raises(ManifestError, match=r"1 of the 1 val videos are missing .*or all of them"):
        prepare("manifest", root, tmp_path / "out", missing_videos="skip", max_missing=1.0)


def test_max_missing_is_a_fraction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_missing must be a fraction from 0 to 1, got 20"):
        prepare("manifest", tmp_path, tmp_path / "out", max_missing=20)


def test_prepare_help_lists_every_adapter_its_splits_and_max_missing(capsys) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["prepare", "--help"])
    assert exit_status.value.code == 0
    text = capsys.readouterr().out
    for name, adapter in ADAPTERS.items():
        assert f"  {name:<12} {', '.join(adapter.splits)}\n" in text
    assert "--max-missing FRACTION" in text and f"default: {DEFAULT_MAX_MISSING}" in text


def test_the_command_passes_max_missing_on(tmp_path: Path, capsys) -> None:
    root = manifest_dataset(tmp_path / "data", {"train": 10, "val": 5, "test": 60}, {"val": 2})
    command = ["prepare", "--adapter", "manifest", "--root", str(root),
               "--out-dir", str(tmp_path / "out"), "--missing-videos", "skip"]  # fmt: skip
    assert main(command) == 1
    assert "2 of the 5 val videos are missing" in capsys.readouterr().err
    assert main([*command, "--max-missing", "0.4"]) == 0
    assert len(read_videos(tmp_path / "out" / "videos.parquet")) == 73


def test_a_video_without_captions_is_refused_for_any_adapter(tmp_path: Path) -> None:
    """A val or test video without a caption could never be found: evaluation would stop."""
    splits = ["train", "val", "test", "test"]
    annotations = {
        "videos": [{"video_id": f"v{i}", "file": f"v{i}.mp4", "split": split}
                   for i, split in enumerate(splits)],
        "captions": [{"caption_id": f"c{i}", "video_id": f"v{i}", "text": "a dog"}
                     for i in range(3)],
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(annotations))
    for index in range(4):
        (tmp_path / f"v{index}.mp4").touch()
    with pytest.raises(ManifestError, match=r"1 video\(s\) have no caption .*: v3$"):
        prepare("demo", tmp_path, tmp_path / "out")
