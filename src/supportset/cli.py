"""`supportset`: one subcommand per pipeline stage (each Snakemake rule calls one).

Stage settings arrive as JSON objects (`--settings`), built by the workflow from the
validated config; errors end the command with a one-line message and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

log = logging.getLogger("supportset")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `supportset` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.handler(args) or 0
    except BrokenPipeError:  # the reader left (`supportset frames x.mp4 | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except Exception as error:  # the one place errors become an exit status
        if args.verbose:
            raise
        print(f"supportset {args.command}: error: {error}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="supportset", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, configure, handler in COMMANDS:
        sub = commands.add_parser(name, help=handler.__doc__)
        configure(sub)
        sub.set_defaults(handler=handler)
    return parser


def _corpus_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["demo"], help="which corpus to generate")
    p.add_argument("--out", required=True, help="folder for videos/ and annotations.json")
    p.add_argument("--num-videos", type=int, default=240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--max-seconds", type=float, default=12.0)


def corpus(args: argparse.Namespace) -> None:
    """Generate the synthetic demo corpus (videos + annotations)."""
    from pathlib import Path

    from supportset.data.demo import make_demo_corpus

    path = make_demo_corpus(
        Path(args.out), args.num_videos, args.seed, args.min_seconds, args.max_seconds
    )
    log.info("wrote %s", path)


def _prepare_args(p: argparse.ArgumentParser) -> None:
    from supportset.data.adapters import ADAPTERS
    from supportset.data.prepare import DEFAULT_MAX_MISSING, MISSING_POLICIES

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = "adapters and their split choices (the first is the default):\n" + "\n".join(
        f"  {name:<12} {', '.join(adapter.splits)}" for name, adapter in ADAPTERS.items()
    )
    p.add_argument(
        "--adapter",
        required=True,
        choices=list(ADAPTERS),
        metavar="ADAPTER",
        help="how the annotations are read (listed below)",
    )
    p.add_argument("--root", required=True, help="dataset folder")
    p.add_argument("--out-dir", required=True, help="folder for videos.parquet, captions.parquet")
    p.add_argument("--split", default="", help="the adapter's split choice (default: its first)")
    p.add_argument(
        "--missing-videos",
        choices=MISSING_POLICIES,
        default="fail",
        help="videos listed but not on disk: fail, or skip them (default: fail)",
    )
    p.add_argument(
        "--max-missing",
        type=float,
        default=DEFAULT_MAX_MISSING,
        metavar="FRACTION",
        help="with skip, the largest fraction of a split's listed videos that may be missing "
        f"(0-1, default: {DEFAULT_MAX_MISSING})",
    )


def prepare(args: argparse.Namespace) -> None:
    """Turn a dataset's annotations into the manifest tables."""
    from supportset.data.prepare import prepare as run

    videos, captions = run(
        args.adapter, args.root, args.out_dir, args.split, args.missing_videos, args.max_missing
    )
    log.info("manifest: %d videos, %d captions", videos, captions)


def _tiny_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--captions", required=True, help="captions.parquet manifest")
    p.add_argument("--settings", required=True, help="JSON of text.tiny")
    p.add_argument("--out", required=True, help="model folder")


def build_tiny_t5(args: argparse.Namespace) -> None:
    """Build the offline tiny T5 (tokenizer trained on the training captions)."""
    from supportset.features.text import TinyT5Settings
    from supportset.features.tiny_t5 import build_from_manifest
    from supportset.settings import from_json

    used = build_from_manifest(args.captions, from_json(TinyT5Settings, args.settings), args.out)
    log.info("tiny T5 tokenizer trained on %d captions", used)


def _extract_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="videos.parquet")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--settings", required=True, help="JSON of the features section")
    p.add_argument("--out", required=True, help="shard .parquet")
    p.add_argument("--rejects", required=True, help="rejects .parquet")
    p.add_argument("--workers", type=int, default=2, help="decode worker processes")


