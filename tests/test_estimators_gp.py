"""GP and RFF surrogates: analytic derivatives, block Cholesky updates, RFF convergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedopt.estimators.gp import RFF, BatchedGP, Kernel

T64 = torch.float64


def _data(k: int, n: int, d: int, seed: int = 0, h: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (k, 1, d)) + h * rng.uniform(-1, 1, (k, n, d))
    y = np.sin(3 * X).sum(-1) + (X**2).sum(-1)
    return torch.tensor(X, dtype=T64), torch.tensor(y, dtype=T64)


def _mean_by_hand(kern: str, l: float, X: np.ndarray, y: np.ndarray, noise: float, x: np.ndarray) -> float:
    """Posterior mean of one client from the kernel's textbook formula (numpy, dense solve)."""
    def k(a, b):
        r = np.linalg.norm(a[:, None] - b[None], axis=-1)
        if kern == "se":
            return np.exp(-0.5 * r**2 / l**2)
        s = np.sqrt(5) * r / l
        return (1 + s + s**2 / 3) * np.exp(-s)
    m = y.mean()
    alpha = np.linalg.solve(k(X, X) + noise * np.eye(len(X)), y - m)
    return float(m + k(x[None], X)[0] @ alpha)


@pytest.mark.parametrize("kern", ["se", "matern52"])
def test_gradient_of_the_posterior_mean_is_its_exact_derivative(kern: str) -> None:
    X, y = _data(3, 25, 4)
    gp = BatchedGP(Kernel(kern, 0.7), X, y, noise=1e-6)
    x = torch.tensor(np.random.default_rng(1).uniform(0, 1, (3, 4)), dtype=T64)
    g = gp.grad_mean(x).numpy()
    h = 1e-5
    for c in range(3):
        mu = lambda z: _mean_by_hand(kern, 0.7, X[c].numpy(), y[c].numpy(), 1e-6, z)  # noqa: E731
        num = [(mu(x[c].numpy() + h * e) - mu(x[c].numpy() - h * e)) / (2 * h) for e in np.eye(4)]
        np.testing.assert_allclose(g[c], num, rtol=1e-6, atol=1e-7)


def test_quadratic_gradient_once_the_history_spans_the_space() -> None:
    """A stencil spanning the quadratics around x: the SE surrogate gradient converges to ∇f
    as h², within 1e-5 at h = 1e-3 (a GP with a constant prior mean is not exact for
    any finite h)."""
    rng = np.random.default_rng(0)
    d = 3
    A = rng.standard_normal((d, d))
    A = A @ A.T + np.eye(d)
    b = rng.standard_normal(d)
    x0 = rng.uniform(size=d)
    E = np.eye(d)
    S = np.array([np.zeros(d)] + [s * E[i] for i in range(d) for s in (1, -1)]
                 + [s * E[i] + t * E[j] for i in range(d) for j in range(i + 1, d) for s in (1, -1) for t in (1, -1)])
    errs = []
    for h in (1e-2, 1e-3):
        X = x0 + h * S
        y = 0.5 * np.einsum("ni,ij,nj->n", X, A, X) - X @ b
        gp = BatchedGP(Kernel("se", 1.0), torch.tensor(X[None]), torch.tensor(y[None]), noise=1e-14)
        errs.append(np.abs(gp.grad_mean(torch.tensor(x0[None]))[0].numpy() - (A @ x0 - b)).max())
    assert errs[1] < 1e-5 and errs[1] < errs[0] / 30


