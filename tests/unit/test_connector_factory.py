"""Building a workspace's connector: credentials read from the environment, never recorded."""

from __future__ import annotations

import asyncio

import pytest

from application.connector import FatalConnectorError
from infrastructure.connectors.factory import Unusable, build_connector
from infrastructure.connectors.rate_limit import RateLimiters
from infrastructure.connectors.webflow import WebflowConnector

CONFIG = {
    "type": "webflow",
    "base_url": "https://api.webflow.com/v2",
    "site_id": "64f000000000000000000001",
    "token": {"env": "WEBFLOW_TOKEN"},
    "collections": {"books": "64f0000000000000000000b1"},
}


def test_a_missing_token_variable_makes_every_call_fatal_naming_the_variable() -> None:
    connector = build_connector(CONFIG, concurrency=4, limiters=RateLimiters(), environ={})
    assert isinstance(connector, Unusable)
    with pytest.raises(FatalConnectorError, match="WEBFLOW_TOKEN is not set"):
        asyncio.run(connector.list_page("books", 0, 10))
    assert connector.batch_limits.create == 100


def test_connectors_with_one_token_share_one_limiter_at_the_documented_rate() -> None:
    limiters = RateLimiters()
    environ = {"WEBFLOW_TOKEN": "s3cret"}
    one = build_connector(CONFIG, concurrency=4, limiters=limiters, environ=environ)
    two = build_connector(
        CONFIG | {"collections": {"tags": "64f0000000000000000000c1"}},
        concurrency=4,
        limiters=limiters,
        environ=environ,
    )
    assert isinstance(one, WebflowConnector) and isinstance(two, WebflowConnector)
    assert "s3cret" not in repr(one)
    limiter = limiters.for_credentials("webflow\nhttps://api.webflow.com/v2\n\ns3cret", 60.0, 60.0)
    assert limiter.requests == 60  # Webflow's 60 a minute when the config gives no rate
    assert len(limiters._limiters) == 1  # both connectors, one quota
