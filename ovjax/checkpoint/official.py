"""Official OpenVoice checkpoints -> ovjax parameter trees, through one explicit name table.

Every official key must match exactly one rule and every ovjax parameter must be filled; missing
or unexpected keys and shape mismatches are errors that name them. The tree produced keeps weight
norm as (weight_v, weight_g), so it can be trained; `fold_weight_norm` prepares it for inference.
"""
from __future__ import annotations

import itertools
import re
from typing import Any, Callable

import numpy as np

from ovjax.errors import CheckpointError

# Axis permutations from PyTorch layouts to ovjax's (weight_g follows its weight_v, so PyTorch's
# [O, 1, 1] g becomes [1, 1, O], broadcastable to the kernel).
CONV1D = (2, 1, 0)        # [O, I, K] -> [K, I, O]
CONV_T = (2, 0, 1)        # ConvTranspose1d [I, O, K] -> [K, I, O]
CONV2D = (2, 3, 1, 0)     # [O, I, H, W] -> [H, W, I, O]
LINEAR = (1, 0)           # [O, I] -> [I, O]
VECTOR = None             # 1-D, as is
AS_IS = "as_is"           # any shape, as is (relative-position embeddings, embedding tables)
CHANNEL = "channel"       # [C, 1] per-channel parameters (channels-first) -> [C]

_W = r"(?P<p>weight|weight_v|weight_g|bias)"
_P = {"weight": "kernel", "weight_v": "weight_v", "weight_g": "weight_g", "bias": "bias"}


def _param(m):
  return _P[m["p"]]


def _i(m, name="i"):
  return int(m[name])


# (official key regex, ovjax path builder, layout). Read top to bottom, it is the whole mapping.
CONVERTER_TABLE: list[tuple[str, Callable[[re.Match], str], Any]] = [
    # Posterior encoder (enc_q): pre 1x1 conv, WaveNet stack, proj.
    (rf"enc_q\.pre\.{_W}", lambda m: f"enc_q/pre/{_param(m)}", CONV1D),
    (rf"enc_q\.enc\.in_layers\.(?P<i>\d+)\.{_W}",
     lambda m: f"enc_q/enc/in_layers_{_i(m)}/{_param(m)}", CONV1D),
    (rf"enc_q\.enc\.res_skip_layers\.(?P<i>\d+)\.{_W}",
     lambda m: f"enc_q/enc/res_skip_layers_{_i(m)}/{_param(m)}", CONV1D),
    (rf"enc_q\.enc\.cond_layer\.{_W}", lambda m: f"enc_q/enc/cond_layer/{_param(m)}", CONV1D),
    (rf"enc_q\.proj\.{_W}", lambda m: f"enc_q/proj/{_param(m)}", CONV1D),
    # Flow: modules 0, 2, 4, 6 are couplings (odd indices are parameter-free Flips).
    (rf"flow\.flows\.(?P<i>\d+)\.(?P<sub>pre|post)\.{_W}",
     lambda m: f"flow/coupling_{_i(m) // 2}/{m['sub']}/{_param(m)}", CONV1D),
    (rf"flow\.flows\.(?P<i>\d+)\.enc\.(?P<sub>in_layers|res_skip_layers)\.(?P<j>\d+)\.{_W}",
     lambda m: f"flow/coupling_{_i(m) // 2}/enc/{m['sub']}_{_i(m, 'j')}/{_param(m)}", CONV1D),
    (rf"flow\.flows\.(?P<i>\d+)\.enc\.cond_layer\.{_W}",
     lambda m: f"flow/coupling_{_i(m) // 2}/enc/cond_layer/{_param(m)}", CONV1D),
    # HiFi-GAN decoder.
    (rf"dec\.(?P<sub>conv_pre|cond|conv_post)\.{_W}", lambda m: f"dec/{m['sub']}/{_param(m)}",
     CONV1D),
    (rf"dec\.ups\.(?P<i>\d+)\.{_W}", lambda m: f"dec/ups_{_i(m)}/{_param(m)}", CONV_T),
    (rf"dec\.resblocks\.(?P<i>\d+)\.(?P<sub>convs1|convs2)\.(?P<j>\d+)\.{_W}",
     lambda m: f"dec/resblocks_{_i(m)}/{m['sub']}_{_i(m, 'j')}/{_param(m)}", CONV1D),
    # Reference encoder (tone-colour embedding).
    (r"ref_enc\.layernorm\.weight", lambda m: "ref_enc/layernorm/scale", VECTOR),
    (r"ref_enc\.layernorm\.bias", lambda m: "ref_enc/layernorm/bias", VECTOR),
    (rf"ref_enc\.convs\.(?P<i>\d+)\.{_W}", lambda m: f"ref_enc/convs_{_i(m)}/{_param(m)}", CONV2D),
    (r"ref_enc\.gru\.(?P<p>weight_ih|weight_hh|bias_ih|bias_hh)_l0",
     lambda m: f"ref_enc/gru/{m['p']}", LINEAR),
    (rf"ref_enc\.proj\.{_W}", lambda m: f"ref_enc/proj/{_param(m)}", LINEAR),
]


