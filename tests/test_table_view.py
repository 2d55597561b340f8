from supportset.retrieval.table import build_table
from supportset.retrieval.table_view import RunDetail, compact_text, recall_cell, report_html


def metrics(r1: float, videos: int = 48, captions: int = 240, ci: bool = True) -> dict:
    def direction(queries: int) -> dict:
        summary = {"R@1": r1, "R@5": 60.0, "R@10": 70.0, "R@50": 99.0, "MdR": 3.0}
        summary |= {"MnR": 5.0, "n_queries": queries}
        if ci:
            summary["CI95"] = {f"R@{k}": [r1 - 5, r1 + 5] for k in (1, 5, 10, 50)}
        return summary

    return {"t2v": direction(captions), "v2t": direction(videos), "provenance": {"code": "x"}}


def details(runs: dict) -> dict:
    return {
        label: [RunDetail.from_metrics(f"demo/{label}", m) for m in row]
        for label, row in runs.items()
    }


def test_compact_text_fits_120_characters_with_this_run_first():
    runs = {"A row label far longer than any column could hold, shortened" * 2: [metrics(30.4)]}
    rows = build_table({label: row[0] for label, row in runs.items()}, "msrvtt_table3")
    lines = compact_text("demo_table3", rows, details(runs)).splitlines()
    assert max(len(line) for line in lines) == 120
    assert lines[2].startswith("A row label") and "..." in lines[2]
    assert "30.4 [25.4-35.4]" in lines[2] and lines[2].endswith("2.1")  # 100 / 48 videos
    assert set(lines[3]) == {"-"} and lines[4].startswith("Random Baseline")


def test_a_row_of_seeds_shows_mean_and_std_and_no_bounds():
    rows = build_table({"Seeds": [metrics(30.0, ci=False), metrics(40.0, ci=False)]}, None)
    assert recall_cell(rows[0], "T2V_R@1") == "35.0 ± 7.1"
    assert recall_cell(rows[0], "T2V_R@5") == "60.0 ± 0.0"


def test_report_page_lists_gallery_sizes_chance_and_each_run_s_provenance():
    runs = {"Ours": [metrics(30.4, videos=1000, captions=1000)]}
    rows = build_table({"Ours": runs["Ours"][0]}, "msrvtt_table3")
    page = report_html("msrvtt_table3", rows, details(runs), "a note")
    assert page.index("Ours</td>") < page.index("Random Baseline")
    assert "<td>1000</td><td>1000</td><td>0.1</td>" in page
    assert page.count("<details class='provenance'>") == 1 and "&quot;code&quot;" in page


def test_a_paper_row_sharing_a_label_with_ours_gets_no_gallery():
    runs = {"Cross": [metrics(30.4)]}
    rows = build_table({"Cross": runs["Cross"][0]}, "msrvtt_table1")  # paper rows Hybrid, Cross
    lines = compact_text("demo_table1", rows, details(runs)).splitlines()
    ours, paper = lines[2], lines[-1]
    assert ours.startswith("Cross") and ours.endswith("2.1")
    assert paper.startswith("Cross") and not paper.endswith("2.1")
