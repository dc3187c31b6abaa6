"""Reading official PyTorch state dicts without PyTorch."""
import io
import pickle
import re
import zipfile

import numpy as np
import pytest

from prediff.errors import InputError
from prediff.io.state_dict_file import read_state_dict


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


# -- hostile files ----------------------------------------------------------------------------------------------
# The `.pt` reader is a security boundary: each crafted file below must end in one InputError line, never in a
# crash, an out-of-bounds read or an allocation far beyond the file. The files are written here with `pickle` and
# `zipfile` alone, with stand-ins for torch's names registered in sys.modules only while pickling.


class _Marker:
    """Stands for one storage: the Pickler below writes `pid` as its persistent id."""

    def __init__(self, pid):
        self.pid = pid


class _Call:
    """Pickles as a call `fn(*args)`, i.e. GLOBAL fn + args + REDUCE."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _TorchPickle:
    """Builds `data.pkl` bytes the way `torch.save` writes them."""

    def __init__(self, monkeypatch):
        import collections
        import sys
        import types

        self._collections = collections
        torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")
        self.types = {}
        for name in ("FloatStorage", "LongStorage", "BFloat16Storage", "ComplexFloatStorage"):
            stub = type(name, (), {})
            stub.__module__, stub.__qualname__ = "torch", name
            setattr(torch_mod, name, stub)
            self.types[name] = stub
        self.fns = {}
        for name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
            def fn(*args):  # never called: only its GLOBAL name goes into the pickle
                raise AssertionError
            fn.__module__, fn.__qualname__, fn.__name__ = "torch._utils", name, name
            setattr(utils_mod, name, fn)
            self.fns[name] = fn
        # monkeypatch restores whatever was there (a real torch too) when the test ends
        monkeypatch.setitem(sys.modules, "torch", torch_mod)
        monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    def storage(self, key, numel, kind="FloatStorage"):
        return _Marker(("storage", self.types[kind], key, "cpu", numel))

    def tensor(self, storage, offset, size, stride):
        return _Call(self.fns["_rebuild_tensor_v2"], storage, offset, size, stride, False,
                     self._collections.OrderedDict())

    def call(self, name, *args):
        return _Call(self.fns[name], *args)

    def dict(self, **entries):
        return self._collections.OrderedDict(entries)

    def dump(self, obj) -> bytes:
        buf = io.BytesIO()

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                return obj.pid if isinstance(obj, _Marker) else None

        Pickler(buf, protocol=2).dump(obj)
        return buf.getvalue()


@pytest.fixture
def tp(monkeypatch):
    return _TorchPickle(monkeypatch)


def _write_pt(path, pkl, records=(), byteorder="little", prefix="archive", compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{prefix}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{prefix}/byteorder", byteorder)
        for key, raw in dict(records).items():
            z.writestr(f"{prefix}/data/{key}", raw, compress_type=compress)
    return path


def _f32(*values):
    return np.array(values, "<f4").tobytes()


def _one_tensor(tp, path, numel, offset, size, stride, record=None):
    """A state dict {"w": tensor} over one float storage of `numel` declared elements."""
    pkl = tp.dump(tp.dict(w=tp.tensor(tp.storage("0", numel), offset, size, stride)))
    return _write_pt(path, pkl, {"0": _f32(*range(numel)) if record is None else record})


def _view_past_end(tp, path):  # a 1-float storage viewed as 72 floats
    return _one_tensor(tp, path, 1, 0, (72,), (1,))


def _offset_1e12(tp, path):
    return _one_tensor(tp, path, 4, 10 ** 12, (2,), (1,))


def _storage_type_str(tp, path):
    pkl = tp.dump(tp.dict(w=tp.tensor(_Marker(("storage", "FloatStorage", "0", "cpu", 1)), 0, (1,), (1,))))
    return _write_pt(path, pkl, {"0": _f32(1)})


def _huge_storage(tp, path):  # declares 2**28 floats (1 GiB) over a 4-byte record, viewed whole
    return _one_tensor(tp, path, 2 ** 28, 0, (2 ** 28,), (1,), record=_f32(1))


def _pickle_bytes_pt(path, pkl):
    return _write_pt(path, pkl, {"0": _f32(1)})


BAD_PT = {
    # name: (build(tp, path) -> path, pattern the message must match)
    "view past the storage end": (_view_past_end, r"reads element 71 of storage '0', which has 1 elements"),
    "offset 10**12": (_offset_1e12, r"offset 1000000000000"),
    "offset not an int": (lambda tp, p: _one_tensor(tp, p, 4, 1.5, (2,), (1,)), r"offset 1\.5"),
    "negative stride": (lambda tp, p: _one_tensor(tp, p, 4, 3, (2,), (-1,)), r"stride is \(-1,\)"),
    "bool size": (lambda tp, p: _one_tensor(tp, p, 4, 0, (True,), (1,)), r"size is \(True,\)"),
    "huge stride": (lambda tp, p: _one_tensor(tp, p, 4, 0, (2,), (2 ** 70,)), r"stride is"),
    "size not a tuple": (lambda tp, p: _one_tensor(tp, p, 4, 0, "ab", (1,)), r"size is 'ab'"),
    "too many dims": (lambda tp, p: _one_tensor(tp, p, 4, 0, (1,) * 40, (1,) * 40), r"at most 32 ints"),
    "size/stride lengths differ": (lambda tp, p: _one_tensor(tp, p, 4, 0, (2, 2), (1,)), r"different lengths"),
    "broadcast view far beyond the file": (lambda tp, p: _one_tensor(tp, p, 1, 0, (2 ** 40,), (0,)),
                                           r"far more than the 4 bytes of data"),
    "storage numel 2**28 in a 4-byte record": (_huge_storage, r"declares 268435456 x FloatStorage .* holds 4 bytes"),
    "storage numel not an int": (lambda tp, p: _one_tensor(tp, p, "4", 0, (1,), (1,), record=_f32(1)),
                                 r"declares '4' elements"),
    "record missing": (lambda tp, p: _write_pt(p, tp.dump(tp.dict(w=tp.tensor(tp.storage("7", 1), 0, (1,), (1,)))),
                                               {"0": _f32(1)}),
                       r"storage record 'archive/data/7' is missing"),
    "zip bomb record disagreeing with its numel": (
        lambda tp, p: _write_pt(p, tp.dump(tp.dict(w=tp.tensor(tp.storage("0", 1), 0, (1,), (1,)))),
                                {"0": bytes(16 << 20)}, compress=zipfile.ZIP_DEFLATED),
        r"holds 16777216 bytes"),
    "record compressed beyond what deflate can reach": (
        lambda tp, p: _write_pt(p, tp.dump(tp.dict(w=tp.tensor(tp.storage("0", 1 << 22), 0, (1,), (1,)))),
                                {"0": bytes(16 << 20)}, compress=zipfile.ZIP_BZIP2),
        r"claims to expand from \d+ to 16777216 bytes; refusing a possible zip bomb"),
    "storage type given as a string": (_storage_type_str, r"unsupported tensor storage type 'FloatStorage'; expected one of torch\.FloatStorage"),
    "unknown storage type": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.tensor(
            tp.storage("0", 1, "ComplexFloatStorage"), 0, (1,), (1,))))),
        r"references 'torch\.ComplexFloatStorage'"),
    "pid of the wrong length": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.tensor(_Marker(("storage", "0")), 0, (1,), (1,))))),
        r"unsupported persistent object \('storage', '0'\)"),
    "pid not a tuple": (lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=_Marker("storage")))),
                        r"unsupported persistent object 'storage'"),
    "storage key not a string": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.tensor(
            _Marker(("storage", tp.types["FloatStorage"], 0, "cpu", 1)), 0, (1,), (1,))))),
        r"storage key 0 is not"),
    "a storage used as a tensor": (lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.storage("0", 1)))),
                                   r"entry 'w' is a _Storage, not a tensor"),
    "rebuild with too few arguments": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.call("_rebuild_tensor_v2", tp.storage("0", 1), 0)))),
        r"_rebuild_tensor_v2 is called with 2 arguments; expected 6 or 7"),
    "rebuild on a non-storage": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.call("_rebuild_tensor_v2", "x", 0, (1,), (1,),
                                                                    False, {})))),
        r"a tensor is built on 'x'; expected a storage"),
    "rebuild_parameter on a non-array": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump(tp.dict(w=tp.call("_rebuild_parameter", [1.0], False, {})))),
        r"_rebuild_parameter is called with \[1\.0\]; expected a tensor"),
    "nested dict of non-tensors": (lambda tp, p: _pickle_bytes_pt(p, tp.dump({"w": {"x": [1, 2]}})),
                                   r"entry 'w' is a dict, not a tensor"),
    "non-dict top level": (
        lambda tp, p: _pickle_bytes_pt(p, tp.dump([tp.tensor(tp.storage("0", 1), 0, (1,), (1,))])),
        r"holds a list at the top level; expected a state dict"),
    "byteorder neither little nor big": (
        lambda tp, p: _write_pt(p, tp.dump(tp.dict(w=tp.tensor(tp.storage("0", 1), 0, (1,), (1,)))),
                                {"0": _f32(1)}, byteorder="middle"),
        r"byteorder record holds b'middle'"),
    "an opcode that raises TypeError": (lambda tp, p: _pickle_bytes_pt(p, b"\x80\x02ccollections\nOrderedDict\n"
                                                                          b"K\x05\x85R."),
                                        r"not a readable PyTorch state dict \(TypeError"),
    "pickle global with markup in its module": (lambda tp, p: _pickle_bytes_pt(p, b"\x80\x02c[/red]evil\nx\n)R."),
                                                r"references '\[/red\]evil\.x'"),
    "memo index of 2**31": (lambda tp, p: _pickle_bytes_pt(p, b"\x80\x02}r\xff\xff\xff\x7f."),
                            r"memo entry 2147483647"),
    "bytearray8 of 2**40 bytes": (lambda tp, p: _pickle_bytes_pt(p, b"\x80\x05\x96" + (2 ** 40).to_bytes(8, "little")
                                                                 + b"xx."),
                                  r"(?i)bytearray8"),
    "bytearray8 opcode": (lambda tp, p: _pickle_bytes_pt(p, b"\x80\x05\x96" + (2).to_bytes(8, "little") + b"xx."),
                          r"opcode BYTEARRAY8"),
    "huge data.pkl": (lambda tp, p: _write_pt(p, tp.dump("x" * (9 << 20)), compress=zipfile.ZIP_DEFLATED),
                      r"data\.pkl declares 943\d+ bytes"),
}


def _duplicate_pkl(tp, path):
    pkl = tp.dump(tp.dict(w=tp.tensor(tp.storage("0", 1), 0, (1,), (1,))))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("a/data.pkl", pkl)
        z.writestr("b/data.pkl", pkl)
    return path


def _truncated_zip(tp, path):
    good = _one_tensor(tp, path, 4, 0, (4,), (1,))
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_PT.update({
    "two data.pkl records": (_duplicate_pkl, r"holds 2 data\.pkl records"),
    "truncated zip": (_truncated_zip, r"damaged or truncated zip archive"),
})


def _peak_while_refused(path, match) -> int:
    """Peak bytes Python allocated while `read_state_dict` refused `path` with an error matching `match`: a refusal
    must come before the file's claimed sizes are read into memory."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match):
            read_state_dict(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_storage_is_refused_before_reading(tmp_path, tp):
    assert _peak_while_refused(_huge_storage(tp, tmp_path / "huge.pt"), "declares 268435456") < 50 << 20


def test_valid_pt_reads_back_exactly(tmp_path, tp):
    floats, longs = tp.storage("0", 6), tp.storage("1", 4, "LongStorage")
    halves = tp.storage("2", 2, "BFloat16Storage")
    state = tp.dict(
        w=tp.tensor(floats, 0, (2, 3), (3, 1)),
        wt=tp.tensor(floats, 0, (3, 2), (1, 3)),  # transposed: non-contiguous
        every_other=tp.tensor(floats, 1, (2, 1), (2, 10 ** 9)),  # a size-1 dim may have any stride
        scalar=tp.tensor(longs, 2, (), ()),  # 0-d
        head=tp.tensor(longs, 0, (2,), (1,)),  # two tensors sharing one storage at different offsets
        tail=tp.tensor(longs, 2, (2,), (1,)),
        bf16=tp.tensor(halves, 0, (2,), (1,)),
        empty=tp.tensor(floats, 6, (0, 3), (3, 1)),
        param=tp.call("_rebuild_parameter", tp.tensor(floats, 5, (1,), (1,)), True, tp.dict()),
    )
    bf16 = (np.array([1.5, -2.0], np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    path = _write_pt(tmp_path / "ok.pt", tp.dump(state),
                     {"0": _f32(0, 1, 2, 3, 4, 5), "1": np.array([7, 8, 9, 10], "<i8").tobytes(), "2": bf16})
    out = read_state_dict(path)
    expected = {
        "w": np.array([[0, 1, 2], [3, 4, 5]], np.float32),
        "wt": np.array([[0, 3], [1, 4], [2, 5]], np.float32),
        "every_other": np.array([[1], [3]], np.float32),
        "scalar": np.array(9, np.int64),
        "head": np.array([7, 8], np.int64),
        "tail": np.array([9, 10], np.int64),
        "bf16": np.array([1.5, -2.0], np.float32),
        "empty": np.zeros((0, 3), np.float32),
        "param": np.array([5], np.float32),
    }
    assert list(out) == list(expected)
    for key, want in expected.items():
        assert type(out[key]) is np.ndarray and out[key].dtype == want.dtype and out[key].shape == want.shape, key
        np.testing.assert_array_equal(out[key], want)


def test_npz_with_a_lying_header_is_refused(tmp_path):
    path = tmp_path / "huge.npz"
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 40,)})
    npy.write(_f32(1, 2))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", npy.getvalue())
    with pytest.raises(InputError, match=r"declares shape \(1099511627776,\) of float32"):
        read_state_dict(path)
    not_zip = tmp_path / "single.npz"
    np.save(not_zip.with_suffix(".npy"), np.ones(2))
    not_zip.write_bytes(not_zip.with_suffix(".npy").read_bytes())
    with pytest.raises(InputError, match="not a zip archive"):
        read_state_dict(not_zip)