@pytest.mark.parametrize("kern", ["se", "matern52"])
def test_block_cholesky_updates_equal_a_refit(kern: str) -> None:
    X, y = _data(4, 40, 6, seed=2)
    gp = BatchedGP(Kernel(kern, 1.0), X[:, :20], y[:, :20], noise=1e-6)
    for s, e in ((20, 21), (21, 27), (27, 40)):
        gp.append(X[:, s:e], y[:, s:e])
    ref = BatchedGP(Kernel(kern, 1.0), X, y, noise=1e-6)
    np.testing.assert_allclose(gp.L.numpy(), ref.L.numpy(), atol=1e-10, rtol=0)
    x = X[:, 0] + 0.01
    np.testing.assert_allclose(gp.grad_mean(x).numpy(), ref.grad_mean(x).numpy(), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("kern", ["se", "matern52"])
def test_uncertainty_trace_is_the_trace_of_the_gradient_covariance(kern: str) -> None:
    X, y = _data(2, 30, 5, seed=3)
    gp = BatchedGP(Kernel(kern, 0.8), X, y, noise=1e-6)
    C = X[:, :7] + 0.05
    tr = gp.grad_var_trace(C).numpy()
    for j in range(7):
        cov = gp.grad_cov(C[:, j]).numpy()
        np.testing.assert_allclose(tr[:, j], np.trace(cov, axis1=1, axis2=2), rtol=1e-8, atol=1e-10)
    # far from the data the variance is the prior's; among the data it is smaller
    far = gp.grad_var_trace(X[:, :1] + 100.0).numpy()
    np.testing.assert_allclose(far, 5 * Kernel(kern, 0.8).grad_prior, rtol=1e-12)
    assert (gp.grad_var_trace(X[:, :1]).numpy() < 0.5 * far).all()


def test_rff_surrogate_converges_to_the_exact_gp_mean() -> None:
    X, y = _data(2, 30, 3, seed=4)
    noise = 1e-2
    gp = BatchedGP(Kernel("se", 1.0), X, y, noise=noise)
    x = X[:, :5] + 0.03
    exact = gp.mean(x).numpy()
    gx = X[:, 0] + 0.02
    gexact = gp.grad_mean(gx).numpy()
    errs, gerrs = [], []
    for M in (100, 1000, 10000, 100000):
        rff = RFF.draw(3, M, 1.0, seed=0)
        V, b = rff.tensors(T64, "cpu")
        w = rff.fit(X, y, noise, V, b)
        pred = rff.mean(x, w, V, b).numpy() + y.mean(dim=1, keepdim=True).numpy()
        errs.append(np.abs(pred - exact).max())
        gerrs.append(np.abs(rff.grad(gx, w, V, b).numpy() - gexact).max())
    assert errs[-1] < 0.1 * errs[0] and gerrs[-1] < 0.1 * gerrs[0]
    assert errs[-1] < 2e-2 and gerrs[-1] < 5e-2


def test_bad_kernel_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'rbf' is not one of se, matern52"):
        Kernel("rbf")


def test_block_updates_keep_the_inverse_and_the_scores_of_a_refit() -> None:
    X, y = _data(3, 50, 5, seed=5)
    gp = BatchedGP(Kernel("se", 1.0), X[:, :30], y[:, :30], noise=1e-4)
    C = X[:, :8] + 0.02
    gp.grad_var_trace(C)  # builds the inverse, which the updates then carry along
    for s, e in ((30, 31), (31, 36), (36, 50)):
        gp.append(X[:, s:e], y[:, s:e])
    ref = BatchedGP(Kernel("se", 1.0), X, y, noise=1e-4)
    np.testing.assert_allclose(gp.grad_var_trace(C).numpy(), ref.grad_var_trace(C).numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("capacity", [None, 50])
def test_carried_inverse_keeps_the_factor_and_the_mean_of_a_refit(capacity: int | None) -> None:
    # the block updates of the inverse also carry α (and the factor's row blocks); with the
    # default capacity the buffers grow on the first append, with 50 they are filled in place
    X, y = _data(3, 50, 5, seed=6)
    gp = BatchedGP(Kernel("matern52", 0.9), X[:, :30], y[:, :30], noise=1e-4, capacity=capacity)
    gp.grad_var_trace(X[:, :4] + 0.02)
    for s, e in ((30, 31), (31, 36), (36, 50)):
        gp.append(X[:, s:e], y[:, s:e])
    ref = BatchedGP(Kernel("matern52", 0.9), X, y, noise=1e-4)
    x = X[:, 3] + 0.01
    np.testing.assert_allclose(gp.alpha.numpy(), ref.alpha.numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gp.grad_mean(x).numpy(), ref.grad_mean(x).numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gp.mean(X[:, :6] + 0.01).numpy(), ref.mean(X[:, :6] + 0.01).numpy(),
                               rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(gp.L.numpy(), ref.L.numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(gp.grad_cov(x).numpy(), ref.grad_cov(x).numpy(), rtol=1e-7, atol=1e-9)


def test_appends_within_capacity_update_the_inverse_in_place() -> None:
    X, y = _data(2, 40, 4, seed=7)
    gp = BatchedGP(Kernel("se", 1.0), X[:, :30], y[:, :30], noise=1e-3, capacity=40)
    ptr = gp._inverse().data_ptr()
    for s in range(30, 40, 5):
        gp.append(X[:, s:s + 5], y[:, s:s + 5])
    assert gp._inverse().data_ptr() == ptr and gp._inverse().shape == (2, 40, 40)


def test_rff_gradient_is_linear_in_the_weights_and_per_client() -> None:
    rff = RFF.draw(6, 500, 0.8, seed=1)
    V, b = rff.tensors(T64, "cpu")
    rng = np.random.default_rng(8)
    x, w1, w2 = (torch.tensor(rng.standard_normal(s)) for s in ((4, 6), (4, 500), (4, 500)))
    g = rff.grad(x, w1 - w2, V, b)
    np.testing.assert_allclose(g.numpy(), (rff.grad(x, w1, V, b) - rff.grad(x, w2, V, b)).numpy(), atol=1e-12)
    # the textbook sum −√(2/M) Σ_j w_j sin(v_jᵀx + b_j) v_j, one client at a time
    Vn, bn = rff.V, rff.b
    for i in range(4):
        s = np.sin(x[i].numpy() @ Vn + bn) * (w1 - w2)[i].numpy()
        np.testing.assert_allclose(g[i].numpy(), -np.sqrt(2 / 500) * (Vn * s).sum(1), rtol=1e-10, atol=1e-12)



def _blocks(idx: list[int], X: torch.Tensor, y: torch.Tensor, x: torch.Tensor, C: torch.Tensor, n0: int,
            kern: str = "se") -> list[torch.Tensor]:
    """What the clients ``idx`` compute in one call over a round of FZooS-like steps: the surrogate
    gradient and α after each append (one query, then five; the inverse carried from the first
    scoring on, the buffers grown once) and the scores."""
    X, y, x, C = X[idx], y[idx], x[idx], C[idx]
    gp = BatchedGP(Kernel(kern, 1.0), X[:, :n0], y[:, :n0], noise=1e-3, capacity=n0 + 10)
    out, s = [gp.grad_mean(x)], n0
    for _ in range(4):
        for q in (1, 5):
            gp.append(X[:, s:s + q], y[:, s:s + q])
            s += q
            out += [gp.alpha.clone(), gp.grad_mean(x), gp.grad_var_trace(C)]
    return out


def _agree(ref: list[torch.Tensor], got: list[torch.Tensor], idx: list[int], scores: float | None,
           kern: str = "se") -> None:
    """α and gradients to 1e-11 of their largest entry; the scores (every third output after the
    first, ``d·c − …``: a difference of terms of size ``d·c``) to ``scores`` times ``d·c``, or not."""
    for j, (a, b) in enumerate(zip(ref, got)):
        a = a[idx]
        if j == 0 or j % 3:
            assert float((b - a).abs().max()) <= 1e-11 * float(a.abs().max()), j
        elif scores is not None:
            assert float((b - a).abs().max()) <= scores * 6 * Kernel(kern).grad_prior, j


@pytest.mark.parametrize("kern", ["se", "matern52"])
def test_a_clients_surrogate_does_not_depend_on_the_clients_sharing_its_call(kern: str) -> None:
    """The sharded and ray engines hand a client to blocks of any size and position. Its numbers
    agree with the full block's to 1e-11 (relative): every product is batched
    per client, but BLAS and LAPACK round by the alignment of a client's slice in memory, so not
    always bit for bit. On FZooS's clustered queries (0.01-boxes, d = 4, so K + σ²I is near
    singular), α and the surrogate gradient come from the factor, not from the carried inverse
    (norm up to 1/σ²), which amplified that rounding to ~3e-10; the scores read the inverse and are
    checked on spread-out points."""
    rng = np.random.default_rng(0)
    k, d = 14, 4
    Xc = torch.tensor(rng.uniform(0, 1, (k, 1, d)) + 0.01 * rng.uniform(-1, 1, (k, 90, d)))
    yc = torch.sin(3 * Xc).sum(-1) + (Xc**2).sum(-1)
    xc = Xc[:, -1] + 0.003
    Cc = xc[:, None] + 0.01 * torch.tensor(rng.uniform(-1, 1, (k, 50, d)))
    Xs, ys = _data(k, 90, 6, seed=5)
    xs = Xs[:, -1] + 0.01
    Cs = xs[:, None] + 0.05 * torch.tensor(rng.uniform(-1, 1, (k, 50, 6)))
    blocks = (list(range(7)), list(range(7, 14)), list(range(5)), list(range(5, 10)), [13, 2], [6])
    for n0 in (20, 31, 50):
        full_c = _blocks(list(range(k)), Xc, yc, xc, Cc, n0, kern)
        full_s = _blocks(list(range(k)), Xs, ys, xs, Cs, n0, kern)
        for idx in blocks:
            _agree(full_c, _blocks(idx, Xc, yc, xc, Cc, n0, kern), idx, None)
            _agree(full_s, _blocks(idx, Xs, ys, xs, Cs, n0, kern), idx, 1e-11, kern)  # d = 6


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_clients_rff_gradient_does_not_depend_on_the_clients_sharing_its_call(dtype: torch.dtype) -> None:
    # the correction's RFF gradient of one client, alone or in any block, bit for bit: per-client
    # products, never one product over stacked clients (the surrogate's value to rounding)
    d, M = 37, 5000
    rff = RFF.draw(d, M, 1.0, seed=3)
    V, b = rff.tensors(dtype, "cpu")
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.uniform(0, 1, (6, d)), dtype=dtype)
    W = torch.tensor(rng.standard_normal((6, M)) * 1e-2, dtype=dtype)
    C = x[:, None] + torch.tensor(rng.uniform(-0.1, 0.1, (6, 9, d)), dtype=dtype)
    g, mu = rff.grad(x, W, V, b), rff.mean(C, W, V, b)
    for idx in ([2], [4, 2], [2, 0, 3], [5, 1, 2, 3]):
        torch.testing.assert_close(rff.grad(x[idx], W[idx], V, b), g[idx], rtol=0, atol=0)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert float((rff.mean(C[idx], W[idx], V, b) - mu[idx]).abs().max()) <= tol * float(mu.abs().max())


def _gp_samples(lengthscales: list[float], kern: str, n: int, d: int, noise: float, seed: int):
    """One client per lengthscale: inputs U[0, 1]^d and a draw of GP(0, κ(r/l)) + N(0, σ²) (numpy)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (len(lengthscales), n, d))
    ys = []
    for Xi, l in zip(X, lengthscales):
        r = np.linalg.norm(Xi[:, None] - Xi[None], axis=-1)
        s = np.sqrt(5) * r / l
        K = np.exp(-0.5 * r**2 / l**2) if kern == "se" else (1 + s + s**2 / 3) * np.exp(-s)
        ys.append(np.linalg.cholesky(K + noise * np.eye(n)) @ rng.standard_normal(n))
    return torch.tensor(X, dtype=T64), torch.tensor(np.array(ys), dtype=T64)


def test_log_marginal_likelihood_is_the_gaussian_log_density() -> None:
    from scipy.stats import multivariate_normal

    from fedopt.estimators.gp import log_marginal_likelihood

    X, y = _gp_samples([0.3, 0.7], "matern52", 40, 2, 1e-3, seed=3)
    ls = torch.tensor([0.5, 0.9], dtype=T64)
    got = log_marginal_likelihood("matern52", X, y, ls, 1e-3, variance=2.0).numpy()
    for i in range(2):
        Xi, yi, l = X[i].numpy(), y[i].numpy(), float(ls[i])
        s = np.sqrt(5) * np.linalg.norm(Xi[:, None] - Xi[None], axis=-1) / l
        cov = 2.0 * (1 + s + s**2 / 3) * np.exp(-s) + 1e-3 * np.eye(len(Xi))
        assert got[i] == pytest.approx(multivariate_normal(np.full(len(yi), yi.mean()), cov).logpdf(yi), rel=1e-10)


@pytest.mark.parametrize("kern", ["se", "matern52"])
def test_marginal_likelihood_fit_recovers_the_lengthscale_of_gp_samples(kern: str) -> None:
    """Samples of GPs with known lengthscales, one per client: the batched fit finds each
    within 10 %, no point of a fine grid has a larger likelihood, and a client's lengthscale
    does not depend on the clients beside it."""
    from fedopt.estimators.gp import fit_lengthscale, log_marginal_likelihood

    truth = [0.1, 0.3, 0.8, 1.0]
    X, y = _gp_samples(truth, kern, 300, 3, 1e-4, seed=0)
    zero = torch.zeros(4, dtype=T64)
    got = fit_lengthscale(kern, X, y, 1e-4, mean=zero)
    np.testing.assert_allclose(got.numpy(), truth, rtol=0.1)
    best = log_marginal_likelihood(kern, X, y, got, 1e-4, mean=zero)
    for l in np.geomspace(0.02, 50, 400):
        assert (log_marginal_likelihood(kern, X, y, torch.full((4,), l, dtype=T64), 1e-4, mean=zero)
                <= best + 1e-9).all()
    alone = fit_lengthscale(kern, X[2:3], y[2:3], 1e-4, mean=torch.zeros(1, dtype=T64))
    assert float(alone[0]) == pytest.approx(float(got[2]), rel=1e-12)
    with pytest.raises(ValueError, match="bounds"):
        fit_lengthscale(kern, X, y, 1e-4, bounds=(1.0, 0.5))


def test_fitted_lengthscales_do_not_depend_on_the_clients_sharing_the_call_in_high_dimension() -> None:
    # d = 300 (FZooS's synthetic functions) with torch's default threads: the float64
    # likelihoods of one client differ in their last bits with its batch-mates, which once
    # flipped the search's comparisons (differences up to 3e-2 in l)
    from fedopt.estimators.gp import fit_lengthscale

    rng = np.random.default_rng(0)
    X = torch.tensor(rng.uniform(0, 1, (3, 20, 300)))
    y = torch.tensor(rng.standard_normal((3, 20)))
    full = fit_lengthscale("se", X, y, 1e-3)
    for part in ([0], [1], [2], [1, 2], [0, 1]):
        assert torch.equal(fit_lengthscale("se", X[part], y[part], 1e-3), full[part]), part
