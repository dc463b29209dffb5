"""The run report: teacher vs student vs no-teacher baseline, as Markdown and self-contained HTML."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from textdistill.atomic import atomic_write
from textdistill.config import GENERATION_TASKS
from textdistill.errors import TextDistillError

COLUMNS = ("teacher", "student", "baseline")
TITLES = {"teacher": "teacher", "student": "student (distilled)", "baseline": "baseline (no teacher)"}




def _rows(summary: dict) -> list[tuple[str, list[str]]]:
    if summary.get("task") in GENERATION_TASKS:
        return _generation_rows(summary)
    res = summary["results"]
    names = [n for n in COLUMNS if n in res]
    t = res["teacher"]

    def each(fn):
        return [fn(res[n]) for n in names]

    rows = [
        ("accuracy", each(lambda r: f"{100 * r['accuracy']:.2f}%")),
        ("macro-F1", each(lambda r: f"{100 * r['macro_f1']:.2f}")),
        ("% of teacher accuracy", each(lambda r: _ratio(100 * r["accuracy"], t["accuracy"], "{:.1f}%"))),
        ("agreement with teacher", each(lambda r: f"{100 * r['teacher_agreement']:.1f}%" if "teacher_agreement" in r else "-")),
        ("parameters", each(lambda r: f"{r['parameters'] / 1e6:.2f}M")),
        ("size on disk", each(lambda r: f"{r['disk_bytes'] / 2**20:.1f} MiB")),
        ("latency batch 1, p50", each(lambda r: f"{r['latency_p50_ms']:.2f} ms")),
        ("latency batch 1, p95", each(lambda r: f"{r['latency_p95_ms']:.2f} ms")),
        ("speed-up vs teacher (p50)", each(lambda r: _ratio(t["latency_p50_ms"], r["latency_p50_ms"], "{:.2f}x"))),
        ("throughput batch 32", each(lambda r: f"{r['throughput_per_s']:.0f} ex/s")),
        ("training wall time", each(lambda r: f"{r['train_seconds']:.0f} s" if "train_seconds" in r else "-")),
    ]
    return [("", [TITLES[n] for n in names])] + rows


def _ratio(numerator: float, denominator: float, fmt: str) -> str:
    """A ratio for the table, or '-' when it has no value: a teacher at 0% accuracy, a timer that read 0."""
    if not denominator or not math.isfinite(numerator / denominator):
        return "-"
    return fmt.format(numerator / denominator)


def guidance(summary: dict) -> list[str]:
    """Plain advice when the numbers say distillation did not do its job."""
    res = summary["results"]
    notes = []
    s, t = res["student"], res["teacher"]
    if "baseline" in res and s["accuracy"] <= res["baseline"]["accuracy"]:
        notes.append(
            "The distilled student did not beat the labels-only baseline. Try: a higher loss.temperature "
            "(2-4), more soft weight (loss.beta), more epochs, extra unlabelled text (data.unlabeled), or a "
            "larger student (more student.layers); check the teacher's own accuracy first."
        )
    check = summary.get("teacher_check")
    if check and check["teacher"] <= check["baseline"]:
        notes.append(
            f"The teacher ({check['metric']} {check['teacher']:.4f} on validation) is no better than the same "
            f"student trained alone ({check['baseline']:.4f}), so it has little to teach. Train the teacher to its "
            "best first (teacher.learning_rates searches the learning rate, and with teacher.ensemble_trials every "
            "trial teaches; teacher.finetune.epochs), or use a stronger one (teacher.base: mpnet, or teacher.path)."
        )
    if s["accuracy"] < 0.95 * t["accuracy"]:
        notes.append(
            "The student keeps less than 95% of the teacher's accuracy. A larger student or longer "
            "training usually closes the gap; a weak teacher caps what distillation can give."
        )
    return notes


def _generation_rows(summary: dict) -> list[tuple[str, list[str]]]:
    """The headline table of a generation run: the same three columns, generation measures as rows."""
    res = summary["results"]
    names = [n for n in COLUMNS if n in res]
    t = res["teacher"]

    def each(fn, key=None):
        return [fn(res[n]) if key is None or key in res[n] else "-" for n in names]

    rows = [
        ("test perplexity", each(lambda r: f"{r['perplexity']:.2f}")),
        ("token agreement with teacher", each(lambda r: f"{100 * r['token_agreement']:.1f}%", "token_agreement")),
    ]
    for key, title in (("bleu", "BLEU"), ("chrf", "chrF"), ("rouge_l", "ROUGE-L")):
        if key in t:
            rows.append((title, each(lambda r, k=key: f"{r[k]:.2f}", key)))
            rows.append((f"% of teacher {title}", each(lambda r, k=key: _ratio(100 * r[k], t[k], "{:.1f}%"), key)))
    rows += [
        ("parameters", each(lambda r: f"{r['parameters'] / 1e6:.2f}M")),
        ("size on disk", each(lambda r: f"{r['disk_bytes'] / 2**20:.1f} MiB")),
        ("greedy tokens/s, batch 1", each(lambda r: f"{r['tokens_per_s']:.1f}")),
        ("latency per example, p50", each(lambda r: f"{r['latency_p50_ms']:.1f} ms")),
        ("greedy speed-up vs teacher", each(lambda r: _ratio(r["tokens_per_s"], t["tokens_per_s"], "{:.2f}x"))),
        ("training wall time", each(lambda r: f"{r['train_seconds']:.0f} s", "train_seconds")),
    ]
    return [("", [TITLES[n] for n in names])] + rows


def generation_markdown(summary: dict) -> str:
    rows = _rows(summary)
    header, body = rows[0], rows[1:]
    g, sizes = summary["generation"], summary["sizes"]
    lines = [f"# textdistill report: {summary['dataset']} ({summary['task']})", ""]
    lines.append(f"Examples: {sizes['train']} train ({sizes['train_used']} used for the student), "
                 f"{sizes['validation']} validation, {sizes['test']} test. Teacher: `{summary['teacher']['path']}`.")
    lines += ["", "| | " + " | ".join(header[1]) + " |", "|---" * (len(header[1]) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join(vals) + " |" for name, vals in body]
    threads = summary["results"]["student"].get("threads")
    lines += ["", "Test set. Perplexity and agreement are teacher-forced on the references, target tokens only "
                  "(agreement: same most likely next token as the teacher). Text scores are on greedy outputs. Speed: "
                  f"greedy decoding of test prompts one at a time, KV cache on, {threads} CPU thread(s)."]
    loss = summary["loss"]
    objective = (f"{loss['alpha']} * CE + {loss['beta']} * T^2 * {loss['soft']}(student, teacher), T = {loss['temperature']}"
                 + (f", top-{g['topk']} teacher" if g["topk"] else "")
                 + (f", sequence-level targets ({g['sequence_kd']}"
                    + (" + references" if g["with_references"] else "") + ")" if g["sequence_kd"] != "off" else "")
                 + (f", on-policy share {g['on_policy_fraction']}" if g["on_policy_fraction"] else ""))
    lines += ["", f"Objective: {objective}. Student: `{json.dumps(summary['student_config'])}`."]
    lines += method_lines(summary)
    lines += ["", f"Export: `{summary['export']['folder']}` reloads with max logit difference "
                  f"{summary['export']['max_logit_difference']:.1e}."]
    examples = [(n, r["examples"]) for n, r in summary["results"].items() if r.get("examples")]
    if examples:
        lines += ["", "## Examples (greedy)", ""]
        for name, ex in examples:
            for e in ex[:2]:
                lines.append(f"- {TITLES.get(name, name)}: `{e['output']}` (reference: `{e['reference']}`)")
    lines += ["", "Training curves: see report.html (data in metrics.jsonl).", ""]
    return "\n".join(lines)


def method_lines(summary: dict) -> list[str]:
    """What an online or quantisation-aware run did differently, and what it cost."""
    lines = []
    online = summary.get("online")
    if online:
        seconds = online.get("train_seconds")
        lines += ["", f"**Online distillation ({online['mode']}).** Trained together in one loop: "
                      f"{', '.join(online['trained'])} ({online['extra_trained_parameters']:,} parameters beside the "
                      f"student's). Teacher-output cache: {online['teacher_cache']}. "
                      + (f"The student phase, every model included, took {seconds:.0f} s." if seconds else "")]
    quantisation = summary.get("quantisation")
    if quantisation:
        lines += ["", f"**Quantisation-aware.** The student trained fake-quantised as its int8 ONNX export after "
                      f"{100 * quantisation['start']:.0f}% of the steps and was validated so; `textdistill bench` "
                      "measures the int8 model's accuracy and speed."]
    return lines


def _soft_term(name: str) -> str:
    """The soft term as the report writes it: the direction of the KL spelled out."""
    return {"forward_kl": "KL(teacher_T || student_T)", "reverse_kl": "KL(student_T || teacher_T)"}.get(
        name, f"{name}(student_T, teacher_T)")


def markdown_report(summary: dict) -> str:
    if summary.get("task") in GENERATION_TASKS:
        return generation_markdown(summary)
    rows = _rows(summary)
    header, body = rows[0], rows[1:]
    lines = [f"# textdistill report: {summary['dataset']}", ""]
    sizes = summary["sizes"]
    lines.append(f"Examples: {sizes['train']} train, {sizes['validation']} validation, {sizes['test']} test"
                 + (f", {sizes['unlabeled']} unlabelled" if sizes["unlabeled"] else "")
                 + (f" ({written['texts']} of them written by {written['writer']})"
                    if (written := summary.get("written_texts")) else "") + ". "
                 f"Labels: {', '.join(summary['label_names'])}. Teacher: `{summary['teacher']['path']}`.")
    lines += ["", "| | " + " | ".join(header[1]) + " |", "|---" * (len(header[1]) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join(vals) + " |" for name, vals in body]
    r = summary["results"]["student"]
    threads = r.get("threads")
    lines += ["", f"Test-set scores. Latency: one test example at a time, forward pass only, models interleaved in one "
                  f"process, {threads} CPU thread(s); throughput: batches of 32 test examples."]
    loss = summary["loss"]
    lines += ["", f"Objective: {loss['alpha']} * CE + {loss['beta']} * "
                  + (f"T^2 * {_soft_term(loss['soft'])}, T = {loss['temperature']}" if loss["soft"] != "mse"
                     else "logit MSE")
                  + f". Student: `{json.dumps(summary['student_config'])}`."]
    lines += method_lines(summary)
    for note in guidance(summary):
        lines += ["", f"**Note.** {note}"]
    for title, intro, table in _extra_tables(summary):
        lines += ["", f"## {title}", "", intro, "", "| " + " | ".join(table[0]) + " |", "|---" * len(table[0]) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += ["", "## Student per class", "", "| label | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, pc in r["per_class"].items():
        lines.append(f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    lines += ["", "## Confusion matrices (rows: gold, columns: predicted)"]
    for name in COLUMNS:
        if name in summary["results"]:
            table = confusion_rows(summary["results"][name]["confusion_matrix"], summary["label_names"])
            lines += ["", f"{TITLES[name]}:", "", "| " + " | ".join(table[0]) + " |", "|---" * len(table[0]) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    lines += _bench_lines(summary.get("bench"))
    lines += ["", "Training curves: see report.html (data in metrics.jsonl).", ""]
    return "\n".join(lines)


def _extra_tables(summary: dict) -> list[tuple[str, str, list[list[str]]]]:
    """(title, one-line introduction, rows with a header first) for the construction, multi-teacher and sweep
    sections."""
    out = []
    construction = summary.get("construction")
    if construction:
        rows = [["step", "parameters", "weights (float32)"]]
        rows += [[c["step"], f"{c['parameters']:,}", f"{c['disk_bytes'] / 2**20:.2f} MiB"] for c in construction]
        out.append(("Student construction", "Parameters and weight bytes after each step of building the student "
                    "from the teacher (a step that does not apply leaves them unchanged).", rows))
    ensemble = summary.get("teachers")
    if ensemble:
        rows = [["teacher", "weight", "test accuracy"]]
        rows += [[f"`{t['path']}`", "-" if t["weight"] is None else f"{t['weight']:g}",
                  f"{100 * t['test_accuracy']:.2f}%"] for t in ensemble["teachers"]]
        rows.append([f"combined ({ensemble['combine']})", "", f"{100 * ensemble['combined_test_accuracy']:.2f}%"])
        out.append(("Teachers", "The student learned from the combined target of these teachers; the teacher "
                    "column above is the first one.", rows))
    out += _teacher_tables(summary.get("teacher") or {})
    sweep = summary.get("sweep")
    if sweep:
        metric = _metric_name(sweep.get("metric", "accuracy"))
        rows = [["setting", "steps", f"validation {metric}", "seconds", "status"]]
        for i, t in enumerate(sweep["trials"]):
            score = t.get("validation_score", t.get("validation_accuracy"))  # the key before select_on
            acc = "-" if score is None else f"{100 * score:.2f}"
            secs = "-" if t["seconds"] is None else f"{t['seconds']:.0f}"
            rows.append([t["setting"], str(t["steps"] or "-"), acc, secs, "best" if i == sweep["best"] else t["status"]])
        out.append(("Sweep (`distill --sweep`)", f"Grid tried on validation in a budget of {sweep['time_budget_s']:g} s "
                    f"({sweep['seconds']:.0f} s used); the run above uses the best setting.", rows))
    return out


def bench_rows(bench: dict) -> list[list[str]]:
    """The `textdistill bench` table, a header first: one row per model and runtime, its speed-up at batch 1
    over the teacher in PyTorch float32."""
    reference = bench.get("teacher pytorch fp32", {}).get("latency_p50_ms", math.nan)
    rows = [["model", "accuracy", "p50 ms (batch 1)", "p95 ms", "speed-up (p50)", "per s (batch 32)", "model size"]]
    for name, b in bench.items():
        rows.append([name, f"{100 * b['accuracy']:.2f}%", f"{b['latency_p50_ms']:.2f}", f"{b['latency_p95_ms']:.2f}",
                     _ratio(reference, b["latency_p50_ms"], "{:.2f}x"), f"{b['throughput_per_s']:.0f}",
                     f"{b['model_bytes'] / 2**20:.1f} MiB"])
    return rows


def _metric_name(metric: str) -> str:
    return {"macro_f1": "macro-F1", "neg_nll": "negative log-likelihood"}.get(metric, metric)


def _teacher_tables(teacher: dict) -> list[tuple[str, str, list[list[str]]]]:
    """The built-in teacher's validation curve (where it stopped improving) and its learning-rate search."""
    out = []
    curve = teacher.get("validation_curve")
    if curve:
        best = teacher.get("best_step")
        rows = [["step", "epoch", "validation accuracy", "macro-F1", ""]]
        rows += [[str(e["step"]), f"{e['epoch']:g}", f"{100 * e['accuracy']:.2f}%", f"{100 * e['macro_f1']:.2f}",
                  "kept" if e["step"] == best else ""] for e in curve]
        out.append(("Teacher fine-tuning", f"Validation after each evaluation of the teacher's fine-tuning "
                    f"({teacher.get('steps', '?')} steps, {teacher.get('train_seconds', 0):.0f} s); training stops "
                    f"once validation {_metric_name(teacher.get('selected_on', 'accuracy'))} stops improving and the "
                    "best checkpoint is kept.", rows))
    search = teacher.get("search")
    if search:
        metric = _metric_name(teacher.get("selected_on", "accuracy"))
        rows = [["learning rate", "steps", f"validation {metric}", ""]]
        rows += [[f"{t['learning_rate']:g}", str(t.get("steps") or "-"), f"{100 * t['validation_score']:.2f}",
                  "kept" if t["learning_rate"] == teacher.get("learning_rate") else ""] for t in search]
        out.append(("Teacher learning-rate search", "Each learning rate fine-tunes a teacher of its own (cached); "
                    f"the one with the best validation {metric} is the teacher.", rows))
    return out


