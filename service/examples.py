"""The examples the API document shows, shared by the answers' schemas and the refusals that carry them
(`service.errors`): plain JSON values, as a client reads them."""

EXAMPLE_ACTIVATION_ID = "5f0c6a57-2f4b-4c1e-9a51-0d3c2b1a9e88"

QUOTE_EXAMPLE = {
    "support_end": "2026-03-15",
    "on": "2027-03-16",
    "active": False,
    "licenses_required": 2,
    "missed_years": 1,
    "licenses": 2,
    "sufficient": True,
    "unit_price": {"amount": "12000.00", "currency": "RUB"},
    "total": {"amount": "24000.00", "currency": "RUB"},
    "support_end_after": "2028-03-15",
    "periods": [
        {"from": "2026-03-16", "to": "2027-03-15", "bonus_months": 0},
        {"from": "2027-03-16", "to": "2028-03-15", "bonus_months": 0},
    ],
}
