"""HOT key updates: an activation's keys listed in its own row, so that no index on the keys names their activation

An activation updates its keys' `status`, `activation_id` and `used_at`. Their update was never HOT (0011): the keys
of an activation were found by the index on `activation_id`, which every activation wrote into. The activation's
row now lists its keys' ids, in the order the request gave them (`key_ids`), which is how they are found; the index
goes, and with it `position`, which the list's order replaces. The keys' pages keep 20 % free for the new versions
(fillfactor 80: a used key's row is longer than an issued one's); pages written before this migration keep none
until the table is rewritten (`VACUUM FULL license_keys`).

`activation_id` and its foreign key stay: a key still names its activation, and the one-statement activation's
all-or-nothing rests on that key (`KEY_ACTIVATION_FK`). An activation lists as many keys as it used licenses (a
check). `record_activation` (0017) writes the list too.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# record_activation as 0017 made it, less `position`, plus the key ids, each in the ledger's row: nothing else moved.
_FUNCTION = """
CREATE FUNCTION record_activation(
    p_activation uuid, p_installation_id bigint, p_anchor date, p_months_before integer, p_digests bytea[],
    p_key_ids uuid[], p_when timestamptz, p_new_months integer, p_bonus integer, p_activated_on date,
    p_licenses integer, p_months_added integer, p_bonus_months integer, p_support_end_before date,
    p_support_end_after date, p_requested_by varchar, p_certificate varchar, p_event_id uuid, p_event_type varchar,
    p_event_at timestamptz, p_event_reseller uuid, p_event_body varchar, p_event_traceparent varchar
) RETURNS TABLE (id uuid, digest bytea)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH unchanged AS (
        SELECT i.id FROM installations i
        WHERE i.id = p_installation_id AND i.anchor = p_anchor AND i.months = p_months_before
        FOR UPDATE
    ), locked AS (
        SELECT k.id FROM license_keys k
        WHERE k.digest = ANY (p_digests) AND EXISTS (SELECT 1 FROM unchanged)
        ORDER BY k.id
        FOR UPDATE
    ), taken AS (
        UPDATE license_keys k
        SET status = 'used', activation_id = p_activation, used_at = p_when
        WHERE k.digest = ANY (p_digests) AND k.status = 'issued' AND k.id IN (SELECT locked.id FROM locked)
        RETURNING k.id, k.digest
    ), extended AS (
        UPDATE installations i SET months = p_new_months, bonus_months = i.bonus_months + p_bonus
        WHERE i.id = p_installation_id AND EXISTS (SELECT 1 FROM unchanged)
          AND (SELECT count(*) FROM taken) = p_licenses
        RETURNING i.id
    ), moved AS (
        UPDATE support_ends s SET support_end = p_support_end_after
        WHERE s.installation_id = p_installation_id AND EXISTS (SELECT 1 FROM extended)
    ), ledger AS (
        INSERT INTO activations (id, installation_id, activated_on, licenses, months_before, months_added,
                                 bonus_months, support_end_before, support_end_after, requested_by, certificate,
                                 key_ids)
        SELECT p_activation, p_installation_id, p_activated_on, p_licenses, p_months_before, p_months_added,
               p_bonus_months, p_support_end_before, p_support_end_after, p_requested_by, p_certificate, p_key_ids
        WHERE EXISTS (SELECT 1 FROM extended)
    ), outbox AS (
        INSERT INTO webhook_events (id, type, occurred_at, reseller_id, body, traceparent)
        SELECT p_event_id, p_event_type, p_event_at, p_event_reseller, p_event_body, p_event_traceparent
        WHERE EXISTS (SELECT 1 FROM extended)
    )
    SELECT taken.id, taken.digest FROM taken;
