"""The stand-in models a model server can load, by Sax model path.

| model path                                              | family | what it is                  |
|---------------------------------------------------------|--------|-----------------------------|
| saxml.server.pax.lm.params.lm_cloud.LmCloudSpmd2BTest   | lm     | random-weight bigram LM     |
| sax_gateway.testing.TestLM                              | lm     | deterministic, configurable |
| sax_gateway.testing.TestVision                          | vm     | hash-based vision stand-in  |
| sax_gateway.testing.TestAudio                           | am     | hash-based speech stand-in  |
| sax_gateway.testing.TestCustom                          | custom | echo                        |
| sax_gateway.testing.TestMultimodal                      | mm     | describes and hashes items  |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.cell._errors import invalid_argument
from gateway.cell.models import media, multimodal, random_lm, test_lm
from gateway.cell.models.base import ServableModel, check_known_overrides


@dataclass(frozen=True)
class LoadSpec:
    model_path: str
    checkpoint: str
    overrides: Mapping[str, str]
    seed: int


_FACTORIES: dict[str, Callable[[LoadSpec], ServableModel]] = {
    random_lm.MODEL_PATH: lambda spec: random_lm.RandomBigramLM(
        checkpoint=spec.checkpoint, overrides=spec.overrides, seed=spec.seed
    ),
    test_lm.MODEL_PATH: lambda spec: test_lm.load(spec.overrides),
    media.VISION_PATH: lambda spec: media.TestVision(),
    media.AUDIO_PATH: lambda spec: media.TestAudio(),
    media.CUSTOM_PATH: lambda spec: media.TestCustom(),
    multimodal.MULTIMODAL_PATH: lambda spec: multimodal.TestMultimodal(),
}

#: Every model path this package can serve.
MODEL_PATHS: tuple[str, ...] = tuple(sorted(_FACTORIES))


def _none(model_path: str) -> Callable[[Mapping[str, str]], None]:
    return lambda overrides: check_known_overrides(overrides, model_path, ())


# The project's own stand-ins (sax_gateway.testing.*) refuse overrides they do not know.
# LmCloudSpmd2BTest stands in for an upstream params class, which takes any of its config
# attributes and ignores (with a warning) other keys: its stand-in checks only its own.
_OVERRIDE_CHECKS: dict[str, Callable[[Mapping[str, str]], None]] = {
    random_lm.MODEL_PATH: random_lm.check_overrides,
    test_lm.MODEL_PATH: test_lm.check_overrides,
    media.VISION_PATH: _none(media.VISION_PATH),
    media.AUDIO_PATH: _none(media.AUDIO_PATH),
    media.CUSTOM_PATH: _none(media.CUSTOM_PATH),
    multimodal.MULTIMODAL_PATH: _none(multimodal.MULTIMODAL_PATH),
}


def check_overrides(model_path: str, overrides: Mapping[str, str]) -> None:
    """Checks, at publish, the overrides of a model this package serves (others pass)."""
    check = _OVERRIDE_CHECKS.get(model_path)
    if check is not None:
        check(overrides)


def create_model(spec: LoadSpec) -> ServableModel:
    """Instantiates a stand-in; INVALID_ARGUMENT for an unknown path or bad overrides."""
    factory = _FACTORIES.get(spec.model_path)
    if factory is None:
        raise invalid_argument(
            f"model path {spec.model_path!r} is not servable here; known: {', '.join(MODEL_PATHS)}"
        )
    return factory(spec)


__all__ = ["MODEL_PATHS", "LoadSpec", "ServableModel", "check_overrides", "create_model"]
