"""`nomad submit` of a graph file that can only fail is refused before anything is queued."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nomad.queue import open_queue
from nomad.testing.cli import run_nomad

CASES = {
    "not_json.json": (b"this is not json {", "not valid JSON"),
    "binary.json": (b"\x89PNG\r\n\x1a\n\x00\xff", "binary data"),
    "list.json": (
        json.dumps([{"class_type": "SaveImage"}]).encode(),
        "a JSON list, not an API-format graph",
    ),
    "scalar.json": (b"42", "a JSON int"),
    "empty.json": (b"{}", "the graph has no nodes"),
    "ui.json": (json.dumps({"nodes": [], "links": []}).encode(), "UI-format workflow"),
    "noclass.json": (json.dumps({"1": {"inputs": {}}}).encode(), "have no class_type"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_submit_refuses_a_graph_that_can_only_fail(name: str, tmp_path: Path) -> None:
    """Exit 2 with one line naming the file and the problem; the queue stays empty."""
    data, expected = CASES[name]
    path = tmp_path / name
    path.write_bytes(data)
    code, _, err = run_nomad(tmp_path / "d", "submit", str(path))
    assert code == 2, err
    assert expected in err and name in err
    queue = open_queue(None, tmp_path / "d")
    assert queue.list() == []
    queue.close()


def test_submit_accepts_an_api_graph(tmp_path: Path) -> None:
    """A proper API-format graph file is queued (stored by absolute path)."""
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}))
    code, out, err = run_nomad(tmp_path / "d", "submit", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["workflow"] == str(path.resolve())
