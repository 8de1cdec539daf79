"""The Python module against the library and the CLI: arrays in and out, errors, training
hooks, interruption, and the same numbers as zscrgan_cuda for the same inputs and seed."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import zscrgan
from conftest import ROOT, BUILD, small_config


def arrays(d):
    return (d.image_features, d.image_labels, d.text_features, d.text_labels,
            d.train_classes, d.test_classes)


# ---- arrays in and out --------------------------------------------------------------------

def test_dataset_arrays_round_trip(tmp_path):
    d = zscrgan.Dataset.synthetic(seen_classes=5, unseen_classes=3, images_per_class=6,
                                  text_dim=7, image_dim=9, seed=11)
    assert d.image_features.shape == (48, 9) and d.image_features.dtype == np.float32
    assert not d.image_features.flags.writeable
    copy = zscrgan.Dataset.from_arrays(*arrays(d), name="copy")
    for a, b in zip(arrays(d), arrays(copy)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    # float64 and Python lists are converted; the values survive.
    as64 = zscrgan.Dataset.from_arrays(d.image_features.astype(np.float64), list(d.image_labels),
                                       d.text_features.astype(np.float64), d.text_labels.tolist(),
                                       d.train_classes, d.test_classes)
    np.testing.assert_array_equal(as64.text_features, d.text_features)
    copy.save(tmp_path / "ds")
    loaded = zscrgan.Dataset.load(tmp_path / "ds")
    assert loaded.name == "copy"
    for a, b in zip(arrays(d), arrays(loaded)):
        np.testing.assert_array_equal(a, b)
    # The views keep the dataset's memory alive.
    features = zscrgan.Dataset.synthetic(seed=3).text_features
    assert np.isfinite(features).all() and features.shape[1] == 64


def test_torch_cpu_tensor_is_read_in_place(trained):
    torch = pytest.importorskip("torch", reason="torch is not installed (the zero-copy case)")
    result, data, _ = trained
    texts = torch.from_numpy(np.array(data.text_features))
    assert zscrgan._core._address(zscrgan._matrix(texts, "texts")) == texts.data_ptr()
    # A strided view is converted rather than refused, with the same results.
    model = zscrgan.load(result.best_checkpoint, device="cpu")
    i_t, s_t = model.retrieve(texts, torch.from_numpy(np.array(data.image_features)), k=7)
    i_n, s_n = model.retrieve(data.text_features, data.image_features, k=7)
    np.testing.assert_array_equal(i_t, i_n)
    np.testing.assert_array_equal(s_t, s_n)
    strided = torch.from_numpy(np.array(data.text_features)).t().contiguous().t()
    np.testing.assert_array_equal(model.embed_texts(strided), model.embed_texts(data.text_features))


def test_numpy_input_is_read_in_place():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert zscrgan._core._address(zscrgan._matrix(a, "a")) == a.ctypes.data
    # An __array_interface__ object (no DLPack) is read in place too.

    class Exported:
        __array_interface__ = a.__array_interface__

    assert zscrgan._core._address(zscrgan._matrix(Exported(), "a")) == a.ctypes.data


# ---- errors -------------------------------------------------------------------------------

def test_bad_dataset_arrays_raise_value_error_with_the_library_message():
    d = zscrgan.Dataset.synthetic(seen_classes=4, unseen_classes=2, images_per_class=5)
    with pytest.raises(ValueError, match=r"^the given dataset: .*image_labels|^the given dataset"):
        zscrgan.Dataset.from_arrays(d.image_features, d.image_labels[:-1], d.text_features,
                                    d.text_labels, d.train_classes, d.test_classes)
    bad = np.array(d.image_features)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        zscrgan.Dataset.from_arrays(bad, *arrays(d)[1:])
    with pytest.raises(ValueError, match="2-D"):
        zscrgan.Dataset.from_arrays(d.image_labels, *arrays(d)[1:])


def test_bad_config_raises_value_error_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="the config dict.*'batch_sise'"):
        zscrgan.train(small_config(batch_sise=3), output_dir=tmp_path / "r")
    with pytest.raises(ValueError, match="rounds"):
        zscrgan.train(small_config(rounds=-1), output_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_missing_files_raise_os_error(tmp_path):
    with pytest.raises(OSError, match="nowhere: dataset folder not found"):
        zscrgan.Dataset.load(tmp_path / "nowhere")
    with pytest.raises(OSError, match="nowhere.safetensors: cannot open"):
        zscrgan.load(tmp_path / "nowhere.safetensors")
    with pytest.raises(OSError, match="nowhere.json: cannot open"):
        zscrgan.train(str(tmp_path / "nowhere.json"))


def test_shapes_the_model_does_not_take_raise_value_error(trained):
    result, data, _ = trained
    model = zscrgan.load(result.best_checkpoint, device="cpu")
    with pytest.raises(ValueError, match=r"^texts: shape \(3, 5\): expected 12 columns"):
        model.embed_texts(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="top_k 1000 exceeds the gallery's"):
        model.retrieve(data.text_features, data.image_features, k=1000)
    with pytest.raises(ValueError, match=r"samples must be an integer in \[1, "):
        model.embed_texts(data.text_features, samples=0)
    # Out-of-range integers are the same one-line ValueError, not the binding's TypeError.
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 18446744073709551615\], got -1$"):
        model.embed_texts(data.text_features, seed=-1)
    with pytest.raises(ValueError, match=r"^k must be an integer"):
        model.retrieve(data.text_features, data.image_features, k=2**40)
    with pytest.raises(ValueError, match=r"^chunk_rows: expected an integer"):
        model.embed_images(data.image_features, chunk_rows=2.5)


def test_unusable_device_raises_runtime_error(trained):
    result, _, _ = trained
    try:
        zscrgan.load(result.best_checkpoint, device="cuda")
    except RuntimeError as e:
        assert not isinstance(e, (ValueError, OSError))
        assert str(e).startswith("--device cuda: ")
    else:
        pytest.skip("a GPU is usable here: --device cuda succeeds")


# ---- training hooks -----------------------------------------------------------------------

def test_evaluate_equals_the_logged_round(trained):
    result, data, _ = trained
    assert len(result.history) == 3
    logged = result.history[result.best_round - 1]
    assert logged["round"] == result.best_round
    got = zscrgan.load(result.best_checkpoint, device="cpu").evaluate(data)
    for key in ("k", "prec_at_k", "map_at_k", "top1"):
        assert got[key] == logged[key], key
    lines = (pathlib.Path(result.output_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l) for l in lines] == result.history


def test_on_round_returning_false_stops_the_run(tmp_path):
    seen = []

    def on_round(m):
        seen.append(m["round"])
        return m["round"] < 2

    r = zscrgan.train(small_config(rounds=6), output_dir=tmp_path, on_round=on_round, quiet=True)
    assert seen == [1, 2] and [m["round"] for m in r.history] == [1, 2] and r.stopped
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "checkpoints" / "last.safetensors").exists()


def test_a_folder_holding_an_earlier_run_is_replaced_only_with_overwrite(tmp_path):
    zscrgan.train(small_config(rounds=1), output_dir=tmp_path, quiet=True)
    last = tmp_path / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    with pytest.raises(ValueError, match="holds an earlier run.*overwrite=True"):
        zscrgan.train(small_config(rounds=2), output_dir=tmp_path, quiet=True)
    assert last.read_bytes() == before
    r = zscrgan.train(small_config(rounds=2), output_dir=tmp_path, quiet=True, overwrite=True)
    assert [m["round"] for m in r.history] == [1, 2]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_keeps_the_configs_device_unless_given_one(tmp_path):
    try:
        zscrgan.train(small_config(rounds=1, device="cuda"), output_dir=tmp_path, quiet=True)
    except RuntimeError as e:  # no usable GPU here: the config's "cuda" was kept, not "auto"
        assert "cuda" in str(e)
    else:
        assert json.loads((tmp_path / "config.json").read_text())["device"] == "cuda"


def test_exception_in_on_round_propagates_after_the_checkpoint(tmp_path):
    def on_round(m):
        raise LookupError("from the callback")

    with pytest.raises(LookupError, match="from the callback"):
        zscrgan.train(small_config(rounds=4), output_dir=tmp_path, on_round=on_round, quiet=True)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_interrupt_main_raises_keyboard_interrupt_and_saves(tmp_path):
    import _thread

    def on_round(m):
        _thread.interrupt_main()  # as Ctrl-C would, seen at the next poll

    with pytest.raises(KeyboardInterrupt):
        zscrgan.train(small_config(rounds=5), output_dir=tmp_path, on_round=on_round, quiet=True)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    # The saved state resumes with the CLI like a run stopped by SIGINT.
    assert (tmp_path / "checkpoints" / "last.safetensors").exists()


def test_interrupt_from_another_thread_stops_the_run_between_steps(tmp_path):
    import _thread
    import threading

    # No on_round: no Python code runs during training, so only should_stop's poll sees it.
    timer = threading.Timer(0.5, _thread.interrupt_main)
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            zscrgan.train(small_config(rounds=20000, e_step_iters=50), output_dir=tmp_path,
                          quiet=True)
    finally:
        timer.cancel()
    # Stopped where the interrupt came (polled between steps), not after every round ran.
    assert time.monotonic() - start < 30, "the interrupt was not seen while training"
    rounds = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert 0 < len(rounds) < 20000
    assert (tmp_path / "checkpoints" / "last.safetensors").exists()


def test_sigint_during_training_raises_keyboard_interrupt(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {[str(BUILD / "python"), str(pathlib.Path(__file__).parent)]!r}
        import zscrgan
        from conftest import small_config
        try:
            zscrgan.train(small_config(rounds=1000, e_step_iters=200), output_dir={str(tmp_path)!r},
                          on_round=lambda m: print("round", m["round"], flush=True), quiet=True)
        except KeyboardInterrupt as e:
            print("interrupted:", e, flush=True)
            sys.exit(7)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith("round 1")
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 7, out
    assert "interrupted: training stopped by SIGINT; state saved to" in out
    assert (tmp_path / "checkpoints" / "last.safetensors").exists()


# ---- the same numbers as the CLI ----------------------------------------------------------

VOLATILE = ("seconds", "train_seconds")


def stable(m):
    return {k: v for k, v in m.items() if k not in VOLATILE}


def test_python_and_cli_runs_are_bit_identical(tmp_path, cli):
    cfg = small_config(rounds=2, output_dir=str(tmp_path / "cli"))
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    subprocess.run([cli, "--config", str(tmp_path / "c.json")], check=True, capture_output=True)
    cli_rounds = [json.loads(l) for l in (tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()]
    py = zscrgan.train(tmp_path / "c.json", output_dir=tmp_path / "py", device="cpu", quiet=True)
    assert [stable(m) for m in py.history] == [stable(m) for m in cli_rounds]
    # ... and from arrays: the dataset the config names, handed over as arrays.
    d = zscrgan.Dataset.from_config(cfg)
    from_arrays = zscrgan.Dataset.from_arrays(*[np.array(a) for a in arrays(d)])
    py2 = zscrgan.train(cfg, dataset=from_arrays, output_dir=tmp_path / "py2", quiet=True)
    assert [stable(m) for m in py2.history] == [stable(m) for m in cli_rounds]


def write_npy(path, a):
    np.save(path, np.ascontiguousarray(a, dtype=np.float32))


@pytest.mark.parametrize("samples,chunk_rows", [(1, 65536), (3, 7)])
def test_retrieve_equals_the_cli_on_the_same_files(trained, tmp_path, cli, samples, chunk_rows):
    result, data, _ = trained
    write_npy(tmp_path / "T.npy", data.text_features)
    write_npy(tmp_path / "I.npy", data.image_features)
    subprocess.run([cli, "retrieve", "--checkpoint", result.best_checkpoint, "--texts",
                    str(tmp_path / "T.npy"), "--gallery", str(tmp_path / "I.npy"), "--top-k", "10",
                    "--samples", str(samples), "--seed", "4", "--chunk-rows", str(chunk_rows),
                    "--device", "cpu", "--out", str(tmp_path / "R.json")],
                   check=True, capture_output=True)
    record = json.loads((tmp_path / "R.json").read_text())
    model = zscrgan.load(result.best_checkpoint, device="cpu")
    idx, scores = model.retrieve(np.load(tmp_path / "T.npy"), np.load(tmp_path / "I.npy"), k=10,
                                 samples=samples, seed=4, chunk_rows=chunk_rows)
    assert idx.shape == (len(data.text_features), 10) and idx.dtype == np.int64
    assert idx.tolist() == [q["indices"] for q in record["queries"]]
    np.testing.assert_array_equal(scores, np.array([q["scores"] for q in record["queries"]],
                                                   dtype=np.float32))


def test_embed_equals_the_cli_on_the_same_files(trained, tmp_path, cli):
    result, data, _ = trained
    write_npy(tmp_path / "T.npy", data.text_features)
    write_npy(tmp_path / "I.npy", data.image_features)
    subprocess.run([cli, "embed", "--checkpoint", result.best_checkpoint, "--texts",
                    str(tmp_path / "T.npy"), "--images", str(tmp_path / "I.npy"), "--samples", "2",
                    "--seed", "9", "--chunk-rows", "50", "--device", "cpu",
                    "--out", str(tmp_path / "emb")], check=True, capture_output=True)
    model = zscrgan.load(result.best_checkpoint, device="cpu")
    t = model.embed_texts(data.text_features, samples=2, seed=9)
    v = model.embed_images(data.image_features, chunk_rows=50)
    assert t.shape == (len(data.text_features), model.embed_dim) and t.dtype == np.float32
    np.testing.assert_array_equal(t, np.load(tmp_path / "emb" / "text_embeddings.npy"))
    np.testing.assert_array_equal(v, np.load(tmp_path / "emb" / "image_embeddings.npy"))
    # The run's seed draws the queries the run evaluated with; another seed other queries.
    assert not np.array_equal(t, model.embed_texts(data.text_features, samples=2, seed=10))


def test_import_interchange_writes_the_same_dataset(tmp_path):
    d = zscrgan.Dataset.synthetic(seen_classes=4, unseen_classes=2, images_per_class=5, seed=2)
    d.save(tmp_path / "src")
    summary = zscrgan.import_dataset("interchange", tmp_path / "src", tmp_path / "out")
    assert "classes" in summary
    back = zscrgan.Dataset.load(tmp_path / "out")
    for a, b in zip(arrays(d), arrays(back)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="format"):
        zscrgan.import_dataset("pickle", tmp_path / "src", tmp_path / "out2")
