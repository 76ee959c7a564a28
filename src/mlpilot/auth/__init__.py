"""Authentication and authorization (docs/security.md): API keys hashed at rest (:mod:`.keys`), who is calling
(:mod:`.principal`), bearer JWTs from an OIDC provider (:mod:`.oidc`), the authorizer that checks credentials against
routes' scopes and deployment grants (:mod:`.authorizer`), key checks a remote data plane asks its control plane for
(:mod:`.remote`), and the gate in front of the data plane (:mod:`.gate`). Control plane: the data plane never imports
it; the server wraps the data plane with it."""
