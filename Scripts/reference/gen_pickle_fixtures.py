#!/usr/bin/env python3
"""Writes the pickle allow-list fixtures: torch.save-format zip archives whose protocol-2 pickles are
emitted opcode by opcode, so no torch, numpy or Lightning is needed and every global is spelled exactly.

    python3 Scripts/reference/gen_pickle_fixtures.py

Tests/DiffusionTensorTests/Fixtures/io/ (and copies under Tests/StableDiffusionTests/Fixtures/pickle/):
  sd-v1-4-layout.ckpt       the globals of the original sd-v1-4.ckpt: Lightning's ModelCheckpoint class as a
                            `callbacks` key, numpy float64 scalars (dtype + _codecs.encode bytes), tensors
  numpy_values.pt           numpy scalars and arrays, numpy 1 (`numpy.core`) and numpy 2 (`numpy._core`) spellings
  parameterdict_embedding.pt  an early textual-inversion file: `string_to_param` is a torch ParameterDict
  payload_<global>.pt       an AUTOMATIC1111 embedding with one extra entry whose __reduce__ calls <global>
  payload.ckpt              (pickle/ only) sd-v1-4-layout.ckpt with a posix.system entry
"""
import os
import struct
import zipfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
IO = os.path.join(ROOT, "Tests", "DiffusionTensorTests", "Fixtures", "io")
SD = os.path.join(ROOT, "Tests", "StableDiffusionTests", "Fixtures", "pickle")
MARKER = "/tmp/sd_pickle_fixture_pwned"


class G:
    """A global (module, name): GLOBAL opcode."""
    def __init__(self, module, name):
        self.module, self.name = module, name


class Reduce:
    """callable(*args), then BUILD with `state` if given; `items` are SETITEMS after (OrderedDict)."""
    def __init__(self, func, args, state=None, items=None, newobj=False):
        self.func, self.args, self.state, self.items, self.newobj = func, args, state, items, newobj


class PersId:
    def __init__(self, pid):
        self.pid = pid


class Pickler:
    """CPython's protocol-2 opcodes for the few kinds of value torch.save writes, memoised like pickle."""
    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo = {}
        self.alive = []  # memo keys are ids: keep their objects alive so no id is reused

    def put(self, key, obj=None):
        i = len(self.memo)
        self.memo[key] = i
        self.alive.append(obj)
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)

    def get(self, key):
        i = self.memo.get(key)
        if i is None:
            return False
        self.out += b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)
        return True

    def save(self, v):
        o = self.out
        if v is None:
            o += b"N"
        elif v is True or v is False:
            o += b"\x88" if v else b"\x89"
        elif isinstance(v, int):
            if 0 <= v < 256:
                o += b"K" + bytes([v])
            elif 0 <= v < 65536:
                o += b"M" + struct.pack("<H", v)
            elif -2**31 <= v < 2**31:
                o += b"J" + struct.pack("<i", v)
            else:
                n = (v.bit_length() + 8) // 8
                o += b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)
        elif isinstance(v, float):
            o += b"G" + struct.pack(">d", v)
        elif isinstance(v, str):
            if self.get(("s", v)):
                return
            b = v.encode()
            o += b"X" + struct.pack("<I", len(b)) + b
            self.put(("s", v))
        elif isinstance(v, bytes):
            # Python 3 bytes under protocol 2: _codecs.encode(text, 'latin1').
            self.save(Reduce(G("_codecs", "encode"), (v.decode("latin1"), "latin1")))
        elif isinstance(v, G):
            if self.get(("g", v.module, v.name)):
                return
            o += b"c" + v.module.encode() + b"\n" + v.name.encode() + b"\n"
            self.put(("g", v.module, v.name))
        elif isinstance(v, PersId):
            self.save(v.pid)
            o += b"Q"
        elif isinstance(v, tuple):
            if not v:
                o += b")"
                return
            if self.get(id(v)):
                return
            if len(v) <= 3:
                for x in v:
                    self.save(x)
                o += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(v)]
            else:
                o += b"("
                for x in v:
                    self.save(x)
                o += b"t"
            self.put(id(v), v)
        elif isinstance(v, list):
            if self.get(id(v)):
                return
            o += b"]"
            self.put(id(v), v)
            self.items(v, b"a", b"e")
        elif isinstance(v, dict):
            if self.get(id(v)):
                return
            o += b"}"
            self.put(id(v), v)
            self.items([x for kv in v.items() for x in kv], b"s", b"u", pairs=True)
        elif isinstance(v, Reduce):
            if self.get(id(v)):
                return
            self.save(v.func)
            self.save(v.args)
            o += b"\x81" if v.newobj else b"R"
            self.put(id(v), v)
            if v.state is not None:
                self.save(v.state)
                o += b"b"
            if v.items:
                self.items([x for kv in v.items for x in kv], b"s", b"u", pairs=True)
        else:
            raise TypeError(type(v))

    def items(self, xs, one, many, pairs=False):
        if not xs:
            return
        if len(xs) == (2 if pairs else 1):
            for x in xs:
                self.save(x)
            self.out += one
            return
        self.out += b"("
        for x in xs:
            self.save(x)
        self.out += many

    def dumps(self, v):
        self.save(v)
        self.out += b"."
        return bytes(self.out)


