#!/usr/bin/env python3
"""Generates the file-format fixtures for the SafeTensors and torch .pt readers.

Writes Tests/DiffusionTensorTests/Fixtures/io/. Each file is a few KB. Expected values are stored
as float32 bit patterns (hex) in JSON so the Swift tests compare bit-exactly, with no decimal
round-trip in between. Run from the repository root:

    ~/.sd-ref-venv/bin/python Scripts/reference/gen_io_fixtures.py
"""
import io
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch
from safetensors.torch import save_file, save

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "DiffusionTensorTests", "Fixtures", "io")
OUT = os.path.normpath(OUT)


def bits(t: torch.Tensor):
    """float32 bit patterns of a tensor's values (after conversion to fp32), row-major."""
    a = t.detach().to(torch.float32).contiguous().numpy().reshape(-1)
    return [format(int(x), "08x") for x in a.view(np.uint32)]


def expect(t: torch.Tensor, dtype_name: str):
    return {"shape": list(t.shape), "dtype": dtype_name, "bits": bits(t)}


def write(name, data: bytes):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def gen_safetensors():
    g = torch.Generator().manual_seed(1234)
    tensors = {
        "a.f32": torch.randn(2, 3, generator=g),
        "b.f16": (torch.randn(5, generator=g) * 3).half(),
        "c.bf16": (torch.randn(2, 2, generator=g) * 100).bfloat16(),
        "d.scalar": torch.tensor(3.25),
        "e.empty": torch.zeros(0, 4),
        "f.f64": torch.randn(3, generator=g, dtype=torch.float64),
        "g.i64": torch.tensor([-7, 0, 123456], dtype=torch.int64),
        "h.u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
    }
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.uint8: "U8"}
    # Two metadata keys: the Rust library writes them in hash order, so this file's bytes (not its
    # content) change from run to run; commit it only when its content changes.
    meta = {"format": "pt", "note": "io fixture"}
    blob = save(tensors, metadata=meta)
    write("basic.safetensors", blob)
    expected = {k: expect(v, names[v.dtype]) for k, v in tensors.items()}
    with open(os.path.join(OUT, "basic.expected.json"), "w") as f:
        json.dump({"metadata": meta, "tensors": expected}, f, indent=1, sort_keys=True)

    # Every other convertible dtype; both float8 formats over all 256 bit patterns.
    every = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    others = {
        "f8_e4m3": every.clone().view(torch.float8_e4m3fn),
        "f8_e5m2": every.clone().view(torch.float8_e5m2),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "i16": torch.tensor([-32768, 12345], dtype=torch.int16),
        "u16": torch.tensor([0, 65535], dtype=torch.uint16),
        "i32": torch.tensor([-2**31, 2**24 + 1], dtype=torch.int32),
        "u32": torch.tensor([2**32 - 1, 7], dtype=torch.uint32),
        "u64": torch.tensor([2**63 + 12345, 3], dtype=torch.uint64),
        "bool": torch.tensor([True, False, True]),
    }
    write("dtypes.safetensors", save(others))
    with open(os.path.join(OUT, "dtypes.expected.json"), "w") as f:
        json.dump({k: {"shape": list(v.shape), "bits": bits(v.to(torch.float64) if v.dtype == torch.uint64 else v)}
                   for k, v in others.items()}, f, indent=1, sort_keys=True)

    # Writer parity: fp32 inputs chosen to exercise rounding (ties, subnormals, overflow to inf),
    # written by the Python library as F32/F16/BF16. The Swift test writes the same inputs and
    # compares bytes. One metadata key only: the Rust library keeps metadata in a HashMap, so
    # the order of several keys is not deterministic.
    inputs = {
        "z.weight": (torch.tensor([1.0, 1.0 + 2**-11, 1.0 + 3 * 2**-11, -2.0**-24, 65520.0, 1e-8, 0.1, -0.0,
                                   float("inf"), 1.0 + 2**-8, 1.0 + 3 * 2**-8, 3.0e38]), "F16"),
        "a.bias": (torch.randn(2, 3, generator=g), "F32"),
        "m.norm": (torch.tensor([1.0 + 2**-8, 1.0 + 3 * 2**-8, -5.5, 1e-40, 3.0e38, 0.3]), "BF16"),
        "b.scalar": (torch.tensor(-1.5), "F16"),
        "c.empty": (torch.zeros(0), "F32"),
    }
    conv = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    out = {k: v.to(conv[d]) for k, (v, d) in inputs.items()}
    blob = save(out, metadata={"format": "pt"})
    write("writer_expected.safetensors", blob)
    with open(os.path.join(OUT, "writer_inputs.json"), "w") as f:
        json.dump({"metadata": {"format": "pt"},
                   "tensors": [{"name": k, "dtype": d, "shape": list(v.shape), "bits": bits(v)}
                               for k, (v, d) in inputs.items()]}, f, indent=1)

    # Malformed variants, derived from a small valid file.
    small = save({"t": torch.arange(4, dtype=torch.float32), "u": torch.ones(2, dtype=torch.float16)})
    n = struct.unpack("<Q", small[:8])[0]
    header = json.loads(small[8:8 + n])
    data = small[8 + n:]

    def with_header(h, data=data, pad=True):
        raw = json.dumps(h, separators=(",", ":")).encode()
        if pad:
            raw += b" " * ((8 - len(raw) % 8) % 8)
        return struct.pack("<Q", len(raw)) + raw + data

    write("bad_json.safetensors", struct.pack("<Q", 16) + b'{"t": {"dtype": ' + data)
    write("header_past_eof.safetensors", struct.pack("<Q", 1 << 20) + small[8:])
    write("too_short.safetensors", b"\x10\x00\x00")
    write("truncated.safetensors", small[:-3])
    h = json.loads(json.dumps(header)); h["t"]["data_offsets"] = [0, 1000]; h["t"]["shape"] = [250]
    write("offsets_out_of_range.safetensors", with_header(h))
    h = json.loads(json.dumps(header)); h["t"]["shape"] = [3]
    write("wrong_byte_count.safetensors", with_header(h))
    h = json.loads(json.dumps(header)); h["t"]["dtype"] = "Q7"
    write("unknown_dtype.safetensors", with_header(h))
    h = json.loads(json.dumps(header)); h["u"]["data_offsets"] = [12, 16]
    write("overlap.safetensors", with_header(h))
    h = json.loads(json.dumps(header)); h["t"]["shape"] = [-4]
    write("negative_shape.safetensors", with_header(h))
    h = json.loads(json.dumps(header)); h["__metadata__"] = {"k": 5}
    write("bad_metadata.safetensors", with_header(h))
    write("not_object.safetensors", with_header([1, 2, 3]))
    # Valid file whose tensor uses a dtype the reader lists but cannot convert (complex).
    h = {"c": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}
    write("complex.safetensors", with_header(h, data=b"\0" * 8))