def extract_visual(args: argparse.Namespace) -> None:
    """Decode videos at the feature rate and cache appearance + motion features."""
    from supportset.features.visual import VisualSettings, extract_shard
    from supportset.settings import from_json

    settings = from_json(VisualSettings, args.settings)
    written, rejected = extract_shard(
        args.manifest, args.shard, settings, args.out, args.rejects, args.workers
    )
    log.info("shard %d: %d videos written, %d rejected", args.shard, written, rejected)


def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="captions.parquet")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--settings", required=True, help="JSON of the text section")
    p.add_argument("--model-dir", default=None, help="built model folder (text.model 'tiny')")
    p.add_argument("--out", required=True, help="shard .parquet or .h5")
    p.add_argument("--rejects", required=True, help="rejects .parquet (empty captions)")
    p.add_argument(
        "--token-ids-only",
        action="store_true",
        help="write the token ids alone, loading no encoder (a fine-tuned text encoder's set)",
    )


def embed_text(args: argparse.Namespace) -> None:
    """Tokenise captions and cache their T5 encoder states (or their token ids alone)."""
    from supportset.features.text import TextSettings, embed_shard
    from supportset.settings import from_json

    settings = from_json(TextSettings, args.settings)
    written, rejected = embed_shard(
        args.manifest,
        args.shard,
        settings,
        args.model_dir,
        args.out,
        args.rejects,
        args.token_ids_only,
    )
    log.info("shard %d: %d captions written, %d rejected", args.shard, written, rejected)


def _rejects_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="the dataset's videos.parquet manifest")
    p.add_argument("--rejects", nargs="+", required=True, help="rejects tables of its shards")
    p.add_argument("--out", required=True, help="report .csv (a .md is written beside it)")


def rejects_report(args: argparse.Namespace) -> None:
    """Report the visual stage's rejected videos: rate per split and count per reason."""
    from supportset.features.rejects import markdown, write_rejects_report

    print(markdown(write_rejects_report(args.videos, args.rejects, args.out)), end="")


def _features_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="videos.parquet manifest")
    p.add_argument("--captions", required=True, help="captions.parquet manifest")
    p.add_argument("--visual", nargs="+", required=True, help="visual shards")
    p.add_argument("--text", nargs="+", required=True, help="text shards")
    p.add_argument(
        "--cache-mb",
        type=int,
        default=1024,
        help="MB of decoded Parquet row groups each process keeps (features are read on "
        "demand); as much again for crop features when training reads them",
    )


def _train_args(p: argparse.ArgumentParser) -> None:
    _features_args(p)
    p.add_argument("--model-settings", required=True, help="JSON of the model section")
    p.add_argument("--training-settings", required=True, help="JSON of the training section")
    p.add_argument("--text-model", default=None, help="T5 name or folder: the caption decoder")
    p.add_argument("--out-model", required=True)
    p.add_argument("--out-log", required=True)
    p.add_argument(
        "--workers", type=int, default=2, help="processes reading batches (0: the main one)"
    )


def train(args: argparse.Namespace) -> None:
    """Train the pooling heads; keep the epoch `training.selection` names."""
    from supportset.data.manifest import read_videos
    from supportset.distributed import start_from_environment
    from supportset.features.bank import FeatureBank, text_features_record
    from supportset.features.store import read_metadata
    from supportset.model.retrieval_model import ModelConfig
    from supportset.provenance import provenance
    from supportset.settings import from_json
    from supportset.train.config import TrainConfig
    from supportset.train.loop import CheckpointRecords, TrainData, TrainOutputs
    from supportset.train.loop import train as run

    start_from_environment()
    config = from_json(TrainConfig, args.training_settings)
    bank = FeatureBank.load(args.visual, args.text, args.cache_mb)
    if config.reads_crops:  # K times the features' width: a cache of their own
        bank = bank.with_crops(args.cache_mb)
    has_val = any(video["split"] == "val" for video in read_videos(args.videos))
    validation = has_val and "val" not in config.train_splits
    data = TrainData(
        bank,
        bank.split(args.videos, args.captions, config.train_splits),
        bank.split(args.videos, args.captions, "val") if validation else None,
    )
    model_config = from_json(ModelConfig, args.model_settings)
    settings = {
        "model": asdict(model_config),
        "training": asdict(config),
        "text_model": args.text_model,
        "features": read_metadata(args.visual[0]).get("settings"),  # as the shards were made
        "text": read_metadata(args.text[0]).get("settings"),
    }
    records = CheckpointRecords(
        text_features_record(args.text), provenance(settings, [args.videos, args.captions])
    )
    kept = run(
        data,
        model_config,
        config,
        TrainOutputs(Path(args.out_model), Path(args.out_log)),
        args.text_model,
        [*args.visual, *args.text, args.videos, args.captions],
        args.workers,
        records,
    )
    log.info("kept epoch %d (%s): %s", kept["epoch"], config.selection, json.dumps(kept))


