"""The thesis' feature-extraction baseline: pooled features of a frozen network fed to a scikit-learn regressor
chosen by cross-validation (by subject), packaged as an ordinary age model so it is evaluated end to end.

The regressor is chosen among linear ones (:data:`CANDIDATES`: ridge, lasso, Huber, each over a grid of
strengths) by a subject-grouped inner k-fold on the training rows, scored by MAE. Being linear, the chosen
regressor becomes one layer after the frozen network (:class:`FeatureRegressor`), and its point estimate a
Gaussian distribution over the age bins whose sigma is its residual spread on the validation rows: the same
card, calibration, export and evaluation as every other model. ``agescan train cv --method features`` runs it
per fold; needs scikit-learn (in the train extra).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Regressors the inner cross-validation chooses among, with their grids.
CANDIDATES = {
    "ridge": {"alpha": [0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]},
    "lasso": {"alpha": [0.01, 0.03, 0.1, 0.3, 1.0]},
    "huber": {"alpha": [1e-4, 1e-2, 1.0], "epsilon": [1.35, 2.0]},
}


class FeatureRegressor(nn.Module):
    """A frozen network's pooled features -> standardise -> linear age -> logits of a Gaussian over the bins."""

    def __init__(self, net: nn.Module, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float,
                 sigma: float, n_bins: int = 101):
        super().__init__()
        self.net = net.eval()
        f = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        self.register_buffer("mean", f(mean))
        self.register_buffer("scale", f(scale))
        self.register_buffer("coef", f(coef))
        self.register_buffer("intercept", f(intercept))
        self.register_buffer("sigma", f(sigma))
        self.register_buffer("bins", torch.arange(n_bins, dtype=torch.float32))

    def train(self, mode: bool = True) -> "FeatureRegressor":
        super().train(mode)
        self.net.eval()  # frozen, BatchNorm statistics included
        return self

    def age(self, x: torch.Tensor) -> torch.Tensor:
        from agescan.train.nets import pooled_features

        return ((pooled_features(self.net, x) - self.mean) / self.scale) @ self.coef + self.intercept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.bins[None] - self.age(x)[:, None]) / self.sigma
        return -0.5 * z * z


@torch.no_grad()
def extract(net: nn.Module, crops: np.ndarray, cfg, bs: int = 256) -> np.ndarray:
    """Pooled features of prepared crops, cut and normalised as the training loop does (no augmentation)."""
    from agescan.train.loop import to_input
    from agescan.train.nets import pooled_features

    net.eval()
    g = torch.Generator().manual_seed(0)
    return torch.cat([pooled_features(net, to_input(crops[i:i + bs], cfg, False, g))
                      for i in range(0, len(crops), bs)]).numpy().astype(np.float64)


def fit(cfg, split: np.ndarray, groups: np.ndarray | None, inner_folds: int = 5,
        regressors: tuple[str, ...] | None = None) -> tuple[FeatureRegressor, dict]:
    """Fit the baseline on the 'train' rows of ``split`` (choosing the regressor among ``regressors``, default every
    one of :data:`CANDIDATES`, by a subject-grouped inner CV), take sigma from the 'val' rows, and return the model
    and a record of the choice."""
    regressors = tuple(regressors or CANDIDATES)
    unknown = [r for r in regressors if r not in CANDIDATES]
    if unknown:
        raise ValueError(f"The 'regressors' parameter takes names among {sorted(CANDIDATES)}. Got {unknown}.")
    try:
        from sklearn.linear_model import HuberRegressor, Lasso, Ridge
        from sklearn.model_selection import GridSearchCV, GroupKFold, KFold
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise SystemExit("the feature baseline needs scikit-learn: pip install 'agescan[train]'") from None
    from agescan.train.loop import build_for
    from agescan.train.nets import load_init

    if not cfg.init:
        raise ValueError("--method features needs --init WEIGHTS: the frozen network whose features are used.")
    net = build_for(cfg)
    load_init(net, cfg.init)
    net.eval()
    d = np.load(cfg.data)
    tr, va = split == "train", split == "val"
    x_tr, x_va = extract(net, d["crops"][tr], cfg), extract(net, d["crops"][va], cfg)
    y_tr, y_va = d["age"][tr].astype(np.float64), d["age"][va].astype(np.float64)
    models = {"ridge": Ridge(), "lasso": Lasso(max_iter=5000), "huber": HuberRegressor(max_iter=1000)}
    grid = [{"reg": [models[name]], **{f"reg__{k}": v for k, v in params.items()}}
            for name, params in CANDIDATES.items() if name in regressors]
    g = None if groups is None else np.asarray(groups)[tr]
    inner = GroupKFold(n_splits=inner_folds) if g is not None and len(set(g.tolist())) >= inner_folds \
        else KFold(n_splits=inner_folds, shuffle=True, random_state=cfg.seed)
    search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("reg", Ridge())]), grid,
                          scoring="neg_mean_absolute_error", cv=inner, n_jobs=1)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # a lasso that stops at max_iter is still a candidate; CV judges it
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(x_tr, y_tr, **({"groups": g} if isinstance(inner, GroupKFold) else {}))
    best = search.best_estimator_
    scaler, reg = best.named_steps["scale"], best.named_steps["reg"]
    resid = best.predict(x_va) - y_va
    sigma = float(max(1.0, np.sqrt(np.mean(resid ** 2))))
    model = FeatureRegressor(net, scaler.mean_, scaler.scale_, np.ravel(reg.coef_), float(np.ravel(reg.intercept_)[0])
                             if np.ndim(reg.intercept_) else float(reg.intercept_), sigma, cfg.max_age + 1)
    record = {"regressor": type(reg).__name__, "params": {k: v for k, v in search.best_params_.items() if k != "reg"},
              "inner_cv_mae": float(-search.best_score_), "inner_cv": f"{type(inner).__name__}({inner_folds})",
              "val_mae": float(np.abs(resid).mean()), "sigma": sigma, "features": int(x_tr.shape[1])}
    return model, record
