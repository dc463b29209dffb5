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