class Evil:
    """Pickles to a call of os.system; the reader must refuse it without running it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/sd_io_fixture_pwned",))


class EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/sd_io_fixture_pwned')",))


class ModelCheckpoint:
    """Stands in for a Lightning callback class, which old Lightning used as a dict key."""


class HParams:
    """An arbitrary object: pickles as NEWOBJ + BUILD."""

    def __init__(self):
        self.lr = 1e-4


def gen_torch():
    g = torch.Generator().manual_seed(99)
    base = torch.randn(4, 6, generator=g)
    sd = OrderedDict()
    sd["w.f32"] = torch.randn(3, 4, generator=g)
    sd["w.f16"] = (torch.randn(5, generator=g) * 2).half()
    sd["w.bf16"] = (torch.randn(2, 3, generator=g) * 10).bfloat16()
    sd["scalar"] = torch.tensor(-2.75)
    sd["shared.rows"] = base[1:3]          # offset 6, contiguous rows
    sd["shared.col"] = base[:, 2]          # offset 2, stride 6
    sd["transposed"] = torch.randn(3, 5, generator=g).t()
    sd["expanded"] = torch.randn(3, 1, generator=g).expand(3, 4)   # stride 0
    sd["position_ids"] = torch.arange(7, dtype=torch.int64).unsqueeze(0)
    sd["double"] = torch.randn(2, generator=g, dtype=torch.float64)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    # Module.state_dict() attaches version metadata, which pickles as a BUILD on the OrderedDict.
    sd._metadata = OrderedDict([("", {"version": 1})])
    torch.save(sd, os.path.join(OUT, "state_dict.pt"))
    # Protocol 4 exercises FRAME, SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL.
    torch.save(sd, os.path.join(OUT, "state_dict_p4.pt"), pickle_protocol=4)
    expected = {k: expect(v, str(v.dtype).replace("torch.", "")) for k, v in sd.items()}
    with open(os.path.join(OUT, "state_dict.expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)

    inner = OrderedDict([("model.diffusion_model.conv.weight", torch.randn(2, 1, 3, 3, generator=g).half()),
                         ("model.diffusion_model.conv.bias", torch.randn(2, generator=g).half()),
                         ("cond_stage_model.ids", torch.arange(3, dtype=torch.int64))])
    ckpt = {"state_dict": inner, "epoch": 3, "global_step": 123456789012, "lr": 0.5, "name": "tiny",
            "flag": True, "nothing": None, "steps": [1, 2, 3], "pair": (1, "a"), "big": -2**40,
            "blob": b"\x00\x01"}
    torch.save(ckpt, os.path.join(OUT, "nested.ckpt"))
    with open(os.path.join(OUT, "nested.expected.json"), "w") as f:
        json.dump({k: expect(v, str(v.dtype).replace("torch.", "")) for k, v in inner.items()}, f, indent=1)

    # A training checkpoint with framework objects next to the weights: refused by default,
    # loadable with placeholders.
    lightning = {"state_dict": inner, "callbacks": {ModelCheckpoint: {"best_model_score": torch.tensor(0.25)}},
                 "hyper_parameters": HParams(), "global_step": 7}
    torch.save(lightning, os.path.join(OUT, "lightning.ckpt"))

    depth = torch.rand(1, 6, 8, generator=g)
    torch.save(depth, os.path.join(OUT, "depth.pt"))
    with open(os.path.join(OUT, "depth.expected.json"), "w") as f:
        json.dump(expect(depth, "float32"), f, indent=1)

    torch.save(Evil(), os.path.join(OUT, "malicious_system.pt"))
    torch.save({"x": EvalEvil()}, os.path.join(OUT, "malicious_eval.pt"))

    # Legacy (pre-1.6) serialization: not a zip archive; must be refused with a clear message.
    torch.save({"t": torch.ones(2)}, os.path.join(OUT, "legacy.pt"), _use_new_zipfile_serialization=False)

    # Same archive with data.pkl deflated: only stored entries are supported.
    src = zipfile.ZipFile(os.path.join(OUT, "depth.pt"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            method = zipfile.ZIP_DEFLATED if info.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            dst.writestr(zipfile.ZipInfo(info.filename), src.read(info.filename), compress_type=method)
    write("deflated.pt", buf.getvalue())

    # Zip64 variant of depth.pt: every size and offset moved to zip64 extra fields, with a zip64
    # end-of-central-directory record and locator, as writers do for archives over 4 GB.
    write("zip64.pt", zip64_archive([(i.filename, src.read(i.filename)) for i in src.infolist()]))

    # A storage record missing from the archive.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            if "/data/" not in info.filename:
                dst.writestr(zipfile.ZipInfo(info.filename), src.read(info.filename))
    write("missing_storage.pt", buf.getvalue())


def u(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def rebuild(numel, size, stride, offset=0):
    """Pickle bytes of _rebuild_tensor_v2 over FloatStorage '0', as torch writes them."""
    ints = lambda xs: b"(" + b"".join(b"K" + bytes([x]) for x in xs) + b"t"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + b"(" + u("storage") + b"ctorch\nFloatStorage\n" + u("0")
            + u("cpu") + b"K" + bytes([numel]) + b"tQ" + b"K" + bytes([offset]) + ints(size) + ints(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR")


def crafted(name, pkl, storage=None):
    """A torch-style zip archive around hand-written pickle bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        # Fixed timestamps keep regenerated fixtures byte-identical.
        z.writestr(zipfile.ZipInfo("archive/data.pkl"), pkl)
        z.writestr(zipfile.ZipInfo("archive/byteorder"), "little")
        if storage is not None:
            z.writestr(zipfile.ZipInfo("archive/data/0"), storage)
    write(name, buf.getvalue())


