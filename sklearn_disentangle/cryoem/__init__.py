"""Pure, batched torch kernels shared by the cryo-EM methods and the simulators.

Rotations (RELION ZYZ Euler angles), the CTF (RELION's parameterisation), real-space and
Fourier-slice projection, Fourier phase-ramp shifts and centred FFT helpers. Every function
takes and returns tensors and runs on the device of its inputs.
"""
from .ctf import apply_ctf, compute_ctf, ctf_from_table, electron_wavelength, phase_flip
from .fourier import (
    fft2_centered, fftn_centered, fourier_crop, fourier_pad, frequency_grid, ifft2_centered,
    ifftn_centered, resize_fourier,
)
from .projection import project_fourier, project_real, rotate_volume, shift_images, shift_volumes
from .rotations import (
    axis_angle_to_matrix, euler_to_matrix, inplane_rotation_matrix, matrix_to_euler, quaternion_to_matrix,
    random_rotations, rotate_images, rotation_grid,
)

__all__ = [
    "euler_to_matrix", "matrix_to_euler", "random_rotations", "quaternion_to_matrix", "axis_angle_to_matrix",
    "inplane_rotation_matrix", "rotate_images", "rotation_grid",
    "compute_ctf", "ctf_from_table", "apply_ctf", "phase_flip", "electron_wavelength",
    "fft2_centered", "ifft2_centered", "fftn_centered", "ifftn_centered", "fourier_crop", "fourier_pad",
    "resize_fourier", "frequency_grid",
    "project_real", "project_fourier", "rotate_volume", "shift_images", "shift_volumes",
]
