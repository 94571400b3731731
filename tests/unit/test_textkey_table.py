"""The banned-word filter's shipped table is what ICU generates, and serving needs no ICU."""

from __future__ import annotations

import json
import subprocess
import sys

from roomserver.core import textkey_build

REGENERATE = (
    f"regenerate it with `{textkey_build.COMMAND}` (needs PyICU: pip install -e '.[test]') and commit it"
)


def test_shipped_table_is_the_generated_one():
    fresh = textkey_build.build()
    shipped_text = textkey_build.TABLE_PATH.read_text(encoding="ascii")
    shipped = json.loads(shipped_text)
    versions = ("icu_version", "icu_unicode_version", "python_unicode_version")
    moved = {v: (shipped.get(v), fresh[v]) for v in versions if shipped.get(v) != fresh[v]}
    assert not moved, (
        f"{textkey_build.TABLE_PATH.name} was made from other Unicode data {moved}: {REGENERATE}"
    )
    for name, value in fresh.items():
        if isinstance(value, dict):
            old = shipped.get(name, {})
            differ = sorted(k for k in value.keys() | old.keys() if value.get(k) != old.get(k))
            assert not differ, f"{name}: {len(differ)} entries differ, e.g. {differ[:8]}: {REGENERATE}"
        assert shipped.get(name) == value, f"{name} differs: {REGENERATE}"
    # Byte for byte too: the file is generated, never edited by hand.
    assert shipped_text == textkey_build.render(fresh), f"not as generated: {REGENERATE}"


def test_the_filter_runs_without_icu():
    # A deployment installs no PyICU: importing it must not be needed anywhere on the way.
    probe = (
        "import sys; sys.modules['icu'] = None\n"
        "from roomserver.core.moderation import WordFilters\n"
        "f = WordFilters().base\n"
        "assert f.find('buy now \\u0455h\\u0456t') == 'shit'\n"  # Cyrillic ѕ and і
        "assert f.find('\\u50bb\\u200b*\\u903c') == '\\u50bb\\u903c'\n"  # 傻 ZWSP * 逼
        "assert 'icu' not in {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