def _bench_lines(bench: dict | None) -> list[str]:
    """The `textdistill bench` table, when the run has been benchmarked."""
    if not bench:
        return []
    rows = bench_rows(bench)
    lines = ["", "## PyTorch and ONNX Runtime (`textdistill bench`)", "", "| " + " | ".join(rows[0]) + " |",
             "|---" * len(rows[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    lines += ["", "Speed-up: over the teacher in PyTorch float32, batch 1."]
    return lines


def confusion_rows(matrix: list[list[int]], labels: list[str]) -> list[list[str]]:
    """The confusion matrix as table rows, a header first: gold label, then its count for each predicted label."""
    return [["gold / predicted", *labels]] + [[label, *map(str, row)] for label, row in zip(labels, matrix)]


def row_shares(matrix: list[list[int]]) -> list[list[float]]:
    """Each count as a share of its row (its gold label's examples); 0 for a label with no examples."""
    return [[count / sum(row) if sum(row) else 0.0 for count in row] for row in matrix]


def confusion_html(matrix: list[list[int]], labels: list[str], title: str) -> str:
    """A confusion matrix as an HTML table whose cells are shaded by their share of the row: the diagonal
    reads as the recall of each label, and where a label's mistakes go stands out at a glance."""
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    body = []
    for label, counts, shares in zip(labels, matrix, row_shares(matrix)):
        cells = "".join(
            f'<td style="background:rgba(31,119,180,{share:.3f});color:{"#fff" if share > 0.5 else "#222"}" '
            f'title="{100 * share:.1f}% of {html.escape(label)}">{count}</td>'
            for count, share in zip(counts, shares))
        body.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return (f"<table class='confusion'><caption>{html.escape(title)}</caption>"
            f"<tr><th>gold / predicted</th>{head}</tr>{''.join(body)}</table>")


def _curve_svg(history: list[dict], key: str, title: str, width: int = 560, height: int = 220) -> str:
    """A line chart of `key` against step for each run, as inline SVG (no plotting library needed)."""
    colours = {"student": "#1f77b4", "baseline": "#ff7f0e", "teacher": "#2ca02c"}
    series: dict[str, list[tuple[float, float]]] = {}
    for e in history:
        if key in e:
            series.setdefault(e["run"], []).append((e["step"], e[key]))
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x0, x1 = min(xs), max(xs) or 1
    y0, y1 = min(ys), max(ys)
    if y1 == y0:
        y1 = y0 + 1
    pad = 40

    def px(x, y):
        sx = pad + (x - x0) / max(x1 - x0, 1) * (width - 2 * pad)
        sy = height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)
        return f"{sx:.1f},{sy:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
             f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end" font-size="10">{y1:.3g}</text>',
             f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end" font-size="10">{y0:.3g}</text>',
             f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="end" font-size="10">step {x1}</text>']
    for i, (run, pts) in enumerate(sorted(series.items())):
        colour = colours.get(run, "#555")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(px(x, y) for x, y in pts)}"/>')
        parts.append(f'<text x="{width - pad}" y="{pad + 14 * i}" text-anchor="end" font-size="11" fill="{colour}">{html.escape(run)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(summary: dict, history: list[dict]) -> str:
    rows = _rows(summary)
    header, body = rows[0], rows[1:]
    table = ["<table><tr><th></th>" + "".join(f"<th>{html.escape(h)}</th>" for h in header[1]) + "</tr>"]
    table += ["<tr><td>" + html.escape(n) + "</td>" + "".join(f"<td>{html.escape(v)}</td>" for v in vals) + "</tr>"
              for n, vals in body]
    table.append("</table>")
    generation = summary.get("task") in GENERATION_TASKS
    notes = "" if generation else "".join(f"<p><b>Note.</b> {html.escape(n)}</p>" for n in guidance(summary))
    for title, intro, rows in _extra_tables(summary):
        notes += (f"<h2>{html.escape(title)}</h2><p>{html.escape(intro)}</p><table><tr>"
                  + "".join(f"<th>{html.escape(h)}</th>" for h in rows[0]) + "</tr>"
                  + "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows[1:])
                  + "</table>")
    if not generation:
        notes += ("<h2>Confusion matrices</h2><p>Rows: gold label; columns: predicted label; shade: share of the "
                  "row.</p>" + "".join(confusion_html(summary["results"][name]["confusion_matrix"],
                                                      summary["label_names"], TITLES[name])
                                       for name in COLUMNS if name in summary["results"]))
    charts = _curve_svg(history, "loss", "training loss") + (
        _curve_svg(history, "perplexity", "validation perplexity") if generation
        else _curve_svg(history, "accuracy", "validation accuracy"))
    style = ("body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
             "td:first-child{text-align:left}table.confusion{display:inline-table;margin:0 1.5em 1em 0}"
             "caption{font-weight:bold;padding:4px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>textdistill report</title>"
            f"<style>{style}</style></head><body><h1>textdistill report: {html.escape(str(summary['dataset']))}</h1>"
            + "".join(table) + notes + "<h2>Training curves</h2>" + charts + "</body></html>")


def read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_report(run_dir: Path, summary: dict) -> None:
    md = markdown_report(summary)
    page = html_report(summary, read_history(run_dir))
    atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text(md, encoding="utf-8"))
    atomic_write(run_dir / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))


