"""Reading official PyTorch state dicts without PyTorch."""
import io
import pickle
import zipfile

import numpy as np
import pytest

from prediff_cli.errors import InputError
from prediff_cli.io.state_dict_file import read_state_dict


def test_pt_equals_npz(official_dir):
    from_pt = read_state_dict(official_dir / "unet_state_dict.pt")
    from_npz = read_state_dict(official_dir / "unet.npz")
    assert list(from_pt) == list(from_npz) and len(from_pt) == 220
    for key in from_pt:
        assert from_pt[key].dtype == from_npz[key].dtype, key
        np.testing.assert_array_equal(from_pt[key], from_npz[key])
    index = [k for k in from_pt if k.endswith("relative_position_index")]
    assert index and all(from_pt[k].dtype == np.int64 for k in index)


def test_strided_tensor_is_rebuilt(tmp_path):
    # A transposed view: storage [0..5], size (3, 2), stride (1, 3) → [[0,3],[1,4],[2,5]].
    class Storage:  # stands in for torch.FloatStorage in the pickle stream
        pass

    buf = io.BytesIO()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage_marker:
                return ("storage", Storage, "0", "cpu", 6)
            return None

    storage_marker = object()

    def rebuild(*args):  # placeholder: we only need the pickle opcodes, patched below
        raise AssertionError

    rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    Storage.__module__, Storage.__qualname__ = "torch", "FloatStorage"

    class Call:
        def __reduce__(self):
            return (rebuild, (storage_marker, 0, (3, 2), (1, 3), False, {}))

    import collections
    import sys
    import types

    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    fake_utils._rebuild_tensor_v2 = rebuild
    fake_torch.FloatStorage = Storage
    sys.modules.setdefault("torch", fake_torch)
    sys.modules.setdefault("torch._utils", fake_utils)
    try:
        if sys.modules["torch"] is not fake_torch:
            pytest.skip("a real torch is installed; this test fakes its pickle names")
        Pickler(buf, protocol=2).dump(collections.OrderedDict(w=Call()))
    finally:
        if sys.modules.get("torch") is fake_torch:
            del sys.modules["torch"], sys.modules["torch._utils"]
    path = tmp_path / "t.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("t/data.pkl", buf.getvalue())
        z.writestr("t/byteorder", "little")
        z.writestr("t/data/0", np.arange(6, dtype="<f4").tobytes())
    out = read_state_dict(path)
    np.testing.assert_array_equal(out["w"], np.array([[0, 3], [1, 4], [2, 5]], np.float32))


def test_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_state_dict(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(InputError):
        read_state_dict(junk)
    evil = tmp_path / "evil.pt"
    payload = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("e/data.pkl", payload)
    with pytest.raises(InputError, match="os.system"):
        read_state_dict(evil)
    npz = tmp_path / "w.npz"
    np.savez(npz, **{"param/a.weight": np.ones(2, np.float32)})
    assert list(read_state_dict(npz)) == ["a.weight"]
