"""record_activation(): the one-statement activation as a function, for the service behind a transaction-mode pooler

Behind PgBouncer in transaction mode the service names no prepared statement (`DATABASE_TRANSACTION_POOLER`), so
PostgreSQL parses and plans every statement it runs. The activation's statement of data-modifying CTEs is the
largest: planning it cost more than running it. PL/pgSQL keeps the plan of a function's statement for its
server connection's life, which the pooler does not end between transactions, so a call plans only itself. With
a direct connection the service keeps its one prepared statement (`activations._record_in_one_statement`),
which this mirrors: the same locks in the same order, the same writes, and nothing written unless every key is
taken (the keys' foreign key to their activation refuses the whole statement otherwise).

`plan_cache_mode = force_generic_plan`: its parameters change on every call, and a custom plan for each is the
cost this avoids.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
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
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION record_activation")
