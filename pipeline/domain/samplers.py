"""AUTOMATIC1111 sampler names mapped to diffusers schedulers.

The WebUI names a sampler and, since 1.9, a separate schedule type (``Sampler: DPM++ 2M,
Schedule type: Karras``); older versions and civitai fold the schedule into the name
(``DPM++ 2M Karras``). nanke stores the folded, canonical name, one per scheduler it can build:
:func:`split_sampler` gives the WebUI's two values for it and :func:`canonical_sampler` folds them
back. diffusers is imported only when a scheduler is built, so parsing and validation stay light.

Schedule types, as the WebUI names them:

- ``Uniform``: the model's own sigmas, evenly spaced over its training timesteps. It is what a
  plain diffusers k-diffusion-style scheduler (``Euler``, ``DPM++ 2M``, ...) runs, so nanke writes
  it for those rather than leaving the schedule out: a WebUI 1.9+ reads a missing schedule type as
  ``Automatic``, which is *not* uniform for every sampler (see :meth:`SamplerSpec.automatic`).
- ``Karras`` and ``Exponential``: the sigma spacings of Karras et al. and an exponential one;
  diffusers builds them with ``use_karras_sigmas`` and ``use_exponential_sigmas``.
- ``Automatic``: the sampler's own default. nanke writes it for DDIM, PLMS and UniPC, which have
  no other schedule in nanke, and reads it as the WebUI 1.9+ runs it (:func:`automatic_sampler`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import InvalidRequest

UNIFORM = "Uniform"
AUTOMATIC = "Automatic"
KARRAS = "Karras"
EXPONENTIAL = "Exponential"

_SCHEDULE_OPTIONS: dict[str, dict[str, Any]] = {
    KARRAS: {"use_karras_sigmas": True},
    EXPONENTIAL: {"use_exponential_sigmas": True},
}
"""The diffusers options of each schedule type that has a variant sampler."""
_PLAIN_SCHEDULES = frozenset({"", UNIFORM.casefold(), AUTOMATIC.casefold()})
"""Schedule types that fold to the plain sampler name."""
_FOLDED_SCHEDULES = {schedule.casefold(): schedule for schedule in _SCHEDULE_OPTIONS}

AUTOMATIC_SCHEDULE_SINCE = (1, 9)
"""The first WebUI version with a ``Schedule type`` (and so with ``Automatic`` defaults)."""
# A "v" then major.minor, anywhere: "v1.10.1", Forge's "f2.0.1v1.10.1-previous-669-gdfdcbab6".
# Bounded digit runs keep the search linear and the numbers small enough to convert.
_WEBUI_VERSION = re.compile(r"v(\d{1,6})\.(\d{1,6})")


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler is built in diffusers.

    ``sampler`` and ``schedule_type`` are the WebUI's names for it (``sampler`` defaults to
    ``name``). On a base sampler, ``schedules`` lists the schedule types nanke also builds it with
    (each a variant sampler named ``"<name> <schedule>"``) and ``automatic`` the schedule type the
    WebUI 1.9+ picks for it under ``Automatic`` (``None``: its plain schedule).
    """

    name: str
    scheduler: str
    options: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[str, ...] = ()
    automatic: str | None = None
    schedule_type: str = UNIFORM
    sampler: str = ""

    def __post_init__(self) -> None:
        if not self.sampler:
            object.__setattr__(self, "sampler", self.name)

    @property
    def supports_karras(self) -> bool:
        """Whether this base sampler has a Karras variant."""
        return KARRAS in self.schedules

    def variant(self, schedule: str) -> SamplerSpec:
        """This base sampler with ``schedule``'s sigmas, under its folded name."""
        return SamplerSpec(
            f"{self.name} {schedule}",
            self.scheduler,
            {**self.options, **_SCHEDULE_OPTIONS[schedule]},
            schedule_type=schedule,
            sampler=self.name,
        )


_K_SCHEDULES = (KARRAS,)
_BASE: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler", "EulerDiscreteScheduler", schedules=_K_SCHEDULES),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler"),
    SamplerSpec("Heun", "HeunDiscreteScheduler", schedules=_K_SCHEDULES),
    SamplerSpec("LMS", "LMSDiscreteScheduler", schedules=_K_SCHEDULES),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", schedules=_K_SCHEDULES),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", schedules=_K_SCHEDULES),
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", schedules=_K_SCHEDULES, automatic=KARRAS),
    SamplerSpec(
        "DPM++ 2M SDE",
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++"},
        schedules=(KARRAS, EXPONENTIAL),
        automatic=EXPONENTIAL,
    ),
    SamplerSpec("DPM++ SDE", "DPMSolverSDEScheduler", schedules=_K_SCHEDULES, automatic=KARRAS),
    SamplerSpec("DDIM", "DDIMScheduler", schedule_type=AUTOMATIC),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedule_type=AUTOMATIC),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", schedule_type=AUTOMATIC),
)

SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for base in _BASE
    for spec in (base, *(base.variant(schedule) for schedule in base.schedules))
}
"""Every sampler nanke can run, by canonical A1111 name, in the WebUI's order. Discord offers
at most 25 choices, so keep the list within that."""

SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)
DEFAULT_SAMPLER = "Euler a"

_BY_KEY = {name.casefold(): name for name in SAMPLERS}


def canonical_sampler(name: str, schedule_type: str | None = None, *, field_name: str = "sampler") -> str:
    """Return the canonical name for ``name`` (case-insensitive), folding an A1111 schedule type.

    ``schedule_type`` is A1111's separate "Schedule type" value: "Karras" or "Exponential" folds
    into the name (unless the name already ends with it); "Uniform", "Automatic" or empty leave the
    name as it is. This folds names only: what "Automatic" runs in the WebUI is
    :func:`automatic_sampler`'s concern. Unknown names raise an error listing valid ones.
    """
    text = " ".join(name.replace("_", " ").split())
    key = text.casefold()
    schedule = (schedule_type or "").strip().casefold()
    if schedule in _FOLDED_SCHEDULES:
        if not key.endswith(f" {schedule}"):
            key = f"{key} {schedule}"
    elif schedule not in _PLAIN_SCHEDULES:
        raise InvalidRequest(
            "schedule type",
            schedule_type,
            ", ".join((AUTOMATIC, UNIFORM, *_SCHEDULE_OPTIONS)),
            reason="is not a schedule nanke knows",
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


def split_sampler(name: str) -> tuple[str, str]:
    """The WebUI 1.9+'s ``Sampler`` and ``Schedule type`` for nanke's sampler ``name``.

    ``canonical_sampler(*split_sampler(name))`` gives ``canonical_sampler(name)`` back. Unknown
    names raise like :func:`canonical_sampler`.
    """
    spec = SAMPLERS[canonical_sampler(name)]
    return spec.sampler, spec.schedule_type


def automatic_sampler(name: str) -> str:
    """The sampler the WebUI 1.9+ runs for ``name`` with schedule type ``Automatic``.

    The WebUI's Automatic gives DPM++ 2M and DPM++ SDE Karras sigmas and DPM++ 2M SDE exponential
    ones; every other sampler, and a name with its schedule folded in, stays as it is.
    """
    spec = SAMPLERS[canonical_sampler(name)]
    return spec.variant(spec.automatic).name if spec.automatic else spec.name


def webui_version(version: str | None) -> tuple[int, int] | None:
    """The WebUI's (major, minor) version in an infotext's ``Version`` value, ``None`` if none.

    The WebUI writes ``v1.10.1``; Forge writes its own version and then the WebUI's
    (``f2.0.1v1.10.1-previous-669-gdfdcbab6``, ``f1.7.0-v1.10.1RC-latest-...``), so the first
    ``v`` followed by ``major.minor`` is taken. Any other value (``nanke 0.1.0``) is unknown.
    """
    match = _WEBUI_VERSION.search(version or "")
    return (int(match[1]), int(match[2])) if match else None


def means_automatic(schedule_type: str | None, version: str | None) -> bool:
    """Whether an infotext's ``Schedule type`` (``None``: absent) stands for the WebUI's Automatic.

    It does when written so, or when it is absent (or blank) from a text whose ``version``
    (:func:`webui_version`) is a WebUI 1.9 or newer: that WebUI reads a missing schedule type as
    Automatic, and leaves it out itself where Automatic runs the sampler's plain schedule. Without
    a schedule type, a text of an older WebUI, civitai, nanke or an unknown ``Version`` means the
    plain sampler: those writers fold any schedule into the sampler name.
    """
    if schedule_type is not None and schedule_type.strip():
        return schedule_type.strip().casefold() == AUTOMATIC.casefold()
    found = webui_version(version)
    return found is not None and found >= AUTOMATIC_SCHEDULE_SINCE


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
