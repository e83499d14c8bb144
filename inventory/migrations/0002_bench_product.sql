-- A product with stock for load tests (loadgen orders it by default), so a long benchmark
-- measures the saga rather than running item1..item3 out of stock.
INSERT INTO products (product_id, name, available) VALUES
    ('bench', 'Benchmark widget', 1000000000)
ON CONFLICT (product_id) DO NOTHING;
