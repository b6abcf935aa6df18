"""schemathesis against the running API's own OpenAPI document, on a throwaway stack: a few
generated requests per operation, no server error, and every status and content type the API
answers is in the document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)

from printermaster.stack import Stack

from .conftest import make_stack


@pytest.fixture(scope="module")
def schema_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with make_stack(Path(tmp_path_factory.mktemp("schema"))) as stack:
        stack.add_agent("b1", "a1", ["POS-80C"])
        stack.wait_agent("b1", "a1")
        yield stack


def test_every_operation_answers_as_documented(schema_stack: Stack) -> None:
    """Each operation with a few generated requests (schemathesis's pytest plugin does not run
    under this pytest, so the operations are driven here with hypothesis)."""
    schema = schemathesis.openapi.from_url(f"{schema_stack.api_url}/schema/openapi.json")
    headers = {"Authorization": f"Bearer {schema_stack.api_token}"}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/schema") or _streams(operation.definition.raw):
            # the reference pages' own files, and Server-Sent Events streams that answer until
            # the client leaves: their documented media type is checked below
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=4,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(
                base_url=schema_stack.api_url,
                headers=headers,
                checks=[not_a_server_error, status_code_conformance, content_type_conformance],
                timeout=40,
            )

        try:
            run()
        except Exception as exc:  # collect them all, then fail with every one named
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    print(f"{operations} operations, {len(failures)} with failures")
    assert operations >= 15
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


def _streams(definition: dict[str, Any]) -> bool:
    ok = definition.get("responses", {}).get("200", {})
    return "text/event-stream" in ok.get("content", {})


def test_the_document_names_every_error_and_media_type(schema_stack: Stack) -> None:
    import httpx

    doc = httpx.get(f"{schema_stack.api_url}/schema/openapi.json").json()
    jobs = doc["paths"]["/v1/jobs"]["post"]["responses"]
    for status in ("404", "409", "422", "429"):
        assert jobs[status]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorResponse"
        )
    assert "Retry-After" in jobs["429"]["headers"]
    agents = doc["paths"]["/v1/branches/{branch_id}/agents"]["post"]["responses"]
    assert list(agents["201"]["content"]) == ["application/toml"]
    for stream in ("/v1/jobs/{job_id}/events", "/v1/events"):
        events = doc["paths"][stream]["get"]["responses"]
        assert list(events["200"]["content"]) == ["text/event-stream"]
