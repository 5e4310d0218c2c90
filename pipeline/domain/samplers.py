"""AUTOMATIC1111 sampler names mapped to diffusers schedulers.

A1111 names a sampler and, separately, a schedule type ("Karras"); older versions and civitai
fold the schedule into the name ("DPM++ 2M Karras"). nanke stores the folded, canonical name.
diffusers is imported only when a scheduler is built, so parsing and validation stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InvalidRequest


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler is built in diffusers."""

    name: str
    scheduler: str
    options: dict[str, Any] = field(default_factory=dict)
    supports_karras: bool = False


_BASE: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", supports_karras=True),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler"),
    SamplerSpec("Heun", "HeunDiscreteScheduler", supports_karras=True),
    SamplerSpec("LMS", "LMSDiscreteScheduler", supports_karras=True),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", supports_karras=True),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", supports_karras=True),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", supports_karras=True),
    SamplerSpec(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        supports_karras=True,
    ),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", supports_karras=True),
    SamplerSpec("DDIM", "DDIMScheduler"),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
    SamplerSpec("UniPC", "UniPCMultistepScheduler"),
)


def _with_karras(spec: SamplerSpec) -> SamplerSpec:
    return SamplerSpec(
        f"{spec.name} Karras", spec.scheduler, {**spec.options, "use_karras_sigmas": True}, True
    )


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for base in _BASE
    for spec in ((base, _with_karras(base)) if base.supports_karras else (base,))
}
"""Every sampler nanke can run, by canonical A1111 name, in the WebUI's order."""

SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)
DEFAULT_SAMPLER = "Euler a"

_BY_KEY = {name.casefold(): name for name in SAMPLERS}


def canonical_sampler(name: str, schedule_type: str | None = None, *, field_name: str = "sampler") -> str:
    """Return the canonical name for ``name`` (case-insensitive), folding an A1111 schedule type.

    ``schedule_type`` is A1111's separate "Schedule type" value: "Karras" folds into the name,
    "Automatic" (or empty) leaves it as it is. Unknown names raise an error listing valid ones.
    """
    text = " ".join(name.replace("_", " ").split())
    key = text.casefold()
    if schedule_type and schedule_type.strip().casefold() == "karras" and not key.endswith(" karras"):
        key = f"{key} karras"
    elif schedule_type and schedule_type.strip().casefold() not in ("automatic", "", "uniform"):
        raise InvalidRequest(
            "schedule type", schedule_type, "Automatic or Karras", reason="is not a schedule nanke knows"
        )
    try:
        return _BY_KEY[key]
    except KeyError:
        raise InvalidRequest(
            field_name,
            name,
            ", ".join(SAMPLER_NAMES),
            reason="is not a sampler nanke knows",
            key="unknown_sampler",
            params={"samplers": ", ".join(SAMPLER_NAMES)},
        ) from None


def build_scheduler(name: str, base_config: Any) -> Any:
    """Build the diffusers scheduler for sampler ``name`` from a pipeline's scheduler config.

    A1111 spaces timesteps "leading" for DDIM/PLMS-style samplers and "trailing"-free k-diffusion
    samplers; diffusers' defaults from the model's config are kept except where the sampler needs
    otherwise, so results follow the model's own training schedule.
    """
    import diffusers

    spec = SAMPLERS[canonical_sampler(name)]
    cls = getattr(diffusers, spec.scheduler)
    return cls.from_config(base_config, **spec.options)
