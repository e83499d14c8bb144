-- PostgreSQL for compose.yaml: one role and one database per SQL service. Each role owns its
-- database and nothing else: it is no superuser, may not create databases or roles, and may not
-- connect to another service's database. The postgres image runs this file once, as its
-- superuser, when its data volume is empty (mounted into /docker-entrypoint-initdb.d/). Each
-- service creates its tables itself (migrations).
--
--   customer   postgres://oms_customer@postgres:5432/oms_customer
--   inventory  postgres://oms_inventory@postgres:5432/oms_inventory
--   order      postgres://oms_order@postgres:5432/oms_order
--
-- No password is written here or in compose.yaml: the `secrets` one-shot makes them on the first
-- start (compose/make-secrets.sh) and gives each service its own in a pgpass file (PGPASSFILE).
-- compose/postgres-entrypoint.sh puts copies this server's user may read in
-- /run/oms-postgres-init; psql reads them with \set (so they appear in no command line and no
-- log), and the end of this file deletes them.

\set customer_pw `cat /run/oms-postgres-init/oms_customer.password`
\set inventory_pw `cat /run/oms-postgres-init/oms_inventory.password`
\set order_pw `cat /run/oms-postgres-init/oms_order.password`

-- Stop here (the init fails, and says why) rather than make roles nobody can log in as.
SELECT length(:'customer_pw') = 64 AND length(:'inventory_pw') = 64 AND length(:'order_pw') = 64
    AS oms_passwords_ok \gset
\if :oms_passwords_ok
\else
DO $$ BEGIN RAISE EXCEPTION 'compose/postgres-init.sql: no role passwords in /run/oms-postgres-init (made by the secrets one-shot, copied by compose/postgres-entrypoint.sh)'; END $$;
\endif

CREATE ROLE oms_customer LOGIN PASSWORD :'customer_pw';
CREATE ROLE oms_inventory LOGIN PASSWORD :'inventory_pw';
CREATE ROLE oms_order LOGIN PASSWORD :'order_pw';

CREATE DATABASE oms_customer OWNER oms_customer;
CREATE DATABASE oms_inventory OWNER oms_inventory;
CREATE DATABASE oms_order OWNER oms_order;

-- Only the owner (and the superuser) may connect. The maintenance database `postgres` stays open
-- to all, as it is by default: a service looks up there whether its database exists.
REVOKE ALL ON DATABASE oms_customer FROM PUBLIC;
REVOKE ALL ON DATABASE oms_inventory FROM PUBLIC;
REVOKE ALL ON DATABASE oms_order FROM PUBLIC;

\unset customer_pw
\unset inventory_pw
\unset order_pw
\! rm -f /run/oms-postgres-init/*.password
