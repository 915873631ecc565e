"""The v1 wire format: request bodies (strict: unknown fields refused) and response bodies.

One module per resource, as in `routes/`; `common` holds what they share (the checked types of a
request's values, the `Request` base, `Money`, the examples' ids), `problem` the body of every error.
"""