_DDS = r"(?P<dds>convs|post_convs)"
_FLOWS = r"(?P<flows>flows|post_flows)"

def _text_encoder_rules(name: str):
  """VITS' TextEncoder under `name` (the base TTS's `enc_p`, the converter's training-only
  `text_enc`): embedding, post-norm transformer with relative attention, proj."""
  return [
      (rf"{name}\.emb\.weight", lambda m: f"{name}/emb/embedding", AS_IS),
      (rf"{name}\.encoder\.attn_layers\.(?P<i>\d+)\.(?P<sub>conv_q|conv_k|conv_v|conv_o)\.{_W}",
       lambda m: f"{name}/encoder/attn_layers_{_i(m)}/{m['sub']}/{_param(m)}", CONV1D),
      (rf"{name}\.encoder\.attn_layers\.(?P<i>\d+)\.(?P<p>emb_rel_k|emb_rel_v)",
       lambda m: f"{name}/encoder/attn_layers_{_i(m)}/{m['p']}", AS_IS),
      (rf"{name}\.encoder\.(?P<sub>norm_layers_1|norm_layers_2)\.(?P<i>\d+)\.(?P<p>gamma|beta)",
       lambda m: f"{name}/encoder/{m['sub']}_{_i(m)}/{m['p']}", VECTOR),
      (rf"{name}\.encoder\.ffn_layers\.(?P<i>\d+)\.(?P<sub>conv_1|conv_2)\.{_W}",
       lambda m: f"{name}/encoder/ffn_layers_{_i(m)}/{m['sub']}/{_param(m)}", CONV1D),
      (rf"{name}\.proj\.{_W}", lambda m: f"{name}/proj/{_param(m)}", CONV1D),
  ]


# The converter in training: the inference model plus its IPA text encoder (never exported).
CONVERTER_TRAIN_TABLE = CONVERTER_TABLE + _text_encoder_rules("text_enc")

# VITS' MultiPeriodDiscriminator (`D_*.pth`): discriminator 0 is the 1-D scale discriminator,
# 1.. the 2-D period discriminators.
DISCRIMINATOR_TABLE = [
    (rf"discriminators\.0\.convs\.(?P<j>\d+)\.{_W}",
     lambda m: f"discriminators_0/convs_{_i(m, 'j')}/{_param(m)}", CONV1D),
    (rf"discriminators\.0\.conv_post\.{_W}", lambda m: f"discriminators_0/conv_post/{_param(m)}",
     CONV1D),
    (rf"discriminators\.(?P<i>[1-9]\d*)\.convs\.(?P<j>\d+)\.{_W}",
     lambda m: f"discriminators_{_i(m)}/convs_{_i(m, 'j')}/{_param(m)}", CONV2D),
    (rf"discriminators\.(?P<i>[1-9]\d*)\.conv_post\.{_W}",
     lambda m: f"discriminators_{_i(m)}/conv_post/{_param(m)}", CONV2D),
]

