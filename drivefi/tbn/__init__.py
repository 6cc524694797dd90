"""The 3-TBN: a linear-Gaussian dynamic Bayesian network over three time slices (k-1, k, k+1)
of the ego kinematics and the stack's injection points, learned from traces of the stack under
test (its structure from a file in ``models/``), with compiled closed-form do() inference for the
critical-fault search. See docs/tbn.md."""

from drivefi.tbn.dataset import TrainingSet, from_traces, read_traces
from drivefi.tbn.evidence import GoldenWindows
from drivefi.tbn.fit import fit_model
from drivefi.tbn.hazard import SafetyModel, Scores, score_faults, score_rollout
from drivefi.tbn.lg import AffineGaussian, LinearGaussianTBN
from drivefi.tbn.model import TBNModel
from drivefi.tbn.model_io import check_scenario, check_stack, load_model, save_model
from drivefi.tbn.predict import PosteriorPredictor, Predictor, Rollout
from drivefi.tbn.structure import SAFETY_STATE, STATE, Context, Structure
from drivefi.tbn.structure_file import (
    PointSpec,
    default_structure,
    derive,
    load_structure,
    write_structure,
)

__all__ = [
    "SAFETY_STATE",
    "STATE",
    "AffineGaussian",
    "Context",
    "GoldenWindows",
    "LinearGaussianTBN",
    "PointSpec",
    "PosteriorPredictor",
    "Predictor",
    "Rollout",
    "SafetyModel",
    "Scores",
    "Structure",
    "TBNModel",
    "TrainingSet",
    "check_scenario",
    "check_stack",
    "default_structure",
    "derive",
    "fit_model",
    "from_traces",
    "load_model",
    "load_structure",
    "read_traces",
    "save_model",
    "score_faults",
    "score_rollout",
    "write_structure",
]
