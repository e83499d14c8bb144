-- Orders as projected from the events, their items, every status change, and the ids of the
-- events already applied (written in the same transaction as their effect).
CREATE TABLE IF NOT EXISTS orders (
    order_id     TEXT PRIMARY KEY,
    customer_id  TEXT NOT NULL,
    total_cents  BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED')),
    reason       TEXT,
    detail       TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- 1 once orders.confirmed / orders.rejected has been acknowledged by JetStream.
    announced    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_newest ON orders (created_at, order_id);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, created_at);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at);

CREATE TABLE IF NOT EXISTS order_items (
    order_id   TEXT NOT NULL REFERENCES orders (order_id),
    line       BIGINT NOT NULL,
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    status   TEXT NOT NULL,
    reason   TEXT,
    event_id TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (order_id, status)
);

CREATE TABLE IF NOT EXISTS processed_events (
    event_id     TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    processed_at BIGINT NOT NULL
);
