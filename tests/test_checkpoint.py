"""Tests of mohaq_jax.runtime.checkpoint: round trip, determinism, atomic writes, refusal."""

import os

import chex
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mohaq_jax.runtime import checkpoint


def _state():
    params = {"fc": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}
    opt_state = optax.adam(1e-3).init(params)
    return {"params": params, "opt_state": opt_state, "step": jnp.asarray(7, jnp.int32)}


META = {"model_config": {"hidden": 8, "n_layers": 1}, "data_settings": {"name": "x"}}


def test_round_trip_with_target(tmp_path):
    state = _state()
    path = tmp_path / "sub" / "ckpt.msgpack"
    checkpoint.save(path, state, META)
    restored, meta = checkpoint.load(path, target=state)
    chex.assert_trees_all_equal(restored, state)
    assert isinstance(restored["opt_state"][0], optax.ScaleByAdamState)
    assert meta["model_config"] == META["model_config"]
    assert meta["format"] == checkpoint.FORMAT
    assert checkpoint.read_meta(path) == meta


def test_round_trip_without_target_gives_nested_dicts(tmp_path):
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, _state(), META)
    restored, _ = checkpoint.load(path)
    np.testing.assert_array_equal(
        restored["params"]["fc"]["kernel"], np.arange(6.0).reshape(2, 3)
    )


def test_bytes_are_deterministic():
    meta_a = {"b": 1, "a": [1, 2]}
    meta_b = {"a": [1, 2], "b": 1}  # same content, other insertion order
    assert checkpoint.to_bytes(_state(), meta_a) == checkpoint.to_bytes(
        _state(), meta_b
    )


def test_atomic_write_leaves_no_temp_files_and_replaces(tmp_path):
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, _state(), {"v": 1})
    checkpoint.save(path, _state(), {"v": 2})
    assert os.listdir(tmp_path) == ["ckpt.msgpack"]
    assert checkpoint.read_meta(path)["v"] == 2


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, _state(), {"v": 1})
    with pytest.raises(TypeError):
        checkpoint.save(path, _state(), {"v": object()})  # not JSON-able
    assert checkpoint.read_meta(path)["v"] == 1
    assert os.listdir(tmp_path) == ["ckpt.msgpack"]


def test_mismatch_names_every_differing_field():
    meta = {
        "model_config": {"hidden": 8, "n_layers": 1},
        "data_settings": {"name": "x"},
    }
    want = {
        "model_config": {"hidden": 16, "n_layers": 1},
        "data_settings": {"name": "y"},
    }
    with pytest.raises(checkpoint.CheckpointMismatch) as err:
        checkpoint.check_compatible(meta, want, "some/path")
    text = str(err.value)
    assert "model_config.hidden: checkpoint=8 requested=16" in text
    assert "data_settings.name: checkpoint='x' requested='y'" in text
    assert "n_layers" not in text
    assert "some/path" in text


def test_tuples_and_lists_compare_equal():
    checkpoint.check_compatible(
        {"data_settings": {"classes": ["a", "b"]}},
        {"data_settings": {"classes": ("a", "b")}},
    )


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "junk.msgpack"
    path.write_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(ValueError, match="not a mohaq_jax checkpoint"):
        checkpoint.read_meta(path)


def test_checkpoints_written_before_the_checksum_are_read(tmp_path):
    """The format before the checksum (meta and state in one msgpack map)."""
    import json

    from flax import serialization

    state = {"w": np.arange(3.0)}
    doc = {
        "meta": json.dumps({"format": checkpoint.FORMAT, "v": 1}),
        "state": serialization.to_state_dict(state),
    }
    path = tmp_path / "old.msgpack"
    path.write_bytes(serialization.msgpack_serialize(doc))
    restored, meta = checkpoint.load(path)
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert meta["v"] == 1 and checkpoint.read_meta(path) == meta


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_any_flipped_byte_is_found(tmp_path, where):
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, _state(), META)
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointDamaged, match=str(path)):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "testcase_name, a, b, equal",
    [
        ("same arrays", {"w": np.arange(3)}, {"w": np.arange(3)}, True),
        ("one value", {"w": np.arange(3)}, {"w": np.arange(3) + [0, 0, 1]}, False),
        ("dtype", {"w": np.arange(3)}, {"w": np.arange(3.0)}, False),
        ("shape", {"w": np.zeros(4)}, {"w": np.zeros((2, 2))}, False),
        ("key order", {"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ("tuple vs list", (1, 2), [1, 2], True),
    ],
)
def test_identity_digests_values(testcase_name, a, b, equal):
    same = checkpoint.identity({"x": a}) == checkpoint.identity({"x": b})
    assert same == equal, testcase_name


def test_check_identity_names_each_differing_field():
    saved = checkpoint.identity({"seed": 0, "data": np.ones(2), "space": "silago"})
    asked = checkpoint.identity({"seed": 1, "data": np.zeros(2), "space": "silago"})
    with pytest.raises(checkpoint.CheckpointMismatch, match="different data, seed "):
        checkpoint.check_identity(saved, asked, "p")
    checkpoint.check_identity(saved, dict(saved), "p")
    with pytest.raises(checkpoint.CheckpointMismatch, match="older version"):
        checkpoint.check_identity(None, asked, "p")


def test_the_file_format_name_is_pinned():
    """Every cached baseline and search checkpoint on users' disks carries this name;
    moving the module must not change it (the reader refuses any other)."""
    assert checkpoint.FORMAT == "mohaq_jax.checkpoint/1"