def _export_args(p: argparse.ArgumentParser) -> None:
    _features_args(p)
    p.add_argument("--model", required=True, help="model.pt")
    p.add_argument("--split", required=True)
    p.add_argument("--max-video-seconds", type=int, required=True)
    p.add_argument("--out-videos", required=True)
    p.add_argument("--out-captions", required=True)


def export(args: argparse.Namespace) -> None:
    """Write the video and caption embeddings of one split."""
    from supportset.features.bank import FeatureBank
    from supportset.retrieval.export import export_split

    bank = FeatureBank.load(args.visual, args.text, args.cache_mb)
    split = bank.split(args.videos, args.captions, args.split)
    export_split(
        args.model, bank, split, args.max_video_seconds, args.out_videos, args.out_captions
    )


def _index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="{split}_videos.parquet embeddings")
    p.add_argument("--settings", default="{}", help="JSON of the search section")
    p.add_argument("--out", required=True, help="index/{split}.faiss")


def index(args: argparse.Namespace) -> None:
    """Build the FAISS index of a split's video embeddings (row i = the file's i-th video)."""
    from supportset.retrieval.index import SearchConfig, index_videos
    from supportset.settings import from_json

    index_videos(args.videos, from_json(SearchConfig, args.settings), args.out)


def _search_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("texts", nargs="*", metavar="TEXT", help="free-text queries")
    p.add_argument(
        "--queries",
        metavar="FILE",
        help="more queries, one per line; '-' answers lines typed on stdin one by one, the "
        "model and index loaded once (with --json, one JSON list per line)",
    )
    p.add_argument("--experiment", required=True, help="results/{dataset}/{experiment}")
    p.add_argument("--split", default="test", help="the split searched (default: test)")
    p.add_argument("--top", type=int, default=5, help="videos per query (default: 5)")
    p.add_argument("--json", action="store_true", help="print a JSON list of hits")
    p.add_argument(
        "--model", default=None, help="model.pt (default: the experiment's; for model_from)"
    )
    p.add_argument(
        "--text-model", default=None, help="T5 folder or name (default: model.pt's record)"
    )
    p.add_argument(
        "--max-video-seconds",
        type=float,
        default=None,
        help="seconds of each video export embedded (default: model.pt's training setting)",
    )
    p.add_argument(
        "--settings",
        default=None,
        help="JSON of the search section to search with, e.g. '{\"hnsw_ef_search\": 512}' "
        "(default: those the index was built with; its kind unless named)",
    )
    p.add_argument(
        "--text-shards",
        nargs="+",
        default=(),
        metavar="SHARD",
        help="the text shards the model was trained on, e.g. results/demo/features/text/"
        "?????.parquet: how they were encoded replaces model.pt's record (for a model.pt "
        "written before it kept one)",
    )


def search(args: argparse.Namespace) -> None:
    """Free text in, a split's best videos out, each with its best-matching second."""
    from supportset.retrieval.query import Searcher, experiment_files, read_queries

    interactive = args.queries == "-"
    queries = [
        *args.texts,
        *(read_queries(args.queries) if args.queries and not interactive else []),
    ]
    if not (queries or interactive) or args.top < 1:
        raise ValueError("give at least one query (TEXT or --queries FILE) and --top >= 1")
    files = experiment_files(args.experiment, args.split, args.model)
    settings = json.loads(args.settings) if args.settings else None
    searcher = Searcher(files, args.text_model, args.max_video_seconds, settings, args.text_shards)
    if queries:
        _print_hits(args.json, queries, searcher.search(queries, args.top))
    for line in sys.stdin if interactive else ():
        if line.strip():
            _print_hits(args.json, [line.strip()], searcher.search([line.strip()], args.top), 0)


