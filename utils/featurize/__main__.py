"""python -m utils.featurize: build or resume a feature store (options: FeatureConfig's fields)."""

import sys

from ..cli import run
from .config import FeatureConfig
from .run import run_feature_pipeline


def main(argv=None) -> int:
    return run(
        "python -m utils.featurize",
        "Build (or resume) a feature store: exact compact log-Mel features and labels.",
        [FeatureConfig],
        lambda args, cfg: run_feature_pipeline(cfg) and 0,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
