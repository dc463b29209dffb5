"""The report's numbers and advice: ratios without a denominator, and the note when distillation did not pay."""

import copy

from textdistill.report.render import guidance, markdown_report, summary_table

RESULT = {"accuracy": 0.8, "macro_f1": 0.8, "parameters": 1e6, "disk_bytes": 2**20, "latency_p50_ms": 2.0,
          "latency_p95_ms": 3.0, "throughput_per_s": 100.0, "teacher_agreement": 0.9, "per_class": {},
          "confusion_matrix": [[1, 0], [0, 1]]}
SUMMARY = {"task": "classification", "dataset": "d.csv", "label_names": ["neg", "pos"],
           "sizes": {"train": 10, "validation": 2, "test": 2, "unlabeled": 0}, "teacher": {"path": "t"},
           "student_config": {}, "loss": {"alpha": 0.5, "beta": 0.5, "soft": "kl", "temperature": 2.0},
           "results": {"teacher": dict(RESULT, accuracy=0.9), "student": dict(RESULT, accuracy=0.88),
                       "baseline": dict(RESULT, accuracy=0.8)}}
NOT_BEATEN = "The distilled student did not beat the labels-only baseline"


def test_the_report_warns_when_the_student_does_not_beat_the_baseline():
    assert not any(NOT_BEATEN in note for note in guidance(SUMMARY))
    assert NOT_BEATEN not in markdown_report(SUMMARY)
    for baseline in (0.88, 0.95):  # a tie is not a win
        summary = copy.deepcopy(SUMMARY)
        summary["results"]["baseline"]["accuracy"] = baseline
        assert any(NOT_BEATEN in note and "loss.temperature" in note for note in guidance(summary))
        assert f"**Note.** {NOT_BEATEN}" in markdown_report(summary)


def test_ratios_without_a_denominator_are_a_dash():
    summary = copy.deepcopy(SUMMARY)
    summary["results"]["teacher"]["accuracy"] = 0.0  # a teacher at 0%
    for result in summary["results"].values():
        result["latency_p50_ms"] = 0.0  # a timer that read 0
    table = summary_table(summary)
    for row in ("% of teacher accuracy", "speed-up vs teacher (p50)"):
        line = next(line for line in table.splitlines() if line.startswith(row))
        assert line.split()[-3:] == ["-", "-", "-"], line
    assert "% of teacher accuracy" in markdown_report(summary)


def _confusion_cells(page: str) -> list[list[tuple[str, float]]]:
    """Per confusion table of an HTML page: each count cell's text and its shade (the background's alpha)."""
    import re
    from html.parser import HTMLParser

    tables: list[list[tuple[str, float]]] = []

    class Cells(HTMLParser):
        inside, shade = False, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table" and attrs.get("class") == "confusion":
                self.inside = True
                tables.append([])
            elif tag == "td" and self.inside:
                self.shade = float(re.search(r"rgba\([^)]*,\s*([0-9.]+)\)", attrs["style"]).group(1))

        def handle_endtag(self, tag):
            self.inside = self.inside and tag != "table"

        def handle_data(self, data):
            if self.shade is not None:
                tables[-1].append((data, self.shade))
                self.shade = None

    Cells().feed(page)
    return tables


def test_confusion_matrices_are_tables_shaded_by_share_of_the_row():
    from textdistill.report.render import html_report

    summary = copy.deepcopy(SUMMARY)
    summary["results"]["student"]["confusion_matrix"] = [[8, 2], [1, 3]]
    summary["results"]["baseline"]["confusion_matrix"] = [[0, 0], [5, 5]]  # a label without examples
    page = html_report(summary, [])
    tables = _confusion_cells(page)
    assert len(tables) == 3  # teacher, student, baseline
    assert tables[1] == [("8", 0.8), ("2", 0.2), ("1", 0.25), ("3", 0.75)]
    assert tables[2] == [("0", 0.0), ("0", 0.0), ("5", 0.5), ("5", 0.5)]
    assert "[[8, 2], [1, 3]]" not in page  # not the raw list
    md = markdown_report(summary)
    assert "| gold / predicted | neg | pos |" in md and "| neg | 8 | 2 |" in md and "[[8, 2]" not in md