def _print_hits(as_json: bool, queries: list[str], results: list, indent: int | None = 1) -> None:
    """Hits as a readable table, or a JSON list of hit objects (one line with indent 0)."""
    from supportset.retrieval.query import format_hits

    if as_json:
        hits = [asdict(hit) for query_hits in results for hit in query_hits]
        print(json.dumps(hits, indent=indent or None), flush=True)
    else:
        print(format_hits(queries, results), end="", flush=True)


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="{split}_videos.parquet embeddings")
    p.add_argument("--captions", required=True, help="{split}_captions.parquet embeddings")
    p.add_argument(
        "--settings",
        default="{}",
        help='JSON of the evaluation section, e.g. \'{"protocol": "one-caption"}\'',
    )
    p.add_argument("--out", required=True, help="metrics JSON")
    p.add_argument("--out-ranks", default=None, help="per-query results ranks_{split}.parquet")
    p.add_argument(
        "--model", default=None, help="model.pt the embeddings came from (its provenance)"
    )
    p.add_argument(
        "--query-bank-captions",
        nargs="+",
        default=[],
        help="{split}_captions.parquet of each split trained on: QB-Norm's t2v bank",
    )
    p.add_argument(
        "--query-bank-videos",
        nargs="+",
        default=[],
        help="{split}_videos.parquet of each split trained on: QB-Norm's v2t bank",
    )


def evaluate(args: argparse.Namespace) -> None:
    """Score any embeddings of the schema: R@K, median and mean rank, both directions."""
    from supportset.retrieval.embeddings import read_caption_embeddings, read_video_embeddings
    from supportset.retrieval.metrics import (
        EvaluationConfig,
        evaluate_split,
        evaluate_split_with_ranks,
        write_metrics,
    )
    from supportset.retrieval.postprocess import read_query_bank
    from supportset.retrieval.ranks import write_ranks
    from supportset.settings import from_json
    from supportset.torch_utils import pick_device

    config = from_json(EvaluationConfig, args.settings)
    query_bank = read_query_bank(
        config.postprocess, args.query_bank_captions, args.query_bank_videos
    )
    video_ids, video_emb = read_video_embeddings(args.videos)
    split = (video_ids, video_emb, *read_caption_embeddings(args.captions))
    device = str(pick_device())
    if args.out_ranks:
        metrics, ranks = evaluate_split_with_ranks(*split, config, device, query_bank)
        write_ranks(args.out_ranks, ranks)
    else:
        metrics = evaluate_split(*split, config, device, query_bank)
    metrics["provenance"] = evaluation_provenance(args, config)
    write_metrics(args.out, metrics)
    log.info("t2v %s", json.dumps(metrics["t2v"]))
    log.info("v2t %s", json.dumps(metrics["v2t"]))
    for name, summaries in metrics.get("postprocessed", {}).items():
        log.info("%s (reported apart) %s", name, json.dumps(summaries))


def evaluation_provenance(args: argparse.Namespace, config) -> dict:
    """The metrics' provenance: the model's block (None without --model or for a model.pt
    that predates it) and the evaluation's own settings, code version and embeddings."""
    from supportset.model.checkpoint import checkpoint_provenance
    from supportset.provenance import code_version, files_sha256, settings_sha256

    settings = asdict(config)
    return {
        "model": checkpoint_provenance(args.model) if args.model else None,
        "evaluation": {
            "config_sha256": settings_sha256(settings),
            "code_version": code_version(),
            "settings": settings,
            "embeddings_sha256": files_sha256([args.videos, args.captions]),
        },
    }


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--row",
        nargs="+",
        action="append",
        metavar="LABEL METRICS_JSON",
        required=True,
        help="a row of this run: its label and its metrics file, or one file per seed",
    )
    p.add_argument(
        "--reference", default="", help="paper table to print beside (e.g. msrvtt_table3)"
    )
    p.add_argument("--recall-at", type=int, choices=[10, 50], default=10)
    p.add_argument(
        "--postprocess",
        nargs="*",
        default=[],
        help="post-processings shown beside each row, as rows of their own (dsl, qbnorm)",
    )
    p.add_argument("--out", required=True, help="table .csv (a .md is written beside it)")
    p.add_argument(
        "--out-runs", default=None, help="per-run values .csv (row, run = dataset/experiment)"
    )
    p.add_argument("--out-text", default=None, help="compact text table (printed too)")
    p.add_argument("--out-html", default=None, help="report page with each run's provenance")


