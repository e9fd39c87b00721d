#!/usr/bin/env python3
"""Golden fixtures for src/layers, computed independently of the Rust code.

PyTorch is the reference wherever PyTorch has the layer:
  BatchNorm1d (train mode with the running-statistics update, and eval mode; (B, C) and (B, L, C)
  inputs, the latter permuted to torch's (B, C, L)), LayerNorm over 1 and 2 trailing dims,
  Dropout in eval mode, RNN(nonlinearity="tanh") and LSTM.
NumPy is the reference for the rest: the RNN's sigmoid output layer and an all-sigmoid RNN, GCN with
both Laplacians, the GNN layer, the stability norms and the spectral radius (np.linalg.eigvals),
the FM score both ways, and the over-smoothing diagnostic.

Versions used for the committed fixtures: Python 3.11.7, torch 2.15.0 (+cu132 wheel from PyPI, run
on CPU), numpy 2.4.6.

Regenerate (the venv lives outside the repository; PyPI's Linux torch wheel pulls in the CUDA
runtime packages, a few GB, but runs on a CPU-only machine):
    python3 -m venv /opt/venvs/layers
    /opt/venvs/layers/bin/pip install torch numpy
    /opt/venvs/layers/bin/python scripts/make_layer_fixtures.py

Each file is {"layer", "reference", "request", "expected"}: tests/layers.rs feeds "request" to
run_<layer> and compares every key of "expected" to the response (1e-5 absolute + relative).
"""

import json
import math
import os

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "layers")
torch.set_default_dtype(torch.float64)
TORCH = f"torch {torch.__version__}"
NUMPY = f"numpy {np.__version__}"


def lst(a):
    return np.asarray(a, dtype=np.float64).tolist()


def write(name, layer, reference, request, expected):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(
            {"layer": layer, "reference": reference, "request": request, "expected": expected},
            f,
            indent=1,
        )
        f.write("\n")


def batchnorm(rng, shape, mode, name):
    c = shape[-1]
    x = rng.normal(1.0, 2.0, size=shape)
    gamma, beta = rng.normal(1, 0.3, c), rng.normal(0, 0.5, c)
    rm, rv = rng.normal(0, 1, c), rng.uniform(0.5, 2.0, c)
    momentum, eps = 0.2, 1e-5
    bn = torch.nn.BatchNorm1d(c, eps=eps, momentum=momentum)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
        bn.running_mean.copy_(torch.tensor(rm))
        bn.running_var.copy_(torch.tensor(rv))
    bn.train(mode == "train")
    xt = torch.tensor(x)
    # torch's BatchNorm1d wants (B, C, L); ours takes (B, L, C).
    y = bn(xt.permute(0, 2, 1)).permute(0, 2, 1) if x.ndim == 3 else bn(xt)
    flat = x.reshape(-1, c)
    if mode == "train":
        mean, var = flat.mean(axis=0), flat.var(axis=0)
    else:
        mean, var = rm, rv
    write(
        name,
        "batchnorm",
        TORCH,
        {
            "x": lst(x), "mode": mode, "gamma": lst(gamma), "beta": lst(beta),
            "running_mean": lst(rm), "running_var": lst(rv), "momentum": momentum, "eps": eps,
        },
        {
            "y": lst(y.detach().numpy()), "mean": lst(mean), "var": lst(var),
            "running_mean": lst(bn.running_mean.numpy()), "running_var": lst(bn.running_var.numpy()),
            "non_finite": False,
        },
    )


def layernorm(rng, shape, nd, name):
    norm_shape = shape[-nd:]
    x = rng.normal(0.5, 1.5, size=shape)
    gamma, beta = rng.normal(1, 0.3, norm_shape), rng.normal(0, 0.5, norm_shape)
    ln = torch.nn.LayerNorm(list(norm_shape), eps=1e-5)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(gamma))
        ln.bias.copy_(torch.tensor(beta))
    y = ln(torch.tensor(x)).detach().numpy()
    axes = tuple(range(x.ndim - nd, x.ndim))
    write(
        name,
        "layernorm",
        TORCH,
        {"x": lst(x), "normalized_dims": nd, "gamma": lst(gamma), "beta": lst(beta)},
        {"y": lst(y), "mean": lst(x.mean(axis=axes)), "var": lst(x.var(axis=axes)), "non_finite": False},
    )


