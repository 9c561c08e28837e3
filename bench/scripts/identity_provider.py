"""An OpenID Connect provider for the bench: discovery and JWKS on a free loopback port.

Runs in an `auth=oidc` rendered project's environment and directory and serves its
`tests.identity_provider` (keys made here, real HTTP). Prints one JSON line
{"issuer", "audience", "token"} (a token with every scope, valid for an hour), then serves
until SIGTERM or SIGINT and prints {"jwks_fetches": n}: how often the service fetched the keys.
"""

import json
import signal
import sys

from tests.identity_provider import AUDIENCE, running_identity_provider

TOKEN_LIFETIME = 3600  # seconds: longer than any run


def main() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # the server thread too
    with running_identity_provider() as provider:
        token = provider.token(lifetime=TOKEN_LIFETIME)
        sys.stdout.write(json.dumps({"issuer": provider.issuer, "audience": AUDIENCE, "token": token}) + "\n")
        sys.stdout.flush()
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        sys.stdout.write(json.dumps({"jwks_fetches": provider.jwks_fetches}) + "\n")
        sys.stdout.flush()


main()
