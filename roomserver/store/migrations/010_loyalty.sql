-- Loyalty (roomserver/store/loyalty.py): per-user rollups across shows, the points
-- ledger (per user, day and rule: the daily cap's counter and the points it earned),
-- the reward catalog and redemptions.
CREATE TABLE loyalty_profiles (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    records BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT,
    last_seen BIGINT,
    shows BIGINT NOT NULL DEFAULT 0,
    order_shows BIGINT NOT NULL DEFAULT 0,
    watch_ms BIGINT NOT NULL DEFAULT 0,
    interactions BIGINT NOT NULL DEFAULT 0,
    n_barrage BIGINT NOT NULL DEFAULT 0,
    n_like BIGINT NOT NULL DEFAULT 0,
    n_gift BIGINT NOT NULL DEFAULT 0,
    n_vote BIGINT NOT NULL DEFAULT 0,
    n_track BIGINT NOT NULL DEFAULT 0,
    n_lottery BIGINT NOT NULL DEFAULT 0,
    n_coupon BIGINT NOT NULL DEFAULT 0,
    n_redpacket BIGINT NOT NULL DEFAULT 0,
    orders BIGINT NOT NULL DEFAULT 0,
    gmv BIGINT NOT NULL DEFAULT 0,
    gift_value BIGINT NOT NULL DEFAULT 0,
    last_order BIGINT,
    referrals BIGINT NOT NULL DEFAULT 0,
    points_earned BIGINT NOT NULL DEFAULT 0,
    points_spent BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, user_id),
    CONSTRAINT loyalty_points_never_negative CHECK (points_spent >= 0 AND points_spent <= points_earned)
);
-- One row per (user, show) the user was seen in: shows attended, shows with an order.
CREATE TABLE loyalty_user_shows (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    room TEXT NOT NULL,
    show BIGINT NOT NULL,
    ordered BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, user_id, room, show)
);
-- The points ledger: per user and day, the units each rule counted (u_*) and the points
-- it earned that day, capped (p_*). Rules: roomserver/core/loyalty.py.
CREATE TABLE loyalty_points_daily (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    day BIGINT NOT NULL,
    u_watch BIGINT NOT NULL DEFAULT 0,
    u_barrage BIGINT NOT NULL DEFAULT 0,
    u_like BIGINT NOT NULL DEFAULT 0,
    u_gift BIGINT NOT NULL DEFAULT 0,
    u_order BIGINT NOT NULL DEFAULT 0,
    u_share BIGINT NOT NULL DEFAULT 0,
    p_watch BIGINT NOT NULL DEFAULT 0,
    p_barrage BIGINT NOT NULL DEFAULT 0,
    p_like BIGINT NOT NULL DEFAULT 0,
    p_gift BIGINT NOT NULL DEFAULT 0,
    p_order BIGINT NOT NULL DEFAULT 0,
    p_share BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (app, user_id, day)
);
CREATE TABLE loyalty_rewards (
    app TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    cost BIGINT NOT NULL,
    coupon TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, id)
);
-- A redemption is keyed by the user's cid: a retry finds the first one.
CREATE TABLE loyalty_redemptions (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    cid TEXT NOT NULL,
    id TEXT NOT NULL,
    reward TEXT NOT NULL,
    cost BIGINT NOT NULL,
    coupon TEXT NOT NULL,
    points_left BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (app, user_id, cid)
)
