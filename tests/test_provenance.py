import subprocess
from pathlib import Path

import pytest

from supportset import __version__
from supportset.provenance import code_version, files_sha256, provenance, settings_sha256

REPO = Path(__file__).resolve().parents[1]


def test_settings_hash_ignores_key_order_but_not_values():
    first = settings_sha256({"model": {"dim": 32, "heads": 4}, "training": {"lr": 1e-4}})
    same = settings_sha256({"training": {"lr": 1e-4}, "model": {"heads": 4, "dim": 32}})
    other = settings_sha256({"model": {"dim": 33, "heads": 4}, "training": {"lr": 1e-4}})
    assert first == same != other and len(first) == 64


def test_manifest_hash_reads_the_files_in_order(tmp_path):
    videos, captions = tmp_path / "videos.parquet", tmp_path / "captions.parquet"
    videos.write_bytes(b"v" * 3_000_000)  # more than one read chunk
    captions.write_bytes(b"c")
    forward = files_sha256([videos, captions])
    assert forward != files_sha256([captions, videos])
    captions.write_bytes(b"d")
    assert files_sha256([videos, captions]) != forward


def test_code_version_names_the_checkout_s_commit():
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout (a release install has no commit to record)")
    assert code_version().startswith(f"{__version__}+g{head.stdout.strip()[:12]}")


def test_provenance_block_holds_settings_and_hashes(tmp_path):
    manifest = tmp_path / "videos.parquet"
    manifest.write_bytes(b"rows")
    block = provenance({"model": {"dim": 8}}, [manifest])
    assert block["settings"] == {"model": {"dim": 8}}
    assert block["config_sha256"] == settings_sha256({"model": {"dim": 8}})
    assert block["manifest_sha256"] == files_sha256([manifest])
    assert block["manifests"] == [str(manifest)]
