"""Text rules for the assistant (pure): normal form, language, tokens, question detection.

Tokens feed BM25 (``retrieval``). Chinese is segmented by jieba when it is
installed (the ``assistant`` extra) and always also cut into character bigrams:
bigrams survive a wrong character ("雨绒服" still shares "绒服" with "羽绒服") and
keep the lexical path working without jieba. English words are lower-cased,
lightly stemmed, and also cut into character trigrams so a typo ("waterprof")
still shares most of its trigrams with the word it meant.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

Lang = Literal["zh", "en"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_HAS_CJK = re.compile(r"[\u3400-\u9fff]")

# Function words that say nothing about what is asked (question particles are
# handled by ``is_question``, not by retrieval).
ZH_STOP = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "哦",
        "哇",
        "嘛",
        "么",
        "啦",
        "喔",
        "哈",
        "嗯",
        "是",
        "我",
        "你",
        "他",
        "她",
        "它",
        "这",
        "那",
        "这个",
        "那个",
        "这件",
        "那件",
        "这款",
        "那款",
        "一下",
        "一个",
        "个",
        "件",
        "款",
        "主播",
        "宝宝",
        "亲",
        "姐妹",
        "家人们",
        "请问",
        "问一下",
        "问下",
        "想问",
        "想知道",
        "请",
        "麻烦",
        "就",
        "都",
        "也",
        "还",
        "和",
        "跟",
        "在",
        "有",
        "没",
        "没有",
        "不",
        "要",
        "会",
        "能",
        "可以",
        "给",
        "一",
        "下",
        "啥子",
        "咱",
        "咱们",
        "们",
        "小姐姐",
        "老板",
        "在吗",
        "问",
        "问问",
        "哪些",
        "什么",
        "啥",
        "怎么",
        "怎么样",
        "是否",
        "是不是",
        "能不能",
        "可不可以",
        "有没有",
        "会不会",
        "吗",
        "的话",
        "现在",
        "目前",
        "呢",
        "咋",
        "咋样",
        "如何",
        "一般",
        "大概",
        "多",
        "还是",
        "得",
        "地",
        "着",
        "过",
        "又",
        "再",
        "很",
        "挺",
        "太",
        "比较",
        "之类",
        "这边",
        "那边",
        "这种",
    ]
)
EN_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
        "shall",
        "may",
        "might",
        "must",
        "i",
        "you",
        "he",
        "she",
        "it",
        "we",
        "they",
        "me",
        "my",
        "your",
        "its",
        "our",
        "their",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "at",
        "by",
        "from",
        "and",
        "or",
        "but",
        "if",
        "so",
        "as",
        "about",
        "any",
        "some",
        "pls",
        "please",
        "plz",
        "hi",
        "hey",
        "hello",
        "sis",
        "guys",
        "im",
        "i'm",
        "ur",
        "u",
        "what's",
        "whats",
        "wanna",
        "want",
        "know",
        "tell",
        "me",
        "us",
        "just",
        "really",
        "very",
    ]
)


def normal(text: str) -> str:
    """NFKC (full-width to half-width), case folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def lang_of(text: str) -> Lang:
    return "zh" if _HAS_CJK.search(text) else "en"


def _stem(word: str) -> str:
    # Just enough to meet "sizes"/"size", "shipping"/"ship", "washed"/"wash".
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if len(word) > len(suffix) + 2 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + keep
    return word


def _jieba_cut(run: str) -> list[str]:
    try:
        import jieba
    except ImportError:  # the lexical path still works on bigrams alone
        return []
    return list(jieba.lcut(run, HMM=False))


def jieba_ready() -> bool:
    """Load jieba's dictionary now (about a second) rather than on the first question."""
    try:
        import jieba
    except ImportError:
        return False
    jieba.setLogLevel(60)
    jieba.initialize()
    return True


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    """Retrieval tokens of ``text``: Chinese words (and the bigrams of long ones),
    English stems and trigrams."""
    t = normal(text)
    out: list[str] = []
    for run in _CJK.findall(t):
        for word in _jieba_cut(run) or [run]:
            if word in ZH_STOP:
                continue
            if len(word) == 1:
                out.append(word)
                continue
            out.append(word)
            if len(word) >= 3 or word not in _KNOWN_WORDS:
                out.extend("b:" + word[i : i + 2] for i in range(len(word) - 1))
    for word in _WORD.findall(t):
        if word in EN_STOP:
            continue
        stem = _stem(word)
        out.append(stem)
        if len(stem) >= 5:
            padded = f"<{stem}>"
            out.extend("t:" + padded[i : i + 3] for i in range(len(padded) - 2))
    return tuple(out)


# Words jieba knows are not cut into bigrams; without jieba every run is.
_KNOWN_WORDS: frozenset[str] = frozenset()


# -- question detection -------------------------------------------------------------

_ZH_QUESTION_WORDS = (
    "多少",
    "几",
    "什么",
    "啥",
    "怎么",
    "怎样",
    "咋",
    "哪",
    "多久",
    "多大",
    "多长",
    "多重",
    "多高",
    "有没有",
    "是不是",
    "能不能",
    "可不可以",
    "会不会",
    "要不要",
    "行不行",
    "好不好用",
    "如何",
    "为什么",
    "为啥",
    "请问",
    "求",
    "何时",
    "有无",
    "还有吗",
    "包邮不",
)
_ZH_END_PARTICLES = ("吗", "嘛", "么", "呢", "没", "不", "否", "木有")
_EN_OPENERS = frozenset(
    [
        "what",
        "what's",
        "whats",
        "how",
        "when",
        "where",
        "which",
        "who",
        "why",
        "is",
        "are",
        "does",
        "do",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
        "any",
        "has",
        "have",
        "was",
        "were",
        "wat",
        "hw",
        "wen",
    ]
)
_EN_PHRASES = ("how much", "how long", "how many", "is there", "are there", "do you", "does it", "can i")
_A_NOT_A = re.compile(r"(.)不\1")  # 准不准, 重不重, 够不够暖
_TRAILING = re.compile(r"[\s~～!！.。,，…、]+$")


def is_question(text: str) -> bool:
    """Does this barrage line ask something? Question marks, Chinese question words
    and sentence-final particles, English wh-words and auxiliaries at the start.
    Greetings and cheers ("主播好美", "666", "love it") are not questions."""
    t = normal(text)
    if not t:
        return False
    if "?" in t:
        return True
    core = _TRAILING.sub("", t)
    if _HAS_CJK.search(core):
        if any(w in core for w in _ZH_QUESTION_WORDS) or _A_NOT_A.search(core) or "吗" in core:
            return True
        if "还是" in core and len(core) <= 20:  # 偏大还是偏小: a choice asked
            return True
        return core.endswith(_ZH_END_PARTICLES) and len(core) >= 2
    words = _WORD.findall(core)
    if not words:
        return False
    if words[0] in _EN_OPENERS and len(words) >= 2:
        return True
    return any(p in core for p in _EN_PHRASES)
