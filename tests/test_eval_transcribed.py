"""experiments/eval_transcribed.py on the shared recordings with a tiny baseline."""

import json

import jax
import numpy as np
import pytest

from experiments import eval_transcribed
from mohaq_jax import train
from mohaq_jax.data import phone_times as pt
from mohaq_jax.models import sru
from mohaq_jax.models.sru import init_params
from mohaq_jax.runtime import checkpoint
from tests.real_speech import REAL_SPEECH, needs_real_speech

LIBRIVOX = "sense_and_sensibility_01_austen_64kb-0880"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """3 speakers x 1 s cut from the shared recordings, with HTS mono .lab times."""
    import soundfile

    root = tmp_path_factory.mktemp("real")
    sources = {
        "arctic": (
            REAL_SPEECH / "arctic" / "arctic_a0009.wav",
            pt.read_hts_lab(REAL_SPEECH / "arctic" / "arctic_a0009_phone.lab"),
        ),
        "librivox": (
            REAL_SPEECH / "librivox" / (LIBRIVOX + ".wav"),
            pt.read_phone_json(REAL_SPEECH / "librivox" / (LIBRIVOX + ".phone.json")),
        ),
        "mfa": (
            REAL_SPEECH / "mfa" / "acoustic_corpus.wav",
            pt.read_textgrid(REAL_SPEECH / "mfa" / "acoustic_corpus.TextGrid"),
        ),
    }
    for speaker, (audio, times) in sources.items():
        samples, rate = soundfile.read(audio, dtype="int16")
        offset = 1.0 if speaker == "mfa" else 0.0  # skip the long lead-in silence
        (root / speaker).mkdir()
        soundfile.write(
            root / speaker / "a.wav",
            samples[int(offset * rate) : int((offset + 1.0) * rate)],
            rate,
        )
        lines = [
            f"{round(1e7 * (max(i.start_s, offset) - offset))} "
            f"{round(1e7 * (min(i.end_s, offset + 1.0) - offset))} "
            f"{pt.to_timit39(i.phone)}"
            for i in times
            if i.end_s > offset and i.start_s < offset + 1.0
        ]
        (root / speaker / "a.lab").write_text("\n".join(lines) + "\n")
    return root


@needs_real_speech
def test_eval_transcribed_reports_per_and_frame_error(
    tiny_folder, tmp_path, capsys, monkeypatch
):
    config = sru.Config(
        n_features=69, n_classes=39, hidden=8, n_layers=1, n_proj=0, dropout=0.0
    )
    # An untrained model stands in for the baseline (training one takes too long).
    params = jax.jit(init_params, static_argnums=1)(jax.random.key(0), config)
    meta = {
        "model_config": config.to_dict(),
        "data_settings": {"name": "espeak"},
        "epoch": 0,
        "best_dev_rates": {"per": 0.5, "fer": 0.4},
    }
    ckpt = tmp_path / "baseline.msgpack"
    from mohaq_jax import train

    monkeypatch.setattr(
        train,
        "load_params",
        lambda path: (params, meta) if path == ckpt else pytest.fail(str(path)),
    )
    out = tmp_path / "rows.json"
    code = eval_transcribed.main(
        [
            "--corpus-dir",
            str(tiny_folder),
            "--labels",
            "given",
            "--cache-dir",
            str(tmp_path),
            "--baseline",
            str(ckpt),
            "--json",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "domain gap: PER (smoothed) 0.5000 on its own dev set" in text
    assert "trained on synthesized speech" in text and "| mfa | 1 |" in text
    doc = json.loads(out.read_text())
    assert doc["baseline"] == str(ckpt)
    rows = doc["rows"]
    assert sorted(rows) == ["all", "arctic", "librivox", "mfa"]
    assert rows["all"]["utterances"] == 3
    # Frame error over all = frame-weighted mean of the per-speaker frame errors.
    parts = [rows[s] for s in ("arctic", "librivox", "mfa")]
    weighted = sum(p["fer"] * p["seconds"] for p in parts) / sum(
        p["seconds"] for p in parts
    )
    assert rows["all"]["fer"] == pytest.approx(weighted, rel=1e-6)
    assert np.isclose(rows["all"]["seconds"], sum(p["seconds"] for p in parts))
    assert 0.0 <= rows["all"]["fer"] <= 1.0 and rows["all"]["per"] >= 0.0


def test_find_baseline(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_transcribed.find_baseline(tmp_path)
    assert exit_info.value.code == 2
    assert "no finished eSpeak baseline" in capsys.readouterr().err
    state = {"best_params": {"w": np.zeros(2, np.float32)}}
    cases = [  # folder, finished, corpus name, corpus size
        ("espeak-a", True, "espeak", "default"),
        ("espeak-b", False, "espeak", "default"),
        ("c", True, "timit", None),
        ("d", True, "espeak", "tiny"),
    ]

    def save(name, finished, corpus, size):
        checkpoint.save(
            tmp_path / "baselines" / name / train.BASELINE_FILE,
            state,
            {
                "finished": finished,
                "data_settings": {"name": corpus, "settings": {"size": size}},
            },
        )

    for case in cases:
        save(*case)
    found = eval_transcribed.find_baseline(tmp_path)
    assert found == tmp_path / "baselines" / "espeak-a" / train.BASELINE_FILE
    # a second candidate (other training settings): refused, both listed, one line
    save("espeak-e", True, "espeak", "default")
    with pytest.raises(SystemExit) as exit_info:
        eval_transcribed.find_baseline(tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --baseline with one of" in err
    assert str(tmp_path / "baselines" / "espeak-a") in err
    assert str(tmp_path / "baselines" / "espeak-e") in err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_transcribed.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--corpus-dir", "--labels", "--baseline", "--cache-dir", "--json"):
        assert flag in text