# The VITS base speaker TTS: the converter's enc_q/flow/dec (no ref_enc) plus the text encoder,
# both duration predictors and the speaker/style embedding table.
BASE_TABLE = [rule for rule in CONVERTER_TABLE if not rule[0].startswith("ref_enc")] + \
    _text_encoder_rules("enc_p") + [
    # Stochastic duration predictor: 1x1 convs, DDSConv stacks, flows (affine + spline flows).
    (rf"sdp\.(?P<sub>pre|proj|cond|post_pre|post_proj)\.{_W}",
     lambda m: f"sdp/{m['sub']}/{_param(m)}", CONV1D),
    (rf"sdp\.{_DDS}\.(?P<sub>convs_sep|convs_1x1)\.(?P<i>\d+)\.{_W}",
     lambda m: f"sdp/{m['dds']}/{m['sub']}_{_i(m)}/{_param(m)}", CONV1D),
    (rf"sdp\.{_DDS}\.(?P<sub>norms_1|norms_2)\.(?P<i>\d+)\.(?P<p>gamma|beta)",
     lambda m: f"sdp/{m['dds']}/{m['sub']}_{_i(m)}/{m['p']}", VECTOR),
    (rf"sdp\.{_FLOWS}\.0\.(?P<p>m|logs)", lambda m: f"sdp/{m['flows']}_0/{m['p']}", CHANNEL),
    (rf"sdp\.{_FLOWS}\.(?P<i>\d+)\.(?P<sub>pre|proj)\.{_W}",
     lambda m: f"sdp/{m['flows']}_{_i(m)}/{m['sub']}/{_param(m)}", CONV1D),
    (rf"sdp\.{_FLOWS}\.(?P<i>\d+)\.convs\.(?P<sub>convs_sep|convs_1x1)\.(?P<j>\d+)\.{_W}",
     lambda m: f"sdp/{m['flows']}_{_i(m)}/convs/{m['sub']}_{_i(m, 'j')}/{_param(m)}", CONV1D),
    (rf"sdp\.{_FLOWS}\.(?P<i>\d+)\.convs\.(?P<sub>norms_1|norms_2)\.(?P<j>\d+)\.(?P<p>gamma|beta)",
     lambda m: f"sdp/{m['flows']}_{_i(m)}/convs/{m['sub']}_{_i(m, 'j')}/{m['p']}", VECTOR),
    # Deterministic duration predictor.
    (rf"dp\.(?P<sub>conv_1|conv_2|proj|cond)\.{_W}", lambda m: f"dp/{m['sub']}/{_param(m)}",
     CONV1D),
    (r"dp\.(?P<sub>norm_1|norm_2)\.(?P<p>gamma|beta)", lambda m: f"dp/{m['sub']}/{m['p']}",
     VECTOR),
    # Speaker / style embedding table.
    (r"emb_g\.weight", lambda m: "emb_g/embedding", AS_IS),
]


def normalise_key(key: str) -> str:
  """Accept checkpoints re-saved with torch's parametrizations-based weight norm, and saved from
  a DistributedDataParallel wrapper (`module.` prefix)."""
  return (key.removeprefix("module.")
          .replace(".parametrizations.weight.original0", ".weight_g")
          .replace(".parametrizations.weight.original1", ".weight_v"))


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, dict):
      out.update(_flatten(v, path))
    else:
      out[path] = v
  return out


def _unflatten(flat):
  tree: dict = {}
  for path, value in flat.items():
    node = tree
    parts = path.split("/")
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = value
  return tree


def _compiled(table):
  return [(re.compile(pattern), build, layout) for pattern, build, layout in table]


def lookup(key: str, table) -> tuple[str, Any] | None:
  """(ovjax path, layout) of an official key, or None when no rule of `table` matches it."""
  key = normalise_key(key)
  for pattern, build, layout in _compiled(table):
    m = pattern.fullmatch(key)
    if m:
      return build(m), layout
  return None


def from_official_layout(array: np.ndarray, layout) -> np.ndarray:
  if layout == AS_IS:
    return array
  if layout == CHANNEL:
    return array.reshape(-1)
  if layout is not None and array.ndim == len(layout):
    return np.transpose(array, layout)
  if array.ndim != 1:
    raise ValueError("does not fit its layer")
  return array