def dropout_eval(rng):
    x = rng.normal(size=(4, 5))
    d = torch.nn.Dropout(p=0.3)
    d.eval()
    y = d(torch.tensor(x)).numpy()
    write(
        "dropout_eval",
        "dropout",
        TORCH,
        {"x": lst(x), "p": 0.3, "mode": "eval", "seed": 7},
        {"y": lst(y), "mask": None, "scale": 1.0, "non_finite": False},
    )


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_tanh(rng):
    t_len, i_dim, h_dim, o_dim = 6, 3, 4, 2
    rnn = torch.nn.RNN(i_dim, h_dim, nonlinearity="tanh")
    x = rng.normal(size=(t_len, i_dim))
    h0 = rng.normal(0, 0.5, h_dim)
    out, _ = rnn(torch.tensor(x).unsqueeze(1), torch.tensor(h0).reshape(1, 1, h_dim))
    h = out.squeeze(1).detach().numpy()
    w = np.hstack([rnn.weight_ih_l0.detach().numpy(), rnn.weight_hh_l0.detach().numpy()])
    b = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach().numpy()
    v, c = rng.normal(size=(o_dim, h_dim)), rng.normal(size=o_dim)
    o = sigmoid(h @ v.T + c)  # the output layer is ours, not torch's: numpy
    write(
        "rnn_tanh",
        "rnn",
        TORCH + " (h, nn.RNN tanh); " + NUMPY + " (o)",
        {
            "x": lst(x), "w": lst(w), "b": lst(b), "v": lst(v), "c": lst(c), "h0": lst(h0),
            "activation": "tanh", "output_activation": "sigmoid",
        },
        {"h": lst(h), "o": lst(o), "non_finite": False},
    )


def rnn_sigmoid(rng):
    t_len, i_dim, h_dim, o_dim = 5, 2, 3, 2
    x = rng.normal(size=(t_len, i_dim))
    w, b = rng.normal(size=(h_dim, i_dim + h_dim)), rng.normal(size=h_dim)
    v, c = rng.normal(size=(o_dim, h_dim)), rng.normal(size=o_dim)
    h = np.zeros(h_dim)
    hs, os_ = [], []
    for t in range(t_len):
        h = sigmoid(w @ np.concatenate([x[t], h]) + b)
        hs.append(h)
        os_.append(sigmoid(v @ h + c))
    write(
        "rnn_sigmoid",
        "rnn",
        NUMPY,
        {"x": lst(x), "w": lst(w), "b": lst(b), "v": lst(v), "c": lst(c)},
        {"h": lst(hs), "o": lst(os_), "non_finite": False},
    )


def lstm(rng):
    t_len, i_dim, h_dim = 6, 3, 4
    m = torch.nn.LSTM(i_dim, h_dim)
    x = rng.normal(size=(t_len, i_dim))
    h0, c0 = rng.normal(0, 0.5, h_dim), rng.normal(0, 0.5, h_dim)
    # torch returns every h_t but only the last c_t: step one time step at a time to see each c_t.
    state = (torch.tensor(h0).reshape(1, 1, h_dim), torch.tensor(c0).reshape(1, 1, h_dim))
    hs, cs = [], []
    for t in range(t_len):
        _, state = m(torch.tensor(x[t]).reshape(1, 1, i_dim), state)
        hs.append(state[0].reshape(-1).detach().numpy())
        cs.append(state[1].reshape(-1).detach().numpy())
    full, _ = m(torch.tensor(x).unsqueeze(1), (torch.tensor(h0).reshape(1, 1, h_dim), torch.tensor(c0).reshape(1, 1, h_dim)))
    assert np.allclose(full.squeeze(1).detach().numpy(), np.array(hs))
    g = lambda p: p.detach().numpy()
    write(
        "lstm",
        "lstm",
        TORCH,
        {
            "x": lst(x), "w_ih": lst(g(m.weight_ih_l0)), "w_hh": lst(g(m.weight_hh_l0)),
            "b_ih": lst(g(m.bias_ih_l0)), "b_hh": lst(g(m.bias_hh_l0)), "h0": lst(h0), "c0": lst(c0),
        },
        {"h": lst(hs), "c": lst(cs), "non_finite": False},
    )


