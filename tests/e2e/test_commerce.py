"""Flash sales, lotteries, coupons and red packets through the host and viewer pages."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.test_live_room import T, error_toast, say, tab

pytestmark = pytest.mark.e2e


async def start_sale(host: Page, *, title: str, price: str, sale_price: str, stock: int, limit: int) -> None:
    await tab(host, "sell")
    await host.fill("#pin-id", "sku-sale")
    await host.fill("#pin-title", title)
    await host.fill("#pin-price", price)
    await host.fill("#sale-price", sale_price)
    await host.fill("#sale-stock", str(stock))
    await host.fill("#sale-limit", str(limit))
    await host.fill("#sale-duration", "120")
    await host.fill("#sale-delay", "0")
    await host.click("#sale-btn")


async def test_flash_sale_purchase_limit_and_sold_out(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    alice = await pages.open("viewer", room, "alice", name="Alice")
    bob = await pages.open("viewer", room, "bob", name="Bob")
    await start_sale(host, title="Silk scarf", price="129", sale_price="49", stock=2, limit=1)

    card = alice.locator("#product")
    await expect(card.locator(".tag.flash")).to_be_visible(timeout=T)
    await expect(card.locator(".title")).to_have_text("Silk scarf")
    await expect(card.locator(".price b")).to_have_text("¥49")
    await expect(card.locator(".price s")).to_have_text("¥129")
    await expect(card.locator(".sale-head .clock b")).to_have_text(re.compile(r"^0[12]:[0-5]\d$"))
    await expect(card.locator(".stock-text")).to_have_text("2 left")

    await alice.click("#buy-btn")
    await expect(alice.locator(".toast.ok", has_text="Order placed: Silk scarf for ¥49")).to_be_visible(
        timeout=T
    )
    await expect(bob.locator("#product .stock-text")).to_have_text("1 left", timeout=T)
    # The host sees the order and the stock.
    await expect(host.locator("#orders .item", has_text="alice · ×1")).to_be_visible(timeout=T)
    await expect(host.locator("#kpi-sold")).to_have_text("1", timeout=T)
    # One per user: Alice's second try is refused with a message.
    await expect(alice.locator("#buy-btn")).to_have_text("Buy", timeout=T)
    await alice.click("#buy-btn")
    await error_toast(alice, "You have reached the purchase limit for this item.")

    await bob.click("#buy-btn")
    await expect(bob.locator(".toast.ok", has_text="Order placed")).to_be_visible(timeout=T)
    # Sold out: every page shows it, and a purchase that raced the news gets the message.
    for page in (alice, bob):
        await expect(page.locator("#buy-btn")).to_have_text("Sold out", timeout=T)
        await expect(page.locator("#buy-btn")).to_be_disabled()
        await expect(page.locator("#product .stock-text")).to_have_text("Sold out")
    await alice.evaluate(
        "() => app.view.actions.buy(app.view.state.sale.product, app.view.state.sale, document.querySelector('#buy-btn'))"
    )
    await error_toast(alice, "Sold out! Every item of this flash sale is gone.")
    late = await pages.open("viewer", room, "carol")
    await expect(late.locator("#buy-btn")).to_have_text("Sold out")
    await expect(host.locator("#sale-state")).to_have_text("closed · 2 sold", timeout=T)
    await expect(host.locator("#orders .item")).to_have_count(2)


async def test_lottery_entry_draw_winners_and_verification(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    v1 = await pages.open("viewer", room, "v1", name="Vic")
    v2 = await pages.open("viewer", room, "v2", name="Wen")
    await tab(host, "engage")
    await host.fill("#lottery-prize", "Signed album")
    await host.fill("#lottery-winners", "2")
    await host.fill("#lottery-duration", "120")
    await host.fill("#lottery-keyword", "lucky")
    await host.click("#lottery-open")

    widget = v1.locator("#w-lottery")
    await expect(widget.locator(".w-title")).to_have_text("Signed album", timeout=T)
    await expect(widget).to_contain_text("Or send lucky in the chat")
    await v1.click("#lottery-enter")
    await expect(v1.locator("#w-lottery .w-btn.done")).to_have_text("✓ Entered", timeout=T)
    # The keyword in a barrage enters its sender too.
    await say(v2, "I feel lucky today")
    await expect(host.locator("#chat .line.msg", has_text="I feel lucky today")).to_be_visible(timeout=T)

    await host.click("#w-lottery .w-btn")  # "Draw now" on the host's stage
    for page, me in ((v1, "v1"), (v2, "v2")):
        winners = page.locator("#lottery-winners li")
        await expect(winners).to_have_count(2, timeout=T)
        await expect(page.locator("#lottery-winners li.me")).to_have_text(f"{me} (you!)")
        await expect(page.locator("#w-lottery .won")).to_contain_text("You won!")
        await expect(page.locator("#w-lottery")).to_contain_text("2 winners of 2")
    await expect(host.locator("#lottery-state")).to_have_text(re.compile(r"^drawn: v[12], v[12]$"))

    # Anyone can check the draw: the page recomputes it from the published seed.
    await v1.click("#lottery-verify")
    modal = v1.locator("#modal .modal-card")
    await expect(modal.locator("h3")).to_have_text("✓ The draw checks out", timeout=T)
    await expect(modal.locator(".checks li.ok")).to_have_count(4)
    # The raw record opens in a tab without the token in any URL (browser history keeps URLs).
    async with v1.context.expect_page() as opened:
        await modal.locator("button", has_text="Raw record").click()
    raw = await opened.value
    await expect(raw.locator("body")).to_contain_text('"seed_hash"', timeout=T)
    assert raw.url.startswith("blob:") and "token" not in raw.url, raw.url


async def test_coupon_claim_and_red_packet_grab(pages, room) -> None:
    host = await pages.open("host", room, "h1", "host")
    v1 = await pages.open("viewer", room, "v1")
    v2 = await pages.open("viewer", room, "v2")
    await tab(host, "sell")
    await host.fill("#coupon-title", "Welcome coupon")
    await host.fill("#coupon-off", "10")
    await host.fill("#coupon-min", "50")
    await host.fill("#coupon-qty", "1")
    await host.fill("#coupon-per", "1")
    await host.click("#coupon-form button[type=submit]")
    coupon = v1.locator(".widget.coupon")
    await expect(coupon.locator(".w-title")).to_have_text("¥10 off", timeout=T)
    await expect(coupon).to_contain_text("on orders over ¥50")
    await coupon.locator(".w-btn").click()
    await expect(coupon.locator(".w-btn")).to_have_text("✓ Claimed", timeout=T)
    await v2.locator(".widget.coupon .w-btn").click()
    await error_toast(v2, "All coupons have been claimed.")
    await expect(v2.locator(".widget.coupon .w-btn")).to_have_text("All claimed")

    await tab(host, "engage")
    await host.fill("#packet-total", "1.00")
    await host.fill("#packet-count", "2")
    await host.fill("#packet-msg", "Thanks for watching")
    await host.click("#packet-form button[type=submit]")
    got = []
    for page in (v1, v2):
        packet = page.locator(".widget.packet")
        await expect(packet.locator(".w-title")).to_have_text("Thanks for watching", timeout=T)
        await packet.locator(".w-btn").click()
        won = packet.locator(".won")
        await expect(won).to_have_text(re.compile(r"^You got ¥\d"), timeout=T)
        got.append(round(float((await won.text_content()).removeprefix("You got ¥")) * 100))
    assert sum(got) == 100 and min(got) >= 1
    # Both shares are gone: the packet reports who got the most.
    await expect(v1.locator(".widget.packet")).to_contain_text("All grabbed · best: v", timeout=T)
