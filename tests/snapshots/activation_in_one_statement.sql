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
--   $12 key_ids
--   $13 new_months
--   $14 bonus
--   $15 anchor
--   $16 param_1
--   $17 when
--   $18 digest_0
--   $19 digest_1
--   $20 status_1
--   $21 support_end
--   $22 event_id
--   $23 event_type
--   $24 event_at
--   $25 event_reseller
--   $26 event_body
--   $27 event_traceparent
WITH unchanged AS 
(SELECT installations.id AS id 
FROM installations 
WHERE installations.id = $2::BIGINT AND installations.anchor = $15::DATE AND installations.months = $5::INTEGER FOR UPDATE), 
locked AS 
(SELECT license_keys.id AS id 
FROM license_keys 
WHERE license_keys.digest IN ($18, $19) AND (EXISTS (SELECT unchanged.id 
FROM unchanged)) ORDER BY license_keys.id FOR UPDATE), 
taken AS 
(UPDATE license_keys SET status=$16::VARCHAR, activation_id=$1::UUID, used_at=$17::TIMESTAMP WITH TIME ZONE WHERE license_keys.digest IN ($18, $19) AND license_keys.status = $20::VARCHAR AND license_keys.id IN (SELECT locked.id 
FROM locked) RETURNING license_keys.id, license_keys.digest), 
extended AS 
(UPDATE installations SET months=$13::INTEGER, bonus_months=(installations.bonus_months + $14::INTEGER) WHERE installations.id = $2::BIGINT AND (EXISTS (SELECT unchanged.id 
FROM unchanged)) AND (SELECT count(*) AS count_1 
FROM taken) = $4::INTEGER RETURNING installations.id), 
ledger AS 
(INSERT INTO activations (id, installation_id, activated_on, licenses, months_before, months_added, bonus_months, support_end_before, support_end_after, requested_by, certificate, key_ids) SELECT $1::UUID AS anon_1, $2::BIGINT AS anon_2, $3::DATE AS anon_3, $4::INTEGER AS anon_4, $5::INTEGER AS anon_5, $6::INTEGER AS anon_6, $7::INTEGER AS anon_7, $8::DATE AS anon_8, $9::DATE AS anon_9, $10::VARCHAR AS anon_10, $11::VARCHAR AS anon_11, $12::UUID[] AS anon_12 
WHERE EXISTS (SELECT extended.id 
FROM extended)), 
moved AS 
(UPDATE support_ends SET support_end=$21::DATE WHERE support_ends.installation_id = $2::BIGINT AND (EXISTS (SELECT extended.id 
FROM extended))), 
outbox AS 
(INSERT INTO webhook_events (id, type, occurred_at, reseller_id, body, traceparent) SELECT $22::UUID AS anon_13, $23::VARCHAR AS anon_14, $24::TIMESTAMP WITH TIME ZONE AS anon_15, $25::UUID AS anon_16, $26::VARCHAR AS anon_17, $27::VARCHAR AS anon_18 
WHERE EXISTS (SELECT extended.id 
FROM extended))
 SELECT taken.id, taken.digest 
FROM taken
