-- stock_close: move a live stock's window end (never creates a stock).
-- KEYS[1] stock hash; ARGV[1] closes_at ms
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'closes', ARGV[1]) end
return 0
