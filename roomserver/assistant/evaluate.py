"""Evaluate the assistant on the labelled set in ``eval/`` (see eval/README.md).

``python -m roomserver.assistant.evaluate [--lexical]`` prints the report;
tests/assistant/test_evaluation.py asserts the targets of issue 18.

Every labelled line goes through what the service does with a barrage line:
question detection, then the decision. Definitions:

* precision: answers that named the labelled item / all answers (in-scope and
  out-of-scope questions; a wrong item or an out-of-scope answer is a miss);
* in-scope answer rate: answered in-scope questions / in-scope questions;
* out-of-scope false answers: answered out-of-scope questions / out-of-scope ones;
* chat lines (labelled ``chat``) measure question detection's false alarms.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from roomserver.assistant import facts as live
from roomserver.assistant.answer import DEFAULT_THRESHOLD, HYBRID_THRESHOLD, RoomScope, decide
from roomserver.assistant.catalog import Catalog, ProductBody
from roomserver.assistant.intents import knowledge_of, room_knowledge
from roomserver.assistant.retrieval import Embedder, Index
from roomserver.assistant.text import is_question

EVAL_DIR = Path(__file__).parent / "eval"
NOW_MS = 1_800_000_000_000


@dataclass
class Report:
    questions: int = 0
    in_scope: int = 0
    out_of_scope: int = 0
    answered: int = 0
    correct: int = 0
    in_scope_answered: int = 0
    false_answers: int = 0
    chat: int = 0
    chat_detected: int = 0
    not_detected: int = 0
    cpu_ms_per_question: float = 0.0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.correct / self.answered if self.answered else 1.0

    @property
    def answer_rate(self) -> float:
        return self.in_scope_answered / self.in_scope if self.in_scope else 0.0

    @property
    def false_answer_rate(self) -> float:
        return self.false_answers / self.out_of_scope if self.out_of_scope else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "in_scope": self.in_scope,
            "out_of_scope": self.out_of_scope,
            "precision": round(self.precision, 3),
            "in_scope_answer_rate": round(self.answer_rate, 3),
            "out_of_scope_false_answers": round(self.false_answer_rate, 3),
            "questions_not_detected": self.not_detected,
            "chat_lines_taken_for_questions": f"{self.chat_detected}/{self.chat}",
            "cpu_ms_per_question": round(self.cpu_ms_per_question, 2),
        }


def load_scenario() -> tuple[RoomScope, live.RoomFacts, list[tuple[str, str]]]:
    spec = json.loads((EVAL_DIR / "catalog.json").read_text(encoding="utf-8"))
    catalog = Catalog()
    for pid, body in spec["products"].items():
        catalog.put(pid, msgspec.convert(body, ProductBody), NOW_MS)
    in_room = {pid: catalog.products[pid] for pid in spec["room_products"]}
    outside = tuple(n for pid, p in catalog.products.items() if pid not in in_room for n in p.names())
    scope = RoomScope(in_room, spec["pinned"]["id"], outside)
    sale = spec["sale"]
    facts = live.RoomFacts(
        now_ms=NOW_MS,
        pinned=spec["pinned"]["id"],
        pinned_price_cents=spec["pinned"]["price_cents"],
        sales={
            sale["product"]: live.SaleFact(
                "s-1",
                sale["product"],
                sale["price_cents"],
                "open",
                sale["left"],
                NOW_MS,
                NOW_MS + sale["ends_in_ms"],
            )
        },
        coupons=tuple(
            live.CouponFact(c["title"], c["discount_cents"], c["min_spend_cents"], c["left"])
            for c in spec["coupons"]
        ),
    )
    labelled = []
    for line in (EVAL_DIR / "questions.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            label, question = line.split("\t", 1)
            labelled.append((label, question))
    return scope, facts, labelled


def build_index(scope: RoomScope, facts: live.RoomFacts, embedder: Embedder | None) -> Index:
    items = room_knowledge()
    for pid, product in scope.products.items():
        items += knowledge_of(product, on_sale=pid in facts.sales)
    return Index(items, embedder)


def evaluate(embedder: Embedder | None = None) -> Report:
    scope, facts, labelled = load_scenario()
    index = build_index(scope, facts, embedder)
    report = Report()
    started = time.process_time()
    for label, question in labelled:
        if label == "chat":
            report.chat += 1
            report.chat_detected += is_question(question)
            continue
        report.questions += 1
        in_scope = label != "none"
        report.in_scope += in_scope
        report.out_of_scope += not in_scope
        if not is_question(question):
            report.not_detected += 1
            if in_scope:
                report.misses.append(f"not detected: {question}")
            continue
        vec = embedder.encode([question])[0] if embedder is not None else None
        threshold = DEFAULT_THRESHOLD if embedder is None else HYBRID_THRESHOLD
        d = decide(question, scope, index, facts, question_vec=vec, default_threshold=threshold)
        if not d.answer:
            if in_scope:
                report.misses.append(f"unanswered ({d.reason} {d.score:.2f}) {label}: {question}")
            continue
        report.answered += 1
        if in_scope:
            report.in_scope_answered += 1
            if d.key == label:
                report.correct += 1
            else:
                report.misses.append(f"WRONG {d.key} ({d.score:.2f}) for {label}: {question}")
        else:
            report.false_answers += 1
            report.misses.append(f"FALSE {d.key} ({d.score:.2f}): {question}")
    done = report.questions - report.not_detected
    report.cpu_ms_per_question = (time.process_time() - started) * 1000 / max(1, done)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lexical", action="store_true", help="without the embedding model")
    parser.add_argument("--misses", action="store_true", help="list every miss")
    args = parser.parse_args()
    embedder = None
    if not args.lexical:
        from roomserver.assistant.embed import load_embedder

        embedder = load_embedder("use")
    report = evaluate(embedder)
    print(
        json.dumps({"embedder": embedder.name if embedder else None, **report.summary()}, ensure_ascii=False)
    )
    if args.misses:
        print("\n".join(report.misses))


if __name__ == "__main__":
    main()
