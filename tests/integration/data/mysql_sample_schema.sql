-- A small schema in the shape of MySQL's well-known sakila sample: 7 tables,
-- 7 views (one on another view, one SQL SECURITY INVOKER), 6 triggers (two
-- AFTER UPDATE on one table, in a set order; two BEFORE INSERT that set a
-- column from NOW()), 3 functions, 3 procedures and an event.
CREATE TABLE actor (
  actor_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL,
  last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE film (
  film_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  title VARCHAR(128) NOT NULL, description TEXT, rental_rate DECIMAL(4,2) NOT NULL DEFAULT 4.99,
  last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, KEY idx_title (title)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE film_text (
  film_id SMALLINT UNSIGNED NOT NULL PRIMARY KEY, title VARCHAR(255) NOT NULL, description TEXT
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE film_audit (
  audit_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, film_id SMALLINT UNSIGNED NOT NULL,
  old_rate DECIMAL(4,2), new_rate DECIMAL(4,2), seq INT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE customer (
  customer_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL, email VARCHAR(50),
  active TINYINT(1) NOT NULL DEFAULT 1, create_date DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00'
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE payment (
  payment_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, customer_id SMALLINT UNSIGNED NOT NULL,
  amount DECIMAL(5,2) NOT NULL, payment_date DATETIME(6) NOT NULL DEFAULT '2000-01-01 00:00:00', KEY idx_customer (customer_id),
  CONSTRAINT fk_payment_customer FOREIGN KEY (customer_id) REFERENCES customer (customer_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE rental (
  rental_id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, film_id SMALLINT UNSIGNED NOT NULL,
  customer_id SMALLINT UNSIGNED NOT NULL, rental_date DATETIME NOT NULL, return_date DATETIME
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

DELIMITER ;;
CREATE TRIGGER customer_create_date BEFORE INSERT ON customer FOR EACH ROW SET NEW.create_date = NOW(6);;
CREATE TRIGGER payment_date BEFORE INSERT ON payment FOR EACH ROW SET NEW.payment_date = NOW(6);;
CREATE TRIGGER ins_film AFTER INSERT ON film FOR EACH ROW BEGIN
    INSERT INTO film_text (film_id, title, description) VALUES (new.film_id, new.title, new.description);
  END;;
CREATE TRIGGER upd_film AFTER UPDATE ON film FOR EACH ROW BEGIN
    IF (old.title != new.title) OR (old.description != new.description) OR (old.film_id != new.film_id) THEN
      UPDATE film_text SET title = new.title, description = new.description, film_id = new.film_id
       WHERE film_id = old.film_id;
    END IF;
  END;;
-- Fires after upd_film: one audit row per update of a film, numbered.
CREATE TRIGGER film_rate_audit AFTER UPDATE ON film FOR EACH ROW FOLLOWS upd_film BEGIN
    DECLARE n INT;
    SELECT COUNT(*) INTO n FROM film_audit WHERE film_id = new.film_id;
    INSERT INTO film_audit (film_id, old_rate, new_rate, seq) VALUES (new.film_id, old.rental_rate, new.rental_rate, n + 1);
  END;;
CREATE TRIGGER del_film AFTER DELETE ON film FOR EACH ROW BEGIN
    DELETE FROM film_text WHERE film_id = old.film_id; # keep film_text in step
  END;;

CREATE FUNCTION get_customer_balance(p_customer_id INT) RETURNS DECIMAL(9,2) READS SQL DATA
BEGIN
  DECLARE v_payments DECIMAL(9,2);
  SELECT IFNULL(SUM(amount), 0) INTO v_payments FROM payment WHERE customer_id = p_customer_id;
  RETURN v_payments * 1.00;
END;;
CREATE FUNCTION film_in_stock(p_film_id INT) RETURNS TINYINT(1) READS SQL DATA
  RETURN NOT EXISTS (SELECT 1 FROM rental WHERE film_id = p_film_id AND return_date IS NULL);;
CREATE FUNCTION rate_band(p_rate DECIMAL(4,2)) RETURNS VARCHAR(10) CHARSET utf8mb4 DETERMINISTIC NO SQL
  RETURN CASE WHEN p_rate < 1 THEN 'cheap' WHEN p_rate < 3 THEN 'regular' ELSE 'premium' END;;

CREATE PROCEDURE rewards_report(IN min_total DECIMAL(10,2), OUT count_rewardees INT) READS SQL DATA
BEGIN
  SELECT COUNT(*) INTO count_rewardees FROM
    (SELECT customer_id FROM payment GROUP BY customer_id HAVING SUM(amount) > min_total) AS r;
END;;
CREATE PROCEDURE film_in_stock_count(IN p_film_id INT, OUT p_count INT) READS SQL DATA
BEGIN
  SELECT film_in_stock(p_film_id) INTO p_count;
END;;
CREATE PROCEDURE add_payment(IN p_customer_id INT, IN p_amount DECIMAL(5,2)) MODIFIES SQL DATA
BEGIN
  INSERT INTO payment (customer_id, amount) VALUES (p_customer_id, p_amount);
END;;

CREATE EVENT purge_film_audit ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 03:00:00'
  DO DELETE FROM film_audit WHERE seq > 1000;;
DELIMITER ;

CREATE VIEW sales_by_customer AS
  SELECT c.customer_id, CONCAT(c.first_name, ' ', c.last_name) AS name, SUM(p.amount) AS total
  FROM customer c JOIN payment p ON p.customer_id = c.customer_id GROUP BY c.customer_id;
-- A view on a view, named to come first: the target creates it once its base exists.
CREATE VIEW a_top_customers AS SELECT * FROM sales_by_customer WHERE total > 10;
CREATE VIEW customer_list AS
  SELECT customer_id AS ID, CONCAT(first_name, _utf8mb4' ', last_name) AS name, email,
         IF(active, _utf8mb4'active', _utf8mb4'') AS notes FROM customer;
CREATE VIEW film_list AS SELECT film_id AS FID, title, rental_rate AS price, rate_band(rental_rate) AS band FROM film;
CREATE SQL SECURITY INVOKER VIEW nicer_but_slower_film_list AS
  SELECT film_id AS FID, CONCAT(UCASE(SUBSTR(title, 1, 1)), LCASE(SUBSTR(title, 2))) AS title FROM film;
CREATE VIEW open_rentals AS SELECT r.rental_id, r.film_id, f.title FROM rental r JOIN film f USING (film_id)
  WHERE r.return_date IS NULL;
CREATE ALGORITHM=MERGE DEFINER=reporter@'%' SQL SECURITY DEFINER VIEW actor_info AS
  SELECT actor_id, first_name, last_name FROM actor WITH CHECK OPTION;

INSERT INTO actor (first_name, last_name) SELECT CONCAT('A', seq), CONCAT('L', seq) FROM seq_1_to_200;
INSERT INTO film (title, description, rental_rate)
  SELECT CONCAT('film ', seq), CONCAT('about ', seq), (seq % 5) + 0.99 FROM seq_1_to_300;
INSERT INTO customer (first_name, last_name, email) SELECT CONCAT('C', seq), CONCAT('N', seq), CONCAT('c', seq, '@x')
  FROM seq_1_to_200;
INSERT INTO payment (customer_id, amount) SELECT 1 + seq % 200, (seq % 7) + 0.5 FROM seq_1_to_2000;
INSERT INTO rental (film_id, customer_id, rental_date, return_date)
  SELECT 1 + seq % 300, 1 + seq % 200, '2026-01-01', IF(seq % 10 = 0, NULL, '2026-01-02') FROM seq_1_to_1000;
UPDATE film SET rental_rate = rental_rate + 1 WHERE film_id <= 20;
