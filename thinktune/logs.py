"""One logging setup for every stage: timestamped lines on stderr, naming the stage."""

from __future__ import annotations

import logging
import os


def get_logger(stage: str) -> logging.Logger:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=os.environ.get("THINKTUNE_LOG_LEVEL", "INFO"),
            format="%(asctime)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
        # Libraries log chatty warnings at INFO; keep the stage's own story readable.
        for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(f"thinktune.{stage}")
