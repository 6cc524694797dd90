"""The 3-TBN: a linear-Gaussian dynamic Bayesian network over three time slices (k-1, k, k+1)
of the ego kinematics and the ADS's injection points, fitted from traces, with compiled
closed-form do() inference for the critical-fault search. See docs/tbn.md."""

from drivefi.tbn.dataset import (
    TrainingSet,
    from_traces,
    read_traces,
    simulate_training,
    training_set,
)
from drivefi.tbn.evidence import GoldenWindows
from drivefi.tbn.fit import fit_model
from drivefi.tbn.hazard import SafetyModel, Scores, score_faults, score_rollout
from drivefi.tbn.lg import AffineGaussian, LinearGaussianTBN
from drivefi.tbn.model import TBNModel
from drivefi.tbn.model_io import check_scenario, load_model, save_model
from drivefi.tbn.predict import PosteriorPredictor, Predictor, Rollout
from drivefi.tbn.structure import POINTS, SAFETY_STATE, STATE, STRUCTURE, Context

__all__ = [
    "POINTS",
    "SAFETY_STATE",
    "STATE",
    "STRUCTURE",
    "AffineGaussian",
    "Context",
    "GoldenWindows",
    "LinearGaussianTBN",
    "PosteriorPredictor",
    "Predictor",
    "Rollout",
    "SafetyModel",
    "Scores",
    "TBNModel",
    "TrainingSet",
    "check_scenario",
    "fit_model",
    "from_traces",
    "load_model",
    "read_traces",
    "save_model",
    "score_faults",
    "score_rollout",
    "simulate_training",
    "training_set",
]
