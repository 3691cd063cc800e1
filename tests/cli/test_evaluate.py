"""geosynth evaluate from the command line: report, table, plots, and bad input."""

import json
from pathlib import Path

import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GEOSYNTH_CACHE", str(tmp_path / "cache"))


def test_evaluate_writes_report_plots_and_prints_tables(
    cli, toy_data: Path, toy_models: dict[str, Path], eurosat: Path, tmp_path: Path
) -> None:
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    res = cli(
        "evaluate", toy_data, toy_data, "--features", toy_models["dinov2"],
        "--vae", toy_models["sd"], "--resolution", "32", "--kid-subsets", "5",
        "--plots", plots, "--out", out, "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report == json.loads(out.read_text())
    assert (
        json.loads(out.with_name("report.json.provenance.json").read_text())["command"]
        == "evaluate"
    )
    assert {p.name for p in plots.iterdir()} == {
        "per-class.png", "color-error.png", "latent-color-error.png",
        "real-vs-synthetic.png", "provenance.json",
    }  # fmt: skip
    for p in report["plots"]:
        assert Image.open(p).size[0] > 100
    assert "warning" in res.err and "rank-deficient" in res.err
    res = cli("evaluate", toy_data, toy_data, "--metrics", "color", "--classes", "water,urban")
    assert res.code == 0, res.err
    assert "image space" in res.out and "colour fidelity" in res.out and "urban" in res.out

    res = cli(
        "evaluate", toy_data, eurosat, "--real-split", "train", "--features",
        toy_models["dinov2"], "--metrics", "fid,prdc,color", "--kid-subsets", "5",
    )  # fmt: skip
    assert res.code == 0, res.err
    # Toy classes and EuroSAT classes share no name: overall metrics only, and the note says so.
    assert "feature space" in res.out and "colour fidelity" not in res.out
    assert "no class name is shared" in res.err


def test_evaluate_help_has_an_example(cli) -> None:
    res = cli("evaluate", "--help")
    assert res.code == 0 and "Example" in res.out and "--by-class" in res.out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "fid,sharpness"], "--metrics: unknown metric 'sharpness'"),
        (["--out", "report.txt"], "expected a path ending in .json"),
        (["--features", "inception"], "--features inception: cannot load the FID Inception"),
        (["--features", "inception:none.pth"], "no such weights file none.pth"),
    ],
)
def test_evaluate_bad_options_exit_2_with_one_line(
    cli, toy_data: Path, extra: list[str], message: str, monkeypatch, tmp_path: Path
) -> None:
    # Offline, whatever the machine: an empty torch.hub cache and a download that cannot connect.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(
        "torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3", "http://127.0.0.1:9/w.pth"
    )
    res = cli("evaluate", toy_data, toy_data, *extra)
    assert res.code == 2, res.err
    lines = [ln for ln in res.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]


def test_evaluate_missing_input_names_it(cli, toy_data: Path, tmp_path: Path) -> None:
    res = cli("evaluate", tmp_path / "nope", toy_data)
    assert res.code == 2 and "nope" in res.err


def test_evaluate_will_not_replace_a_foreign_plots_directory(
    cli, toy_data: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    res = cli("evaluate", toy_data, toy_data, "--metrics", "color", "--plots", mine)
    assert res.code == 2 and "--plots" in res.err and "not a geosynth output" in res.err
    assert (mine / "thesis.tex").read_text() == "keep me"