def graph(rng, n, p_edge, isolated=None):
    a = np.triu(rng.uniform(0.2, 1.5, size=(n, n)) * (rng.uniform(size=(n, n)) < p_edge), 1)
    a = a + a.T
    # A ring keeps it connected.
    for i in range(n):
        j = (i + 1) % n
        if a[i, j] == 0:
            a[i, j] = a[j, i] = 1.0
    if isolated is not None:
        a[isolated, :] = 0
        a[:, isolated] = 0
    return a


def act(name, z):
    return {"identity": z, "relu": np.maximum(z, 0), "sigmoid": sigmoid(z), "tanh": np.tanh(z)}[name]


def gcn(rng, laplacian, activation, name, isolated=None):
    n, f = 6, 3
    a = graph(rng, n, 0.4, isolated)
    x = rng.normal(size=(n, f))
    alpha = rng.normal(size=4)
    d = a.sum(axis=1)
    if laplacian == "combinatorial":
        lap = np.diag(d) - a
    else:
        with np.errstate(divide="ignore"):
            inv = np.where(d > 0, 1 / np.sqrt(d), 0.0)
        lap = np.eye(n) - inv[:, None] * a * inv[None, :]
    # The reference may form L^k: it is the independent check of the iterative Rust version.
    y = sum(alpha[k] * np.linalg.matrix_power(lap, k) @ x for k in range(len(alpha)))
    write(
        name,
        "gcn",
        NUMPY,
        {"a": lst(a), "x": lst(x), "alpha": lst(alpha), "laplacian": laplacian, "activation": activation},
        {"y": lst(act(activation, y)), "non_finite": False},
    )


def gnn(rng):
    n, f, f_out = 5, 3, 4
    a = graph(rng, n, 0.5)
    x, w = rng.normal(size=(n, f)), rng.normal(size=(f, f_out))
    a_hat = a + np.eye(n)
    y = np.maximum(np.diag(1 / a_hat.sum(axis=1)) @ a_hat @ x @ w, 0)
    write("gnn", "gnn", NUMPY, {"a": lst(a), "x": lst(x), "w": lst(w)}, {"y": lst(y), "non_finite": False})


def stability(w, steps, name, x=None):
    h = w.shape[0]
    v = np.ones(h) / math.sqrt(h) if x is None else np.asarray(x, dtype=np.float64)
    norms = []
    for _ in range(steps):
        v = w @ v
        norms.append(np.linalg.norm(v))
    verdict, step = "stable", None
    for n, nv in enumerate(norms, start=1):
        if nv > 1e6 or nv < 1e-6:
            verdict, step = ("exploding" if nv > 1e6 else "vanishing"), n
            break
    rho = float(np.max(np.abs(np.linalg.eigvals(w))))
    req = {"w": lst(w), "steps": steps}
    if x is not None:
        req["x"] = lst(x)
    write(
        name,
        "stability",
        NUMPY,
        req,
        {
            "norms": lst(norms), "log10_norms": lst(np.log10(norms)), "verdict": verdict,
            "step": step, "spectral_radius": rho, "non_finite": False,
        },
    )


