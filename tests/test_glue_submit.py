"""GLUE leaderboard files: label strings and STS-B scores as gluebenchmark.com reads them, WNLI's majority
file, and gathering one model's files of one seed (stage function and `xlt glue-submission`)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from stages.common import StageError
from stages.glue import get_task
from stages.glue_submit import (SUBMISSION_FILES, TEST_DIR, collect_submission, prediction_strings,
                                write_predictions, write_wnli_majority)


def test_prediction_strings_are_the_leaderboard_labels():
    assert prediction_strings(get_task("mnli"), [0, 1, 2, 0]) == ["entailment", "neutral", "contradiction",
                                                                 "entailment"]
    assert prediction_strings(get_task("rte"), [1, 0]) == ["not_entailment", "entailment"]
    assert prediction_strings(get_task("qnli"), [0]) == ["entailment"]
    for task in ("cola", "sst2", "mrpc", "qqp"):
        assert prediction_strings(get_task(task), [1, 0, 1]) == ["1", "0", "1"]
    # STS-B: clipped to the gold range [0, 5], 3 decimals
    assert prediction_strings(get_task("stsb"), [-0.3, 2.4567, 5.2, 0.0]) == ["0.000", "2.457", "5.000", "0.000"]


def test_written_file_has_the_header_and_one_row_per_index(tmp_path):
    write_predictions(tmp_path / "RTE.tsv", ["0", "1", "2"], ["entailment", "not_entailment", "entailment"])
    assert (tmp_path / "RTE.tsv").read_text() == "index\tprediction\n0\tentailment\n1\tnot_entailment\n2\tentailment\n"
    with pytest.raises(StageError, match="2 test indices but 1 predictions"):
        write_predictions(tmp_path / "x.tsv", ["0", "1"], ["0"])


def test_wnli_majority_file(tmp_path):
    assert not write_wnli_majority(tmp_path, tmp_path / "WNLI.tsv")
    (tmp_path / "WNLI").mkdir()
    (tmp_path / "WNLI" / "test.tsv").write_text("index\tsentence1\tsentence2\n0\tA\tB\n1\tC\tD\n2\tE\tF\n")
    assert write_wnli_majority(tmp_path, tmp_path / "WNLI.tsv")
    assert (tmp_path / "WNLI.tsv").read_text() == "index\tprediction\n0\t0\n1\t0\n2\t0\n"


def fake_finetune(folder: Path, files: dict[str, str]) -> Path:
    (folder / TEST_DIR).mkdir(parents=True)
    for name, text in files.items():
        (folder / TEST_DIR / name).write_text(text)
    return folder


def test_collect_submission_gathers_zips_and_lists_what_is_missing(tmp_path):
    rte = fake_finetune(tmp_path / "rte", {"RTE.tsv": "index\tprediction\n0\tentailment\n"})
    mnli = fake_finetune(tmp_path / "mnli", {n: f"index\tprediction\n0\t{n}\n" for n in ("MNLI-m.tsv", "MNLI-mm.tsv",
                                                                                         "AX.tsv")})
    root = tmp_path / "glue"
    (root / "WNLI").mkdir(parents=True)
    (root / "WNLI" / "test.tsv").write_text("index\tsentence1\tsentence2\n0\tA\tB\n")
    out = tmp_path / "sub" / "m-seed1"
    out.mkdir(parents=True)
    (out / "CoLA.tsv").write_text("stale, from an earlier collection\n")
    sub = collect_submission([rte, mnli, tmp_path / "no-test-files"], out, root)
    assert sub.files == ["MNLI-m.tsv", "MNLI-mm.tsv", "RTE.tsv", "WNLI.tsv", "AX.tsv"]
    assert sub.missing == ["CoLA.tsv", "SST-2.tsv", "MRPC.tsv", "STS-B.tsv", "QQP.tsv", "QNLI.tsv"]
    assert len(SUBMISSION_FILES) == 11 and set(sub.files) | set(sub.missing) == set(SUBMISSION_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(sub.files)   # the stale CoLA.tsv is gone
    with zipfile.ZipFile(sub.zip_file) as z:
        assert sorted(z.namelist()) == sorted(sub.files)          # at the top level, as the site wants
        assert z.read("RTE.tsv").decode() == "index\tprediction\n0\tentailment\n"
        assert z.read("WNLI.tsv").decode() == "index\tprediction\n0\t0\n"
    assert Path(sub.zip_file) == tmp_path / "sub" / "m-seed1.zip"
    with pytest.raises(StageError, match="RTE.tsv comes from both"):
        collect_submission([rte, fake_finetune(tmp_path / "rte2", {"RTE.tsv": "x"})], tmp_path / "o")


def test_cli_gathers_one_model_and_seed_of_a_sweep(tmp_path, capsys):
    """`xlt glue-submission` on the demo sweep: finished fine-tune folders are marked by hand (settings.json
    with the node's hash, DONE), so no training runs."""
    from orchestrator.cli import main
    from orchestrator.config import DEFAULT_CONFIG, load_sweep
    from orchestrator.graph import build_graph
    from stages.common import write_json

    overrides = [f"output_dir={tmp_path / 'run'}", "finetune.predict_test=true"]
    graph = build_graph(load_sweep(DEFAULT_CONFIG, overrides))
    for task, name in (("rte", "RTE.tsv"), ("sst2", "SST-2.tsv")):
        for seed in (1, 2):
            node = graph.nodes[f"finetune/en-scratch/{task}/seed{seed}"]
            d = fake_finetune(graph.node_dir(node.id), {name: f"index\tprediction\n0\tseed{seed}\n"})
            write_json(d / "settings.json", {"hash": node.hash})
            if task == "rte" or seed == 1:   # SST-2 seed 2 never finished
                (d / "DONE").write_text("{}")
    out = tmp_path / "upload"
    assert main(["glue-submission", str(DEFAULT_CONFIG), *overrides, "--model", "en-scratch", "--seed", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["RTE.tsv"]
    assert (out / "RTE.tsv").read_text() == "index\tprediction\n0\tseed2\n"
    assert "warning: finetune/en-scratch/sst2/seed2 is pending, not done" in printed
    assert f"upload {tmp_path / 'upload.zip'}" in printed and "missing" in printed
    assert main(["glue-submission", str(DEFAULT_CONFIG), *overrides, "--model", "nope", "--seed", "1"]) == 2
    assert "no GLUE fine-tunes of model 'nope'" in capsys.readouterr().err