def table(args: argparse.Namespace) -> None:
    """Write a results table: the paper's reference rows beside this run's rows (a row of
    several metrics files is their mean and standard deviation)."""
    from supportset.retrieval.reference import PAPER_NOTES
    from supportset.retrieval.table import (
        build_table,
        read_metrics,
        run_value_rows,
        write_runs,
        write_table,
    )

    runs = {}
    for label, *paths in args.row:
        names = [_run_name(path) for path in paths]
        if not names or len(set(names)) < len(names):
            raise SystemExit(f"--row {label!r}: give one metrics file per run, each once")
        runs[label] = {name: read_metrics(path) for name, path in zip(names, paths, strict=True)}
    rows = build_table(
        {label: list(metrics.values()) for label, metrics in runs.items()},
        args.reference or None,
        args.recall_at,
        args.postprocess,
    )
    notes = PAPER_NOTES.get(args.reference, "")
    write_table(args.out, rows, notes)
    if args.out_runs:
        write_runs(args.out_runs, run_value_rows(runs, args.recall_at, args.postprocess))
    write_views(args, rows, runs, notes)


def write_views(
    args: argparse.Namespace, rows: list[dict], runs: dict[str, dict[str, dict]], notes: str
) -> None:
    """The table's compact text (printed, and written with --out-text) and HTML page."""
    from supportset.io import atomic_path
    from supportset.retrieval.postprocess import POSTPROCESS_LABELS
    from supportset.retrieval.table_view import RunDetail, compact_text, report_html

    name = Path(args.out).stem
    details = {
        label: [RunDetail.from_metrics(run, metrics) for run, metrics in row_runs.items()]
        for label, row_runs in runs.items()
    }
    for label, row_runs in list(details.items()):  # a post-processed row shares its runs
        for suffix in POSTPROCESS_LABELS.values():
            details.setdefault(f"{label} + {suffix}", row_runs)
    details = {row["row"]: details[row["row"]] for row in rows if row["row"] in details}
    title = f"{name}: this run's rows first; chance: R@1 of a random ranking (100 / videos)"
    text = compact_text(title, rows, details)
    print(text, end="")
    for path, content in (
        (args.out_text, text),
        (args.out_html, report_html(name, rows, details, notes)),
    ):
        if path:
            with atomic_path(path) as temporary:
                temporary.write_text(content, encoding="utf-8")


def _run_name(metrics_path: str) -> str:
    """dataset/experiment of a results/{dataset}/{experiment}/metrics_{split}.json file."""
    path = Path(metrics_path).resolve()
    return f"{path.parent.parent.name}/{path.parent.name}"


def _frames_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file")
    p.add_argument("--fps", type=float, default=1.0, help="samples per second")
    p.add_argument("--json", action="store_true", help="print JSON instead of a text table")


def frames(args: argparse.Namespace) -> None:
    """Print what the pipeline samples from one video (timestamps in s, frame sizes)."""
    from supportset.video.decode import describe_samples

    description = describe_samples(args.video, args.fps)
    if args.json:
        print(json.dumps(description))
        return
    for sample in description["samples"]:
        print(f"{sample['timestamp']:10.3f} s  {sample['width']}x{sample['height']}")


def _browse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ranks", required=True, help="ranks_{split}.parquet of `evaluate`")
    _features_args(p)
    p.add_argument("--model", required=True, help="model.pt")
    p.add_argument("--training-settings", required=True, help="JSON of the training section")
    p.add_argument("--settings", default="{}", help="JSON of the report section")
    p.add_argument("--split", required=True)
    p.add_argument("--out-browser", required=True, help="browser_{split}.html")
    p.add_argument("--out-attention", required=True, help="attention_{split}.png (Fig. 3)")
    p.add_argument("--out-retrievals", required=True, help="retrievals_{split}.png (Fig. 5)")


