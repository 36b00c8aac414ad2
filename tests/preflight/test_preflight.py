"""A GPU node is never sent an image it cannot pull: loopback, link-local and plain-HTTP registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad.errors import ConfigError
from nomad.preflight import check_node_can_pull, registry_problem, split_registry
from nomad.registry._state import record_push
from nomad.storage import Storage
from nomad.testing.cli import run_nomad

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("ref", "url", "why"),
    [
        (f"127.0.0.1:5000/demo@{DIGEST}", None, "loopback"),
        (f"127.3.4.5:41234/demo@{DIGEST}", None, "loopback"),
        (f"localhost:5000/demo@{DIGEST}", None, "loopback"),
        (f"[::1]:5000/demo@{DIGEST}", None, "loopback"),
        (f"169.254.10.20:5000/demo@{DIGEST}", None, "link-local"),
        (f"[fe80::1]:5000/demo@{DIGEST}", None, "link-local"),
        (f"reg.example.com:5000/demo@{DIGEST}", "http://reg.example.com:5000", "plain HTTP"),
    ],
)
def test_unreachable_registries_are_named(ref: str, url: str | None, why: str) -> None:
    """Each kind of registry a remote node cannot use is recognised and named."""
    problem = registry_problem(ref, url)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    ("ref", "url"),
    [
        (f"reg.example.com/demo@{DIGEST}", "https://reg.example.com"),
        (f"ghcr.io/org/comfy@{DIGEST}", None),
        (f"org/comfy@{DIGEST}", None),  # Docker Hub
        (
            f"reg.example.com/demo@{DIGEST}",
            "http://other.example.com",
        ),  # http elsewhere, not this ref
    ],
)
def test_reachable_registries_pass(ref: str, url: str | None) -> None:
    """HTTPS registries, Docker Hub and GHCR are not refused."""
    assert registry_problem(ref, url) is None


def test_registry_host_follows_dockers_rule() -> None:
    """A first path part without '.' or ':' (and not localhost) means Docker Hub."""
    assert split_registry("library/busybox") == "docker.io"
    assert split_registry("localhost/x") == "localhost"
    assert split_registry("127.0.0.1:5000/x") == "127.0.0.1:5000"


def test_local_backend_may_use_loopback() -> None:
    """The local backend runs on this machine: a loopback registry is right there."""
    check_node_can_pull(f"127.0.0.1:5000/x@{DIGEST}", "local", None)
    with pytest.raises(ConfigError) as err:
        check_node_can_pull(f"127.0.0.1:5000/x@{DIGEST}", "ssh", None)
    assert err.value.exit_code == 2 and "registry.url" in (err.value.hint or "")


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str) -> Path:
    """A project folder whose last push went to the embedded (loopback, plain HTTP) registry."""
    (tmp_path / "nomad.yaml").write_text(f"project: demo\ninfra:\n  backend: {backend}\n")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    record_push(
        data,
        {
            "ref": f"127.0.0.1:45123/demo:latest@{DIGEST}",
            "registry": "127.0.0.1:45123",
            "repository": "demo",
            "digest": DIGEST,
            "size_bytes": 1000,
        },
    )
    return data


@pytest.mark.parametrize("backend", ["skypilot", "ssh"])
def test_up_dry_run_refuses_loopback_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """`nomad up --dry-run` with a loopback registry and a remote backend: exit 2, the fix, no task printed."""
    data = _project(tmp_path, monkeypatch, backend)
    code, out, err = run_nomad(data, "up", "--dry-run")
    assert code == 2, out + err
    assert "loopback" in err and "registry.url" in err and "nomad registry config" in err
    assert "image_id" not in out


def test_up_refuses_before_anything_is_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `nomad up` is refused before a ledger row or any cluster state exists."""
    data = _project(tmp_path, monkeypatch, "skypilot")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    code, _out, err = run_nomad(data, "up")
    assert code == 2 and "loopback" in err
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


def test_serve_refuses_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: Storage
) -> None:
    """`nomad serve` with a remote backend and a loopback image exits 2 at start, not after a paid wake."""
    data = _project(tmp_path, monkeypatch, "skypilot")
    s3 = storage.settings
    for key, value in {
        "NOMAD_S3_ENDPOINT": s3.endpoint_url,
        "NOMAD_S3_ACCESS_KEY_ID": s3.access_key_id,
        "NOMAD_S3_SECRET_ACCESS_KEY": s3.secret_access_key,
        "NOMAD_S3_REGION": s3.region,
    }.items():
        monkeypatch.setenv(key, str(value))
    code, _out, err = run_nomad(data, "serve")
    assert code == 2 and "loopback" in err, err


def test_up_dry_run_with_reachable_image_prints_the_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same project with --image on an HTTPS registry passes the check (the dry run prints the task)."""
    pytest.importorskip("sky")
    data = _project(tmp_path, monkeypatch, "skypilot")
    code, out, err = run_nomad(data, "up", "--dry-run", "--image", f"reg.example.com/demo@{DIGEST}")
    assert code == 0, err
    assert f"reg.example.com/demo@{DIGEST}" in out
