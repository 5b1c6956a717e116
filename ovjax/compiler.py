"""XLA compiler options of ovjax's jitted inference programs.

On CPU, XLA can hand convolutions and matmuls to oneDNN as custom calls instead of running its
own kernels. Measured on a 2-core AMD EPYC (Zen 5, AVX512-BF16), the full-size converter then
runs 1.10x faster in float32, and in bfloat16 twice as fast as float32 (oneDNN's bf16 kernels
use the CPU's bf16 dot products; XLA's own bf16 convolution is slower than its float32 one); the
base TTS 1.12x in float32. Float32 outputs move by ~1e-7 relative (130 dB SNR).

These are fields of XLA's DebugOptions, which every backend shares: other backends accept and
ignore the xla_cpu_* ones, so the same jitted functions run unchanged on GPU and TPU. Both are
needed together: oneDNN without its custom calls runs bfloat16 convolutions 50-200x slower.
Training programs keep XLA's defaults (their gradients are not measured with oneDNN).

JAX accepts compiler options only on the outermost jit: to use an inference entry point inside
a jit of your own, call its function, `entry_point.__wrapped__`, and pass these options to your
jit.
"""
INFERENCE = {"xla_cpu_use_onednn": True, "xla_cpu_experimental_onednn_custom_call": True}
