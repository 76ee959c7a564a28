"""Authentication and authorization (docs/security.md): API keys hashed at rest (:mod:`.keys`), the authorizer
that checks them against routes' scopes and deployment grants (:mod:`.authorizer`), and the gate in front of the
data plane (:mod:`.gate`). Control plane: the data plane never imports it; the server wraps the data plane with it."""
