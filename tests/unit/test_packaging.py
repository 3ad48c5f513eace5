"""The install metadata matches the tree: every package is shipped, and the two dependency lists agree."""
import subprocess
import sys
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


def test_dependency_floors_exclude_versions_with_known_advisories():
    """aiohttp before 3.10.11 (request smuggling) and 3.13.3 (decompression bomb), Pillow before 10.3."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {d.split(">=")[0].strip().lower(): tuple(int(p) for p in d.split(">=")[1].split(";")[0].split("."))
              for d in deps if ">=" in d}
    assert floors["aiohttp"] >= (3, 13, 3) and floors["pillow"] >= (10, 3)


def test_comfy_registry_metadata_present():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["requires-comfyui"].startswith(">=")
    assert (ROOT / "LICENSE").is_file() and (ROOT / "__init__.py").is_file()


def test_nothing_needs_more_than_python_310():
    """requires-python says 3.10: no 3.11-only syntax or standard-library use anywhere in the pack."""
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.10"
    r = subprocess.run([sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "--target=3.10-",
                        "--violations", "--no-tips", "__init__.py", "nodes"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_config_file_is_read_without_tomllib(tmp_path):
    """Python 3.10 has no tomllib: the config file is parsed by tomli (a dependency on 3.10) instead."""
    (tmp_path / "config.toml").write_text('[keys]\ndashscope = "sk-from-file"\n')
    code = ("import sys; sys.modules['tomllib'] = None\n"         # makes `import tomllib` fail, as on 3.10
            "from happyhorse.engine import config\n"
            "s = config.Settings.load()\n"
            "print(config.tomllib.__name__, s.api_key('dashscope', 'NO_SUCH_VAR').reveal())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"HAPPYHORSE_CONFIG": str(tmp_path / "config.toml"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["tomli", "sk-from-file"]
