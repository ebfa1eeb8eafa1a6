"""One pretraining recipe per study: the encoders of a grid are compared like with like only if
they were pretrained alike. Checked before any unit runs; the report names mixed recipes."""

from __future__ import annotations

from pathlib import Path

from ..config import StudyConfig
from ..errors import MixedRecipesError  # noqa: F401  (re-exported)
from ..recipe import RANDOM_INIT, recipe_of, recorded_recipe
from ..variants import get_variant
from ..weights import read_metadata, resolve_weights
from .runner import cls_config_for, plan_pretraining


def given_recipe(study: StudyConfig, encoder: str) -> str:
    """The recipe recorded in the weights file ``study.weights`` gives ``encoder`` (RANDOM_INIT without one)."""
    weights = study.weights.get(encoder, study.weights.get("default"))
    if weights is None:
        return RANDOM_INIT
    return recorded_recipe(read_metadata(resolve_weights(weights, get_variant(encoder).name, study.weights_dir)))


def encoder_recipes(study: StudyConfig, study_dir: Path) -> dict[str, list[str]]:
    """recipe -> the encoders (in study order) it pretrained: for encoders pretrained in the study,
    the recipe of the config each pretraining unit runs (as its export will record it); for given
    weights, the recipe their file records; RANDOM_INIT for encoders without weights."""
    if study.pretrain.enabled:
        pairs = [(unit.encoder, recipe_of(cls_config_for(study, unit)).hash)
                 for unit in plan_pretraining(study, study_dir)]
    else:
        pairs = [(encoder, given_recipe(study, encoder)) for encoder in study.encoders]
    recipes: dict[str, list[str]] = {}
    for encoder, recipe in pairs:
        if encoder not in recipes.setdefault(recipe, []):
            recipes[recipe].append(encoder)
    return recipes


def describe(recipes: dict[str, list[str]]) -> list[str]:
    """One line per recipe: ``recipe <hash>: encoder, encoder``."""
    return [f"recipe {recipe}: {', '.join(encoders)}" for recipe, encoders in recipes.items()]


def check_recipes(study: StudyConfig, study_dir: Path) -> dict[str, list[str]]:
    """The study's recipes; a MixedRecipesError naming each and its encoders if there are several,
    unless ``allow_mixed_recipes``."""
    recipes = encoder_recipes(study, study_dir)
    if len(recipes) > 1 and not study.allow_mixed_recipes:
        raise MixedRecipesError(
            "the encoders of this study were not pretrained with one recipe, so their differences would mix the "
            "encoders' effect with the recipes':\n  " + "\n  ".join(describe(recipes)) + "\nPretrain them alike "
            "(compare the recipe_config metadata of their weights files), or set allow_mixed_recipes: true to run "
            "anyway (the report then says so).")
    return recipes
