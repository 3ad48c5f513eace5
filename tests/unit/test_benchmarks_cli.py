"""`python -m benchmarks` runs the chosen benchmarks and writes each figure with its baseline and ratio."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_benchmarks_command_writes_figures_with_baselines(tmp_path):
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "upload_prep,comfy_graph",
                          "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    refs = next(f for f in report["figures"] if "reference images" in f.get("name", ""))
    assert refs["baseline"] > 0 and refs["ratio"] == round(refs["value"] / refs["baseline"], 3)
    assert refs["unit"] == "s" and refs["goal"]
    skipped = next(f for f in report["figures"] if f["module"] == "comfy_graph")
    assert "COMFYUI_DIR" in skipped["skipped"]                  # no ComfyUI here: said, not failed
    assert "| figure | ours | baseline" in run.stdout and "cores" in report["machine"]
