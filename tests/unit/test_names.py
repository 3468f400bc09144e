"""Names that look like others, values coerced, configs that hold secrets: refused whole.

Issue 13, defects 3, 6 and 11, at the level where each rule lives: the domain's
validators and the API models' patterns.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from domain.connector_config import check_connector
from domain.errors import InvalidConnector, InvalidPath, InvalidSchema
from domain.paths import HIDDEN, parse_folder, parse_path
from domain.schema import MAX_READ_ONLY, FolderSchema
from infrastructure.connectors.http_client import HttpClient, InvalidAddress
from interfaces.http import models as m

HIDDEN_CHARACTERS = [
    "\x85",  # NEL, a C1 control
    "\x9b",  # CSI, a C1 control
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u2060",  # word joiner
    "\ufeff",  # zero-width no-break space (BOM)
]


@pytest.mark.parametrize("char", HIDDEN_CHARACTERS)
def test_paths_and_folders_refuse_controls_and_invisible_characters(char: str) -> None:
    with pytest.raises(InvalidPath, match="character") as caught:
        parse_path(f"books/ali{char}ce.json")
    assert caught.value.code == "invalid_path"
    with pytest.raises(InvalidPath, match="character"):
        parse_folder(f"bo{char}oks")
    assert HIDDEN.search(f"/workspaces/w/schemas/books{char}")


def test_visible_non_ascii_names_are_still_paths() -> None:
    assert parse_path("books/é-ü-日本.json").filename == "é-ü-日本.json"
    assert not HIDDEN.search("/workspaces/w/files/books/é-日本.json")


@pytest.mark.parametrize("pattern", [m.USER_ID, m.WORKSPACE_ID])
def test_ids_are_matched_whole_so_a_trailing_newline_is_no_id(pattern: str) -> None:
    assert re.fullmatch(pattern, "alice") is not None
    assert re.fullmatch(pattern, "alice\n") is None


def test_a_workspace_id_with_a_trailing_newline_is_refused_by_the_model() -> None:
    connector = {"type": "sandbox", "base_url": "http://127.0.0.1:9100"}
    with pytest.raises(ValidationError):
        m.CreateWorkspace.model_validate({"id": "acme\n", "connector": connector})


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"idPath": "id\n"}, "idPath"),
        ({"fields": [{"name": "author\n"}]}, "not valid"),
        ({"fields": [{"name": "a", "reference": "yes", "referenceTarget": "x"}]}, "true or false"),
        (
            {
                "fields": [
                    {"name": "a", "reference": True, "referenceTarget": "x", "multiple": "yes"}
                ]
            },
            "true or false",
        ),
        ({"readOnly": ["createdOn\n"]}, "readOnly"),
        ({"readOnly": ["x" * 200]}, "readOnly"),
        ({"readOnly": [f"f{i}" for i in range(MAX_READ_ONLY + 1)]}, "more than"),
        ({"filenameFrom": "slug\n"}, "filenameFrom"),
        ({"filenameFrom": "s" * 200}, "filenameFrom"),
        ({"filenameFrom": ""}, "filenameFrom"),
    ],
)
def test_schema_values_are_typed_strictly_and_bounded(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidSchema, match=reason):
        FolderSchema.from_dict("books", data)


@pytest.mark.parametrize(
    "body",
    [
        {"fields": [{"name": "a", "reference": True, "referenceTarget": "x", "multiple": "yes"}]},
        {"fields": [{"name": "a", "reference": 1, "referenceTarget": "x"}]},
        {"fields": [{"name": "a\n"}]},
        {"readOnly": ["x" * 129]},
        {"readOnly": [f"f{i}" for i in range(MAX_READ_ONLY + 1)]},
        {"filenameFrom": "x" * 129},
        {"idPath": "id\n"},
    ],
)
def test_the_schema_model_coerces_nothing(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        m.FolderSchemaBody.model_validate(body)


def test_a_schema_recorded_before_the_rules_tightened_is_still_read() -> None:
    recorded = {
        "idPath": "id",
        "fields": [
            {"name": "author", "reference": True, "referenceTarget": "authors", "multiple": False}
        ],
        "readOnly": ["created on"],
        "filenameFrom": "the slug",
    }

    schema = FolderSchema.from_recorded("books", recorded)

    assert schema.read_only == {"created on"} and schema.filename_from == "the slug"
    assert schema.to_dict() == recorded


SANDBOX = "http://127.0.0.1:9100"


@pytest.mark.parametrize(
    "base_url",
    [SANDBOX, SANDBOX + "/", SANDBOX + "/api", "https://cms.example.com/v2/", "http://[::1]:9100"],
)
def test_a_sandbox_config_with_a_reachable_address_is_kept_as_given(base_url: str) -> None:
    config = {"type": "sandbox", "base_url": base_url}

    assert check_connector(config) == config
    assert m.ConnectorConfig.model_validate(config).base_url == base_url
    HttpClient(base_url, size=1, timeout=1, headers={})  # the client accepts it too


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"type": "sandbox", "base_url": SANDBOX, "token": "s3cret"}, "connector.token"),
        ({"type": "sandbox", "base_url": SANDBOX, "api_key": "s3cret"}, "connector.api_key"),
        ({"type": "sandbox", "base_url": "http://user:s3cret@127.0.0.1:9100"}, "credentials"),
        ({"type": "sandbox", "base_url": "http://s3cret@127.0.0.1:9100/"}, "credentials"),
        ({"type": "sandbox", "base_url": SANDBOX + "/?token=s3cret"}, "query"),
        ({"type": "sandbox", "base_url": SANDBOX + "#frag"}, "fragment"),
        ({"type": "sandbox", "base_url": "ftp://127.0.0.1/"}, "http"),
        ({"type": "sandbox", "base_url": "127.0.0.1:9100"}, "http"),
        ({"type": "sandbox", "base_url": "http://"}, "host"),
        ({"type": "sandbox", "base_url": "http://a_b/"}, "host"),
        ({"type": "sandbox", "base_url": "http://h:99999/"}, "not a valid URL"),
        ({"type": "sandbox", "base_url": "http://[::1/"}, "not a valid URL"),
        ({"type": "sandbox", "base_url": "http://h/a b"}, "ASCII"),
        ({"type": "sandbox", "base_url": "http://h\u200b/"}, "ASCII"),
        ({"type": "sandbox", "base_url": "http://h/" + "a" * 2048}, "longer"),
        ({"type": "sandbox", "base_url": 5}, "string"),
        ({"type": "sandbox"}, "needs connector.base_url"),
        ({"type": "sandbox", "base_url": SANDBOX, "requests_per_minute": "60"}, "number"),
        ({"type": "sandbox", "base_url": SANDBOX, "requests_per_minute": 0}, "above 0"),
        (
            {
                "type": "sandbox",
                "base_url": SANDBOX,
                "requests_per_minute": 60,
                "requests_per_second": 1,
            },
            "once",
        ),
        ({"type": "webflow", "base_url": "https://api.webflow.com/v2"}, "connector.site_id"),
        ({"type": "airtable", "base_url": "https://api.airtable.com/v0"}, "connector.base_id"),
        ({"type": "ftp", "base_url": SANDBOX}, "unknown"),
        ({"base_url": SANDBOX}, "connector.type"),
    ],
)
def test_a_connector_config_is_refused_with_the_key_named(
    config: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidConnector, match=re.escape(named)) as caught:
        check_connector(config)
    assert "s3cret" not in caught.value.message
    with pytest.raises(InvalidConnector):
        m.ConnectorConfig.model_validate(config)


@pytest.mark.parametrize("base_url", ["127.0.0.1:9100", "http://", "ftp://h/", "http://h/?q=1"])
def test_the_http_client_refuses_an_address_no_request_could_reach(base_url: str) -> None:
    with pytest.raises(InvalidAddress):
        HttpClient(base_url, size=1, timeout=1, headers={})


def test_a_sandbox_connector_may_give_its_request_rate() -> None:
    config = {"type": "sandbox", "base_url": SANDBOX, "requests_per_minute": 60}
    assert check_connector(config) == config
    assert m.ConnectorConfig.model_validate(config).recorded() == config


WEBFLOW = {
    "type": "webflow",
    "base_url": "https://api.webflow.com/v2",
    "site_id": "64f000000000000000000001",
    "token": {"env": "WEBFLOW_TOKEN"},
    "collections": {"books": "64f0000000000000000000b1"},
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"token": "s3cret"}, "connector.token"),
        ({"token": {"env": "s3cret value"}}, "connector.token.env"),
        ({"token": {"env": "X", "value": "s3cret"}}, "connector.token"),
        ({"collections": {}}, "connector.collections"),
        ({"collections": {"books": "s3cret/../x"}}, "connector.collections.books"),
        ({"live": "yes"}, "connector.live"),
        ({"requests_per_second": 1}, "connector.requests_per_second"),
    ],
)
def test_a_real_services_config_names_its_credentials_by_reference(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidConnector, match=re.escape(named)) as caught:
        check_connector(WEBFLOW | change)
    assert "s3cret" not in caught.value.message


def test_a_token_variable_missing_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WEBFLOW_TOKEN", raising=False)
    with pytest.raises(InvalidConnector, match="WEBFLOW_TOKEN"):
        m.ConnectorConfig.model_validate(WEBFLOW)
    monkeypatch.setenv("WEBFLOW_TOKEN", "s3cret")
    assert m.ConnectorConfig.model_validate(WEBFLOW).recorded() == WEBFLOW
