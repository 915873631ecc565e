-- Activating two keys in one statement (PostgreSQL). Parameters:
--   $1 activation
--   $2 installation_id
--   $3 activated_on
--   $4 licenses
--   $5 months_before
--   $6 months_added
--   $7 bonus_months
--   $8 support_end_before
--   $9 support_end_after
--   $10 requested_by
--   $11 certificate
--   $12 new_months
--   $13 bonus
--   $14 anchor
--   $15 param_1
--   $16 digest_0
--   $17 param_2
--   $18 digest_1
--   $19 param_3
--   $20 when
--   $21 status_1
--   $22 support_end
--   $23 event_id
--   $24 event_type
--   $25 event_at
--   $26 event_reseller
--   $27 event_body
--   $28 event_traceparent
WITH unchanged AS 
(SELECT installations.id AS id 
FROM installations 
WHERE installations.id = $2::BIGINT AND installations.anchor = $14::DATE AND installations.months = $5::INTEGER FOR UPDATE), 
locked AS 
(SELECT license_keys.id AS id 
FROM license_keys 
WHERE license_keys.digest IN ($16, $18) AND (EXISTS (SELECT unchanged.id 
FROM unchanged)) ORDER BY license_keys.id FOR UPDATE), 
taken AS 
(UPDATE license_keys SET status=$15::VARCHAR, activation_id=$1::UUID, position=CASE license_keys.digest WHEN $16 THEN $17::INTEGER WHEN $18 THEN $19::INTEGER END, used_at=$20::TIMESTAMP WITH TIME ZONE WHERE license_keys.digest IN ($16, $18) AND license_keys.status = $21::VARCHAR AND license_keys.id IN (SELECT locked.id 
FROM locked) RETURNING license_keys.id, license_keys.digest, license_keys.position), 
extended AS 
(UPDATE installations SET months=$12::INTEGER, bonus_months=(installations.bonus_months + $13::INTEGER) WHERE installations.id = $2::BIGINT AND (EXISTS (SELECT unchanged.id 
FROM unchanged)) AND (SELECT count(*) AS count_1 
FROM taken) = $4::INTEGER RETURNING installations.id), 
ledger AS 
(INSERT INTO activations (id, installation_id, activated_on, licenses, months_before, months_added, bonus_months, support_end_before, support_end_after, requested_by, certificate) SELECT $1::UUID AS anon_1, $2::BIGINT AS anon_2, $3::DATE AS anon_3, $4::INTEGER AS anon_4, $5::INTEGER AS anon_5, $6::INTEGER AS anon_6, $7::INTEGER AS anon_7, $8::DATE AS anon_8, $9::DATE AS anon_9, $10::VARCHAR AS anon_10, $11::VARCHAR AS anon_11 
WHERE EXISTS (SELECT extended.id 
FROM extended)), 
moved AS 
(UPDATE support_ends SET support_end=$22::DATE WHERE support_ends.installation_id = $2::BIGINT AND (EXISTS (SELECT extended.id 
FROM extended))), 
outbox AS 
(INSERT INTO webhook_events (id, type, occurred_at, reseller_id, body, traceparent) SELECT $23::UUID AS anon_12, $24::VARCHAR AS anon_13, $25::TIMESTAMP WITH TIME ZONE AS anon_14, $26::UUID AS anon_15, $27::VARCHAR AS anon_16, $28::VARCHAR AS anon_17 
WHERE EXISTS (SELECT extended.id 
FROM extended))
 SELECT taken.id, taken.digest 
FROM taken
