"""What every CLI command shares: the global options and a lazily created :class:`~mlpilot.Client`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from mlpilot.client import Client
from mlpilot.settings import Settings


@dataclass
class CliContext:
    home: Path | None = None
    url: str | None = None
    actor: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        return Settings(home=self.home) if self.home is not None else Settings()

    def client(self) -> Client:
        if self._client is None:
            if self.url:
                self._client = Client(self.url, actor=self.actor)
            else:
                self._client = Client(settings=self.settings(), actor=self.actor)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def client(ctx: typer.Context) -> Client:
    obj: CliContext = ctx.obj
    return obj.client()
