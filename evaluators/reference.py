"""The retain model's reference: what forget quality and privleak compare a model with (TOFU). Plain Python, so
a run checks `--retain-eval` before it loads torch or a model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluators.base import EvalResult
from harness.files import write_atomically
from harness.hashing import config_hash

OPEN_UNLEARNING_ATTACKS = {
    "loss": "mia_loss",
    "zlib": "mia_zlib",
    "min_k": "mia_min_k",
    "min_k_pp": "mia_min_k_plus_plus",
    "gradnorm": "mia_gradnorm",
}  # our attack -> open-unlearning's TOFU_EVAL.json key


@dataclass
class RetainReference:
    """The retain model's raw forget truth ratios, its MIA AUCs, and its average NLL on each forget and holdout
    item (the reference-model attack's other side). Saved by every run as `OUT/reference/retain.json`
    (atomically: resume reads it), and loadable from published logs."""

    forget_truth_ratios: list[float]
    mia_auc: dict[str, float]
    source: str
    forget_avg_nll: list[float] = field(default_factory=list)
    holdout_avg_nll: list[float] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: EvalResult, source: str) -> RetainReference:
        from evaluators.mia import ATTACKS

        def items(split):
            return [i for i in result.items if i["split"] == split]

        return cls(
            [i["truth_ratio_raw"] for i in items("forget")],
            {a: result.metrics[f"mia_{a}_auc"] for a in ATTACKS if f"mia_{a}_auc" in result.metrics},
            source,
            [i["avg_nll"] for i in items("forget")],
            [i["avg_nll"] for i in items("holdout")],
        )

    def fingerprint(self) -> str:
        """A hash of the measured values (not of where they were read from): rows scored against other
        values are re-run on resume."""
        return config_hash(self.forget_truth_ratios, self.mia_auc, self.forget_avg_nll, self.holdout_avg_nll)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path, what: str = "--retain-eval") -> RetainReference:
        """Our own `reference/retain.json`, or open-unlearning's `TOFU_EVAL.json` of a retain model (its
        `forget_truth_ratio.value_by_index`, its `mia_*` AUCs, and from `mia_loss` the per-item average NLLs
        of its forget and holdout sides). Anything else is one error naming `what` (the flag, or the saved
        file) and the path."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path}: no such file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{what} {path}: not JSON ({err})") from None
        try:
            return cls._parse(data, path)
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(
                f"{what} {path}: expected fields 'forget_truth_ratios' and 'mia_auc' (ours) or "
                f"'forget_truth_ratio' with 'value_by_index' (open-unlearning's TOFU_EVAL.json)"
            ) from None

    @classmethod
    def _parse(cls, data: dict, path: Path) -> RetainReference:
        if not isinstance(data, dict):
            raise TypeError(type(data).__name__)
        if "forget_truth_ratios" in data and "mia_auc" in data:
            aucs = {str(a): float(v) for a, v in data["mia_auc"].items()}
            nll = {side: [float(v) for v in data.get(f"{side}_avg_nll", [])] for side in ("forget", "holdout")}
            return cls(
                [float(r) for r in data["forget_truth_ratios"]],
                aucs,
                str(data.get("source", path)),
                nll["forget"],
                nll["holdout"],
            )
        ratios = _by_index(data["forget_truth_ratio"].get("value_by_index", {}))
        aucs = {a: float(data[n]["agg_value"]) for a, n in OPEN_UNLEARNING_ATTACKS.items() if n in data}
        loss = data.get("mia_loss") or {}
        sides = [_by_index((loss.get(side) or {}).get("value_by_index", {})) for side in ("forget", "holdout")]
        return cls(ratios, aucs, str(path), *sides)


def _by_index(value_by_index: dict) -> list[float]:
    """open-unlearning's `{"<index>": {"score": v}}` as the values in index order."""
    return [float(v["score"]) for _, v in sorted(value_by_index.items(), key=lambda kv: int(kv[0]))]