@pytest.mark.parametrize("case", ["view past the storage end", "storage numel 2**28 in a 4-byte record",
                                  "pid of the wrong length"])
def test_cli_reports_a_hostile_pt_in_one_line(tmp_path, tp, repo_root, case):
    # Each starts MindSpore (~5 s), so only three: an out-of-bounds view, an allocation bomb, a malformed pickle.
    import os
    import subprocess
    import sys

    build, pattern = BAD_PT[case]
    bad = build(tp, tmp_path / "bad.pt")
    out = tmp_path / "x.ckpt"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    proc = subprocess.run([sys.executable, "-m", "prediff", "convert-weights", str(bad), "--component", "align",
                           "--out", str(out), "--config", "tiny"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode > 0, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert re.search(pattern, lines[0]), lines[0]  # the reader's message, not a later shape mismatch
    assert "Traceback" not in proc.stderr and not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# PyTorch's legacy (< 1.6) format, read without PyTorch


_MAGIC, _PROTOCOL = 0x1950A86A20F9469CFC6C, 1001


def _legacy(path, body, keys, records, little=True, magic=_MAGIC, tail=b""):
    """A legacy file: 3 header pickles, the object pickle `body`, the key list, then per key count + raw bytes."""
    out = io.BytesIO()
    for header in (magic, _PROTOCOL, {"protocol_version": _PROTOCOL, "little_endian": little,
                                      "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(header, out, protocol=2)
    out.write(body)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        count, raw = records.get(key, (0, b""))
        out.write(np.int64(count).astype("<i8").tobytes() + raw)
    path.write_bytes(out.getvalue() + tail)
    return path


def _legacy_storage(tp, key, numel, kind="FloatStorage", view=None):
    return _Marker(("storage", tp.types[kind], key, "cpu", numel, view))


def test_legacy_format_reads_back_exactly_and_equals_the_zip_format(tmp_path, tp):
    """Our writer's legacy file and a hand-built one (shared storage, strided view, storage view) read back to the
    exact arrays, and the legacy and zip files of the same state dict give the same dict."""
    from prediff.io.state_dict_writer import write_state_dict

    rng = np.random.default_rng(0)
    arrays = {"conv.weight": rng.standard_normal((4, 3, 2, 2, 2)).astype(np.float32),
              "bn.num_batches_tracked": np.array(7, np.int64), "mask": np.array([True, False, True])}
    legacy = read_state_dict(write_state_dict(tmp_path / "legacy.pt", arrays, legacy=True))
    zipped = read_state_dict(write_state_dict(tmp_path / "zip.pt", arrays))
    assert list(legacy) == list(zipped) == list(arrays)
    for key, value in arrays.items():
        assert legacy[key].dtype == value.dtype and np.array_equal(legacy[key], value)
        assert np.array_equal(zipped[key], legacy[key])

    root = _legacy_storage(tp, "140", 6)
    window = _legacy_storage(tp, "140", 6, view=("141", 2, 4))  # elements 2..5 of the root
    body = tp.dump(tp.dict(a=tp.tensor(root, 0, (2, 3), (3, 1)), t=tp.tensor(root, 0, (3, 2), (1, 3)),
                           v=tp.tensor(window, 1, (2,), (2,))))
    path = _legacy(tmp_path / "hand.pt", body, ["140"], {"140": (6, _f32(0, 1, 2, 3, 4, 5))})
    out = read_state_dict(path)
    assert np.array_equal(out["a"], [[0, 1, 2], [3, 4, 5]]) and np.array_equal(out["t"], [[0, 3], [1, 4], [2, 5]])
    assert np.array_equal(out["v"], [3, 5])


def _legacy_one(tp, path, numel=2, count=None, raw=None, **kw):
    body = tp.dump(tp.dict(w=tp.tensor(_legacy_storage(tp, "0", numel), 0, (numel,), (1,))))
    raw = _f32(*range(numel)) if raw is None else raw
    return _legacy(path, body, kw.pop("keys", ["0"]), {"0": (numel if count is None else count, raw)}, **kw)


BAD_LEGACY = {
    "wrong magic number": (lambda tp, p: _legacy_one(tp, p, magic=12345), "legacy magic number"),
    "data count disagrees with the pickle": (lambda tp, p: _legacy_one(tp, p, count=3), "declared with 2 elements"),
    "truncated storage bytes": (lambda tp, p: _legacy_one(tp, p, raw=_f32(1)), "truncated"),
    "2**40 floats declared in a tiny file": (lambda tp, p: _legacy_one(tp, p, numel=2 ** 40, raw=_f32(1)),
                                             "truncated"),
    "bytes after the last storage": (lambda tp, p: _legacy_one(tp, p, tail=b"junk"), "follow the last storage"),
    "key list names another storage": (lambda tp, p: _legacy_one(tp, p, keys=["9"]), "key list"),
    "view past the storage end": (
        lambda tp, p: _legacy(p, tp.dump(tp.dict(w=tp.tensor(_legacy_storage(tp, "0", 1), 0, (72,), (1,)))), ["0"],
                              {"0": (1, _f32(1))}), "reads element 71"),
    "storage view outside its root": (
        lambda tp, p: _legacy(p, tp.dump(tp.dict(w=tp.tensor(_legacy_storage(tp, "0", 2, view=("1", 1, 5)), 0,
                                                               (1,), (1,)))), ["0"], {"0": (2, _f32(1, 2))}),
        "does not lie within"),
    "a global that is not a tensor": (
        lambda tp, p: _legacy(p, b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00true\x85R.", [], {}), "os.system"),
}


@pytest.mark.parametrize("table,case", [("zip", c) for c in BAD_PT] + [("legacy", c) for c in BAD_LEGACY])
def test_hostile_pt_is_one_input_error(tmp_path, tp, table, case):
    build, pattern = (BAD_PT if table == "zip" else BAD_LEGACY)[case]
    path = build(tp, tmp_path / "bad.pt")
    with pytest.raises(InputError, match=pattern) as info:
        read_state_dict(path)
    message = str(info.value)
    assert type(message) is str and "\n" not in message and len(message) < 600, message


def test_mutated_legacy_files_end_in_one_line_or_a_valid_read(tmp_path):
    """500 random byte flips, insertions and cuts of a legacy file: never a crash, never a hang."""
    from prediff.io.state_dict_writer import write_state_dict

    base = write_state_dict(tmp_path / "base.pt", {"a": np.arange(12, dtype=np.float32).reshape(3, 4),
                                                    "b": np.arange(5, dtype=np.int64)}, legacy=True).read_bytes()
    rng = np.random.default_rng(1)
    outcomes = {"error": 0, "read": 0}
    for i in range(500):
        data = bytearray(base)
        kind = i % 3
        at = int(rng.integers(len(data)))
        if kind == 0:
            data[at] = int(rng.integers(256))
        elif kind == 1:
            data[at:at] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8))
        else:
            data = data[:at]
        path = tmp_path / "m.pt"
        path.write_bytes(bytes(data))
        try:
            read_state_dict(path)
            outcomes["read"] += 1
        except InputError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 250  # most mutations break the file; those that do not are still read safely


# ---------------------------------------------------------------------------------------------------------------
# nesting, container sizes, inflation, non-finite weights, special files


def _nested_pt(path, kind, depth=1_000_000):
    """A zip `.pt` whose data.pkl nests `depth` containers: a dict keyed by a tuple that deep (hashing it recursed in
    C until SIGSEGV), a frozenset that deep, or a list built top-down through the memo (APPEND into memoized lists,
    so no container is deeper than 1 when it is made)."""
    if kind == "tuple key":
        body = b"\x80\x02}" + b")" + b"\x85" * depth + b"K\x01s."
    elif kind == "frozenset":
        body = b"\x80\x04}" + b"(" * depth + b"\x91" * depth + b"K\x01s."
    else:  # ] q0 ; then repeatedly: g(i) ] q(i+1) a — list i gets list i+1 appended after both exist
        ops = [b"\x80\x02]q\x00"]
        for i in range(depth):
            ops.append(b"h" + bytes([i % 256]) if i < 256 else b"j" + i.to_bytes(4, "little"))
            ops.append(b"]" + (b"q" + bytes([i + 1]) if i + 1 < 256 else b"r" + (i + 1).to_bytes(4, "little")))
            ops.append(b"a0")  # APPEND, then POP the list it returned
        body = b"".join(ops) + b"."
    return _pickle_bytes_pt(path, body)


@pytest.mark.parametrize("kind, depth, message", [
    ("tuple key", 1_000_000, "nests containers more than 100 levels deep"),
    ("frozenset", 1_000_000, "nests containers more than 100 levels deep"),
    # lists cannot be hashed, so a chain built top-down (deeper than the scan sees) is harmless: refused later
    ("lists through the memo", 100_000, "holds a list at the top level")])
def test_deeply_nested_pickles_are_refused_without_a_crash(tmp_path, repo_root, kind, depth, message):
    """Run in a child process: before, the tuple key killed it with SIGSEGV."""
    import os
    import subprocess
    import sys

    path = _nested_pt(tmp_path / "deep.pt", kind, depth)
    code = ("import sys\nfrom prediff.errors import InputError\nfrom prediff.io.state_dict_file import "
            "read_state_dict\ntry:\n    read_state_dict(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert message in proc.stdout, proc.stdout


def test_convert_weights_reports_a_nested_pickle_in_one_line(tmp_path, repo_root):
    import os
    import subprocess
    import sys

    deep = _nested_pt(tmp_path / "deep.pt", "tuple key")
    out = tmp_path / "x.ckpt"
    proc = subprocess.run([sys.executable, "-m", "prediff", "convert-weights", str(deep), "--component", "vae",
                           "--config", "tiny", "--out", str(out)], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "levels deep" in lines[0], (proc.returncode, proc.stderr)
    assert not out.exists()


def test_a_container_with_too_many_items_is_refused(tmp_path):
    count = (1 << 20) + 1
    body = b"\x80\x02]" + b"(" + b"K\x01" * count + b"e."  # EMPTY_LIST, MARK, BININT1 × count, APPENDS
    with pytest.raises(InputError, match="more than 1048576 items into one container"):
        read_state_dict(_pickle_bytes_pt(tmp_path / "wide.pt", body))


def test_nested_state_dicts_within_bounds_still_read(tmp_path):
    """A Lightning-style checkpoint (the state dict under `state_dict`, a few more levels) reads as before."""
    from prediff.io.state_dict_writer import write_state_dict

    path = write_state_dict(tmp_path / "ok.pt", {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3)})
    state = read_state_dict(path)
    np.testing.assert_array_equal(state["a.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_compressed_records_have_an_absolute_cap(tmp_path, tp):
    """A record of zeros deflated ~1000:1 stays under the ratio cap; before, 70 MB (and copies of it) were inflated
    from a 70 kB file; now the archive's total is refused from its directory."""
    numel = 18 << 20  # 72 MiB of float32 zeros
    pkl = tp.dump(tp.dict(w=tp.tensor(tp.storage("0", numel), 0, (numel,), (1,))))
    path = tmp_path / "inflating.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", bytes(numel * 4))
    assert path.stat().st_size < 200_000
    assert _peak_while_refused(path, "claim to expand to 75,49[0-9,]+ bytes") < 20 << 20


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_do_not_convert(tmp_path, bad):
    import prediff_models as models

    from prediff.config import load_config
    from prediff.io.state_dict_writer import write_state_dict
    from prediff.pipelines.convert_weights import convert_weights

    cfg = load_config("tiny")
    state = models.official_state_dict(models.build("align", cfg.model_kwargs("align")))
    key = next(k for k, v in state.items() if v.dtype == np.float32 and v.size > 1)
    state[key] = state[key].copy()
    state[key].flat[1] = bad
    path = write_state_dict(tmp_path / "nan.pt", state)
    with pytest.raises(InputError, match=f"entry '{re.escape(key)}' holds NaN or infinite values"):
        convert_weights(path, "align", cfg, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    import os

    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="is a FIFO"):
        read_state_dict(fifo)
