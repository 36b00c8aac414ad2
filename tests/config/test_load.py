"""Unit tests for nomad.yaml loading: line numbers, env overrides, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from nomad.config import load_config, load_text
from nomad.config.reference import render_reference
from nomad.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    """A typo'd nested key is reported with file:line and the dotted key path."""
    p = tmp_path / "nomad.yaml"
    p.write_text("project: demo\ninfra:\n  gpus: [RTX4090]\n  idle_minuts: 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    assert str(exc.value) == f"{p}:4: infra.idle_minuts: unknown key (typo?)"


def test_wrong_type_reports_value(tmp_path: Path) -> None:
    """A wrong type names the key, its line and what was given."""
    p = tmp_path / "nomad.yaml"
    p.write_text("project: demo\ninfra:\n  max_price_per_hour: cheap\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ={})
    msg = str(exc.value)
    assert msg.startswith(f"{p}:3: infra.max_price_per_hour: ")
    assert "'cheap'" in msg


def test_invalid_yaml_has_line() -> None:
    """Broken YAML is one line with the file and the line of the fault."""
    with pytest.raises(ConfigError) as exc:
        load_text("project: demo\ninfra:\n  gpus: [RTX4090\n  spot: true\n", name="x.yaml")
    assert str(exc.value).startswith("x.yaml:")
    assert "invalid YAML" in str(exc.value)
    assert exc.value.exit_code == 2


def test_list_item_error_points_at_item() -> None:
    """An error inside a list item (a model file) points at that item's line."""
    text = (
        "models:\n  flux:\n    - dest: vae/ae.safetensors\n      source: /x\n"
        "    - dest: nowhere/ae.safetensors\n      source: /y\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_text(text)
    assert str(exc.value).startswith("nomad.yaml:5: models.flux.1.dest: dest must be FOLDER/FILE")


def test_env_overrides_and_secrets_hidden(tmp_path: Path) -> None:
    """NOMAD_* variables override the file, and secrets never show in repr or dumps."""
    p = tmp_path / "nomad.yaml"
    p.write_text("registry:\n  url: http://file-value\n")
    cfg = load_config(
        p,
        environ={"NOMAD_REGISTRY_URL": "http://env-value", "NOMAD_REGISTRY_PASSWORD": "hunter2",
                 "NOMAD_PROXY": "socks5h://127.0.0.1:9050"},
    )
    assert cfg.registry.url == "http://env-value"
    assert cfg.registry.password is not None
    assert cfg.registry.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.model_dump_json()
    assert cfg.privacy.enabled is True


def test_unknown_model_set_in_image() -> None:
    """image.model_sets naming a set that doesn't exist is a config error."""
    with pytest.raises(ConfigError, match="unknown model sets: nope"):
        load_text("image:\n  model_sets: [nope]\n")


def test_reference_page_is_current() -> None:
    """docs/configuration.md matches the schema (regenerate with python -m nomad.config.reference)."""
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page == render_reference()


def test_workflow_dirs_anchor_to_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative workflows.dirs resolve against nomad.yaml's folder, whatever the working directory."""
    sub = tmp_path / "deploy"
    sub.mkdir()
    p = sub / "nomad.yaml"
    p.write_text("workflows:\n  dirs: [my-workflows, /abs/flows]\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(p, environ={})
    assert cfg.workflows.dirs == [str(sub / "my-workflows"), "/abs/flows"]
