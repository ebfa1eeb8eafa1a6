"""A pretraining recipe's fingerprint, so a study can tell whether its encoders were pretrained alike.

An exported encoder records ``recipe``, a short sha256 of its classification run's resolved config
with the fields that legitimately differ between the encoders of one study removed, and
``recipe_config``, the hashed mapping as JSON, so two recipes can be diffed. The study computes
the recipe of the encoders it pretrains itself with the same function (``recipe_of``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .config import ClsConfig, to_dict
from .threads import default_threads

#: Fields left out of the hash (dotted paths into ``ClsConfig``):
#:
#: - ``model.name``: the encoder itself, ``train.seed``: the seed, ``output``: the run folder,
#:   ``provenance``: what the run records about itself;
#: - ``model.num_classes``: filled in from the training split's class folders when the config
#:   leaves it unset, so it is not known before the run (the data set is ``data.dataset``);
#: - machine-local paths and resources: ``data.root``, ``data.workers``, ``train.device``;
#: - what a run shows, not what it trains: ``train.log_mode``, ``train.log_every``, ``train.loggers``.
IGNORED = ("model.name", "model.num_classes", "train.seed", "output", "provenance", "data.root", "data.workers",
           "train.device", "train.log_mode", "train.log_every", "train.loggers")

UNRECORDED = "unrecorded"  # weights whose file records no recipe (converted torchvision weights, older exports)
RANDOM_INIT = "none (random init)"  # an encoder that starts without pretrained weights
HASH_CHARS = 12


@dataclass(frozen=True)
class Recipe:
    hash: str
    config: dict  # the hashed mapping

    def metadata(self) -> dict[str, str]:
        """What an exported encoder's metadata records."""
        return {"recipe": self.hash, "recipe_config": json.dumps(self.config, sort_keys=True)}


def recipe_of(cfg: ClsConfig) -> Recipe:
    """The recipe of a classification run with the resolved config ``cfg`` (``IGNORED`` left out).
    An unset ``train.threads`` counts as the count the run would take here (``default_threads``),
    as the run records it: the thread count is part of the recipe."""
    mapping = to_dict(cfg)
    mapping["train"]["threads"] = mapping["train"].get("threads") or default_threads()
    for dotted in IGNORED:
        *parents, last = dotted.split(".")
        section = mapping
        for key in parents:
            section = section[key]
        section.pop(last)
    text = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
    return Recipe(hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS], mapping)


def recorded_recipe(metadata: dict[str, str]) -> str:
    """The recipe a weights file's metadata records, or ``UNRECORDED``."""
    return metadata.get("recipe") or UNRECORDED
