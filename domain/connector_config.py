"""A workspace's connector config: where its service is, and nothing secret.

A config is recorded in ``WorkspaceCreated`` / ``ConnectorChanged`` and served
on the workspace's stream to every reader, so it is checked strictly before it
is recorded: only the keys a connector type documents, and a ``base_url`` with
no credentials in it, that the connector's HTTP client can reach. (Events
recorded before these checks may hold more: replaying them never checks.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from domain.calls import BatchLimits
from domain.errors import InvalidConnector
from domain.json_types import JsonObject, JsonValue

RATE_KEYS = {"requests_per_second": 1.0, "requests_per_minute": 60.0}
"""The keys that set a connector's request rate, and the window (seconds) each counts over."""
SUPPORTED_TYPES: dict[str, frozenset[str]] = {
    "sandbox": frozenset({"type", "base_url", *RATE_KEYS}),
    "webflow": frozenset(
        {"type", "base_url", "site_id", "token", "collections", "live", "requests_per_minute"}
    ),
    "airtable": frozenset(
        {"type", "base_url", "base_id", "token", "tables", "merge_on", "requests_per_second"}
    ),
}
"""The keys each connector type takes (API.md §12)."""
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "sandbox": ("base_url",),
    "webflow": ("base_url", "site_id", "token", "collections"),
    "airtable": ("base_url", "base_id", "token", "tables"),
}
FOLDER_MAPS = {"webflow": "collections", "airtable": "tables"}
"""The key of each type's folder -> collection (table) map."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
"""An environment variable's name, as a credential reference gives it."""
_SERVICE_ID = re.compile(r"[A-Za-z0-9_.\- ]{1,128}")
BATCH_LIMITS: dict[str, BatchLimits] = {
    "sandbox": BatchLimits(create=100, update=100, delete=100),
    "webflow": BatchLimits(create=100, update=100, delete=100),
    "airtable": BatchLimits(create=10, update=10, delete=10),
}
"""The most records each service takes per request (API.md §10, §12; CONNECTORS.md)."""
MAX_RATE = 1_000_000.0
DEFAULT_RATES: dict[str, tuple[float, float]] = {
    "webflow": (60.0, 60.0),
    "airtable": (5.0, 1.0),
}
"""The documented rate of each real service when the config gives none (CONNECTORS.md):
Webflow's lowest plan, 60 requests a minute per key; Airtable, 5 a second per base."""
MAX_URL_LENGTH = 2048
_URL_CHARS = re.compile(r"[!-~]+")
"""Printable ASCII, no space: what an HTTP client sends as is, with nothing to hide."""
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})*\.?")


def check_connector(config: Mapping[str, JsonValue]) -> JsonObject:
    """The config as it may be recorded; ``InvalidConnector`` naming the key otherwise."""
    kind = config.get("type")
    if not isinstance(kind, str):
        raise InvalidConnector("connector.type must be one of: " + ", ".join(SUPPORTED_TYPES))
    allowed = SUPPORTED_TYPES.get(kind)
    if allowed is None:
        raise InvalidConnector(f"connector type {kind[:64]!r} is unknown")
    for key in config:
        if key not in allowed:
            raise InvalidConnector(
                f"connector.{key[:64]} is not a key of a {kind} connector "
                f"(it takes {', '.join(sorted(allowed))}; credentials are never part of it)"
            )
    for key in REQUIRED_KEYS[kind]:
        if key not in config:
            raise InvalidConnector(f"a {kind} connector needs connector.{key}")
    base_url = config.get("base_url")
    if not isinstance(base_url, str):
        raise InvalidConnector("connector.base_url must be a string")
    check_base_url(base_url)
    checked: JsonObject = {"type": kind, "base_url": base_url}
    for key in ("site_id", "base_id"):
        if key in config:
            checked[key] = _service_id(config[key], f"connector.{key}")
    if "token" in config:
        checked["token"] = {"env": _env_reference(config["token"])}
    if kind in FOLDER_MAPS:
        key = FOLDER_MAPS[kind]
        checked[key] = _folder_map(config[key], f"connector.{key}")
    if "merge_on" in config:
        checked["merge_on"] = _folder_map(config["merge_on"], "connector.merge_on")
    if "live" in config:
        if not isinstance(config["live"], bool):
            raise InvalidConnector("connector.live must be true or false")
        checked["live"] = config["live"]
    rates = [key for key in RATE_KEYS if key in config]
    if len(rates) > 1:
        raise InvalidConnector("give the request rate once: requests_per_second or _per_minute")
    for key in rates:
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidConnector(f"connector.{key} must be a number")
        if not 0 < value <= MAX_RATE:
            raise InvalidConnector(f"connector.{key} must be above 0 and at most {MAX_RATE:.0f}")
        checked[key] = value
    return checked