def ordered_dict(items=()):
    return Reduce(G("collections", "OrderedDict"), (), items=list(items))


class Archive:
    """Storages of one torch.save file; `tensor` appends one and returns its _rebuild_tensor_v2 node."""
    SIZES = {"FloatStorage": ("<f", 4), "LongStorage": ("<q", 8), "IntStorage": ("<i", 4), "HalfStorage": ("<e", 2)}

    def __init__(self):
        self.storages = []

    def tensor(self, kind, values, shape, parameter=False):
        fmt, _ = self.SIZES[kind]
        key = str(len(self.storages))
        self.storages.append((key, b"".join(struct.pack(fmt, x) for x in values)))
        stride, s = [], 1
        for d in reversed(shape):
            stride.insert(0, s)
            s *= d
        storage = PersId(("storage", G("torch", kind), key, "cpu", len(values)))
        t = Reduce(G("torch._utils", "_rebuild_tensor_v2"), (storage, 0, tuple(shape), tuple(stride), parameter, ordered_dict()))
        return Reduce(G("torch._utils", "_rebuild_parameter"), (t, True, ordered_dict())) if parameter else t

    def write(self, path, root, name="archive"):
        pkl = Pickler().dumps(root)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with zipfile.ZipFile(path, "w") as z:
            # Fixed timestamps (ZipInfo's default) keep regenerated files byte-identical.
            z.writestr(zipfile.ZipInfo(f"{name}/data.pkl"), pkl)
            z.writestr(zipfile.ZipInfo(f"{name}/byteorder"), "little")
            for key, data in self.storages:
                z.writestr(zipfile.ZipInfo(f"{name}/data/{key}"), data)
            z.writestr(zipfile.ZipInfo(f"{name}/version"), "3\n")


# numpy pickles a dtype as numpy.dtype(descr, False, True) + BUILD (version, byte order, ...), and a
# scalar as numpy.core.multiarray.scalar(dtype, raw bytes). np.dtype('f8') is one object, so its
# second use in a file is a memo reference.
def np_dtype(descr, order):
    return Reduce(G("numpy", "dtype"), (descr, False, True), state=(3, order, None, None, None, -1, -1, 0))


F8 = np_dtype("f8", "<")


def np_scalar(dtype, raw, core="numpy.core.multiarray"):
    return Reduce(G(core, "scalar"), (dtype, raw))


def np_array(dtype, shape, raw, core="numpy.core.multiarray"):
    # ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b'), then BUILD (1, shape, dtype, fortran, data).
    return Reduce(G(core, "_reconstruct"), (G("numpy", "ndarray"), (0,), b"b"), state=(1, tuple(shape), dtype, False, raw))


def sd_v1_4_layout(payload=None):
    """The top level of sd-v1-4.ckpt (Lightning 1.x): weights plus training state, tiny tensors."""
    a = Archive()
    state_dict = ordered_dict([
        ("betas", a.tensor("FloatStorage", [0.00085, 0.0012], [2])),
        ("model.diffusion_model.time_embed.0.bias", a.tensor("FloatStorage", [0.5, -0.25, 1.0, 2.0], [4])),
        ("first_stage_model.decoder.conv_out.bias", a.tensor("FloatStorage", [0.1, 0.2, 0.3], [3])),
        ("cond_stage_model.transformer.text_model.embeddings.position_ids", a.tensor("LongStorage", [0, 1, 2, 3], [1, 4])),
        ("model_ema.decay", a.tensor("FloatStorage", [0.9999], [])),
        ("model_ema.num_updates", a.tensor("IntStorage", [470000], [])),
    ])
    checkpoint = {
        "monitor": None,
        "best_model_score": np_scalar(F8, struct.pack("<d", 0.125)),
        "best_model_path": "",
        "current_score": np_scalar(F8, struct.pack("<d", 0.25)),
        "dirpath": "/fsx/stable-diffusion/logs/checkpoints",
    }
    root = {
        "epoch": 5,
        "global_step": 470000,
        "pytorch-lightning_version": "1.4.2",
        "state_dict": state_dict,
        "callbacks": {G("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): checkpoint},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-08,
                                                              "weight_decay": 0.01, "amsgrad": False, "initial_lr": 1e-4,
                                                              "params": [0, 1]}]}],
        "lr_schedulers": [{"base_lrs": [1e-4], "last_epoch": 470000, "_step_count": 470001, "verbose": False,
                           "_get_lr_called_within_step": False, "_last_lr": [np_scalar(F8, struct.pack("<d", 1e-4))],
                           "lr_lambdas": [None]}],
    }
    if payload is not None:
        root["loggers"] = payload
    return a, root


