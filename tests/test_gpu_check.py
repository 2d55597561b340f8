"""benchmarks/gpu_check.py, run as a user runs it, at its small size on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
THROUGHPUTS = {
    "visual_extraction": "frames_per_s",
    "text_embedding": "captions_per_s",
    "training_step": "pairs_per_s",
    "exact_ranking": "queries_per_s",
    "faiss_index": "searches_per_s",
}


def run_check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def small_cpu_result() -> dict:
    completed = run_check("--device", "cpu", "--size", "small")
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_every_section_reports_a_positive_throughput(small_cpu_result):
    for section, throughput in THROUGHPUTS.items():
        assert small_cpu_result[section][throughput] > 0, section
    assert small_cpu_result["device"] == "cpu"
    assert small_cpu_result["size"] == "small"
    assert small_cpu_result["torch"] == torch.__version__
    assert small_cpu_result["machine"] and small_cpu_result["device_name"]


def test_ranking_runs_the_torch_path_and_training_has_no_cuda_peak_on_cpu(small_cpu_result):
    assert small_cpu_result["exact_ranking"]["search_device"] == "cpu:0"
    training = small_cpu_result["training_step"]
    assert (training["text_encoder"], training["captioning"]) == ("finetune", "cross")
    assert training["caption_memory"] == "features"
    assert training["peak_cuda_memory_mb"] is None


def test_faiss_section_says_which_index_ran_and_why(small_cpu_result):
    faiss = small_cpu_result["faiss_index"]
    assert faiss["ran_on"] == "cpu"
    assert isinstance(faiss["faiss_gpu_support"], bool)
    assert faiss["why"] == "--device cpu: the CPU index"
    assert not faiss["index_class"].startswith("Gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_exits_with_a_message():
    completed = run_check("--device", "cuda", "--size", "small")
    assert completed.returncode != 0
    assert "--device cuda: CUDA is not available" in completed.stderr
    assert completed.stdout == ""
