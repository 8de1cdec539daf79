#!/usr/bin/env python3
"""ZSCRGAN in plain PyTorch, as a speed reference for bench_train_step.

The same model, losses, optimizers and EM schedule as docs/algorithm.md (the
published TensorFlow 1.13 code's semantics), written the straightforward way: nn.Linear layers,
one fresh batch and one fresh generator pass per step, eager mode, no batching across steps.
It trains on random data (60 classes, 45 seen, 20 images and 20 texts each) and reports the
median wall time of an EM round (E-step: 100 x (5 D steps + 1 G step); M-step: 100 CSEM steps),
evaluation excluded, as bench_train_step's round benchmark does.

Needs: Python 3.11 with torch (tools/torch_peer/requirements.txt).
Usage: python3 tools/torch_peer/zscrgan_torch.py [--device cpu|cuda] [--size demo|published]
       [--rounds N] [--threads N] [--seed S] [--json]
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")  # numpy is not needed

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("error: %s has no torch; install it (Python 3.11): python3 -m venv .venv && "
             ".venv/bin/python -m pip install -r tools/torch_peer/requirements.txt" % sys.executable)

SIZES = {
    # text, image, gf, df, embed, z
    "demo": dict(text=64, image=128, gf=256, df=128, embed=64, z=32),
    "published": dict(text=1024, image=2048, gf=2048, df=1024, embed=1024, z=256),
}

# Published hyper-parameters (algorithm.md).
BATCH = 32
CSEM_LR = 0.002
G_LR = 0.0002
D_LR = 0.0002
KL_COEFF = 1.0
MM_COEFF = 2.0
CLIP = 0.01
E_STEP_ITERS = 100
N_CRITIC = 5
M_STEP_ITERS = 100
CLASSES, SEEN, PER_CLASS = 60, 45, 20


def lrelu(x):
    return F.leaky_relu(x, 0.2)


def init_linear(m):
    nn.init.normal_(m.weight, 0.0, 0.02)
    nn.init.zeros_(m.bias)
    return m


def truncated_normal(shape, device):
    # Standard normal restricted to [-2, 2] (TF's truncated_normal).
    return nn.init.trunc_normal_(torch.empty(shape, device=device), 0.0, 1.0, -2.0, 2.0)


class Condition(nn.Module):
    """text -> lrelu(2E) -> (mu, log_sigma); c = mu + exp(log_sigma) * eps."""

    def __init__(self, text, embed):
        super().__init__()
        self.embed = embed
        self.fc = init_linear(nn.Linear(text, 2 * embed))

    def forward(self, t):
        h = lrelu(self.fc(t))
        mu, log_sigma = h[:, :self.embed], h[:, self.embed:]
        eps = truncated_normal(mu.shape, t.device)
        return mu + torch.exp(log_sigma) * eps, mu, log_sigma


class Generator(nn.Module):
    def __init__(self, embed, z, gf, image):
        super().__init__()
        self.fc1 = init_linear(nn.Linear(embed + z, gf))
        self.fc2 = init_linear(nn.Linear(gf, 2 * gf))
        self.fc3 = init_linear(nn.Linear(2 * gf, image))

    def forward(self, c, z):
        h = lrelu(self.fc1(torch.cat([c, z], 1)))
        h = lrelu(self.fc2(h))
        return F.relu(self.fc3(h))


class Critic(nn.Module):
    def __init__(self, image, text, df):
        super().__init__()
        self.fc1 = init_linear(nn.Linear(image + text, df))
        self.fc2 = init_linear(nn.Linear(df, 1))

    def forward(self, v, t):
        return self.fc2(lrelu(self.fc1(torch.cat([v, t], 1))))


class CSEM(nn.Module):
    def __init__(self, image, embed):
        super().__init__()
        self.fc = init_linear(nn.Linear(image, embed))

    def forward(self, v):
        return lrelu(self.fc(v))


class RMSPropTF1:
    """TF1 RMSProp: ms = 0.9 ms + 0.1 g^2; p -= lr g / sqrt(ms + 1e-10); ms starts at 1.

    (torch.optim.RMSprop starts at 0 and divides by sqrt(ms) + eps instead.)"""

    def __init__(self, params, lr, decay=0.9, eps=1e-10):
        self.params = list(params)
        self.lr, self.decay, self.eps = lr, decay, eps
        self.ms = [torch.ones_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        grads = [p.grad for p in self.params]
        torch._foreach_mul_(self.ms, self.decay)
        torch._foreach_addcmul_(self.ms, grads, grads, value=1.0 - self.decay)
        denom = torch._foreach_add(self.ms, self.eps)
        torch._foreach_sqrt_(denom)
        torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)


class AdamTF1:
    """TF1 Adam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); p -= lr_t m / (sqrt(v) + eps).

    The beta powers are kept in Python floats (double), not float32 as TF does."""

    def __init__(self, params, lr, beta1=0.5, beta2=0.999, eps=1e-8):
        self.params = list(params)
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        grads = [p.grad for p in self.params]
        torch._foreach_mul_(self.m, self.b1)
        torch._foreach_add_(self.m, grads, alpha=1.0 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1.0 - self.b2)
        lr_t = self.lr * (1.0 - self.b2 ** self.t) ** 0.5 / (1.0 - self.b1 ** self.t)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, self.m, denom, value=-lr_t)


def set_requires_grad(net, flag):
    for p in net.parameters():
        p.requires_grad_(flag)


def l2_normalize(x):
    return x * torch.rsqrt(torch.clamp_min((x * x).sum(1, keepdim=True), 1e-12))


def kl_published(mu, log_sigma):
    """The KL term exactly as the published code computes it (not the textbook KL)."""
    m = (mu + log_sigma) / 2

    def k(a, s):
        return torch.mean(-s + 0.5 * (-1.0 + torch.exp(2.0 * s) + a * a))

    return 0.5 * (k(mu, m) + k(log_sigma, m))


def csem_loss(csem, x, xw, c1):
    e_x, e_xw, c = l2_normalize(csem(x)), l2_normalize(csem(xw)), l2_normalize(c1)
    cos_r = (e_x * c).sum(1).mean()
    cos_w = (e_xw * c).sum(1).mean()
    return torch.log(1.0 + torch.exp(cos_w - cos_r))


class ZSCRGAN:
    def __init__(self, size, device, seed):
        s = SIZES[size]
        self.s, self.device = s, device
        torch.manual_seed(seed)
        # Random data: images non-negative (like ReLU features), texts centred.
        n = CLASSES * PER_CLASS
        self.images = torch.rand(n, s["image"]).to(device)   # row = class * PER_CLASS + k
        self.texts = (torch.rand(n, s["text"]) - 0.5).to(device)
        self.seen = torch.arange(SEEN, device=device)

        self.cond = Condition(s["text"], s["embed"]).to(device)
        self.gen = Generator(s["embed"], s["z"], s["gf"], s["image"]).to(device)
        self.critic = Critic(s["image"], s["text"], s["df"]).to(device)
        self.csem = CSEM(s["image"], s["embed"]).to(device)

        self.opt_d = RMSPropTF1(self.critic.parameters(), D_LR)
        self.opt_g = RMSPropTF1(list(self.cond.parameters()) + list(self.gen.parameters()), G_LR)
        self.opt_c = AdamTF1(self.csem.parameters(), CSEM_LR)
        self.last = {}

    def batch(self):
        """B distinct random seen classes; per class its first text and a random image of it;
        the wrong pairs are the batch rolled by one row."""
        classes = self.seen[torch.randperm(SEEN, device=self.device)[:BATCH]]
        k = torch.randint(0, PER_CLASS, (BATCH,), device=self.device)
        v = self.images[classes * PER_CLASS + k]
        t = self.texts[classes * PER_CLASS]
        return v, t, torch.roll(v, 1, 0), torch.roll(t, 1, 0)

    def z(self):
        return torch.randn(BATCH, self.s["z"], device=self.device)

    def d_step(self):
        v, t, v_wrong, _ = self.batch()
        with torch.no_grad():
            c1, _, _ = self.cond(t)
            x = self.gen(c1, self.z())
        loss = (self.critic(x, t).mean() + self.critic(v_wrong, t).mean()) / 2 \
            - self.critic(v, t).mean()
        self.opt_d.zero_grad()
        loss.backward()
        self.opt_d.step()
        with torch.no_grad():
            for p in self.critic.parameters():
                p.clamp_(-CLIP, CLIP)
        self.last["d"] = loss.detach()

    def g_step(self):
        v, t, v_wrong, t_wrong = self.batch()
        c1, mu, log_sigma = self.cond(t)
        c1w, mu_w, log_sigma_w = self.cond(t_wrong)
        x = self.gen(c1, self.z())
        xw = self.gen(c1w, self.z())
        kl = kl_published(mu, log_sigma)
        kl_w = kl_published(mu_w, log_sigma_w)
        r = (x - v).abs().sum(1).mean()
        w = (x - v_wrong).abs().sum(1).mean()
        mm = r - w + 2.0
        loss = -self.critic(x, t).mean() + csem_loss(self.csem, x, xw, c1) \
            + MM_COEFF * mm + KL_COEFF * (kl + kl_w) / 2
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        self.last["g"], self.last["kl"] = loss.detach(), kl.detach()

    def csem_step(self):
        _, t, _, t_wrong = self.batch()
        with torch.no_grad():
            c1, _, _ = self.cond(t)
            c1w, _, _ = self.cond(t_wrong)
            x = self.gen(c1, self.z())
            xw = self.gen(c1w, self.z())
        loss = csem_loss(self.csem, x, xw, c1)
        self.opt_c.zero_grad()
        loss.backward()
        self.opt_c.step()
        self.last["csem"] = loss.detach()

    def round(self):
        # E-step: the critic and the CSEM are frozen in the G step (their gradients are not
        # needed), as TF's minimize(var_list=...) computes only the listed variables' gradients.
        for _ in range(E_STEP_ITERS):
            for _ in range(N_CRITIC):
                self.d_step()
            set_requires_grad(self.critic, False)
            set_requires_grad(self.csem, False)
            self.g_step()
            set_requires_grad(self.critic, True)
            set_requires_grad(self.csem, True)
        # M-step.
        for _ in range(M_STEP_ITERS):
            self.csem_step()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="demo")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after 1 warm-up round")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (default: all cores this process may use)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    a = ap.parse_args()
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.threads < 0:
        ap.error("--threads must be positive")
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda: torch %s sees no usable GPU" % torch.__version__)

    threads = a.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device = torch.device(a.device)
    model = ZSCRGAN(a.size, device, a.seed)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for i in range(a.rounds + 1):  # round 0 is the warm-up
        sync()
        t0 = time.perf_counter()
        model.round()
        sync()
        dt = time.perf_counter() - t0
        losses = {k: float(v) for k, v in model.last.items()}
        if not all(map(lambda x: x == x and abs(x) != float("inf"), losses.values())):
            sys.exit("error: a loss is not finite after round %d: %s" % (i, losses))
        if i > 0:
            times.append(dt)
        if not a.json:
            print("round %d%s: %.3f s  (last losses: %s)"
                  % (i, " (warm-up)" if i == 0 else "", dt,
                     ", ".join("%s %.4g" % kv for kv in sorted(losses.items()))), flush=True)

    result = {
        "size": a.size,
        "device": a.device,
        "round_seconds_median": statistics.median(times),
        "rounds": len(times),
        "round_seconds": times,
        "threads": threads if device.type == "cpu" else None,
        "torch": torch.__version__,
    }
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(device)
    if a.json:
        print(json.dumps(result))
    else:
        print("median of %d rounds: %.3f s (torch %s, %s, %s)"
              % (len(times), result["round_seconds_median"], torch.__version__, a.size,
                 a.device if device.type == "cuda" else "cpu, %d threads" % threads))


if __name__ == "__main__":
    main()
