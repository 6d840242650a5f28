-- The facade's create (Prefer: respond-async) as one pgbench transaction pair: key claim, number,
-- invoice row, outbox command + NOTIFY, key -> command; then the 202 stored under the key.
-- bench/scale.py replaces :content_json with the seeded command's payload (a JSON literal).
BEGIN;
INSERT INTO idempotency_records (client, key, fingerprint, method, path, locked_until)
  VALUES ('pgbench', gen_random_uuid()::text, 'fp', 'POST', '/v1/invoices',
          now() + make_interval(secs => 60))
  ON CONFLICT (client, key) DO NOTHING RETURNING key \gset
SELECT nextval('invoice_number_seq') AS num \gset
INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, total_amount,
                      customer_email, customer_name, due_date, content)
  VALUES ('default', 'PGB-' || :num, 'pgbench', 'USD', 250.00, 'ada@example.com', 'Ada Lovelace',
          current_date + 30, :content_json::jsonb)
  ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id \gset
WITH queued AS (
  INSERT INTO operations (id, invoice_id, merchant_profile, kind, payload, requested_by)
  VALUES (gen_random_uuid(), :id, 'default', 'create', :content_json::jsonb, 'pgbench')
  RETURNING id
), notified AS (SELECT pg_notify('igw_outbox', id::text) FROM queued)
SELECT queued.id AS op FROM queued, notified \gset
UPDATE idempotency_records SET operation_id = :op WHERE client = 'pgbench' AND key = :key;
COMMIT;
BEGIN;
SELECT o.*, i.invoice_number, i.owner FROM operations o JOIN invoices i ON i.id = o.invoice_id
  WHERE o.id = :op;
UPDATE idempotency_records SET state = 'completed', response_status = 202,
    response_headers = '{}'::jsonb, response_body = '{}'::jsonb, completed_at = now()
  WHERE client = 'pgbench' AND key = :key AND state = 'processing';
COMMIT;