def browse(args: argparse.Namespace) -> None:
    """Write the retrieval browser (one HTML file), the support-set attention map and the
    top-3 retrievals figure of one split."""
    from supportset.data.manifest import read_captions, read_videos
    from supportset.features.bank import FeatureBank
    from supportset.retrieval.browser import BrowseSettings, SplitSources, write_browser
    from supportset.retrieval.figures import write_attention_figure, write_retrievals_figure
    from supportset.retrieval.ranks import read_ranks
    from supportset.settings import from_json
    from supportset.torch_utils import pick_device
    from supportset.train.config import TrainConfig

    settings = from_json(BrowseSettings, args.settings)
    bank = FeatureBank.load(args.visual, args.text, args.cache_mb)
    sources = SplitSources(
        _run_name(args.ranks),
        args.split,
        read_ranks(args.ranks),
        {caption["caption_id"]: caption["text"] for caption in read_captions(args.captions)},
        {video["video_id"]: video["path"] for video in read_videos(args.videos)},
        bank.timestamps,
    )
    shown = write_browser(args.out_browser, sources, settings)
    log.info("browser of %d queries: %s", shown, args.out_browser)
    write_attention_figure(
        args.out_attention,
        sources,
        args.model,
        bank,
        bank.split(args.videos, args.captions, args.split),
        from_json(TrainConfig, args.training_settings),
        settings.attention_captions,
        pick_device(),
    )
    write_retrievals_figure(args.out_retrievals, sources, settings.retrieval_queries)


def _caption_args(p: argparse.ArgumentParser) -> None:
    _features_args(p)
    p.add_argument("--model", required=True, help="model.pt, trained with captioning")
    p.add_argument("--text-model", required=True, help="T5 folder or name (its tokenizer)")
    p.add_argument("--split", required=True)
    p.add_argument("--max-video-seconds", type=float, required=True)
    p.add_argument("--max-tokens", type=int, required=True, help="text.max_tokens of the data")
    p.add_argument("--settings", default="{}", help="JSON of the captioning section")
    p.add_argument("--out", required=True, help="captions_{split}.parquet")


def caption(args: argparse.Namespace) -> None:
    """Caption every video of a split with the model's T5 decoder (greedy or beam search)."""
    from supportset.captioning.generate import (
        CaptionConfig,
        caption_metadata,
        caption_split,
        write_captions,
    )
    from supportset.features.bank import FeatureBank
    from supportset.model.checkpoint import read_checkpoint
    from supportset.settings import from_json

    config = from_json(CaptionConfig, args.settings)
    checkpoint = read_checkpoint(args.model, "model file")
    bank = FeatureBank.load(args.visual, args.text, args.cache_mb)
    split = bank.split(args.videos, args.captions, args.split)
    captions = caption_split(
        args.model,
        checkpoint,
        args.text_model,
        bank,
        split,
        args.max_video_seconds,
        config,
        args.max_tokens,
    )
    metadata = caption_metadata(config, args.max_tokens, args.model, checkpoint)
    write_captions(args.out, split.video_ids, captions, metadata)
    for video_id, text in list(zip(split.video_ids, captions, strict=True))[:5]:
        log.info("%s: %s", video_id, text)


def _score_captions_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generated", required=True, help="captions_{split}.parquet")
    p.add_argument("--captions", required=True, help="captions.parquet manifest (references)")
    p.add_argument("--out", required=True, help="caption_metrics_{split}.json")


def score_captions(args: argparse.Namespace) -> None:
    """Score generated captions against all references of their videos (BLEU-4, METEOR,
    ROUGE-L, CIDEr, by pycocoevalcap; needs Java)."""
    from supportset.captioning.references import read_generated, references_of
    from supportset.captioning.scores import caption_scores
    from supportset.io import atomic_path

    generated = read_generated(args.generated)
    scores = caption_scores(generated, references_of(args.captions, list(generated)))
    result = {**scores, "n_videos": len(generated), "generated": str(args.generated)}
    with atomic_path(args.out) as temporary:
        temporary.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    log.info("%s", ", ".join(f"{name} {value:.1f}" for name, value in scores.items()))


