-- The price each product had when the order reserved it (cents): an order keeps the prices it was
-- priced at, whatever the product costs later. NULL in reservations made before prices existed;
-- those read the product's price instead.
ALTER TABLE reservation_items ADD COLUMN unit_cents BIGINT CHECK (unit_cents >= 0);
