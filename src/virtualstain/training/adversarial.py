"""Conditional-GAN training (VirFluoNet): the generator against a discriminator, in the same Lightning loop.

Per batch (input x, target y, both normalised; the generator's prediction G(x)), with the condition c = x
(bicubically upsampled to y's grid for super-resolution pairs) and D's logits:

1. discriminator step: L_D = ½ · [BCE(D(c, y), 1) + BCE(D(c, G(x)), 0)] (G(x) detached), Adam at
   ``training.adversarial.discriminator_lr``;
2. generator step: L_G = λ₁ · pixel loss(G(x), y) + λ₂ · BCE(D(c, G(x)), 1) + λ₃ · ‖θ_G‖₁ / n_θ, Adam at
   ``training.lr`` (the paper: λ = 0.99, 0.01, 0.001; MAE; 2e-4 for both).

The reading of ‖θ_G‖₁: the paper's Eq. 4 normalises the MAE by the image size (W × H); its Eq. 6 writes the
weights' L1 norm without a normaliser. A sum over the generator's 11.7 M parameters (|θ| ≈ 0.02 at
initialisation) would weigh ≈ 230 against an MAE of ≈ 0.1 and drive every weight to zero, so the norm is taken
per parameter (the mean |θ|), on the same footing as the per-pixel MAE.

BCE(D, 1) is −log sigmoid(D), the non-saturating form of log(1 − D(G)) (Goodfellow et al. 2014), as Eq. 5.
Everything else is the plain loop's: the learning rates follow the budget's cosine (both networks), gradients
are clipped per network, validation (the pixel loss and r of the generator or its moving average) selects the
checkpoint, and ``last.ckpt`` holds both networks and both optimizers, so a killed run resumes where it was.
Only the generator goes into the bundle.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..models.inference import network_config
from ..models.unet import upsample
from .config import AdversarialSettings
from .lightning_module import VirtualStainModule, _fit_seconds

#: Optimizer steps per training batch (discriminator, then generator): Lightning's ``global_step`` counts both.
OPTIMIZER_STEPS_PER_BATCH = 2


def weight_l1(network: nn.Module) -> torch.Tensor:
    """Mean absolute value of ``network``'s trainable parameters (a scalar tensor)."""
    params = [p for p in network.parameters() if p.requires_grad]
    return torch.stack([p.abs().sum() for p in params]).sum() / sum(p.numel() for p in params)


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target)


class AdversarialModule(VirtualStainModule):
    """:class:`VirtualStainModule` with a discriminator and manual optimisation of both networks.

    Parameters
    ----------
    network : torch.nn.Module
        The generator.
    discriminator : torch.nn.Module
        Logits for ``(N, C_in + C_out, Y, X)`` pairs (condition, target).
    loss_fn : callable
        The pixel loss (``training.loss``), also the validation loss.
    settings : AdversarialSettings
        The weights λ and the discriminator's learning rate.
    gradient_clip_norm : float, optional
        Clip each network's gradient norm to this (None: no clipping).
    **kwargs
        As :class:`VirtualStainModule` (``lr`` is the generator's).
    """

    def __init__(self, network: nn.Module, discriminator: nn.Module,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], settings: AdversarialSettings,
                 gradient_clip_norm: float | None = None, **kwargs):
        super().__init__(network, loss_fn, **kwargs)
        self.automatic_optimization = False
        self.discriminator = discriminator
        self.settings, self.gradient_clip_norm = settings, gradient_clip_norm

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.discriminator.to(memory_format=self._layout)  # type: ignore[call-overload]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._clock.batch_ready()
        if self.lr_schedule == "cosine":
            assert self.schedule is not None
            factor = self.schedule.factor(self.global_step // OPTIMIZER_STEPS_PER_BATCH, _fit_seconds(self.trainer))
            opt_g, opt_d = self._pair()
            for optimizer, lr in ((opt_g, self.lr), (opt_d, self.settings.discriminator_lr)):
                for group in optimizer.optimizer.param_groups:
                    group["lr"] = lr * factor

    def _pair(self) -> tuple:
        """The generator's and the discriminator's (Lightning-wrapped) optimizers."""
        optimizers = self.optimizers()
        assert isinstance(optimizers, list) and len(optimizers) == 2  # configure_optimizers returns both
        return optimizers[0], optimizers[1]

    def _step(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.gradient_clip_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_norm, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self._pair()
        x, y = batch
        s = self.settings
        fake = self(x)
        condition = upsample(x, network_config(self.network).scale).contiguous(memory_format=self._layout)
        pair = lambda target: torch.cat([condition, target.to(condition.dtype)], dim=1)  # noqa: E731

        self.toggle_optimizer(opt_d)
        loss_d = 0.5 * (_bce(self.discriminator(pair(y)), True) + _bce(self.discriminator(pair(fake.detach())), False))
        self._step(opt_d, loss_d)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        pixel = self.loss_fn(fake, y)
        adversarial = _bce(self.discriminator(pair(fake)), True)
        loss_g = s.pixel_weight * pixel + s.adversarial_weight * adversarial + s.weight_l1 * weight_l1(self.network)
        self._step(opt_g, loss_g)
        self.untoggle_optimizer(opt_g)

        n = x.shape[0]
        self.log("train_loss", pixel, prog_bar=True, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log_dict({"train_adversarial": adversarial.detach(), "train_discriminator": loss_d.detach()},
                      on_step=False, on_epoch=True, batch_size=n, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        data, compute = self._clock.epoch_split()
        opt_g, opt_d = self._pair()
        self.log_dict({"data_seconds": data, "step_seconds": compute, "lr": opt_g.optimizer.param_groups[0]["lr"],
                       "lr_discriminator": opt_d.optimizer.param_groups[0]["lr"],
                       "threads": float(self._thread_count)}, on_epoch=True, sync_dist=True)

    def configure_optimizers(self):
        generator = torch.optim.Adam(self.network.parameters(), lr=self.lr, betas=self.betas)
        discriminator = torch.optim.Adam(self.discriminator.parameters(), lr=self.settings.discriminator_lr,
                                         betas=self.betas)
        return [generator, discriminator]