def _caption_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--row",
        nargs=2,
        action="append",
        metavar=("LABEL", "METRICS_JSON"),
        required=True,
        help="a row of this run: its label and its caption metrics file",
    )
    p.add_argument("--reference", default="", help="paper table beside (e.g. msrvtt_table7)")
    p.add_argument("--out", required=True, help="table .csv (a .md is written beside it)")


def caption_table(args: argparse.Namespace) -> None:
    """Write a captioning table: the paper's rows, then this run's."""
    from supportset.captioning.table import write_caption_table

    write_caption_table(args.out, [tuple(row) for row in args.row], args.reference or None)
    print(Path(args.out).with_suffix(".md").read_text(encoding="utf-8"), end="")


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", required=True, help="the fold's videos.parquet (folds/{fold}/)")
    p.add_argument("--captions", required=True, help="the fold's captions.parquet (classes)")
    p.add_argument("--visual", nargs="+", required=True, help="visual shards of the dataset")
    p.add_argument(
        "--model", default=None, help="model.pt whose video head pools (default: average)"
    )
    p.add_argument("--settings", default="{}", help="JSON of the probe section")
    p.add_argument("--out", required=True, help="probe/{pooling}/{fold}.json")


def probe(args: argparse.Namespace) -> None:
    """Train a linear classifier of the fold's classes on pooled video features, keeping the
    epoch best on the fold's val part; write its test top-1 (action recognition)."""
    from supportset.actions.probe import ProbeConfig, probe_fold, write_probe_json
    from supportset.settings import from_json
    from supportset.torch_utils import pick_device

    config = from_json(ProbeConfig, args.settings)
    result = probe_fold(args.videos, args.captions, args.visual, args.model, config, pick_device())
    write_probe_json(result, args.out)


def _action_table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cell",
        nargs="+",
        action="append",
        metavar="ROW COLUMN RESULT_JSON",
        required=True,
        help="a row's label, a dataset's column label and the probe results of its folds",
    )
    p.add_argument("--reference", default="", help="paper table (action_table11: its notes)")
    p.add_argument("--out", required=True, help="table .csv (a .md is written beside it)")


def action_table(args: argparse.Namespace) -> None:
    """Write an action-recognition table: mean top-1 over folds per row and dataset, and
    the chance level."""
    from supportset.actions.table import ACTION_NOTES, action_table, write_action_table

    rows: dict[str, dict[str, list[dict]]] = {}
    for cell in args.cell:
        if len(cell) < 3:
            raise ValueError(f"--cell needs a row, a column and result files: {cell}")
        label, column, *paths = cell
        results = [json.loads(Path(path).read_text(encoding="utf-8")) for path in paths]
        rows.setdefault(label, {})[column] = results
    table = action_table(list(rows.items()))
    out = Path(args.out)
    write_action_table(table, out, out.with_suffix(".md"), ACTION_NOTES.get(args.reference, ""))
    print(out.with_suffix(".md").read_text(encoding="utf-8"), end="")


COMMANDS: list[tuple[str, Callable, Callable]] = [
    ("corpus", _corpus_args, corpus),
    ("prepare", _prepare_args, prepare),
    ("build-tiny-t5", _tiny_args, build_tiny_t5),
    ("extract-visual", _extract_args, extract_visual),
    ("embed-text", _embed_args, embed_text),
    ("rejects-report", _rejects_report_args, rejects_report),
    ("train", _train_args, train),
    ("export", _export_args, export),
    ("index", _index_args, index),
    ("search", _search_args, search),
    ("evaluate", _evaluate_args, evaluate),
    ("table", _table_args, table),
    ("frames", _frames_args, frames),
    ("browse", _browse_args, browse),
    ("caption", _caption_args, caption),
    ("score-captions", _score_captions_args, score_captions),
    ("caption-table", _caption_table_args, caption_table),
    ("probe", _probe_args, probe),
    ("action-table", _action_table_args, action_table),
]

if __name__ == "__main__":
    sys.exit(main())
