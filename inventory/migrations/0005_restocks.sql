-- Stock deliveries an operator gave an Idempotency-Key: a repeat of the key adds nothing.
CREATE TABLE IF NOT EXISTS restocks (
    restock_key TEXT PRIMARY KEY,
    product_id  TEXT NOT NULL REFERENCES products (product_id),
    quantity    BIGINT NOT NULL CHECK (quantity > 0),
    added_at    BIGINT NOT NULL
);
