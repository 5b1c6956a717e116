"""The posterior encoder, flow and HiFi-GAN decoder that the converter and the base TTS share.

`VitsCore` is the base class of both models: it owns the submodules `enc_q`, `flow` and `dec`
(the reference's names, at the top of the parameter tree) and the operations on them. A subclass
provides `vits_config` (its ConverterConfig) and calls `setup_core()` from its `setup`.
"""
from __future__ import annotations

import jax.numpy as jnp
import flax.linen as nn

from ovjax.config import ConverterConfig
from ovjax.layers.flow import ResidualCouplingBlock
from ovjax.layers.generator import Generator
from ovjax.layers.posterior_encoder import PosteriorEncoder


class VitsCore(nn.Module):
  """Base class: posterior encoder q(z | spec, g), flow z <-> z_p under g, decoder z -> audio."""

  @property
  def vits_config(self) -> ConverterConfig:
    raise NotImplementedError

  def setup_core(self):
    c = self.vits_config
    self.enc_q = PosteriorEncoder(c.inter_channels, c.hidden_channels, c.posterior_kernel_size, 1,
                                  c.posterior_layers, c.gin_channels)
    self.flow = ResidualCouplingBlock(c.inter_channels, c.hidden_channels, c.flow_kernel_size, 1,
                                      c.flow_layers, c.n_flows, c.gin_channels)
    self.dec = Generator(c.upsample_initial_channel, c.resblock_kernel_sizes,
                         c.resblock_dilation_sizes, c.upsample_rates, c.upsample_kernel_sizes,
                         c.gin_channels)

  def cond(self, g):
    """The embedding the posterior encoder and decoder see: v2 (zero_g) gives them zeros (the
    conditioning layers still run: their biases count)."""
    return jnp.zeros_like(g) if self.vits_config.zero_g else g

  def posterior(self, spec, mask, g, deterministic: bool = True):
    """(m_q, logs_q) [B, T, inter] of the linear spectrogram [B, T, F]; g [B, 1, gin]."""
    return self.enc_q(spec, mask, self.cond(g), deterministic)

  def flow_forward(self, z, mask, g, deterministic: bool = True):
    """z -> z_p (removes g's tone colour)."""
    return self.flow(z, mask, g, deterministic=deterministic)[0]

  def flow_reverse(self, z_p, mask, g, deterministic: bool = True):
    """z_p -> z (adds g's tone colour)."""
    return self.flow(z_p, mask, g, reverse=True, deterministic=deterministic)[0]

  def decode(self, z, mask, g=None):
    """Latent [B, T, inter] -> waveform [B, T * hop]; g=None runs the decoder unconditioned
    (the cond layer skipped), as v2 (zero_g) training does."""
    return self.dec(z, mask, None if g is None else self.cond(g))
