"""Whether a checkpoint predicts noise (``epsilon``) or velocity (``v_prediction``).

The weights' layout does not say: SD 2.x 768-v and 512-base checkpoints have the same keys. In
order, nanke takes the prediction type from:

1. ``scheduler/scheduler_config.json`` in the ``<stem>.config/`` folder beside the checkpoint;
2. a ``<stem>.yaml`` beside it (A1111's convention): ``parameterization: "v"`` means v-prediction;
3. the configs ``save_single_file`` embedded in the file;
4. a ``v_pred`` key in the checkpoint (the marker ComfyUI and others use, e.g. for SDXL v-models);
5. for SD 2.x only, a probe of the UNet: at the last timestep (t = 999) a noise-predicting UNet
   returns roughly its input, while a v-predicting one returns something well below it, so
   ``mean(unet(x) - x) < -1`` for a constant ``x = 0.5`` means v-prediction (the same test A1111
   uses). It costs one UNet call on an 8×8 latent.
6. otherwise the shipped scheduler config (epsilon for SD 1.x and SDXL).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

EPSILON = "epsilon"
V_PREDICTION = "v_prediction"
PROBE_TIMESTEP = 999
PROBE_THRESHOLD = -1.0


def probe_v_prediction(unet: Any) -> bool:
    """True when the UNet behaves like a v-prediction model (see the module doc, step 5)."""
    import torch

    config = unet.config
    sample = torch.full((1, config.in_channels, 8, 8), 0.5, device=unet.device, dtype=unet.dtype)
    context = torch.full((1, 2, config.cross_attention_dim), 0.5, device=unet.device, dtype=unet.dtype)
    timestep = torch.tensor([PROBE_TIMESTEP], device=unet.device)
    with torch.no_grad():
        output = unet(sample, timestep, encoder_hidden_states=context).sample
    score = (output.float() - sample.float()).mean().item()
    log.info("v-prediction probe: mean(unet(x) - x) = %.3f (v-prediction below %s)", score, PROBE_THRESHOLD)
    return score < PROBE_THRESHOLD


def set_prediction_type(pipe: Any, prediction_type: str) -> None:
    """Give ``pipe`` a scheduler of the same kind with ``prediction_type``."""
    if pipe.scheduler.config.get("prediction_type") != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type=prediction_type
        )
