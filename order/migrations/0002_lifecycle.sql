-- The order lifecycle: SHIPPED, DELIVERED and CANCELLED join the statuses, orders keep their
-- tracking number, and orders and their lines keep the prices inventory gave them. A CHECK
-- cannot be changed in place on SQLite (nor the same way on both backends), so the three tables
-- are made anew and filled from the old ones, children after their parent; renaming the new
-- parent brings its children's references along.
--
-- total_cents is now what the client said the order costs (NULL: it said nothing); priced_cents
-- the sum of the priced lines, once payment charged it.
CREATE TABLE orders_next (
    order_id        TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL,
    total_cents     BIGINT,
    priced_cents    BIGINT,
    status          TEXT NOT NULL CHECK (status IN
                        ('PENDING', 'CONFIRMED', 'REJECTED', 'SHIPPED', 'DELIVERED', 'CANCELLED')),
    reason          TEXT,
    detail          TEXT,
    tracking_number TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- 1 once the event of the current status has been acknowledged by JetStream.
    announced       BIGINT NOT NULL DEFAULT 0
);
INSERT INTO orders_next (order_id, customer_id, total_cents, status, reason, detail, created_at,
                         updated_at, announced)
SELECT order_id, customer_id, total_cents, status, reason, detail, created_at, updated_at,
       announced
FROM orders;

CREATE TABLE order_items_next (
    order_id   TEXT NOT NULL REFERENCES orders_next (order_id),
    line       BIGINT NOT NULL,
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL,
    -- The price it was reserved at, and unit_cents × quantity; NULL until the order is priced.
    unit_cents BIGINT,
    line_cents BIGINT,
    PRIMARY KEY (order_id, line)
);
INSERT INTO order_items_next (order_id, line, product_id, quantity)
SELECT order_id, line, product_id, quantity FROM order_items;

CREATE TABLE order_history_next (
    order_id TEXT NOT NULL REFERENCES orders_next (order_id),
    status   TEXT NOT NULL,
    reason   TEXT,
    event_id TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (order_id, status)
);
INSERT INTO order_history_next (order_id, status, reason, event_id, at)
SELECT order_id, status, reason, event_id, at FROM order_history;

DROP TABLE order_history;
DROP TABLE order_items;
DROP TABLE orders;
ALTER TABLE orders_next RENAME TO orders;
ALTER TABLE order_items_next RENAME TO order_items;
ALTER TABLE order_history_next RENAME TO order_history;

CREATE INDEX orders_newest ON orders (created_at, order_id);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at);
CREATE INDEX orders_by_status ON orders (status, created_at);
