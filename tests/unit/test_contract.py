"""The wire contract (roomserver/contract/): complete, enforced, and its artefacts fresh."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from roomserver.client_ops import Ops
from roomserver.contract import check, generate
from roomserver.contract.events import EVENTS, event_spec
from roomserver.contract.ops import REPLIES
from roomserver.contract.registry import op_contracts
from roomserver.core.room import Emit
from roomserver.handlers import REGISTRY, op
from roomserver.node import Node


def load_all_ops() -> None:
    import roomserver.handlers.catalog  # noqa: F401  (every op module registers its ops)


REPO = Path(__file__).resolve().parents[2]
JS_SDK = REPO / "web_client" / "sdk" / "roomserver.js"


def missing_sdk_methods() -> dict[str, list[str]]:
    """Ops with no method in the Python SDK (``RoomClient.ops``) or the JS SDK (a
    ``request("<op>"``, ``_call("<op>"`` or ``_retrying("<op>"`` in roomserver.js), by SDK."""
    load_all_ops()
    js = JS_SDK.read_text(encoding="utf-8")
    js_ops = set(re.findall(r'(?:request|_call|_retrying)\(\s*"([a-z_.]+)"', js))
    return {
        "python": sorted(n for n in REGISTRY if not callable(getattr(Ops, generate.py_method_name(n), None))),
        "js": sorted(n for n in REGISTRY if n not in js_ops),
    }


@pytest.fixture
def fake_op() -> Iterator[str]:
    """An op registered for the length of one test (the registry is process-wide)."""
    load_all_ops()
    name = "contract.fake"

    async def handler(ctx: object, p: object) -> dict:
        return {}

    op(name)(handler)
    try:
        yield name
    finally:
        del REGISTRY[name]


def test_every_op_has_a_reply_schema_and_nothing_else_does() -> None:
    load_all_ops()
    assert set(REGISTRY) == set(REPLIES)
    assert [c.name for c in op_contracts()] == sorted(REGISTRY)


def test_an_op_without_a_reply_schema_breaks_the_contract(fake_op: str) -> None:
    with pytest.raises(KeyError, match=fake_op):
        op_contracts()


def test_every_op_has_a_method_in_both_sdks() -> None:
    assert missing_sdk_methods() == {"python": [], "js": []}


def test_the_sdk_check_finds_an_op_no_sdk_has(fake_op: str) -> None:
    assert missing_sdk_methods() == {"python": [fake_op], "js": [fake_op]}


def test_checked_in_artefacts_are_fresh() -> None:
    stale = generate.run(check=True)
    assert stale == [], f"stale: {stale}; run python -m roomserver.contract.generate"


def test_the_freshness_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for rel in generate.artefacts():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    ts = tmp_path / generate.TS_FILE
    ts.write_text(ts.read_text().replace('"order.created": OrderCreated;\n', ""))
    assert generate.run(check=True, root=tmp_path) == [generate.TS_FILE]
    assert generate.run(check=False, root=tmp_path) == [generate.TS_FILE]
    assert generate.run(check=True, root=tmp_path) == []


def test_the_cli_check_exits_1_naming_the_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(generate, "REPO", tmp_path)
    for rel in generate.artefacts():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    (tmp_path / generate.PY_FILE).write_text("# edited by hand\n")
    assert generate.main(["--check"]) == 1
    assert generate.PY_FILE in capsys.readouterr().err


def test_the_drifted_events_are_typed() -> None:
    ts = (REPO / generate.TS_FILE).read_text()
    for name in ("order.created", "cohost.rejected", "pk.invited", "sale.opened", "coupon.issued"):
        assert f'"{name}": ' in ts
    assert "any" not in re.findall(r"\b(any)\b", ts)


# -- the checks the server runs under test --------------------------------------------------


def test_contract_checks_are_on_under_test() -> None:
    assert check.ENABLED


def test_an_unregistered_event_type_cannot_be_encoded() -> None:
    with pytest.raises(check.ContractViolation, match=r"no\.such"):
        Node.drafts("app/r1", [Emit("no.such", {})])


def test_an_event_with_an_unnamed_or_mistyped_field_cannot_be_encoded() -> None:
    with pytest.raises(check.ContractViolation, match="online"):
        Node.drafts("app/r1", [Emit("online", {"count": 1, "extra": 2}, durable=False)])
    with pytest.raises(check.ContractViolation, match="online"):
        Node.drafts("app/r1", [Emit("online", {"count": "1"}, durable=False)])
    with pytest.raises(check.ContractViolation, match="durable"):
        Node.drafts("app/r1", [Emit("online", {"count": 1})])
    assert len(Node.drafts("app/r1", [Emit("online", {"count": 1}, durable=False)])) == 1
    assert len(Node.drafts("app/r1", [Emit("custom.score", {"any": ["thing"]})])) == 1


def test_replies_are_checked_against_their_schema() -> None:
    check.check_reply("ping", {"ts": 1})
    with pytest.raises(check.ContractViolation):
        check.check_reply("ping", {"ts": "soon"})
    with pytest.raises(check.ContractViolation):
        check.check_reply("barrage.send", {"seq": 1, "extra": True})
    with pytest.raises(check.ContractViolation, match="no reply schema"):
        check.check_reply("contract.fake", {})


def test_registry_names_are_what_the_schemas_decode() -> None:
    assert event_spec("custom.x") is not None and event_spec("custom.") is None
    for spec in EVENTS.values():
        msgspec.json.schema(spec.data)  # every data schema is a valid JSON Schema
