"""ovjax.layers.time_tiling: tiles with `halo` samples of context reproduce the whole computation
(masks and all), one sample less of halo measurably does not, and the resblock reach it relies on
is the layers' true reach."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ovjax.layers import time_tiling
from ovjax.layers.conv import fold_weight_norm
from ovjax.layers.generator import ResBlock1


def _masked_batch(t=5000, c=8, lengths=(5000, 3100, 777)):
  x = jnp.asarray(np.random.default_rng(0).standard_normal((len(lengths), t, c)), jnp.float32)
  mask = (jnp.arange(t)[None, :, None] < np.asarray(lengths)[:, None, None]).astype(jnp.float32)
  return x, mask


def _resblock(channels=8, kernel=7, dilations=(1, 3, 5)):
  block = ResBlock1(channels, kernel, dilations)
  x, mask = _masked_batch(c=channels)
  params = fold_weight_norm(jax.tree.map(np.asarray, block.init(jax.random.key(1), x[:, :64],
                                                                mask[:, :64])))
  # The reference's N(0, 0.01) init makes each residual branch tiny; scale up so a leak shows.
  params = jax.tree.map(lambda p: 30 * p, params)
  return block, params, x, mask


def test_tiles_reproduce_the_whole_and_the_halo_is_the_minimum():
  block, params, x, mask = _resblock()
  fn = lambda xt, mt: block.apply(params, xt, mt)
  reach = time_tiling.reach_of_resblock(7, (1, 3, 5))
  assert reach == 3 + 3 + 9 + 3 + 15 + 3
  whole = fn(x, mask)
  tiles = jax.jit(lambda x, m: time_tiling.tiled(fn, x, m, reach, 700))(x, mask)
  assert tiles.shape == whole.shape
  assert float(jnp.max(jnp.abs(tiles - whole))) < 1e-5
  assert float(jnp.max(jnp.abs(tiles * (1 - mask)))) == 0.0  # Padding stays zero per row.
  short = jax.jit(lambda x, m: time_tiling.tiled(fn, x, m, reach - 1, 700))(x, mask)
  assert float(jnp.max(jnp.abs(short - whole))) > 1e-3


def test_resblock_reach_is_its_impulse_response():
  """Changing one input sample changes outputs exactly `reach` samples away and no farther."""
  block, params, x, mask = _resblock()
  x, mask = x[:1, :400], jnp.ones((1, 400, 1))
  reach = time_tiling.reach_of_resblock(7, (1, 3, 5))
  delta = block.apply(params, x.at[0, 200].add(1.0), mask) - block.apply(params, x, mask)
  changed = np.nonzero(np.max(np.abs(np.asarray(delta[0])), axis=-1) > 0)[0]
  assert changed.min() == 200 - reach and changed.max() == 200 + reach


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="tiling is a CPU cache strategy")
def test_tile_rule():
  halo = time_tiling.reach_of_resblock(11, (1, 3, 5))
  # The 10 s decoder's narrow late levels tile; its wide ones and short inputs run whole.
  assert time_tiling.tile_samples((1, 221184, 32), jnp.float32, halo) == \
      time_tiling.TILE_BYTES // (32 * 4)
  assert time_tiling.tile_samples((8, 110592, 64), jnp.bfloat16, halo) == \
      time_tiling.TILE_BYTES // (64 * 2)
  assert time_tiling.tile_samples((1, 55296, 128), jnp.float32, halo) is None
  assert time_tiling.tile_samples((8, 8192, 32), jnp.float32, halo) is None  # A train segment.
