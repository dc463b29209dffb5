"""Classification metrics checked against scikit-learn's (a test dependency only)."""

import pytest
import torch
from sklearn import metrics as sk

from textdistill.evaluation.metrics import classification_metrics


@pytest.mark.parametrize("seed", range(8))
def test_classification_metrics_match_scikit_learn(seed):
    g = torch.Generator().manual_seed(seed)
    classes = 2 + seed % 4
    n = 5 + 7 * seed
    gold = torch.randint(0, classes, (n,), generator=g)
    pred = torch.where(torch.rand(n, generator=g) < 0.6, gold, torch.randint(0, classes, (n,), generator=g))
    if seed % 2:  # a class never predicted and one never in gold: zero-division cases
        pred[pred == classes - 1] = 0
        gold[gold == 0] = 1
    names = [f"c{i}" for i in range(classes)]
    got = classification_metrics(pred, gold, names)
    labels = list(range(classes))
    y, p = gold.tolist(), pred.tolist()
    assert got["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert got["macro_f1"] == pytest.approx(sk.f1_score(y, p, labels=labels, average="macro", zero_division=0))
    precision, recall, f1, support = sk.precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    for i, name in enumerate(names):
        row = got["per_class"][name]
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx([precision[i], recall[i], f1[i]]), name
        assert row["support"] == support[i]
    assert got["confusion_matrix"] == sk.confusion_matrix(y, p, labels=labels).tolist()  # rows gold, columns predicted
