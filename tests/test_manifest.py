import os
import stat

import pytest

from supportset.data.manifest import ManifestError, read_captions, read_videos, safe_video_path
from supportset.data.prepare import prepare
from supportset.io import atomic_path


def write_csvs(root, videos, captions):
    """The two CSVs, and an (empty) file for every video that stays inside `root`."""
    (root / "videos.csv").write_text("video_id,file,split\n" + "".join(f"{r}\n" for r in videos))
    for row in videos:
        file = row.split(",")[1]
        if not file.startswith(("/", "..")):
            (root / file).parent.mkdir(parents=True, exist_ok=True)
            (root / file).touch()
    (root / "captions.csv").write_text(
        "caption_id,video_id,text\n" + "".join(f"{r}\n" for r in captions)
    )


VIDEOS = ["v1,clips/v1.mp4,train", "v2,v2.mp4,test", "v3,v3.mp4,val"]
CAPTIONS = ["c1,v1,a dog", "c2,v2,a cat", '"c3",v3,"a dog, running"']


def test_manifest_adapter_writes_both_tables(tmp_path):
    write_csvs(tmp_path, VIDEOS, [*CAPTIONS, "c4,v1,"])
    assert prepare("manifest", tmp_path, tmp_path / "out") == (3, 4)
    videos = read_videos(tmp_path / "out" / "videos.parquet")
    assert videos[0] == {"video_id": "v1", "path": str(tmp_path / "clips/v1.mp4"), "split": "train"}
    captions = read_captions(tmp_path / "out" / "captions.parquet")
    assert [c["split"] for c in captions] == ["train", "test", "val", "train"]
    assert [c["text"] for c in captions] == ["a dog", "a cat", "a dog, running", ""]


@pytest.mark.parametrize(
    ("videos", "captions", "message"),
    [
        (["v1,clips/v1.mp4,train", "v2,v2.mp4", "v3,v3.mp4,val"], CAPTIONS,
         r"videos\.csv: line 3 has 2 fields where the header has 3 \(video_id, file, split\)$"),
        (VIDEOS, ["c1,v1,a dog", "c2,v2,a cat, sitting", "c3,v3,x"],
         r"captions\.csv: line 3 has 4 fields where the header has 3 .*quote a field that "
         r"holds a comma"),
        (["v1,v1.mp4,tset", *VIDEOS[1:]], CAPTIONS,
         r"videos\.csv: line 2: split 'tset' is not one of train, val, test"),
        ([*VIDEOS[:2], "v3,v3.mp4,"], CAPTIONS,
         r"videos\.csv: line 4: split '' is not one of train, val, test"),
        ([*VIDEOS, ",v4.mp4,test"], CAPTIONS, r"videos\.csv: line 5: empty video_id"),
        ([*VIDEOS, "v4,,test"], CAPTIONS, r"videos\.csv: line 5: empty file"),
        (VIDEOS, [*CAPTIONS, ",v1,x"], r"captions\.csv: line 5: empty caption_id"),
        ([*VIDEOS, "v4,v4.mp4,train", "v5,v5.mp4,test"], CAPTIONS,
         r"videos\.csv: 2 video\(s\) without a caption in captions\.csv: line 5 \(v4\), "
         r"line 6 \(v5\)"),
        (VIDEOS, ["c1,v1,a dog", "c2,v2,a c\0at", "c3,v3,x"],
         r"captions\.csv: line 3 holds a NUL byte"),
        (VIDEOS, [*CAPTIONS, "c9,v9,x"], r"captions\.csv: line 5: video 'v9' is not in videos"),
    ],
)  # fmt: skip
def test_bad_rows_are_named_by_file_and_line(tmp_path, videos, captions, message):
    write_csvs(tmp_path, videos, captions)
    with pytest.raises(ManifestError, match=message):
        prepare("manifest", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "videos.parquet").exists()


def test_a_row_spanning_lines_is_named_by_its_first_line(tmp_path):
    write_csvs(tmp_path, VIDEOS, ['c1,v1,"a dog', 'on two lines"', "c2,v2,x,y"])
    with pytest.raises(ManifestError, match=r"captions\.csv: line 4 has 4 fields"):
        prepare("manifest", tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("videos", "captions", "message"),
    [
        (["v1,a.mp4,train", "v1,b.mp4,train"], ["c1,v1,x"], "duplicate video_id: v1"),
        (["v1,a.mp4,train"], ["c1,v1,x", "c1,v1,y"], "duplicate caption_id: c1"),
        (["v1,../outside.mp4,train"], ["c1,v1,x"], "escapes the dataset folder"),
        (["v1,/etc/passwd,train"], ["c1,v1,x"], "escapes the dataset folder"),
    ],
)
def test_bad_annotations_are_clear_errors(tmp_path, videos, captions, message):
    write_csvs(tmp_path, videos, captions)
    with pytest.raises(ManifestError, match=message):
        prepare("manifest", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "videos.parquet").exists()


def test_symlinked_folders_inside_the_dataset_are_allowed(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "videos")
    assert safe_video_path(tmp_path / "data", "videos/a.mp4") == tmp_path / "data/videos/a.mp4"


def test_empty_root_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"datasets\.<name>\.root"):
        prepare("manifest", "", tmp_path)


def test_atomic_outputs_are_readable_by_others(tmp_path):
    with atomic_path(tmp_path / "table.csv") as temporary:
        temporary.write_text("x\n")
    mode = stat.S_IMODE((tmp_path / "table.csv").stat().st_mode)
    assert mode & stat.S_IROTH


def test_non_utf8_annotations_name_the_line(tmp_path):
    (tmp_path / "videos.csv").write_text("video_id,file,split\nv1,v1.mp4,train\n")
    (tmp_path / "captions.csv").write_bytes(
        b"caption_id,video_id,text\nc1,v1,a dog\nc2,v1,un caf\xe9 latin-1\n"
    )
    with pytest.raises(ManifestError, match=r"not UTF-8 text: byte b'\\xe9' on line 3"):
        prepare("manifest", tmp_path, tmp_path / "out")
