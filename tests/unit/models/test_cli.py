"""`rollspec make-models`: arguments parse without importing torch, and reach build_zoo."""

import subprocess
import sys

from rollspec.launch import cli


def test_help_does_not_import_torch():
    code = "import sys; from rollspec.launch import cli; cli._parser(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_make_models_passes_its_arguments_to_build_zoo(monkeypatch, tmp_path, capsys):
    import rollspec.models.manifest as manifest
    import rollspec.models.zoo as zoo

    calls = []
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the command sets it for torch; keep this process clean
    monkeypatch.setattr(zoo, "build_zoo", lambda out, **kw: calls.append((out, kw)) or zoo.ZooPaths(tmp_path))
    monkeypatch.setattr(manifest, "read_manifest", lambda root: {"root": str(root)})
    monkeypatch.setattr(manifest, "summarize", lambda m: [f"summary of {m['root']}"])
    assert cli.main(["make-models", "--out", str(tmp_path), "--seed", "3", "--force"]) == 0
    assert calls == [(str(tmp_path), {"seed": 3, "progress": True, "force": True})]
    assert capsys.readouterr().out.splitlines() == [str(tmp_path), f"summary of {tmp_path}"]
