"""O2VAE: orientation-invariant VAE for cell and organelle morphology (Burgess et al., 2024).

- :mod:`.registration`: batched Fourier/polar rotation and flip registration (plain torch);
- :mod:`._e2cnn_compat`: the runtime layer that makes e2cnn 0.2.3 work on NumPy 2
  (applied only when an e2cnn encoder is built).
"""