def gen_crafted():
    floats = struct.pack("<4f", 1.0, 2.0, 3.0, 4.0)
    # Valid: a stride-2 view [1, 3] of a 4-element storage.
    crafted("crafted_strided.pt", b"\x80\x02" + rebuild(4, [2], [2]) + b".", floats)
    # Invalid: the view reaches element 4 of a 4-element storage.
    crafted("crafted_view_oob.pt", b"\x80\x02" + rebuild(4, [3], [2]) + b".", floats)
    # An expanded (stride 0) view of 2^40 elements over one float: must be refused, not allocated.
    crafted("crafted_huge_expand.pt", b"\x80\x02" + rebuild(4, [], []).replace(b"(t(t", b"(\x8a\x06\x00\x00\x00\x00\x00\x01t(K\x00t") + b".", floats)
    # Storage record shorter than the element count the pickle claims.
    crafted("crafted_short_storage.pt", b"\x80\x02" + rebuild(8, [8], [1]) + b".", floats)
    # A list that contains itself.
    crafted("crafted_cycle.pt", b"\x80\x02]q\x00h\x00a.")
    # 2^48 nodes described in a few hundred bytes, through memo sharing.
    crafted("crafted_bomb.pt", b"\x80\x02]q\x00" + b"(h\x00h\x00lq\x00" * 48 + b".")
    # The same with dicts, which the state-dict flattening walks.
    crafted("crafted_dict_bomb.pt", b"\x80\x02}q\x00" + (b"}(" + u("a") + b"h\x00" + u("b") + b"h\x00uq\x00") * 48 + b".")
    # os.system through STACK_GLOBAL (protocol 4), then called.
    crafted("crafted_stack_global.pt", b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04echo\x85R.")
    # INST (protocol 0 class instantiation) is never emitted by torch.save.
    crafted("crafted_inst.pt", b"\x80\x02(iposix\nsystem\n.")
    crafted("crafted_bad_memo.pt", b"\x80\x02h\x05.")
    crafted("crafted_no_stop.pt", b"\x80\x02}q\x00" + u("a") + b"K\x01s")
    crafted("crafted_underflow.pt", b"\x80\x02(R.")


def zip64_archive(entries):
    import binascii
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        nm = name.encode()
        crc = binascii.crc32(data) & 0xFFFFFFFF
        offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                           len(nm), len(extra)) + nm + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                               0xFFFFFFFF, len(nm), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + nm + cextra
    cd_offset = len(out)
    out += central
    eocd64_offset = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central),
                       cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, eocd64_offset, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    gen_safetensors()
    gen_torch()
    gen_crafted()
    print("wrote", OUT)