def _env_reference(value: JsonValue) -> str:
    """``{"env": NAME}``: the name of the variable holding the secret, never the secret."""
    if not isinstance(value, dict) or set(value) != {"env"}:
        raise InvalidConnector(
            'connector.token must be {"env": "VARIABLE"}: the name of an environment '
            "variable of the publishd processes that holds the token (never the token)"
        )
    name = value["env"]
    if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
        raise InvalidConnector("connector.token.env must be an environment variable's name")
    return name


def _service_id(value: JsonValue, what: str) -> str:
    if not isinstance(value, str) or not _SERVICE_ID.fullmatch(value):
        raise InvalidConnector(f"{what} must be the service's id (letters, digits, - _ .)")
    return value


def _folder_map(value: JsonValue, what: str) -> JsonObject:
    if not isinstance(value, dict) or not value:
        raise InvalidConnector(f"{what} must map each folder to the service's id for it")
    for folder, target in value.items():
        _service_id(target, f"{what}.{folder[:64]}")
    return dict(value)


def credential_variables(config: Mapping[str, JsonValue]) -> list[str]:
    """The environment variables a config's credentials are read from."""
    token = config.get("token")
    if isinstance(token, dict) and isinstance(token.get("env"), str):
        return [token["env"]]
    return []


def batch_limits(config: Mapping[str, JsonValue]) -> BatchLimits:
    """The batch limits of the configured service (one record per request if unknown)."""
    kind = config.get("type")
    limits = BATCH_LIMITS.get(kind, BatchLimits()) if isinstance(kind, str) else BatchLimits()
    if kind == "webflow" and config.get("live") is True:
        return replace(limits, requests_per_delete=2)
    return limits


def request_rate(config: Mapping[str, JsonValue]) -> tuple[float, float] | None:
    """``(requests, window_seconds)`` the configured service allows; None: no known limit."""
    for key, window in RATE_KEYS.items():
        value = config.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value), window
    kind = config.get("type")
    return DEFAULT_RATES.get(kind) if isinstance(kind, str) else None


def check_base_url(url: str) -> None:
    """An ``http(s)://host[:port][/path]`` URL: no credentials, query or fragment.

    A path is allowed (a service behind a prefix); the connector sends under it
    whether or not the URL ends with ``/``.
    """
    what = "connector.base_url"
    if len(url) > MAX_URL_LENGTH:
        raise InvalidConnector(f"{what} is longer than {MAX_URL_LENGTH} characters")
    if not _URL_CHARS.fullmatch(url):
        raise InvalidConnector(f"{what} must be printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidConnector(f"{what} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidConnector(f"{what} must start with http:// or https://")
    if "@" in parts.netloc:
        raise InvalidConnector(f"{what} must not carry credentials (user:password@)")
    if "?" in url or "#" in url:
        raise InvalidConnector(f"{what} must not have a query or a fragment")
    host = parts.hostname or ""
    bracketed = parts.netloc.startswith("[")
    if not host or (not bracketed and not _HOST.fullmatch(host)):
        raise InvalidConnector(f"{what} must name a host")
    if port == 0:
        raise InvalidConnector(f"{what} has port 0")


def public_connector(config: JsonValue) -> JsonValue:
    """A recorded config as readers may see it: only its type's keys, no credentials in the URL.

    For events recorded before configs were checked, which may hold a token
    or ``user:password@`` in ``base_url``: the event store keeps what was
    recorded, the streams serve this.
    """
    if not isinstance(config, dict):
        return config
    kind = config.get("type")
    allowed = SUPPORTED_TYPES.get(kind, frozenset({"type"})) if isinstance(kind, str) else set()
    shown: JsonObject = {key: value for key, value in config.items() if key in allowed}
    url = shown.get("base_url")
    if isinstance(url, str):
        try:
            parts = urlsplit(url)
            host = parts.netloc.rpartition("@")[2]
            shown["base_url"] = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else ""
        except ValueError:
            shown["base_url"] = ""
    return shown
