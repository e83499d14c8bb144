-- PostgreSQL for compose.yaml: one database per SQL service, owned by the role the services log in as.
-- The postgres image runs this once, as its superuser, when its data volume is empty
-- (mounted into /docker-entrypoint-initdb.d/). Each service creates its tables itself (migrations).
--
--   customer   postgres://oms:oms@postgres:5432/oms_customer
--   inventory  postgres://oms:oms@postgres:5432/oms_inventory
--   order      postgres://oms:oms@postgres:5432/oms_order
--
-- The role is not a superuser. CREATEDB lets a service create its database itself if it is missing
-- (an older volume, or another name configured).

CREATE ROLE oms LOGIN CREATEDB PASSWORD 'oms';

CREATE DATABASE oms_customer OWNER oms;
CREATE DATABASE oms_inventory OWNER oms;
CREATE DATABASE oms_order OWNER oms;