def to_official_layout(array: np.ndarray, layout) -> np.ndarray:
  """The inverse of `from_official_layout` (ovjax array -> PyTorch layout)."""
  array = np.asarray(array)
  if layout == CHANNEL:
    return array.reshape(-1, 1)
  if isinstance(layout, tuple) and array.ndim == len(layout):
    return np.ascontiguousarray(np.transpose(array, np.argsort(layout)))
  return array


def map_state_dict(state_dict: dict[str, np.ndarray], table, expected_shapes,
                   source: str = "checkpoint") -> dict:
  """Apply `table` to an official state_dict; check it against `expected_shapes` (a flat
  {path: shape} of the model the config describes). Returns {"params": tree} of float32 numpy."""
  flat, unexpected = {}, []
  for raw_key, value in state_dict.items():
    found = lookup(raw_key, table)
    if found is None:
      unexpected.append(raw_key)
      continue
    path, layout = found
    try:
      array = from_official_layout(np.asarray(value), layout)
    except ValueError:
      raise CheckpointError(f"{source}: {raw_key} has shape {tuple(value.shape)}, which does not "
                            "fit its layer") from None
    if path in flat:
      raise CheckpointError(f"{source}: {raw_key} maps onto {path}, which is already filled")
    flat[path] = array.astype(np.float32)
  if unexpected:
    raise CheckpointError(f"{source}: unexpected keys (not part of this model): "
                          f"{_short(unexpected)}")
  missing = sorted(set(expected_shapes) - set(flat))
  # Keys we produced but the model lacks (e.g. more layers than the config says).
  extra = sorted(set(flat) - set(expected_shapes))
  if extra:
    raise CheckpointError(f"{source}: keys beyond what config.json describes (config and weights "
                          f"do not match): {_short(extra)}")
  if missing:
    raise CheckpointError(f"{source}: missing keys: {_short(missing)}")
  for path, array in flat.items():
    want = tuple(expected_shapes[path])
    if array.shape != want:
      raise CheckpointError(f"{source}: config and weights do not match: {path} has shape "
                            f"{array.shape}, config implies {want}")
  return {"params": _unflatten(flat)}


def _name_candidates(path: str):
  """Official keys that could name ovjax `path` (a list index is `name_3` here, `name.3` there;
  couplings sit at even indices of the reference's flow list; leaves are renamed)."""
  parts = path.split("/")
  options = []
  for part in parts[:-1]:
    m = re.fullmatch(r"coupling_(\d+)", part)
    if m:
      options.append([f"flows.{2 * int(m[1])}"])
      continue
    m = re.fullmatch(r"(.+)_(\d+)", part)
    options.append([part, f"{m[1]}.{m[2]}"] if m else [part])
  leaf = parts[-1]
  options.append(sorted({leaf, "weight", f"{leaf}_l0"}))
  for combo in itertools.product(*options):
    yield ".".join(combo)


def official_state_dict(params, table) -> dict[str, np.ndarray]:
  """An ovjax parameter tree ({"params": ...} or the tree itself) -> the official state_dict
  (PyTorch names and layouts, weight norm as weight_g/weight_v), through the same table read
  backwards: each name is checked to map forward onto the path it came from."""
  tree = params.get("params", params)
  out = {}
  for path, value in _flatten(tree).items():
    for key in _name_candidates(path):
      found = lookup(key, table)
      if found is not None and found[0] == path:
        out[key] = to_official_layout(np.asarray(value, np.float32), found[1])
        break
    else:
      raise CheckpointError(f"{path}: no official name maps onto this parameter")
  return out


def _short(names, limit=6):
  names = list(names)
  more = f" and {len(names) - limit} more" if len(names) > limit else ""
  return ", ".join(names[:limit]) + more


def expected_shapes(abstract_params) -> dict[str, tuple]:
  """Flat {path: shape} of an abstract (eval_shape) parameter tree, without the 'params' level."""
  return {k: tuple(v.shape) for k, v in _flatten(abstract_params["params"]).items()}
