-- Inventory owns each product's price, in integer minor units (cents): exact money on both
-- backends. Demo prices as in DESIGN "Lifecycle and catalog"; the load-test product costs what
-- loadgen's orders say (9.99).
ALTER TABLE products ADD COLUMN price_cents BIGINT NOT NULL DEFAULT 0 CHECK (price_cents >= 0);

UPDATE products SET price_cents = 129999 WHERE product_id = 'item1';
UPDATE products SET price_cents = 130000 WHERE product_id = 'item2';
UPDATE products SET price_cents = 1000 WHERE product_id = 'item3';
UPDATE products SET price_cents = 2500 WHERE product_id = 'item4';
UPDATE products SET price_cents = 500 WHERE product_id = 'item5';
UPDATE products SET price_cents = 999 WHERE product_id = 'bench';
