-- Products and one reservation per order (all of its items, or none).
CREATE TABLE IF NOT EXISTS products (
    product_id TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    available  BIGINT NOT NULL CHECK (available >= 0)
);

-- status: RESERVED (stock taken), REJECTED (nothing taken, reason kept),
-- RELEASED (stock given back after the order was rejected),
-- CANCELLED (the rejection came first: a late orders.placed reserves nothing).
CREATE TABLE IF NOT EXISTS reservations (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED', 'CANCELLED')),
    reason     TEXT,
    detail     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS reservation_items (
    order_id   TEXT NOT NULL REFERENCES reservations (order_id),
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Demo data.
INSERT INTO products (product_id, name, available) VALUES
    ('item1', 'Analytical Engine', 1000),
    ('item2', 'Difference Engine', 1000),
    ('item3', 'Bombe', 1000),
    ('item4', 'Harvard Mark I', 5),
    ('item5', 'Colossus', 0)
ON CONFLICT (product_id) DO NOTHING;
