"""python -m utils.train: fine-tune Whisper on a feature store (options: TrainConfig's fields).

python -m utils.train --config run.yaml --set learning_rate=1e-5 --max-steps 1000
torchrun --nproc_per_node 4 -m utils.train --config run.yaml        # same code, 4 GPUs
accelerate launch -m utils.train --config run.yaml
"""

import sys

from ..cli import run
from ..logs import rank
from .config import TrainConfig
from .run import summary_line, train


def _main(args, cfg: TrainConfig) -> int:
    metrics = train(cfg)
    if rank() == 0:  # rank 0 reports for all processes
        print(summary_line(metrics), flush=True)
    return 0


def main(argv=None) -> int:
    return run(
        "python -m utils.train",
        "Fine-tune Whisper on a feature store (resumes automatically; torchrun-ready).",
        [TrainConfig],
        _main,
        argv,
    )


if __name__ == "__main__":
    sys.exit(main())
