-- Orders as inventory priced them. `orders.total_cents` keeps what the client said the order
-- costs, 0 when it said nothing (no amount an order may have is 0: SQLite cannot drop the column's
-- NOT NULL in place); `priced_cents` is the priced total once payment charged it. Each line's price
-- is the one it was reserved at.
ALTER TABLE orders ADD COLUMN priced_cents BIGINT;
ALTER TABLE order_items ADD COLUMN unit_cents BIGINT;
ALTER TABLE order_items ADD COLUMN line_cents BIGINT;