def numpy_values():
    a = Archive()
    f4, i8, b1 = np_dtype("f4", "<"), np_dtype("i8", "<"), np_dtype("b1", "|")
    root = {
        "f8": np_scalar(F8, struct.pack("<d", 0.125)),
        "f4": np_scalar(f4, struct.pack("<f", 1.5)),
        "i8": np_scalar(i8, struct.pack("<q", -7)),
        "b1": np_scalar(b1, b"\x01"),
        "be_f8": np_scalar(np_dtype("f8", ">"), struct.pack(">d", 0.5)),
        "numpy2_f8": np_scalar(F8, struct.pack("<d", 2.5), core="numpy._core.multiarray"),
        "c16": np_scalar(np_dtype("c16", "<"), struct.pack("<dd", 1.0, 2.0)),
        "array": np_array(f4, [2, 3], struct.pack("<6f", *range(6))),
        "numpy2_array": np_array(i8, [2], struct.pack("<2q", 4, 5), core="numpy._core.multiarray"),
        "weight": a.tensor("FloatStorage", [1.0, 2.0], [2]),
    }
    return a, root


def parameterdict_embedding():
    """nn.ParameterDict pickles as NEWOBJ + BUILD(module __dict__), with the tensors in `_parameters`."""
    a = Archive()
    vectors = a.tensor("FloatStorage", [0.01 * i for i in range(32)], [1, 32], parameter=True)
    module_state = {
        "training": True,
        "_parameters": ordered_dict([("*", vectors)]),
        "_buffers": ordered_dict(),
        "_non_persistent_buffers_set": Reduce(G("__builtin__", "set"), ([],)),
        "_backward_hooks": ordered_dict(),
        "_forward_hooks": ordered_dict(),
        "_forward_pre_hooks": ordered_dict(),
        "_state_dict_hooks": ordered_dict(),
        "_load_state_dict_pre_hooks": ordered_dict(),
        "_modules": ordered_dict(),
    }
    params = Reduce(G("torch.nn.modules.container", "ParameterDict"), (), state=module_state, newobj=True)
    return a, {"string_to_token": {"*": 265}, "string_to_param": params}


PAYLOADS = {
    "os.system": Reduce(G("os", "system"), (f"touch {MARKER}",)),
    "posix.system": Reduce(G("posix", "system"), (f"touch {MARKER}",)),
    "builtins.eval": Reduce(G("builtins", "eval"), (f"__import__('os').system('touch {MARKER}')",)),
    "builtins.exec": Reduce(G("builtins", "exec"), (f"import os; os.system('touch {MARKER}')",)),
    "subprocess.Popen": Reduce(G("subprocess", "Popen"), (["touch", MARKER],)),
    # getattr(__import__('os'), 'system')('touch ...'): getattr is the first global the stream names.
    "__builtin__.getattr": Reduce(Reduce(G("__builtin__", "getattr"), (Reduce(G("__builtin__", "__import__"), ("os",)), "system")),
                                  (f"touch {MARKER}",)),
}


def a1111_embedding(payload):
    """An AUTOMATIC1111 embedding (as its textual-inversion trainer saves it) plus one payload entry."""
    a = Archive()
    vectors = a.tensor("FloatStorage", [0.02 * i - 0.3 for i in range(64)], [2, 32], parameter=True)
    return a, {"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": "emb-pt", "step": 100,
               "sd_checkpoint": "7460a6fa", "sd_checkpoint_name": "sd-v1-4", "hash": payload}


def main():
    for folder in (IO, SD):
        for name, make in (("sd-v1-4-layout.ckpt", sd_v1_4_layout), ("parameterdict_embedding.pt", parameterdict_embedding)):
            a, root = make()
            a.write(os.path.join(folder, name), root, name.split(".")[0])
        for glob, payload in PAYLOADS.items():
            a, root = a1111_embedding(payload)
            a.write(os.path.join(folder, f"payload_{glob.replace('.', '_')}.pt"), root)
    a, root = numpy_values()
    a.write(os.path.join(IO, "numpy_values.pt"), root)
    a, root = sd_v1_4_layout(PAYLOADS["posix.system"])
    a.write(os.path.join(SD, "payload.ckpt"), root, "payload")
    print("wrote", IO, "and", SD)


if __name__ == "__main__":
    main()
