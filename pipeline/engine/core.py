"""The diffusers engine: a batch of compatible requests becomes one diffusers call.

Reproducibility: every image has its own CPU ``torch.Generator`` seeded with its seed (image
``i`` of a request uses ``seed + i``). The initial noise is drawn from it in float32 on the CPU
(A1111's "CPU" RNG source draws the same values), and ancestral/SDE samplers keep drawing their
per-step noise from the same generator, so an image does not depend on the device, on the other
images in its batch, or on the batch being split after an out-of-memory error.

The pipeline returns latents (``output_type="latent"``); the engine decodes them itself so it
can check them for NaN/black output and retry the VAE in float32 (see :mod:`pipeline.engine.guards`).
This also skips diffusers' safety checker and SDXL watermark, which nanke does not use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import torch
from PIL import Image

from pipeline.domain.canvas import Prepared, finish, parse_canvas, prepare
from pipeline.domain.models.resources import Resources
from pipeline.domain.request import BATCH_FIELDS, GenerationRequest
from pipeline.domain.samplers import build_scheduler
from pipeline.engine.choices import Choices
from pipeline.engine.devices import describe_environment, free_memory, is_out_of_memory
from pipeline.engine.guards import (
    bad_image_indices,
    black_image_message,
    non_finite_mask,
    out_of_memory_message,
)
from pipeline.engine.noise import noise_ahead
from pipeline.engine.preview import latents_to_previews
from pipeline.engine.results import (
    ARCHITECTURES,
    EngineOptions,
    GeneratedImage,
    GenerationResult,
    ModelLike,
    StepProgress,
)
from pipeline.engine.text_ahead import EncodedAhead
from pipeline.engine.tuning import apply_tuning
from pipeline.errors import BlackImageError, Cancelled, DeviceError, InvalidRequest, OutOfMemory

log = logging.getLogger(__name__)

_HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class _Slot:
    """One image to make: its request's position in the batch, its index there, and its seed."""

    request: int
    index: int
    seed: int


@dataclass
class _Run:
    """State shared by the parts of one ``generate`` call."""

    started: float
    on_step: Callable[[StepProgress], None] | None
    should_cancel: Callable[[], bool] | None
    preview_every: int | None
    part: int = 0
    parts: int = 1
    step_offset: int = 0
    """Steps done by earlier passes of the same images (the hires fix's first pass)."""
    steps_after: int = 0
    """Steps the later passes will take (the hires fix's second pass, while the first runs)."""


