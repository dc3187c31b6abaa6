"""io.ckpt_stream: the one-tensor-at-a-time .ckpt writer writes MindSpore's own bytes."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import Parameter, Tensor
from mindspore.train import serialization

from prediff.io import ckpt_stream
from prediff.io.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

ARRAYS = [("model.w", np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7),
          ("model.b", np.array([-1.5, 2.25], np.float64)),
          ("optim.global_step", np.array([12], np.int32)),
          ("optim.count", np.array([3, 4, 5], np.int64)),
          ("aux.scalar", np.array(0.125, np.float32)),
          ("aux.mask", np.array([True, False, True])),
          ("aux.half", np.array([0.5, 1.0], np.float16)),
          ("aux.code", np.array([1, 255], np.uint8))]
META = {"prediff_meta": '{"component": "vae", "note": "ünïcode ✓"}'}


def _official(path, arrays):
    ms.save_checkpoint([{"name": k, "data": Tensor(v)} for k, v in arrays], str(path), append_dict=dict(META))
    return path.read_bytes()


def test_bytes_equal_mindspore_save_checkpoint(tmp_path):
    expected = _official(tmp_path / "official.ckpt", ARRAYS)
    ckpt_stream.write_ckpt(tmp_path / "ours.ckpt", ARRAYS, META)
    assert (tmp_path / "ours.ckpt").read_bytes() == expected


def test_sliced_tensors_match_mindspore_and_load_back(tmp_path, monkeypatch):
    big = [("model.big", np.random.default_rng(0).standard_normal((40, 30)).astype(np.float32))]  # 4.7 KB
    monkeypatch.setattr(serialization, "SLICE_SIZE", 1)
    monkeypatch.setattr(ckpt_stream, "SLICE_KB", 1)
    expected = _official(tmp_path / "official.ckpt", big)
    ckpt_stream.write_ckpt(tmp_path / "ours.ckpt", big, META)
    assert (tmp_path / "ours.ckpt").read_bytes() == expected
    loaded = ms.load_checkpoint(str(tmp_path / "ours.ckpt"))
    np.testing.assert_array_equal(loaded["model.big"].asnumpy(), big[0][1])


def test_live_parameters_are_saved_with_their_values(tmp_path):
    weight = Parameter(Tensor(np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)), name="weight")
    moment = Parameter(Tensor(np.full(3, 0.25, np.float32)), name="m0")
    ckpt = Checkpoint(component="align", model_kwargs={"a": 1}, model={"weight": weight}, optim={"m.0": moment},
                      config={"seed": 1}, meta={"step": 5})
    back = load_checkpoint(save_checkpoint(tmp_path / "live.ckpt", ckpt), component="align")
    np.testing.assert_array_equal(back.model["weight"], weight.asnumpy())
    np.testing.assert_array_equal(back.optim["m.0"], moment.asnumpy())
    assert back.meta["step"] == 5 and back.config == {"seed": 1} and back.model_kwargs == {"a": 1}


def test_unsupported_dtype_is_refused_with_the_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"model.c: cannot store dtype complex64 .*valid: .*float32"):
        ckpt_stream.write_ckpt(tmp_path / "bad.ckpt", [("model.c", np.zeros(2, np.complex64))])