END
$$
"""

_FUNCTION_0017 = """
CREATE FUNCTION record_activation(
    p_activation uuid, p_installation_id bigint, p_anchor date, p_months_before integer, p_digests bytea[],
    p_when timestamptz, p_new_months integer, p_bonus integer, p_activated_on date, p_licenses integer,
    p_months_added integer, p_bonus_months integer, p_support_end_before date, p_support_end_after date,
    p_requested_by varchar, p_certificate varchar, p_event_id uuid, p_event_type varchar, p_event_at timestamptz,
    p_event_reseller uuid, p_event_body varchar, p_event_traceparent varchar
) RETURNS TABLE (id uuid, digest bytea)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH unchanged AS (
        SELECT i.id FROM installations i
        WHERE i.id = p_installation_id AND i.anchor = p_anchor AND i.months = p_months_before
        FOR UPDATE
    ), locked AS (
        SELECT k.id FROM license_keys k
        WHERE k.digest = ANY (p_digests) AND EXISTS (SELECT 1 FROM unchanged)
        ORDER BY k.id
        FOR UPDATE
    ), taken AS (
        UPDATE license_keys k
        SET status = 'used', activation_id = p_activation, position = array_position(p_digests, k.digest) - 1,
            used_at = p_when
        WHERE k.digest = ANY (p_digests) AND k.status = 'issued' AND k.id IN (SELECT locked.id FROM locked)
        RETURNING k.id, k.digest
    ), extended AS (
        UPDATE installations i SET months = p_new_months, bonus_months = i.bonus_months + p_bonus
        WHERE i.id = p_installation_id AND EXISTS (SELECT 1 FROM unchanged)
          AND (SELECT count(*) FROM taken) = p_licenses
        RETURNING i.id
    ), moved AS (
        UPDATE support_ends s SET support_end = p_support_end_after
        WHERE s.installation_id = p_installation_id AND EXISTS (SELECT 1 FROM extended)
    ), ledger AS (
        INSERT INTO activations (id, installation_id, activated_on, licenses, months_before, months_added,
                                 bonus_months, support_end_before, support_end_after, requested_by, certificate)
        SELECT p_activation, p_installation_id, p_activated_on, p_licenses, p_months_before, p_months_added,
               p_bonus_months, p_support_end_before, p_support_end_after, p_requested_by, p_certificate
        WHERE EXISTS (SELECT 1 FROM extended)
    ), outbox AS (
        INSERT INTO webhook_events (id, type, occurred_at, reseller_id, body, traceparent)
        SELECT p_event_id, p_event_type, p_event_at, p_event_reseller, p_event_body, p_event_traceparent
        WHERE EXISTS (SELECT 1 FROM extended)
    )
    SELECT taken.id, taken.digest FROM taken;
END
$$
"""


def upgrade() -> None:
    op.add_column("activations", sa.Column("key_ids", postgresql.ARRAY(sa.Uuid()), nullable=True))
    op.execute(
        "UPDATE activations a SET key_ids = coalesce("
        "(SELECT array_agg(k.id ORDER BY k.position, k.id) FROM license_keys k WHERE k.activation_id = a.id), '{}')"
    )
    op.alter_column("activations", "key_ids", nullable=False)
    op.create_check_constraint(op.f("ck_activations_lists_its_keys"), "activations", "cardinality(key_ids) = licenses")
    op.drop_index("ix_license_keys_activation_id", table_name="license_keys")
    op.drop_column("license_keys", "position")
    op.execute("ALTER TABLE license_keys SET (fillfactor = 80)")
    op.execute("DROP FUNCTION record_activation")
    op.execute(_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION record_activation")
    op.execute(_FUNCTION_0017)
    op.execute("ALTER TABLE license_keys RESET (fillfactor)")
    op.add_column("license_keys", sa.Column("position", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE license_keys k SET position = listed.n - 1 "
        "FROM activations a CROSS JOIN unnest(a.key_ids) WITH ORDINALITY AS listed(id, n) WHERE listed.id = k.id"
    )
    op.create_index(
        "ix_license_keys_activation_id",
        "license_keys",
        ["activation_id"],
        postgresql_where=sa.text("activation_id IS NOT NULL"),
    )
    op.drop_constraint(op.f("ck_activations_lists_its_keys"), "activations", type_="check")
    op.drop_column("activations", "key_ids")
