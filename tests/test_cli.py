"""train/cli.py: the scripts' one-line argument errors, raised before TensorFlow loads."""


import pytest

from .conftest import load_script


def _cli():
    return load_script("train", "cli.py")


@pytest.mark.parametrize("argv,path,message", [
    (["export.py", "extra"], "x.keras", "unexpected arguments ['extra']"),
    (["export.py"], None, "--model_path is required"),
    (["export.py"], "missing.keras", "--model_path missing.keras: no such file"),
])
def test_model_file_fails_with_the_problem(argv, path, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as exit_:
        _cli().model_file(argv, path)
    assert exit_.value.code == f"export.py: error: {message}"


def test_model_file_returns_an_existing_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"")
    assert _cli().model_file(["export.py"], str(path)) == str(path)
