#!/usr/bin/python3
"""An outside oracle for the ZSCRGAN losses, gradients and optimizer steps.

Written from docs/algorithm.md alone (not from the C++ sources), in float64 PyTorch. For given
weights, a batch and noise it computes
  - the D step:    L_D, its gradient w.r.t. every critic parameter, and the critic after one
                   TF1 RMSProp step from fresh state (mean square 1) followed by the clip;
  - the G step:    L_G and its parts (mean D(x, t), L_C, mm, kl, kl_w), its gradient w.r.t.
                   every condition and generator parameter, and those parameters after one TF1
                   RMSProp step from fresh state;
  - the CSEM step: L_C, its gradient w.r.t. the CSEM parameters, and those parameters after one
                   TF1 Adam step from fresh state (t = 1);
and writes inputs and results to a safetensors file that tests/test_oracle.cc checks our C++
against. Every step starts from the same weights.

Conventions of this script (the doc's, not the C++'s): a dense layer is `W x + b` with W stored
(out, in), as the doc writes `Wc t + bc`; a layer over a concatenation [a, b] has the columns of
a first. The noise is an input: the script draws it (torch's generator, seeded) and stores it.

Derivatives at the kinks are TF 1.13's (LeakyReLU'(0) = 0.2, ReLU'(0) = 0, d|x|/dx at 0 = 0),
pinned by the explicit autograd functions below rather than left to torch's defaults.

Two cases (see README.md beside this file):
  demo  text 64, image 128, gf 256, df 128, embed 64, z 32, batch 32; weights from a few hundred
        oracle training steps on synthetic ReLU-feature data; inputs stored as float16 values
        (exact: the oracle computes from the stored values); the expectations of the four largest
        weight tensors are stored at 2048 fixed random elements each (their indices beside them),
        every other expectation in full; about 0.8 MB.
  odd   text 33, image 50, gf 40, df 24, embed 12, z 5, batch 7; wide random weights with some
        biases exactly 0, an all-zero text row and image row (so LeakyReLU pre-activations are
        exactly 0), wrong pairs drawn independently (so kl != kl_w); everything in full, float32.

Usage (Debian's torch: apt-get install -y python3-torch python3-numpy):
  /usr/bin/python3 tools/torch_peer/oracle.py --case demo --out tests/fixtures/oracle_demo.safetensors
  /usr/bin/python3 tools/torch_peer/oracle.py --case odd  --out tests/fixtures/oracle_odd.safetensors
  /usr/bin/python3 tools/torch_peer/oracle.py --case odd --full --out /tmp/x.safetensors  # no sampling
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- kinks as TF 1.13 has them


class LeakyRelu(torch.autograd.Function):
    """max(x, 0.2 x); derivative 1 for x > 0, else 0.2 (0.2 at 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, 0.2 * x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.where(x > 0, torch.ones_like(x), torch.full_like(x, 0.2))


class Relu(torch.autograd.Function):
    """max(x, 0); derivative 1 for x > 0, else 0 (0 at 0)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > 0, x, torch.zeros_like(x))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x > 0).to(g.dtype)


class Abs(torch.autograd.Function):
    """|x|; derivative sign(x), 0 at 0."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.abs()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ((x > 0).to(g.dtype) - (x < 0).to(g.dtype))


lrelu, relu, absf = LeakyRelu.apply, Relu.apply, Abs.apply

# ---------------------------------------------------------------- the networks (algorithm.md)

# Parameter names, shapes as functions of the dims, and the step that trains them.
def param_shapes(d):
    E, Z, Gf, Df, Dv, Dt = d["embed"], d["z"], d["gf"], d["df"], d["image"], d["text"]
    return {
        "cond.W": (2 * E, Dt), "cond.b": (2 * E,),
        "gen.W1": (Gf, E + Z), "gen.b1": (Gf,),
        "gen.W2": (2 * Gf, Gf), "gen.b2": (2 * Gf,),
        "gen.W3": (Dv, 2 * Gf), "gen.b3": (Dv,),
        "critic.W1": (Df, Dv + Dt), "critic.b1": (Df,),
        "critic.W2": (1, Df), "critic.b2": (1,),
        "csem.W": (E, Dv), "csem.b": (E,),
    }


G_PARAMS = ["cond.W", "cond.b", "gen.W1", "gen.b1", "gen.W2", "gen.b2", "gen.W3", "gen.b3"]
D_PARAMS = ["critic.W1", "critic.b1", "critic.W2", "critic.b2"]
C_PARAMS = ["csem.W", "csem.b"]


def dense(p, w, b, x):
    return x @ p[w].T + p[b]


def condition(p, t, eps):
    """h = lrelu(Wc t + bc); mu = h[:, :E], log_sigma = h[:, E:]; c = mu + exp(log_sigma) eps."""
    h = lrelu(dense(p, "cond.W", "cond.b", t))
    E = h.shape[1] // 2
    mu, log_sigma = h[:, :E], h[:, E:]
    return mu + torch.exp(log_sigma) * eps, mu, log_sigma


def generator(p, c, z):
    """[c, z] -> Gf lrelu -> 2Gf lrelu -> Dv relu."""
    h1 = lrelu(dense(p, "gen.W1", "gen.b1", torch.cat([c, z], 1)))
    h2 = lrelu(dense(p, "gen.W2", "gen.b2", h1))
    return relu(dense(p, "gen.W3", "gen.b3", h2))


def critic(p, v, t):
    """[v, t] -> Df lrelu -> 1 (linear)."""
    h = lrelu(dense(p, "critic.W1", "critic.b1", torch.cat([v, t], 1)))
    return dense(p, "critic.W2", "critic.b2", h)


def csem(p, v):
    return lrelu(dense(p, "csem.W", "csem.b", v))


def kl_published(mu, log_sigma):
    """m = (mu + ls)/2; K(a, s) = mean(-s + 0.5(-1 + exp(2s) + a^2)); kl = (K(mu, m) + K(ls, m))/2."""
    m = (mu + log_sigma) / 2

    def K(a, s):
        return torch.mean(-s + 0.5 * (-1 + torch.exp(2 * s) + a * a))

    return 0.5 * (K(mu, m) + K(log_sigma, m))


def l2_normalize(x):
    """x * rsqrt(max(sum(x^2), 1e-12)) per row."""
    return x * torch.rsqrt(torch.clamp((x * x).sum(1, keepdim=True), min=1e-12))


def mean_cos(a, b):
    return torch.mean((l2_normalize(a) * l2_normalize(b)).sum(1))


def csem_loss(p, x, xw, c1):
    """L_C = log(1 + exp(cos_w - cos_r)), cos_r = mean cos(e(x), c1), cos_w = mean cos(e(xw), c1)."""
    cos_r = mean_cos(csem(p, x), c1)
    cos_w = mean_cos(csem(p, xw), c1)
    return torch.log(1 + torch.exp(cos_w - cos_r))


def l1_rows(x, v):
    return torch.mean(absf(x - v).sum(1))


def critic_loss(p, v, t, v_wrong, x):
    """L_D = (mean D(x, t) + mean D(v_wrong, t)) / 2 - mean D(v, t)."""
    return (torch.mean(critic(p, x, t)) + torch.mean(critic(p, v_wrong, t))) / 2 - torch.mean(
        critic(p, v, t))


def generator_loss(p, batch, noise, hp):
    """L_G = -mean D(x, t) + L_C + mm_reg_coeff mm + kl_div_coefficient (kl + kl_w) / 2."""
    v, t, v_wrong, t_wrong = batch
    c1, mu, ls = condition(p, t, noise["eps"])
    c1w, mu_w, ls_w = condition(p, t_wrong, noise["eps_wrong"])
    x = generator(p, c1, noise["z"])
    xw = generator(p, c1w, noise["z_wrong"])
    parts = {
        "kl": kl_published(mu, ls),
        "kl_w": kl_published(mu_w, ls_w),
        "mm": l1_rows(x, v) - l1_rows(x, v_wrong) + 2,
        "mean_d_fake": torch.mean(critic(p, x, t)),
        "L_C": csem_loss(p, x, xw, c1),
    }
    total = (-parts["mean_d_fake"] + parts["L_C"] + hp["mm_reg_coeff"] * parts["mm"] +
             hp["kl_div_coefficient"] * (parts["kl"] + parts["kl_w"]) / 2)
    return total, parts


# ---------------------------------------------------------------- TF1 optimizers


def rmsprop(p, g, ms, lr, clip=None, rho=0.9, eps=1e-10):
    """ms = rho ms + (1 - rho) g^2; p -= lr g / sqrt(ms + eps); then clip to [-clip, clip]."""
    ms = rho * ms + (1 - rho) * g * g
    p = p - lr * g / torch.sqrt(ms + eps)
    if clip is not None:
        p = torch.clamp(p, -clip, clip)
    return p, ms


def adam(p, g, m, v, t, lr, b1, b2, eps=1e-8):
    """m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; lr_t = lr sqrt(1-b2^t)/(1-b1^t);
    p -= lr_t m / (sqrt(v) + eps). The beta powers are exact here (float64), not float32."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return p - lr_t * m / (torch.sqrt(v) + eps), m, v


# ---------------------------------------------------------------- one step of each kind


def grads_of(loss, p, names):
    leaves = [p[n] for n in names]
    return dict(zip(names, torch.autograd.grad(loss, leaves)))


def leaf_params(p):
    return {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}


def d_step(p, batch, noise, hp, ms=None):
    v, t, v_wrong, _ = batch
    q = leaf_params(p)
    with torch.no_grad():
        c, _, _ = condition(q, t, noise["eps"])
        x = generator(q, c, noise["z"])
    loss = critic_loss(q, v, t, v_wrong, x)
    g = grads_of(loss, q, D_PARAMS)
    after, new_ms = {}, {}
    for n in D_PARAMS:
        s = ms[n] if ms is not None else torch.ones_like(p[n])
        after[n], new_ms[n] = rmsprop(p[n], g[n], s, hp["d_lr"], clip=hp["clip_val"])
    return loss.detach(), g, after, new_ms


def g_step(p, batch, noise, hp, ms=None):
    q = leaf_params(p)
    loss, parts = generator_loss(q, batch, noise, hp)
    g = grads_of(loss, q, G_PARAMS)
    after, new_ms = {}, {}
    for n in G_PARAMS:
        s = ms[n] if ms is not None else torch.ones_like(p[n])
        after[n], new_ms[n] = rmsprop(p[n], g[n], s, hp["g_lr"])
    return loss.detach(), {k: x.detach() for k, x in parts.items()}, g, after, new_ms


def csem_step(p, batch, noise, hp, state=None):
    _, t, _, t_wrong = batch
    q = leaf_params(p)
    with torch.no_grad():
        c1, _, _ = condition(q, t, noise["eps"])
        c1w, _, _ = condition(q, t_wrong, noise["eps_wrong"])
        x = generator(q, c1, noise["z"])
        xw = generator(q, c1w, noise["z_wrong"])
    loss = csem_loss(q, x, xw, c1)
    g = grads_of(loss, q, C_PARAMS)
    step = state["t"] + 1 if state else 1
    after, new_state = {}, {"t": step}
    for n in C_PARAMS:
        m0 = state["m"][n] if state else torch.zeros_like(p[n])
        v0 = state["v"][n] if state else torch.zeros_like(p[n])
        after[n], m1, v1 = adam(p[n], g[n], m0, v0, step, hp["csem_lr"], hp["adam_beta1"],
                                hp["adam_beta2"])
        new_state.setdefault("m", {})[n] = m1
        new_state.setdefault("v", {})[n] = v1
    return loss.detach(), g, after, new_state


# ---------------------------------------------------------------- noise and data


def truncated_normal(gen, shape):
    """Standard normal; draws with |x| >= 2 are drawn again."""
    x = torch.randn(shape, generator=gen)
    while True:
        bad = x.abs() >= 2
        if not bad.any():
            return x
        x[bad] = torch.randn(int(bad.sum()), generator=gen)


def draw_noise(gen, d, b, with_wrong):
    n = {"eps": truncated_normal(gen, (b, d["embed"])), "z": torch.randn((b, d["z"]), generator=gen)}
    if with_wrong:
        n["eps_wrong"] = truncated_normal(gen, (b, d["embed"]))
        n["z_wrong"] = torch.randn((b, d["z"]), generator=gen)
    return n


class SyntheticClasses:
    """Classes with one text prototype each and ReLU image features (many exact zeros)."""

    def __init__(self, gen, d, classes=24):
        self.texts = torch.randn((classes, d["text"]), generator=gen)
        self.mix = torch.randn((d["image"], d["text"]), generator=gen) / math.sqrt(d["text"])
        self.shift = 0.3 * torch.randn((classes, d["image"]), generator=gen)
        self.gen, self.d, self.classes = gen, d, classes

    def batch(self, b):
        """B classes, an image of each, its text, and the wrong pairs rolled by one row."""
        ids = torch.randint(0, self.classes, (b,), generator=self.gen)
        t = self.texts[ids]
        noise = 0.5 * torch.randn((b, self.d["image"]), generator=self.gen)
        v = torch.clamp(t @ self.mix.T + self.shift[ids] + noise, min=0)
        return v, t, torch.roll(v, 1, 0), torch.roll(t, 1, 0)


def init_params(gen, d, w_std, b_std=0.0):
    p = {}
    for n, shape in param_shapes(d).items():
        std = w_std if ".W" in n else b_std
        p[n] = std * torch.randn(shape, generator=gen) if std > 0 else torch.zeros(shape)
    return p


def pretrain(p, data, d, b, gen, rounds, e_iters, m_iters, hp):
    """The EM schedule of algorithm.md with persistent optimizer state: weights that have trained."""
    ms_d = ms_g = adam_state = None
    for _ in range(rounds):
        for _ in range(e_iters):
            for _ in range(5):
                _, _, after, ms_d = d_step(p, data.batch(b), draw_noise(gen, d, b, False), hp, ms_d)
                p.update(after)
            _, _, _, after, ms_g = g_step(p, data.batch(b), draw_noise(gen, d, b, True), hp, ms_g)
            p.update(after)
        for _ in range(m_iters):
            _, _, after, adam_state = csem_step(p, data.batch(b), draw_noise(gen, d, b, True), hp,
                                                adam_state)
            p.update(after)
    return p


# ---------------------------------------------------------------- safetensors, by hand

DTYPES = {np.float16: "F16", np.float32: "F32", np.float64: "F64", np.int32: "I32"}


def write_safetensors(path, tensors, metadata):
    """8-byte little-endian header size, JSON header (padded with spaces to 8), data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": DTYPES[a.dtype.type], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


# ---------------------------------------------------------------- the two cases

CASES = {
    "demo": dict(dims=dict(text=64, image=128, gf=256, df=128, embed=64, z=32), batch=32),
    "odd": dict(dims=dict(text=33, image=50, gf=40, df=24, embed=12, z=5), batch=7),
}

# Published coefficients; learning rates raised for the fixture step so that one step moves
# every parameter well beyond the comparison's tolerance (the step is the thing under test).
FIXTURE_HP = dict(d_lr=0.05, g_lr=0.01, csem_lr=0.002, clip_val=0.01, mm_reg_coeff=2.0,
                  kl_div_coefficient=1.0, adam_beta1=0.5, adam_beta2=0.999)
PRETRAIN_HP = dict(FIXTURE_HP, d_lr=0.002, g_lr=0.001, csem_lr=0.002)


def build_case(name, seed):
    spec = CASES[name]
    d, b = spec["dims"], spec["batch"]
    gen = torch.Generator().manual_seed(seed)
    if name == "demo":
        p = init_params(gen, d, 0.02)
        data = SyntheticClasses(gen, d)
        p = pretrain(p, data, d, b, gen, rounds=3, e_iters=40, m_iters=40, hp=PRETRAIN_HP)
        batch = data.batch(b)
        store = np.float16  # inputs as float16 values (exact; the oracle uses these values)
    else:
        p = init_params(gen, d, 0.15, 0.05)
        for n in ["cond.b", "critic.b1", "csem.b"]:
            p[n][::3] = 0.0  # exact zeros meet exact-zero inputs: LeakyReLU pre-activation 0
        t = torch.randn((b, d["text"]), generator=gen)
        v = torch.clamp(torch.randn((b, d["image"]), generator=gen), min=0)
        t[3] = 0.0
        v[3] = 0.0
        v_wrong = torch.clamp(torch.randn((b, d["image"]), generator=gen), min=0)
        t_wrong = torch.randn((b, d["text"]), generator=gen)
        batch = (v, t, v_wrong, t_wrong)
        store = np.float32
    noise = {"d_step": draw_noise(gen, d, b, False), "g_step": draw_noise(gen, d, b, True),
             "csem_step": draw_noise(gen, d, b, True)}

    # Round every input to the stored precision first: the oracle computes from what is stored.
    def rounded(x):
        return torch.from_numpy(x.detach().numpy().astype(store).astype(np.float64))

    p = {k: rounded(x) for k, x in p.items()}
    batch = tuple(rounded(x) for x in batch)
    noise = {s: {k: rounded(x) for k, x in n.items()} for s, n in noise.items()}
    return d, b, p, batch, noise, store


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20260)
    ap.add_argument("--full", action="store_true", help="store every element of every expectation")
    ap.add_argument("--sample", type=int, default=2048,
                    help="elements stored per large expectation tensor (demo case)")
    args = ap.parse_args()

    d, b, p, batch, noise, store = build_case(args.case, args.seed)
    hp = FIXTURE_HP
    out = {}

    def put(name, x, dtype):
        out[name] = x.detach().numpy().astype(dtype)

    for n, x in p.items():
        put("param." + n, x, store)
    for n, x in zip(["v", "t", "v_wrong", "t_wrong"], batch):
        put("batch." + n, x, store)
    for s, nz in noise.items():
        for n, x in nz.items():
            put(s + "." + n, x, store)

    # Large tensors of the demo case are stored at fixed random elements (see the docstring).
    pick = np.random.default_rng(args.seed)
    sample_at = {}
    if args.case == "demo" and not args.full:
        for n, shape in param_shapes(d).items():
            size = int(np.prod(shape))
            if size > 16384:
                sample_at[n] = np.sort(pick.choice(size, args.sample, replace=False)).astype(np.int32)

    def expect(name, param, x):
        flat = x.detach().numpy().reshape(-1)
        if param in sample_at:
            out[name + ".index"] = sample_at[param]
            flat = flat[sample_at[param]]
        out[name] = flat.astype(np.float32)

    report = []

    def summarize(step, lr_name, before, grads, after):
        for n in grads:
            gmax = float(grads[n].abs().max())
            moved = (after[n] - before[n]).abs()
            tol = 1e-5 + 1e-3 * after[n].abs()
            report.append("%-10s %-10s max|grad| %.3g  moved beyond tolerance %5.1f%%" % (
                step, n, gmax, 100.0 * float((moved > tol).double().mean())))

    loss, g, after, _ = d_step(p, batch, noise["d_step"], hp)
    out["d_step.loss"] = np.array([float(loss)], np.float64)
    for n in D_PARAMS:
        expect("d_step.grad." + n, n, g[n])
        expect("d_step.after." + n, n, after[n])
    summarize("d_step", "d_lr", p, g, after)

    loss, parts, g, after, _ = g_step(p, batch, noise["g_step"], hp)
    out["g_step.loss"] = np.array([float(loss)], np.float64)
    for k, x in parts.items():
        out["g_step." + k] = np.array([float(x)], np.float64)
    for n in G_PARAMS:
        expect("g_step.grad." + n, n, g[n])
        expect("g_step.after." + n, n, after[n])
    summarize("g_step", "g_lr", p, g, after)

    loss, g, after, _ = csem_step(p, batch, noise["csem_step"], hp)
    out["csem_step.loss"] = np.array([float(loss)], np.float64)
    for n in C_PARAMS:
        expect("csem_step.grad." + n, n, g[n])
        expect("csem_step.after." + n, n, after[n])
    summarize("csem_step", "csem_lr", p, g, after)

    meta = {"case": args.case, "batch": str(b), "seed": str(args.seed),
            "torch": torch.__version__, "generated_by": "tools/torch_peer/oracle.py --case " +
            args.case + (" --full" if args.full else ""),
            "layout": "weights (out, in); a layer over [a, b] takes a's columns first"}
    meta.update({k: str(v) for k, v in d.items()})
    meta.update({k: repr(v) for k, v in hp.items()})
    write_safetensors(args.out, out, meta)
    print("\n".join(report))
    print("L_D %.9g  L_G %.9g  L_C(csem step) %.9g" % (out["d_step.loss"][0], out["g_step.loss"][0],
                                                      out["csem_step.loss"][0]))
    print("G parts: " + "  ".join("%s %.9g" % (k, out["g_step." + k][0]) for k in parts))
    print("wrote %s (%d bytes)" % (args.out, os.path.getsize(args.out)))


if __name__ == "__main__":
    sys.exit(main())
