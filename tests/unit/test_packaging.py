"""The install metadata matches the tree: every package is shipped, and the two dependency lists agree."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_nodes_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    actual = {"happyhorse" + ("." + ".".join(p.parent.relative_to(ROOT / "nodes").parts) if p.parent != ROOT / "nodes"
                              else "") for p in (ROOT / "nodes").rglob("__init__.py")}
    assert listed == actual


def test_requirements_match_pyproject_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    norm = lambda s: s.replace('"', "'").replace(" ", "")  # noqa: E731
    assert sorted(map(norm, deps)) == sorted(map(norm, reqs))


def test_comfy_registry_metadata_present():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert (ROOT / "LICENSE").is_file() and (ROOT / "__init__.py").is_file()
