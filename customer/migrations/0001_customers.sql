-- Customers and the verdict given for each order (kept so a redelivery republishes the same one).
CREATE TABLE IF NOT EXISTS customers (
    customer_id        TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('ACTIVE', 'BLOCKED')),
    credit_limit_cents BIGINT NOT NULL CHECK (credit_limit_cents >= 0)
);

CREATE TABLE IF NOT EXISTS verdicts (
    order_id           TEXT PRIMARY KEY,
    reason             TEXT,
    detail             TEXT NOT NULL,
    credit_limit_cents BIGINT,
    decided_at         BIGINT NOT NULL
);

-- Demo data (the original system's customers).
INSERT INTO customers (customer_id, name, status, credit_limit_cents) VALUES
    ('OMS-Cust-001', 'Ada Lovelace', 'ACTIVE', 1000000),
    ('OMS-Cust-002', 'Alan Turing', 'ACTIVE', 10000),
    ('OMS-Cust-003', 'Grace Hopper', 'BLOCKED', 1000000)
ON CONFLICT (customer_id) DO NOTHING;
