-- Runs once, when the MySQL container starts on an empty data volume (docker-compose.yml).
-- One schema and two MySQL users per database service, each granted only its own schema, so a
-- service cannot read or change another service's tables: the service's runtime user reads and
-- writes rows and cannot change the schema (no CREATE, ALTER, DROP); the migration user
-- (X_MIGRATION_DATABASE_URL, used by deploy/migrate.py at start-up) alone can.
-- The passwords are development-only placeholders, matching the defaults in docker-compose.yml.
-- Production provisions its own users and passwords and passes each X_DATABASE_URL instead.

CREATE DATABASE IF NOT EXISTS `preorder_user` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `preorder_product` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `preorder_order` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `preorder_payment` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `preorder_stock` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `preorder_social` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

CREATE USER IF NOT EXISTS 'user_svc'@'%' IDENTIFIED BY 'devonly-user-pw';
CREATE USER IF NOT EXISTS 'product_svc'@'%' IDENTIFIED BY 'devonly-product-pw';
CREATE USER IF NOT EXISTS 'order_svc'@'%' IDENTIFIED BY 'devonly-order-pw';
CREATE USER IF NOT EXISTS 'payment_svc'@'%' IDENTIFIED BY 'devonly-payment-pw';
CREATE USER IF NOT EXISTS 'stock_svc'@'%' IDENTIFIED BY 'devonly-stock-pw';
CREATE USER IF NOT EXISTS 'social_svc'@'%' IDENTIFIED BY 'devonly-social-pw';
CREATE USER IF NOT EXISTS 'user_migrate'@'%' IDENTIFIED BY 'devonly-user-migrate-pw';
CREATE USER IF NOT EXISTS 'product_migrate'@'%' IDENTIFIED BY 'devonly-product-migrate-pw';
CREATE USER IF NOT EXISTS 'order_migrate'@'%' IDENTIFIED BY 'devonly-order-migrate-pw';
CREATE USER IF NOT EXISTS 'payment_migrate'@'%' IDENTIFIED BY 'devonly-payment-migrate-pw';
CREATE USER IF NOT EXISTS 'stock_migrate'@'%' IDENTIFIED BY 'devonly-stock-migrate-pw';
CREATE USER IF NOT EXISTS 'social_migrate'@'%' IDENTIFIED BY 'devonly-social-migrate-pw';

-- What a service needs at run time, and its Alembic chain at start-up, and no more (no GRANT
-- OPTION, nothing global). SELECT ... FOR UPDATE needs UPDATE beside SELECT (MySQL 8).
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_user`.* TO 'user_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_user`.* TO 'user_migrate'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_product`.* TO 'product_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_product`.* TO 'product_migrate'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_order`.* TO 'order_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_order`.* TO 'order_migrate'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_payment`.* TO 'payment_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_payment`.* TO 'payment_migrate'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_stock`.* TO 'stock_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_stock`.* TO 'stock_migrate'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE ON `preorder_social`.* TO 'social_svc'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, CREATE TEMPORARY TABLES, LOCK TABLES ON `preorder_social`.* TO 'social_migrate'@'%';