class Engine:
    """Runs batches of :class:`GenerationRequest` on one loaded diffusers pipeline.

    ``model`` is anything with ``pipe``, ``name``, ``hash`` and ``architecture`` (such as
    ``pipeline.domain.models.LoadedModel``); the engine does not care how it was loaded. ``device``
    and ``dtype`` default to where the pipeline already is; when given, the pipeline is moved.
    One engine runs one batch at a time (calls from several threads wait for each other).
    """

    def __init__(
        self,
        model: ModelLike,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        options: EngineOptions | None = None,
        resources: Resources | None = None,
    ) -> None:
        # 1. Check inputs
        pipe = model.pipe
        if model.architecture not in ARCHITECTURES:
            raise ValueError(
                f"model.architecture: {model.architecture!r} (allowed: {', '.join(ARCHITECTURES)})"
            )
        for component in ("unet", "vae", "scheduler", "text_encoder", "tokenizer"):
            if getattr(pipe, component, None) is None:
                raise ValueError(f"model.pipe: {type(pipe).__name__} has no {component}")
        from diffusers import StableDiffusionXLPipeline

        if isinstance(pipe, StableDiffusionXLPipeline) != (model.architecture == "sdxl"):
            raise ValueError(
                f"model.architecture: {model.architecture!r} does not match the pipeline "
                f"{type(pipe).__name__}"
            )
        device = torch.device(device) if device is not None else pipe.device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        dtype = dtype if dtype is not None else pipe.unet.dtype
        self.options = options or EngineOptions()
        if device.type == "cpu" and dtype in _HALF_DTYPES and not self.options.allow_half_on_cpu:
            raise DeviceError(
                f"dtype: {dtype} on the cpu is not supported (slow or missing half-precision kernels); "
                "use float32 (pipeline.engine.devices.pick_dtype chooses it)"
            )
        offload = self.options.cpu_offload
        if offload and device.type != "cuda":
            log.warning("cpu_offload: ignored on %s (it only helps on a CUDA GPU)", device)
            offload = False

        # 2. Place the model
        if pipe.unet.dtype != dtype:
            pipe.to(dtype=dtype)
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        elif pipe.device != device:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        if self.options.attention_slicing:
            pipe.enable_attention_slicing()
        tuning = self.options.tuning
        if offload and "cuda_graphs" in tuning:
            log.warning("NANKE_GPU_TUNING cuda_graphs: not with model CPU offload (the UNet moves)")
            tuning = tuple(name for name in tuning if name != "cuda_graphs")
        tuned = apply_tuning(pipe, device, tuning)

        # 3. Keep what every batch builds from
        self.model = model
        self.pipe = pipe
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.environment = describe_environment(device, dtype)
        if tuned.applied:
            self.environment["tuning"] = ",".join(tuned.applied)
        self.graphs = tuned.graphs
        """The UNet's CUDA graphs (NANKE_GPU_TUNING=cuda_graphs), else ``None``."""
        self._scheduler_config = pipe.scheduler.config
        self.choices = Choices(pipe, model, resources or Resources.none())
        """The LoRAs, embeddings, VAE and tiling a batch runs with."""
        self._img2img_pipe: Any = None
        self._inpaint_pipe: Any = None
        self._vae32: Any = None
        self._memory_savers = False
        self._lock = threading.Lock()
        self.text_lock = threading.Lock()
        """Held while the tokenizers and text encoders are used or changed (``generate`` and
        :meth:`encode_ahead` may run in different threads at once)."""
        self._ahead = EncodedAhead()
        log.info(
            "engine ready: model %s (%s, hash %s) on %s in %s%s",
            model.name,
            model.architecture,
            model.hash,
            device,
            self.environment["dtype"],
            ", model CPU offload" if offload else "",
        )

    @property
    def architecture(self) -> str:
        return self.model.architecture

    def warm_up(self, counts: Sequence[int] = (1, 4)) -> None:
        """Generate throw-away images at the default size once per batch size in ``counts`` (in
        4-image requests above 4), so a compiled UNet (NANKE_GPU_TUNING=compile) has compiled
        those shapes, and CUDA graphs (``cuda_graphs``) are captured for them, before members ask."""
        for count in counts:
            request = GenerationRequest(prompt="warm-up", steps=4, seed=0, count=min(count, 4))
            self.generate([request] * max(1, count // 4))

    def encode_ahead(self, requests: Sequence[GenerationRequest]) -> bool:
        """Encode the prompts of ``requests``, a batch that runs next, while this engine runs the
        current one (call it from another thread). ``generate`` of exactly these requests takes
        the embeddings instead of encoding them, if the LoRAs and embeddings it runs with are the
        ones on now. Returns whether it encoded (off by the options, or an invalid request: no).
        """
        if not self._on_cuda_by_default(self.options.encode_ahead) or self.offload or not requests:
            return False
        from pipeline.domain.prompt.embeddings import encode_prompt_batch

        try:
            batch = [request.validate() for request in requests]
        except Exception:  # generate says what is wrong
            return False
        pairs = [(request.prompt, request.negative_prompt) for request in batch]
        clip_skip = batch[0].clip_skip
        with self.text_lock:
            state = self.choices.text_state
            embeddings = encode_prompt_batch(self.pipe, pairs, clip_skip=clip_skip)
        self._ahead.put(pairs, clip_skip, state, embeddings)
        return True

    # -- the main call --------------------------------------------------------------------------

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        init_images: Mapping[str, Image.Image] | None = None,
        on_step: Callable[[StepProgress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        preview_every: int | None = None,
    ) -> list[GenerationResult]:
        """Generate every image of ``requests`` (compatible, see :data:`BATCH_FIELDS`) in one batch.

        ``init_images`` maps an image's sha256 (``request.init_image``) to the image, for img2img
        and upscale. ``on_step`` is called after every denoising step, with approximate previews
        every ``preview_every`` steps when set. ``should_cancel`` is polled after every step; when
        it returns True the denoising stops and :class:`~pipeline.errors.Cancelled` is raised.
        Returns one :class:`GenerationResult` per request, in order.
        """
        # 1. Check inputs
        batch = self._check_inputs(requests, init_images, preview_every)
        originals = list(requests)
        head = batch[0]

        # 2. One slot (and so one generator) per image; init images at the output size
        slots = [
            _Slot(position, index, seed)
            for position, request in enumerate(batch)
            for index, seed in enumerate(request.seeds)
        ]
        sources: list[Source] = [_source(request, init_images) for request in batch]

        with self._lock:
            # 3. Run, with memory fallbacks on out-of-memory
            run = _Run(time.monotonic(), on_step, should_cancel, preview_every)
            log.info(
                "generating %d image(s) for %d request(s): %s %dx%d, %d steps, %s, cfg %g",
                len(slots),
                len(batch),
                head.mode,
                head.width,
                head.height,
                head.steps,
                head.sampler,
                head.cfg_scale,
            )
            # 4. The LoRAs, embeddings, VAE and tiling the batch asks for
            unet_before = self.choices.unet_state
            with self.text_lock:
                chosen = self.choices.apply(batch, pipes=[self.pipe, self._img2img_pipe, self._inpaint_pipe])
            if chosen.vae_changed:
                self._vae32 = None
            if self.graphs is not None and self.choices.unet_state != unet_before:
                self.graphs.reset()  # a graph holds the LoRA scales and padding it was captured with
            made = self._run_with_fallbacks(batch, slots, sources, run)
            elapsed = time.monotonic() - run.started

        # 5. One result per request
        results: list[GenerationResult] = []
        for position, original in enumerate(originals):
            own = [slot for slot in slots if slot.request == position]
            results.append(
                GenerationResult(
                    request=original,
                    images=[GeneratedImage(slot.index, slot.seed, made[slot][0]) for slot in own],
                    model_name=self.model.name,
                    model_hash=self.model.hash,
                    elapsed_s=elapsed,
                    environment=dict(self.environment),
                    nan_retry=any(made[slot][1] for slot in own),
                    resources=chosen.infotext[position],
                )
            )
        log.info("generated %d image(s) in %.1fs", len(slots), elapsed)
        return results

    # -- steps of generate ----------------------------------------------------------------------

    def _check_inputs(
        self,
        requests: Sequence[GenerationRequest],
        init_images: Mapping[str, Image.Image] | None,
        preview_every: int | None,
    ) -> list[GenerationRequest]:
        if isinstance(requests, GenerationRequest):
            raise TypeError("requests: a single GenerationRequest (allowed: a sequence of them)")
        if not requests:
            raise ValueError("requests: empty (allowed: one or more compatible requests)")
        batch: list[GenerationRequest] = []
        for position, request in enumerate(requests):
            if not isinstance(request, GenerationRequest):
                raise TypeError(
                    f"requests[{position}]: {type(request).__name__} (allowed: GenerationRequest)"
                )
            if request.seed is None:
                raise InvalidRequest(
                    "seed", None, "a fixed seed: call with_seed() before generating", reason="is not set"
                )
            batch.append(request.validate())
        head = batch[0]
        for position, request in enumerate(batch[1:], start=1):
            if request.loras != head.loras:
                raise ValueError(
                    f"requests[{position}] uses the LoRAs {request.loras!r}, requests[0] {head.loras!r} "
                    "(one batch must share its LoRA set)"
                )
            for name in BATCH_FIELDS:
                if getattr(request, name) != getattr(head, name):
                    raise ValueError(
                        f"requests[{position}].{name}: {getattr(request, name)!r} differs from "
                        f"requests[0].{name}: {getattr(head, name)!r} (one batch must share "
                        f"{', '.join(BATCH_FIELDS)})"
                    )
        if head.mode != "txt2img":
            strength = head.strength or 0.0
            if int(head.steps * strength) < 1:
                raise InvalidRequest(
                    "strength",
                    strength,
                    f"at least {1 / head.steps:.3g} with {head.steps} steps",
                    reason=f"leaves no denoising step ({head.steps} steps x {strength:g} < 1)",
                )
            for position, request in enumerate(batch):
                if init_images is None or request.init_image not in init_images:
                    raise ValueError(
                        f"requests[{position}].init_image: {request.init_image!r} is not in init_images"
                    )
        if preview_every is not None and (
            isinstance(preview_every, bool) or not isinstance(preview_every, int) or preview_every < 1
        ):
            raise ValueError(f"preview_every: {preview_every!r} (allowed: a whole number from 1, or None)")
        return batch

    def _run_with_fallbacks(
        self,
        batch: list[GenerationRequest],
        slots: list[_Slot],
        sources: list[Source],
        run: _Run,
    ) -> dict[_Slot, tuple[Image.Image, bool]]:
        """Run ``slots`` in as few diffusers calls as fit in memory.

        On out-of-memory: first turn on attention slicing and VAE slicing/tiling (they stay on for
        this engine), then halve the part until one image at a time, then raise OutOfMemory.
        """
        head = batch[0]
        pending: list[list[_Slot]] = [slots]
        made: dict[_Slot, tuple[Image.Image, bool]] = {}
        while pending:
            part = pending.pop(0)
            run.part += 1
            run.parts = run.part + len(pending)
            try:
                made.update(self._run_part(batch, part, sources, run))
                continue
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            # Out of memory: the error (and the tensors its traceback held) is gone here.
            free_memory(self.device)
            run.part -= 1
            if not self._memory_savers:
                log.warning(
                    "out of memory with %d image(s) at %dx%d (%s); turning on attention slicing and "
                    "VAE slicing/tiling and retrying",
                    len(part),
                    head.width,
                    head.height,
                    reason,
                )
                self._enable_memory_savers()
                pending.insert(0, part)
            elif len(part) > 1:
                half = (len(part) + 1) // 2
                log.warning(
                    "out of memory with %d image(s) at %dx%d (%s); retrying in parts of %d and %d",
                    len(part),
                    head.width,
                    head.height,
                    reason,
                    half,
                    len(part) - half,
                )
                pending[:0] = [part[:half], part[half:]]
            else:
                log.error("out of memory with one image at %dx%d: %s", head.width, head.height, reason)
                raise OutOfMemory(
                    out_of_memory_message(
                        device=self.device, width=head.width, height=head.height, images=len(slots)
                    )
                )
        return made

    def _run_part(
        self,
        batch: list[GenerationRequest],
        slots: list[_Slot],
        sources: list[Source],
        run: _Run,
    ) -> dict[_Slot, tuple[Image.Image, bool]]:
        """One diffusers call for ``slots``: denoise to latents, then decode them with the NaN guard."""
        from pipeline.domain.prompt.embeddings import encode_prompt_batch

        head = batch[0]
        if run.should_cancel is not None and run.should_cancel():
            raise Cancelled("cancelled before it started")

        # a. The pipeline for the mode, a fresh scheduler for the sampler, the VAE's memory mode
        if head.mode == "txt2img":
            target = self.pipe
        else:
            target = self._inpaint() if head.mode == "inpaint" else self._img2img()
        scheduler = build_scheduler(head.sampler, self._scheduler_config)
        if hasattr(scheduler, "noise_sampler_seed"):
            # DPM++ SDE draws its noise from a Brownian tree: one tree per image, seeded per image.
            scheduler.noise_sampler_seed = [slot.seed for slot in slots]
        target.scheduler = scheduler
        self._configure_vae(head.width, head.height)

        # b. Text embeddings, one row per image (made ahead, while the batch before ran, if they were)
        positions = list(dict.fromkeys(slot.request for slot in slots))
        counts = [sum(1 for slot in slots if slot.request == position) for position in positions]
        pairs = [(batch[position].prompt, batch[position].negative_prompt) for position in positions]
        with self.text_lock:
            encoded = self._ahead.take(pairs, head.clip_skip, self.choices.text_state)
            if encoded is None:
                encoded = encode_prompt_batch(self.pipe, pairs, clip_skip=head.clip_skip)
        embeddings = encoded.repeat_each(counts)

        # c. One CPU generator per image
        generators = [torch.Generator("cpu").manual_seed(slot.seed) for slot in slots]

        # d. Denoise to latents, reporting progress and polling for cancel after every step
        cancelled = False

        run.step_offset, run.steps_after = 0, _hires_steps_taken(head)

        def on_step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal cancelled
            if run.on_step is not None:
                step = run.step_offset + index + 1
                total = run.step_offset + pipe.num_timesteps + run.steps_after
                previews = None
                if run.preview_every and (step % run.preview_every == 0 or step == total):
                    images = latents_to_previews(tensors["latents"], self.architecture)
                    if images is not None:
                        previews = {
                            (slot.request, slot.index): image
                            for slot, image in zip(slots, images, strict=True)
                        }
                run.on_step(
                    StepProgress(
                        step=step,
                        total_steps=total,
                        elapsed_s=time.monotonic() - run.started,
                        part=run.part,
                        parts=run.parts,
                        previews=previews,
                    )
                )
            if run.should_cancel is not None and run.should_cancel():
                pipe._interrupt = True
                cancelled = True
            return tensors

        call: dict[str, Any] = {
            "num_inference_steps": head.steps,
            "guidance_scale": head.cfg_scale,
            "generator": generators,
            "output_type": "latent",
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
            **embeddings.as_pipeline_kwargs(),
        }
        with torch.no_grad():
            if head.mode == "txt2img":
                latents = self._initial_latents(generators, head.width, head.height)
                with self._noise_ahead(generators):
                    output = target(height=head.height, width=head.width, latents=latents, **call)
            elif head.mode == "inpaint":
                canvases = [cast(Prepared, sources[slot.request]) for slot in slots]
                with self._noise_ahead(generators):
                    output = target(
                        image=[canvas.image for canvas in canvases],
                        mask_image=[canvas.paint for canvas in canvases],
                        strength=head.strength,
                        height=head.height,
                        width=head.width,
                        **call,
                    )
            else:
                images = [sources[slot.request] for slot in slots]
                with self._noise_ahead(generators):
                    output = target(image=images, strength=head.strength, **call)
            latents = output.images

            # e. Stop here when cancelled
            if cancelled:
                raise Cancelled("cancelled while generating")

            # f. The hires fix: upscale, then denoise again at the final size
            if head.hires_scale is not None:
                run.step_offset, run.steps_after = target.num_timesteps, 0
                latents = self._hires_pass(head, latents, slots, call)
                if cancelled:
                    raise Cancelled("cancelled while generating")

            # g. Decode, retrying the VAE in float32 on NaN/black images; a canvas gets its kept
            #    pixels back exactly
            decoded, retried = self._decode(latents)
            if head.mode == "inpaint":
                decoded = [
                    finish(cast(Prepared, sources[slot.request]), decoded[i]) for i, slot in enumerate(slots)
                ]
        if self.offload:
            self.pipe.maybe_free_model_hooks()
        return {slot: (decoded[i], i in retried) for i, slot in enumerate(slots)}

    def _hires_pass(
        self, head: GenerationRequest, latents: torch.Tensor, slots: list[_Slot], call: dict[str, Any]
    ) -> torch.Tensor:
        """The hires fix's second pass: ``latents`` upscaled with the request's upscaler (in latent
        space, or decoded and resized), then denoised with ``hires_denoise`` as image-to-image."""
        width, height = head.output_size
        upscaler = head.hires_upscaler
        image: Any
        if upscaler.startswith("Latent"):
            scale = self.pipe.vae_scale_factor
            image = resize_latents(latents, (height // scale, width // scale), upscaler)
        else:
            decoded, _ = self._decode(latents)
            method = Image.Resampling.NEAREST if upscaler == "Nearest" else Image.Resampling.LANCZOS
            image = [picture.resize((width, height), method) for picture in decoded]
        target = self._img2img()
        scheduler = build_scheduler(head.sampler, self._scheduler_config)
        if hasattr(scheduler, "noise_sampler_seed"):
            scheduler.noise_sampler_seed = [slot.seed for slot in slots]
        target.scheduler = scheduler
        log.debug("hires fix: %s to %dx%d, denoising %g", upscaler, width, height, head.hires_denoise)
        passes = {**call, "num_inference_steps": head.hires_steps or head.steps}
        with self._noise_ahead(call["generator"]):
            return target(image=image, strength=head.hires_denoise, **passes).images

    # -- helpers --------------------------------------------------------------------------------

    def _noise_ahead(self, generators: list[torch.Generator]) -> AbstractContextManager[None]:
        """A diffusers call whose sampler draws its per-step noise one step ahead (on CUDA, unless
        the options say otherwise): see :mod:`pipeline.engine.noise`."""
        return noise_ahead(
            generators, self.device, enabled=self._on_cuda_by_default(self.options.noise_ahead)
        )

    def _on_cuda_by_default(self, option: bool | None) -> bool:
        """An option that is on when set so, and when unset (``None``) on CUDA only."""
        return self.device.type == "cuda" if option is None else option

    def _inpaint(self) -> Any:
        """The inpainting pipeline sharing the loaded components (a 4-channel model blends the
        kept area back at every step), built when a canvas job first needs it."""
        if self._inpaint_pipe is None:
            from diffusers import AutoPipelineForInpainting

            self._inpaint_pipe = AutoPipelineForInpainting.from_pipe(self.pipe)
            self._inpaint_pipe.set_progress_bar_config(disable=True)
        return self._inpaint_pipe

    def _img2img(self) -> Any:
        """The image-to-image pipeline sharing the loaded components, built once."""
        if self._img2img_pipe is None:
            from diffusers import AutoPipelineForImage2Image

            self._img2img_pipe = AutoPipelineForImage2Image.from_pipe(self.pipe)
            self._img2img_pipe.set_progress_bar_config(disable=True)
        return self._img2img_pipe

    def _initial_latents(self, generators: list[torch.Generator], width: int, height: int) -> torch.Tensor:
        """Standard-normal noise per image, drawn in float32 on the CPU from its own generator."""
        scale = self.pipe.vae_scale_factor
        shape = (1, self.pipe.unet.config.in_channels, height // scale, width // scale)
        noise = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        return noise.to(device=self.device, dtype=self.pipe.unet.dtype)

    def _configure_vae(self, width: int, height: int) -> None:
        vae = self.pipe.vae
        limit = self.options.tile_vae_above_pixels
        tile = (
            self.options.vae_tiling or self._memory_savers or (limit is not None and width * height > limit)
        )
        if tile:
            vae.enable_tiling()
        else:
            vae.disable_tiling()
        if self.options.vae_slicing or self._memory_savers:
            vae.enable_slicing()
        else:
            vae.disable_slicing()

    def _enable_memory_savers(self) -> None:
        """After out-of-memory: slice attention, slice and tile the VAE, and give up the memory
        CUDA graphs keep (their attention would not be sliced either)."""
        self._memory_savers = True
        if self.graphs is not None and self.graphs.enabled:
            self.graphs.turn_off("out of memory")
            free_memory(self.device)
        self.pipe.enable_attention_slicing()
        self.pipe.vae.enable_slicing()
        self.pipe.vae.enable_tiling()

    def _decode(self, latents: torch.Tensor) -> tuple[list[Image.Image], set[int]]:
        """Decode latents to RGB images; images that come out NaN/black are decoded again in float32.

        The host waits for the GPU once: the check of the latents (did the UNet overflow?) stays on
        the device until the decoded images are checked, and is ready by then.
        """
        overflowed = non_finite_mask(latents)
        vae = self.pipe.vae
        upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        decoded = self._vae_decode(latents, float32=upcast)
        bad = bad_image_indices(decoded, black_level=self.options.black_level)
        if bool(overflowed.any()):
            raise BlackImageError(
                black_image_message(architecture=self.architecture, dtype=self.dtype, unet_overflow=True)
            )
        if bad:
            log.warning(
                "%d of %d image(s) decoded as NaN/black in %s; decoding them again in float32",
                len(bad),
                len(decoded),
                vae.dtype,
            )
            again = self._vae_decode(latents[bad], float32=True)
            if bad_image_indices(again, black_level=self.options.black_level):
                raise BlackImageError(
                    black_image_message(architecture=self.architecture, dtype=self.dtype, unet_overflow=False)
                )
            decoded = decoded.float()
            decoded[bad] = again.float()
        images = self.pipe.image_processor.postprocess(decoded.float(), output_type="pil")
        return list(images), set(bad)

    def _vae_decode(self, latents: torch.Tensor, *, float32: bool) -> torch.Tensor:
        """Decode in the VAE's dtype (or float32); on out-of-memory, tile/slice the VAE and retry once."""
        try:
            return self._vae_decode_once(latents, float32=float32)
        except Exception as error:
            if self._memory_savers or not is_out_of_memory(error):
                raise
        free_memory(self.device)
        log.warning("out of memory decoding %d image(s); turning on VAE slicing/tiling", len(latents))
        self._enable_memory_savers()
        return self._vae_decode_once(latents, float32=float32)

    def _vae_decode_once(self, latents: torch.Tensor, *, float32: bool) -> torch.Tensor:
        vae = self._float32_vae() if float32 and self.pipe.vae.dtype != torch.float32 else self.pipe.vae
        original = vae.dtype
        upcast = float32 and original != torch.float32  # only with model CPU offload (see _float32_vae)
        if upcast:
            vae.to(dtype=torch.float32)
        try:
            z = latents.to(device=self.device, dtype=vae.dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                channels = z.shape[1]
                mean_t = torch.tensor(mean).view(1, channels, 1, 1).to(z.device, z.dtype)
                std_t = torch.tensor(std).view(1, channels, 1, 1).to(z.device, z.dtype)
                z = z * std_t / vae.config.scaling_factor + mean_t
            else:
                z = z / vae.config.scaling_factor
            return vae.decode(z, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(dtype=original)

    def _float32_vae(self) -> Any:
        """A float32 copy of the half-precision VAE, made once, to decode with.

        Casting the VAE to float32 and back around every decode (diffusers' ``force_upcast``) costs
        two passes over its weights per batch; the copy holds the same values (the half ones,
        widened), so its images are identical. Its tiling and slicing follow the VAE's. With model
        CPU offload the VAE moves between devices, so it is cast around the decode instead.
        """
        vae = self.pipe.vae
        if self.offload:
            return vae
        if self._vae32 is None:
            import copy

            self._vae32 = copy.deepcopy(vae).to(dtype=torch.float32)
            log.info("decoding in float32 with a copy of the VAE (its config asks for float32)")
        self.choices.tile_float32_copy(self._vae32)
        self._vae32.use_tiling = vae.use_tiling
        self._vae32.use_slicing = vae.use_slicing
        return self._vae32


_LATENT_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}


def resize_latents(latents: torch.Tensor, size: tuple[int, int], upscaler: str) -> torch.Tensor:
    """``latents`` interpolated to ``size`` (height, width) the way the WebUI's latent upscaler
    named ``upscaler`` does (computed in float32)."""
    mode, antialias = _LATENT_MODES[upscaler]
    resized = torch.nn.functional.interpolate(
        latents.float(),
        size=size,
        mode=mode,
        antialias=antialias,
        **({"align_corners": False} if mode in ("bilinear", "bicubic") else {}),
    )
    return resized.to(latents.dtype)


def _hires_steps_taken(request: GenerationRequest) -> int:
    """The denoising steps of the hires fix's second pass (img2img runs ``steps × strength``)."""
    if request.hires_scale is None:
        return 0
    steps = request.hires_steps or request.steps
    return min(int(steps * request.hires_denoise), steps)


Source = Image.Image | Prepared | None
"""What a request starts from: nothing (txt2img), its init image at the output size, or its canvas."""


def _source(request: GenerationRequest, init_images: Mapping[str, Image.Image] | None) -> Source:
    if request.mode == "txt2img" or init_images is None:
        return None
    image = init_images[request.init_image or ""]
    if request.mode == "inpaint":
        return prepare(parse_canvas(request.canvas), image, (request.width, request.height))
    return _fit_image(image, request.width, request.height)


def _fit_image(image: Image.Image, width: int, height: int) -> Image.Image:
    """The init image as RGB at the output size (Lanczos), as img2img and upscale start from."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image