def read_summary(run_dir: Path) -> dict:
    """A run's summary.json, checked to be a summary textdistill wrote (the report is made from it)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise TextDistillError(f"{str(run_dir)!r} has no summary.json; give the folder of a finished distill run")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TextDistillError(f"{str(path)!r} is not readable JSON ({str(e).splitlines()[0][:120]}); restore the "
                               "file or run distill again") from None
    results = summary.get("results") if isinstance(summary, dict) else None
    if not isinstance(results, dict) or not all(isinstance(results.get(n), dict) for n in ("teacher", "student")):
        raise TextDistillError(f"{str(path)!r} is not a textdistill run summary (no results for the teacher and "
                               "the student); restore the file or run distill again")
    return summary


def rewrite_report(run_dir: Path) -> dict:
    """`report`: report.md and report.html made again from summary.json; returns the summary.

    Everything is rendered before anything is written, so a damaged summary changes no file.
    """
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    try:
        md, page = markdown_report(summary), html_report(summary, read_history(run_dir))
        summary_table(summary)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise TextDistillError(f"{str(run_dir / 'summary.json')!r} is damaged or incomplete ({type(e).__name__}: "
                               f"{str(e)[:120]}); restore the file or run distill again") from None
    atomic_write(run_dir / "report.md", lambda tmp: tmp.write_text(md, encoding="utf-8"))
    atomic_write(run_dir / "report.html", lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return summary


def aligned_text(rows: list[list[str]]) -> str:
    """Rows of cells as a plain-text table for the terminal: the first column left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join([row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])])
                     for row in rows)


def summary_table(summary: dict) -> str:
    """The headline table as aligned plain text, for the terminal."""
    return aligned_text([[name, *vals] for name, vals in _rows(summary)])


def bench_table(bench: dict) -> str:
    """The `textdistill bench` table as aligned plain text, for the terminal."""
    return aligned_text(bench_rows(bench))
