"""devtools.app_config: app.toml read into types, and a malformed file refused with the fix in the message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools.app_config import AppConfig, AppConfigError, Expected, fill, json_pointer, load_app_config
from devtools.paths import ROOT


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    """Two sample events: a create and a read by id whose path holds a placeholder id."""
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "api-01-create.json").write_text(json.dumps({"rawPath": "/things", "pathParameters": {}}))
    read = {"rawPath": "/things/0", "pathParameters": {"thing": "0"}}
    (folder / "api-02-read.json").write_text(json.dumps(read))
    (folder / "job-01-run.json").write_text("{}")
    return folder


def _load(tmp_path: Path, events_dir: Path, text: str) -> AppConfig:
    app_toml = tmp_path / "app.toml"
    app_toml.write_text(text, encoding="utf-8")
    return load_app_config(app_toml, events_dir)


def test_the_repository_app_toml_loads_and_every_event_it_names_exists() -> None:
    app = load_app_config()
    assert app.events, "app.toml [events] is empty"
    for name in app.events:
        assert (ROOT / "events" / f"{name}.json").is_file(), name


def test_a_missing_app_toml_is_an_app_with_no_expectations_no_bench_rows_and_no_smoke_steps(tmp_path: Path) -> None:
    app = load_app_config(tmp_path / "app.toml")
    assert (dict(app.events), app.smoke, app.bench.read, app.bench.health) == ({}, (), None, None)


def test_every_section_is_read_into_its_type(tmp_path: Path, events_dir: Path) -> None:
    app = _load(
        tmp_path,
        events_dir,
        """
        [events]
        "api-01-create" = { status = 201 }
        "job-01-run" = { returns = true }
        "api-02-read" = { raises = "NotFound" }

        [bench]
        write = "api-01-create"
        read = "api-02-read"
        id_from = "/data/id"
        id_into = "thing"
        scheduled = "job-01-run"
        skipped_when = "/skipped"

        [[smoke]]
        method = "post"
        path = "/things"
        json = { name = "x" }
        status = 201
        save = { thing = "/id" }
        """,
    )
    assert app.expected("api-01-create") == Expected(status=201)
    assert app.expected("job-01-run") == Expected()
    assert app.expected("api-02-read") == Expected(raises="NotFound")
    bench = app.bench
    assert (bench.write, bench.read, bench.id_from, bench.id_into, bench.listing) == (
        "api-01-create",
        "api-02-read",
        "/data/id",
        "thing",
        None,
    )
    (step,) = app.smoke
    assert (step.method, step.path, step.status, step.json_body, dict(step.save)) == (
        "POST",
        "/things",
        201,
        {"name": "x"},
        {"thing": "/id"},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[event]", r"unknown key\(s\) event; the keys it takes: events, bench, smoke"),
        ('[events]\n"api-09-gone" = { status = 200 }', r"'api-09-gone' is not an event in .*api-01-create"),
        ('[events]\n"api-01-create" = { status = "201" }', r"status = '201' is not understood; give one of status ="),
        ('[events]\n"api-01-create" = { status = 201, returns = true }', "give one of status = <HTTP status>"),
        ('[events]\n"job-01-run" = { returns = false }', "returns = False is not understood"),
        ('[bench]\nread = "api-02-read"', "read needs a row to read: name the request that makes one"),
        (
            '[bench]\nwrite = "api-01-create"\nread = "api-02-read"\nid_from = "/id"\nid_into = "id"',
            r"id_into: 'id' is not a path parameter of api-02-read \(its pathParameters: thing\)",
        ),
        ('[bench]\nwrite = "api-01-create"\nid_from = "id"', r"'id' is not a JSON pointer: write it like \"/id\""),
        ('[bench]\nlists = "api-01-create"', "unknown key.*lists"),
        ('[[smoke]]\nmethod = "FETCH"\npath = "/x"\nstatus = 200', "method = 'FETCH'; one of GET"),
        ('[[smoke]]\nmethod = "GET"\npath = "x"\nstatus = 200', "path = 'x'; a path from the API's root"),
        ('[[smoke]]\nmethod = "GET"\npath = "/x"', "status = None; the HTTP status the step must answer"),
        ('smoke = "GET /health"', r"smoke must be an array of tables: one \[\[smoke\]\] per step"),
        ("[events", "is not valid TOML"),
    ],
)
def test_a_malformed_app_toml_is_refused_naming_the_fix(
    tmp_path: Path, events_dir: Path, text: str, message: str
) -> None:
    with pytest.raises(AppConfigError, match=message):
        _load(tmp_path, events_dir, text)


def test_an_answer_is_held_to_its_expectation() -> None:
    assert Expected(status=201).mismatch(status=201, error_type=None) is None
    assert Expected(status=201).mismatch(status=200, error_type=None) == "expected HTTP 201, HTTP 200"
    assert Expected(status=201).mismatch(status=None, error_type="Boom") == "expected HTTP 201, raised Boom"
    assert Expected().mismatch(status=None, error_type=None) is None
    assert Expected().mismatch(status=None, error_type="Boom") == "expected returns, raised Boom"
    assert Expected(raises="Boom").mismatch(status=None, error_type="Boom") is None
    assert Expected(raises="Boom").mismatch(status=None, error_type=None) == "expected raises Boom, returned"


def test_json_pointers_and_placeholders() -> None:
    document = {"items": [{"id": "a/b", "x~y": 1}]}
    assert json_pointer(document, "/items/0/id") == "a/b"
    assert json_pointer(document, "/items/0/x~0y") == 1
    assert json_pointer(document, "") == document
    with pytest.raises(LookupError, match="/items/1/id: no '1'"):
        json_pointer(document, "/items/1/id")
    assert fill({"path": ["/things/{id}", 3], "n": "{run}-{id}"}, {"id": "7", "run": "r"}, "here") == {
        "path": ["/things/7", 3],
        "n": "r-7",
    }
    with pytest.raises(AppConfigError, match=r"here: \{thing\} is not known here \(known: \{id\}\)"):
        fill("/things/{thing}", {"id": "7"}, "here")
