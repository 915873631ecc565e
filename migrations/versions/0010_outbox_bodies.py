"""outbox bodies: each event stores its body as it will be sent; the events queued before keep their values

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

Events queued by the previous version (their `data`: the service's values, rendered at delivery) keep them as
`legacy_data`, and are rendered from them at delivery, as that version would have (`service.http.events`). Their
`activation.created` events lose the ids of the keys another reseller sold (null in `key_ids`), and their
`activation.voided` events those keys in `revoked_keys`: an event carries only what its receiver may see.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HIDE_OTHER_RESELLERS_KEYS = """
UPDATE webhook_events AS e
SET legacy_data = (
    e.legacy_data::jsonb || jsonb_build_object('key_ids', (
        SELECT coalesce(jsonb_agg(
            CASE WHEN e.reseller_id IS NULL OR k.reseller_id = e.reseller_id THEN to_jsonb(x.id) ELSE 'null' END
            ORDER BY x.position
        ), '[]')
        FROM jsonb_array_elements_text(e.legacy_data::jsonb -> 'key_ids') WITH ORDINALITY AS x(id, position)
        LEFT JOIN license_keys AS k ON k.id = x.id::uuid
    ))
)::text
WHERE e.type = 'activation.created'
"""
_HIDE_OTHER_RESELLERS_REVOKED_KEYS = """
UPDATE webhook_events AS e
SET legacy_data = (
    e.legacy_data::jsonb || jsonb_build_object('revoked_keys', (
        SELECT coalesce(jsonb_agg(to_jsonb(x.id) ORDER BY x.position), '[]')
        FROM jsonb_array_elements_text(e.legacy_data::jsonb -> 'revoked_keys') WITH ORDINALITY AS x(id, position)
        JOIN license_keys AS k ON k.id = x.id::uuid
        WHERE e.reseller_id IS NULL OR k.reseller_id = e.reseller_id
    ))
)::text
WHERE e.type = 'activation.voided'
"""


def upgrade() -> None:
    op.alter_column("webhook_events", "data", new_column_name="legacy_data", nullable=True)
    op.add_column("webhook_events", sa.Column("body", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_webhook_events_body_or_legacy_data"), "webhook_events", "(body IS NULL) <> (legacy_data IS NULL)"
    )
    op.execute(_HIDE_OTHER_RESELLERS_KEYS)
    op.execute(_HIDE_OTHER_RESELLERS_REVOKED_KEYS)


def downgrade() -> None:
    # The previous version cannot send a stored body: refuse while such an event is still to be sent; those
    # already sent go, with their deliveries' history.
    op.execute(
        """
        DO $$ BEGIN
            IF EXISTS (SELECT FROM webhook_events WHERE body IS NOT NULL AND dispatched_at IS NULL
                       OR id IN (SELECT event_id FROM webhook_deliveries WHERE status = 'pending')
                          AND body IS NOT NULL) THEN
                RAISE EXCEPTION 'events written by this version are still to be sent: deliver them first';
            END IF;
        END $$
        """
    )
    op.execute(
        "DELETE FROM webhook_deliveries WHERE event_id IN (SELECT id FROM webhook_events WHERE body IS NOT NULL)"
    )
    op.execute("DELETE FROM webhook_events WHERE body IS NOT NULL")
    op.drop_constraint(op.f("ck_webhook_events_body_or_legacy_data"), "webhook_events", type_="check")
    op.drop_column("webhook_events", "body")
    op.alter_column("webhook_events", "legacy_data", new_column_name="data", nullable=False)