def fm(rng):
    n, k = 12, 4
    w0, w, v = 0.3, rng.normal(0, 0.5, n), rng.normal(0, 0.5, (n, k))
    # Values exactly representable in f32, so the Rust model (f32) sees the same input.
    w, v = w.astype(np.float32).astype(np.float64), v.astype(np.float32).astype(np.float64)
    idx = [1, 4, 5, 9, 11]
    val = np.array([1.0, 0.5, 1.0, 0.25, 2.0])
    m = len(idx)
    naive = w0 + sum(w[j] * x for j, x in zip(idx, val))
    for a in range(m):
        for b in range(a + 1, m):
            naive += v[idx[a]] @ v[idx[b]] * val[a] * val[b]
    s = (v[idx] * val[:, None]).sum(axis=0)
    q = ((v[idx] * val[:, None]) ** 2).sum(axis=0)
    fast = w0 + w[idx] @ val + 0.5 * float((s * s - q).sum())
    write(
        "fm",
        "fm",
        NUMPY,
        {"w0": w0, "w": lst(w), "v": lst(v), "indices": idx, "values": lst(val)},
        {
            "score_naive": float(naive), "score_fast": float(fast), "abs_diff": 0.0, "m": m, "k": k,
            "ops_naive": {"formula": "m + m(m-1)/2·(k+1)", "multiply_adds": m + m * (m - 1) // 2 * (k + 1)},
            "ops_fast": {"formula": "m + 2·m·k + k", "multiply_adds": m + 2 * m * k + k},
            "non_finite": False,
        },
    )


def smoothing(rng):
    n, f, steps, tol = 7, 3, 40, 1e-3
    a = graph(rng, n, 0.3)
    x = rng.normal(size=(n, f))
    a_hat = a + np.eye(n)
    p = a_hat / a_hat.sum(axis=1, keepdims=True)

    def spread(z):
        return float(z.std(axis=0).mean()), float(np.linalg.norm(z - z.mean(axis=0), axis=1).mean())

    s0, d0 = spread(x)
    spreads, dists, step = [], [], None
    z = x
    for k in range(1, steps + 1):
        z = p @ z
        s, d = spread(z)
        spreads.append(s)
        dists.append(d)
        if step is None and s < tol * s0:
            step = k
    write(
        "smoothing",
        "smoothing",
        NUMPY,
        {"a": lst(a), "x": lst(x), "steps": steps, "tolerance": tol},
        {
            "initial_spread": s0, "initial_mean_distance": d0, "spread": spreads, "mean_distance": dists,
            "verdict": "over-smoothed" if step is not None else "not-over-smoothed", "step": step,
            "non_finite": False,
        },
    )


def main():
    torch.manual_seed(20240601)
    rng = np.random.default_rng(20240601)
    batchnorm(rng, (6, 4), "train", "batchnorm_train_bc")
    batchnorm(rng, (3, 5, 4), "train", "batchnorm_train_blc")
    batchnorm(rng, (6, 4), "eval", "batchnorm_eval_bc")
    batchnorm(rng, (3, 5, 4), "eval", "batchnorm_eval_blc")
    layernorm(rng, (5, 6), 1, "layernorm_1d")
    layernorm(rng, (3, 4, 5), 2, "layernorm_2d")
    dropout_eval(rng)
    rnn_tanh(rng)
    rnn_sigmoid(rng)
    lstm(rng)
    gcn(rng, "combinatorial", "identity", "gcn_combinatorial")
    gcn(rng, "symmetric", "tanh", "gcn_symmetric", isolated=2)
    gnn(rng)
    theta = 0.9
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    stability(rng.normal(0, 0.3, (5, 5)), 40, "stability_random")
    stability(1.1 * rot, 200, "stability_rotation_exploding")
    stability(0.9 * rot, 200, "stability_rotation_vanishing", x=[3.0, -1.0])
    stability(np.diag([0.5, -1.0, 0.25]), 30, "stability_diagonal")
    fm(rng)
    smoothing(rng)


if __name__ == "__main__":
    main()
