"""Quantizers: latents -> codes -> token indices and back, in plain torch on :mod:`tokc.kernels`
(the executable spec; export traces the kernels' references).

- :mod:`tokc.quantizers.vq`: nearest-codeword VQ (TiTok's, optionally on L2-normalised
  codewords; WavTokenizer's EMA codebooks);
- :mod:`tokc.quantizers.fsq`: finite scalar quantization (FlexTok);
- :mod:`tokc.quantizers.lfq`: group-wise lookup-free (sign) quantization (WeTok).

Every quantizer names its two directions ``codes_to_indices`` and ``indices_to_codes``. Import
the submodules by name: ``fsq`` imports torch only when it runs, so that a model configuration
(FlexTok's) can be read without torch installed.
"""
