"""Generates the tensor-op fixtures: inputs and torch's outputs, stored NHWC where the op is spatial.

Run from the repository root with the pinned environment:
    ~/.sd-ref-venv/bin/python Scripts/reference/gen_op_fixtures.py
Writes Tests/DiffusionTensorTests/Fixtures/ops/ops.safetensors (fp32).
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
torch.set_num_threads(1)
out = {}


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def put(name, t):
    out[name] = t.detach().to(torch.float32).contiguous()


# --- conv2d -------------------------------------------------------------------------------
conv_cases = {
    # name: (N, C, H, W, O, k, stride, (top, left, bottom, right), bias)
    "conv_k3s1p1": (2, 8, 9, 11, 12, 3, 1, (1, 1, 1, 1), True),
    "conv_k1": (2, 16, 6, 5, 8, 1, 1, (0, 0, 0, 0), True),
    "conv_k3s2p1": (1, 8, 10, 9, 8, 3, 2, (1, 1, 1, 1), True),
    "conv_k3s2_asym": (2, 8, 10, 12, 8, 3, 2, (0, 0, 1, 1), True),
    "conv_nobias": (1, 5, 7, 7, 6, 3, 1, (1, 1, 1, 1), False),
    "conv_k5": (1, 4, 12, 10, 7, 5, 1, (2, 2, 2, 2), True),
}
for name, (n, c, h, w, o, k, s, (pt, pl, pb, pr), has_bias) in conv_cases.items():
    x = torch.randn(n, c, h, w)
    wt = torch.randn(o, c, k, k) * 0.2
    b = torch.randn(o) if has_bias else None
    y = F.conv2d(F.pad(x, (pl, pr, pt, pb)), wt, b, stride=s)
    r = torch.randn_like(y)
    put(f"{name}.x", nhwc(x))
    put(f"{name}.weight", wt)
    if has_bias:
        put(f"{name}.bias", b)
    put(f"{name}.y", nhwc(y))
    put(f"{name}.residual", nhwc(r))
    put(f"{name}.y_res_silu", nhwc(F.silu(y + r)))
    put(f"{name}.y_gelu", nhwc(F.gelu(y)))

# --- linear / matmul ----------------------------------------------------------------------
x = torch.randn(2, 5, 16)
wt = torch.randn(24, 16) * 0.3
b = torch.randn(24)
put("linear.x", x); put("linear.weight", wt); put("linear.bias", b)
put("linear.y", F.linear(x, wt, b))
put("linear.y_gelu", F.gelu(F.linear(x, wt, b)))
put("linear.y_nobias", F.linear(x, wt))
a = torch.randn(3, 4, 5)
bm = torch.randn(3, 5, 6)
put("matmul.a", a); put("matmul.b", bm); put("matmul.y", a @ bm)
put("matmul.bt", bm.transpose(1, 2).contiguous()); put("matmul.at", a.transpose(1, 2).contiguous())
a2 = torch.randn(7, 9)
b2 = torch.randn(9, 4)
put("matmul2d.a", a2); put("matmul2d.b", b2); put("matmul2d.y", a2 @ b2)

# --- normalisation ------------------------------------------------------------------------
for name, (shape, groups, eps) in {
    "groupnorm_g8": ((2, 32, 6, 5), 8, 1e-6),
    "groupnorm_g32": ((1, 64, 4, 4), 32, 1e-5),
    "groupnorm_g1": ((2, 12, 3, 7), 1, 1e-5),
}.items():
    x = torch.randn(*shape) * 3 + 1.5
    g = torch.randn(shape[1])
    bb = torch.randn(shape[1])
    y = F.group_norm(x, groups, g, bb, eps)
    put(f"{name}.x", nhwc(x)); put(f"{name}.gamma", g); put(f"{name}.beta", bb)
    put(f"{name}.y", nhwc(y)); put(f"{name}.y_silu", nhwc(F.silu(y)))
x = torch.randn(2, 7, 48) * 2 + 0.5
g = torch.randn(48); bb = torch.randn(48)
put("layernorm.x", x); put("layernorm.gamma", g); put("layernorm.beta", bb)
put("layernorm.y", F.layer_norm(x, (48,), g, bb, 1e-5))

# --- activations and softmax --------------------------------------------------------------
x = torch.randn(3, 5, 17) * 4
put("act.x", x)
put("act.silu", F.silu(x)); put("act.gelu", F.gelu(x)); put("act.gelu_tanh", F.gelu(x, approximate="tanh"))
put("act.quick_gelu", x * torch.sigmoid(1.702 * x))
put("softmax.y", torch.softmax(x, dim=-1))
xl = torch.randn(2, 300) * 30
put("softmax_large.x", xl); put("softmax_large.y", torch.softmax(xl, dim=-1))

# --- resizing -----------------------------------------------------------------------------
x = torch.randn(2, 3, 5, 7)
put("upsample.x", nhwc(x)); put("upsample.y", nhwc(F.interpolate(x, scale_factor=2.0, mode="nearest")))
x = torch.randn(1, 3, 10, 13)
put("resize.x", nhwc(x))
for mode in ["bilinear", "bicubic"]:
    for (oh, ow) in [(7, 9), (21, 17), (10, 26)]:
        y = F.interpolate(x, size=(oh, ow), mode=mode, align_corners=False)
        put(f"resize.{mode}_{oh}x{ow}", nhwc(y))
    y = F.interpolate(x, size=(6, 20), mode="nearest")
    put("resize.nearest_6x20", nhwc(y))

# --- broadcasting ---------------------------------------------------------------------------
a = torch.randn(2, 3, 1, 4)
bb = torch.randn(3, 5, 1) + 3
put("bcast.a", a); put("bcast.b", bb)
put("bcast.add", a + bb); put("bcast.sub", a - bb); put("bcast.mul", a * bb); put("bcast.div", a / bb)

# --- attention ------------------------------------------------------------------------------
for name, (b, lq, lk, heads, d, causal) in {
    "attn_cross": (2, 40, 23, 4, 8, False),
    "attn_self_long": (1, 300, 300, 2, 16, False),
    "attn_causal": (2, 11, 11, 3, 8, True),
}.items():
    q = torch.randn(b, lq, heads * d)
    k = torch.randn(b, lk, heads * d)
    v = torch.randn(b, lk, heads * d)
    qh = q.view(b, lq, heads, d).transpose(1, 2)
    kh = k.view(b, lk, heads, d).transpose(1, 2)
    vh = v.view(b, lk, heads, d).transpose(1, 2)
    o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal)
    put(f"{name}.q", q); put(f"{name}.k", k); put(f"{name}.v", v)
    put(f"{name}.y", o.transpose(1, 2).reshape(b, lq, heads * d))

# Shapes of the fused attention kernel: SD's head dims (40, 64, 80, 160), 77 prompt keys, token counts that
# are not multiples of its 48-query and 128-key tiles, causal across key tiles. `.y_bf16in` is torch's fp32
# attention of the inputs rounded to bf16, the reference of the bf16 kernel.
for name, (b, lq, lk, heads, d, causal) in {
    "attn_d40_cross77": (2, 67, 77, 2, 40, False),
    "attn_d40_self_tiles": (1, 260, 260, 1, 40, False),
    "attn_d64_causal77": (1, 77, 77, 2, 64, True),
    "attn_d64_causal_tiles": (1, 150, 150, 1, 64, True),
    "attn_d80_self": (1, 131, 131, 1, 80, False),
    "attn_d160_cross77": (1, 37, 77, 2, 160, False),
    "attn_d160_cross140": (1, 37, 140, 2, 160, False),
}.items():
    q = torch.randn(b, lq, heads * d)
    k = torch.randn(b, lk, heads * d)
    v = torch.randn(b, lk, heads * d)

    def sdpa(q, k, v):
        heads_first = [t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v)]
        o = F.scaled_dot_product_attention(*heads_first, is_causal=causal)
        return o.transpose(1, 2).reshape(b, lq, heads * d)

    put(f"{name}.q", q); put(f"{name}.k", k); put(f"{name}.v", v)
    put(f"{name}.y", sdpa(q, k, v))
    put(f"{name}.y_bf16in", sdpa(*(t.to(torch.bfloat16).float() for t in (q, k, v))))

save_file(out, "Tests/DiffusionTensorTests/Fixtures/ops/ops.safetensors")
print(f"wrote {len(out)} tensors")
