"""What a shopper can ask about a product (pure), with built-in zh/en phrasings.

Three sources of answers (the ``source`` of ``assistant.answer``):

* ``live``: facts the room holds right now (price, stock left of a sale, the sale's
  countdown, coupons); never stored in the catalogue, read when answering.
* ``attribute``: a catalogue attribute (``sizes``, ``material``, ``shipping``, …);
  the phrasings below say how shoppers ask for it. An attribute with a name not
  listed here is asked for by its own name.
* ``faq``: the catalogue's own question variants and answer.

A ``Knowledge`` item is one answerable thing of one product (or of the room, for
coupons) with the phrasings retrieval matches a question against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from roomserver.assistant.catalog import CatalogProduct

Source = Literal["faq", "attribute", "live"]

LIVE_PHRASINGS: dict[str, tuple[str, ...]] = {
    "price": (
        "多少钱",
        "价格多少",
        "什么价格",
        "几块钱",
        "价钱",
        "到手价多少",
        "现在什么价",
        "怎么卖",
        "贵不贵",
        "多少米",
        "how much",
        "how much is it",
        "what's the price",
        "price",
        "cost",
        "how much does it cost",
    ),
    "stock": (
        "还有货吗",
        "有货吗",
        "库存还有多少",
        "还剩多少件",
        "卖完了吗",
        "抢光了吗",
        "还能抢到吗",
        "没货了吗",
        "还有多少",
        "售罄了吗",
        "in stock",
        "still available",
        "sold out",
        "how many left",
        "any left",
        "stock left",
    ),
    "sale_time": (
        "什么时候开抢",
        "几点开抢",
        "秒杀什么时候开始",
        "活动什么时候结束",
        "还有多久结束",
        "秒杀几点结束",
        "倒计时还有多久",
        "活动到几点",
        "when does the sale start",
        "when does the sale end",
        "how long is the deal on",
        "flash sale countdown",
        "sale ends when",
    ),
}
ROOM_LIVE_PHRASINGS: dict[str, tuple[str, ...]] = {
    "coupon": (
        "有优惠券吗",
        "优惠券",
        "有券吗",
        "怎么领券",
        "有没有优惠",
        "有折扣吗",
        "满减",
        "红包",
        "any coupon",
        "coupon",
        "discount",
        "promo code",
        "voucher",
        "any deals",
    ),
}

ATTRIBUTE_PHRASINGS: dict[str, tuple[str, ...]] = {
    "sizes": (
        "有什么尺码",
        "尺码",
        "码数",
        "有哪些码",
        "有XL码吗",
        "有大码吗",
        "有小码吗",
        "有S码吗",
        "几个码",
        "最大多大码",
        "what sizes",
        "size",
        "do you have xl",
        "size range",
        "plus size",
        "small size",
    ),
    "fit": (
        "偏大还是偏小",
        "尺码标准吗",
        "身高170穿什么码",
        "体重120斤穿多大",
        "选什么码",
        "正码吗",
        "怎么选码",
        "true to size",
        "runs small",
        "runs large",
        "what size should i get",
        "fit",
    ),
    "colors": (
        "有什么颜色",
        "颜色",
        "几种颜色",
        "有黑色吗",
        "有白色吗",
        "有红色吗",
        "什么色",
        "what colors",
        "color",
        "colour",
        "black",
        "white",
    ),
    "material": (
        "什么材质",
        "面料",
        "材料",
        "什么料子",
        "含绒量",
        "是什么做的",
        "material",
        "fabric",
        "made of",
        "what is it made of",
        "filling",
    ),
    "shipping": (
        "什么时候发货",
        "几天发货",
        "发货",
        "发什么快递",
        "包邮吗",
        "多久能到",
        "运费",
        "几天到",
        "shipping",
        "when will it ship",
        "delivery",
        "free shipping",
        "how long to arrive",
        "when do you ship",
    ),
    "returns": (
        "能退货吗",
        "可以退吗",
        "退换货",
        "七天无理由",
        "不合适能换吗",
        "售后",
        "退款",
        "return",
        "refund",
        "exchange",
        "return policy",
    ),
    "warranty": ("保修多久", "质保", "保修", "warranty", "guarantee"),
    "weight": ("多重", "重量", "重不重", "有多轻", "weight", "how heavy", "heavy", "weigh"),
    "capacity": (
        "容量",
        "多少毫升",
        "多大容量",
        "能装多少",
        "几升",
        "capacity",
        "how many ml",
        "how much does it hold",
        "volume",
    ),
    "care": (
        "能机洗吗",
        "怎么洗",
        "可以水洗吗",
        "怎么清洗",
        "能放洗碗机吗",
        "洗涤",
        "machine wash",
        "how to wash",
        "washable",
        "dishwasher",
        "clean",
    ),
    "origin": ("产地", "哪里生产的", "国产吗", "哪里产的", "made in", "where is it made", "origin"),
    "ingredients": ("成分", "含酒精吗", "配方", "有香精吗", "ingredients", "alcohol", "fragrance"),
    "skin": (
        "敏感肌能用吗",
        "适合什么肤质",
        "油皮能用吗",
        "干皮能用吗",
        "孕妇能用吗",
        "sensitive skin",
        "skin type",
        "oily skin",
        "dry skin",
        "pregnant",
    ),
    "shelf_life": ("保质期", "保质期多久", "能放多久", "过期", "shelf life", "expiry date", "expire"),
    "dimensions": ("尺寸多大", "长宽高", "多大", "dimensions", "how big", "measurements"),
    "insulation": (
        "保温多久",
        "保温效果",
        "能保温几个小时",
        "保冷",
        "keep warm",
        "how long hot",
        "insulated",
    ),
    "waterproof": ("防水吗", "下雨能穿吗", "防水", "waterproof", "water resistant", "rain"),
}

ATTRIBUTE_LABELS: dict[str, tuple[str, str]] = {
    "sizes": ("尺码", "Sizes"),
    "fit": ("选码建议", "Fit"),
    "colors": ("颜色", "Colours"),
    "material": ("材质", "Material"),
    "shipping": ("发货", "Shipping"),
    "returns": ("售后", "Returns"),
    "warranty": ("保修", "Warranty"),
    "weight": ("重量", "Weight"),
    "capacity": ("容量", "Capacity"),
    "care": ("清洗", "Care"),
    "origin": ("产地", "Origin"),
    "ingredients": ("成分", "Ingredients"),
    "skin": ("适用肤质", "Skin types"),
    "shelf_life": ("保质期", "Shelf life"),
    "dimensions": ("尺寸", "Dimensions"),
    "insulation": ("保温", "Insulation"),
    "waterproof": ("防水", "Water resistance"),
}


@dataclass(frozen=True, slots=True)
class Knowledge:
    """One answerable thing: ``key`` is ``<product>:<intent>`` (``:coupon`` for the room)."""

    key: str
    product: str | None  # None: about the room (coupons)
    intent: str  # "price", "sizes", "faq.3", …
    source: Source
    phrasings: tuple[str, ...]


def attribute_phrasings(name: str) -> tuple[str, ...]:
    return ATTRIBUTE_PHRASINGS.get(name) or (name.replace("_", " "),)


def knowledge_of(product: CatalogProduct, *, on_sale: bool) -> list[Knowledge]:
    """What can be answered about ``product``; stock and the countdown only while a
    sale of it exists in the room (there is no stock figure otherwise)."""
    items = [Knowledge(f"{product.id}:price", product.id, "price", "live", LIVE_PHRASINGS["price"])]
    if on_sale:
        for intent in ("stock", "sale_time"):
            items.append(
                Knowledge(f"{product.id}:{intent}", product.id, intent, "live", LIVE_PHRASINGS[intent])
            )
    for name in product.attributes:
        items.append(
            Knowledge(f"{product.id}:{name}", product.id, name, "attribute", attribute_phrasings(name))
        )
    for i, entry in enumerate(product.faq):
        name = f"faq.{entry.id or i}"
        items.append(Knowledge(f"{product.id}:{name}", product.id, name, "faq", tuple(entry.q)))
    return items


def room_knowledge() -> list[Knowledge]:
    return [Knowledge(":coupon", None, "coupon", "live", ROOM_LIVE_PHRASINGS["coupon"])]
