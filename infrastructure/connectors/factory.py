"""A workspace's connector config, made into the connector that speaks to its service.

Credentials are read here, from the environment variable the config names
(``{"token": {"env": NAME}}``), when the connector is built: they never pass
through an event, a response or a log line. A variable missing at run time
makes a connector that fails every call as fatal, naming the variable: the
run stops resumable, and resumes once the variable is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from application.connector import Connector, FatalConnectorError, Record, RecordPage
from domain.connector_config import batch_limits, credential_variables, request_rate
from domain.json_types import JsonObject, JsonValue
from infrastructure.connectors.airtable import AirtableConnector
from infrastructure.connectors.rate_limit import RateLimiters
from infrastructure.connectors.sandbox import SandboxConnector
from infrastructure.connectors.webflow import WebflowConnector


def build_connector(
    config: Mapping[str, JsonValue],
    *,
    concurrency: int,
    limiters: RateLimiters,
    environ: Mapping[str, str],
) -> Connector:
    kind = config.get("type")
    base_url = str(config.get("base_url", ""))
    token = ""
    for name in credential_variables(config):
        token = environ.get(name, "")
        if not token:
            return Unusable(
                f"the {kind} connector's token variable {name} is not set for this process",
                config,
            )
    rate = request_rate(config)
    identity = f"{kind}\n{base_url}\n{config.get('base_id', '')}\n{token}"
    limiter = None if rate is None else limiters.for_credentials(identity, *rate)
    if kind == "sandbox":
        return SandboxConnector(base_url, concurrency=concurrency, rate_limiter=limiter)
    if kind == "webflow":
        return WebflowConnector(config, token, rate_limiter=limiter, concurrency=concurrency)
    if kind == "airtable":
        return AirtableConnector(config, token, rate_limiter=limiter, concurrency=concurrency)
    return Unusable(f"connector type {str(kind)[:64]!r} is unknown", config)


class Unusable(Connector):
    """A connector no call can succeed with: every call is fatal, with the reason."""

    def __init__(self, reason: str, config: Mapping[str, JsonValue]) -> None:
        self.reason = reason
        self.batch_limits = batch_limits(config)

    def _fail(self) -> FatalConnectorError:
        return FatalConnectorError(self.reason)

    async def create(self, folder: str, fields: JsonObject, idempotency_key: str) -> Record:
        raise self._fail()

    async def update(
        self,
        folder: str,
        record_id: str,
        fields: JsonObject,
        idempotency_key: str,
        *,
        if_match: str | None = None,
    ) -> Record:
        raise self._fail()

    async def delete_many(
        self, folder: str, record_ids: Sequence[str], idempotency_key: str
    ) -> None:
        raise self._fail()

    async def list_page(self, folder: str, offset: int, limit: int) -> RecordPage:
        raise self._fail()

    async def read(self, folder: str, record_id: str) -> Record | None:
        raise self._fail()
